"""A SOQL parser for the subset an integration uses (facts §3): fields with parent paths, one level of child
subqueries, WHERE with AND/OR/NOT and brackets, = != <> < <= > >= IN NOT IN LIKE, null, booleans, strings,
numbers, unquoted date and datetime literals; ORDER BY; LIMIT; OFFSET; COUNT().

Parsing only checks the grammar (MALFORMED_QUERY); names are checked against the org by ``query.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ml_connector.sandbox.salesforce.common import sf_error

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),])
""", re.VERBOSE)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
KEYWORDS = {"select", "from", "where", "and", "or", "not", "in", "like", "order", "by", "asc", "desc", "nulls",
            "first", "last", "limit", "offset", "null", "true", "false", "count", "includes", "excludes", "with",
            "group", "having", "using", "typeof"}


@dataclass(frozen=True)
class Literal:
    kind: str  # "string" | "number" | "boolean" | "null" | "date" | "datetime"
    value: Any  # str, float, bool, None, "YYYY-MM-DD", epoch ms (datetime)


@dataclass(frozen=True)
class Comparison:
    path: tuple[str, ...]  # ("Account", "ERP_Id__c")
    op: str  # "=", "!=", "<", "<=", ">", ">=", "IN", "NOT IN", "LIKE"
    value: Literal | tuple[Literal, ...]


@dataclass(frozen=True)
class BoolOp:
    op: str  # "AND" | "OR"
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


Condition = Comparison | BoolOp | Not


@dataclass(frozen=True)
class OrderItem:
    path: tuple[str, ...]
    descending: bool = False
    nulls_last: bool = False  # SOQL default: NULLS FIRST ascending, NULLS LAST descending


@dataclass
class Query:
    fields: list[tuple[str, ...]] = field(default_factory=list)
    subqueries: list[Query] = field(default_factory=list)
    count: bool = False
    sobject: str = ""
    where: Condition | None = None
    order: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None


