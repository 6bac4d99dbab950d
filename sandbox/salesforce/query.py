"""``/query`` and ``/queryAll`` (facts §3): compiled SOQL run over the store's sorted indexes, in pages.

A query ordered by Id, or by SystemModstamp (then Id), walks the matching index from the bounds its WHERE puts
on that field, so a page costs the same at any table size; the cursor resumes after the last key served.
Other orders sort the matches once, when the query starts, and the cursor keeps that list.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ml_connector.sandbox.salesforce.common import Call, sf_error
from ml_connector.sandbox.salesforce.context import Org
from ml_connector.sandbox.salesforce.ids import make_id, to18
from ml_connector.sandbox.salesforce.objects import FieldDef, ObjectDef
from ml_connector.sandbox.salesforce.soql import BoolOp, Comparison, Condition, Literal, Not, OrderItem, Query, parse
from ml_connector.sandbox.salesforce.store import SalesforceStore, parse_sf_datetime

_NUMERIC = {"currency", "double", "int", "percent"}
_TEXT_LIKE = {"string", "textarea", "email", "phone", "url", "picklist", "id", "reference"}
_MAX_ID_KEY = "~"  # sorts after every id (ids are alphanumeric)


@dataclass(frozen=True)
class Path:
    """A field path resolved against the org: the lookups to follow, then the field."""

    hops: tuple[tuple[FieldDef, ObjectDef], ...]
    field: FieldDef
    names: tuple[str, ...]  # canonical names: ("Account", "ERP_Id__c")


@dataclass
class Plan:
    definition: ObjectDef
    query: Query
    fields: list[Path]
    children: list[tuple[str, Plan]]  # relationship name, its plan
    child_field: str = ""  # for a child plan: the reference to the parent
    where: Callable[[dict[str, Any]], bool] = lambda rec: True
    index: str | None = None  # "Id" | "SystemModstamp" | None (sort)
    descending: bool = False
    bounds: tuple[Any, Any] = (None, None)  # index keys (inclusive; sentinels never equal a real key)
    bounds_cover_where: bool = False  # the WHERE is exactly the bounds: counts come from bisection


@dataclass
class Cursor:
    locator: str
    plan: Plan
    version: str
    deleted: bool
    created: float
    batch: int
    total: int
    positions: dict[int, Any] = field(default_factory=dict)  # rows served -> index key to resume after
    ids: list[str] | None = None  # sorted plans: every matching id, in order


class Engine:
    """Compiles and runs queries over one org's store."""

    def __init__(self, org: Org) -> None:
        self.org = org
        self.store: SalesforceStore = org.store
        self.scanned = 0  # records examined by the last page (tests: a page's cost)

    # -- compile --------------------------------------------------------------------------------------------
    def plan(self, query: Query, *, definition: ObjectDef | None = None) -> Plan:
        if definition is None:
            found = self.store.definition(query.sobject)
            if found is None:
                raise sf_error("INVALID_TYPE", f"sObject type '{query.sobject}' is not supported.")
            definition = found
        plan = Plan(definition, query, [self.path(definition, p) for p in query.fields], [])
        for sub in query.subqueries:
            relation = definition.child(sub.sobject)
            child = self.store.definition(relation.child) if relation else None
            if relation is None or child is None:
                raise sf_error("INVALID_TYPE", f"Didn't understand relationship '{sub.sobject}' in FROM part of "
                               "query call. If you are attempting to use a custom relationship, be sure to "
                               "append the '__r' after the custom relationship name. Please reference your WSDL "
                               "or the describe call for the appropriate names.")
            child_plan = self.plan(sub, definition=child)
            child_plan.child_field = relation.field
            plan.children.append((relation.name, child_plan))
        if query.where is not None:
            plan.where = self.condition(definition, query.where)
        for item in query.order:
            self.path(definition, item.path)
        self._choose_index(plan)
        return plan

    def path(self, definition: ObjectDef, path: tuple[str, ...]) -> Path:
        hops: list[tuple[FieldDef, ObjectDef]] = []
        current = definition
        names: list[str] = []
        for relation in path[:-1]:
            ref = current.relationship(relation)
            target = self.store.definition(ref.reference_to[0]) if ref and ref.reference_to else None
            if ref is None or target is None:
                raise sf_error("INVALID_FIELD", f"Didn't understand relationship '{relation}' in field path. If "
                               "you are attempting to use a custom relationship, be sure to append the '__r' "
                               "after the custom relationship name. Please reference your WSDL or the describe "
                               "call for the appropriate names.")
            hops.append((ref, target))
            names.append(str(ref.relationship))
            current = target
        found = current.field(path[-1])
        if found is None:
            raise sf_error("INVALID_FIELD", f"No such column '{path[-1]}' on entity '{current.name}'. If you are "
                           "attempting to use a custom field, be sure to append the '__c' after the custom field "
                           "name. Please reference your WSDL or the describe call for the appropriate names.")
        return Path(tuple(hops), found, (*names, found.name))

    def value(self, rec: dict[str, Any] | None, path: Path) -> Any:
        for ref, target in path.hops:
            if rec is None or not rec.get(ref.name):
                return None
            rec = self.store.peek(target.name, rec[ref.name])
            if rec is not None and rec["IsDeleted"]:
                rec = None
        return None if rec is None else rec.get(path.field.name)

    def condition(self, definition: ObjectDef, cond: Condition) -> Callable[[dict[str, Any]], bool]:
        if isinstance(cond, BoolOp):
            parts = [self.condition(definition, item) for item in cond.items]
            if cond.op == "AND":
                return lambda rec: all(part(rec) for part in parts)
            return lambda rec: any(part(rec) for part in parts)
        if isinstance(cond, Not):
            inner = self.condition(definition, cond.item)
            return lambda rec: not inner(rec)
        path = self.path(definition, cond.path)
        kind = path.field.type
        literals = cond.value if isinstance(cond.value, tuple) else (cond.value,)
        wanted = [_coerce(path, literal) for literal in literals]
        if cond.op == "LIKE" and kind not in _TEXT_LIKE:
            raise sf_error("INVALID_FIELD", f"invalid operator on field '{path.field.name}'. LIKE only applies "
                           "to text fields")
        if cond.op in {"<", "<=", ">", ">="} and (kind == "boolean" or wanted[0] is None):
            raise sf_error("INVALID_QUERY_FILTER_OPERATOR", f"invalid operator on field '{path.field.name}'")
        compare = _comparator(cond.op, wanted, kind)
        return lambda rec: compare(_normal(self.value(rec, path), kind))

    def _choose_index(self, plan: Plan) -> None:
        order = plan.query.order
        names = [tuple(n.lower() for n in item.path) for item in order]
        directions = {item.descending for item in order}
        if not order:
            plan.index = "Id"
        elif len(directions) == 1 and names in ([("id",)], [("systemmodstamp",)], [("systemmodstamp",), ("id",)]):
            plan.index = "Id" if names == [("id",)] else "SystemModstamp"
            plan.descending = order[0].descending
        if plan.index is None or plan.query.where is None:
            plan.bounds_cover_where = plan.index is not None
            return
        top = plan.query.where.items if isinstance(plan.query.where, BoolOp) and plan.query.where.op == "AND" \
            else (plan.query.where,)
        lo: Any = None
        hi: Any = None
        used = 0
        for item in top:
            if not (isinstance(item, Comparison) and len(item.path) == 1 and item.path[0].lower() == plan.index.lower()
                    and item.op in {"=", "<", "<=", ">", ">="} and isinstance(item.value, Literal)
                    and item.value.value is not None):
                continue
            value = item.value.value
            if plan.index == "Id":
                value = to18(str(value)) or str(value)
            low_key, high_key = ((value, ""), (value, _MAX_ID_KEY)) if plan.index == "SystemModstamp" \
                else (value, value + "\x00")
            below_key = (value, "") if plan.index == "SystemModstamp" else value[:-1] + chr(ord(value[-1]) - 1) + "~"
            if item.op in {">", "="} or item.op == ">=":
                new_lo = high_key if item.op == ">" else low_key
                lo = new_lo if lo is None or new_lo > lo else lo
            if item.op in {"<", "="} or item.op == "<=":
                new_hi = below_key if item.op == "<" else (high_key if plan.index == "SystemModstamp" else value)
                hi = new_hi if hi is None or new_hi < hi else hi
            used += 1
        plan.bounds = (lo, hi)
        plan.bounds_cover_where = used == len(top) and all(
            isinstance(item, Comparison) and item.op != "!=" for item in top)

    # -- run ------------------------------------------------------------------------------------------------
    def keys(self, plan: Plan, deleted: bool, after: Any = None) -> Iterator[Any]:
        """Index keys in plan order from the bounds (or after ``after``)."""
        assert plan.index is not None
        index = self.store.index(plan.definition.name, plan.index, deleted=deleted)
        lo, hi = plan.bounds
        if after is not None:
            if plan.descending:
                return index.irange(lo, after, inclusive=(True, False), reverse=True)
            return index.irange(after, hi, inclusive=(False, True))
        return index.irange(lo, hi, reverse=plan.descending)

    def count(self, plan: Plan, deleted: bool) -> int:
        if plan.index is not None and plan.bounds_cover_where:
            index = self.store.index(plan.definition.name, plan.index, deleted=deleted)
            lo, hi = plan.bounds
            start = 0 if lo is None else index.bisect_left(lo)
            end = len(index) if hi is None else index.bisect_right(hi)
            return max(0, end - start)
        if plan.index is not None:
            return sum(1 for key in self.keys(plan, deleted) if plan.where(self._record(plan, key)))
        return len(self.sorted_ids(plan, deleted))

    def _record(self, plan: Plan, key: Any) -> dict[str, Any]:
        rid = key if plan.index == "Id" else key[1]
        rec = self.store.peek(plan.definition.name, rid)
        assert rec is not None
        return rec

    def sorted_ids(self, plan: Plan, deleted: bool) -> list[str]:
        index = self.store.index(plan.definition.name, "Id", deleted=deleted)
        rows = [rec for rec in (self.store.peek(plan.definition.name, rid) for rid in index)
                if rec is not None and plan.where(rec)]
        for item in reversed(plan.query.order):
            path = self.path(plan.definition, item.path)
            rows.sort(key=functools.partial(self._sort_key, path, item), reverse=item.descending)
        return [rec["Id"] for rec in rows]

    def _sort_key(self, path: Path, item: OrderItem, rec: dict[str, Any]) -> tuple[int, Any]:
        value = _normal(self.value(rec, path), path.field.type)
        if value is None:
            return (0 if item.nulls_last == item.descending else 2, 0)
        return (1, value)

    def render(self, plan: Plan, rec: dict[str, Any], version: str) -> tuple[dict[str, Any], int]:
        """The record as the API shows it, and how many child rows it carries."""
        out: dict[str, Any] = {"attributes": _attributes(plan.definition.name, rec["Id"], version)}
        for path in plan.fields:
            target = out
            current: dict[str, Any] | None = rec
            for (ref, parent_def), name in zip(path.hops, path.names, strict=False):
                if name in target and target[name] is None:
                    current = None
                    break
                parent = self.store.peek(parent_def.name, current.get(ref.name) or "") if current else None
                if parent is None or parent["IsDeleted"]:
                    target[name] = None
                    current = None
                    break
                nested = target.get(name)
                if nested is None:
                    nested = {"attributes": _attributes(parent_def.name, parent["Id"], version)}
                    target[name] = nested
                target, current = nested, parent
            if current is not None:
                target[path.field.name] = current.get(path.field.name)
        rows = 0
        for name, child in plan.children:
            ids = self.store.children(child.definition.name, child.child_field, rec["Id"])
            matched = [r for r in (self.store.peek(child.definition.name, i) for i in ids)
                       if r is not None and child.where(r)]
            if child.query.order:
                order = {rid: n for n, rid in enumerate(self.sorted_ids_of(child, [r["Id"] for r in matched]))}
                matched.sort(key=lambda r: order[r["Id"]])
            if child.query.limit is not None:
                matched = matched[:child.query.limit]
            rows += len(matched)
            out[name] = None if not matched else {"totalSize": len(matched), "done": True,
                                                  "records": [self.render(child, r, version)[0] for r in matched]}
        return out, rows

    def sorted_ids_of(self, plan: Plan, ids: list[str]) -> list[str]:
        rows = [rec for rec in (self.store.peek(plan.definition.name, rid) for rid in ids) if rec is not None]
        for item in reversed(plan.query.order):
            path = self.path(plan.definition, item.path)
            rows.sort(key=functools.partial(self._sort_key, path, item), reverse=item.descending)
        return [rec["Id"] for rec in rows]

    def page(self, cursor: Cursor, served: int) -> tuple[list[dict[str, Any]], int, bool]:
        """The records after ``served`` rows: up to ``batch`` rows (child rows count), within LIMIT; and whether
        the walk ran out (rows deleted while paging: the cursor ends early rather than promise more)."""
        plan = cursor.plan
        left = cursor.total - served
        records: list[dict[str, Any]] = []
        budget = cursor.batch
        self.scanned = 0
        if cursor.ids is not None:
            position = cursor.positions.get(served) or 0
            exhausted = True
            ids = cursor.ids
            while position < len(ids):
                rid = ids[position]
                if len(records) >= left or budget <= 0:
                    exhausted = False
                    break
                rec = self.store.peek(plan.definition.name, rid)
                self.scanned += 1
                position += 1
                if rec is None or (rec["IsDeleted"] and not cursor.deleted):
                    continue
                shown, rows = self.render(plan, rec, cursor.version)
                if records and budget - 1 - rows < 0:
                    position -= 1
                    exhausted = False
                    break
                records.append(shown)
                budget -= 1 + rows
            cursor.positions[served + len(records)] = position
            return records, served + len(records), exhausted
        after = cursor.positions.get(served)
        skip = (plan.query.offset or 0) if served == 0 else 0
        last = after
        exhausted = True
        for key in self.keys(plan, cursor.deleted, after):
            if len(records) >= left or budget <= 0:
                exhausted = False
                break
            self.scanned += 1
            rec = self._record(plan, key)
            if not plan.where(rec):
                continue
            if skip:
                skip -= 1
                last = key
                continue
            shown, rows = self.render(plan, rec, cursor.version)
            if records and budget - 1 - rows < 0:
                exhausted = False
                break
            records.append(shown)
            budget -= 1 + rows
            last = key
        cursor.positions[served + len(records)] = last
        return records, served + len(records), exhausted


