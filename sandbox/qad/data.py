"""Deterministic seed data for the QAD sandbox: word lists, key formats and per-record generators.

Seeded records are *virtual*: record ``i`` of an entity is a pure function of ``(seed, entity, i)``, so a
sandbox with 1,000,000 customers only keeps a sorted index of ``(lastModifiedDate, key)`` in memory and
builds record dicts when they are read. Generators here return business fields only; the sandbox adds
the system fields (``uri``, ``domainCode``, ``lastModifiedDate``, ...).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ml_connector.sandbox.qad.timestamps import iso_ms

_MASK = (1 << 64) - 1
BASE_MS = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)
SPAN_MS = 200 * 24 * 3600 * 1000  # seeded lastModifiedDate values fall in 2025-01-01 .. 2025-07-20
TIE_EVERY = 25  # every 25th seeded record shares its predecessor's timestamp (bulk-import ties)

CURRENCIES = frozenset({"USD", "CAD", "MXN", "EUR", "GBP", "JPY", "CHF", "CNY"})
CREDIT_TERMS = frozenset({"COD", "15D", "30D", "45D", "60D", "2/10N30"})
ITEM_STATUSES = frozenset({"ACTIVE", "HOLD", "OBSOLETE", "PLANNING"})
UNITS = frozenset({"EA", "BX", "KG", "M", "PK", "L", "ST"})
SITES = frozenset({"10-100", "10-200", "10-300"})
ORDER_STATUSES = frozenset({"open", "closed", "cancelled"})
USERS = ("mfg", "admin", "jsmith", "mgarcia", "integration")

# country, currency, company suffixes, ((city, region), ...), street names, phone prefix, weight
_Country = tuple[str, str, tuple[str, ...], tuple[tuple[str, str], ...], tuple[str, ...], str, int]
_COUNTRIES: tuple[_Country, ...] = (
    ("US", "USD", ("Inc.", "LLC", "Corp.", "Co."),
     (("Chicago", "IL"), ("Cleveland", "OH"), ("Detroit", "MI"), ("Houston", "TX"), ("Charlotte", "NC"),
      ("Milwaukee", "WI"), ("Phoenix", "AZ"), ("Portland", "OR"), ("Atlanta", "GA"), ("Pittsburgh", "PA")),
     ("Industrial Pkwy", "Commerce Dr", "Main St", "Lake Rd", "Technology Blvd", "Harbor Ave"), "+1", 55),
    ("CA", "CAD", ("Inc.", "Ltd."),
     (("Toronto", "ON"), ("Mississauga", "ON"), ("Montreal", "QC"), ("Calgary", "AB"), ("Vancouver", "BC")),
     ("Dundas St", "Rue Sherbrooke", "Macleod Trail", "Kingsway"), "+1", 10),
    ("MX", "MXN", ("S.A. de C.V.",),
     (("Monterrey", "NL"), ("Guadalajara", "JA"), ("Queretaro", "QT"), ("Puebla", "PU")),
     ("Av. Constitucion", "Blvd. Industrial", "Calle Hidalgo"), "+52", 8),
    ("DE", "EUR", ("GmbH", "AG", "KG"),
     (("Stuttgart", "BW"), ("Munich", "BY"), ("Hamburg", "HH"), ("Cologne", "NW"), ("Leipzig", "SN")),
     ("Industriestrasse", "Hauptstrasse", "Gewerbering", "Am Hafen"), "+49", 10),
    ("FR", "EUR", ("SAS", "SA", "SARL"),
     (("Lyon", "ARA"), ("Toulouse", "OCC"), ("Lille", "HDF"), ("Nantes", "PDL")),
     ("Rue de l'Industrie", "Avenue Jean Jaures", "Zone Artisanale"), "+33", 8),
    ("GB", "GBP", ("Ltd.", "PLC"),
     (("Birmingham", "WMD"), ("Manchester", "MAN"), ("Leeds", "LDS"), ("Bristol", "BST")),
     ("Station Road", "Mill Lane", "Enterprise Way", "Church Street"), "+44", 9),
)
_COUNTRY_WEIGHTS = tuple(c[6] for c in _COUNTRIES)
_PREFIXES = (
    "Northwind", "Blue Ridge", "Summit", "Great Lakes", "Pacific", "Atlas", "Keystone", "Redwood",
    "Ironclad", "Silver Creek", "Meridian", "Pioneer", "Granite", "Harbor", "Evergreen", "Apex",
    "Lakeshore", "Frontier", "Cardinal", "Liberty", "Sterling", "Cobalt", "Prairie", "Vanguard",
    "Horizon", "Beacon", "Riverbend", "Crescent", "Titan", "Oakridge", "Falcon", "Westfield",
)
_TRADES = (
    "Machining", "Plastics", "Foods", "Logistics", "Electronics", "Fasteners", "Packaging", "Tooling",
    "Castings", "Controls", "Medical Devices", "Automotive", "Industrial Supply", "Components",
    "Fabrication", "Hydraulics", "Coatings", "Distribution", "Precision Parts", "Polymers",
)
_FIRST = (
    "James", "Mary", "Robert", "Patricia", "Michael", "Jennifer", "David", "Linda", "Carlos", "Ana",
    "Thomas", "Sarah", "Daniel", "Laura", "Stefan", "Julia", "Pierre", "Claire", "Oliver", "Emma",
    "Rajesh", "Priya", "Kenji", "Yuki", "Miguel", "Sofia", "Andrew", "Nicole", "Lukas", "Hannah",
)
_LAST = (
    "Smith", "Johnson", "Williams", "Brown", "Garcia", "Miller", "Davis", "Martinez", "Wilson", "Anderson",
    "Taylor", "Moore", "Jackson", "Martin", "Lee", "Thompson", "White", "Lopez", "Schmidt", "Muller",
    "Dubois", "Bernard", "Clarke", "Evans", "Patel", "Sato", "Hernandez", "Novak", "Kowalski", "Fischer",
)
_ROLES = (
    "Purchasing Manager", "Accounts Payable", "Buyer", "Plant Manager", "Controller",
    "Operations Director", "Quality Manager", "Supply Chain Lead",
)
_PARTS = (
    "Hex Bolt", "Ball Bearing", "Gasket", "Motor", "Valve", "Bracket", "Housing", "Shaft", "Sensor",
    "Pump", "Seal Kit", "Spur Gear", "Bushing", "Coupling", "Filter", "Relay", "Hose Assy", "Flange",
)
_MATERIALS = ("Steel", "SS", "Brass", "Alum", "Nylon", "Cast Iron", "PVC", "Bronze")
_FINISHES = ("ZINC PLATED", "BLACK OXIDE", "ANODIZED", "PAINTED", "RAW", "PASSIVATED", "POWDER COAT")
_PRODUCT_LINES = ("1000", "2000", "3000", "4000", "5000")
_ITEM_TYPES = ("FINISHED", "RAW", "PURCH", "SUBASSY")
_ACTIVITIES = (
    ("Visit Webpage", "Visited /products/{topic}"), ("Fill Out Form", "Requested a quote: {topic}"),
    ("Open Email", "Opened newsletter: {topic}"), ("Click Email", "Clicked link in: {topic}"),
    ("Attend Event", "Attended webinar: {topic}"), ("Phone Call", "Call about {topic}"),
    ("Meeting", "Review of {topic} pricing"),
)
_TOPICS = ("fasteners", "bearings", "hydraulics", "spare parts", "annual contract", "new catalog", "sensors")
_SOURCES = ("Marketo", "Marketo", "Marketo", "CRM", "Sales")


def mix64(x: int) -> int:
    """SplitMix64 finaliser: a fast, well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def stream_base(seed: int, salt: int) -> int:
    """Base hash of one entity's seeded stream."""
    return mix64(mix64(seed & _MASK) ^ (salt << 48))


