"""Deterministic seed records: the same ``seed`` and counts give the same records (ids included)."""

from __future__ import annotations

import random
from typing import Any

from ml_connector.sandbox.zoho.records import derived
from ml_connector.sandbox.zoho.store import ZohoStore

CITIES = [("Berlin", "Germany"), ("Lyon", "France"), ("Milan", "Italy"), ("Leeds", "United Kingdom"),
          ("Austin", "United States"), ("Pune", "India"), ("Utrecht", "Netherlands"), ("Graz", "Austria")]
WORDS = ["Alpine", "Blue", "Cedar", "Delta", "Ember", "Falcon", "Granite", "Harbor", "Iris", "Juniper", "Kestrel",
         "Lumen", "Maple", "Nordic", "Orion", "Pioneer", "Quartz", "River", "Summit", "Tidal"]
KINDS = ["Supply", "Industries", "Components", "Logistics", "Metals", "Plastics", "Systems", "Trading"]
STEP = 60.0  # seconds between seeded records' times


def seed_store(store: ZohoStore, user: dict[str, str], *, seed: int, start: float, vendors: int = 0,
               products: int = 0, accounts: int = 0, contacts: int = 0, purchase_orders: int = 0,
               sales_orders: int = 0, config: dict[str, Any] | None = None) -> None:
    """Fill a store; every record is created (and last modified) before ``start``, one ``STEP`` apart."""
    rng = random.Random(seed)
    total = vendors + products + accounts + contacts + purchase_orders + sales_orders
    times = iter(start - STEP * (total - i) for i in range(total))
    po_items = store.module("Purchase_Orders").subforms()[0]
    status = store.module("Sales_Orders").field("Status") or {"pick_list_values": []}
    so_statuses = [v["actual_value"] for v in status["pick_list_values"] if v["actual_value"] != "-None-"]
    vendor_ids: list[str] = []
    for i in range(1, vendors + 1):
        city, country = rng.choice(CITIES)
        name = f"{rng.choice(WORDS)} {rng.choice(KINDS)} {i:05d}"
        vendor_ids.append(store.add("Vendors", {
            "Vendor_Name": name, "Email": f"ap{i}@vendor{i}.example",
            "Phone": f"+49 30 {rng.randint(1000000, 9999999)}",
            "Website": f"https://vendor{i}.example", "City": city, "Country": country,
            "Category": rng.choice(["Raw material", "Services", "Packaging"])}, user, at=next(times)))
    product_ids: list[str] = []
    for i in range(1, products + 1):
        values: dict[str, Any] = {
            "Product_Name": f"{rng.choice(WORDS)} part {i:05d}", "Product_Code": f"SKU-{i:05d}",
            "Unit_Price": round(rng.uniform(1, 500), 2), "Qty_in_Stock": float(rng.randint(0, 1000)),
            "Usage_Unit": rng.choice(["Each", "Box", "Pieces"]), "Product_Active": rng.random() > 0.1,
            "Taxable": True}
        if vendor_ids:
            values["Vendor_Name"] = {"id": rng.choice(vendor_ids)}
        product_ids.append(store.add("Products", values, user, at=next(times)))
    account_ids: list[str] = []
    for i in range(1, accounts + 1):
        city, country = rng.choice(CITIES)
        account_ids.append(store.add("Accounts", {
            "Account_Name": f"{rng.choice(WORDS)} {rng.choice(KINDS)} Customer {i:05d}",
            "Account_Number": f"C-{i:05d}", "Account_Type": "Customer",
            "Phone": f"+33 1 {rng.randint(10000000, 99999999)}",
            "Billing_City": city, "Billing_Country": country}, user, at=next(times)))
    for i in range(1, contacts + 1):
        values = {"Last_Name": f"{rng.choice(WORDS)}son", "First_Name": rng.choice(["Ana", "Ben", "Chen", "Dia"]),
                  "Email": f"contact{i}@customer.example"}
        if account_ids:
            values["Account_Name"] = {"id": rng.choice(account_ids)}
        store.add("Contacts", _totals(store, "Contacts", values), user, at=next(times))
    for i in range(1, purchase_orders + 1):
        values = {"Subject": f"PO-{i:05d}", "PO_Number": f"PO-{i:05d}", "Status": "Created",
                  "PO_Date": "2025-12-01"}
        if vendor_ids:
            values["Vendor_Name"] = {"id": rng.choice(vendor_ids)}
        if product_ids:
            values[po_items] = _lines(rng, product_ids)
        store.add("Purchase_Orders", _totals(store, "Purchase_Orders", values), user, at=next(times))
    for i in range(1, sales_orders + 1):
        values = {"Subject": f"SO-{i:05d}", "SO_Number": f"SO-{i:05d}", "Status": rng.choice(so_statuses)}
        if account_ids:
            values["Account_Name"] = {"id": rng.choice(account_ids)}
        if product_ids:
            values["Ordered_Items"] = _lines(rng, product_ids)
        store.add("Sales_Orders", _totals(store, "Sales_Orders", values), user, at=next(times))


def _lines(rng: random.Random, product_ids: list[str]) -> list[dict[str, Any]]:
    return [{"Product_Name": {"id": rng.choice(product_ids)}, "Quantity": float(rng.randint(1, 20)),
             "List_Price": round(rng.uniform(1, 100), 2), "Discount": 0.0, "Tax": 0.0, "Sequence_Number": n + 1}
            for n in range(rng.randint(1, 3))]


def _totals(store: ZohoStore, module: str, values: dict[str, Any]) -> dict[str, Any]:
    return {**values, **derived(store.module(module), values)}
