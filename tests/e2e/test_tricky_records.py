"""Issue 16 acceptance: the shipped QAD -> Pipedrive flows fed tricky records, through the CLI as a user runs it.

Every record must end either synced intact (the target holds exactly what the mapping makes of the source) or
parked with a reason (pending and audited); nothing silently skipped or altered; exit code 0 when all synced,
1 when any is parked. NaN and Infinity are not fed: the sandboxes speak strict JSON, which cannot carry them.
A stamp given with an offset (+05:30) is stored and served by the ERP sandbox in UTC, as the ERP does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ml_connector.store import State
from tests.e2e.conftest import Env, flows

ITEMS, CUSTOMERS, CONTACTS = "items_to_products", "customers_to_organizations", "contacts_to_persons"
SYNCED, PARKED = "synced", "parked"


# ---- tricky source records (put in through the QAD store's public methods) ------------------------------------

def add_item(env: Env, code: str, **fields: Any) -> None:
    env.qad.store.insert("items", {"itemCode": code, "description": f"Tricky {code}", "description2": "",
                                   "unitOfMeasure": "EA", "productLine": "1000", "itemStatus": "ACTIVE",
                                   "listPrice": 1.5, "currencyCode": "USD", **fields})


def address(**parts: Any) -> dict[str, Any]:
    return {"addressType": "HEADER", "street": "Main Street 1", "city": "Springfield", "postalCode": "12345",
            "country": "US", **parts}


def add_customer(env: Env, code: str, contacts: Iterable[dict[str, Any]] = (), **fields: Any) -> None:
    env.qad.store.insert("customerV2s", {
        "customerCode": code, "name": f"Tricky {code}", "isActive": True, "creditLimit": 1000.0,
        "creditTermsCode": "30D", "addresses": [address()],
        "contacts": [{"contactId": f"{code}-{n:02d}", "isKeyContact": True, **c}
                     for n, c in enumerate(contacts, start=1)], **fields})


def add_valid_tricky_records(env: Env) -> None:
    """Records the target accepts; each must arrive exactly as the mapping makes it."""
    add_item(env, "TR-NFC", description="Caf\u00e9 cr\u00e8me", description2="Cafe\u0301 cre\u0300me")  # NFC, NFD
    add_item(env, "TR-EMOJI", description="Bolt \U0001f529 M8 \u2713", description2="\U0001f44d\U0001f3fd "
             "\U0001f468\u200d\U0001f469\u200d\U0001f467")
    add_item(env, "TR-RTL", description="\u05d1\u05d5\u05e8\u05d2 M8 \u0645\u0633\u0645\u0627\u0631",
             description2="\u202eright to left\u202c")
    add_item(env, "TR-CTRL", description="Tab\there\u0007bell", description2="line1\nline2\r\nnul\x00end")
    add_item(env, "TR-HUGE", listPrice=1.7976931348623157e308)
    add_item(env, "TR-FLOAT", listPrice=0.30000000000000004)
    add_item(env, "def-2", description="lower-case twin")
    add_item(env, "DEF-2", description="upper-case twin")
    add_customer(env, "TR-UNI", name="Ame\u0301lie \u6771\u4eac \U0001f3ed GmbH",
                 addresses=[address(street="Bahnhofstra\u00dfe 1", city="Z\u00fcrich", postalCode="8001",
                                    country="CH")],
                 contacts=[{"firstName": "Zoe\u0308", "lastName": "\u00c5ngstr\u00f6m \U0001f680",
                            "email": "zoe@example.com"}])
    add_customer(env, "TR-RTL", name="\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 Ltd",
                 contacts=[{"firstName": "\u05d3\u05e0\u05d4", "lastName": "\u0639\u0644\u064a"}])
    add_customer(env, "TR-CTRL", name="Ctrl\tCo\u0007 Ltd",
                 contacts=[{"firstName": "Bell\u0007y", "lastName": "Tab\tson"}])
    add_customer(env, "TR-NOPC", addresses=[{"addressType": "HEADER", "street": "Hauptstr 1", "city": "Berlin",
                                             "country": "DE"}],  # no postalCode key at all
                 contacts=[{"firstName": "Cher", "lastName": None}])
    add_customer(env, "TR-NOCITY", addresses=[address(city=None, postalCode="10115", country="DE")],
                 contacts=[{"firstName": "Madonna", "phone": None, "email": None}])  # no lastName key
    add_customer(env, "TR-NOADDR", addresses=[], creditTermsCode=None)
    add_customer(env, "TR-HUGE", creditLimit=9007199254740993)  # 2**53 + 1: not a double
    add_customer(env, "def-2", contacts=[{"firstName": "Lower", "lastName": "Case"}])
    add_customer(env, "DEF-2", contacts=[{"firstName": "Upper", "lastName": "Case"}])


# ---- what the target must hold: what the mapping makes of the source (the parts there are; null never "None") ---

def _joined(separator: str, *parts: Any) -> str | None:
    """The parts there are, joined; None when there are none (null is never the text "None")."""
    return separator.join(str(p) for p in parts if p) or None


def _custom(env: Env, entity: str, record: dict[str, Any], *labels: str) -> dict[str, Any]:
    stored = record.get("custom_fields") or {}
    return {label: stored.get(env.crm.store.field_key(entity, label)) for label in labels}


def product_sent(item: dict[str, Any]) -> dict[str, Any]:
    return {"name": item["description"], "code": item["itemCode"], "description": item.get("description2"),
            "unit": item.get("unitOfMeasure"),
            "prices": [] if item.get("listPrice") is None else [(item.get("currencyCode"), item["listPrice"])],
            "ERP Item Code": item["itemCode"], "Product Line": item.get("productLine")}


def product_held(env: Env, product: dict[str, Any]) -> dict[str, Any]:
    return {"name": product["name"], "code": product["code"], "description": product.get("description"),
            "unit": product.get("unit"), "prices": [(p["currency"], p["price"]) for p in product["prices"]],
            **_custom(env, "products", product, "ERP Item Code", "Product Line")}


def organization_sent(customer: dict[str, Any]) -> dict[str, Any]:
    header = next((a for a in customer.get("addresses") or [] if a.get("addressType") == "HEADER"), None)
    place = _joined(" ", header.get("postalCode"), header.get("city")) if header else None
    return {"name": customer["name"],
            "address": None if header is None else {
                "value": _joined(", ", header.get("street"), place, header.get("country")),
                "locality": header.get("city"), "postal_code": header.get("postalCode"),
                "country": header.get("country")},
            "ERP Customer Id": customer["customerCode"], "Credit Limit": customer.get("creditLimit"),
            "Payment Terms": customer.get("creditTermsCode")}


def organization_held(env: Env, org: dict[str, Any]) -> dict[str, Any]:
    held = org.get("address")
    return {"name": org["name"],
            "address": None if not held else {k: held.get(k) for k in ("value", "locality", "postal_code",
                                                                           "country")},
            **_custom(env, "organizations", org, "ERP Customer Id", "Credit Limit", "Payment Terms")}


def person_sent(contact: dict[str, Any], org_id: Any) -> dict[str, Any]:
    def listed(value: Any) -> list[tuple[Any, Any, Any]]:
        return [(value, True, "work")] if value else []
    return {"name": _joined(" ", contact.get("firstName"), contact.get("lastName")), "org_id": org_id,
            "emails": listed(contact.get("email")), "phones": listed(contact.get("phone")),
            "ERP Contact Id": contact["contactId"]}


def person_held(env: Env, person: dict[str, Any]) -> dict[str, Any]:
    def listed(values: list[dict[str, Any]]) -> list[tuple[Any, Any, Any]]:
        return [(v.get("value"), v.get("primary"), v.get("label")) for v in values]
    return {"name": person["name"], "org_id": person.get("org_id"), "emails": listed(person["emails"]),
            "phones": listed(person["phones"]), **_custom(env, "persons", person, "ERP Contact Id")}


# ---- the verdict on each record ---------------------------------------------------------------------------------

def verdicts(env: Env, items: Iterable[str], customers: Iterable[str]) -> tuple[dict[tuple[str, str], str],
                                                                                dict[tuple[str, str], str]]:
    """Per (flow, source key): "synced", "parked", or what went wrong; and the reasons of the parked ones."""
    state = State(env.workspace.parent / "state" / "ml-connector.duckdb")
    try:
        pending = {(p.flow, p.source_key): p.reason or "" for p in state.pending.list()}
        audited = {(flow, key): state.audit.query(flow=flow, source_key=key, limit=1)
                   for flow, key in pending}
    finally:
        state.close()
    live = {entity: [r for r in env.crm.store.all(entity) if not r.get("is_deleted")]
            for entity in ("products", "organizations", "persons")}

    def held(entity: str, label: str, key: str, view: Any) -> list[dict[str, Any]]:
        field = env.crm.store.field_key(entity, label)
        return [view(env, r) for r in live[entity] if (r.get("custom_fields") or {}).get(field) == key]

    def verdict(flow: str, key: str, sent: dict[str, Any], found: list[dict[str, Any]]) -> str:
        reason = pending.get((flow, key))
        if len(found) > 1:
            return f"duplicated: {len(found)} target records"
        if found:
            if found[0] != sent:
                return f"altered: the mapping makes {sent!r}, the target holds {found[0]!r}"
            return SYNCED if reason is None else f"synced, yet still parked: {reason}"
        if reason:
            last = (audited.get((flow, key)) or [{}])[0]
            if last.get("outcome") in {"failed", "deferred"} and last.get("error"):
                return PARKED
            return f"parked without an audit row naming the error: {last}"
        return "silently skipped: neither in the target nor parked"

    out: dict[tuple[str, str], str] = {}
    for code in items:
        item = env.qad.store.get("items", code)
        assert item is not None, code
        out[(ITEMS, code)] = verdict(ITEMS, code, product_sent(item),
                                     held("products", "ERP Item Code", code, product_held))
    org_ids = {}
    for code in customers:
        customer = env.qad.store.get("customerV2s", code)
        assert customer is not None, code
        orgs = held("organizations", "ERP Customer Id", code, organization_held)
        out[(CUSTOMERS, code)] = verdict(CUSTOMERS, code, organization_sent(customer), orgs)
        ids = [o["id"] for o in live["organizations"]
               if _custom(env, "organizations", o, "ERP Customer Id")["ERP Customer Id"] == code]
        org_ids[code] = ids[0] if len(ids) == 1 else None
        for contact in synced_contacts(customer):
            key = contact["contactId"]
            out[(CONTACTS, key)] = verdict(CONTACTS, key, person_sent(contact, org_ids[code]),
                                           held("persons", "ERP Contact Id", key, person_held))
    reasons = {k: v for k, v in pending.items() if out.get(k) == PARKED}
    return out, reasons


def synced_contacts(customer: dict[str, Any]) -> list[dict[str, Any]]:
    """The contacts the flow takes (its filter: key contacts of active customers)."""
    return [c for c in customer["contacts"] if c.get("isKeyContact") and customer.get("isActive")]


def contact_keys(env: Env, customers: Iterable[str]) -> list[str]:
    return [c["contactId"] for code in customers for c in synced_contacts(env.qad.store.get("customerV2s", code) or {})]


def run(env: Env) -> tuple[int, dict[str, Any] | None, str]:
    """`run --json`: exit code, the summary (None when the run printed none), and what it printed."""
    result = env.cli("run", "--json")
    try:
        return result.returncode, json.loads(result.stdout), ""
    except json.JSONDecodeError:
        return result.returncode, None, result.stdout + result.stderr


def all_synced(env: Env, items: list[str], customers: list[str]) -> dict[tuple[str, str], str]:
    return {**{(ITEMS, k): SYNCED for k in items}, **{(CUSTOMERS, k): SYNCED for k in customers},
            **{(CONTACTS, k): SYNCED for k in contact_keys(env, customers)}}


VALID_ITEMS = ["TR-NFC", "TR-EMOJI", "TR-RTL", "TR-CTRL", "TR-HUGE", "TR-FLOAT", "def-2", "DEF-2"]
VALID_CUSTOMERS = ["TR-UNI", "TR-RTL", "TR-CTRL", "TR-NOPC", "TR-NOCITY", "TR-NOADDR", "TR-HUGE", "def-2", "DEF-2"]


# ---- the acceptance tests ---------------------------------------------------------------------------------------

def test_tricky_records_the_target_accepts_all_arrive_intact_and_the_run_exits_0(env: Env) -> None:
    add_valid_tricky_records(env)
    code, summary, printed = run(env)
    got, _ = verdicts(env, VALID_ITEMS, VALID_CUSTOMERS)
    assert got == all_synced(env, VALID_ITEMS, VALID_CUSTOMERS), printed
    assert summary is not None, printed
    assert code == 0, summary
    assert all(f["failed"] == 0 and f["status"] == "ok" for f in summary["flows"]), summary


def test_records_the_target_refuses_are_parked_with_a_reason_the_run_exits_1_and_sync_once_fixed(env: Env) -> None:
    add_item(env, "TR-EMPTY", description="")
    add_item(env, "TR-FINE")
    add_customer(env, "TR-EMPTY", name="", contacts=[{"firstName": "Orphan", "lastName": "Annie"}])  # waits for it
    add_customer(env, "TR-BLANKS", name="Has A Name", contacts=[{"firstName": "", "lastName": ""}])
    items, customers = ["TR-EMPTY", "TR-FINE"], ["TR-EMPTY", "TR-BLANKS"]
    code, summary = env.run_json()
    got, reasons = verdicts(env, items, customers)
    assert got == {(ITEMS, "TR-EMPTY"): PARKED, (ITEMS, "TR-FINE"): SYNCED,
                   (CUSTOMERS, "TR-EMPTY"): PARKED, (CONTACTS, "TR-EMPTY-01"): PARKED,
                   (CUSTOMERS, "TR-BLANKS"): SYNCED, (CONTACTS, "TR-BLANKS-01"): PARKED}
    for key in ((ITEMS, "TR-EMPTY"), (CUSTOMERS, "TR-EMPTY"), (CONTACTS, "TR-BLANKS-01")):
        assert "name" in reasons[key], reasons  # the reason names what the target refused
    assert code == 1, summary
    assert {f["flow"]: (f["failed"], f["deferred"]) for f in summary["flows"]}[CONTACTS] == (1, 1)

    env.qad.store.patch("items", "TR-EMPTY", {"description": "Named at last"})
    env.qad.store.patch("customerV2s", "TR-EMPTY", {"name": "Named Customer"})
    env.qad.store.patch("customerV2s", "TR-BLANKS", {"contacts": [
        {"contactId": "TR-BLANKS-01", "firstName": "Now", "lastName": "Named", "isKeyContact": True}]})
    code, summary = env.run_json()
    got, _ = verdicts(env, items, customers)
    assert got == all_synced(env, items, customers)
    assert code == 0, summary  # everything ended synced: the stale parked payloads do not count as failures


def test_a_key_differing_only_in_case_from_a_synced_one_gets_its_own_target_record(env: Env) -> None:
    add_item(env, "def-2", description="lower-case twin")
    add_customer(env, "def-2", contacts=[{"firstName": "Lower", "lastName": "Case"}])
    code, summary = env.run_json()
    assert code == 0, summary
    env.crm.config.update(search_index_lag_seconds=0)  # the target's (case-insensitive) search sees def-2 now
    add_item(env, "DEF-2", description="upper-case twin")  # few new records: searched one by one, not listed
    add_customer(env, "DEF-2", contacts=[{"firstName": "Upper", "lastName": "Case"}])
    code, summary = env.run_json()
    got, _ = verdicts(env, ["def-2", "DEF-2"], ["def-2", "DEF-2"])
    assert got == all_synced(env, ["def-2", "DEF-2"], ["def-2", "DEF-2"])
    assert code == 0, summary
    assert {f["flow"]: (f["created"], f["updated"]) for f in summary["flows"]
            if f["flow"] in (ITEMS, CUSTOMERS, CONTACTS)} == {ITEMS: (1, 0), CUSTOMERS: (1, 0), CONTACTS: (1, 0)}


def test_future_and_offset_stamps_sync_and_later_changes_still_sync(env: Env) -> None:
    add_item(env, "TR-2099", description="From the future", lastModifiedDate="2099-01-01T00:00:00.000Z")
    add_item(env, "TR-OFFSET", description="Stamped in India", lastModifiedDate="2025-07-19T05:30:00.000+05:30")
    add_customer(env, "TR-2099", name="Future Customer", lastModifiedDate="2099-01-01T00:00:00.000Z",
                 contacts=[{"firstName": "Marty", "lastName": "McFly"}])
    items, customers = ["TR-2099", "TR-OFFSET"], ["TR-2099"]
    code, summary = env.run_json()
    got, _ = verdicts(env, items, customers)
    assert got == all_synced(env, items, customers)
    assert code == 0, summary
    offset = env.qad.store.get("items", "TR-OFFSET")
    assert offset is not None and offset["lastModifiedDate"] == "2025-07-19T00:00:00.000Z"  # the ERP answers in UTC

    for round_ in (1, 2):  # a normal change after the 2099 record, twice: each is read and synced
        item = next(i for i in env.qad.store.all("items") if i["itemStatus"] == "ACTIVE")
        customer = next(c for c in env.qad.store.all("customerV2s") if c["isActive"])
        env.qad.store.patch("items", item["itemCode"], {"description": f"Changed {round_}"})
        env.qad.store.patch("customerV2s", customer["customerCode"], {"name": f"Renamed {round_}"})
        code, summary = env.run_json()
        assert code == 0, summary
        assert (flows(summary)[ITEMS]["updated"], flows(summary)[CUSTOMERS]["updated"]) == (1, 1), summary
        got, _ = verdicts(env, [item["itemCode"], *items], [customer["customerCode"], *customers])
        assert got == all_synced(env, [item["itemCode"], *items], [customer["customerCode"], *customers])