def seeded_lmd_ms(base: int, i: int) -> int:
    """lastModifiedDate (epoch ms) of seeded record ``i``; some neighbours deliberately tie."""
    j = i - 1 if i % TIE_EVERY == TIE_EVERY - 1 else i
    return BASE_MS + mix64(base ^ (j << 1) ^ 1) % SPAN_MS


def record_rng(base: int, i: int) -> random.Random:
    """The RNG that builds seeded record ``i``'s fields."""
    return random.Random(mix64(base ^ (i << 1)))


# ---- key formats -------------------------------------------------------------------------------------

def customer_code(i: int) -> str:
    return f"C{i + 1:06d}"


def supplier_code(i: int) -> str:
    return f"V{i + 1:06d}"


def item_code(i: int) -> str:
    return f"{10 + i // 8999}-{1001 + i % 8999}"


def order_number(i: int) -> str:
    return f"S{i + 1:07d}"


_PREFIXED = re.compile(r"^[A-Z](\d{6,})$")
_ITEM = re.compile(r"^(\d{2,})-(\d{4})$")


def prefixed_index(key: str, prefix: str, fmt: Callable[[int], str]) -> int | None:
    """Seeded index encoded in a prefixed numeric key (``C000123`` -> 122), or None."""
    m = _PREFIXED.match(key)
    if not m or key[0] != prefix:
        return None
    i = int(m.group(1)) - 1
    return i if i >= 0 and fmt(i) == key else None


