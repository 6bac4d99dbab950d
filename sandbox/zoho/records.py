"""The Records API (facts §2): list, get, insert, update, upsert, delete, with Zoho's validation.

Writes are checked against the field metadata (the same metadata ``/settings/fields`` serves), one error per
record ``{"code", "details": {"api_name", "json_path", ..}, "message", "status": "error"}``, results in input
order; the HTTP status is 201/202/200 when all succeed, ``partial_status`` (207) when some fail and
``all_failed_status`` (400) when all fail. Reads page by key through the store's sorted indexes.
"""

from __future__ import annotations

import itertools
import re
import secrets
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ml_connector.sandbox.core import is_date
from ml_connector.sandbox.zoho.common import (
    ApiError,
    Org,
    ZohoContext,
    iso,
    json_response,
    parse_iso,
    read_json,
    zoho_error,
)
from ml_connector.sandbox.zoho.limits import write_cost
from ml_connector.sandbox.zoho.metadata import ModuleDef
from ml_connector.sandbox.zoho.store import ORDERINGS, SYSTEM_FIELDS, Key, ZohoStore

MAX_WRITE = 100
MAX_FIELDS = 50
MAX_PER_PAGE = 200
MAX_DISCRETE = 2_000
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DIGITS = re.compile(r"^\d{1,19}$")
STRING_TYPES = {"text", "textarea", "email", "phone", "website", "picklist", "autonumber"}
NUMBER_TYPES = {"double", "currency", "percent"}
EXPECTED = {"integer": "integer", "bigint": "bigint", "double": "double", "currency": "double", "percent": "double",
            "boolean": "boolean", "date": "date", "datetime": "datetime", "lookup": "jsonobject",
            "ownerlookup": "jsonobject", "userlookup": "jsonobject", "subform": "jsonarray"}