def _attributes(sobject: str, rid: str, version: str) -> dict[str, str]:
    return {"type": sobject, "url": f"/services/data/v{version}/sobjects/{sobject}/{rid}"}


def _normal(value: Any, kind: str) -> Any:
    """A stored value in comparable form (datetimes as ms, text case-folded)."""
    if value is None:
        return None
    if kind == "datetime":
        return parse_sf_datetime(value)
    if kind in _TEXT_LIKE and kind not in {"id", "reference"}:
        return str(value).casefold()
    return value


def _coerce(path: Path, literal: Literal) -> Any:
    """The literal as a comparable value; a literal of the wrong type is the platform's INVALID_FIELD."""
    kind, name = path.field.type, path.field.name
    if literal.kind == "null":
        return None
    expected = {"datetime": "datetime", "date": "date", "boolean": "boolean"}.get(kind)
    if expected is None:
        expected = "number" if kind in _NUMERIC else "string"
    if literal.kind != expected:
        label = {"datetime": "dateTime", "number": "double"}.get(expected, expected)
        quoted = "should be enclosed in quotes" if expected == "string" else "should not be enclosed in quotes"
        raise sf_error("INVALID_FIELD", f"value of filter criterion for field '{name}' must be of type {label} and "
                       f"{quoted}")
    if kind in {"id", "reference"}:
        full = to18(str(literal.value))
        if full is None:
            raise sf_error("INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {literal.value}")
        return full
    if expected == "string":
        return str(literal.value).casefold()
    return literal.value


