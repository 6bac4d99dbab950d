"""sObject writes: single records, upsert by External ID, parents by external id, sObject Collections, and the
replication reads ``updated``/``deleted`` (facts §4, §5). Every write is validated here, then committed to the
store inside one transaction per API call (a collection with allOrNone=true rolls back as a whole).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ml_connector.sandbox.core import is_date
from ml_connector.sandbox.salesforce.common import NOT_FOUND, Call, RecordError, read_json, sf_error
from ml_connector.sandbox.salesforce.context import Org
from ml_connector.sandbox.salesforce.discovery import resolve
from ml_connector.sandbox.salesforce.ids import to18
from ml_connector.sandbox.salesforce.objects import FieldDef, ObjectDef
from ml_connector.sandbox.salesforce.store import sf_datetime

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TEXT = {"string", "textarea", "email", "phone", "url", "picklist"}
_NUMBER = {"currency", "double", "int", "percent"}
ROLLED_BACK = {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
               "message": "Record rolled back because not all records were valid and the request was using "
                          "AllOrNone header", "fields": []}


class _RollBack(Exception):
    """allOrNone: undo the whole call."""


def _label(f: FieldDef) -> str:
    return f.name.removesuffix("Id") if f.type == "reference" else f.name


@dataclass
class Writer:
    """Validates and commits writes for one call; ``ui``: an admin (UI user) write, exempt from field access."""

    org: Org
    origin: str
    ui: bool = False

    @property
    def store(self) -> Any:
        return self.org.store

    # -- validation -----------------------------------------------------------------------------------------
    def values(self, definition: ObjectDef, body: Any, *, creating: bool,
               current: dict[str, Any] | None = None) -> dict[str, Any]:
        """The body's fields in canonical names and stored form; RecordError on the first problem."""
        if not isinstance(body, dict):
            raise RecordError("JSON_PARSER_ERROR", "Cannot deserialize instance of the sObject from a non-object")
        out: dict[str, Any] = {}
        for key, value in body.items():
            if key == "attributes":
                continue
            ref = definition.relationship(key)
            if ref is not None and isinstance(value, dict) and definition.field(key) is None:
                self._check_access(ref, creating)
                out[ref.name] = self._parent_by_external_id(ref, value)
                continue
            f = definition.field(key)
            if f is None:
                raise RecordError("INVALID_FIELD", f"No such column '{key}' on sobject of type {definition.name}",
                                  [key])
            if f.name == "Id":
                if creating:
                    raise RecordError("INVALID_FIELD", "The Id field should not be specified in the sobject data.",
                                      ["Id"])
                continue
            self._check_access(f, creating)
            out[f.name] = self._convert(f, value)
        required = [f.name for f in definition.fields if f.required and
                    (out.get(f.name) is None if creating or f.name in out else False)]
        if required:
            raise RecordError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(required)}]",
                              required)
        for f in definition.fields:
            if f.unique and out.get(f.name) not in (None, ""):
                own = current["Id"] if current else None
                others = [rid for rid in self.store.find(definition.name, f.name, out[f.name]) if rid != own]
                if others:
                    raise RecordError("DUPLICATE_VALUE", f"duplicate value found: {f.name} duplicates value on "
                                      f"record with id: {others[0]}", [])
        return out

    def _check_access(self, f: FieldDef, creating: bool) -> None:
        if self.ui:
            return
        if (creating and not f.createable) or (not creating and not f.updateable):
            raise RecordError("INVALID_FIELD_FOR_INSERT_UPDATE", _no_access(f, creating), [f.name])

    def _convert(self, f: FieldDef, value: Any) -> Any:
        if value is None:
            return None
        kind = f.type
        if kind in _TEXT:
            if not isinstance(value, str):
                raise _deserialize("String", value)
            if f.length and len(value) > f.length:
                raise RecordError("STRING_TOO_LONG", f"{f.name}: data value too large: {value} "
                                  f"(max length={f.length})", [f.name])
            if kind == "email" and value and not _EMAIL.match(value):
                raise RecordError("INVALID_EMAIL_ADDRESS", f"{f.name}: invalid email address: {value}", [f.name])
            if kind == "picklist" and value and self.org.config["strict_picklists"] and value not in f.picklist:
                raise RecordError("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                                  f"{f.name}: bad value for restricted picklist field: {value}", [f.name])
            return value
        if kind == "boolean":
            if not isinstance(value, bool):
                raise _deserialize("boolean", value)
            return value
        if kind in _NUMBER:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _deserialize("double", value)
            return value
        if kind == "date":
            if not is_date(value):
                raise _deserialize("date", value)
            return value
        if kind == "datetime":
            try:
                moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            except ValueError:
                raise _deserialize("datetime", value) from None
            return sf_datetime(int(round(moment.timestamp() * 1000)))
        if kind == "reference":
            return self._reference(f, value)
        return value

    def _reference(self, f: FieldDef, value: Any) -> str:
        target = f.reference_to[0]
        full = to18(value) if isinstance(value, str) else None
        if target == "User":
            if full is None or full != self.org.config["user_id"]:
                raise RecordError("INVALID_CROSS_REFERENCE_KEY", f"{_label(f)}: id value of incorrect type: {value}",
                                  [f.name])
            return full
        definition = self.store.definition(target)
        if full is None or definition is None or not full.startswith(definition.key_prefix):
            raise RecordError("MALFORMED_ID", f"{_label(f)} ID: id value of incorrect type: {value}", [f.name])
        if self.store.get(definition.name, full) is None:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [f.name])
        return full

    def _parent_by_external_id(self, ref: FieldDef, value: dict[str, Any]) -> str:
        parent = self.store.definition(ref.reference_to[0])
        keys = [k for k in value if k != "attributes"]
        ext = parent.field(keys[0]) if parent is not None and len(keys) == 1 else None
        if parent is None or ext is None or not ext.external_id:
            raise RecordError("INVALID_FIELD", f"The foreign key for the relationship {ref.relationship} must specify "
                              "exactly one external ID field", [str(ref.relationship)])
        found = self.store.find(parent.name, ext.name, value[keys[0]])
        if not found:
            raise RecordError("INVALID_FIELD", f"Foreign key external ID: {value[keys[0]]} not found for field "
                              f"{ext.name} in entity {parent.name}", [])
        if len(found) > 1:
            raise RecordError("INVALID_FIELD", f"Foreign key external ID: {value[keys[0]]} matches more than one "
                              f"record for field {ext.name} in entity {parent.name}", [])
        return found[0]

    # -- operations -----------------------------------------------------------------------------------------
    def create(self, sobject: str, body: Any) -> str:
        definition = self._definition(sobject)
        if not definition.createable and not self.ui:
            raise RecordError("INVALID_TYPE_FOR_OPERATION", f"entity type cannot be inserted: {definition.name}")
        values = self.values(definition, body, creating=True)
        with self.store.transaction():
            values = self._before_create(definition, values)
            rid: str = self.store.insert(definition.name, values, origin=self.origin)
            self._after_write(definition, rid)
        return rid

    def update(self, sobject: str, record_id: str, body: Any) -> None:
        definition = self._definition(sobject)
        current = self._live(definition, record_id)
        values = self.values(definition, body, creating=False, current=current)
        with self.store.transaction():
            values = self._before_update(definition, current, values)
            self.store.update(definition.name, current["Id"], values, origin=self.origin)
            self._after_write(definition, current["Id"])

    def delete(self, sobject: str, record_id: str) -> None:
        definition = self._definition(sobject)
        if not definition.deletable and not self.ui:
            raise RecordError("INVALID_TYPE_FOR_OPERATION", f"entity type cannot be deleted: {definition.name}")
        current = self._live(definition, record_id)
        with self.store.transaction():
            if definition.name == "Account":
                orders = self.store.children("Order", "AccountId", current["Id"])
                if orders:
                    raise RecordError("DELETE_FAILED", f"Your attempt to delete {current['Name']} could not be "
                                      "completed because it is associated with the following orders.: "
                                      f"{', '.join(orders[:5])}")
                for child in self.store.children("Contact", "AccountId", current["Id"]):
                    self.store.delete("Contact", child, origin=self.origin)
            if definition.name == "Order":
                if current["Status"] == "Activated":
                    raise RecordError("FIELD_INTEGRITY_EXCEPTION", "You can't delete an activated order.", [])
                for child in self.store.children("OrderItem", "OrderId", current["Id"]):
                    self.store.delete("OrderItem", child, origin=self.origin)
            if definition.name == "OrderItem":
                self._order_editable(current["OrderId"])
            self.store.delete(definition.name, current["Id"], origin=self.origin)
            if definition.name == "OrderItem":
                self._roll_up(current["OrderId"])

    def upsert(self, sobject: str, field_name: str, value: str, body: Any, *, in_body: bool = False,
               update_only: bool = False) -> tuple[str, bool]:
        """(id, created). ``in_body``: a collection record, which carries the ext value itself."""
        definition = self._definition(sobject)
        ext = self.ext_field(definition, field_name)
        if isinstance(body, dict):
            repeated = [k for k in body if k.lower() == ext.name.lower()]
            if repeated and not in_body and self.org.config["reject_ext_field_in_upsert_body"]:
                raise RecordError("INVALID_FIELD", f"{ext.name}: The external ID field cannot be specified in the "
                                  "request body when it is in the URL", [ext.name])
            if any(k.lower() == "id" for k in body):
                raise RecordError("INVALID_FIELD", "The Id field should not be specified in the sobject data.",
                                  ["Id"])
            body = {k: v for k, v in body.items() if k not in repeated}
        matches = self.matches(definition, ext, value)
        if len(matches) > 1:
            raise MultipleMatches(definition.name, matches)
        if matches:
            self.update(definition.name, matches[0], body)
            return matches[0], False
        if update_only or ext.name == "Id":
            raise RecordError(*NOT_FOUND, status=404)
        return self.create(definition.name, {**(body if isinstance(body, dict) else {}), ext.name: value}), True

    def matches(self, definition: ObjectDef, ext: FieldDef, value: str) -> list[str]:
        """Live ids whose external id (or Id) is ``value``."""
        if ext.name == "Id":
            full = to18(value)
            return [full] if full and self.store.get(definition.name, full) is not None else []
        return list(self.store.find(definition.name, ext.name, value))

    def ext_field(self, definition: ObjectDef, name: str) -> FieldDef:
        f = definition.field(name)
        if f is None or not (f.external_id or f.name == "Id"):
            raise RecordError("NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {name}",
                              status=404)
        return f

    def _definition(self, sobject: str) -> ObjectDef:
        definition = self.store.definition(sobject)
        if definition is None:
            raise RecordError(*NOT_FOUND, status=404)
        return definition

    def _live(self, definition: ObjectDef, record_id: str) -> dict[str, Any]:
        full = to18(record_id)
        if full is None or not full.startswith(definition.key_prefix):
            raise RecordError("MALFORMED_ID", f"{definition.name} ID: id value of incorrect type: {record_id}",
                              ["Id"])
        rec = self.store.raw(definition.name, full)
        if rec is None:
            raise RecordError(*NOT_FOUND, status=404)
        if rec["IsDeleted"]:
            raise RecordError("ENTITY_IS_DELETED", "entity is deleted", [], status=404)
        return rec

    # -- object rules ---------------------------------------------------------------------------------------
    def _before_create(self, definition: ObjectDef, values: dict[str, Any]) -> dict[str, Any]:
        name = definition.name
        if name == "Contact":
            values["Name"] = f"{values.get('FirstName') or ''} {values['LastName']}".strip()
        if name == "Order":
            if values["Status"] != "Draft":
                raise RecordError("FIELD_INTEGRITY_EXCEPTION", "An order must be created with the status Draft.",
                                  ["Status"])
            values["StatusCode"] = "Draft"
            values["OrderNumber"] = f"{self.org.next_number('Order'):08d}"
            values["TotalAmount"] = 0.0
        if name == "Invoice" and not values.get("InvoiceNumber"):  # an admin seeding may name its own number
            values["InvoiceNumber"] = f"INV-{self.org.next_number('Invoice'):06d}"
        if name == "PricebookEntry":
            book = self.store.get("Pricebook2", values["Pricebook2Id"])
            product = self.store.get("Product2", values["Product2Id"])
            entries = [self.store.get("PricebookEntry", rid)
                       for rid in self.store.children("PricebookEntry", "Product2Id", values["Product2Id"])]
            if any(e and e["Pricebook2Id"] == values["Pricebook2Id"] for e in entries):
                raise RecordError("DUPLICATE_VALUE", "This price definition already exists in this price book", [])
            standard = [e for e in entries if e and self.store.get("Pricebook2", e["Pricebook2Id"])["IsStandard"]]
            if not book["IsStandard"] and not standard:
                raise RecordError("STANDARD_PRICE_NOT_DEFINED", "No standard price defined for this product", [])
            values["ProductCode"], values["Name"] = product["ProductCode"], product["Name"]
        if name == "OrderItem":
            order = self._order_editable(values["OrderId"])
            entry = self.store.get("PricebookEntry", values["PricebookEntryId"])
            if order["Pricebook2Id"] is None or entry["Pricebook2Id"] != order["Pricebook2Id"]:
                raise RecordError("FIELD_INTEGRITY_EXCEPTION", "Order Products must have a Price Book Entry that "
                                  "belongs to the Price Book related to the parent Order.: Price Book Entry ID",
                                  ["PricebookEntryId"])
            if not entry["IsActive"]:
                raise RecordError("FIELD_INTEGRITY_EXCEPTION", "The selected price book entry is inactive.: Price "
                                  "Book Entry ID", ["PricebookEntryId"])
            values["Product2Id"] = entry["Product2Id"]
            values["ListPrice"] = entry["UnitPrice"]
            values["TotalPrice"] = round(values["Quantity"] * values["UnitPrice"], 2)
            values["OrderItemNumber"] = f"{self.org.next_number('OrderItem', 1):010d}"
        return values

    def _before_update(self, definition: ObjectDef, current: dict[str, Any],
                       values: dict[str, Any]) -> dict[str, Any]:
        name = definition.name
        if name == "Contact" and ({"FirstName", "LastName"} & set(values)):
            merged = {**current, **values}
            values["Name"] = f"{merged.get('FirstName') or ''} {merged['LastName']}".strip()
        if name == "Order":
            activated = current["Status"] == "Activated"
            for locked in ("AccountId", "Pricebook2Id"):
                if activated and locked in values and values[locked] != current[locked]:
                    raise RecordError("FIELD_INTEGRITY_EXCEPTION",
                                      f"You can't change {locked.removesuffix('Id')} on an activated order.", [locked])
            status = values.get("Status", current["Status"])
            if status == "Activated" and not activated:
                items = self.store.children("OrderItem", "OrderId", current["Id"])
                if not items and self.org.config["activation_requires_items"]:
                    raise RecordError("FIELD_INTEGRITY_EXCEPTION", "You can't activate this order because it has "
                                      "no order products.", ["Status"])
                values["ActivatedDate"] = sf_datetime(self.store.now_ms())
            if status != current["Status"]:
                values["StatusCode"] = status
                if status == "Draft":
                    values["ActivatedDate"] = None
        if name == "OrderItem":
            self._order_editable(current["OrderId"])
            merged = {**current, **values}
            values["TotalPrice"] = round(merged["Quantity"] * merged["UnitPrice"], 2)
        return values

    def _order_editable(self, order_id: str) -> dict[str, Any]:
        order: dict[str, Any] = self.store.get("Order", order_id)
        if order["Status"] == "Activated":
            raise RecordError("FIELD_INTEGRITY_EXCEPTION", "You can't add, edit or delete products of an activated "
                              "order.", [])
        return order

    def _after_write(self, definition: ObjectDef, rid: str) -> None:
        if definition.name == "OrderItem":
            self._roll_up(self.store.get("OrderItem", rid)["OrderId"])

    def _roll_up(self, order_id: str) -> None:
        """Order.TotalAmount follows its items (a roll-up: a system change of the order)."""
        items = [self.store.get("OrderItem", rid) for rid in self.store.children("OrderItem", "OrderId", order_id)]
        total = round(sum(item["TotalPrice"] or 0.0 for item in items if item), 2)
        self.store.update("Order", order_id, {"TotalAmount": total}, origin=self.origin)


