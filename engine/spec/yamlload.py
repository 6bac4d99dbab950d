"""YAML loading that remembers the line of every node, so problems can name file and line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ml_connector.spec.problems import JsonPath, SpecError, SpecProblem, field_name
from ml_connector.spec.yaml_words import plain_syntax_error

_MERGE_TAG = "tag:yaml.org,2002:merge"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


@dataclass(frozen=True)
class YamlLimits:
    """What one spec file may hold. A spec is small hand-written data; these bounds make a hostile file (an alias
    bomb, a huge or deeply nested file) a located problem found in milliseconds, before anything walks it."""

    max_bytes: int = 1_000_000
    max_nodes: int = 100_000  # nodes once every alias is expanded: what the validator and the engine will walk
    max_depth: int = 32


DEFAULT_LIMITS = YamlLimits()


class _Refused(yaml.YAMLError):
    """A file over one of the limits, at the line where it went over."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class SpecLoader(yaml.SafeLoader):
    """SafeLoader that keeps dates and times as text (spec data is JSON data, where a date is a string) and
    refuses nesting deeper than its limits while composing (the composer recurses once per level)."""

    def __init__(self, stream: str, limits: YamlLimits) -> None:
        super().__init__(stream)
        self.limits = limits
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > self.limits.max_depth:
                raise _Refused(self.peek_event().start_mark.line + 1, _too_deep(self.limits))
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


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

    def lines(self) -> dict[JsonPath, int]:
        """Every recorded line by path (a copy): what the spec cache keeps of a file that loaded without problems."""
        return dict(self._lines)


def load_yaml(path: Path, limits: YamlLimits = DEFAULT_LIMITS) -> tuple[Any, SourceMap]:
    """Parse one YAML file; a syntax error, or a file over `limits`, raises SpecError with its line.

    At most `max_bytes + 1` bytes are read, so an oversized file (or a device that never ends) costs nothing.
    """
    return parse_yaml(read_spec_text(path, limits), str(path), limits)


def read_spec_text(path: Path, limits: YamlLimits = DEFAULT_LIMITS) -> str:
    """The text of one spec file, read within `limits`; SpecError (at line 1) when it cannot be read or is too big."""
    try:
        with path.open("rb") as stream:
            raw = stream.read(limits.max_bytes + 1)
        if len(raw) > limits.max_bytes:
            raise SpecError([SpecProblem(str(path), 1, "(root)", _too_big(limits))])
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(
            [SpecProblem(str(path), 1, "(root)", f"cannot read file: {_os_reason(exc)}")]
        ) from None


def parse_yaml(text: str, file: str, limits: YamlLimits = DEFAULT_LIMITS) -> tuple[Any, SourceMap]:
    """Parse YAML text (one document) named `file` in problems; see `load_yaml`."""
    if len(text) > limits.max_bytes or len(text.encode("utf-8")) > limits.max_bytes:
        raise SpecError([SpecProblem(file, 1, "(root)", _too_big(limits))])
    loader = SpecLoader(text, limits)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, SourceMap()
        _measure(node, limits)
        problems = _duplicate_keys(node, file)
        data = loader.construct_document(node)
        lines: dict[JsonPath, int] = {(): node.start_mark.line + 1}
        _record_lines(loader, node, (), lines, problems, file, set())
        return data, SourceMap(lines, problems)
    except _Refused as exc:
        raise SpecError([SpecProblem(file, exc.line, "(root)", exc.message)]) from None
    except yaml.MarkedYAMLError as exc:
        raise SpecError([_syntax_problem(exc, file)]) from None
    except yaml.YAMLError as exc:
        raise SpecError([SpecProblem(file, 1, "(root)", f"YAML error: {type(exc).__name__}")]) from None
    finally:
        loader.dispose()


def _measure(root: Node, limits: YamlLimits) -> None:
    """Refuse a document whose expanded tree (every alias replaced by its anchor's content) is too big or deep.

    Aliases share their anchor's node, so each distinct node is measured once and its (nodes, depth) reused:
    linear in the file, however many times a billion-laughs document would repeat itself when expanded.
    """
    measured: dict[int, tuple[int, int]] = {}
    open_nodes: set[int] = set()

    def measure(node: Node, depth: int) -> tuple[int, int]:
        known = measured.get(id(node))
        if known is not None:
            return known
        if id(node) in open_nodes:
            message = "an alias repeats a node that contains it (recursive data); refused"
            raise _Refused(node.start_mark.line + 1, message)
        open_nodes.add(id(node))
        children: list[Node] = []
        if isinstance(node, MappingNode):
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, SequenceNode):
            children = node.value
        count, deepest = 1, 0
        for child in children:
            child_count, child_depth = measure(child, depth + 1)
            count += child_count
            deepest = max(deepest, child_depth)
            if count > limits.max_nodes:
                raise _Refused(node.start_mark.line + 1, _too_many(limits))
            if depth + child_depth > limits.max_depth:
                raise _Refused(node.start_mark.line + 1, _too_deep(limits))
        open_nodes.discard(id(node))
        measured[id(node)] = (count, deepest + 1)
        return count, deepest + 1

    measure(root, 1)


def _too_big(limits: YamlLimits) -> str:
    return f"the file is larger than {limits.max_bytes} bytes; refused"


def _too_many(limits: YamlLimits) -> str:
    return f"the YAML expands to more than {limits.max_nodes} nodes (aliases repeat what their anchor holds); refused"


def _too_deep(limits: YamlLimits) -> str:
    return f"the YAML is nested deeper than {limits.max_depth} levels; refused"


def _syntax_problem(exc: yaml.MarkedYAMLError, file: str) -> SpecProblem:
    """A YAML error as a problem; the message never quotes the document (it may hold secrets)."""
    plain = plain_syntax_error(exc)
    if plain is not None:
        return SpecProblem(file, plain[0], "(root)", f"YAML syntax error: {plain[1]}")
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
