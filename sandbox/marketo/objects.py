"""Lead database routes (facts §2.3–2.4): leads, companies, named accounts, opportunities, sales persons.

Reads filter by one searchable field (<= 300 values) and page with ``nextPageToken``; writes take <= 300 records
and answer per record in input order (leads without ``seq``, the other objects with it), refusing a record with
``skipped`` and reasons. With ``crm_sync`` on, companies, opportunities and sales persons are read-only (1018).
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ml_connector.sandbox.marketo.envelope import MESSAGES, Refusal, ok, skipped
from ml_connector.sandbox.marketo.limits import quota_day
from ml_connector.sandbox.marketo.store import (
    COMPANY_FIELDS,
    SCHEMAS,
    FieldDef,
    MarketoStore,
    ObjectSchema,
    lead_field_id,
)

if TYPE_CHECKING:
    from ml_connector.sandbox.marketo.app import MarketoSandbox

MAX_BATCH = 300
LEAD_DEFAULT_FIELDS = ("id", "email", "updatedAt", "createdAt", "firstName", "lastName")
LEAD_ACTIONS = ("createOnly", "updateOnly", "createOrUpdate", "createDuplicate")
OBJECT_ACTIONS = ("createOnly", "updateOnly", "createOrUpdate")
CRM_MANAGED = ("companies", "opportunities", "salespersons")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# -- values -----------------------------------------------------------------------------------------------------
def check_value(spec: FieldDef, value: Any) -> str | None:
    """None when the value suits the field's type, else the 1001 message (no coercion: stricter than lenient)."""
    if value is None:
        return None
    kind = spec.data_type
    good = True
    if kind == "integer":
        good = isinstance(value, int) and not isinstance(value, bool)
    elif kind in {"currency", "float"}:
        good = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind == "boolean":
        good = isinstance(value, bool)
    elif kind == "date":
        good = isinstance(value, str) and bool(_DATE.match(value)) and _parses(value, "%Y-%m-%d")
    elif kind == "datetime":
        good = isinstance(value, str) and _parses(value.replace("Z", "+00:00"), None)
    else:
        good = isinstance(value, str) and (spec.length is None or len(value) <= spec.length)
        if good and kind == "email":
            good = bool(_EMAIL.match(value))
    if good:
        return None
    return f"Invalid value '{value}'. Required of type '{kind}'"


def _parses(text: str, fmt: str | None) -> bool:
    try:
        if fmt:
            datetime.strptime(text, fmt)
        else:
            datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    """``null`` or ``""`` is written as null."""
    return {k: (None if v == "" else v) for k, v in record.items()}


# -- request parsing --------------------------------------------------------------------------------------------
async def json_body(request: Request) -> dict[str, Any]:
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise Refusal("612")
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise Refusal("609") from exc
    if not isinstance(body, dict):
        raise Refusal("609")
    return body


def _input(body: dict[str, Any]) -> list[Any]:
    records = body.get("input")
    if not records:
        raise Refusal("701", MESSAGES["701"] % "input")
    if not isinstance(records, list):
        raise Refusal("1003", "Invalid input")
    if len(records) > MAX_BATCH:
        raise Refusal("1003", f"Batch size of {len(records)} exceeds the maximum of {MAX_BATCH}")
    return records


def _page_token(signature: str, offset: int) -> str:
    raw = f"{zlib.crc32(signature.encode()):08x}:{offset}".encode()
    return base64.b32encode(raw).decode().rstrip("=")


def _page_offset(token: str, signature: str) -> int:
    try:
        raw = base64.b32decode(token + "=" * (-len(token) % 8)).decode()
        crc, offset = raw.split(":")
        if crc != f"{zlib.crc32(signature.encode()):08x}":
            raise ValueError(token)
        return int(offset)
    except ValueError as exc:
        raise Refusal("1003", "Invalid nextPageToken") from exc


# -- reads ------------------------------------------------------------------------------------------------------
def _fields_param(request: Request, schema: ObjectSchema, default: tuple[str, ...]) -> list[str]:
    raw = request.query_params.get("fields")
    names = [n.strip() for n in raw.split(",") if n.strip()] if raw else list(default)
    for name in names:
        if schema.field(name) is None:
            raise Refusal("1006", f"Field '{name}' not found")
    return names