class MultipleMatches(Exception):
    """An external id matched several records: 300 with their URLs."""

    def __init__(self, sobject: str, ids: list[str]) -> None:
        super().__init__(sobject)
        self.sobject, self.ids = sobject, ids


def _no_access(f: FieldDef, creating: bool) -> str:
    return (f"Unable to {'create' if creating else 'create/update'} fields: {f.name}. Please check the security "
            "settings of this field and verify that it is read/write for your profile or permission set.")


def _deserialize(kind: str, value: Any) -> RecordError:
    return RecordError("JSON_PARSER_ERROR", f"Cannot deserialize instance of {kind} from {type(value).__name__} "
                       f"value {value} or request may be missing a required field", [])


def render(org: Org, sobject: str, rec: dict[str, Any], version: str, fields: list[str] | None = None) -> dict:
    definition = org.store.definition(sobject)
    assert definition is not None
    names = [f.name for f in definition.fields]
    if fields:
        picked = []
        for name in fields:
            f = definition.field(name)
            if f is None:
                raise sf_error("INVALID_FIELD", f"No such column '{name}' on entity '{sobject}'. If you are "
                               "attempting to use a custom field, be sure to append the '__c' after the custom "
                               "field name. Please reference your WSDL or the describe call for the appropriate "
                               "names.")
            picked.append(f.name)
        names = ["Id", *[n for n in picked if n != "Id"]]
    out: dict[str, Any] = {"attributes": {"type": sobject,
                                          "url": f"/services/data/v{version}/sobjects/{sobject}/{rec['Id']}"}}
    out.update({name: rec.get(name) for name in names})
    return out


