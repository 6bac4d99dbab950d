"""``searchCriteria`` as Commerce reads it from a raw query string, and the search it runs (facts §1.6).

Magento parses the query with PHP's ``parse_str`` (bracketed keys become nested arrays, ``+`` is a space, a repeated
key keeps its last value), maps snake_case and camelCase properties onto ``SearchCriteriaInterface`` and hands the
filters to a MySQL collection. So the semantics here are SQL's: filters within a group are OR-ed, groups AND-ed; a
NULL column matches no comparison (``neq``/``nin`` skip it too); text compares case-insensitively (the default
collation); numbers compare as numbers. ``fields=`` projects the answer (Magento's FieldsFilter).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from ml_connector.sandbox.adobe_commerce.errors import CommerceError, required

_CRITERIA_CLASS = "Magento\\Framework\\Api\\SearchCriteriaInterface"
_GROUP_CLASS = "Magento\\Framework\\Api\\Search\\FilterGroup"
_FILTER_CLASS = "Magento\\Framework\\Api\\Filter"
_SORT_CLASS = "Magento\\Framework\\Api\\SortOrder"
CONDITIONS = frozenset({"eq", "neq", "gt", "gteq", "lt", "lteq", "moreq", "in", "nin", "like", "nlike", "finset",
                        "nfinset", "from", "to", "null", "notnull"})
_KEY = re.compile(r"\[([^\]]*)\]")

# Fields a filter or a sort may name besides those the records carry (facts §1.7): a field no record happens to
# have yet is still a column.
ENTITY_FIELDS: dict[str, frozenset[str]] = {
    "orders": frozenset({"entity_id", "increment_id", "state", "status", "customer_id", "customer_is_guest",
                         "customer_email", "customer_firstname", "customer_lastname", "customer_group_id",
                         "store_id", "grand_total", "base_grand_total", "subtotal", "tax_amount", "shipping_amount",
                         "discount_amount", "total_paid", "total_invoiced", "total_refunded", "total_qty_ordered",
                         "order_currency_code", "base_currency_code", "created_at", "updated_at"}),
    "invoices": frozenset({"entity_id", "increment_id", "order_id", "store_id", "state", "grand_total", "subtotal",
                           "tax_amount", "order_currency_code", "transaction_id", "created_at", "updated_at"}),
    "creditmemos": frozenset({"entity_id", "increment_id", "order_id", "invoice_id", "store_id", "state",
                              "creditmemo_status", "grand_total", "adjustment", "adjustment_positive",
                              "adjustment_negative", "created_at", "updated_at"}),
    "customers": frozenset({"id", "group_id", "email", "firstname", "lastname", "store_id", "website_id",
                            "created_at", "updated_at"}),
    "companies": frozenset({"id", "status", "company_name", "legal_name", "company_email", "vat_tax_id",
                            "reseller_id", "city", "country_id", "region", "region_id", "postcode", "telephone",
                            "customer_group_id", "sales_representative_id", "super_user_id"}),
    "products": frozenset({"id", "sku", "name", "attribute_set_id", "price", "status", "visibility", "type_id",
                           "created_at", "updated_at"}),
}


@dataclass(frozen=True)
class Filter:
    field: str
    value: str | None
    condition: str  # "eq" when none was sent


@dataclass
class Criteria:
    """One parsed ``searchCriteria``; ``echo`` is what the answer's ``search_criteria`` shows (only what was sent)."""

    groups: list[list[Filter]] = field(default_factory=list)
    sort: list[tuple[str, str]] = field(default_factory=list)
    page_size: int | None = None
    current_page: int | None = None
    echo: dict[str, Any] = field(default_factory=lambda: {"filter_groups": []})


@dataclass(frozen=True)
class Limits:
    """The store's ``webapi/validation`` settings and the unconfirmed past-the-end paging behaviour."""

    input_limit_enabled: bool = True
    max_page_size: int = 300
    default_page_size: int = 20
    out_of_range_page: str = "clamp"  # "clamp": the last page again (≤2.3.x source); "empty": no items


# -- the query string ---------------------------------------------------------------------------------------------
def parse_query(raw_query: str) -> dict[str, Any]:
    """PHP's ``parse_str``: ``a[b][0]=x`` -> ``{"a": {"b": {"0": "x"}}}``; ``a[]=x`` appends; last value wins."""
    out: dict[str, Any] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        head, _, rest = key.partition("[")
        if not head:
            continue
        path = [head] + (_KEY.findall("[" + rest) if rest else [])
        node: dict[str, Any] = out
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if part == "":
                part = str(sum(1 for k in node if k.isdigit()))
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
    return out


