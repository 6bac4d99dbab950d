"""PyYAML's parser messages in plain words, on the line an analyst has to change.

PyYAML reports where it gave up: an unclosed quote at the end of the file, a key without ':' on the next line.
The mistake is where the quote, the bracket or the key started (the error's context mark), so that line is named.
"""

from __future__ import annotations

import re

import yaml

#: `key: "text` or `- 'text` with no closing quote on the line (a spec writes each quoted value on one line).
_OPEN_QUOTE = re.compile(r"""^\s*(?:-\s+|[^#'"\s][^#'"]*?:\s+)(?:"(?:[^"\\]|\\.)*|'(?:[^']|'')*)$""")


def plain_syntax_error(exc: yaml.MarkedYAMLError) -> tuple[int, str] | None:
    """(line, message) for a common YAML mistake, or None for one said as PyYAML says it."""
    problem, context = exc.problem or "", exc.context or ""
    at = exc.problem_mark.line + 1 if exc.problem_mark is not None else 1
    started = exc.context_mark.line + 1 if exc.context_mark is not None else at
    unclosed = _unclosed_quote(exc.problem_mark, at)
    if unclosed is not None:  # a quote left open runs on to the next quote, lines later, and fails there
        return unclosed, "a quoted text that starts on this line is never closed (a missing closing quote)"
    if "'\\t'" in problem:
        return at, "a tab character: indent with spaces (YAML does not allow tabs)"
    if problem.startswith("could not find expected ':'"):
        return started, "a key without ':' (write 'key: value')"
    if "quoted scalar" in context:
        return started, "a quoted text that starts on this line is never closed (a missing closing quote)"
    if "flow mapping" in context:
        return started, "a '{' that opens on this line is not closed with '}' before the next key"
    if "flow sequence" in context:
        return started, "a '[' that opens on this line is not closed with ']' before the next key"
    if problem.startswith("found unhashable key"):
        if "{{" in _line(exc.problem_mark):
            return at, "a value that starts with '{' is read as a YAML mapping: quote the Jinja template, e.g. " \
                       "\"{{ name }}\""
        return at, "a mapping or a list is used as a key"
    if problem == "mapping values are not allowed here":
        return at, "this line is indented more than the key above it (or a value with ': ' in it needs quotes)"
    if problem.startswith("expected <block end>"):
        return at, "the indentation of this line does not match the lines above it"
    return None


def _line(mark: yaml.Mark | None) -> str:
    """The text of the line a mark points into ('' when the loader kept no buffer)."""
    if mark is None or not mark.buffer:
        return ""
    start = mark.buffer.rfind("\n", 0, mark.pointer) + 1
    end = mark.buffer.find("\n", mark.pointer)
    return mark.buffer[start:] if end < 0 else mark.buffer[start:end]


def _unclosed_quote(mark: yaml.Mark | None, error_line: int) -> int | None:
    """The first line before `error_line` whose quoted value does not close on that line, if any."""
    if mark is None or not mark.buffer:
        return None
    for number, text in enumerate(mark.buffer.split("\n")[: error_line - 1], 1):
        if _OPEN_QUOTE.match(text.rstrip("\0")):
            return number
    return None