def customer_index(key: str) -> int | None:
    return prefixed_index(key, "C", customer_code)


def supplier_index(key: str) -> int | None:
    return prefixed_index(key, "V", supplier_code)


def order_index(key: str) -> int | None:
    return prefixed_index(key, "S", order_number)


def activity_id(i: int) -> str:
    return f"A{i + 1:07d}"


def activity_index(key: str) -> int | None:
    return prefixed_index(key, "A", activity_id)


def item_index(key: str) -> int | None:
    m = _ITEM.match(key)
    if not m:
        return None
    a, b = int(m.group(1)), int(m.group(2))
    if a < 10 or not 1001 <= b <= 9999:
        return None
    i = (a - 10) * 8999 + (b - 1001)
    return i if item_code(i) == key else None


# ---- generators ----------------------------------------------------------------------------------------

def _party(rng: random.Random) -> tuple[dict[str, Any], tuple[Any, ...], str]:
    """Name, header address and country row shared by customers and suppliers."""
    country = rng.choices(_COUNTRIES, weights=_COUNTRY_WEIGHTS)[0]
    prefix, trade = rng.choice(_PREFIXES), rng.choice(_TRADES)
    name = f"{prefix} {trade} {rng.choice(country[2])}"
    city, region = rng.choice(country[3])
    address = {
        "addressType": "HEADER",
        "street": _street(rng, country[0], rng.choice(country[4])),
        "city": city,
        "postalCode": _postal(rng, country[0]),
        "country": country[0],
    }
    web = (prefix + trade).lower().replace(" ", "")
    return {"name": name, "address": address, "region": region}, country, web


def _street(rng: random.Random, country: str, street: str) -> str:
    number = rng.randint(1, 9999)
    return f"{street} {number % 300 + 1}" if country in {"DE", "FR", "MX"} else f"{number} {street}"


def _postal(rng: random.Random, country: str) -> str:
    if country == "CA":
        return f"{rng.choice('KLMNT')}{rng.randint(1, 9)}{rng.choice('ABCEGHJ')} {rng.randint(1, 9)}" \
               f"{rng.choice('KLMNPR')}{rng.randint(1, 9)}"
    if country == "GB":
        return f"{rng.choice(('B', 'M', 'LS', 'BS'))}{rng.randint(1, 30)} {rng.randint(1, 9)}" \
               f"{rng.choice('ABDEFGHJ')}{rng.choice('LNPQRSTU')}"
    return f"{rng.randint(10000, 99999):05d}"


def _contacts(rng: random.Random, code: str, web: str, phone_prefix: str) -> list[dict[str, Any]]:
    contacts = []
    for n in range(rng.choice((1, 1, 2, 2, 2, 3))):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        contacts.append({
            "contactId": f"{code}-{n + 1:02d}",
            "firstName": first,
            "lastName": last,
            "email": f"{first[0].lower()}.{last.lower()}@{web}.com",
            "phone": f"{phone_prefix} {rng.randint(200, 989)}-555-{rng.randint(100, 9999):04d}",
            "role": rng.choice(_ROLES),
            "isKeyContact": n == 0 or rng.random() < 0.2,
        })
    return contacts


def customer(base: int, i: int) -> dict[str, Any]:
    """Seeded customer ``i`` (business fields)."""
    rng = record_rng(base, i)
    code = customer_code(i)
    party, country, web = _party(rng)
    zone = country[0] if country[0] in {"DE", "FR", "GB"} else f"{country[0]}-{party['region']}"
    return {
        "customerCode": code,
        "businessRelationCode": code,
        "name": party["name"],
        "currencyCode": country[1],
        "creditTermsCode": rng.choice(("30D", "30D", "45D", "60D", "15D", "2/10N30")),
        "creditLimit": float(rng.choice((5000, 10000, 25000, 50000, 100000, 250000))),
        "isActive": rng.random() < 0.9,
        "taxZone": zone,
        "addresses": [party["address"]],
        "contacts": _contacts(rng, code, web, country[5]),
    }


def supplier(base: int, i: int) -> dict[str, Any]:
    """Seeded supplier ``i`` (business fields)."""
    rng = record_rng(base, i)
    code = supplier_code(i)
    party, country, _web = _party(rng)
    return {
        "supplierCode": code,
        "businessRelationCode": code,
        "name": party["name"],
        "currencyCode": country[1],
        "paymentTermsCode": rng.choice(("30D", "45D", "60D", "2/10N30")),
        "isActive": rng.random() < 0.9,
        "addresses": [party["address"]],
    }