# -- single-record endpoints ------------------------------------------------------------------------------------
async def create_endpoint(org: Org, request: Request, call: Call, params: dict[str, str]) -> Response:
    resolve(org, params["sobject"])
    body = await read_json(request)
    rid = Writer(org, call.origin).create(params["sobject"], body)
    return JSONResponse({"id": rid, "success": True, "errors": []}, 201)


async def get_endpoint(org: Org, request: Request, call: Call, params: dict[str, str]) -> Response:
    definition = resolve(org, params["sobject"])
    rec = Writer(org, call.origin)._live(definition, params["id"])
    wanted = request.query_params.get("fields")
    return JSONResponse(render(org, definition.name, rec, call.version, wanted.split(",") if wanted else None))


async def update_endpoint(org: Org, request: Request, call: Call, params: dict[str, str]) -> Response:
    resolve(org, params["sobject"])
    body = await read_json(request)
    Writer(org, call.origin).update(params["sobject"], params["id"], body)
    return Response(status_code=204)


async def delete_endpoint(org: Org, request: Request, call: Call, params: dict[str, str]) -> Response:
    resolve(org, params["sobject"])
    Writer(org, call.origin).delete(params["sobject"], params["id"])
    return Response(status_code=204)


def _multiple(org: Org, call: Call, err: MultipleMatches) -> Response:
    return JSONResponse([f"/services/data/v{call.version}/sobjects/{err.sobject}/{rid}" for rid in err.ids],
                        int(org.config["multiple_match_status"]))


