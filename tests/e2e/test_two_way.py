"""Issue 18 case 7 acceptance: QAD customers <-> Pipedrive organizations sync names both ways without echoes.

customers_to_organizations and organizations_to_customers name each other as `reverse`. Against the sandboxes over
HTTP, through the CLI: a name changed on one side costs exactly one write to the other side and nothing is written
back, on that run or any later one; when both sides changed, QAD wins (its flow runs first). Request logs are pinned
whole: each run's reads start from the watermarks the state holds before it.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from tests.e2e.conftest import Env, flows
from tests.e2e.requestlog import (
    CRM_PARAMS,
    QAD_PARAMS,
    Call,
    call,
    calls,
    crm_catalog,
    crm_list,
    erp_reads,
    erp_run,
    lookback,
    watermarks,
)

ERP_CUSTOMERS = "/clouderp/api/erp/customerV2s"
FORWARD, REVERSE = "customers_to_organizations", "organizations_to_customers"
WON_DEALS = crm_list("deals", status="won")


def org_of(env: Env, code: str) -> dict[str, Any]:
    key = env.crm.store.field_key("organizations", "ERP Customer Id")
    [org] = [o for o in env.crm.store.all("organizations") if o["custom_fields"].get(key) == code]
    return org


class Run:
    """One `run --json` through the CLI, with the watermarks it started from and what each sandbox was asked."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.marks: dict[str, datetime | None] = watermarks(env)
        env.crm.log.reset()
        env.qad.log.reset()
        code, summary = env.run_json()
        assert code == 0, summary
        self.flows = flows(summary)
        self.crm, self.qad = calls(env.crm, CRM_PARAMS), calls(env.qad, QAD_PARAMS)

    def erp_reads(self) -> list[Call]:
        """The ERP reads of the run: items, customers (two flows), from their watermarks less the lookback; orders."""
        def since(flow: str, entity: str) -> datetime:
            mark = self.marks[flow]
            assert mark is not None
            return mark - lookback("qad", entity)

        return (erp_reads(self.env, "items", since("items_to_products", "item"))
                + erp_reads(self.env, "customerV2s", since(FORWARD, "customer"))
                + erp_reads(self.env, "customerV2s", since("contacts_to_persons", "customer"))
                + erp_reads(self.env, "salesOrders", None))

    def org_reads(self) -> list[Call]:
        """The reverse flow's read of organizations from its watermark (inclusive: the newest is read again, so
        the custom-field catalog is read to label it)."""
        return [crm_list("organizations", updated_since=self.marks[REVERSE]), crm_catalog("organization")]

    def writes(self) -> int:
        return sum(f["created"] + f["updated"] for f in self.flows.values())


def test_names_sync_both_ways_and_nothing_echoes(env: Env) -> None:
    active = [c for c in env.qad.store.all("customerV2s") if c["isActive"]]
    first = Run(env)
    # Every organization is created, then read back by the reverse flow: each holds its customer's name already.
    assert (first.flows[FORWARD]["created"], first.flows[REVERSE]["read"], first.flows[REVERSE]["echoes"],
            first.flows[REVERSE]["api_calls"]["writes"]) == (len(active), len(active), len(active), 0)
    assert first.qad == [call("POST", "/clouderp/oauth/token"), *erp_run(env, None, None)]  # no write to QAD
    assert Counter(c for c in first.crm if c[1].startswith("/api/v2/organizations")) == Counter({
        call("POST", "/api/v2/organizations"): len(active),
        crm_list("organizations"): 2})  # the forward flow lists the empty target, the reverse flow reads all back

    # A name changed in QAD: one write to Pipedrive, none back to QAD, on this run or the next.
    customer = active[0]["customerCode"]
    env.qad.store.patch("customerV2s", customer, {"name": "Renamed In QAD"})
    org = org_of(env, customer)
    changed = Run(env)
    assert changed.crm == [crm_catalog("organization"), call("PATCH", f"/api/v2/organizations/{org['id']}"),
                           WON_DEALS, crm_list("organizations", updated_since=changed.marks[REVERSE])]
    assert changed.qad == changed.erp_reads()
    assert (changed.flows[FORWARD]["updated"], changed.flows[REVERSE]["echoes"], changed.writes()) == (1, 1, 1)
    assert org_of(env, customer)["name"] == "Renamed In QAD"
    later = Run(env)
    assert (later.crm, later.qad, later.writes()) == ([WON_DEALS, *later.org_reads()], later.erp_reads(), 0)

    # A name changed in Pipedrive: one write to QAD (the customer is fetched first for its concurrency hash) ...
    other = active[1]["customerCode"]
    org = org_of(env, other)
    env.crm.store.patch("organizations", org["id"], {"name": "Renamed In Pipedrive"})
    changed = Run(env)
    assert changed.crm == [WON_DEALS, *changed.org_reads()]
    assert changed.qad == [*changed.erp_reads(), call("GET", f"{ERP_CUSTOMERS}/{other}"), call("POST", ERP_CUSTOMERS)]
    assert (changed.flows[REVERSE]["updated"], changed.writes()) == (1, 1)
    assert env.qad.store.get("customerV2s", other)["name"] == "Renamed In Pipedrive"
    # ... and none back: the next run reads the customer QAD changed; the organization already holds its name.
    echoed = Run(env)
    assert (echoed.crm, echoed.qad, echoed.writes()) == ([WON_DEALS, *echoed.org_reads()], echoed.erp_reads(), 0)
    assert echoed.flows[FORWARD]["echoes"] == 1
    later = Run(env)
    assert (later.crm, later.qad, later.writes()) == ([WON_DEALS, *later.org_reads()], later.erp_reads(), 0)
    assert later.flows[FORWARD]["echoes"] == 0  # the echo was recorded as written: unchanged from now on


def test_when_both_sides_changed_qad_wins_with_one_write(env: Env) -> None:
    Run(env)
    customer = next(c for c in env.qad.store.all("customerV2s") if c["isActive"])["customerCode"]
    org = org_of(env, customer)
    env.qad.store.patch("customerV2s", customer, {"name": "QAD Side"})
    env.crm.store.patch("organizations", org["id"], {"name": "Pipedrive Side"})
    changed = Run(env)
    assert changed.crm == [crm_catalog("organization"), call("PATCH", f"/api/v2/organizations/{org['id']}"),
                           WON_DEALS, crm_list("organizations", updated_since=changed.marks[REVERSE])]
    assert changed.qad == changed.erp_reads()
    assert (changed.flows[FORWARD]["updated"], changed.flows[REVERSE]["echoes"], changed.writes()) == (1, 1, 1)
    assert org_of(env, customer)["name"] == env.qad.store.get("customerV2s", customer)["name"] == "QAD Side"