class RecordError(Exception):
    """One record's failure; ``.result`` is its ``data[i]`` entry."""

    def __init__(self, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = {"code": code, "details": details, "message": message, "status": "error"}


def invalid(path: str, api_name: str, **extra: Any) -> RecordError:
    return RecordError("INVALID_DATA", "invalid data", {"api_name": api_name, "json_path": path, **extra})


# -- validation ---------------------------------------------------------------------------------------------------
@dataclass
class Validator:
    """Checks one module's writes; ``existing`` is the stored record on an update (None on an insert)."""

    store: ZohoStore
    module: ModuleDef
    org: Org
    config: dict[str, Any]

    def check(self, values: dict[str, Any], path: str, existing: dict[str, Any] | None) -> dict[str, Any]:
        """The values to store (ids normalised to strings); raises RecordError."""
        if not isinstance(values, dict):
            raise RecordError("INVALID_DATA", "invalid data", {"json_path": path})
        clean: dict[str, Any] = {}
        for key, value in values.items():
            if key.startswith("$") or key == "id":
                continue
            spec = self.module.field(key)
            if spec is None:
                if self.config["reject_unknown_fields"]:
                    raise invalid(f"{path}.{key}", key)
                continue
            if spec["read_only"] or key in SYSTEM_FIELDS:
                if self.config["reject_read_only_fields"]:
                    raise invalid(f"{path}.{key}", key)
                continue
            if spec["data_type"] == "subform":
                clean[key] = self._rows(key, value, f"{path}.{key}", existing)
            else:
                clean[key] = self._value(spec, value, f"{path}.{key}", self.module.api_name)
        self._mandatory(self.module.fields, clean, path, existing is None)
        self._unique(clean, path, existing)
        return clean

    def _mandatory(self, specs: list[dict[str, Any]], clean: dict[str, Any], path: str, creating: bool) -> None:
        for spec in specs:
            if not spec["system_mandatory"]:
                continue
            name = spec["api_name"]
            if (creating and name not in clean) or (name in clean and clean[name] in (None, "")):
                raise RecordError("MANDATORY_NOT_FOUND", "required field not found",
                                  {"api_name": name, "json_path": f"{path}.{name}"})

    def _unique(self, clean: dict[str, Any], path: str, existing: dict[str, Any] | None) -> None:
        for name in self.module.unique_fields():
            value = clean.get(name)
            if value in (None, ""):
                continue
            others = [rid for rid in self.store.find(self.module.api_name, name, value)
                      if existing is None or rid != existing["id"]]
            if others:
                summary = self.module.summary()
                raise RecordError("DUPLICATE_DATA", "duplicate data", {
                    "api_name": name, "json_path": f"{path}.{name}",
                    "duplicate_record": {"id": others[0], "module": {"api_name": summary["api_name"],
                                                                     "id": summary["id"]}}})

    def _value(self, spec: dict[str, Any], value: Any, path: str, module: str) -> Any:
        name, kind = spec["api_name"], spec["data_type"]
        if value is None:
            return None
        wrong = invalid(path, name, expected_data_type=EXPECTED.get(kind, "text"))
        if kind in STRING_TYPES:
            if not isinstance(value, str):
                raise wrong
            if len(value) > int(spec["length"]):
                raise invalid(path, name, maximum_length=int(spec["length"]))
            if kind == "email" and value and not _EMAIL.match(value):
                raise wrong
            if kind == "picklist" and self.config["strict_picklists"] and value not in {
                    v["actual_value"] for v in spec["pick_list_values"]}:
                raise invalid(path, name)
            return value
        if kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int) or not -2**31 <= value < 2**31:
                raise wrong
            return value
        if kind == "bigint":
            if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str)
                                                                          and _DIGITS.match(value))):
                raise wrong
            return int(value)
        if kind in NUMBER_TYPES:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise wrong
            return value
        if kind == "boolean":
            if not isinstance(value, bool):
                raise wrong
            return value
        if kind == "date":
            if not is_date(value):
                raise wrong
            return value
        if kind == "datetime":
            try:
                parse_iso(value)
            except (TypeError, ValueError):
                raise wrong from None
            return value
        if kind in {"lookup", "ownerlookup", "userlookup"}:
            return self._lookup(spec, value, path, wrong)
        raise wrong

    def _lookup(self, spec: dict[str, Any], value: Any, path: str, wrong: RecordError) -> dict[str, str]:
        if not isinstance(value, dict) or "id" not in value:
            raise wrong
        rid = value["id"]
        if isinstance(rid, bool) or not isinstance(rid, (int, str)) or not _DIGITS.match(str(rid)):
            raise wrong
        rid = str(rid)
        if spec["data_type"] == "lookup":
            target = spec["lookup"]["module"]["api_name"]
            if not self.store.exists(target, rid):
                raise invalid(path, spec["api_name"], expected_data_type="lookup")
            return {"id": rid}
        if rid != self.org.user_id:
            raise invalid(path, spec["api_name"], expected_data_type="jsonobject")
        return self.org.user_ref

    def _rows(self, subform: str, value: Any, path: str, existing: dict[str, Any] | None) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise invalid(path, subform, expected_data_type="jsonarray")
        known = {row["id"] for row in (existing or {}).get(subform) or []}
        specs = self.module.rows[subform]
        by_name = {s["api_name"]: s for s in specs}
        out: list[dict[str, Any]] = []
        for n, row in enumerate(value):
            row_path = f"{path}[{n}]"
            if not isinstance(row, dict):
                raise invalid(row_path, subform, expected_data_type="jsonobject")
            clean: dict[str, Any] = {}
            row_id = row.get("id")
            if row_id is not None:
                if str(row_id) not in known:
                    raise invalid(f"{row_path}.id", "id")
                clean["id"] = str(row_id)
            for key, item in row.items():
                if key == "id" or key.startswith("$"):
                    continue
                if key == "_delete" and row_id is not None:
                    clean["_delete"] = None
                    continue
                spec = by_name.get(key)
                if spec is None:
                    if self.config["reject_unknown_fields"]:
                        raise invalid(f"{row_path}.{key}", key)
                    continue
                if spec["read_only"]:
                    if self.config["reject_read_only_fields"]:
                        raise invalid(f"{row_path}.{key}", key)
                    continue
                clean[key] = self._value(spec, item, f"{row_path}.{key}", subform)
            if "_delete" not in clean:
                self._mandatory(specs, clean, row_path, row_id is None)
            out.append(clean)
        return out