def _like(pattern: str) -> re.Pattern[str]:
    out = ""
    escaped = False
    for char in pattern:
        if escaped:
            out += re.escape(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            out += ".*"
        elif char == "_":
            out += "."
        else:
            out += re.escape(char)
    return re.compile(out, re.DOTALL)


def _comparator(op: str, wanted: list[Any], kind: str) -> Callable[[Any], bool]:
    first = wanted[0]
    if op == "=":
        return lambda v: v is None if first is None else v is not None and v == first
    if op == "!=":
        return lambda v: v is not None if first is None else v is None or v != first
    if op == "IN":
        return lambda v: v is not None and v in wanted
    if op == "NOT IN":
        return lambda v: v is None or v not in wanted
    if op == "LIKE":
        regex = _like(str(first))
        return lambda v: v is not None and regex.fullmatch(str(v)) is not None
    compare = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
               ">=": lambda a, b: a >= b}[op]
    return lambda v: v is not None and compare(v, first)


# -- endpoints --------------------------------------------------------------------------------------------------
_locators = itertools.count(1)


def _batch_size(org: Org, request: Request) -> int:
    size = int(org.config["default_batch_size"])
    for part in request.headers.get("sforce-query-options", "").split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "batchsize" and value.strip().isdigit():
            size = int(value)
    return max(int(org.config["min_batch_size"]), min(int(org.config["max_batch_size"]), size))


