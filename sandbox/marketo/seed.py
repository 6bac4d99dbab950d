"""Deterministic seed records: the same ``seed`` and counts give the same records (ids included).

Sales persons come first, then companies (each owned by a sales person), leads (each linked to a company by
``externalCompanyId``) and opportunities (each on a company); every record is created before the clock's now,
``STEP`` seconds apart, so a ``sinceDatetime`` of now sees none of them.
"""

from __future__ import annotations

import random
from typing import Any

from ml_connector.sandbox.marketo.store import MarketoStore

WORDS = ["Alpine", "Blue", "Cedar", "Delta", "Ember", "Falcon", "Granite", "Harbor", "Iris", "Juniper", "Kestrel",
         "Lumen", "Maple", "Nordic", "Orion", "Pioneer", "Quartz", "River", "Summit", "Tidal"]
FIRST = ["Ana", "Ben", "Chen", "Dia", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun"]
LAST = ["Meyer", "Rossi", "Dubois", "Novak", "Garcia", "Smith", "Kowalski", "Tanaka", "Silva", "Berg"]
INDUSTRIES = ["Manufacturing", "Retail", "Healthcare", "Logistics", "Software"]
STAGES = ["Prospecting", "Qualification", "Proposal", "Negotiation", "Closed Won", "Closed Lost"]
STEP = 60.0


def seed_store(store: MarketoStore, leads: int = 0, companies: int = 0, opportunities: int = 0,
               salespersons: int = 0, seed: int = 7) -> None:
    """Fill a store with linked records (no events reach listeners registered later)."""
    rng = random.Random(seed)
    total = leads + companies + opportunities + salespersons
    start = store.clock()
    times = iter(start - STEP * (total - i) for i in range(total))
    sellers: list[str] = []
    for i in range(1, salespersons + 1):
        sellers.append(f"SP-{i:05d}")
        store.insert("salespersons", {
            "externalSalesPersonId": f"SP-{i:05d}", "email": f"seller{i}@sandbox-corp.example",
            "firstName": rng.choice(FIRST), "lastName": rng.choice(LAST), "title": "Account Executive"},
            at=next(times))
    company_ids: list[str] = []
    for i in range(1, companies + 1):
        values: dict[str, Any] = {
            "externalCompanyId": f"C-{i:05d}", "company": f"{rng.choice(WORDS)} {rng.choice(WORDS)} {i:05d}",
            "website": f"https://company{i}.example", "industry": rng.choice(INDUSTRIES),
            "numberOfEmployees": rng.randint(5, 5000), "annualRevenue": float(rng.randint(1, 900) * 10_000),
            "billingCity": rng.choice(["Berlin", "Lyon", "Austin", "Pune"])}
        if sellers:
            values["externalSalesPersonId"] = rng.choice(sellers)
        company_ids.append(values["externalCompanyId"])
        store.insert("companies", values, at=next(times))
    for i in range(1, leads + 1):
        values = {"email": f"lead{i}@customer.example", "firstName": rng.choice(FIRST),
                  "lastName": rng.choice(LAST), "leadSource": rng.choice(["Web", "Event", "Referral"])}
        if company_ids:
            values["externalCompanyId"] = rng.choice(company_ids)
        store.insert("leads", values, at=next(times))
    for i in range(1, opportunities + 1):
        values = {"externalOpportunityId": f"O-{i:05d}", "name": f"Deal {i:05d}",
                  "amount": float(rng.randint(1, 500) * 100), "stage": rng.choice(STAGES),
                  "closeDate": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"}
        if company_ids:
            values["externalCompanyId"] = rng.choice(company_ids)
        if sellers:
            values["externalSalesPersonId"] = rng.choice(sellers)
        store.insert("opportunities", values, at=next(times))


def give_an_owner_and_opportunities(store: MarketoStore, code: str) -> None:
    """What a CRM sync (or a user) does to the company of `code`: sales person SP-KIM owns it, with two open
    opportunities (12,000 and 3,000.5, closing 2027-02-01 and 2027-01-15) and one won (50,000)."""
    company = next(c for c in store.records("companies") if c["externalCompanyId"] == code)
    store.insert("salespersons", {"externalSalesPersonId": "SP-KIM", "email": "kim.berg@sales.example",
                                  "firstName": "Kim", "lastName": "Berg"})
    store.update("companies", company["id"], {"externalSalesPersonId": "SP-KIM"})
    for number, (amount, closed, won, close) in enumerate(((12000.0, False, False, "2027-02-01"),
                                                           (3000.5, False, False, "2027-01-15"),
                                                           (50000.0, True, True, "2026-10-01")), start=1):
        store.insert("opportunities", {
            "externalOpportunityId": f"OPP-{code}-{number}", "name": f"Deal {number}", "amount": amount,
            "isClosed": closed, "isWon": won, "closeDate": close, "externalCompanyId": code,
            "externalSalesPersonId": "SP-KIM"})