# -- reads --------------------------------------------------------------------------------------------------------
@dataclass
class PageToken:
    org_id: str
    bound: tuple[Any, ...]  # the parameters a token is bound to (module, fields, sort, per_page, since)
    after: Key
    served: int  # records before the next page
    expires_at: float


class PageTokens:
    """Issued ``page_token`` values (opaque to clients, resumable by key so inserts do not shift pages)."""

    def __init__(self) -> None:
        self._tokens: dict[str, PageToken] = {}

    def issue(self, token: PageToken) -> str:
        value = secrets.token_hex(16)
        self._tokens[value] = token
        return value

    def get(self, value: str) -> PageToken | None:
        return self._tokens.get(value)


def _int_param(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if value < low or (high is not None and value > high):
        raise ApiError(zoho_error("INVALID_DATA", "invalid data", 400, {"param_name": name}))
    return value


def _fields_param(request: Request, module: ModuleDef, required: bool = True) -> list[str] | None:
    raw = request.query_params.get("fields")
    if raw is None or not raw.strip():
        if not required:
            return None
        raise ApiError(zoho_error("REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", 400,
                                  {"param_name": "fields"}))
    names = [part.strip() for part in raw.split(",") if part.strip()]
    if len(names) > MAX_FIELDS:
        raise ApiError(zoho_error("LIMIT_EXCEEDED", "fields limit exceeded", 400,
                                  {"param_name": "fields", "limit": MAX_FIELDS}))
    for name in names:
        if module.field(name) is None:
            raise ApiError(zoho_error("INVALID_DATA", "invalid data", 400, {"param_name": "fields",
                                                                             "api_name": name}))
    return names


class Lister:
    """``GET /crm/v8/{module}``: page numbers up to 2,000 records, then ``page_token`` (facts §2.1)."""

    def __init__(self, ctx: ZohoContext, org: Org, module: ModuleDef, request: Request, tokens: PageTokens) -> None:
        self.ctx, self.org, self.module, self.request, self.tokens = ctx, org, module, request, tokens
        self.store = ctx.store_for(org)

    def run(self) -> Response:
        request, config = self.request, self.ctx.config
        fields = _fields_param(request, self.module)
        assert fields is not None
        per_page = _int_param(request, "per_page", MAX_PER_PAGE, 1, MAX_PER_PAGE)
        sort_by = request.query_params.get("sort_by", "id")
        sort_order = request.query_params.get("sort_order", "desc")
        if sort_by not in ORDERINGS:
            raise ApiError(zoho_error("INVALID_DATA", "invalid data", 400, {"param_name": "sort_by"}))
        if sort_order not in {"asc", "desc"}:
            raise ApiError(zoho_error("INVALID_DATA", "invalid data", 400, {"param_name": "sort_order"}))
        since = self._since()
        ids_param = request.query_params.get("ids")
        if ids_param is not None:
            return self._by_ids(ids_param, fields)
        bound = (self.module.api_name, tuple(fields), sort_by, sort_order, per_page, since)
        token_value = request.query_params.get("page_token")
        now = self.ctx.clock()
        if token_value is not None:
            if "page" in request.query_params:
                raise ApiError(zoho_error("AMBIGUITY_DURING_PROCESSING", "ambiguity during processing", 400,
                                          {"ambiguity_due_to": ["page", "page_token"]}))
            token = self.tokens.get(token_value)
            if token is None:
                raise ApiError(zoho_error("INVALID_DATA", "invalid data", 400, {"param_name": "page_token"}))
            if token.expires_at <= now:
                raise ApiError(zoho_error("EXPIRED_VALUE", "the page token has expired", 400,
                                          {"param_name": "page_token"}))
            if token.org_id != self.org.org_id or token.bound != bound:
                raise ApiError(zoho_error("TOKEN_BOUND_DATA_MISMATCH", "the parameters do not match the token",
                                          400, {"param_name": "page_token"}))
            if token.served >= int(config["page_token_cap"]):
                raise ApiError(zoho_error("PAGINATION_LIMIT_EXCEEDED", "pagination limit exceeded", 400,
                                          {"limit": int(config["page_token_cap"])}))
            served, page = token.served, token.served // per_page + 1
            walk = self.store.ids(self.module.api_name, sort_by, sort_order == "desc", after=token.after,
                                  modified_after=since)
        else:
            page = _int_param(request, "page", 1, 1, None)
            if page * per_page > MAX_DISCRETE:
                raise ApiError(zoho_error("DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                                          "Cannot fetch more than 2000 records via page. Use page_token.", 400,
                                          {"limit": MAX_DISCRETE}))
            served = (page - 1) * per_page
            walk = self.store.ids(self.module.api_name, sort_by, sort_order == "desc", start=served,
                                  modified_after=since)
        chunk = list(itertools.islice(walk, per_page + 1))
        more = len(chunk) > per_page
        chunk = chunk[:per_page]
        if not chunk:
            return Response(status_code=304 if since is not None else 204)
        rows = [self._project(self.store.get(self.module.api_name, rid), fields) for rid in chunk]
        next_token = expiry = None
        if more:
            expires = now + float(config["page_token_ttl"])
            next_token = self.tokens.issue(PageToken(self.org.org_id, bound,
                                                     self.store.key(self.module.api_name, chunk[-1], sort_by),
                                                     served + len(chunk), expires))
            expiry = iso(expires)
        return json_response({"data": rows, "info": {
            "call": False, "per_page": per_page, "next_page_token": next_token, "count": len(rows),
            "sort_by": sort_by, "page": page, "previous_page_token": None, "page_token_expiry": expiry,
            "sort_order": sort_order, "email": False, "more_records": more}})

    def _since(self) -> float | None:
        raw = self.request.headers.get("if-modified-since")
        if raw is None:
            return None
        try:
            return parse_iso(raw)
        except ValueError:
            raise ApiError(zoho_error("INVALID_DATA", "invalid data", 400,
                                      {"header_name": "If-Modified-Since"})) from None

    def _by_ids(self, raw: str, fields: list[str]) -> Response:
        ids = [part.strip() for part in raw.split(",") if part.strip()]
        if len(ids) > MAX_WRITE:
            raise ApiError(zoho_error("LIMIT_EXCEEDED", "ids limit exceeded", 400,
                                      {"param_name": "ids", "limit": MAX_WRITE}))
        found = [rec for rid in ids if _DIGITS.match(rid)
                 and (rec := self.store.get(self.module.api_name, rid)) is not None]
        if not found:
            return Response(status_code=204)
        rows = [self._project(rec, fields) for rec in found]
        return json_response({"data": rows, "info": {"per_page": MAX_PER_PAGE, "count": len(rows), "page": 1,
                                                     "more_records": False, "next_page_token": None,
                                                     "previous_page_token": None, "page_token_expiry": None,
                                                     "sort_by": "id", "sort_order": "desc", "call": False,
                                                     "email": False}})

    def _project(self, rec: dict[str, Any] | None, fields: list[str]) -> dict[str, Any]:
        """The requested fields (and id); list responses never carry subforms."""
        rec = rec or {}
        subforms = set(self.module.subforms())
        out = {"id": rec.get("id")}
        out.update({name: rec.get(name) for name in fields if name not in subforms})
        return out


# -- writes -------------------------------------------------------------------------------------------------------
def line_totals(row: dict[str, Any]) -> dict[str, Any]:
    """A line item's read-only formulas (Total, Total_After_Discount, Net_Total)."""
    total = round(float(row.get("Quantity") or 0) * float(row.get("List_Price") or 0), 2)
    after = round(total - float(row.get("Discount") or 0), 2)
    return {**row, "Total": total, "Total_After_Discount": after,
            "Net_Total": round(after + float(row.get("Tax") or 0), 2)}


def derived(module: ModuleDef, merged: dict[str, Any]) -> dict[str, Any]:
    """Read-only values Zoho computes: Full_Name, line formulas, Sub_Total and Grand_Total."""
    out: dict[str, Any] = {}
    if module.api_name == "Contacts":
        out["Full_Name"] = " ".join(p for p in (merged.get("First_Name"), merged.get("Last_Name")) if p)
    for sub in module.subforms():
        rows = [line_totals(row) for row in merged.get(sub) or []]
        out[sub] = rows
        sub_total = round(sum(row["Net_Total"] for row in rows), 2)
        out["Sub_Total"] = sub_total
        out["Grand_Total"] = round(sub_total - float(merged.get("Discount") or 0) + float(merged.get("Tax") or 0)
                                   + float(merged.get("Adjustment") or 0), 2)
    return out


def success(rec: dict[str, Any], message: str, **extra: Any) -> dict[str, Any]:
    details = {key: rec[key] for key in ("Modified_Time", "Modified_By", "Created_Time", "id", "Created_By")}
    for key in ("Modified_By", "Created_By"):
        details[key] = {"name": rec[key].get("name"), "id": rec[key].get("id")}
    return {"code": "SUCCESS", **extra, "details": details, "message": message, "status": "success"}


class Writer:
    """One write request of one org on one module: validate each record, commit it, report it."""

    def __init__(self, ctx: ZohoContext, org: Org, module: ModuleDef) -> None:
        self.ctx = ctx
        self.org = org
        self.module = module
        self.store = ctx.store_for(org)
        self.validator = Validator(self.store, module, org, ctx.config)

    def insert(self, values: Any, path: str) -> dict[str, Any]:
        clean = self.validator.check(values, path, None)
        rows = {sub: [{k: v for k, v in row.items() if k != "_delete"} for row in clean.get(sub, [])]
                for sub in self.module.subforms() if sub in clean}
        merged = {**clean, **rows}
        rec = self.store.insert(self.module.api_name, {**merged, **derived(self.module, merged)}, self.org.user_ref)
        return rec

    def update(self, record_id: str, values: Any, path: str) -> dict[str, Any]:
        existing = self.store.get(self.module.api_name, record_id)
        if existing is None:
            raise invalid(f"{path}.id", "id")
        clean = self.validator.check(values, path, existing)
        drop = bool(self.ctx.config["drop_missing_rows"])
        rec = self.store.update(self.module.api_name, record_id, clean, self.org.user_ref, drop_missing_rows=drop)
        extra = derived(self.module, rec)
        if extra:
            current = {k: rec.get(k) for k in extra}
            if current != extra:
                rec = self.store.update(self.module.api_name, record_id, extra, self.org.user_ref,
                                        drop_missing_rows=False)
        return rec

    def match(self, values: Any, fields: list[str]) -> tuple[str | None, str | None]:
        """The record an upsert updates, and the field it matched on."""
        if not isinstance(values, dict):
            return None, None
        for name in fields:
            value = values.get(name)
            if value in (None, ""):
                continue
            ids = self.store.find(self.module.api_name, name, value)
            if ids:
                return ids[0], name
        return None, None


def _status(ctx: ZohoContext, results: list[dict[str, Any]], all_ok: int) -> int:
    ok = sum(1 for r in results if r["status"] == "success")
    if ok == len(results):
        return all_ok
    return int(ctx.config["partial_status"]) if ok else int(ctx.config["all_failed_status"])


async def _write_body(request: Request) -> tuple[list[Any], dict[str, Any]]:
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("data"), list) or not body["data"]:
        raise ApiError(zoho_error("REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", 400,
                                  {"param_name": "data"}))
    if len(body["data"]) > MAX_WRITE:
        raise ApiError(zoho_error("LIMIT_EXCEEDED", "Record count exceeded", 400, {"limit": MAX_WRITE}))
    return body["data"], body