def _search(sandbox: MarketoSandbox, request: Request, obj: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The matching records of one page and the paging keys (``moreResult``, ``nextPageToken``)."""
    schema = SCHEMAS[obj]
    params = request.query_params
    filter_type = params.get("filterType")
    raw_values = params.get("filterValues")
    if not filter_type:
        raise Refusal("701", MESSAGES["701"] % "filterType")
    if not raw_values:
        raise Refusal("701", MESSAGES["701"] % "filterValues")
    if obj != "leads" and filter_type in {"dedupeFields", "idField"}:
        filter_type = schema.dedupe_fields[0] if filter_type == "dedupeFields" else schema.id_field
    if filter_type not in schema.searchable:
        raise Refusal("1003", f"Invalid filterType '{filter_type}'")
    values = [v.strip() for v in raw_values.split(",") if v.strip()]
    if len(values) > MAX_BATCH:
        raise Refusal("1003", f"Too many filterValues, the maximum is {MAX_BATCH}")
    try:
        batch = int(params.get("batchSize") or MAX_BATCH)
    except ValueError as exc:
        raise Refusal("1003", "Invalid batchSize") from exc
    if not 1 <= batch <= MAX_BATCH:
        raise Refusal("1003", f"batchSize must be between 1 and {MAX_BATCH}")
    signature = f"{obj}|{filter_type}|{','.join(values)}"
    token = params.get("nextPageToken")
    offset = _page_offset(token, signature) if token else 0
    matches = sandbox.store.find(obj, filter_type, values)
    if len(matches) > int(sandbox.config["max_filter_matches"]):
        raise Refusal("1003", "Too many results match the filter")
    page = matches[offset:offset + batch]
    extra: dict[str, Any] = {}
    if offset + batch < len(matches):
        extra = {"moreResult": True, "nextPageToken": _page_token(signature, offset + batch)}
    return page, extra


def lead_view(store: MarketoStore, lead: dict[str, Any]) -> dict[str, Any]:
    """A lead as the API shows it: the company fields come from its linked company."""
    company_id = lead.get("externalCompanyId")
    if company_id:
        companies = store.find("companies", "externalCompanyId", [str(company_id)])
        if companies:
            lead = {**lead, **{f: companies[0].get(f) for f in COMPANY_FIELDS}}
    return lead


async def list_leads(sandbox: MarketoSandbox, request: Request) -> Response:
    names = _fields_param(request, SCHEMAS["leads"], LEAD_DEFAULT_FIELDS)
    page, extra = _search(sandbox, request, "leads")
    result = [_project(lead_view(sandbox.store, lead), ["id", *names]) for lead in page]
    return ok(result, **extra)


async def get_lead(sandbox: MarketoSandbox, request: Request) -> Response:
    names = _fields_param(request, SCHEMAS["leads"], LEAD_DEFAULT_FIELDS)
    lead = sandbox.store.get("leads", request.path_params["lead_id"])
    if lead is None:
        return ok([])
    return ok([_project(lead_view(sandbox.store, lead), ["id", *names])])


def _project(record: dict[str, Any], names: list[str]) -> dict[str, Any]:
    return {name: record.get(name) for name in dict.fromkeys(names)}


async def list_objects(sandbox: MarketoSandbox, request: Request, obj: str) -> Response:
    schema = SCHEMAS[obj]
    default = (schema.id_field, *schema.dedupe_fields, "createdAt", "updatedAt")
    names = _fields_param(request, schema, default)
    page, extra = _search(sandbox, request, obj)
    result = [{"seq": i, **_project(row, [schema.id_field, *names])} for i, row in enumerate(page)]
    return ok(result, **extra)


# -- describe ---------------------------------------------------------------------------------------------------
def _field_list(schema: ObjectSchema, crm: bool = False) -> list[dict[str, Any]]:
    out = []
    for spec in schema.fields:
        item: dict[str, Any] = {"name": spec.name, "displayName": spec.display, "dataType": spec.data_type}
        if spec.length is not None:
            item["length"] = spec.length
        item["updateable"] = spec.updateable
        if crm:
            item["crmManaged"] = False
        out.append(item)
    return out


async def describe_leads(sandbox: MarketoSandbox, request: Request) -> Response:
    schema = SCHEMAS["leads"]
    return ok([{"name": schema.display, "searchableFields": [[f] for f in schema.searchable],
                "fields": _field_list(schema, crm=True)}])


async def describe_leads_v1(sandbox: MarketoSandbox, request: Request) -> Response:
    """The older lead describe: one entry per field with its numeric id and its REST and SOAP names."""
    result = []
    for spec in SCHEMAS["leads"].fields:
        item: dict[str, Any] = {"id": lead_field_id(spec.name), "displayName": spec.display,
                                "dataType": spec.data_type}
        if spec.length is not None:
            item["length"] = spec.length
        item["rest"] = {"name": spec.name, "readOnly": not spec.updateable}
        item["soap"] = {"name": spec.name[:1].upper() + spec.name[1:], "readOnly": not spec.updateable}
        result.append(item)
    return ok(result)


async def describe_object(sandbox: MarketoSandbox, request: Request, obj: str) -> Response:
    schema = SCHEMAS[obj]
    return ok([{"name": schema.display, "displayName": schema.display, "idField": schema.id_field,
                "dedupeFields": list(schema.dedupe_fields), "searchableFields": [[f] for f in schema.searchable],
                "fields": _field_list(schema)}])


# -- writes: leads ----------------------------------------------------------------------------------------------
def _record_problem(schema: ObjectSchema, record: dict[str, Any], allowed_keys: set[str]) -> dict[str, Any] | None:
    """The ``skipped`` answer for a record whose fields are unknown, read-only or of the wrong type."""
    for name, value in record.items():
        spec = schema.field(name)
        if spec is None:
            return skipped("1006", f"Field '{name}' not found")
        if not spec.updateable and name not in allowed_keys:
            return skipped("1003", f"Field '{name}' is not updateable")
        problem = check_value(spec, value)
        if problem:
            return skipped("1001", problem)
    return None


async def sync_leads(sandbox: MarketoSandbox, request: Request) -> Response:
    body = await json_body(request)
    action = body.get("action") or "createOrUpdate"
    if action not in LEAD_ACTIONS:
        raise Refusal("1003", f"Invalid action '{action}'")
    lookup = body.get("lookupField") or "email"
    schema = SCHEMAS["leads"]
    if lookup not in schema.searchable:
        raise Refusal("1003", f"Invalid lookupField '{lookup}'")
    if lookup == "id" and action != "updateOnly":
        raise Refusal("1003", "Lookup field 'id' is only allowed with action 'updateOnly'")
    partition = body.get("partitionName")
    if partition not in (None, "Default"):
        raise Refusal("1003", f"Invalid partitionName '{partition}'")
    records = _input(body)
    store = sandbox.store
    seen: set[str] = set()
    result: list[dict[str, Any]] = []
    for raw in records:
        if not isinstance(raw, dict):
            result.append(skipped("1003", "Invalid record"))
            continue
        record = _clean(raw)
        answer = _record_problem(schema, record, {lookup})
        if answer is None and any(name in COMPANY_FIELDS for name in record):
            answer = skipped("1021")
        if answer is None:
            answer = _lead_write(sandbox, store, action, lookup, record, seen)
        result.append(answer)
    return ok(result)


def _lead_write(sandbox: MarketoSandbox, store: MarketoStore, action: str, lookup: str, record: dict[str, Any],
                seen: set[str]) -> dict[str, Any]:
    company = record.get("externalCompanyId")
    if company and sandbox.config["lead_company_must_exist"] \
            and not store.find("companies", "externalCompanyId", [str(company)]):
        return skipped("1013", f"Company '{company}' not found")
    if action == "createDuplicate":
        return {"id": store.insert("leads", record)["id"], "status": "created"}
    key = record.get(lookup)
    if key is None:
        return skipped("1002", f"Missing value for lookup field '{lookup}'")
    norm = str(key).lower() if lookup == "email" else str(key)
    if norm in seen:
        return skipped("1036")
    seen.add(norm)
    matches = store.find("leads", lookup, [str(key)])
    if len(matches) > 1:
        return skipped("1007")
    if matches and action == "createOnly":
        return skipped("1005")
    if not matches and action == "updateOnly":
        return skipped("1004")
    if matches:
        lead_id = matches[0]["id"]
        store.update("leads", lead_id, {k: v for k, v in record.items() if k != "id"})
        return {"id": lead_id, "status": "updated"}
    return {"id": store.insert("leads", record)["id"], "status": "created"}


async def delete_leads(sandbox: MarketoSandbox, request: Request) -> Response:
    records = _input(await json_body(request))
    result: list[dict[str, Any]] = []
    for raw in records:
        lead_id = raw.get("id") if isinstance(raw, dict) else None
        if not isinstance(lead_id, int) or isinstance(lead_id, bool):
            result.append(skipped("1003", "Invalid id"))
        elif sandbox.store.delete("leads", lead_id):
            result.append({"id": lead_id, "status": "deleted"})
        else:
            result.append(skipped("1004", id=lead_id))
    return ok(result)


# -- writes: the other objects ----------------------------------------------------------------------------------
def _crm_refusal(sandbox: MarketoSandbox, obj: str, count: int) -> Response | None:
    """With CRM sync on, a write to a CRM-managed object: 1018, at the response or at each record."""
    if obj not in CRM_MANAGED or sandbox.config["crm_sync"] == "off":
        return None
    if sandbox.config["crm_error_level"] == "response":
        raise Refusal("1018")
    return ok([skipped("1018", seq=i) for i in range(count)])


async def sync_objects(sandbox: MarketoSandbox, request: Request, obj: str) -> Response:
    body = await json_body(request)
    schema = SCHEMAS[obj]
    action = body.get("action") or "createOrUpdate"
    dedupe_by = body.get("dedupeBy") or "dedupeFields"
    if action not in OBJECT_ACTIONS:
        raise Refusal("1003", f"Invalid action '{action}'")
    if dedupe_by not in {"dedupeFields", "idField"}:
        raise Refusal("1003", f"Invalid dedupeBy '{dedupe_by}'")
    if dedupe_by == "idField" and action == "createOnly":
        raise Refusal("1003", "dedupeBy 'idField' cannot be used with action 'createOnly'")
    records = _input(body)
    refused = _crm_refusal(sandbox, obj, len(records))
    if refused is not None:
        return refused
    keys = [schema.id_field] if dedupe_by == "idField" else list(schema.dedupe_fields)
    seen: set[tuple[str, ...]] = set()
    result = []
    for seq, raw in enumerate(records):
        if not isinstance(raw, dict):
            result.append(skipped("1003", "Invalid record", seq=seq))
            continue
        answer = _object_write(sandbox.store, obj, schema, action, keys, _clean(raw), seen)
        result.append({"seq": seq, **answer})
    return ok(result)


def _object_write(store: MarketoStore, obj: str, schema: ObjectSchema, action: str, keys: list[str],
                  record: dict[str, Any], seen: set[tuple[str, ...]]) -> dict[str, Any]:
    problem = _record_problem(schema, record, set(keys))
    if problem is not None:
        return problem
    missing = [k for k in keys if record.get(k) is None]
    if missing:
        return skipped("1002", f"Missing value for required field '{missing[0]}'")
    dedupe = tuple(str(record[k]) for k in keys)
    if dedupe in seen:
        return skipped("1036", "Duplicate record in input")
    seen.add(dedupe)
    matches = store.find(obj, keys[0], [dedupe[0]])
    matches = [m for m in matches if all(str(m.get(k)) == v for k, v in zip(keys, dedupe, strict=True))]
    id_field = schema.id_field
    if matches and action == "createOnly":
        return skipped("1017", "Record already exists")
    if not matches and (action == "updateOnly" or keys == [id_field]):
        return skipped("1013")
    if matches:
        current = matches[0]
        merged = {**current, **record}
        absent = [f for f in schema.required if merged.get(f) is None]
        if absent:
            return skipped("1002", f"Missing value for required field '{absent[0]}'")
        store.update(obj, current[id_field], {k: v for k, v in record.items() if k != id_field})
        return {"status": "updated", id_field: current[id_field]}
    absent = [f for f in schema.required if record.get(f) is None]
    if absent:
        return skipped("1002", f"Missing value for required field '{absent[0]}'")
    created = store.insert(obj, record)
    return {"status": "created", id_field: created[id_field]}


def _in_use(store: MarketoStore, obj: str, record: dict[str, Any]) -> bool:
    """A sales person still named by a lead, company or opportunity cannot be deleted."""
    if obj != "salespersons" or not record.get("externalSalesPersonId"):
        return False
    value = [str(record["externalSalesPersonId"])]
    return any(store.find(other, "externalSalesPersonId", value) for other in ("leads", "companies", "opportunities"))


async def delete_objects(sandbox: MarketoSandbox, request: Request, obj: str) -> Response:
    body = await json_body(request)
    schema = SCHEMAS[obj]
    delete_by = body.get("deleteBy") or "dedupeFields"
    if delete_by not in {"dedupeFields", "idField"}:
        raise Refusal("1003", f"Invalid deleteBy '{delete_by}'")
    records = _input(body)
    refused = _crm_refusal(sandbox, obj, len(records))
    if refused is not None:
        return refused
    keys = [schema.id_field] if delete_by == "idField" else list(schema.dedupe_fields)
    result: list[dict[str, Any]] = []
    for seq, raw in enumerate(records):
        values = [raw.get(k) if isinstance(raw, dict) else None for k in keys]
        if any(v is None for v in values):
            result.append(skipped("1002", f"Missing value for required field '{keys[0]}'", seq=seq))
            continue
        matches = sandbox.store.find(obj, keys[0], [str(values[0])])
        if not matches:
            result.append(skipped("1013", seq=seq))
        elif _in_use(sandbox.store, obj, matches[0]):
            result.append(skipped("1022", seq=seq))
        else:
            key = matches[0][schema.id_field]
            sandbox.store.delete(obj, key)
            result.append({"seq": seq, "status": "deleted", schema.id_field: key})
    return ok(result)


# -- usage ------------------------------------------------------------------------------------------------------
async def usage(sandbox: MarketoSandbox, request: Request) -> Response:
    days = sandbox.limits.usage()
    today = quota_day(sandbox.clock())
    return ok([_usage_day(sandbox, today, days.get(today, 0))])


async def usage_last7(sandbox: MarketoSandbox, request: Request) -> Response:
    days = sandbox.limits.usage()
    now = sandbox.clock()
    dates = [quota_day(now - 86_400 * back) for back in range(7)]
    return ok([_usage_day(sandbox, day, days.get(day, 0)) for day in dates])


def _usage_day(sandbox: MarketoSandbox, day: str, total: int) -> dict[str, Any]:
    users = [{"userId": str(sandbox.config["api_user"]), "count": total}] if total else []
    return {"date": day, "total": total, "users": users}


async def errors(sandbox: MarketoSandbox, request: Request) -> Response:
    return ok([_errors_day(sandbox, quota_day(sandbox.clock()))])


async def errors_last7(sandbox: MarketoSandbox, request: Request) -> Response:
    now = sandbox.clock()
    return ok([_errors_day(sandbox, quota_day(now - 86_400 * back)) for back in range(7)])


def _errors_day(sandbox: MarketoSandbox, day: str) -> dict[str, Any]:
    counts = sandbox.limits.errors(day)
    return {"date": day, "total": sum(counts.values()),
            "errors": [{"errorCode": code, "count": n} for code, n in counts.items()]}


# -- routing ----------------------------------------------------------------------------------------------------
def routes(sandbox: MarketoSandbox) -> list[BaseRoute]:
    def bind(handler: Any, *args: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            response: Response = await handler(sandbox, request, *args)
            return response
        return endpoint

    out: list[BaseRoute] = [
        Route("/rest/v1/leads.json", bind(list_leads), methods=["GET"]),
        Route("/rest/v1/leads.json", bind(sync_leads), methods=["POST"]),
        Route("/rest/v1/leads/describe2.json", bind(describe_leads), methods=["GET"]),
        Route("/rest/v1/leads/describe.json", bind(describe_leads_v1), methods=["GET"]),
        Route("/rest/v1/leads/delete.json", bind(delete_leads), methods=["POST"]),
        Route("/rest/v1/lead/{lead_id:int}.json", bind(get_lead), methods=["GET"]),
        Route("/rest/v1/stats/usage.json", bind(usage), methods=["GET"]),
        Route("/rest/v1/stats/usage/last7days.json", bind(usage_last7), methods=["GET"]),
        Route("/rest/v1/stats/errors.json", bind(errors), methods=["GET"]),
        Route("/rest/v1/stats/errors/last7days.json", bind(errors_last7), methods=["GET"]),
    ]
    for obj in ("companies", "namedaccounts", "opportunities", "salespersons"):
        out += [
            Route(f"/rest/v1/{obj}/describe.json", bind(describe_object, obj), methods=["GET"]),
            Route(f"/rest/v1/{obj}/delete.json", bind(delete_objects, obj), methods=["POST"]),
            Route(f"/rest/v1/{obj}.json", bind(list_objects, obj), methods=["GET"]),
            Route(f"/rest/v1/{obj}.json", bind(sync_objects, obj), methods=["POST"]),
        ]
    return out