def item(base: int, i: int) -> dict[str, Any]:
    """Seeded item ``i`` (business fields)."""
    rng = record_rng(base, i)
    part, material = rng.choice(_PARTS), rng.choice(_MATERIALS)
    size = f"M{rng.choice((4, 5, 6, 8, 10, 12, 16, 20))}x{rng.choice((10, 20, 25, 40, 60, 80))}"
    status = "ACTIVE" if rng.random() < 0.88 else rng.choice(("HOLD", "OBSOLETE", "PLANNING"))
    description = f"{part} {material} {size}"
    return {
        "itemCode": item_code(i),
        "description": description if len(description) <= 24 else f"{part} {material}",
        "description2": f"{rng.choice(_FINISHES)} GR{rng.choice(('5', '8', '8.8', '10.9', 'A2'))}"[:24],
        "unitOfMeasure": rng.choice(("EA", "EA", "EA", "BX", "PK", "KG", "ST")),
        "productLine": rng.choice(_PRODUCT_LINES),
        "itemType": rng.choice(_ITEM_TYPES),
        "itemStatus": status,
        "listPrice": round(rng.uniform(0.25, 2500.0), 2),
        "currencyCode": "USD",
        "siteCode": rng.choice(("10-100", "10-100", "10-200", "10-300")),
    }


def sales_order(base: int, i: int, lmd_ms: int, customers: tuple[int, int], items: tuple[int, int]
                ) -> dict[str, Any]:
    """Seeded sales order ``i``; ``customers``/``items`` are (stream base, count) of the referenced data."""
    rng = record_rng(base, i)
    cust = customer(customers[0], rng.randrange(customers[1]))
    ordered = datetime.fromtimestamp(lmd_ms / 1000, tz=UTC).date() - timedelta(days=rng.randint(0, 30))
    status = rng.choices(("open", "closed", "cancelled"), weights=(60, 35, 5))[0]
    lines = [_order_line(rng, n, status, items) for n in range(rng.randint(1, 5))]
    return {
        "salesOrderNumber": order_number(i),
        "customerCode": cust["customerCode"],
        "shipToCode": cust["customerCode"],
        "orderDate": ordered.isoformat(),
        "requiredDate": (ordered + timedelta(days=rng.randint(7, 45))).isoformat(),
        "currencyCode": cust["currencyCode"],
        "status": status,
        "totalAmount": order_total(lines),
        "externalReference": None,
        "invoiceNumber": None,
        "invoiceDate": None,
        "lines": lines,
    }


def _order_line(rng: random.Random, n: int, status: str, items: tuple[int, int]) -> dict[str, Any]:
    part = item(items[0], rng.randrange(items[1]))
    qty = float(rng.choice((1, 2, 5, 10, 12, 20, 25, 50, 100, 250)))
    shipped = qty if status == "closed" else (0.0 if rng.random() < 0.7 else float(int(qty // 2)))
    discount = rng.choice((0.0, 0.0, 0.05, 0.1, 0.15))
    return {
        "lineNumber": n + 1,
        "itemCode": part["itemCode"],
        "quantityOrdered": qty,
        "quantityShipped": 0.0 if status == "cancelled" else shipped,
        "listPrice": part["listPrice"],
        "netPrice": round(part["listPrice"] * (1 - discount), 2),
        "siteCode": part["siteCode"],
    }


def customer_activity(base: int, i: int, lmd_ms: int, customers: tuple[int, int]) -> dict[str, Any]:
    """Seeded customer activity ``i``: a touch of a seeded customer, mostly of one of its contacts."""
    rng = record_rng(base, i)
    cust = customer(customers[0], rng.randrange(customers[1]))
    kind, subject = rng.choice(_ACTIVITIES)
    contact = rng.choice(cust["contacts"]) if cust["contacts"] and rng.random() < 0.8 else None
    when = lmd_ms - rng.randint(0, 6 * 3600) * 1000  # recorded some time after it happened
    return {
        "activityId": activity_id(i),
        "contactId": contact["contactId"] if contact is not None else None,
        "customerCode": cust["customerCode"],
        "activityDate": iso_ms(when),
        "activityType": kind,
        "subject": subject.format(topic=rng.choice(_TOPICS)),
        "source": rng.choice(_SOURCES),
    }


def order_total(lines: list[dict[str, Any]]) -> float:
    """Order total: sum of quantityOrdered x netPrice, rounded to cents."""
    return round(sum(float(ln["quantityOrdered"]) * float(ln["netPrice"]) for ln in lines), 2)


def date_of(epoch_seconds: float) -> str:
    """The UTC date of a moment as YYYY-MM-DD."""
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).date().isoformat()