class _Parser:
    def __init__(self, text: str, offset_without_colon: bool = False) -> None:
        self.text = text
        self.offset_without_colon = offset_without_colon
        self.tokens: list[tuple[str, str, int]] = []  # kind, text, column (1-based)
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None:
                self.tokens.append(("bad", text[pos], pos + 1))
                break
            if match.lastgroup != "ws":
                self.tokens.append((str(match.lastgroup), match.group(), pos + 1))
            pos = match.end()
        self.pos = 0

    # -- token helpers --------------------------------------------------------------------------------------
    def peek(self, offset: int = 0) -> tuple[str, str, int] | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def is_kw(self, *words: str, offset: int = 0) -> bool:
        token = self.peek(offset)
        return token is not None and token[0] == "name" and token[1].lower() in words

    def error(self) -> Exception:
        token = self.peek()
        if token is None:
            return sf_error("MALFORMED_QUERY", f"\n{self.text}\n\nERROR at Row:1:Column:{len(self.text)}\n"
                            "unexpected token: '<EOF>'")
        return sf_error("MALFORMED_QUERY", f"\n{self.text}\n{' ' * (token[2] - 1)}^\n"
                        f"ERROR at Row:1:Column:{token[2]}\nunexpected token: '{token[1]}'")

    def expect_kw(self, word: str) -> None:
        if not self.is_kw(word):
            raise self.error()
        self.pos += 1

    def expect(self, text: str) -> None:
        token = self.peek()
        if token is None or token[1] != text:
            raise self.error()
        self.pos += 1

    def name(self, *, keyword_ok: bool = False) -> tuple[str, ...]:
        token = self.peek()
        if token is None or token[0] != "name" or (token[1].lower() in KEYWORDS - {"count"} and not keyword_ok):
            raise self.error()
        self.pos += 1
        return tuple(token[1].split("."))

    def integer(self) -> int:
        token = self.peek()
        if token is None or token[0] != "number" or not token[1].isdigit():
            raise self.error()
        self.pos += 1
        return int(token[1])

    # -- grammar --------------------------------------------------------------------------------------------
    def query(self, nested: bool = False) -> Query:
        q = Query()
        self.expect_kw("select")
        while True:
            if self.is_kw("count") and self.peek(1) is not None and self.peek(1)[1] == "(":  # type: ignore[index]
                self.pos += 2
                self.expect(")")
                q.count = True
            elif self.peek() is not None and self.peek()[1] == "(":  # type: ignore[index]
                if nested:
                    raise self.error()
                self.pos += 1
                q.subqueries.append(self.query(nested=True))
                self.expect(")")
            else:
                q.fields.append(self.name())
            if self.peek() is not None and self.peek()[1] == ",":  # type: ignore[index]
                self.pos += 1
                continue
            break
        if q.count and (q.fields or q.subqueries):
            raise self.error()
        self.expect_kw("from")
        sobject = self.name(keyword_ok=True)  # FROM Order: an object may be named like a keyword
        if len(sobject) != 1:
            raise self.error()
        q.sobject = sobject[0]
        if self.is_kw("where"):
            self.pos += 1
            q.where = self.disjunction()
        if self.is_kw("order"):
            self.pos += 1
            self.expect_kw("by")
            q.order = self.order_items()
        if self.is_kw("limit"):
            self.pos += 1
            q.limit = self.integer()
        if self.is_kw("offset"):
            if nested:
                raise self.error()
            self.pos += 1
            q.offset = self.integer()
        token = self.peek()
        if token is not None and not (nested and token[1] == ")"):
            raise self.error()
        return q

    def order_items(self) -> list[OrderItem]:
        items = []
        while True:
            path = self.name()
            descending = False
            if self.is_kw("asc", "desc"):
                descending = self.peek()[1].lower() == "desc"  # type: ignore[index]
                self.pos += 1
            nulls_last = descending
            if self.is_kw("nulls"):
                self.pos += 1
                if not self.is_kw("first", "last"):
                    raise self.error()
                nulls_last = self.peek()[1].lower() == "last"  # type: ignore[index]
                self.pos += 1
            items.append(OrderItem(path, descending, nulls_last))
            if self.peek() is not None and self.peek()[1] == ",":  # type: ignore[index]
                self.pos += 1
                continue
            return items

    def disjunction(self) -> Condition:
        items = [self.conjunction()]
        while self.is_kw("or"):
            self.pos += 1
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else BoolOp("OR", tuple(items))

    def conjunction(self) -> Condition:
        items = [self.negation()]
        while self.is_kw("and"):
            self.pos += 1
            items.append(self.negation())
        return items[0] if len(items) == 1 else BoolOp("AND", tuple(items))

    def negation(self) -> Condition:
        if self.is_kw("not"):
            self.pos += 1
            return Not(self.negation())
        token = self.peek()
        if token is not None and token[1] == "(":
            self.pos += 1
            inner = self.disjunction()
            self.expect(")")
            return inner
        return self.comparison()

    def comparison(self) -> Comparison:
        path = self.name()
        token = self.peek()
        if token is None:
            raise self.error()
        if token[0] == "op":
            self.pos += 1
            op = "!=" if token[1] == "<>" else token[1]
            return Comparison(path, op, self.literal())
        if self.is_kw("like"):
            self.pos += 1
            value = self.literal()
            if value.kind != "string":
                raise sf_error("MALFORMED_QUERY", f"invalid LIKE operand for field {'.'.join(path)}")
            return Comparison(path, "LIKE", value)
        negated = False
        if self.is_kw("not") and self.is_kw("in", offset=1):
            self.pos += 1
            negated = True
        if self.is_kw("in"):
            self.pos += 1
            self.expect("(")
            values = [self.literal()]
            while self.peek() is not None and self.peek()[1] == ",":  # type: ignore[index]
                self.pos += 1
                values.append(self.literal())
            self.expect(")")
            return Comparison(path, "NOT IN" if negated else "IN", tuple(values))
        raise self.error()

    def literal(self) -> Literal:
        token = self.peek()
        if token is None:
            raise self.error()
        kind, text = token[0], token[1]
        self.pos += 1
        if kind == "string":
            return Literal("string", re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], m[0]), text[1:-1]))
        if kind == "number":
            return Literal("number", float(text))
        if kind == "date":
            try:
                datetime.strptime(text, "%Y-%m-%d")
            except ValueError:
                self.pos -= 1
                raise self.error() from None
            return Literal("date", text)
        if kind == "datetime":
            if not self.offset_without_colon and re.search(r"[+-]\d{4}$", text):
                self.pos -= 1
                raise self.error()
            if re.search(r"[+-]\d{4}$", text):
                text = text[:-2] + ":" + text[-2:]
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return Literal("datetime", int(round(moment.timestamp() * 1000)))
        if kind == "name" and text.lower() in {"true", "false"}:
            return Literal("boolean", text.lower() == "true")
        if kind == "name" and text.lower() == "null":
            return Literal("null", None)
        self.pos -= 1
        raise self.error()


def parse(text: str, *, offset_without_colon: bool = False) -> Query:
    """The parsed query, or 400 MALFORMED_QUERY. ``offset_without_colon``: accept ``...000+0000`` literals (the
    format the API answers in; the SOQL reference only documents ``Z`` and ``+hh:mm``: UNCONFIRMED, off)."""
    parser = _Parser(text.strip(), offset_without_colon)
    if not parser.tokens:
        raise sf_error("MALFORMED_QUERY", "unexpected token: '<EOF>'")
    return parser.query()
