"""A cache of spec files that already loaded without a problem, by content: every command starts faster.

Every command loads the whole workspace: each YAML file parsed with its line map, schema-checked and its
expressions compiled, about a second for the shipped connectors, longer than a small run's work. A file whose exact
text (under this very engine and these schemas) loaded without a problem loads the same way again, so the second
time its data, line map, defaulted data and the kind of each expression are read back (JSON), with no schema
walk, and its expressions compile on first use. A file with any problem is never cached: it is checked, and
reported, in full every time. The cross-file checks always run.

The cache lives in ``$ML_CONNECTOR_CACHE`` (``off`` turns it off), else ``$XDG_CACHE_HOME/ml-connector`` or
``~/.cache/ml-connector``; where it cannot be written the engine works without it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import ml_connector
from ml_connector.config import EXPRESSION_KINDS, ExpressionKind
from ml_connector.spec.checkutil import value_at
from ml_connector.spec.model import Spec
from ml_connector.spec.problems import JsonPath
from ml_connector.spec.schemas import SCHEMA_DIR
from ml_connector.spec.yamlload import SourceMap, YamlLimits

log = logging.getLogger(__name__)

ENV = "ML_CONNECTOR_CACHE"
KEEP = 2000  # entries kept: a put beyond it removes the oldest (1-190 KiB each, ~33 KiB on average with the shipped
# specs: about 70 MB when full; every engine or schema change leaves the old ones behind)


@dataclass(frozen=True)
class CachedSpec:
    """What a file that loaded without a problem is read back as: its data and line map, its data with the
    schema's defaults filled in, and the kind of each expression in that data by path."""

    data: Any
    source: SourceMap
    normalised: Any
    expressions: dict[JsonPath, ExpressionKind]


class SpecCache:
    """Loaded specs by a hash of their text and of the engine that loaded them."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    @classmethod
    def default(cls) -> SpecCache:
        setting = os.environ.get(ENV, "")
        if setting.lower() == "off":
            return cls(None)
        if setting:
            return cls(Path(setting) / "specs")
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return cls(Path(base) / "ml-connector" / "specs")

    def get(self, text: str, limits: YamlLimits) -> CachedSpec | None:
        """A file with exactly this text, when it loaded without a problem before within the same ``limits``."""
        if self.directory is None:
            return None
        try:
            entry = json.loads((self.directory / _key(text, limits)).read_text(encoding="utf-8"))
            lines = {tuple(path): int(line) for path, line in entry["lines"]}
            cached = CachedSpec(entry["data"], SourceMap(lines), entry["normalised"],
                                {tuple(path): kind for path, kind in entry["expressions"]})
            _check(cached)
            return cached
        except FileNotFoundError:
            return None
        except (OSError, ValueError, LookupError, TypeError) as exc:  # unreadable or damaged: load the file
            log.debug("spec cache entry not used: %s", exc)
            return None

    def put(self, text: str, limits: YamlLimits, spec: Spec) -> None:
        """Remember a file that loaded without a problem (data that JSON cannot hold exactly is not kept)."""
        if self.directory is None:
            return
        try:
            entry = json.dumps({
                "data": spec.data,
                "lines": [[list(path), line] for path, line in spec.source.lines().items()],
                "normalised": spec.normalised,
                "expressions": [[list(path), expr.kind] for path, expr in spec.expressions.items()],
            })
            again = json.loads(entry)
            if again["data"] != spec.data or again["normalised"] != spec.normalised:
                return
        except (TypeError, ValueError):
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".put-")
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(entry)
            os.replace(temporary, self.directory / _key(text, limits))
            self._prune()
        except OSError as exc:
            log.debug("spec cache not written: %s", exc)

    def _prune(self) -> None:
        assert self.directory is not None
        entries = [entry for entry in os.scandir(self.directory) if not entry.name.startswith(".")]
        if len(entries) <= KEEP:
            return
        entries.sort(key=lambda entry: entry.stat().st_mtime_ns)
        for entry in entries[:len(entries) - KEEP]:
            Path(entry.path).unlink(missing_ok=True)


def _check(cached: CachedSpec) -> None:
    """ValueError or LookupError unless the entry's parts fit together: its data objects, every expression of a
    known kind at a value of the defaulted data (``retype_spec`` takes them as they are)."""
    if not isinstance(cached.data, dict) or not isinstance(cached.normalised, dict):
        raise ValueError("the data of a spec is an object")
    for path, kind in cached.expressions.items():
        if kind not in EXPRESSION_KINDS:
            raise ValueError(f"unknown expression kind {kind!r}")
        value_at(cached.normalised, path)  # LookupError where the data has no such value


def _key(text: str, limits: YamlLimits) -> str:
    material = f"{_engine_salt()}\0{limits!r}\0".encode() + text.encode("utf-8")
    return hashlib.sha256(material).hexdigest()


@cache
def _engine_salt() -> str:
    """What a load depends on besides the text: the engine's code and the schemas (by size and modification time:
    an installed engine never changes under its version, an edited one does)."""
    digest = hashlib.sha256()
    for root in (Path(ml_connector.__file__).parent, SCHEMA_DIR):
        for path in sorted(root.rglob("*")):
            if path.suffix in (".py", ".json") and "__pycache__" not in path.parts:
                stat = path.stat()
                digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
