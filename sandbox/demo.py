"""`ml-connector demo`: the shipped integrations (QAD with Pipedrive, Zoho CRM, Salesforce, Adobe Commerce and
Marketo), end to end, against local sandboxes over HTTP."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from ml_connector.errors import SetupError
from ml_connector.report import run_table
from ml_connector.resources import shipped_specs
from ml_connector.sandbox.adobe_commerce import AdobeCommerceSandbox, create_adobe_commerce_sandbox
from ml_connector.sandbox.marketo import create_marketo_sandbox
from ml_connector.sandbox.marketo.activities import FILL_OUT_FORM, activity_log
from ml_connector.sandbox.marketo.app import MarketoSandbox
from ml_connector.sandbox.marketo.seed import give_an_owner_and_opportunities
from ml_connector.sandbox.pipedrive import create_pipedrive_sandbox
from ml_connector.sandbox.qad import create_qad_sandbox
from ml_connector.sandbox.salesforce import create_salesforce_sandbox
from ml_connector.sandbox.salesforce.app import SalesforceSandbox
from ml_connector.sandbox.serve import SandboxServer
from ml_connector.sandbox.workspace import apply_env, write_workspace
from ml_connector.sandbox.zoho import create_zoho_sandbox
from ml_connector.sandbox.zoho.app import ZohoSandbox
from ml_connector.sync.runner import Runner, RunSummary
from ml_connector.workspace import Workspace

Echo = Callable[[str], Any]
GUEST_CUSTOMER = {"customerCode": "WGUEST", "name": "Web shop guest checkouts", "isActive": True,
                  "currencyCode": "USD", "addresses": [{"addressType": "HEADER", "street": "1 Commerce Way",
                                                        "city": "Austin", "postalCode": "78701", "country": "US"}]}


def _flow(summary: RunSummary, name: str) -> Any:
    return next(f for f in summary.flows if f.flow == name)


def _writes(counts: dict[str, int]) -> int:
    return sum(n for call, n in counts.items()
               if not call.startswith("GET ") and not call.endswith(("/coql", "/token", "/bulk/v8/read")))


def _run(workspace: Workspace, echo: Echo, title: str, flows: list[str] | None = None) -> RunSummary:
    echo(f"\n== {title}")
    state = workspace.state()
    try:
        summary = asyncio.run(Runner(workspace.project, state).run(flows))
    finally:
        state.close()
    echo(run_table(summary.as_dict()))
    return summary


def _check(ok: bool, what: str, echo: Echo) -> bool:
    echo(f"   {'ok ' if ok else 'NOT OK'} {what}")
    return ok


def _check_shipped_specs() -> None:
    """The demo runs the shipped specs (installed with the package as data, or a checkout's own folders)."""
    specs = shipped_specs()
    for pair in ("qad-pipedrive", "qad-zoho", "qad-salesforce", "adobe-commerce-qad", "qad-marketo"):
        if not (specs / "mappings" / pair).is_dir():
            raise SetupError(f"the demo needs the shipped integration mappings/{pair}, not found in {specs}")


def _make_room(directory: Path, force: bool) -> None:
    """An earlier demo's state and workspace are replaced only with --force: the folder may hold a user's work."""
    found = [name for name in ("state", "workspace.yaml") if (directory / name).exists()]
    if found and not force:
        raise SetupError(f"{directory} already holds a state or workspace ({', '.join(found)}); pass --force to "
                         "replace them, or choose another --dir")
    if (directory / "state").exists():
        shutil.rmtree(directory / "state")
    (directory / "workspace.yaml").unlink(missing_ok=True)


def run_demo(directory: Path, echo: Echo = print, *, force: bool = False) -> int:
    """Run the demo; 0 when every step did what it should."""
    _check_shipped_specs()
    apply_env()
    _make_room(directory, force)
    server = SandboxServer()
    try:
        erp = create_qad_sandbox(customers=300, items=200, suppliers=20, purchase_orders=10, receipts=5,
                                 supplier_invoices=8)
        crm = create_pipedrive_sandbox()
        crm.config.update(burst_limit=100)  # a Premium plan: 100 requests per 2 s window
        zoho = create_zoho_sandbox()
        zoho.config.update(bulk_state_seconds=0.5)
        salesforce = create_salesforce_sandbox()
        shop = create_adobe_commerce_sandbox(customers=20, companies=3, products=8, orders=30)
        marketo = create_marketo_sandbox(bulk_status_seconds=0)  # export jobs finish at once (60 s apart in Marketo)
        erp.store.insert("customerV2s", GUEST_CUSTOMER)  # the QAD customer guest checkouts post to
        urls = {"qad": server.start("qad", erp).url, "pipedrive": server.start("pipedrive", crm).url,
                "zoho": server.start("zoho", zoho).url, "salesforce": server.start("salesforce", salesforce).url,
                "adobe_commerce": server.start("adobe_commerce", shop).url,
                "marketo": server.start("marketo", marketo).url}
        echo(f"sandboxes: QAD at {urls['qad']}, Pipedrive at {urls['pipedrive']}, Zoho CRM at {urls['zoho']} "
             f"(its EU data center on 127.0.0.2), Salesforce at {urls['salesforce']}, Adobe Commerce at "
             f"{urls['adobe_commerce']}, Marketo at {urls['marketo']}")
        workspace = Workspace.open(write_workspace(directory, urls))
        checks = _pipedrive_part(workspace, erp, crm, echo)
        checks += _zoho_part(workspace, erp, zoho, urls, echo)
        checks += _salesforce_part(workspace, erp, salesforce, urls, echo)
        checks += _commerce_part(workspace, erp, shop, urls, echo)
        checks += _marketo_part(workspace, erp, marketo, echo)
        echo(f"\nstate and audit trail: {workspace.state_path}")
        echo(f"try: ml-connector status -w {workspace.path}   |   ml-connector audit -w {workspace.path} --limit 10")
        return 0 if all(checks) else 1
    finally:
        server.stop()


def _pipedrive_part(workspace: Workspace, erp: Any, crm: Any, echo: Echo) -> list[bool]:
    """QAD <-> Pipedrive: first sync, a re-run that writes nothing, three repriced items, a won deal."""
    flows = _pair_flows(workspace, "qad-pipedrive")
    checks = []
    first = _run(workspace, echo, "1. Pipedrive, first run: every active item, customer and key contact is created",
                 flows)
    checks.append(_check(first.status == "ok" and first.flows[0].created > 0, "first run synced everything", echo))

    crm.log.reset()
    second = _run(workspace, echo, "2. second run: nothing changed, so nothing is written", flows)
    writes = crm.log.summary()["writes"]
    checks.append(_check(writes == 0 and all(f.created + f.updated == 0 for f in second.flows),
                         f"zero writes (the Pipedrive sandbox saw {writes})", echo))

    items = [r for r in erp.store.all("items") if r.get("itemStatus") == "ACTIVE"][:3]
    for item in items:
        erp.store.patch("items", item["itemCode"], {"listPrice": round(item["listPrice"] + 1.5, 2)})
    third = _run(workspace, echo, f"3. three QAD items repriced ({', '.join(i['itemCode'] for i in items)})", flows)
    checks.append(_check(third.flows[0].updated == 3 and sum(f.updated for f in third.flows) == 3,
                         "exactly those 3 products updated", echo))

    org = crm.store.all("organizations")[0]
    products = crm.store.all("products")[:3]
    deal = crm.store.insert("deals", {"title": f"Order from {org['name']}", "org_id": org["id"], "status": "won",
                                      "currency": "USD", "value": 0})
    total = 0.0
    for quantity, product in enumerate(products, start=2):
        price = product["prices"][0]["price"] if product.get("prices") else 10.0
        crm.store.add_deal_product(deal["id"], product["id"], price, quantity)
        total += price * quantity
    crm.store.patch("deals", deal["id"], {"value": round(total, 2)})
    fourth = _run(workspace, echo, f"4. deal {deal['id']} won in Pipedrive with 3 product lines", flows)
    order = next((o for o in erp.store.all("salesOrders")
                  if o.get("externalReference") == f"pipedrive-deal-{deal['id']}"), None)
    if order:
        echo(f"   QAD sales order {order['salesOrderNumber']} for {order['customerCode']}: "
             + ", ".join(f"{ln['itemCode']} x {ln['quantityOrdered']}" for ln in order["lines"]))
    checks.append(_check(order is not None and len(order["lines"]) == 3 and fourth.status == "ok",
                         "one QAD sales order with 3 lines", echo))
    return checks


def _zoho_part(workspace: Workspace, erp: Any, zoho: ZohoSandbox, urls: dict[str, str], echo: Echo) -> list[bool]:
    """QAD <-> Zoho CRM: procurement into Zoho in upsert batches, a re-run that writes nothing, an invoice whose
    receipt posts, an approved sales order with a new account back into QAD."""
    flows = _pair_flows(workspace, "qad-zoho")
    checks = []
    first = _run(workspace, echo, "5. Zoho CRM, first run: vendors, products, purchase orders, supplier invoices "
                                  "and accounts, upserted 100 per call", flows)
    calls = zoho.log.summary()["counts"]
    upserts = {call: n for call, n in calls.items() if call.endswith("/upsert")}
    echo("   Zoho write calls: " + ", ".join(f"{call} x{n}" for call, n in sorted(upserts.items())))
    written = {"Vendors": "suppliers_to_vendors", "Products": "items_to_zoho_products",
               "Purchase_Orders": "purchase_orders_to_purchase_orders",
               "Vendor_Invoices": "supplier_invoices_to_vendor_invoices", "Accounts": "customers_to_accounts"}
    batched = all(upserts.get(f"POST /crm/v8/{module}/upsert") == -(-_flow(first, flow).created // 100)
                  for module, flow in written.items())
    invoices = {r["ERP_Key"]: r["Match_Status"] for r in zoho.store.records("Vendor_Invoices")}
    pending = next((i for i in erp.store.all("supplierInvoices") if i["matchStatus"] == "pending"), None)
    checks.append(_check(first.status == "ok" and batched and pending is not None
                         and invoices.get(pending["invoiceId"]) == "Pending",
                         "one upsert call per 100 records; an invoice whose receipt has not posted shows Pending",
                         echo))

    for line in pending["lines"] if pending else []:
        order = erp.store.get("purchaseOrders", line["purchaseOrderNumber"])
        po_line = next(ln for ln in order["lines"] if ln["lineNumber"] == line["poLineNumber"])
        httpx.post(f"{urls['qad']}/_admin/purchaseOrders/{order['purchaseOrderNumber']}/receive",
                   json={"lineNumber": po_line["lineNumber"],
                         "quantityReceived": po_line["quantityOrdered"] - po_line["quantityReceived"]}, timeout=10)
    zoho.log.reset()
    second = _run(workspace, echo, "6. the goods arrive: the invoice's receipt posts in QAD", flows)
    status = {r["ERP_Key"]: r["Match_Status"] for r in zoho.store.records("Vendor_Invoices")}
    writes = _writes(zoho.log.summary()["counts"])
    checks.append(_check(second.status == "ok" and pending is not None and status.get(pending["invoiceId"]) ==
                         "Matched" and writes == 1,
                         f"that invoice now shows Matched ({writes} write call in Zoho)", echo))

    products = [p for p in zoho.store.records("Products") if p.get("Product_Active")][:2]
    admin = httpx.Client(base_url=urls["zoho"], timeout=10)
    account = admin.post("/_admin/records/Accounts", json={
        "Account_Name": "Fresh Buyer Ltd", "Account_Type": "Customer", "Billing_Street": "1 Park Row",
        "Billing_City": "Leeds", "Billing_Country": "GB"}).json()
    sales_order = admin.post("/_admin/records/Sales_Orders", json={
        "Subject": "First order", "Status": "Approved", "Account_Name": {"id": account["id"]},
        "Ordered_Items": [{"Product_Name": {"id": p["id"]}, "Quantity": 4, "List_Price": 20.0} for p in products]
    }).json()
    third = _run(workspace, echo, "7. in Zoho, a new customer account and its approved sales order (2 lines)",
                 flows)
    customer = erp.store.get("customerV2s", "Z" + account["id"][-7:])
    order = erp.store.get("salesOrders", "Z" + sales_order["id"][-7:])
    if order:
        echo(f"   QAD customer {order['customerCode']} and sales order {order['salesOrderNumber']}: "
             + ", ".join(f"{ln['itemCode']} x {ln['quantityOrdered']}" for ln in order["lines"]))
    checks.append(_check(third.status == "ok" and customer is not None and order is not None
                         and len(order["lines"]) == 2, "a new QAD customer and a sales order with 2 lines", echo))
    return checks


def _salesforce_part(workspace: Workspace, erp: Any, salesforce: SalesforceSandbox, urls: dict[str, str],
                     echo: Echo) -> list[bool]:
    """QAD <-> Salesforce: accounts upserted 200 per call by External ID; an order moves once activated."""
    flows = _pair_flows(workspace, "qad-salesforce")
    first = _run(workspace, echo, "8. Salesforce, first run: customers and suppliers become Accounts (200 per call, "
                                  "by External ID), items Product2, key contacts Contacts", flows)
    calls = salesforce.log.summary()["counts"]
    upserts = {call: n for call, n in calls.items() if "/composite/sobjects/" in call}
    echo("   Salesforce write calls: " + ", ".join(f"{call.split('/v66.0')[-1]} x{n}"
                                                   for call, n in sorted(upserts.items())))
    customers, suppliers = (_flow(first, "customers_to_sf_accounts").created,
                            _flow(first, "suppliers_to_sf_accounts").created)
    sent = upserts.get("PATCH /services/data/v66.0/composite/sobjects/Account/ERP_Id__c", 0)
    checks = [_check(first.status == "ok" and customers > 0 and sent == -(-customers // 200) - (-suppliers // 200),
                     f"{customers + suppliers} accounts in {sent} upsert calls (200 per call)", echo)]

    admin = httpx.Client(base_url=urls["salesforce"], timeout=10)
    account = next(r for r in admin.get("/_admin/records/Account").json()["records"] if r["ERP_Id__c"] == "C000001")
    book = next(r for r in admin.get("/_admin/records/Pricebook2").json()["records"] if r["IsStandard"])
    products = [r for r in admin.get("/_admin/records/Product2").json()["records"] if r["IsActive"]][:2]
    order = admin.post("/_admin/records/Order", json={"AccountId": account["Id"], "EffectiveDate": "2026-12-01",
                                                      "Status": "Draft", "Pricebook2Id": book["Id"]}).json()
    for product in products:
        entry = admin.post("/_admin/records/PricebookEntry", json={
            "Pricebook2Id": book["Id"], "Product2Id": product["Id"], "UnitPrice": 30.0, "IsActive": True}).json()
        admin.post("/_admin/records/OrderItem", json={"OrderId": order["Id"], "PricebookEntryId": entry["Id"],
                                                      "Quantity": 5, "UnitPrice": 30.0})
    draft = _run(workspace, echo, "9. a draft order in Salesforce: not moved; then it is activated", flows)
    reference = f"sf-order-{order['Id']}"
    moved_early = any(o.get("externalReference") == reference for o in erp.store.all("salesOrders"))
    admin.patch(f"/_admin/records/Order/{order['Id']}", json={"Status": "Activated"})
    activated = _run(workspace, echo, "   ... and once activated, it moves", flows)
    moved = next((o for o in erp.store.all("salesOrders") if o.get("externalReference") == reference), None)
    if moved:
        echo(f"   QAD sales order {moved['salesOrderNumber']} for {moved['customerCode']}: "
             + ", ".join(f"{ln['itemCode']} x {ln['quantityOrdered']}" for ln in moved["lines"]))
    checks.append(_check(draft.status == "ok" and not moved_early and activated.status == "ok" and moved is not None
                         and len(moved["lines"]) == 2, "the draft stayed; the activated order moved with 2 lines",
                         echo))
    return checks


def _commerce_part(workspace: Workspace, erp: Any, shop: AdobeCommerceSandbox, urls: dict[str, str],
                   echo: Echo) -> list[bool]:
    """Adobe Commerce -> QAD: the store's documents booked once, read-only on the store; an unknown SKU waits."""
    flows = _pair_flows(workspace, "adobe-commerce-qad")
    first = _run(workspace, echo, "10. Adobe Commerce, first run: customers and companies, orders, invoices and "
                                  "credit memos into QAD (OAuth 1.0a signed reads)", flows)
    items = {i["itemCode"] for i in erp.store.all("items")}
    live = [o for o in shop.store.records("orders", "all") if o["state"] != "canceled"]
    unmapped = {i["sku"] for o in live for i in o["items"] if i["sku"] not in items}
    waiting = [o for o in live if any(i["sku"] in unmapped for i in o["items"])]
    booked = [o for o in erp.store.all("salesOrders") if (o.get("externalReference") or "").startswith("commerce-")]
    store_writes = _writes(shop.log.summary()["counts"])
    checks = [_check(first.status in ("ok", "partial") and len(booked) == len(live) - len(waiting)
                     and _flow(first, "orders_to_sales_orders").deferred == len(waiting) and store_writes == 0,
                     f"{len(booked)} orders booked in QAD; {len(waiting)} wait for SKUs with no QAD item "
                     f"({', '.join(sorted(unmapped))}); {store_writes} writes to the store", echo)]

    admin = httpx.Client(base_url=urls["adobe_commerce"], timeout=30)
    admin.post("/_admin/products", json={"sku": "WB-9000", "name": "Workbench", "price": 499.0})
    order = admin.post("/_admin/orders", json={"store": "default", "customer_id": 1, "items": [
        {"sku": "10-1001", "qty": 1, "price": 12.5}, {"sku": "WB-9000", "qty": 1, "price": 499.0}]}).json()
    reference = f"commerce-order-{order['increment_id']}"
    _run(workspace, echo, "11. an order naming WB-9000, a SKU with no QAD item: it waits; then the item appears",
         flows)
    waited = not any(o.get("externalReference") == reference for o in erp.store.all("salesOrders"))
    erp.store.insert("items", {"itemCode": "WB-9000", "description": "Workbench", "unitOfMeasure": "EA",
                               "itemStatus": "ACTIVE", "listPrice": 499.0, "currencyCode": "USD"})
    after = _run(workspace, echo, "    ... and once the item exists, the order goes through", flows)
    moved = next((o for o in erp.store.all("salesOrders") if o.get("externalReference") == reference), None)
    checks.append(_check(waited and after.status == "ok" and moved is not None and len(moved["lines"]) == 2,
                         "the order waited for its item, then was booked with both lines", echo))
    return checks


def _marketo_part(workspace: Workspace, erp: Any, marketo: MarketoSandbox, echo: Echo) -> list[bool]:
    """QAD -> Marketo: accounts and leads 300 per call; the account context and lead activity come back."""
    flows = _pair_flows(workspace, "qad-marketo")
    first = _run(workspace, echo, "12. Marketo, first run: customers become companies and named accounts, key "
                                  "contacts leads (300 per call); their activity history comes back by bulk export",
                 flows)
    calls = marketo.log.summary()["counts"]
    leads = _flow(first, "contacts_to_leads").created
    sent = calls.get("POST /rest/v1/leads.json", 0)
    exports = calls.get("POST /bulk/v1/activities/export/create.json", 0)
    checks = [_check(first.status == "ok" and leads > 0 and sent == -(-leads // 300) and exports == 1,
                     f"{leads} leads in {sent} calls; the activity history in {exports} export job", echo)]

    give_an_owner_and_opportunities(marketo.store, "C000001")
    lead = next(le for le in marketo.store.records("leads") if le.get("externalCompanyId") == "C000001")
    activity_log(marketo).add(marketo.clock(), FILL_OUT_FORM, lead["id"], 2001, "Request a Quote Form")
    back = _run(workspace, echo, "13. in Marketo, C000001 gets an owner and three opportunities, and one of its "
                                 "leads fills in a form: the account context and the activity come back", flows)
    customer = erp.store.get("customerV2s", "C000001") or {}
    forms = [a for a in erp.store.all("customerActivities")
             if a["customerCode"] == "C000001" and a["activityType"] == "Fill Out Form"]
    echo(f"   QAD customer C000001: salesperson {customer.get('salespersonCode')}, open pipeline "
         f"{customer.get('customDecimal0')}, won {customer.get('customDecimal1')}, next close "
         f"{customer.get('customDate1')}; {len(forms)} form fill in its activity history")
    checks.append(_check(back.status == "ok" and customer.get("salespersonCode") == "SP-KIM"
                         and customer.get("customDecimal0") == 15000.5 and customer.get("customDecimal1") == 50000
                         and customer.get("customDate1") == "2027-01-15" and len(forms) == 1,
                         "owner, pipeline and next close on the QAD customer; the form fill in its history", echo))
    return checks


def _pair_flows(workspace: Workspace, integration: str) -> list[str]:
    project = workspace.project
    return [name for name in project.flow_order() if project.flow_integration.get(name) == integration]
