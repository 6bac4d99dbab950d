"""Search endpoints of the Pipedrive sandbox (``/{entity}/search``, ``itemSearch``, ``itemSearch/field``).

Exact search is a dict lookup (normalised value -> ids); substring search scans the distinct values of the
requested fields only. Config ``search_index_lag_seconds`` hides records created less than that long ago.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ml_connector.sandbox.pipedrive.common import decode_cursor, encode_cursor, query_bool, query_int, validation_error
from ml_connector.sandbox.pipedrive.fields import PLURAL, search_strings
from ml_connector.sandbox.pipedrive.index import SEARCH_FIELDS, Collection, hits
from ml_connector.sandbox.pipedrive.store import PipedriveStore

ITEM_TYPES = ("deal", "person", "organization", "product")
UNSIMULATED_TYPES = ("lead", "file", "mail_attachment", "project")


def _offset(params: Any) -> int:
    cursor = params.get("cursor")
    if not cursor:
        return 0
    offset = decode_cursor(cursor).get("offset")
    if not isinstance(offset, int) or offset < 0:
        raise validation_error("cursor", "Parameter 'cursor' is not a valid cursor")
    return offset


def _next(offset: int, limit: int, total: int) -> str | None:
    return encode_cursor({"offset": offset + limit}) if offset + limit < total else None


def _term(params: Any, exact: bool) -> str:
    term = params.get("term")
    if not term:
        raise validation_error("term", "Parameter 'term' is required")
    if len(term) < (1 if exact else 2):
        raise validation_error("term", "Parameter 'term' must be at least 2 characters long")
    return str(term)


def _fields(params: Any, allowed: tuple[str, ...]) -> list[str]:
    raw = params.get("fields")
    if not raw:
        return list(allowed)
    fields = [f.strip() for f in raw.split(",") if f.strip()]
    for name in fields:
        if name not in allowed:
            raise validation_error("fields", f"Parameter 'fields' must be a subset of [{', '.join(allowed)}]")
    return fields


def _visible(coll: Collection, rid: int, lag: float, now: float) -> bool:
    rec = coll.records.get(rid)
    return rec is not None and not rec.get("is_deleted") and now - coll.created_at.get(rid, 0.0) >= lag


def scores(
    store: PipedriveStore, coll: Collection, fields: list[str], term: str, exact: bool
) -> dict[int, float]:
    """``{id: result_score}`` of visible records whose search fields match the term (case-insensitive)."""
    needle = term.lower()
    found: dict[int, float] = {}
    for group in fields:
        book = coll.search.get(group, {})
        if exact:
            matched: list[tuple[Iterable[int], float]] = [(hits(book, needle), 1.0)]
        else:
            matched = [
                (hits(book, value), 1.0 if value == needle else 0.75 if value.startswith(needle) else 0.5)
                for value in book
                if needle in value
            ]
        for ids, score in matched:
            for rid in ids:
                found[rid] = max(score, found.get(rid, 0.0))
    lag = float(store.config.get("search_index_lag_seconds") or 0)
    now = store.clock()
    return {rid: s for rid, s in found.items() if _visible(coll, rid, lag, now)}


def _named(store: PipedriveStore, entity: str, rid: Any, with_address: bool = False) -> dict[str, Any] | None:
    rec = store.coll(entity).records.get(rid) if rid is not None else None
    if rec is None:
        return None
    main = "title" if entity == "deals" else "name"
    out = {"id": rid, "name": rec.get(main)}
    if with_address:
        out["address"] = (rec.get("address") or {}).get("value")
    return out


def item_shape(store: PipedriveStore, coll: Collection, rec: dict[str, Any]) -> dict[str, Any]:
    """The search ``item`` of a record (not the entity: owner object, arrays of strings)."""
    full = coll.public(rec)
    defs = store.catalog.custom(coll.singular)
    custom = [
        text
        for key, value in (rec.get("custom_fields") or {}).items()
        if key in defs
        for text in search_strings(defs[key], value)
    ]
    base = {"id": rec["id"], "type": coll.singular}
    owner = {"id": full["owner_id"]}
    if coll.name == "organizations":
        return {
            **base,
            "name": full["name"],
            "address": (full["address"] or {}).get("value"),
            "visible_to": full["visible_to"],
            "owner": owner,
            "custom_fields": custom,
            "notes": [],
        }
    if coll.name == "persons":
        return {
            **base,
            "name": full["name"],
            "phones": [p["value"] for p in full["phones"]],
            "emails": [e["value"] for e in full["emails"]],
            "visible_to": full["visible_to"],
            "owner": owner,
            "organization": _named(store, "organizations", full["org_id"], with_address=True),
            "custom_fields": custom,
            "notes": [],
        }
    if coll.name == "deals":
        stage = store.stages.get(full["stage_id"])
        return {
            **base,
            "title": full["title"],
            "value": full["value"],
            "currency": full["currency"],
            "status": full["status"],
            "visible_to": full["visible_to"],
            "owner": owner,
            "stage": {"id": stage["id"], "name": stage["name"]} if stage else None,
            "person": _named(store, "persons", full["person_id"]),
            "organization": _named(store, "organizations", full["org_id"]),
            "custom_fields": custom,
            "notes": [],
            "is_archived": full["is_archived"],
        }
    return {
        **base,
        "name": full["name"],
        "code": full["code"],
        "visible_to": full["visible_to"],
        "owner": owner,
        "custom_fields": custom,
    }


def _entity_filters(coll: Collection, params: Any) -> dict[str, Any]:
    """Extra filters of persons/deals search (``organization_id``, ``person_id``, ``status``)."""
    out: dict[str, Any] = {}
    if coll.name in {"persons", "deals"}:
        org = query_int(params, "organization_id")
        if org is not None:
            out["org_id"] = org
    if coll.name == "deals":
        person = query_int(params, "person_id")
        if person is not None:
            out["person_id"] = person
        status = params.get("status")
        if status:
            if status not in {"open", "won", "lost"}:
                raise validation_error("status", "Parameter 'status' must be one of [open, won, lost]")
            out["status"] = status
    return out


def search_entity(store: PipedriveStore, entity: str, params: Any) -> dict[str, Any]:
    """``GET /api/v2/{entity}/search``."""
    coll = store.coll(entity)
    exact = query_bool(params, "exact_match")
    term = _term(params, exact)
    fields = _fields(params, SEARCH_FIELDS[coll.name])
    limit = query_int(params, "limit", 100, hi=500) or 100
    offset = _offset(params)
    filters = _entity_filters(coll, params)
    found = scores(store, coll, fields, term, exact)
    ranked = sorted(
        (
            (-s, rid)
            for rid, s in found.items()
            if all(coll.value(coll.records[rid], k) == v for k, v in filters.items())
        )
    )
    page = ranked[offset : offset + limit]
    items = [{"result_score": -s, "item": item_shape(store, coll, coll.records[rid])} for s, rid in page]
    return {
        "success": True,
        "data": {"items": items},
        "additional_data": {"next_cursor": _next(offset, limit, len(ranked))},
    }


def item_search(store: PipedriveStore, params: Any) -> dict[str, Any]:
    """``GET /api/v2/itemSearch`` over the simulated entity types (limit max 100)."""
    exact = query_bool(params, "exact_match")
    term = _term(params, exact)
    raw_types = params.get("item_types")
    types = [t.strip() for t in raw_types.split(",") if t.strip()] if raw_types else list(ITEM_TYPES)
    for t in types:
        if t not in ITEM_TYPES + UNSIMULATED_TYPES:
            raise validation_error("item_types", f"Parameter 'item_types' has an unknown type '{t}'")
    every = tuple(sorted({f for t in ITEM_TYPES for f in SEARCH_FIELDS[PLURAL[t]]}))
    wanted = _fields(params, every)
    limit = query_int(params, "limit", 100, hi=100) or 100
    offset = _offset(params)
    ranked: list[tuple[float, int, int, Collection]] = []
    for order, t in enumerate(ITEM_TYPES):
        if t not in types:
            continue
        coll = store.coll(t)
        fields = [f for f in wanted if f in SEARCH_FIELDS[coll.name]]
        if fields:
            ranked += [(-s, order, rid, coll) for rid, s in scores(store, coll, fields, term, exact).items()]
    ranked.sort(key=lambda row: row[:3])
    page = ranked[offset : offset + limit]
    items = [
        {"result_score": -s, "item": item_shape(store, coll, coll.records[rid])} for s, _, rid, coll in page
    ]
    return {
        "success": True,
        "data": {"items": items},
        "additional_data": {"next_cursor": _next(offset, limit, len(ranked))},
    }


def field_search(store: PipedriveStore, params: Any) -> dict[str, Any]:
    """``GET /api/v2/itemSearch/field``: one field, case-sensitive, ``match`` exact|beginning|middle."""
    entity_type = params.get("entity_type")
    if entity_type not in ITEM_TYPES + ("lead", "project"):
        raise validation_error(
            "entity_type",
            "Parameter 'entity_type' must be one of [deal, lead, person, organization, product, project]",
        )
    field, term = params.get("field"), params.get("term")
    if not field:
        raise validation_error("field", "Parameter 'field' is required")
    if not term:
        raise validation_error("term", "Parameter 'term' is required")
    match = params.get("match") or "exact"
    if match not in {"exact", "beginning", "middle"}:
        raise validation_error("match", "Parameter 'match' must be one of [exact, beginning, middle]")
    limit = query_int(params, "limit", 100, hi=500) or 100
    offset = _offset(params)
    if entity_type not in ITEM_TYPES:
        return {"success": True, "data": [], "additional_data": {"next_cursor": None}}
    coll = store.coll(entity_type)
    known = {d.key for d in store.catalog.fields[coll.singular]} | {"email", "phone"}
    if field not in known:
        raise validation_error("field", f"Parameter 'field' is not a field of {entity_type}")
    book = coll.exact.get(field, {})
    if match == "exact":
        ids = set(hits(book, term))
    else:
        ids = {
            rid
            for value in book
            if (value.startswith(term) if match == "beginning" else term in value)
            for rid in hits(book, value)
        }
    lag = float(store.config.get("search_index_lag_seconds") or 0)
    now = store.clock()
    ordered = sorted(rid for rid in ids if _visible(coll, rid, lag, now))
    main = "title" if coll.name == "deals" else "name"
    data = [{"id": rid, "name": coll.records[rid].get(main)} for rid in ordered[offset : offset + limit]]
    return {
        "success": True,
        "data": data,
        "additional_data": {"next_cursor": _next(offset, limit, len(ordered))},
    }