async def get_by_ext_endpoint(org: Org, request: Request, call: Call, params: dict[str, str]) -> Response:
    definition = resolve(org, params["sobject"])
    writer = Writer(org, call.origin)
    ids = writer.matches(definition, writer.ext_field(definition, params["field"]), params["value"])
    if len(ids) > 1:
        return _multiple(org, call, MultipleMatches(definition.name, ids))
    if not ids:
        raise sf_error(*NOT_FOUND, 404)
    wanted = request.query_params.get("fields")
    rec = org.store.get(definition.name, ids[0])
    if rec is None:
        raise sf_error(*NOT_FOUND, 404)
    return JSONResponse(render(org, definition.name, rec, call.version, wanted.split(",") if wanted else None))


async def upsert_endpoint(org: Org, request: Request, call: Call, params: dict[str, str]) -> Response:
    definition = resolve(org, params["sobject"])
    body = await read_json(request)
    update_only = request.query_params.get("updateOnly", "").lower() == "true"
    try:
        rid, created = Writer(org, call.origin).upsert(definition.name, params["field"], params["value"], body,
                                                       update_only=update_only)
    except MultipleMatches as err:
        return _multiple(org, call, err)
    if not created and float(call.version) < 46:
        return Response(status_code=204)
    return JSONResponse({"id": rid, "success": True, "errors": [], "created": created}, 201 if created else 200)


