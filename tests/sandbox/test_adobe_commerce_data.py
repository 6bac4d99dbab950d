"""The Commerce sandbox's data: store bookkeeping, seeding, the admin API and the order-placement webhook."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ml_connector.sandbox.adobe_commerce.admin import admin_routes
from ml_connector.sandbox.adobe_commerce.seed import seed_store
from ml_connector.sandbox.adobe_commerce.store import CommerceStore, StoreError
from ml_connector.sandbox.adobe_commerce.webhooks import WebhookSender
from ml_connector.sandbox.core import ManualClock, Sandbox
from ml_connector.sandbox.serve import SandboxServer

START = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def store(clock: ManualClock) -> CommerceStore:
    store = CommerceStore(clock)
    store.upsert_product({"sku": "10-1001", "name": "Hex bolt M8", "price": 2.5})
    store.upsert_product({"sku": "10-1002", "name": "Washer M8", "price": 0.25})
    store.upsert_customer({"email": "ann@example.com", "firstname": "Ann", "lastname": "Lee", "store_id": 1,
                           "addresses": [{"firstname": "Ann", "lastname": "Lee", "street": ["1 Main St"],
                                          "city": "Austin", "postcode": "78701", "country_id": "US",
                                          "telephone": "555-0100",
                                          "region": {"region_code": "TX", "region": "Texas", "region_id": 57},
                                          "default_billing": True, "default_shipping": True}]})
    store.upsert_customer({"email": "bo@example.de", "firstname": "Bo", "lastname": "Kurz", "store_id": 2})
    return store


def _order(store: CommerceStore, **kw: Any) -> dict[str, Any]:
    items = kw.pop("items", [{"sku": "10-1001", "qty": 4, "price": 2.5}, {"sku": "10-1002", "qty": 10,
                                                                         "price": 0.25}])
    return store.place_order(kw.pop("store_code", "default"), kw.pop("customer_id", 1), kw.pop("email", ""), items)


# -- store: orders, invoices, credit memos -----------------------------------------------------------------------

def test_placed_order_has_commerce_shape_and_true_totals(store: CommerceStore) -> None:
    order = _order(store)
    assert order["entity_id"] == 1 and order["increment_id"] == "000000001"
    assert (order["state"], order["status"]) == ("new", "pending")
    assert order["created_at"] == order["updated_at"] == "2026-01-01 00:00:00"
    assert order["customer_id"] == 1 and order["customer_is_guest"] == 0
    assert order["customer_email"] == "ann@example.com"
    assert order["subtotal"] == 12.5 and order["shipping_amount"] == 70.0 and order["grand_total"] == 82.5
    assert order["total_qty_ordered"] == 14.0 and order["total_item_count"] == 2
    assert "total_invoiced" not in order and "total_refunded" not in order  # null fields are left out
    assert [(i["sku"], i["qty_ordered"], i["row_total"]) for i in order["items"]] == [
        ("10-1001", 4.0, 10.0), ("10-1002", 10.0, 2.5)]
    assert order["billing_address"]["street"] == ["1 Main St"] and order["billing_address"]["region_code"] == "TX"
    assert order["payment"]["method"] == "checkmo" and order["payment"]["account_status"] is None
    assignment = order["extension_attributes"]["shipping_assignments"][0]
    assert assignment["shipping"]["method"] == "flatrate_flatrate"
    assert assignment["shipping"]["address"]["address_type"] == "shipping"
    assert [i["sku"] for i in assignment["items"]] == ["10-1001", "10-1002"]
    assert store.order_by_increment_id("000000001") == order


def test_guest_order_and_unknown_product(store: CommerceStore) -> None:
    order = _order(store, customer_id=None, email="guest@example.com", items=[{"sku": "10-1002", "qty": 1}])
    assert order["customer_is_guest"] == 1 and "customer_id" not in order and order["customer_group_id"] == 0
    assert order["items"][0]["price"] == 0.25  # no price given: the catalogue price
    with pytest.raises(StoreError) as err:
        _order(store, items=[{"sku": "NOPE", "qty": 1, "price": 1}])
    assert "product that was requested doesn't exist" in err.value.message
    assert store.count("orders") == 1


def test_invoice_partial_then_rest_moves_state_and_sums(store: CommerceStore, clock: ManualClock) -> None:
    order = _order(store)
    clock.advance(60)
    invoice = store.invoice_order(order["entity_id"], [{"sku": "10-1001", "qty": 1}])
    assert invoice["increment_id"] == "000000001" and invoice["order_id"] == 1 and invoice["state"] == 2
    assert invoice["total_qty"] == 1.0 and invoice["subtotal"] == 2.5 and invoice["shipping_amount"] == 70.0
    assert invoice["grand_total"] == 72.5 and invoice["created_at"] == "2026-01-01 00:01:00"
    mid = store.get("orders", "1")
    assert mid is not None
    assert (mid["state"], mid["status"]) == ("processing", "processing")
    assert mid["total_invoiced"] == mid["total_paid"] == 72.5 and mid["total_due"] == 10.0
    assert mid["items"][0]["qty_invoiced"] == 1.0 and mid["updated_at"] == "2026-01-01 00:01:00"
    assert mid["status_histories"][0]["comment"] == "Captured amount of $72.50 offline."
    with pytest.raises(StoreError) as err:
        store.invoice_order(1, [{"sku": "10-1001", "qty": 4}])
    assert err.value.message == ('The quantity to invoice must not be greater than the uninvoiced quantity for '
                                 'product SKU "%1".') and err.value.parameters == ["10-1001"]
    rest = store.invoice_order(1)
    assert rest["total_qty"] == 13.0 and rest["shipping_amount"] == 0.0 and rest["grand_total"] == 10.0
    done = store.get("orders", "1")
    assert done is not None and done["total_invoiced"] == 82.5 and done["total_due"] == 0.0
    assert done["state"] == "processing"  # invoiced, not shipped
    with pytest.raises(StoreError) as err:
        store.invoice_order(1)
    assert err.value.body() == {"message": "An invoice cannot be created when an order has a status of %1.",
                                "parameters": ["processing"]}
    shipped = store.ship_order(1)
    assert (shipped["state"], shipped["status"]) == ("complete", "complete")


def test_refund_bounded_by_invoice_and_full_refund_closes(store: CommerceStore) -> None:
    _order(store)
    first = store.invoice_order(1, [{"sku": "10-1001", "qty": 4}])
    second = store.invoice_order(1)
    with pytest.raises(StoreError) as err:  # the second invoice did not capture any 10-1001
        store.refund(1, second["entity_id"], [{"sku": "10-1001", "qty": 1}])
    assert err.value.parameters == ["10-1001"]
    with pytest.raises(StoreError) as err:
        store.refund(1, first["entity_id"], [{"sku": "10-1001", "qty": 0}])
    assert err.value.message == "The credit memo's total must be positive."
    memo = store.refund(1, first["entity_id"], [{"sku": "10-1001", "qty": 1}], adjustment=1.0)
    assert memo["invoice_id"] == first["entity_id"] and memo["increment_id"] == "000000001"
    assert memo["subtotal"] == 2.5 and memo["adjustment_positive"] == 1.0 and memo["grand_total"] == 3.5
    assert memo["items"][0]["qty"] == 1.0 and memo["items"][0]["base_cost"] is None
    with pytest.raises(StoreError) as err:
        store.refund(1, first["entity_id"], [{"sku": "10-1001", "qty": 3}], adjustment=100.0)
    assert err.value.message == "The most money available to refund is %1." and err.value.parameters == [76.5]
    with pytest.raises(StoreError):  # the rest with its shipping is 77.50: more than is left after the adjustment
        store.refund(1, first["entity_id"])
    rest = store.refund(1, first["entity_id"], adjustment=-1.0)  # the rest, shipping included, less a 1.00 fee
    assert rest["shipping_amount"] == 70.0 and rest["adjustment_negative"] == 1.0 and rest["grand_total"] == 76.5
    store.refund(1, second["entity_id"])
    order = store.get("orders", "1")
    assert order is not None
    assert (order["state"], order["status"]) == ("closed", "closed")
    assert order["total_refunded"] == 82.5 and order["shipping_refunded"] == 70.0
    assert [(i["qty_refunded"], i["amount_refunded"]) for i in order["items"]] == [(4.0, 10.0), (10.0, 2.5)]
    with pytest.raises(StoreError) as err:
        store.refund(1, first["entity_id"], [{"sku": "10-1001", "qty": 1}])
    assert err.value.body() == {"message": "A creditmemo can not be created when an order has a status of %1",
                                "parameters": ["closed"]}


def test_store_views_scope_sales_and_customers(store: CommerceStore) -> None:
    _order(store)
    _order(store, store_code="de", customer_id=2)
    assert [o["entity_id"] for o in store.records("orders", "default")] == [1]
    assert [o["entity_id"] for o in store.records("orders", "de")] == [2]
    assert [o["entity_id"] for o in store.records("orders", "all")] == [1, 2]
    assert [c["email"] for c in store.records("customers", "de")] == ["bo@example.de"]
    assert [p["sku"] for p in store.records("products", "de")] == ["10-1001", "10-1002"]
    with pytest.raises(StoreError):
        store.records("orders", "fr")


def test_reads_are_copies(store: CommerceStore) -> None:
    _order(store)
    store.records("orders", "all")[0]["items"][0]["qty_ordered"] = 99
    fetched = store.get("orders", "1")
    assert fetched is not None
    fetched["state"] = "hacked"
    again = store.get("orders", "1")
    assert again is not None and again["state"] == "new" and again["items"][0]["qty_ordered"] == 4.0


def test_listener_refusal_rolls_back_placement(store: CommerceStore) -> None:
    seen: list[tuple[str, int]] = []

    def refuse(event: str, order: dict[str, Any]) -> None:
        seen.append((event, order["entity_id"]))
        raise StoreError("Cannot perform the operation due to an error.")

    store.listen(refuse)
    with pytest.raises(StoreError):
        _order(store)
    assert seen == [("sales_order_place_after", 1)]
    assert store.count("orders") == 0 and store.get("orders", "1") is None
    assert store.order_by_increment_id("000000001") is None


def test_order_committed_late_still_lists_in_id_order(store: CommerceStore) -> None:
    """Order 1 waits on its webhook while order 2 is placed and committed: lists stay in entity id order."""
    def place_another_first(event: str, order: dict[str, Any]) -> None:
        if order["entity_id"] == 1:
            _order(store, items=[{"sku": "10-1002", "qty": 1}])

    store.listen(place_another_first)
    _order(store)
    assert [o["entity_id"] for o in store.records("orders", "default")] == [1, 2]
    assert [o["entity_id"] for o in store.view("orders", "all")] == [1, 2]
    assert store.order_by_increment_id("000000001") == store.get("orders", "1")


def test_customers_companies_products(store: CommerceStore, clock: ManualClock) -> None:
    with pytest.raises(StoreError) as err:
        store.upsert_customer({"email": "ANN@example.com", "firstname": "X", "lastname": "Y"})
    assert "same email address" in err.value.message
    with pytest.raises(StoreError) as err:
        store.upsert_customer({"email": "z@example.com", "firstname": "Z"})
    assert err.value.parameters == {"fieldName": "lastname"}
    company = store.upsert_company({"company_name": "Lee Metals", "company_email": "ap@lee.example",
                                    "super_user_id": 1, "street": ["1 Main St"], "city": "Austin",
                                    "country_id": "US", "region_id": "57", "postcode": "78701",
                                    "telephone": "555-0100", "legal_name": "Lee Metals LLC"})
    assert company["id"] == 1 and company["status"] == 1 and "updated_at" not in company
    assert company["reject_reason"] is None and company["super_user_id"] == 1
    member = store.get("customers", "1")
    assert member is not None
    assert member["extension_attributes"]["company_attributes"] == {
        "customer_id": 1, "company_id": 1, "status": 1, "job_title": "Company Administrator"}
    assert member["default_billing"] == "1" and member["addresses"][0]["region"]["region_id"] == 57
    with pytest.raises(StoreError):
        store.upsert_company({"company_name": "X", "company_email": "x@x", "super_user_id": 99})
    clock.advance(5)
    product = store.update("products", "10-1001", {"status": 2, "price": 3.0})
    assert product["status"] == 2 and product["price"] == 3.0 and product["updated_at"] == "2026-01-01 00:00:05"
    assert product["created_at"] == "2026-01-01 00:00:00"
    with pytest.raises(StoreError):
        store.update("products", "10-1001", {"status": 3})
    assert store.get("products", "10-1001") is not None and store.get("products", "1") is None
    assert store.update("customers", "2", {"firstname": "Bodo"})["firstname"] == "Bodo"
    with pytest.raises(StoreError):
        store.update("orders", "7", {"status": "x"})


# -- seed ---------------------------------------------------------------------------------------------------------

def test_seed_is_deterministic_and_complete(clock: ManualClock) -> None:
    first, second = CommerceStore(clock), CommerceStore(clock)
    for target in (first, second):
        seed_store(target, customers=20, companies=3, products=12, orders=30, seed=3)
    assert first.records("orders", "all") == second.records("orders", "all")
    assert first.records("creditmemos", "all") == second.records("creditmemos", "all")
    assert first.count("customers", "default") > 0 and first.count("customers", "de") > 0
    assert first.count("customers") == 20 and first.count("products") == 12 and first.count("orders") == 30
    skus = [p["sku"] for p in first.records("products", "all")]
    assert skus[0] == "10-1001" and len(set(skus)) == 12
    companies = first.records("companies", "all")
    assert len(companies) == 3
    for company in companies:
        admin = first.get("customers", str(company["super_user_id"]))
        assert admin is not None
        assert admin["extension_attributes"]["company_attributes"]["company_id"] == company["id"]
    orders = first.records("orders", "all")
    assert all(o["created_at"] < "2026-01-01 00:00:00" for o in orders)
    for entity in ("customers", "products", "invoices", "creditmemos"):  # everything seeded lies in the past
        assert all(r["updated_at"] < "2026-01-01 00:00:00" for r in first.records(entity, "all")), entity
    states = {o["state"] for o in orders}
    assert {"new", "processing", "closed"} <= states
    assert first.count("invoices") > 0 and first.count("creditmemos") > 0
    invoices = first.records("invoices", "all")
    for order in orders:  # sums kept true
        invoiced = sum(i["grand_total"] for i in invoices if i["order_id"] == order["entity_id"])
        assert order.get("total_invoiced", 0.0) == pytest.approx(invoiced)
    other = CommerceStore(clock)
    seed_store(other, customers=20, companies=3, products=12, orders=30, seed=4)
    assert other.records("orders", "all") != first.records("orders", "all")


# -- admin API ----------------------------------------------------------------------------------------------------

WEBHOOK_DEFAULTS = {"webhook_url": None, "webhook_signing": False, "webhook_timeout_ms": 5000,
                    "webhook_required": True}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _admin_app(store: CommerceStore, clock: ManualClock, **config: Any) -> Sandbox:
    stub = SimpleNamespace(store=store, config={**WEBHOOK_DEFAULTS, **config})
    return Sandbox("adobe_commerce", [], stub.config, admin_routes=admin_routes(stub), clock=clock)


def _client(app: Sandbox) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://commerce.test")


@pytest.mark.anyio
async def test_admin_places_invoices_refunds_and_lists(store: CommerceStore, clock: ManualClock) -> None:
    async with _client(_admin_app(store, clock)) as client:
        placed = await client.post("/_admin/orders", json={"store": "de", "email": "g@example.com",
                                                           "items": [{"sku": "10-1001", "qty": 2, "price": 3}]})
        assert placed.status_code == 201
        order = placed.json()
        assert order["store_id"] == 2 and order["customer_is_guest"] == 1 and order["grand_total"] == 16.0
        bad = await client.post("/_admin/orders", json={"items": [{"sku": "nope", "qty": 1}], "customer_id": 1})
        assert bad.status_code == 400
        assert bad.json() == {"message": "The product that was requested doesn't exist. Verify the product and "
                                         "try again.", "parameters": []}
        over = await client.post("/_admin/orders/1/invoice", json={"items": [{"sku": "10-1001", "qty": 3}]})
        assert over.status_code == 400 and over.json()["parameters"] == ["10-1001"]
        invoice = await client.post("/_admin/orders/1/invoice", json={})
        assert invoice.status_code == 201 and invoice.json()["grand_total"] == 16.0
        memo = await client.post("/_admin/orders/1/refund", json={"invoice_id": invoice.json()["entity_id"]})
        assert memo.status_code == 201 and memo.json()["grand_total"] == 16.0
        missing = await client.post("/_admin/orders/9/invoice", json={})
        assert missing.status_code == 404 and missing.json()["message"].startswith("The entity that was requested")
        listed = (await client.get("/_admin/records/orders", params={"store": "de"})).json()
        assert listed["count"] == 1 and listed["records"][0]["state"] == "closed"
        assert (await client.get("/_admin/records/orders", params={"store": "default"})).json()["count"] == 0
        assert (await client.get("/_admin/records/invoices/1")).json()["order_id"] == 1
        assert (await client.get("/_admin/records/widgets")).status_code == 404


@pytest.mark.anyio
async def test_admin_writes_customers_companies_products(store: CommerceStore, clock: ManualClock) -> None:
    async with _client(_admin_app(store, clock)) as client:
        made = await client.post("/_admin/customers", json={"email": "cy@example.com", "firstname": "Cy",
                                                            "lastname": "Ng", "store_id": 2})
        assert made.status_code == 201 and made.json()["id"] == 3 and made.json()["created_in"] == "German Store View"
        dup = await client.post("/_admin/customers", json={"email": "cy@example.com", "firstname": "C",
                                                           "lastname": "N"})
        assert dup.status_code == 400 and "same email" in dup.json()["message"]
        clock.advance(30)
        patched = await client.patch("/_admin/customers/3", json={"lastname": "Ong"})
        assert patched.json()["lastname"] == "Ong" and patched.json()["updated_at"] == "2026-01-01 00:00:30"
        company = await client.post("/_admin/companies", json={"company_name": "Ng Tools", "super_user_id": 3,
                                                               "company_email": "ap@ng.example"})
        assert company.status_code == 201 and company.json()["id"] == 1
        renamed = await client.patch("/_admin/companies/1", json={"company_name": "Ng Tools GmbH"})
        assert renamed.json()["company_name"] == "Ng Tools GmbH" and "updated_at" not in renamed.json()
        product = await client.post("/_admin/products", json={"sku": "WB 20/30", "name": "Odd sku", "price": 9})
        assert product.status_code == 201 and product.json()["status"] == 1
        disabled = await client.patch("/_admin/products/WB 20/30", json={"status": 2})
        assert disabled.status_code == 200 and disabled.json()["status"] == 2
        assert (await client.patch("/_admin/products/NOPE", json={"status": 2})).status_code == 404
        status = await client.patch("/_admin/records/customers/3", json={"firstname": "Cyd"})
        assert status.json()["firstname"] == "Cyd"
        assert (await client.post("/_admin/customers", content=b"[1]")).status_code == 400


# -- webhooks -----------------------------------------------------------------------------------------------------

class _Receiver:
    """A webhook endpoint over real HTTP: records each request, answers what the test scripted."""

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, dict[str, str]]] = []
        self.reply: Any = {"op": "success"}
        self.status = 200
        self.delay = 0.0
        self.server = SandboxServer()
        app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])
        self.url = self.server.start("receiver", app).url + "/hook"  # type: ignore[arg-type]

    async def hook(self, request: Request) -> Response:
        self.requests.append((await request.body(), dict(request.headers)))
        if self.delay:
            await asyncio.sleep(self.delay)
        return JSONResponse(self.reply, status_code=self.status)


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    served = _Receiver()
    yield served
    served.server.stop()


@pytest.mark.anyio
async def test_signed_webhook_verifies_with_public_key(store: CommerceStore, clock: ManualClock,
                                                       receiver: _Receiver) -> None:
    async with _client(_admin_app(store, clock, webhook_url=receiver.url, webhook_signing=True)) as client:
        placed = await client.post("/_admin/orders", json={"customer_id": 1, "items": [{"sku": "10-1002", "qty": 3}]})
        assert placed.status_code == 201
        pem = (await client.get("/_admin/webhooks/public_key")).text
        deliveries = (await client.get("/_admin/webhooks/deliveries")).json()["deliveries"]
    assert len(receiver.requests) == 1
    body, headers = receiver.requests[0]
    assert json.loads(body) == {"subject": [], "eventName": "sales_order_place_after",
                                "data": {"order": placed.json()}}
    key = serialization.load_pem_public_key(pem.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    signature = base64.b64decode(headers["x-adobe-commerce-webhook-signature"])
    key.verify(signature, base64.b64encode(body), padding.PKCS1v15(), hashes.SHA256())  # raises if wrong
    with pytest.raises(InvalidSignature):
        key.verify(signature, base64.b64encode(body + b" "), padding.PKCS1v15(), hashes.SHA256())
    assert [(d["webhook_method"], d["status"], d["reply"], d["ok"], d["increment_id"]) for d in deliveries] == [
        ("observer.sales_order_place_after", 200, {"op": "success"}, True, "000000001")]
    assert deliveries[0]["elapsed_ms"] >= 0


@pytest.mark.anyio
async def test_unsigned_by_default(store: CommerceStore, clock: ManualClock, receiver: _Receiver) -> None:
    async with _client(_admin_app(store, clock, webhook_url=receiver.url)) as client:
        assert (await client.post("/_admin/orders", json={"customer_id": 1,
                                                          "items": [{"sku": "10-1002", "qty": 1}]})).status_code == 201
    assert "x-adobe-commerce-webhook-signature" not in receiver.requests[0][1]


@pytest.mark.anyio
async def test_exception_op_fails_a_required_placement(store: CommerceStore, clock: ManualClock,
                                                       receiver: _Receiver) -> None:
    receiver.reply = {"op": "exception", "message": "x"}
    app = _admin_app(store, clock, webhook_url=receiver.url)
    async with _client(app) as client:
        refused = await client.post("/_admin/orders", json={"customer_id": 1, "items": [{"sku": "10-1002", "qty": 1}]})
        assert refused.status_code == 400 and refused.json() == {"message": "x", "parameters": []}
        assert store.count("orders") == 0
        app.config["webhook_required"] = False  # an optional hook only logs the failure
        placed = await client.post("/_admin/orders", json={"customer_id": 1, "items": [{"sku": "10-1002", "qty": 1}]})
        assert placed.status_code == 201 and placed.json()["increment_id"] == "000000002"  # the number was used
        deliveries = (await client.get("/_admin/webhooks/deliveries")).json()["deliveries"]
    assert [(d["ok"], d["error"]) for d in deliveries] == [(False, "exception: x"), (False, "exception: x")]


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "reply"), [(500, {"op": "success"}), (200, {"ok": True}), (200, [])])
async def test_bad_replies_fail_with_fallback_message(store: CommerceStore, clock: ManualClock, receiver: _Receiver,
                                                      status: int, reply: Any) -> None:
    receiver.status, receiver.reply = status, reply
    async with _client(_admin_app(store, clock, webhook_url=receiver.url)) as client:
        refused = await client.post("/_admin/orders", json={"customer_id": 1, "items": [{"sku": "10-1002", "qty": 1}]})
    assert refused.status_code == 400
    assert refused.json()["message"] == "Cannot perform the operation due to an error."
    assert store.count("orders") == 0


@pytest.mark.anyio
async def test_timeout_fails_a_required_placement(store: CommerceStore, clock: ManualClock,
                                                  receiver: _Receiver) -> None:
    receiver.delay = 0.5
    async with _client(_admin_app(store, clock, webhook_url=receiver.url, webhook_timeout_ms=100)) as client:
        refused = await client.post("/_admin/orders", json={"customer_id": 1, "items": [{"sku": "10-1002", "qty": 1}]})
        deliveries = (await client.get("/_admin/webhooks/deliveries")).json()["deliveries"]
    assert refused.status_code == 400 and store.count("orders") == 0
    assert deliveries[0]["error"] == "timed out after 100 ms" and deliveries[0]["status"] is None
    assert 100 <= deliveries[0]["elapsed_ms"] < 450


def test_listener_without_event_loop_delivers_in_its_own(store: CommerceStore, receiver: _Receiver) -> None:
    """Placing an order from plain sync code (a script, a seeding step) still waits for the hook."""
    sender = WebhookSender(lambda: {**WEBHOOK_DEFAULTS, "webhook_url": receiver.url})
    store.listen(sender)
    receiver.reply = [{"op": "success"}, {"op": "add", "path": "result", "value": {}}]
    order = _order(store)
    assert json.loads(receiver.requests[0][0])["data"]["order"]["entity_id"] == order["entity_id"]
    assert sender.deliveries()[0]["ok"] is True


@pytest.mark.anyio
async def test_admin_is_mounted_on_the_sandbox_app(clock: ManualClock, receiver: _Receiver) -> None:
    """Through ac-http's app: an admin-placed order is what the REST API then answers, the hook fired once, and
    the admin calls stay out of the request log."""
    from ml_connector.sandbox.adobe_commerce import create_adobe_commerce_sandbox
    from ml_connector.sandbox.adobe_commerce.credentials import ACCESS_TOKEN

    sandbox = create_adobe_commerce_sandbox(customers=2, products=3, clock=clock, integration_as_bearer=True,
                                            webhook_url=receiver.url)
    async with _client(sandbox) as client:
        placed = await client.post("/_admin/orders", json={"customer_id": 2, "items": [{"sku": "10-1001",
                                                                                        "qty": 1}]})
        assert placed.status_code == 201
        order_id = placed.json()["entity_id"]
        store_code = "de" if placed.json()["store_id"] == 2 else "default"
        fetched = await client.get(f"/rest/{store_code}/V1/orders/{order_id}",
                                   headers={"Authorization": f"Bearer {ACCESS_TOKEN}"})
        assert fetched.status_code == 200 and fetched.json() == placed.json()
        log = (await client.get("/_admin/requests")).json()
    assert log["total"] == 1 and log["counts"] == {f"GET /rest/{store_code}/V1/orders/{{id}}": 1}
    assert len(receiver.requests) == 1
