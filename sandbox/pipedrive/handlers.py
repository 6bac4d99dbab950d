"""Vendor endpoint handlers of the Pipedrive sandbox (sync functions of a parsed request context).

Each handler returns ``(status, json_body)`` or raises :class:`ApiError`; auth, rate limits, headers and the
store lock are applied around them by ``sandbox.pipedrive``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import QueryParams

from ml_connector.sandbox.pipedrive.common import (
    csv_ints,
    decode_cursor,
    encode_cursor,
    not_allowed,
    not_found,
    parse_datetime,
    query_int,
    v1_error,
    validation_error,
)
from ml_connector.sandbox.pipedrive.fields import parse_field_create
from ml_connector.sandbox.pipedrive.index import SORT_FIELDS, Collection, Key, Query
from ml_connector.sandbox.pipedrive.search import field_search, item_search, search_entity
from ml_connector.sandbox.pipedrive.store import PipedriveStore, page_sorted
from ml_connector.sandbox.pipedrive.validate import validate_entity, validate_line

Result = tuple[int, Any]
DEAL_STATUSES = ("open", "won", "lost", "deleted")


@dataclass
class Ctx:
    """What a handler needs from the request."""

    method: str
    params: QueryParams
    path: dict[str, Any]
    raw: bytes
    content_type: str

    def json(self) -> Any:
        """The JSON body (v2 accepts JSON only); an empty body is ``{}``."""
        if not self.raw.strip():
            return {}
        if "json" not in self.content_type.lower():
            raise validation_error("body", "Request body must be JSON (Content-Type: application/json)")
        try:
            return json.loads(self.raw)
        except ValueError as exc:
            raise validation_error("body", "Request body is not valid JSON") from exc

    def form_or_json(self) -> Any:
        """v1 writes accept JSON or form-encoded bodies."""
        if "x-www-form-urlencoded" in self.content_type.lower():
            return dict(parse_qsl(self.raw.decode()))
        return self.json()


def _ok(data: Any, additional: Any = None, status: int = 200) -> Result:
    body: dict[str, Any] = {"success": True, "data": data}
    if additional is not None:
        body["additional_data"] = additional
    return status, body


def _cursor_after(params: QueryParams, sort_by: str, direction: str) -> Key | None:
    raw = params.get("cursor")
    if not raw:
        return None
    payload = decode_cursor(raw)
    value, rid = payload.get("fieldValue"), payload.get("id")
    expected = int if sort_by in {"id", "order_nr", "deal_id"} else str
    if (
        payload.get("field") != sort_by
        or payload.get("sortDirection") != direction
        or not isinstance(rid, int)
        or not isinstance(value, expected)
    ):
        raise validation_error("cursor", "Parameter 'cursor' does not match this request")
    return (value, rid)


def _cursor_for(key: Key | None, sort_by: str, direction: str) -> str | None:
    if key is None:
        return None
    return encode_cursor({"field": sort_by, "fieldValue": key[0], "sortDirection": direction, "id": key[1]})


def _sorting(params: QueryParams, allowed: tuple[str, ...]) -> tuple[str, str]:
    sort_by = params.get("sort_by") or "id"
    if sort_by not in allowed:
        raise validation_error("sort_by", f"Parameter 'sort_by' must be one of [{', '.join(allowed)}]")
    direction = params.get("sort_direction") or "asc"
    if direction not in {"asc", "desc"}:
        raise validation_error("sort_direction", "Parameter 'sort_direction' must be one of [asc, desc]")
    return sort_by, direction


def _timestamp_param(params: QueryParams, key: str) -> str | None:
    raw = params.get(key)
    if raw is None:
        return None
    parsed = parse_datetime(raw)
    if parsed is None:
        raise validation_error(key, f"Parameter '{key}' is not a valid datetime (RFC 3339, whole seconds)")
    return parsed


class Handlers:
    """Endpoint implementations over one :class:`PipedriveStore`."""

    def __init__(self, store: PipedriveStore) -> None:
        self.store = store
        self.config = store.config

    # -- entities -------------------------------------------------------------------------------------------
    def list_query(self, coll: Collection, params: QueryParams) -> tuple[Query, str]:
        """Parse list filters (§3.1); unknown parameters are ignored."""
        if params.get("filter_id"):
            raise not_found("Filter not found")
        sort_by, direction = _sorting(params, SORT_FIELDS[coll.name])
        q = Query(
            sort_by=sort_by,
            desc=direction == "desc",
            limit=query_int(params, "limit", 100, hi=500) or 100,
            after=_cursor_after(params, sort_by, direction),
        )
        if params.get("ids"):
            q.ids = frozenset(csv_ints(params["ids"], "ids"))
        keys = {
            "persons": ("owner_id", "org_id"),
            "deals": ("owner_id", "org_id", "person_id", "pipeline_id", "stage_id"),
        }.get(coll.name, ("owner_id",))
        for key in keys:
            value = query_int(params, key)
            if value is not None:
                q.equals[key] = value
        if coll.name == "deals":
            q.archived = False
            if params.get("status"):
                q.statuses = set(params["status"].split(","))
                if not q.statuses <= set(DEAL_STATUSES):
                    raise validation_error(
                        "status", "Parameter 'status' must be a list of [open, won, lost, deleted]"
                    )
        if coll.name != "products" or self.config.get("products_updated_since"):
            q.since = _timestamp_param(params, "updated_since")
            q.until = _timestamp_param(params, "updated_until")
        return q, direction

    def _custom_filter(self, params: QueryParams) -> list[str] | None:
        raw = params.get("custom_fields")
        if not raw:
            return None
        keys = [k.strip() for k in raw.split(",") if k.strip()]
        if len(keys) > 15:
            raise validation_error("custom_fields", "Parameter 'custom_fields' accepts at most 15 keys")
        return keys

    def list_entities(self, entity: str, ctx: Ctx, archived: bool = False) -> Result:
        """``GET /api/v2/{entity}`` (and ``/deals/archived``)."""
        coll = self.store.coll(entity)
        q, direction = self.list_query(coll, ctx.params)
        if archived:
            q.archived = True
        rows, last = coll.page(q)
        only = self._custom_filter(ctx.params)
        return _ok(
            [coll.public(r, only) for r in rows], {"next_cursor": _cursor_for(last, q.sort_by, direction)}
        )

    def _record(self, entity: str, rid: int, allow_deleted: bool = False) -> dict[str, Any]:
        rec = self.store.coll(entity).records.get(rid)
        if rec is None or (rec.get("is_deleted") and not allow_deleted):
            raise not_found()
        return rec

    def get_entity(self, entity: str, ctx: Ctx) -> Result:
        """``GET /api/v2/{entity}/{id}`` (404 when deleted unless ``get_deleted_returns_entity``)."""
        rec = self._record(entity, ctx.path["id"], bool(self.config.get("get_deleted_returns_entity")))
        return _ok(self.store.coll(entity).public(rec, self._custom_filter(ctx.params)))

    def create_entity(self, entity: str, ctx: Ctx) -> Result:
        """``POST /api/v2/{entity}``: strict validation, then 200 (products 201)."""
        fields = validate_entity(self.store, entity, ctx.json(), create=True)
        rec = self.store.create(entity, fields, origin="API" if entity == "deals" else None)
        status = self.config.get("post_status_products" if entity == "products" else "post_status", 200)
        return _ok(self.store.coll(entity).public(rec), status=int(status))

    def update_entity(self, entity: str, ctx: Ctx) -> Result:
        """``PATCH /api/v2/{entity}/{id}``: partial update, ``update_time`` bumped."""
        current = self._record(entity, ctx.path["id"])
        fields = validate_entity(self.store, entity, ctx.json(), create=False, current=current)
        return _ok(self.store.coll(entity).public(self.store.update(entity, current["id"], fields)))

    def delete_entity(self, entity: str, ctx: Ctx) -> Result:
        """``DELETE /api/v2/{entity}/{id}``: soft delete."""
        rec = self._record(entity, ctx.path["id"])
        self.store.delete(entity, rec["id"])
        return _ok({"id": rec["id"]})

    def search(self, entity: str, ctx: Ctx) -> Result:
        return 200, search_entity(self.store, entity, ctx.params)

    def item_search(self, ctx: Ctx) -> Result:
        return 200, item_search(self.store, ctx.params)

    def field_search(self, ctx: Ctx) -> Result:
        return 200, field_search(self.store, ctx.params)

    # -- deal products --------------------------------------------------------------------------------------
    def _lines_page(
        self, rows: list[dict[str, Any]], params: QueryParams, allowed: tuple[str, ...]
    ) -> Result:
        sort_by, direction = _sorting(params, allowed)
        limit = query_int(params, "limit", 100, hi=500) or 100
        page, last = page_sorted(
            rows, sort_by, direction == "desc", _cursor_after(params, sort_by, direction), limit
        )
        return _ok(
            [self.store.line_public(r) for r in page], {"next_cursor": _cursor_for(last, sort_by, direction)}
        )

    def deal_lines(self, ctx: Ctx) -> Result:
        """``GET /api/v2/deals/{id}/products``."""
        deal = self._record("deals", ctx.path["id"])
        return self._lines_page(
            self.store.lines_of([deal["id"]]), ctx.params, ("id", "add_time", "update_time", "order_nr")
        )

    def lines_by_deals(self, ctx: Ctx) -> Result:
        """``GET /api/v2/deals/products?deal_ids=1,2`` (≤100 deals; rows carry ``deal_id``)."""
        raw = ctx.params.get("deal_ids")
        if not raw:
            raise validation_error("deal_ids", "Parameter 'deal_ids' is required")
        ids = [d for d in csv_ints(raw, "deal_ids") if self.store.live("deals", d) is not None]
        return self._lines_page(
            self.store.lines_of(ids), ctx.params, ("id", "deal_id", "add_time", "update_time", "order_nr")
        )

    def add_line(self, ctx: Ctx) -> Result:
        """``POST /api/v2/deals/{id}/products`` -> 201."""
        deal = self._record("deals", ctx.path["id"])
        fields = validate_line(self.store, ctx.json(), create=True)
        return _ok(self.store.line_public(self.store.line_create(deal["id"], fields)), status=201)

    def add_lines_bulk(self, ctx: Ctx) -> Result:
        """``POST /api/v2/deals/{id}/products/bulk`` ``{"data":[…]}`` (≤100, all or nothing) -> 201."""
        deal = self._record("deals", ctx.path["id"])
        body = ctx.json()
        if not isinstance(body, dict):
            raise validation_error("body", "Request body must be a JSON object")
        for key in body:
            if key != "data":
                raise not_allowed(key)
        items = body.get("data")
        if not isinstance(items, list) or not 1 <= len(items) <= 100:
            raise validation_error("data", "Parameter 'data' must be an array of 1 to 100 items")
        checked = [validate_line(self.store, item, create=True) for item in items]
        lines = [self.store.line_create(deal["id"], fields) for fields in checked]
        return _ok([self.store.line_public(line) for line in lines], status=201)

    def _line(self, ctx: Ctx) -> dict[str, Any]:
        deal = self._record("deals", ctx.path["id"])
        line = self.store.lines.get(ctx.path["line"])
        if line is None or line["deal_id"] != deal["id"]:
            raise not_found()
        return line

    def update_line(self, ctx: Ctx) -> Result:
        """``PATCH /api/v2/deals/{id}/products/{product_attachment_id}``."""
        line = self._line(ctx)
        fields = validate_line(self.store, ctx.json(), create=False)
        return _ok(self.store.line_public(self.store.line_update(line["id"], fields)))

    def delete_line(self, ctx: Ctx) -> Result:
        """``DELETE /api/v2/deals/{id}/products/{product_attachment_id}``."""
        line = self._line(ctx)
        self.store.line_delete(line["id"])
        return _ok({"id": line["id"]})

    def delete_lines(self, ctx: Ctx) -> Result:
        """``DELETE /api/v2/deals/{id}/products?ids=1,2`` (no ids: up to 100 lines)."""
        deal = self._record("deals", ctx.path["id"])
        owned = list(self.store.lines_by_deal.get(deal["id"], []))
        raw = ctx.params.get("ids")
        chosen = [i for i in csv_ints(raw, "ids") if i in owned] if raw else owned[:100]
        for line_id in chosen:
            self.store.line_delete(line_id)
        left = len(self.store.lines_by_deal.get(deal["id"], []))
        return _ok({"ids": chosen}, {"more_items_in_collection": bool(left) and not raw})

    # -- pipelines, stages, users ---------------------------------------------------------------------------
    def _plain_page(self, rows: list[dict[str, Any]], params: QueryParams) -> Result:
        sort_by, direction = _sorting(params, ("id", "update_time", "add_time"))
        limit = query_int(params, "limit", 100, hi=500) or 100
        page, last = page_sorted(
            rows, sort_by, direction == "desc", _cursor_after(params, sort_by, direction), limit
        )
        return _ok(page, {"next_cursor": _cursor_for(last, sort_by, direction)})

    def pipelines(self, ctx: Ctx) -> Result:
        return self._plain_page(list(self.store.pipelines.values()), ctx.params)

    def pipeline(self, ctx: Ctx) -> Result:
        found = self.store.pipelines.get(ctx.path["id"])
        if found is None:
            raise not_found()
        return _ok(found)

    def stages(self, ctx: Ctx) -> Result:
        pipeline = query_int(ctx.params, "pipeline_id")
        rows = [s for s in self.store.stages.values() if pipeline is None or s["pipeline_id"] == pipeline]
        return self._plain_page(rows, ctx.params)

    def stage(self, ctx: Ctx) -> Result:
        found = self.store.stages.get(ctx.path["id"])
        if found is None:
            raise not_found()
        return _ok(found)

    def me(self, ctx: Ctx) -> Result:
        return _ok(self.store.users[18])

    def users(self, ctx: Ctx) -> Result:
        return _ok(list(self.store.users.values()))

    # -- field metadata -------------------------------------------------------------------------------------
    def v1_fields(self, singular: str, ctx: Ctx) -> Result:
        """``GET /v1/{entity}Fields?start=&limit=`` (offset paging)."""
        start = query_int(ctx.params, "start", 0, lo=0) or 0
        limit = query_int(ctx.params, "limit", 100, hi=500) or 100
        defs = self.store.catalog.fields[singular]
        page = defs[start : start + limit]
        pagination: dict[str, Any] = {
            "start": start,
            "limit": limit,
            "more_items_in_collection": start + limit < len(defs),
        }
        if pagination["more_items_in_collection"]:
            pagination["next_start"] = start + limit
        return _ok([d.v1() for d in page], {"pagination": pagination})

    def v1_field(self, singular: str, ctx: Ctx) -> Result:
        for d in self.store.catalog.fields[singular]:
            if d.id == ctx.path["id"]:
                return _ok(d.v1())
        raise v1_error(404, "Field not found")

    def v1_create_field(self, singular: str, ctx: Ctx) -> Result:
        """``POST /v1/{entity}Fields`` ``{"name","field_type","options"}`` -> ``data.key``."""
        body = ctx.form_or_json()
        if not isinstance(body, dict):
            raise v1_error(400, "Request body must be an object")
        name, ftype, options = parse_field_create(singular, body, v2=False)
        return _ok(self.store.catalog.create(singular, name, ftype, options).v1())

    def v2_fields(self, singular: str, ctx: Ctx) -> Result:
        """``GET /api/v2/{entity}Fields`` (cursor paging)."""
        limit = query_int(ctx.params, "limit", 100, hi=500) or 100
        raw = ctx.params.get("cursor")
        offset = decode_cursor(raw).get("offset", 0) if raw else 0
        if not isinstance(offset, int) or offset < 0:
            raise validation_error("cursor", "Parameter 'cursor' is not a valid cursor")
        defs = self.store.catalog.fields[singular]
        more = offset + limit < len(defs)
        return _ok(
            [d.v2() for d in defs[offset : offset + limit]],
            {"next_cursor": encode_cursor({"offset": offset + limit}) if more else None},
        )

    def v2_field(self, singular: str, ctx: Ctx) -> Result:
        for d in self.store.catalog.fields[singular]:
            if d.key == ctx.path["code"]:
                return _ok(d.v2())
        raise not_found("Field not found")

    def v2_create_field(self, singular: str, ctx: Ctx) -> Result:
        """``POST /api/v2/{entity}Fields`` ``{"field_name","field_type","options"}``."""
        body = ctx.json()
        if not isinstance(body, dict):
            raise validation_error("body", "Request body must be a JSON object")
        for key in body:
            if key not in {
                "field_name",
                "field_type",
                "options",
                "ui_visibility",
                "important_fields",
                "required_fields",
                "description",
            }:
                raise not_allowed(key)
        name, ftype, options = parse_field_create(singular, body, v2=True)
        return _ok(self.store.catalog.create(singular, name, ftype, options).v2())

    # -- errors ---------------------------------------------------------------------------------------------
    def gone(self, ctx: Ctx) -> Result:
        """v1 entity CRUD: out of support since 2026-08-01 (answered as gone)."""
        raise v1_error(410, "This API v1 endpoint is out of support; use API v2")

    def unknown(self, ctx: Ctx) -> Result:
        raise v1_error(404, "Unknown method .")
