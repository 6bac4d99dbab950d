"""QAD -> Marketo end to end (issue 23): both sandboxes over real HTTP, the CLI in child processes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml_connector.sandbox.marketo import create_marketo_sandbox
from ml_connector.sandbox.marketo.activities import FILL_OUT_FORM, activity_log
from ml_connector.sandbox.marketo.app import MarketoSandbox
from ml_connector.sandbox.marketo.seed import give_an_owner_and_opportunities
from ml_connector.sandbox.qad import QadSandbox, create_qad_sandbox
from ml_connector.sandbox.serve import SandboxServer
from ml_connector.sandbox.workspace import SANDBOX_ENV, write_workspace
from tests.e2e.conftest import counts, run_flows


@dataclass
class Pair:
    qad: QadSandbox
    marketo: MarketoSandbox
    workspace: Path
    marketo_url: str

    def run(self, *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
        return run_flows(self.workspace, *args)

    def calls(self) -> dict[str, int]:
        found: dict[str, int] = self.marketo.log.summary()["counts"]
        return found


@pytest.fixture
def pair_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Pair]]:
    for key, value in SANDBOX_ENV.items():
        monkeypatch.setenv(key, value)
    server = SandboxServer()

    def make(customers: int = 40, **config: Any) -> Pair:
        qad = create_qad_sandbox(customers=customers, items=0, suppliers=0)
        # export jobs finish at once: Marketo moves a job's status at most every 60 s, and the connector polls as
        # slowly, so a first sync would otherwise wait three minutes for the activity history
        marketo = create_marketo_sandbox(**{"bulk_status_seconds": 0, **config})
        urls = {"qad": server.start("qad", qad).url, "marketo": server.start("marketo", marketo).url}
        return Pair(qad, marketo, write_workspace(tmp_path, urls), urls["marketo"])

    try:
        yield make
    finally:
        server.stop()


def _key_contacts(qad: QadSandbox) -> int:
    return sum(1 for c in qad.store.all("customerV2s") if c["isActive"]
               for p in c["contacts"] if p.get("isKeyContact") and p.get("email"))


def test_first_sync_writes_300_per_call_and_a_rerun_writes_nothing(pair_factory: Callable[..., Pair]) -> None:
    pair = pair_factory(customers=650)  # 684 key contacts with an email, no two alike: 3 lead calls
    code, flows = pair.run()
    assert code == 0, {k: (v["failed"], v.get("error")) for k, v in flows.items()}
    active = sum(1 for c in pair.qad.store.all("customerV2s") if c["isActive"])
    leads = _key_contacts(pair.qad)
    assert counts(flows["customers_to_companies"])["created"] == active
    assert counts(flows["contacts_to_leads"])["created"] == leads
    calls = pair.calls()
    assert calls["POST /rest/v1/companies.json"] == -(-active // 300)
    assert calls["POST /rest/v1/leads.json"] == -(-leads // 300)
    assert calls["POST /rest/v1/namedaccounts.json"] == -(-flows["customers_to_named_accounts"]["created"] // 300)
    pair.marketo.log.reset()
    pair.qad.log.reset()
    code, flows = pair.run()
    assert code == 0 and all(f["api_calls"]["writes"] == 0 for f in flows.values())
    # the re-run's whole Marketo request log: the keyed read-back (companies and their opportunities, 300 ids a
    # call; no company has an owner, so no sales person is asked for) and the activities since the last one
    # (the 5-minute lookback re-reads the first sync's activities, 300 a page); QAD: reads only
    pages = -(-len(_activities_of(pair)) // 300)
    assert pair.calls() == {"GET /rest/v1/companies.json": -(-active // 300),
                            "GET /rest/v1/opportunities.json": -(-active // 300),
                            "GET /rest/v1/activities/pagingtoken.json": 1, "GET /rest/v1/activities.json": pages}
    assert {e.method for e in pair.qad.log.entries()} == {"GET"}


def test_with_a_crm_sync_companies_are_skipped_while_named_accounts_and_leads_are_written(
        pair_factory: Callable[..., Pair]) -> None:
    pair = pair_factory(customers=30, crm_sync="sfdc", lead_company_must_exist=False)
    code, flows = pair.run()
    assert code == 0, flows                                   # the run does not fail
    assert flows["customers_to_companies"]["status"] == "skipped"
    assert "CRM" in flows["customers_to_companies"]["error"]
    assert flows["customers_to_named_accounts"]["created"] > 0
    assert flows["contacts_to_leads"]["created"] == _key_contacts(pair.qad)


def test_the_daily_quota_607_stops_the_run_cleanly_and_the_next_run_resumes(pair_factory: Callable[..., Pair]) -> None:
    pair = pair_factory(customers=30, daily_quota=2)       # the run needs 3 write calls
    code, flows = pair.run()
    statuses = {name: flow["status"] for name, flow in flows.items()}
    assert code == 3, statuses                             # stopped cleanly: quota, not failed
    assert "quota" in statuses.values() and "failed" not in statuses.values()
    done = {name for name, flow in flows.items() if flow["status"] == "ok"}
    pair.marketo.config.update(daily_quota=50_000)
    code, flows = pair.run()
    assert code == 0, {name: flow["status"] for name, flow in flows.items()}
    assert all(flows[name]["created"] == 0 for name in done)   # what was done is not done again
    assert len(pair.marketo.store.records("leads")) == _key_contacts(pair.qad)


def test_an_expired_token_602_costs_one_new_token_and_no_failed_record(pair_factory: Callable[..., Pair]) -> None:
    pair = pair_factory(customers=30)
    assert pair.run()[0] == 0
    customer = next(c for c in pair.qad.store.all("customerV2s") if c["isActive"])
    pair.qad.store.patch("customerV2s", customer["customerCode"], {"name": "Renamed For Marketo AG"})
    pair.marketo.log.reset()
    assert httpx.post(pair.marketo_url + "/_admin/tokens/expire", timeout=10).status_code == 200
    code, flows = pair.run()
    assert code == 0 and sum(f["failed"] for f in flows.values()) == 0
    assert pair.calls()["GET /identity/oauth/token"] == 1
    assert flows["customers_to_companies"]["updated"] == 1


def test_a_kept_token_is_reused_by_the_next_run(pair_factory: Callable[..., Pair]) -> None:
    """The other half of the 602 test: without the expiry, the next run asks for no token at all."""
    pair = pair_factory(customers=30)
    assert pair.run()[0] == 0
    pair.marketo.log.reset()
    assert pair.run()[0] == 0
    assert "GET /identity/oauth/token" not in pair.calls()


def _use_the_instance(pair: Pair, calls: int) -> None:
    """Another integration of the same Marketo instance spends `calls` of the shared 100-per-20-s budget."""
    with httpx.Client(base_url=pair.marketo_url, timeout=10) as other:
        token = other.get("/identity/oauth/token", params={
            "grant_type": "client_credentials", "client_id": pair.marketo.config["client_id"],
            "client_secret": pair.marketo.config["client_secret"]}).json()["access_token"]
        for _ in range(calls):
            assert other.get("/rest/v1/stats/usage.json",
                             headers={"Authorization": f"Bearer {token}"}).json()["success"] is True


def test_under_the_shared_call_budget_606_backs_off_and_no_record_fails(pair_factory: Callable[..., Pair]) -> None:
    """The real limits (100 calls / 20 s per instance, 10 in flight): another integration has just spent 97 calls,
    so the run meets 606 on its 4th call. It waits (20 s, growing, with jitter) instead of failing, every lead is
    written with ceil(n/300) accepted calls, and no call follows a 606 sooner than the shortest jittered wait."""
    pair = pair_factory(customers=650)
    assert (pair.marketo.config["rate_calls"], pair.marketo.config["rate_seconds"]) == (100, 20)
    pair.marketo.log.reset()
    _use_the_instance(pair, 97)
    code, flows = pair.run()
    assert code == 0, {k: (v["status"], v.get("error")) for k, v in flows.items()}
    assert sum(f["failed"] for f in flows.values()) == 0
    leads = _key_contacts(pair.qad)
    assert len(pair.marketo.store.records("leads")) == leads
    refused = pair.marketo.refused
    assert {r.code for r in refused} == {"606"} and 1 <= len(refused) <= 3
    sent = Counter(f"{e.method} {e.path}" for e in pair.marketo.log.entries())
    rejected = Counter(f"{r.method} {r.path}" for r in refused)
    assert sent["POST /rest/v1/leads.json"] - rejected["POST /rest/v1/leads.json"] == -(-leads // 300)
    engine_calls = [e for e in pair.marketo.log.entries() if e.path != "/rest/v1/stats/usage.json"]
    for refusal in refused:
        own = next(e for e in engine_calls
                   if e.at >= refusal.at and (e.method, e.path) == (refusal.method, refusal.path))
        after = [e.at for e in engine_calls if e.at > own.at]
        assert after and min(after) - refusal.at >= 20 * 0.75, (refusal, min(after) - refusal.at)


CONTEXT = {"salespersonCode": "SP-KIM", "customShort0": "kim.berg@sales.example", "customShort1": "Kim Berg",
           "customDecimal0": 15000.5, "customDecimal1": 50000, "customDate1": "2027-01-15"}


def test_opportunities_and_the_sales_person_come_back_onto_the_qad_customer(pair_factory: Callable[..., Pair]) -> None:
    pair = pair_factory(customers=30)
    _first_sync(pair)
    code = next(c["customerCode"] for c in pair.qad.store.all("customerV2s") if c["isActive"])
    give_an_owner_and_opportunities(pair.marketo.store, code)
    pair.marketo.log.reset()
    exit_code, flows = pair.run()
    assert exit_code == 0, flows
    assert counts(flows["account_context_to_customers"])["updated"] == 1
    customer = pair.qad.store.get("customerV2s", code) or {}
    assert {name: customer.get(name) for name in CONTEXT} == CONTEXT
    calls = pair.calls()  # one keyed read of the 28 companies, one of their opportunities, one of the owner
    assert (calls["GET /rest/v1/companies.json"], calls["GET /rest/v1/opportunities.json"],
            calls["GET /rest/v1/salespersons.json"]) == (1, 1, 1)
    pair.qad.log.reset()
    exit_code, flows = pair.run()
    assert exit_code == 0 and flows["account_context_to_customers"]["api_calls"]["writes"] == 0
    assert not any(e.method == "POST" and "customerV2s" in e.path for e in pair.qad.log.entries())


def test_with_a_crm_sync_the_crm_owned_companies_are_read_back(pair_factory: Callable[..., Pair]) -> None:
    """The CRM sync made the companies (read-only here); named accounts and leads are written, companies read."""
    pair = pair_factory(customers=30, crm_sync="sfdc", lead_company_must_exist=False)
    active = [c["customerCode"] for c in pair.qad.store.all("customerV2s") if c["isActive"]]
    for code in active:
        pair.marketo.store.insert("companies", {"externalCompanyId": code, "company": f"CRM account {code}"})
    give_an_owner_and_opportunities(pair.marketo.store, active[0])
    code, flows = pair.run()
    assert code == 0, {k: (v["status"], v.get("error")) for k, v in flows.items()}
    assert flows["customers_to_companies"]["status"] == "skipped"
    assert flows["customers_to_named_accounts"]["created"] == len(active)
    assert flows["contacts_to_leads"]["created"] == _key_contacts(pair.qad)
    assert flows["account_context_to_customers"]["status"] == "ok"
    customer = pair.qad.store.get("customerV2s", active[0]) or {}
    assert {name: customer.get(name) for name in CONTEXT} == CONTEXT


def _first_sync(pair: Pair) -> dict[str, dict[str, Any]]:
    code, flows = pair.run()
    assert code == 0, {k: (v["status"], v.get("error"), v["failed"]) for k, v in flows.items()}
    return flows


def _activities_of(pair: Pair, types: tuple[int, ...] = (1, 2, 3, 12, 13)) -> list[Any]:
    leads = {lead["id"] for lead in pair.marketo.store.records("leads")}
    return [a for a in activity_log(pair.marketo).items if a.lead_id in leads and a.type_id in types]


def test_lead_activity_comes_back_by_bulk_export_first_then_by_paging_token(pair_factory: Callable[..., Pair]) -> None:
    pair = pair_factory(customers=30, lead_company_must_exist=False)
    stranger = pair.marketo.store.insert("leads", {"email": "someone@elsewhere.example"})  # not from QAD
    code, flows = pair.run()
    assert code == 0, {k: (v["status"], v.get("error")) for k, v in flows.items()}
    bulk = [(e.method, e.path.rsplit("/", 1)[-1]) for e in pair.marketo.log.entries() if e.path.startswith("/bulk/")]
    assert bulk == [("POST", "create.json"), ("POST", "enqueue.json"), ("GET", "status.json"), ("GET", "file.json")]
    ours = [a for a in _activities_of(pair) if a.lead_id != stranger["id"]]
    history = pair.qad.store.all("customerActivities")
    assert sorted(a["activityId"] for a in history) == sorted(f"MA-{a.item()['marketoGUID']}" for a in ours)
    assert flows["lead_activities_to_customer_activities"]["filtered"] >= 1  # the stranger's
    lead = next(le for le in pair.marketo.store.records("leads") if le["id"] != stranger["id"])
    form = activity_log(pair.marketo).add(pair.marketo.clock(), FILL_OUT_FORM, lead["id"], 2001, "Request a Quote")
    pair.marketo.log.reset()
    code, flows = pair.run()
    assert code == 0
    calls = pair.calls()
    assert "POST /bulk/v1/activities/export/create.json" not in calls
    assert calls["GET /rest/v1/activities/pagingtoken.json"] == 1
    assert flows["lead_activities_to_customer_activities"]["created"] == 1
    made = pair.qad.store.get("customerActivities", f"MA-{form.item()['marketoGUID']}") or {}
    assert (made.get("activityType"), made.get("subject"), made.get("customerCode")) == (
        "Fill Out Form", "Request a Quote", lead["externalCompanyId"])


def test_the_daily_export_allowance_stops_the_run_cleanly_and_the_next_run_resumes(
        pair_factory: Callable[..., Pair]) -> None:
    pair = pair_factory(customers=30, bulk_daily_bytes=0)
    code, flows = pair.run()
    assert code == 3, {k: v["status"] for k, v in flows.items()}
    assert flows["lead_activities_to_customer_activities"]["status"] == "quota"
    assert pair.qad.store.all("customerActivities") == []
    pair.marketo.config.update(bulk_daily_bytes=500_000_000)
    code, flows = pair.run()
    assert code == 0, {k: (v["status"], v.get("error")) for k, v in flows.items()}
    assert len(pair.qad.store.all("customerActivities")) == len(_activities_of(pair)) > 0


def test_the_concurrency_limit_615_waits_growing_and_no_record_fails(pair_factory: Callable[..., Pair]) -> None:
    """Twice in a row the instance has 10 calls in flight (another integration's): the lead write waits 5 s, then
    10 s (each with up to a quarter of jitter), and goes through; nothing is parked."""
    pair = pair_factory(customers=30)
    refusal = {"requestId": "e1#1", "success": False,
               "errors": [{"code": "615", "message": "Concurrent access limit reached"}]}
    assert httpx.post(pair.marketo_url + "/_admin/faults", timeout=10, json={
        "method": "POST", "path": "/rest/v1/leads.json", "status": 200, "body": refusal, "times": 2}).status_code == 200
    code, flows = pair.run()
    assert code == 0 and sum(f["failed"] for f in flows.values()) == 0
    assert flows["contacts_to_leads"]["created"] == _key_contacts(pair.qad)
    sent = [e.at for e in pair.marketo.log.entries() if (e.method, e.path) == ("POST", "/rest/v1/leads.json")]
    assert len(sent) == 3
    assert sent[1] - sent[0] >= 5 * 0.75 and sent[2] - sent[1] >= 10 * 0.75