def engine(org: Org) -> Engine:
    found = org.cursors.get("__engine__")
    if not isinstance(found, Engine):
        found = Engine(org)
        org.cursors["__engine__"] = found
    return found


async def query_endpoint(org: Org, request: Request, call: Call, params: dict[str, str]) -> Response:
    text = request.query_params.get("q")
    if not text:
        raise sf_error("MALFORMED_QUERY", "A query string has to be specified")
    query = parse(text, offset_without_colon=bool(org.config["soql_offset_without_colon"]))
    if query.offset is not None and query.offset > int(org.config["max_offset"]):
        raise sf_error("NUMBER_OUTSIDE_VALID_RANGE", f"Maximum SOQL offset allowed is {org.config['max_offset']}")
    run = engine(org)
    plan = run.plan(query)
    deleted = params["kind"] == "queryAll"
    total = run.count(plan, deleted)
    total = max(0, total - (query.offset or 0))
    if query.limit is not None:
        total = min(total, query.limit)
    if query.count:
        return JSONResponse({"totalSize": total, "done": True, "records": []})
    _purge(org)
    locator = make_id("0r8", next(_locators), "xx0")
    cursor = Cursor(locator, plan, call.version, deleted, org.clock(), _batch_size(org, request), total)
    if plan.index is None:
        ids = run.sorted_ids(plan, deleted)
        cursor.ids = ids[query.offset or 0:][:total]
    cursor.positions[0] = None if cursor.ids is None else 0
    return _respond(org, run, cursor, 0)


