"""Problems that only follow from another file not loading: one YAML error must not read as many problems.

A flow whose YAML does not parse has no name the others can find, so every `depends_on`, lookup and example
naming it would say "unknown flow". The name is read from the raw text instead (`flow: x` on a line of its own),
and problems about an unknown spec of that name are left out: the syntax error is the one thing to fix.
"""

from __future__ import annotations

import re
from pathlib import Path

from ml_connector.spec.problems import SpecProblem
from ml_connector.spec.yamlload import YamlLimits

#: Top-level key of a spec kind -> the word problems use for a reference to it.
_NAME_KEYS = {"flow": "flow", "connector": "connector", "integration": "integration"}
_NAME_LINE = re.compile(r"^(flow|connector|integration)\s*:\s*['\"]?([A-Za-z0-9_.-]+)['\"]?\s*(?:#.*)?$", re.M)
_UNKNOWN = re.compile(r"\bunknown (flow|connector|integration) '([^']*)'")


def named_in(path: Path, limits: YamlLimits) -> set[tuple[str, str]]:
    """(kind, name) a file that did not load says it defines, read from its raw text; empty if unreadable."""
    try:
        with path.open("rb") as stream:
            text = stream.read(limits.max_bytes).decode("utf-8", errors="replace")
    except OSError:
        return set()
    return {(_NAME_KEYS[key], name) for key, name in _NAME_LINE.findall(text)}


def follows_from_unreadable(problem: SpecProblem, unreadable: set[tuple[str, str]]) -> bool:
    """True for a problem that only says a spec which did not load is unknown."""
    found = _UNKNOWN.search(problem.message)
    return found is not None and (found.group(1), found.group(2)) in unreadable