def _unmodified_since(request: Request, store: ZohoStore, module: ModuleDef, items: list[tuple[Any, Any]]) -> None:
    """``If-Unmodified-Since``: 412 ALREADY_MODIFIED when a target record changed after that time (facts §2.2)."""
    raw = request.headers.get("if-unmodified-since")
    if raw is None:
        return
    try:
        since = parse_iso(raw)
    except ValueError:
        raise ApiError(zoho_error("INVALID_DATA", "invalid data", 400,
                                  {"header_name": "If-Unmodified-Since"})) from None
    for rid, _values in items:
        rid = str(rid)
        if store.exists(module.api_name, rid) and store.times(module.api_name, rid)[1] > since:
            raise ApiError(zoho_error("ALREADY_MODIFIED", "the record has been modified after the given time",
                                      412, {"id": rid}))


def routes(ctx: ZohoContext) -> list[BaseRoute]:
    """The Records API under ``/crm/v8/{module}``."""
    tokens = PageTokens()

    def resolve(request: Request, op: str) -> tuple[Org, ModuleDef]:
        name = request.path_params["module"]
        org = ctx.authorize(request, f"ZohoCRM.modules.{name.lower().replace('_', '')}.{op}")
        store = ctx.store_for(org)
        if not store.has_module(name) or not store.module(name).listed:
            raise ApiError(zoho_error("INVALID_MODULE", "the module name given seems to be invalid", 400,
                                      {"resource_path_index": 0}))
        return org, store.module(name)

    async def list_records(request: Request) -> Response:
        org, module = resolve(request, "READ")
        async with ctx.slot(org):
            ctx.charge(org, 1)
            return Lister(ctx, org, module, request, tokens).run()

    async def get_record(request: Request) -> Response:
        org, module = resolve(request, "READ")
        async with ctx.slot(org):
            ctx.charge(org, 1)
            rid = request.path_params["id"]
            rec = ctx.store_for(org).get(module.api_name, rid) if _DIGITS.match(rid) else None
            if rec is None:
                if int(ctx.config["unknown_id_status"]) == 204:
                    return Response(status_code=204)
                raise ApiError(zoho_error("INVALID_DATA", "the id given seems to be invalid", 400,
                                          {"resource_path_index": 1}))
            wanted = _fields_param(request, module, required=False)
            if wanted is not None:
                keep = {"id", *wanted, *module.subforms(), "$has_more"}
                rec = {k: v for k, v in rec.items() if k in keep}
            return json_response({"data": [rec]})

    async def insert(request: Request) -> Response:
        org, module = resolve(request, "CREATE")
        data, _body = await _write_body(request)
        async with ctx.slot(org, complex_api=len(data) > 10):
            ctx.charge(org, write_cost(len(data)))
            writer = Writer(ctx, org, module)
            results: list[dict[str, Any]] = []
            with writer.store.batch():
                for n, values in enumerate(data):
                    try:
                        results.append(success(writer.insert(values, f"$.data[{n}]"), "record added"))
                    except RecordError as err:
                        results.append(err.result)
            ok = int(ctx.config["single_insert_status" if len(data) == 1 else "multi_insert_status"])
            return json_response({"data": results}, _status(ctx, results, ok))

    async def update_many(request: Request) -> Response:
        org, module = resolve(request, "UPDATE")
        data, _body = await _write_body(request)
        items = [(item.get("id") if isinstance(item, dict) else None, item) for item in data]
        _unmodified_since(request, ctx.store_for(org), module, items)
        return await _update(org, module, items)

    async def update_one(request: Request) -> Response:
        org, module = resolve(request, "UPDATE")
        data, _body = await _write_body(request)
        items = [(request.path_params["id"], item) for item in data[:1]]
        _unmodified_since(request, ctx.store_for(org), module, items)
        return await _update(org, module, items)

    async def _update(org: Org, module: ModuleDef, items: list[tuple[Any, Any]]) -> Response:
        async with ctx.slot(org, complex_api=len(items) > 10):
            ctx.charge(org, write_cost(len(items)))
            writer = Writer(ctx, org, module)
            results: list[dict[str, Any]] = []
            with writer.store.batch():
                for n, (rid, values) in enumerate(items):
                    try:
                        if rid in (None, ""):
                            raise RecordError("MANDATORY_NOT_FOUND", "required field not found",
                                              {"api_name": "id", "json_path": f"$.data[{n}].id"})
                        results.append(success(writer.update(str(rid), values, f"$.data[{n}]"), "record updated"))
                    except RecordError as err:
                        results.append(err.result)
            return json_response({"data": results}, _status(ctx, results, int(ctx.config["update_status"])))

    async def upsert(request: Request) -> Response:
        org, module = resolve(request, "CREATE")
        data, body = await _write_body(request)
        fields = body.get("duplicate_check_fields")
        allowed = module.indexed_fields()
        if fields is None:
            fields = allowed
        if not isinstance(fields, list) or not fields:
            raise ApiError(zoho_error("INVALID_DATA", "invalid data", 400,
                                      {"json_path": "$.duplicate_check_fields"}))
        for n, name in enumerate(fields):
            if name not in allowed:
                raise ApiError(zoho_error("INVALID_DATA", "invalid data", 400, {
                    "api_name": name, "json_path": f"$.duplicate_check_fields[{n}]"}))
        async with ctx.slot(org, complex_api=len(data) > 10):
            ctx.charge(org, write_cost(len(data)))
            writer = Writer(ctx, org, module)
            results: list[dict[str, Any]] = []
            with writer.store.batch():
                for n, values in enumerate(data):
                    try:
                        rid, matched = writer.match(values, fields)
                        if rid is None:
                            rec = writer.insert(values, f"$.data[{n}]")
                            results.append(success(rec, "record added", duplicate_field=None, action="insert"))
                        else:
                            rec = writer.update(rid, values, f"$.data[{n}]")
                            results.append(success(rec, "record updated", duplicate_field=matched,
                                                   action="update"))
                    except RecordError as err:
                        results.append(err.result)
            return json_response({"data": results}, _status(ctx, results, int(ctx.config["update_status"])))

    async def delete_many(request: Request) -> Response:
        org, module = resolve(request, "DELETE")
        raw = request.query_params.get("ids")
        if not raw:
            raise ApiError(zoho_error("REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", 400,
                                      {"param_name": "ids"}))
        ids = [part.strip() for part in raw.split(",") if part.strip()]
        if len(ids) > MAX_WRITE:
            raise ApiError(zoho_error("LIMIT_EXCEEDED", "Record count exceeded", 400, {"limit": MAX_WRITE}))
        return await _delete(org, module, ids)

    async def delete_one(request: Request) -> Response:
        org, module = resolve(request, "DELETE")
        return await _delete(org, module, [request.path_params["id"]])

    async def _delete(org: Org, module: ModuleDef, ids: list[str]) -> Response:
        async with ctx.slot(org):
            ctx.charge(org, 1)
            store = ctx.store_for(org)
            results: list[dict[str, Any]] = []
            with store.batch():
                for rid in ids:
                    if _DIGITS.match(rid) and store.delete(module.api_name, rid):
                        results.append({"code": "SUCCESS", "details": {"id": rid}, "message": "record deleted",
                                        "status": "success"})
                    else:
                        results.append({"code": "INVALID_DATA", "details": {"id": rid},
                                        "message": "the id given seems to be invalid", "status": "error"})
            return json_response({"data": results}, _status(ctx, results, int(ctx.config["update_status"])))

    async def count(request: Request) -> Response:
        org, module = resolve(request, "READ")
        async with ctx.slot(org):
            ctx.charge(org, 1)
            return json_response({"count": str(ctx.store_for(org).count(module.api_name))})

    return [
        Route("/crm/v8/{module}/actions/count", count, methods=["GET"]),
        Route("/crm/v8/{module}/upsert", upsert, methods=["POST"]),
        Route("/crm/v8/{module}", list_records, methods=["GET"]),
        Route("/crm/v8/{module}", insert, methods=["POST"]),
        Route("/crm/v8/{module}", update_many, methods=["PUT"]),
        Route("/crm/v8/{module}", delete_many, methods=["DELETE"]),
        Route("/crm/v8/{module}/{id}", get_record, methods=["GET"]),
        Route("/crm/v8/{module}/{id}", update_one, methods=["PUT"]),
        Route("/crm/v8/{module}/{id}", delete_one, methods=["DELETE"]),
    ]
