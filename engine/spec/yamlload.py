"""YAML loading that remembers the line of every node, so problems can name file and line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from engine.spec.problems import JsonPath, SpecError, SpecProblem, field_name

_MERGE_TAG = "tag:yaml.org,2002:merge"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class SpecLoader(yaml.SafeLoader):
    """SafeLoader that keeps dates and times as text: spec data is JSON data, where a date is a string."""


SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class SourceMap:
    """Line numbers (1-based) of the nodes of one YAML document, by JSON path.

    A mapping key's path maps to the line where the key is written, a sequence item's path to the line where
    the item starts. `problems` holds what the loader noticed without failing (duplicate or non-string keys).
    """

    def __init__(
        self, lines: dict[JsonPath, int] | None = None, problems: Sequence[SpecProblem] = ()
    ) -> None:
        self._lines: dict[JsonPath, int] = dict(lines or {})
        self.problems: list[SpecProblem] = list(problems)

    def line_of(self, path: Sequence[str | int]) -> int:
        """The line of `path`, or of its nearest existing parent (the document's first line at worst)."""
        current = tuple(path)
        while current:
            line = self._lines.get(current)
            if line is not None:
                return line
            current = current[:-1]
        return self._lines.get((), 1)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, tuple) and path in self._lines


def load_yaml(path: Path) -> tuple[Any, SourceMap]:
    """Parse one YAML file; a syntax error raises SpecError with the parser's line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(
            [SpecProblem(str(path), 1, "(root)", f"cannot read file: {_os_reason(exc)}")]
        ) from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse YAML text (one document) named `file` in problems; see `load_yaml`."""
    loader = SpecLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, SourceMap()
        problems = _duplicate_keys(node, file)
        data = loader.construct_document(node)
        lines: dict[JsonPath, int] = {(): node.start_mark.line + 1}
        _record_lines(loader, node, (), lines, problems, file, set())
        return data, SourceMap(lines, problems)
    except yaml.MarkedYAMLError as exc:
        raise SpecError([_syntax_problem(exc, file)]) from None
    except yaml.YAMLError as exc:
        raise SpecError([SpecProblem(file, 1, "(root)", f"YAML error: {type(exc).__name__}")]) from None
    finally:
        loader.dispose()


def _syntax_problem(exc: yaml.MarkedYAMLError, file: str) -> SpecProblem:
    """A YAML error as a problem; the message never quotes the document (it may hold secrets)."""
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    message = f"YAML syntax error: {exc.problem or exc.context or 'invalid YAML'}"
    if exc.problem and exc.context:
        started = exc.context_mark.line + 1 if exc.context_mark is not None else None
        message += f" ({exc.context}{f' started at line {started}' if started and started != line else ''})"
    return SpecProblem(file, line, "(root)", message)


def _os_reason(exc: Exception) -> str:
    return (exc.strerror or str(exc)) if isinstance(exc, OSError) else "not UTF-8 text"


def _duplicate_keys(
    node: Node, file: str, path: JsonPath = (), seen: set[int] | None = None
) -> list[SpecProblem]:
    """Keys written twice in one mapping (YAML would silently keep the last); merge keys excluded."""
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias: its anchor was checked already
        return []
    seen.add(id(node))
    problems: list[SpecProblem] = []
    if isinstance(node, MappingNode):
        first_line: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, ScalarNode) else "?"
            if isinstance(key, ScalarNode) and key.tag != _MERGE_TAG:
                line = key.start_mark.line + 1
                ident = (key.tag, key.value)
                if ident in first_line:
                    problems.append(
                        SpecProblem(
                            file,
                            line,
                            field_name((*path, name)),
                            f"duplicate key '{name}' (first written at line {first_line[ident]})",
                        )
                    )
                else:
                    first_line[ident] = line
            problems += _duplicate_keys(value, file, (*path, name), seen)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            problems += _duplicate_keys(item, file, (*path, index), seen)
    return problems


def _record_lines(
    loader: SpecLoader,
    node: Node,
    path: JsonPath,
    lines: dict[JsonPath, int],
    problems: list[SpecProblem],
    file: str,
    active: set[int],
) -> None:
    """Walk the (merge-flattened) node tree, recording the line of every key and item."""
    if id(node) in active:  # a recursive alias: stop
        return
    active.add(id(node))
    if isinstance(node, MappingNode):
        for key_node, value in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                problems.append(
                    SpecProblem(
                        file,
                        line,
                        field_name((*path, key_node.value)),
                        f"key '{key_node.value}' is read as {type(key).__name__}, not text; quote it",
                    )
                )
            child = (*path, key)
            lines[child] = line
            _record_lines(loader, value, child, lines, problems, file, active)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            _record_lines(loader, item, child, lines, problems, file, active)
    active.discard(id(node))
