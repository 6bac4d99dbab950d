"""QAD -> Marketo end to end (issue 23, in progress): both sandboxes over real HTTP, the CLI in child processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml_connector.sandbox.marketo import create_marketo_sandbox
from ml_connector.sandbox.marketo.app import MarketoSandbox
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
        marketo = create_marketo_sandbox(**config)
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
    code, flows = pair.run()
    assert code == 0 and all(f["api_calls"]["writes"] == 0 for f in flows.values())


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
