"""COQL, Zoho's SQL-like read API (`POST /crm/v8/coql`, facts §4): a tokenizer, a recursive-descent parser, a
checker against the module's fields and an evaluator over the store.

Nothing is ``eval``-ed: a query becomes a small tree (:class:`Cond`, :class:`And`, :class:`Or`) that is interpreted.
The parser is as strict as Zoho: WHERE is mandatory, every ``and``/``or`` joins exactly two criteria (more need
brackets), LIMIT ≤ 2,000, LIMIT+OFFSET ≤ 100,000, ≤ 25 criteria, ``in`` ≤ 50 values, ORDER BY ≤ 10 fields, lookup
paths at most two joins deep. Not supported (SYNTAX_ERROR): aggregates, GROUP BY, aliases, ``select *``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ml_connector.sandbox.core import is_date
from ml_connector.sandbox.zoho.common import ApiError, ZohoContext, json_response, parse_iso, read_json, zoho_error

MAX_LIMIT = 2000
DEFAULT_LIMIT = 200
MAX_REACH = 100_000
MAX_CRITERIA = 25
MAX_IN_VALUES = 50
MAX_ORDER_FIELDS = 10
MAX_LOOKUP_DEPTH = 2
MAX_COLUMNS = 50  # UNCONFIRMED: 50 (v7) or 500 (v8); the stricter
SYNTAX_MESSAGE = "invalid query formed"
LOOKUP_OPERATORS = frozenset({"=", "!=", "in", "not in", "is null", "is not null"})
KEYWORDS = frozenset({
    "select", "from", "where", "and", "or", "not", "in", "between", "like", "is", "null", "order", "by", "asc",
    "desc", "limit", "offset", "true", "false",
})
_TOKEN = re.compile(
    r"(?P<space>\s+)|(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d+)?)(?![\w.])"
    r"|(?P<name>[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*)|(?P<op>!=|>=|<=|=|>|<)|(?P<punct>[(),])"
)


class CoqlError(Exception):
    """A query Zoho refuses: the error envelope's code, message and details (HTTP 400)."""

    def __init__(self, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(f"{code}: {message} {details}")
        self.code = code
        self.message = message
        self.details = details


@dataclass(frozen=True)
class Token:
    kind: str  # "string" | "number" | "name" | "keyword" | "op" | "punct" | "end"
    text: str
    value: Any
    line: int
    column: int


@dataclass(frozen=True)
class Cond:
    """One criterion: ``field op value``; ``value`` is a tuple for between/in, None for is (not) null."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class And:
    items: tuple[Any, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Any, ...]


Node = Cond | And | Or


@dataclass
class Query:
    columns: list[str]
    module: str
    where: Node
    order_by: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    limit: int = DEFAULT_LIMIT
    offset: int = 0


def credits(limit: int) -> int:
    """What a COQL call costs, by its LIMIT (facts §4/§6)."""
    return 1 if limit <= 200 else 2 if limit <= 1000 else 3


def conditions(node: Node) -> Iterator[Cond]:
    if isinstance(node, Cond):
        yield node
    else:
        for item in node.items:
            yield from conditions(item)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos, line, line_start = 0, 1, 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        column = pos - line_start + 1
        if match is None:
            near = text[pos:].split()[0] if text[pos:].strip() else text[pos]
            raise CoqlError("SYNTAX_ERROR", SYNTAX_MESSAGE, {"line": line, "column": column, "near": near[:20]})
        kind = match.lastgroup or ""
        raw = match.group()
        if kind == "space":
            line += raw.count("\n")
            if "\n" in raw:
                line_start = pos + raw.rindex("\n") + 1
        elif kind == "string":
            tokens.append(Token("string", raw, raw[1:-1].replace("''", "'"), line, column))
        elif kind == "number":
            tokens.append(Token("number", raw, float(raw) if "." in raw else int(raw), line, column))
        elif kind == "name" and raw.lower() in KEYWORDS:
            tokens.append(Token("keyword", raw, raw.lower(), line, column))
        else:
            tokens.append(Token(kind, raw, raw, line, column))
        pos = match.end()
    tokens.append(Token("end", "", None, line, len(text) - line_start + 1))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.at = 0

    # -- token helpers
    @property
    def token(self) -> Token:
        return self.tokens[self.at]

    def is_kw(self, *words: str) -> bool:
        return self.token.kind == "keyword" and self.token.value in words

    def fail(self, token: Token | None = None) -> CoqlError:
        token = token or self.token
        near = token.text or (self.tokens[self.at - 1].text if self.at else "")
        return CoqlError("SYNTAX_ERROR", SYNTAX_MESSAGE, {"line": token.line, "column": token.column, "near": near})

    def take(self) -> Token:
        token = self.token
        self.at += 1
        return token

    def expect_kw(self, word: str) -> Token:
        if not self.is_kw(word):
            raise self.fail()
        return self.take()

    def expect_punct(self, char: str) -> Token:
        if self.token.kind != "punct" or self.token.text != char:
            raise self.fail()
        return self.take()

    def name(self) -> str:
        if self.token.kind != "name":
            raise self.fail()
        return str(self.take().value)

    def value(self) -> Any:
        token = self.token
        if token.kind in {"string", "number"} or self.is_kw("true", "false"):
            self.take()
            return {"true": True, "false": False}.get(token.value, token.value) if token.kind == "keyword" \
                else token.value
        raise self.fail()

    # -- grammar
    def query(self) -> Query:
        self.expect_kw("select")
        columns = [self.column()]
        while self.token.text == ",":
            self.take()
            columns.append(self.column())
        if not self.is_kw("from"):
            if self.is_kw("where", "order", "limit") or self.token.kind == "end":
                raise CoqlError("SYNTAX_ERROR", SYNTAX_MESSAGE, {"clause": "from"})
            raise self.fail()
        self.take()
        module = self.name()
        if not self.is_kw("where"):
            if self.is_kw("order", "limit", "offset") or self.token.kind == "end":
                raise CoqlError("SYNTAX_ERROR", SYNTAX_MESSAGE, {"clause": "where"})
            raise self.fail()
        self.take()
        where = self.expression()
        query = Query(columns, module, where)
        if self.is_kw("order"):
            self.take()
            self.expect_kw("by")
            query.order_by.append(self.order_item())
            while self.token.text == ",":
                self.take()
                query.order_by.append(self.order_item())
        if self.is_kw("limit"):
            self.take()
            query.limit = self.count()
            if self.token.text == ",":  # LIMIT offset, count (MySQL style, documented by Zoho)
                self.take()
                query.offset, query.limit = query.limit, self.count()
        if self.is_kw("offset"):
            self.take()
            query.offset = self.count()
        if self.token.kind != "end":
            raise self.fail()
        return query

    def column(self) -> str:
        name = self.name()
        if name.count(".") > MAX_LOOKUP_DEPTH:
            raise CoqlError("INVALID_QUERY", "column given seems to be invalid",
                            {"column_name": name, "reason": "lookup depth exceeded"})
        return name

    def count(self) -> int:
        token = self.token
        if token.kind != "number" or not isinstance(token.value, int) or token.value < 0:
            raise self.fail()
        self.take()
        return int(token.value)

    def order_item(self) -> tuple[str, bool]:
        name = self.column()
        if self.is_kw("asc", "desc"):
            return name, self.take().value == "desc"
        return name, False

    def expression(self) -> Node:
        left = self.operand()
        if self.is_kw("and", "or"):
            word = self.take().value
            right = self.operand()
            if self.is_kw("and", "or"):  # a third criterion without brackets: Zoho refuses it
                raise self.fail()
            return And((left, right)) if word == "and" else Or((left, right))
        return left

    def operand(self) -> Node:
        if self.token.text == "(" and self.token.kind == "punct":
            self.take()
            node = self.expression()
            self.expect_punct(")")
            return node
        return self.condition()

    def condition(self) -> Cond:
        name = self.column()
        token = self.token
        if token.kind == "op":
            self.take()
            return Cond(name, token.text, self.value())
        negated = False
        if self.is_kw("is"):
            self.take()
            if self.is_kw("not"):
                self.take()
                negated = True
            self.expect_kw("null")
            return Cond(name, "is not null" if negated else "is null", None)
        if self.is_kw("not"):
            self.take()
            negated = True
        prefix = "not " if negated else ""
        if self.is_kw("between"):
            self.take()
            low = self.value()
            self.expect_kw("and")
            return Cond(name, prefix + "between", (low, self.value()))
        if self.is_kw("in"):
            self.take()
            self.expect_punct("(")
            values = [self.value()]
            while self.token.text == ",":
                self.take()
                values.append(self.value())
            self.expect_punct(")")
            if len(values) > MAX_IN_VALUES:
                raise CoqlError("LIMIT_EXCEEDED", "limit exceeded", {"clause": "in", "limit": MAX_IN_VALUES})
            return Cond(name, prefix + "in", tuple(values))
        if self.is_kw("like"):
            self.take()
            pattern = self.value()
            if not isinstance(pattern, str) or not _like_ok(pattern):
                details = {"column_name": name, "operator": prefix + "like", "reason": "unsupported like pattern"}
                raise CoqlError("INVALID_QUERY", "invalid query formed", details)
            return Cond(name, prefix + "like", pattern)
        raise self.fail()


def _like_ok(pattern: str) -> bool:
    """Only ``'%x%'``, ``'x%'`` and ``'%x'`` (facts §4)."""
    core = pattern.removeprefix("%").removesuffix("%") if len(pattern) > 1 else pattern
    return "%" in pattern and "%" not in core and core != ""


def parse(text: str) -> Query:
    """A COQL query's tree; raises :class:`CoqlError` (SYNTAX_ERROR, LIMIT_EXCEEDED, INVALID_QUERY)."""
    query = _Parser(text).query()
    if sum(1 for _ in conditions(query.where)) > MAX_CRITERIA:
        raise CoqlError("LIMIT_EXCEEDED", "limit exceeded", {"clause": "where", "limit": MAX_CRITERIA})
    if len(query.columns) > MAX_COLUMNS:
        raise CoqlError("LIMIT_EXCEEDED", "limit exceeded", {"clause": "select", "limit": MAX_COLUMNS})
    if len(query.order_by) > MAX_ORDER_FIELDS:
        raise CoqlError("LIMIT_EXCEEDED", "limit exceeded", {"clause": "order by", "limit": MAX_ORDER_FIELDS})
    if query.limit > MAX_LIMIT:
        raise CoqlError("LIMIT_EXCEEDED", "limit exceeded", {"clause": "limit", "limit": MAX_LIMIT})
    if query.limit + query.offset > MAX_REACH:
        raise CoqlError("LIMIT_EXCEEDED", "limit exceeded", {"clause": "offset", "limit": MAX_REACH})
    return query


# --- checking against the module's fields ------------------------------------------------------------------------

NUMERIC_TYPES = frozenset({"integer", "bigint", "long", "double", "currency", "percent", "autonumber_num"})
LOOKUP_TYPES = frozenset({"lookup", "ownerlookup", "userlookup"})
TEXT_TYPES = frozenset({"text", "textarea", "email", "phone", "website", "mediumtext", "picklist", "autonumber",
                        "multiselectpicklist", "formula"})
_SYSTEM = {
    "id": {"api_name": "id", "data_type": "id"},
    "Created_Time": {"api_name": "Created_Time", "data_type": "datetime"},
    "Modified_Time": {"api_name": "Modified_Time", "data_type": "datetime"},
}
ORDERED_FIELDS = ("id", "Created_Time", "Modified_Time")
_MAX_ID = "9" * 20


def _invalid_column(name: str) -> CoqlError:
    return CoqlError("INVALID_QUERY", "column given seems to be invalid",
                     {"column_name": name, "reason": "invalid column given"})


@dataclass(frozen=True)
class Path:
    """A column resolved against the metadata: the lookup hops (field, target module) and the final field."""

    name: str
    hops: tuple[tuple[str, str], ...]
    field: dict[str, Any]

    @property
    def data_type(self) -> str:
        return str(self.field.get("data_type", "text"))


class Resolver:
    """Column names to :class:`Path` (fields of the module and of the modules its lookups point to)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._fields: dict[str, dict[str, dict[str, Any]]] = {}

    def fields(self, module: str) -> dict[str, dict[str, Any]]:
        if module not in self._fields:
            known = {f["api_name"]: f for f in self.store.fields(module)}
            self._fields[module] = {**known, **_SYSTEM}  # ids compare as integers, never as (lossy) floats
        return self._fields[module]

    def resolve(self, module: str, name: str) -> Path:
        parts = name.split(".")
        hops: list[tuple[str, str]] = []
        current = module
        for part in parts[:-1]:
            spec = self.fields(current).get(part)
            target = ((spec or {}).get("lookup") or {}).get("module", {}).get("api_name")
            if spec is None or spec.get("data_type") != "lookup" or not target or not self.store.has_module(target):
                raise _invalid_column(name)
            hops.append((part, target))
            current = target
        spec = self.fields(current).get(parts[-1])
        if spec is None or spec.get("data_type") == "subform":
            raise _invalid_column(name)
        return Path(name, tuple(hops), spec)


def _value_error(path: Path, expected: str) -> CoqlError:
    return CoqlError("INVALID_QUERY", "value given seems to be invalid for the column",
                     {"column_name": path.name, "expected_data_type": expected})


def _operator_error(path: Path, op: str) -> CoqlError:
    return CoqlError("INVALID_QUERY", "invalid operator found",
                     {"column_name": path.name, "operator": op, "reason": "operator not supported for the column"})


def _convert(path: Path, value: Any) -> Any:
    """A literal of the query as the comparable form of the column's type (or INVALID_QUERY)."""
    kind = path.data_type
    if kind == "datetime":
        try:
            return parse_iso(value) if isinstance(value, str) else _fail(path, "datetime")
        except ValueError:
            raise _value_error(path, "datetime") from None
    if kind == "date":
        return value if is_date(value) else _fail(path, "date")
    if kind in NUMERIC_TYPES:
        if isinstance(value, bool):
            _fail(path, kind)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _value_error(path, kind) from None
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false"}:
            return value.lower() == "true"
        _fail(path, "boolean")
    if kind in LOOKUP_TYPES or kind == "id":
        text = str(value) if not isinstance(value, bool) else ""
        return int(text) if text.isdigit() else _fail(path, "bigint")
    if isinstance(value, bool):
        _fail(path, kind)
    return str(value) if not isinstance(value, float) else str(value)


def _fail(path: Path, expected: str) -> Any:
    raise _value_error(path, expected)


def comparable(path: Path, raw: Any) -> Any:
    """A stored value in the comparable form of its type; None for empty."""
    if raw is None or raw == "" or raw == []:
        return None
    kind = path.data_type
    try:
        if kind == "datetime":
            return parse_iso(raw)
        if kind in NUMERIC_TYPES:
            return float(raw)
        if kind in LOOKUP_TYPES:
            return int(raw["id"]) if isinstance(raw, dict) and str(raw.get("id", "")).isdigit() else None
        if kind == "id":
            return int(raw)
    except (TypeError, ValueError):
        return None
    if kind == "boolean":
        return bool(raw)
    if isinstance(raw, list):
        return ";".join(str(item) for item in raw)
    return raw if isinstance(raw, str) else str(raw)


@dataclass(frozen=True)
class Check:
    """A criterion ready to run: the resolved column, the operator and the converted value(s)."""

    path: Path
    op: str
    value: Any

    def test(self, actual: Any) -> bool:
        op = self.op
        if op == "is null":
            return actual is None
        if op == "is not null":
            return actual is not None
        if actual is None:
            return False
        try:
            if op == "=":
                return bool(actual == self.value)
            if op == "!=":
                return bool(actual != self.value)
            if op == ">":
                return bool(actual > self.value)
            if op == ">=":
                return bool(actual >= self.value)
            if op == "<":
                return bool(actual < self.value)
            if op == "<=":
                return bool(actual <= self.value)
            if op in {"between", "not between"}:
                inside = bool(self.value[0] <= actual <= self.value[1])
                return inside if op == "between" else not inside
            if op in {"in", "not in"}:
                return (actual in self.value) == (op == "in")
        except TypeError:
            return False
        pattern: str = self.value
        text = str(actual)
        core = pattern.strip("%")
        if pattern.startswith("%") and pattern.endswith("%"):
            hit = core in text
        elif pattern.endswith("%"):
            hit = text.startswith(core)
        else:
            hit = text.endswith(core)
        return hit == (op == "like")


def compile_where(node: Node, module: str, resolver: Resolver) -> Any:
    """The WHERE tree with every criterion checked against the metadata (INVALID_QUERY otherwise)."""
    if isinstance(node, (And, Or)):
        return type(node)(tuple(compile_where(item, module, resolver) for item in node.items))
    path = resolver.resolve(module, node.field)
    kind = path.data_type
    if kind in LOOKUP_TYPES and node.op not in LOOKUP_OPERATORS:
        raise _operator_error(path, node.op)
    if "like" in node.op and kind not in TEXT_TYPES:
        raise _operator_error(path, node.op)
    if kind == "boolean" and node.op not in {"=", "!=", "is null", "is not null"}:
        raise _operator_error(path, node.op)
    if node.value is None:
        value: Any = None
    elif isinstance(node.value, tuple):
        value = tuple(_convert(path, item) for item in node.value)
        if "in" in node.op:
            value = frozenset(value)
    elif "like" in node.op:
        value = node.value
    else:
        value = _convert(path, node.value)
    return Check(path, node.op, value)


# --- running a query over the store ----------------------------------------------------------------------------


def _matches(node: Any, row: _Row) -> bool:
    if isinstance(node, Check):
        return node.test(row.comparable(node.path))
    if isinstance(node, And):
        return all(_matches(item, row) for item in node.items)
    return any(_matches(item, row) for item in node.items)


class _Row:
    """One record with its lookups followed lazily (and cached per query)."""

    def __init__(self, record: dict[str, Any], store: Any, cache: dict[tuple[str, str], dict[str, Any] | None]):
        self.record = record
        self.store = store
        self.cache = cache

    def raw(self, path: Path) -> Any:
        current: dict[str, Any] | None = self.record
        for field_name, target in path.hops:
            ref = (current or {}).get(field_name)
            if not isinstance(ref, dict) or not ref.get("id"):
                return None
            key = (target, str(ref["id"]))
            if key not in self.cache:
                self.cache[key] = self.store.get(target, key[1])
            current = self.cache[key]
        return None if current is None else current.get(path.field["api_name"])

    def comparable(self, path: Path) -> Any:
        return comparable(path, self.raw(path))

    def output(self, path: Path) -> Any:
        value = self.raw(path)
        if path.data_type in LOOKUP_TYPES and isinstance(value, dict):
            return {"id": value.get("id"), "name": value.get("name")}
        return value


def _bounds(node: Any, order_field: str) -> tuple[Any, bool, Any, bool]:
    """(low, low_inclusive, high, high_inclusive) on the order field from the top-level ``and`` criteria."""
    low: Any = None
    high: Any = None
    low_inc = high_inc = True
    checks = [node] if isinstance(node, Check) else list(_conjuncts(node))
    for check in checks:
        if check.path.name != order_field or check.value is None:
            continue
        op, value = check.op, check.value
        if op in {">", ">=", "="} and (low is None or value > low or (value == low and op == ">")):
            low, low_inc = value, op != ">"
        if op in {"<", "<=", "="} and (high is None or value < high or (value == high and op == "<")):
            high, high_inc = value, op != "<"
        if op == "between":
            if low is None or value[0] > low:
                low, low_inc = value[0], True
            if high is None or value[1] < high:
                high, high_inc = value[1], True
    return low, low_inc, high, high_inc


def _conjuncts(node: Any) -> Iterator[Check]:
    if isinstance(node, Check):
        yield node
    elif isinstance(node, And):
        for item in node.items:
            yield from _conjuncts(item)


def _store_key(order_field: str, value: Any, inclusive_side: bool) -> tuple[Any, str]:
    """A store index key just before (inclusive) or just after (exclusive) ``value`` in ascending order."""
    if order_field == "id":
        return (str(int(value)).rjust(19, "0"), "" if inclusive_side else _MAX_ID)
    whole = float(int(value // 1))
    if whole != value:  # the store keeps whole seconds: every record at ``whole`` is on the same side
        return (whole, _MAX_ID)
    return (whole, "" if inclusive_side else _MAX_ID)


@dataclass
class Plan:
    """A query checked against the metadata, ready to run (checking first: a refused query costs no credit)."""

    store: Any
    query: Query
    where: Any
    columns: list[Path]
    order: list[tuple[Path, bool]]

    def run(self) -> tuple[list[dict[str, Any]], bool]:
        """The page of rows asked for and whether more match; stops as early as the ordering allows."""
        query, store = self.query, self.store
        cache: dict[tuple[str, str], dict[str, Any] | None] = {}
        wanted = query.offset + query.limit + 1
        first, descending = self.order[0]
        subform = self._subform_parents()
        indexed = subform is None and first.name in ORDERED_FIELDS and not first.hops and (
            len(self.order) == 1
            or (len(self.order) == 2 and self.order[1][0].name == "id" and self.order[1][1] == descending))
        if indexed:
            matched = self._walk(first, descending, wanted, cache)
        else:
            source = store.records(query.module) if subform is None else self._subform_rows(subform)
            matched = [row for row in (_Row(r, store, cache) for r in source) if _matches(self.where, row)]
            for path, desc in reversed(self.order):
                matched.sort(key=_sorter(path), reverse=desc)
        page = matched[query.offset:query.offset + query.limit]
        more = len(matched) > query.offset + query.limit
        return [_output(row, self.columns) for row in page], more

    def _subform_parents(self) -> list[str] | None:
        """The parent modules whose line items this (subform) module holds; None for an ordinary module."""
        catalog = getattr(self.store, "catalog", {})
        definition = catalog.get(self.query.module)
        if getattr(definition, "generated_type", "") != "subform":
            return None
        return [name for name, module in catalog.items() if self.query.module in getattr(module, "rows", {})]

    def _subform_rows(self, parents: list[str]) -> Iterator[dict[str, Any]]:
        """Line items are kept inside their parent: read the parents named by ``Parent_Id`` (or all of them)."""
        wanted: set[str] | None = None
        for check in _conjuncts(self.where):
            if check.path.name == "Parent_Id" and check.op in {"=", "in"}:
                values = check.value if check.op == "in" else {check.value}
                ids = {str(value) for value in values}
                wanted = ids if wanted is None else wanted & ids
        for parent in parents:
            ids_of_parent = sorted(wanted) if wanted is not None else list(self.store.ids(parent))
            for parent_id in ids_of_parent:
                record = self.store.get(parent, parent_id)
                yield from (record or {}).get(self.query.module) or []

    def _walk(self, first: Path, descending: bool, wanted: int,
              cache: dict[tuple[str, str], dict[str, Any] | None]) -> list[_Row]:
        """The store's ordered iterator, started past the range's near bound, stopped at its far bound."""
        low, low_inc, high, high_inc = _bounds(self.where, first.name)
        after = None
        if not descending and low is not None:
            after = _store_key(first.name, low, low_inc)
        elif descending and high is not None:
            after = _store_key(first.name, high, not high_inc)
        matched: list[_Row] = []
        for record in self.store.records(self.query.module, order_by=first.name, descending=descending,
                                         after=after):
            row = _Row(record, self.store, cache)
            value = row.comparable(first)
            if not descending and high is not None and value is not None and (
                    value > high or (value == high and not high_inc)):
                break
            if descending and low is not None and value is not None and (
                    value < low or (value == low and not low_inc)):
                break
            if _matches(self.where, row):
                matched.append(row)
                if len(matched) >= wanted:
                    break
        return matched


def prepare(store: Any, query: Query) -> Plan:
    """Check the query's module, columns, operators and values (INVALID_QUERY otherwise)."""
    if not store.has_module(query.module):
        raise CoqlError("INVALID_QUERY", "invalid module given", {"module": query.module, "reason": "invalid module"})
    resolver = Resolver(store)
    where = compile_where(query.where, query.module, resolver)
    columns = [resolver.resolve(query.module, name) for name in query.columns]
    order = [(resolver.resolve(query.module, name), desc) for name, desc in query.order_by] or \
        [(resolver.resolve(query.module, "id"), False)]
    for path, _ in order:
        if path.data_type in {"multiselectpicklist", "textarea"}:
            raise CoqlError("INVALID_QUERY", "data type not supported",
                            {"column_name": path.name, "reason": "order by not supported for the column"})
    return Plan(store, query, where, columns, order)


def run(store: Any, query: Query) -> tuple[list[dict[str, Any]], bool]:
    return prepare(store, query).run()


def _sorter(path: Path) -> Callable[[_Row], tuple[int, Any]]:
    return lambda row: _sort_key(row.comparable(path))


def _sort_key(value: Any) -> tuple[int, Any]:
    """Empty values first (ascending), then by value; mixed types never compare."""
    if value is None:
        return (0, "")
    return (1, value) if not isinstance(value, str) else (2, value)


def _output(row: _Row, columns: list[Path]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in columns:
        out[path.name] = row.output(path)
    out["id"] = row.record["id"]
    return out


# --- the route -----------------------------------------------------------------------------------------------------

CONFIG_DEFAULTS: dict[str, Any] = {
    "coql_empty_status": 204,  # UNCONFIRMED (facts §4): 204 without a body when nothing matches; or 200, empty page
}


def module_scope(store: Any, module: str, action: str) -> str:
    """The OAuth scope reading a module needs (facts §1.5: ``ZohoCRM.modules.purchaseorders.READ``)."""
    definition = store.module(module) if hasattr(store, "module") else None
    name = getattr(definition, "module_name", module)
    return f"ZohoCRM.modules.{name.lower()}.{action}"


def routes(ctx: ZohoContext) -> list[BaseRoute]:
    for key, value in CONFIG_DEFAULTS.items():
        ctx.config.setdefault(key, value)

    async def coql(request: Request) -> Response:
        try:
            org = ctx.authorize(request, "ZohoCRM.coql.READ")
            body = await read_json(request)
            text = body.get("select_query") if isinstance(body, dict) else None
            if not isinstance(text, str) or not text.strip():
                return zoho_error("MANDATORY_NOT_FOUND", "required field not found",
                                  details={"api_name": "select_query", "json_path": "$.select_query"})
            store = ctx.store_for(org)
            try:
                query = parse(text)
                if store.has_module(query.module):
                    ctx.authorize(request, module_scope(store, query.module, "READ"))
                plan = prepare(store, query)
            except CoqlError as exc:
                return zoho_error(exc.code, exc.message, details=exc.details)
            async with ctx.slot(org, complex_api=True):
                ctx.charge(org, credits(plan.query.limit))
                rows, more = plan.run()
        except ApiError as exc:
            return exc.response
        if not rows and int(ctx.config["coql_empty_status"]) == 204:
            return Response(status_code=204)
        return json_response({"data": rows, "info": {"count": len(rows), "more_records": more}})

    return [Route("/crm/v8/coql", coql, methods=["POST"])]
