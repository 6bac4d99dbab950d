"""Deterministic seed data: the same counts and ``seed`` give the same records, ids and times.

Everything is created before the clock's "now", one ``STEP`` apart: products, then customers (in both store views),
then B2B companies (each run by a seeded customer), then orders; some orders are invoiced, some of those shipped,
refunded or fully refunded, so a reader meets every order state.
"""

from __future__ import annotations

import random
from typing import Any

from ml_connector.sandbox.adobe_commerce.store import STORES, CommerceStore

STEP = 60.0
FIRST = ["Ann", "Bo", "Carla", "Dev", "Eli", "Fatima", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lena", "Mats", "Nia"]
LAST = ["Lee", "Kurz", "Rossi", "Patel", "Novak", "Haddad", "Berg", "Sato", "Ivanov", "Park", "Moreau", "Weber"]
PLACES = [({"region_code": "TX", "region": "Texas", "region_id": 57}, "Austin", "78701", "US"),
          ({"region_code": "CA", "region": "California", "region_id": 12}, "Fresno", "93650", "US"),
          ({"region_code": "BER", "region": "Berlin", "region_id": 82}, "Berlin", "10115", "DE"),
          ({"region_code": "BAY", "region": "Bayern", "region_id": 81}, "Munich", "80331", "DE")]
PARTS = ["Hex bolt", "Washer", "Hex nut", "Flange", "Bearing", "Gasket", "Spring", "Bracket", "Hinge", "Rivet"]
OTHER_SKUS = ["WB-2000", "kit_starter", "GIFT-CARD-50"]  # skus off the "10-1001" pattern: readers must not assume it
COMPANY_WORDS = ["Alpine", "Cedar", "Delta", "Ember", "Granite", "Harbor", "Juniper", "Lumen", "Nordic", "Quartz"]


def _sku(i: int, products: int) -> str:
    extra = len(OTHER_SKUS) if products > 6 else 0
    if i > products - extra:
        return OTHER_SKUS[i - (products - extra) - 1]
    return f"10-{1000 + i}"


def seed_store(store: CommerceStore, *, customers: int = 0, companies: int = 0, products: int = 0,
               orders: int = 0, seed: int = 7) -> None:
    """Fill ``store``; companies need customers (their super users) and orders need products."""
    if companies > customers:
        raise ValueError("every seeded company needs a seeded customer as its super user")
    if orders and not products:
        raise ValueError("seeded orders need seeded products")
    rng = random.Random(seed)
    now = store.clock()
    total = products + customers + companies + orders * 2
    times = iter(now - STEP * (total - i) for i in range(total))
    store_codes = list(STORES)
    for i in range(1, products + 1):
        sku = _sku(i, products)
        store.upsert_product({
            "sku": sku, "name": f"{rng.choice(PARTS)} {sku}", "price": round(rng.uniform(0.5, 120), 2),
            "status": 2 if rng.random() < 0.1 else 1, "weight": round(rng.uniform(0.01, 5), 2),
            "custom_attributes": [{"attribute_code": "description", "value": f"<p>Part {sku}</p>"}]},
            at=next(times))
    for i in range(1, customers + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        region, city, postcode, country = rng.choice(PLACES)
        store_id = STORES[store_codes[i % len(store_codes)]]
        store.upsert_customer({
            "email": f"{first.lower()}.{last.lower()}{i}@example.com", "firstname": first, "lastname": last,
            "store_id": store_id, "group_id": rng.choice([1, 1, 2, 3]),
            "addresses": [{"firstname": first, "lastname": last, "street": [f"{rng.randint(1, 999)} Main St"],
                           "city": city, "postcode": postcode, "country_id": country, "region": region,
                           "telephone": f"555-{rng.randint(1000, 9999)}", "default_billing": True,
                           "default_shipping": True}]}, at=next(times))
    for i in range(1, companies + 1):
        admin = store.get("customers", str(i))
        assert admin is not None
        name = f"{rng.choice(COMPANY_WORDS)} Supply {i:03d}"
        address = admin["addresses"][0]
        store.upsert_company({
            "company_name": name, "legal_name": f"{name} LLC", "company_email": f"ap@company{i}.example",
            "vat_tax_id": f"VAT{rng.randint(10000000, 99999999)}", "super_user_id": admin["id"],
            "street": address["street"], "city": address["city"], "country_id": address["country_id"],
            "region": address["region"]["region"], "region_id": str(address["region_id"]),
            "postcode": address["postcode"], "telephone": address["telephone"], "customer_group_id": 1,
            "status": rng.choice([1, 1, 1, 0])}, at=next(times))
    skus = [p["sku"] for p in store.records("products", "all")]
    for _ in range(orders):
        _seed_order(store, rng, skus, customers, next(times), next(times))


def _seed_order(store: CommerceStore, rng: random.Random, skus: list[str], customers: int, placed: float,
                later: float) -> None:
    customer_id: int | None = rng.randint(1, customers) if customers and rng.random() < 0.85 else None
    if customer_id is not None:
        customer = store.get("customers", str(customer_id))
        assert customer is not None
        code = next(code for code, store_id in STORES.items() if store_id == customer["store_id"])
    else:
        code = rng.choice(list(STORES))
    lines: list[dict[str, Any]] = [{"sku": sku, "qty": rng.randint(1, 5)}
                                   for sku in rng.sample(skus, rng.randint(1, min(3, len(skus))))]
    order = store.place_order(code, customer_id, f"guest{rng.randint(1, 10**6)}@example.org", lines, at=placed,
                             copy=False)
    fate = rng.random()
    if fate < 0.35:
        return  # new / pending
    order_id = order["entity_id"]
    invoice = store.invoice_order(order_id, at=later, copy=False)
    if fate < 0.6:
        return  # processing
    if fate < 0.75:
        store.ship_order(order_id, at=later, copy=False)  # complete
    elif fate < 0.88:
        first = invoice["items"][0]
        store.refund(order_id, invoice["entity_id"], [{"order_item_id": first["order_item_id"], "qty": 1}],
                     at=later, copy=False)  # partly refunded
    else:
        store.refund(order_id, invoice["entity_id"], at=later, copy=False)  # closed