async def delete_by_ext_endpoint(org: Org, request: Request, call: Call, params: dict[str, str]) -> Response:
    definition = resolve(org, params["sobject"])
    writer = Writer(org, call.origin)
    ids = writer.matches(definition, writer.ext_field(definition, params["field"]), params["value"])
    if len(ids) > 1:
        return _multiple(org, call, MultipleMatches(definition.name, ids))
    if not ids:
        raise sf_error(*NOT_FOUND, 404)
    writer.delete(definition.name, ids[0])
    return Response(status_code=204)


# -- replication ------------------------------------------------------------------------------------------------
def _window(org: Org, request: Request) -> tuple[int, int]:
    try:
        start = datetime.fromisoformat(request.query_params["start"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(request.query_params["end"].replace("Z", "+00:00"))
    except (KeyError, ValueError):
        raise sf_error("MISSING_ARGUMENT", "start and end must be specified as ISO 8601 date-times") from None
    if start.tzinfo is None or end.tzinfo is None:
        raise sf_error("MALFORMED_QUERY", "start and end need a time zone")
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    if end_ms - start_ms < 60_000:
        raise sf_error("INVALID_REPLICATION_DATE", "startDate must chronologically precede endDate by more than "
                       "one minute")
    if start_ms < (org.clock() - 30 * 86_400) * 1000:
        raise sf_error("INVALID_REPLICATION_DATE", "startDate cannot be more than 30 days ago")
    return start_ms, min(end_ms, int(org.clock() * 1000)) // 60_000 * 60_000


async def updated_endpoint(org: Org, request: Request, call: Call, params: dict[str, str]) -> Response:
    definition = resolve(org, params["sobject"])
    start, end = _window(org, request)
    index = org.store.index(definition.name, "SystemModstamp")
    ids = [rid for _ms, rid in index.irange((start, ""), (end, ""), inclusive=(True, False))]
    return JSONResponse({"ids": ids, "latestDateCovered": sf_datetime(end)})


async def deleted_endpoint(org: Org, request: Request, call: Call, params: dict[str, str]) -> Response:
    definition = resolve(org, params["sobject"])
    start, end = _window(org, request)
    rows = [(ms, rid) for ms, rid in org.store.deleted_between(definition.name, start, end) if ms < end]
    everything = org.store.deleted_between(definition.name, 0, end)
    return JSONResponse({"deletedRecords": [{"id": rid, "deletedDate": sf_datetime(ms)} for ms, rid in rows],
                         "earliestDateAvailable": sf_datetime(everything[0][0] if everything else start),
                         "latestDateCovered": sf_datetime(end)})


# -- sObject Collections ----------------------------------------------------------------------------------------
async def _collection_body(org: Org, request: Request) -> tuple[bool, list[Any]]:
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise sf_error("JSON_PARSER_ERROR", "The request body must be an object with a records array")
    records = body["records"]
    limit = int(org.config["collection_max_records"])
    if len(records) > limit:
        raise sf_error("EXCEEDED_ID_LIMIT", f"Record limit exceeded: a request can contain at most {limit} records")
    all_or_none = body.get("allOrNone", False)
    if not isinstance(all_or_none, bool):
        raise sf_error("JSON_PARSER_ERROR", "allOrNone must be a boolean")
    return all_or_none, records


def _record_type(record: Any) -> str:
    attributes = record.get("attributes") if isinstance(record, dict) else None
    kind = attributes.get("type") if isinstance(attributes, dict) else None
    if not isinstance(kind, str):
        raise RecordError("INVALID_TYPE", "Must send a concrete entity type.", [])
    return kind


def _run_collection(org: Org, all_or_none: bool, items: list[Any],
                    apply: Any, upsert: bool = False) -> Response:
    """Apply each item in its own savepoint; results in input order (facts §4.4)."""
    results: list[dict[str, Any]] = []
    failed = False
    try:
        with org.store.transaction():
            for item in items:
                try:
                    with org.store.savepoint():
                        outcome = apply(item)
                except RecordError as err:
                    failed = True
                    results.append({"success": False, "errors": [err.as_result()]})
                    continue
                rid, created = outcome if isinstance(outcome, tuple) else (outcome, None)
                result: dict[str, Any] = {"id": rid, "success": True, "errors": []}
                if upsert:
                    result["created"] = created
                results.append(result)
            if failed and all_or_none:
                raise _RollBack
    except _RollBack:
        results = [r if not r["success"] else {"success": False, "errors": [dict(ROLLED_BACK)]} for r in results]
    return JSONResponse(results)


async def collection_create(org: Org, request: Request, call: Call, params: dict[str, str]) -> Response:
    all_or_none, records = await _collection_body(org, request)
    writer = Writer(org, call.origin)

    def apply(record: Any) -> str:
        kind = _record_type(record)
        if any(str(k).lower() == "id" for k in record):
            raise RecordError("INVALID_FIELD", "Records with IDs cannot be created", ["Id"])
        return writer.create(kind, record)

    return _run_collection(org, all_or_none, records, apply)


async def collection_update(org: Org, request: Request, call: Call, params: dict[str, str]) -> Response:
    all_or_none, records = await _collection_body(org, request)
    writer = Writer(org, call.origin)

    def apply(record: Any) -> str:
        kind = _record_type(record)
        rid = next((v for k, v in record.items() if k.lower() == "id"), None)
        if not isinstance(rid, str):
            raise RecordError("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
        writer.update(kind, rid, {k: v for k, v in record.items() if k.lower() != "id"})
        return str(to18(rid))

    return _run_collection(org, all_or_none, records, apply)


async def collection_delete(org: Org, request: Request, call: Call, params: dict[str, str]) -> Response:
    ids = [i for i in request.query_params.get("ids", "").split(",") if i]
    if len(ids) > int(org.config["collection_max_records"]):
        raise sf_error("EXCEEDED_ID_LIMIT", "Record limit exceeded")
    all_or_none = request.query_params.get("allOrNone", "false").lower() == "true"
    writer = Writer(org, call.origin)

    def apply(rid: str) -> str:
        full = to18(rid)
        definitions = [d for d in (org.store.definition(n) for n in org.store.objects()) if d is not None]
        definition = next((d for d in definitions if full and full.startswith(d.key_prefix)), None)
        if full is None or definition is None:
            raise RecordError("MALFORMED_ID", f"malformed id {rid}", [])
        writer.delete(definition.name, full)
        return full

    return _run_collection(org, all_or_none, ids, apply)


async def collection_upsert(org: Org, request: Request, call: Call, params: dict[str, str]) -> Response:
    definition = resolve(org, params["sobject"])
    writer = Writer(org, call.origin)
    try:
        ext = writer.ext_field(definition, params["field"])
    except RecordError as err:
        raise err.as_api_error() from None
    all_or_none, records = await _collection_body(org, request)
    values = [next((v for k, v in r.items() if k.lower() == ext.name.lower()), None) if isinstance(r, dict)
              else None for r in records]
    seen: dict[str, int] = {}
    for value in values:
        if value is not None:
            seen[str(value).casefold()] = seen.get(str(value).casefold(), 0) + 1

    def apply(pair: tuple[Any, Any]) -> tuple[str, bool]:
        record, value = pair
        kind = _record_type(record)
        if kind != definition.name:
            raise RecordError("INVALID_TYPE", f"Records of type {kind} cannot be upserted on {definition.name}", [])
        if value in (None, ""):
            raise RecordError("MISSING_ARGUMENT", f"{ext.name} not specified", [ext.name])
        if seen[str(value).casefold()] > 1:
            raise RecordError("DUPLICATE_EXTERNAL_ID", f"Duplicate external id specified: {value}", [ext.name])
        try:
            return writer.upsert(definition.name, ext.name, str(value), record, in_body=True)
        except MultipleMatches as err:
            raise RecordError("DUPLICATE_EXTERNAL_ID", f"{ext.name}: more than one record found for external id "
                              f"field: {err.ids}", [ext.name]) from None

    return _run_collection(org, all_or_none, list(zip(records, values, strict=True)), apply, upsert=True)