def _camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.split("_"))


def _properties(data: Any, known: Iterable[str], cls: str) -> dict[str, Any]:
    """Keys mapped to their property (snake or camel alike); an unknown one is refused as Magento's
    ServiceInputProcessor refuses it (wording of its LogicException; the HTTP 400 is inferred, UNCONFIRMED)."""
    if not isinstance(data, dict):
        return {}
    names = {_camel(k): k for k in known}
    out: dict[str, Any] = {}
    for key, value in data.items():
        prop = _camel(key)
        if prop not in names:
            raise CommerceError(400, 'Property "%1" does not have accessor method "%2" in class "%3".',
                                [prop, f"get{prop}", cls])
        out[names[prop]] = value
    return out


def _int(value: Any) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise CommerceError(400, 'The "%value" value\'s type is invalid. The "%type" type was expected. Verify and '
                            "try again.", {"value": value, "type": "int"}) from None


def criteria_from_query(raw_query: str, limits: Limits) -> tuple[Criteria, str | None]:
    """The ``searchCriteria`` of a list call (required, as the service method's parameter is) and ``fields``."""
    params = parse_query(raw_query)
    if "searchCriteria" not in params:
        raise required("searchCriteria")
    fields = params.get("fields")
    data = _properties(params["searchCriteria"], ("filter_groups", "sort_orders", "page_size", "current_page"),
                       _CRITERIA_CLASS)
    criteria = Criteria()
    for group_data in _values(data.get("filter_groups")):
        group = _properties(group_data, ("filters",), _GROUP_CLASS)
        filters, echoed = [], []
        for filter_data in _values(group.get("filters")):
            parsed = _properties(filter_data, ("field", "value", "condition_type"), _FILTER_CLASS)
            if not parsed.get("field"):
                raise required("field")
            condition = str(parsed.get("condition_type") or "eq")
            if condition not in CONDITIONS:  # Magento would build odd SQL; facts are silent: refuse (stricter)
                raise CommerceError(400, 'Invalid condition type "%1"', [condition])
            filters.append(Filter(str(parsed["field"]), parsed.get("value"), condition))
            echoed.append({k: parsed[k] for k in ("field", "value", "condition_type") if k in parsed})
        criteria.groups.append(filters)
        criteria.echo["filter_groups"].append({"filters": echoed})
    sort_echo = []
    for sort_data in _values(data.get("sort_orders")):
        parsed = _properties(sort_data, ("field", "direction"), _SORT_CLASS)
        direction = str(parsed.get("direction") or "DESC").upper()  # missing = DESC (facts §1.6)
        if direction not in {"ASC", "DESC"}:
            raise CommerceError(400, 'The sort order "%1" is invalid. Verify the sort order and try again.',
                                [parsed.get("direction")])
        criteria.sort.append((str(parsed.get("field") or ""), direction))
        sort_echo.append({"field": parsed.get("field"), "direction": direction} if "direction" in parsed
                         else {"field": parsed.get("field")})  # SortOrder keeps the direction upper-cased
    if sort_echo:
        criteria.echo["sort_orders"] = sort_echo
    if "page_size" in data:
        criteria.page_size = _int(data["page_size"])
        criteria.echo["page_size"] = criteria.page_size
        if limits.input_limit_enabled and criteria.page_size > limits.max_page_size:
            raise CommerceError(400, "Maximum SearchCriteria pageSize is %max", {"max": limits.max_page_size})
    elif limits.input_limit_enabled:
        criteria.page_size = limits.default_page_size  # set on the object, but not echoed (UNCONFIRMED)
    if "current_page" in data:
        criteria.current_page = _int(data["current_page"])
        criteria.echo["current_page"] = criteria.current_page
    return criteria, fields if isinstance(fields, str) else None


def _values(data: Any) -> list[Any]:
    """A PHP array's values in insertion order (its indexes are only keys)."""
    return list(data.values()) if isinstance(data, dict) else []


