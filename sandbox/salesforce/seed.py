"""Deterministic seed records: the same ``seed`` and counts give the same records (ids included).

Every org has the standard price book. Seeded records are created before the sandbox clock's now, one ``STEP``
apart, so an incremental sync from "now" sees only what tests change afterwards.
"""

from __future__ import annotations

import random

from ml_connector.sandbox.salesforce.context import Org

CITIES = [("Berlin", "Germany"), ("Lyon", "France"), ("Milan", "Italy"), ("Leeds", "United Kingdom"),
          ("Austin", "United States"), ("Graz", "Austria")]
WORDS = ["Alpine", "Blue", "Cedar", "Delta", "Ember", "Falcon", "Granite", "Harbor", "Iris", "Juniper"]
KINDS = ["Supply", "Industries", "Components", "Logistics", "Metals", "Systems"]
FIRST = ["Anna", "Ben", "Clara", "David", "Eva", "Felix", "Greta", "Hugo"]
LAST = ["Meyer", "Schmidt", "Rossi", "Martin", "Smith", "Novak", "Berg", "Keller"]
STEP_MS = 60_000
STANDARD_BOOK = "Standard Price Book"


def seed_store(org: Org, *, seed: int, accounts: int = 0, contacts: int = 0, products: int = 0,
               orders: int = 0) -> None:
    store = org.store
    rng = random.Random(seed)
    lines = [rng.randint(1, 3) for _ in range(orders)]
    total = 1 + accounts + contacts + 2 * products + orders + sum(lines)
    now = int(org.clock() * 1000)
    times = iter(now - STEP_MS * (total - i) for i in range(total))
    book = store.insert("Pricebook2", {"Name": STANDARD_BOOK, "IsActive": True, "IsStandard": True},
                        at_ms=next(times))
    account_ids = []
    for i in range(1, accounts + 1):
        city, country = rng.choice(CITIES)
        account_ids.append(store.insert("Account", {
            "Name": f"{rng.choice(WORDS)} {rng.choice(KINDS)} {i:05d}", "ERP_Id__c": f"C{i:05d}",
            "AccountNumber": f"A-{i:05d}", "Phone": f"+49 30 {rng.randint(1000000, 9999999)}",
            "BillingCity": city, "BillingCountry": country, "Type": "Customer - Direct"}, at_ms=next(times)))
    for i in range(1, contacts + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        store.insert("Contact", {
            "FirstName": first, "LastName": last, "Name": f"{first} {last}", "Email": f"contact{i}@example.com",
            "AccountId": account_ids[(i - 1) % len(account_ids)] if account_ids else None,
            "ERP_Id__c": f"P{i:05d}"}, at_ms=next(times))
    entries: list[tuple[str, str, float]] = []
    for i in range(1, products + 1):
        price = round(rng.uniform(5, 500), 2)
        code = f"ITEM-{i:05d}"
        name = f"{rng.choice(WORDS)} part {i:05d}"
        product = store.insert("Product2", {"Name": name, "ProductCode": code, "ERP_Item_No__c": code,
                                            "IsActive": True, "Family": "Hardware"}, at_ms=next(times))
        entry = store.insert("PricebookEntry", {"Pricebook2Id": book, "Product2Id": product, "UnitPrice": price,
                                                "IsActive": True, "ProductCode": code, "Name": name},
                             at_ms=next(times))
        entries.append((entry, product, price))
    for i in range(1, orders + 1):
        if not account_ids or not entries:
            break
        picked = [(rng.choice(entries), float(rng.randint(1, 10))) for _ in range(lines[i - 1])]
        amount = round(sum(round(quantity * price, 2) for (_e, _p, price), quantity in picked), 2)
        order = store.insert("Order", {
            "AccountId": rng.choice(account_ids), "EffectiveDate": "2025-12-01", "Status": "Draft",
            "StatusCode": "Draft", "Pricebook2Id": book, "OrderNumber": f"{org.next_number('Order'):08d}",
            "TotalAmount": amount, "ERP_Id__c": f"SO-{i:05d}"}, at_ms=next(times))
        for (entry, product, price), quantity in picked:
            store.insert("OrderItem", {
                "OrderId": order, "PricebookEntryId": entry, "Product2Id": product, "Quantity": quantity,
                "UnitPrice": price, "ListPrice": price, "TotalPrice": round(quantity * price, 2),
                "OrderItemNumber": f"{org.next_number('OrderItem', 1):010d}"}, at_ms=next(times))