async def more_endpoint(org: Org, request: Request, call: Call, params: dict[str, str]) -> Response:
    locator, _, served = params["locator"].rpartition("-")
    cursor = org.cursors.get(locator)
    if isinstance(cursor, Cursor) and org.clock() >= cursor.created + float(org.config["query_locator_ttl"]):
        del org.cursors[locator]
        cursor = None
    if not isinstance(cursor, Cursor) or int(served) not in cursor.positions or int(served) >= cursor.total:
        raise sf_error("INVALID_QUERY_LOCATOR", "invalid query locator",
                       int(org.config["invalid_query_locator_status"]))
    return _respond(org, engine(org), cursor, int(served))


def _purge(org: Org) -> None:
    """Forget expired cursors (a long soak opens many)."""
    ttl = float(org.config["query_locator_ttl"])
    for key, cursor in list(org.cursors.items()):
        if isinstance(cursor, Cursor) and org.clock() >= cursor.created + ttl:
            del org.cursors[key]


def _respond(org: Org, run: Engine, cursor: Cursor, served: int) -> Response:
    records, now_served, exhausted = run.page(cursor, served)
    body: dict[str, Any] = {"totalSize": cursor.total, "done": exhausted or now_served >= cursor.total}
    if not body["done"]:
        org.cursors[cursor.locator] = cursor
        body["nextRecordsUrl"] = f"/services/data/v{cursor.version}/query/{cursor.locator}-{now_served}"
    body["records"] = records
    return JSONResponse(body)