# -- the search ---------------------------------------------------------------------------------------------------
def _number(value: Any) -> float:
    """MySQL's cast of text to a number: its numeric prefix, else 0."""
    match = re.match(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", str(value))
    return float(match.group(0)) if match else 0.0


def _compare(column: Any, value: Any) -> int:
    if isinstance(column, bool):
        column = int(column)
    if isinstance(column, int | float):
        a, b = float(column), _number(value)
    else:
        a, b = _text(column), _text(value)  # type: ignore[assignment]
    return (a > b) - (a < b)


def _text(value: Any) -> str:
    return str(value).casefold()


def _like(pattern: str) -> re.Pattern[str]:
    """SQL LIKE: ``%`` any run, ``_`` one character, ``\\`` escapes; case-insensitive."""
    out, escaped = [], False
    for ch in pattern:
        if escaped:
            out.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def matches(record: dict[str, Any], flt: Filter) -> bool:
    column = record.get(flt.field)
    condition = flt.condition
    if condition == "null":
        return column is None
    if condition == "notnull":
        return column is not None
    if column is None:
        return False  # SQL: NULL compared with anything is not true
    value = "" if flt.value is None else flt.value
    if condition in {"in", "nin"}:
        found = any(_compare(column, v) == 0 for v in str(value).split(","))
        return found if condition == "in" else not found
    if condition in {"like", "nlike"}:
        found = _like(str(value)).fullmatch(str(column)) is not None
        return found if condition == "like" else not found
    if condition in {"finset", "nfinset"}:
        found = _text(value) in [_text(v) for v in str(column).split(",")]
        return found if condition == "finset" else not found
    order = _compare(column, value)
    return {"eq": order == 0, "neq": order != 0, "gt": order > 0, "gteq": order >= 0, "moreq": order >= 0,
            "from": order >= 0, "lt": order < 0, "lteq": order <= 0, "to": order <= 0}[condition]


def _sort_key(value: Any) -> tuple[int, Any]:
    """MySQL order: NULL first ascending; numbers numerically, text case-insensitively."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool | int | float):
        return (1, float(value))
    return (2, _text(value))


def check_fields(criteria: Criteria, entity: str, records: list[dict[str, Any]]) -> None:
    """A filter or sort on a column the entity does not have. The facts are silent: Magento's EAV collections say
    "Invalid attribute name", its flat sales tables fail in SQL (a masked 500); the stricter, clearer 400 it is.
    A column is a field of :data:`ENTITY_FIELDS` or of any record (looked for only when the first is not it)."""
    names = [f.field for group in criteria.groups for f in group] + [name for name, _d in criteria.sort]
    base = ENTITY_FIELDS.get(entity, frozenset())
    for name in names:
        if name not in base and not any(name in r for r in records):
            raise CommerceError(400, "Invalid attribute name: %1", [name])


def search(records: list[dict[str, Any]], criteria: Criteria, limits: Limits) -> dict[str, Any]:
    """``{items, search_criteria, total_count}`` for records already in id order (the order with no sortOrders)."""
    rows = [r for r in records if all(any(matches(r, f) for f in group) for group in criteria.groups if group)]
    for name, direction in reversed(criteria.sort):
        rows.sort(key=lambda r, n=name: _sort_key(r.get(n)), reverse=direction == "DESC")  # type: ignore[misc]
    total = len(rows)
    size = criteria.page_size
    if size:  # no page size (limits off) or 0: every row, the page number is ignored
        last = max(1, math.ceil(total / size))
        page = max(1, criteria.current_page or 1)
        if page > last:
            page = last if limits.out_of_range_page == "clamp" else 0
        rows = rows[(page - 1) * size: page * size] if page else []
    return {"items": _copied(rows), "search_criteria": _copied(criteria.echo), "total_count": total}


def _copied(value: Any) -> Any:
    """A deep copy of JSON data (several times faster than ``copy.deepcopy``): the page leaves the store's hands."""
    return json.loads(json.dumps(value))


# -- fields= -----------------------------------------------------------------------------------------------------
def parse_fields(text: str) -> dict[str, Any] | None:
    """``items[entity_id,increment_id],total_count`` -> ``{"items": {"entity_id": None, ...}, "total_count": None}``;
    None when the text does not parse (Magento then answers unfiltered)."""
    pos = 0

    def parse_list() -> dict[str, Any]:
        nonlocal pos
        out: dict[str, Any] = {}
        while True:
            start = pos
            while pos < len(text) and text[pos] not in ",[]":
                pos += 1
            name = text[start:pos].strip()
            if not name:
                raise ValueError("empty name")
            sub = None
            if pos < len(text) and text[pos] == "[":
                pos += 1
                sub = parse_list()
                if pos >= len(text) or text[pos] != "]":
                    raise ValueError("unclosed [")
                pos += 1
            out[name] = sub
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            return out

    try:
        tree = parse_list()
    except ValueError:
        return None
    return tree if pos == len(text) else None


def project(body: Any, tree: dict[str, Any] | None) -> Any:
    """Keep only the named keys, at every level; a list is projected item by item."""
    if tree is None:
        return body
    if isinstance(body, list):
        return [project(item, tree) for item in body]
    if not isinstance(body, dict):
        return body
    return {k: project(body[k], sub) for k, sub in tree.items() if k in body}
