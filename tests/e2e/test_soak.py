"""Issue 17, the CI-sized fault soak: faults, SIGKILLs and restarts, then nothing lost and nothing duplicated."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.soak import Soak, SoakOptions
from ml_connector.sandbox.core import CHAOS_KINDS, Fault, Sandbox
from ml_connector.sandbox.pipedrive import create_pipedrive_sandbox
from ml_connector.sandbox.qad import create_qad_sandbox
from ml_connector.sandbox.workspace import SANDBOX_ENV
from tests.e2e.conftest import Env

CI_SOAK = SoakOptions(seed=17, minutes=2.0, cycles=14, faults=0.15, kills=0.5, customers=20, items=15, stall=1.0)


def test_ci_soak_loses_nothing_duplicates_nothing_and_a_replay_leaves_nothing_parked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in SANDBOX_ENV.items():
        monkeypatch.setenv(key, value)
    lines: list[str] = []
    report = Soak(CI_SOAK, tmp_path, echo=lines.append).execute()
    text = "\n".join(lines + report.lines())
    # the soak did what it says: every kind of fault happened, and runs were killed mid-way
    assert set(report.injected) == set(CHAOS_KINDS), text
    assert report.killed >= 2, text
    assert report.crashes == [], text
    assert [(f.flow, f.lost, f.duplicated) for f in report.flows] == [(f.flow, [], {}) for f in report.flows], text
    # no lost update either: every target record carries the source's current values
    assert [(f.flow, f.stale) for f in report.flows] == [(f.flow, []) for f in report.flows], text
    assert all(f.expected == f.synced for f in report.flows), text
    assert report.without_audit == [], text
    assert report.parked_after_replay == 0, text


@pytest.mark.parametrize(("raw", "content_type"), [
    ("<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html"),
    ('{"success": true, "data": {"id": 1', "application/json"),
    ('{"success": true}', "application/json")])
def test_an_update_whose_answer_confirms_nothing_is_sent_again(env: Env, raw: str, content_type: str) -> None:
    code, _ = env.run_json("--flow", "items_to_products")
    assert code == 0
    item = next(i for i in env.qad.store.all("items") if i["itemStatus"] == "ACTIVE")
    env.qad.store.patch("items", item["itemCode"], {"listPrice": 99.99})
    # the proxy answers for the target: the PATCH never reaches it
    env.crm.faults.add(Fault(method="PATCH", path="/api/v2/products/", status=200, raw=raw, content_type=content_type))
    env.run_json("--flow", "items_to_products")
    env.run_json("--flow", "items_to_products")
    product = next(p for p in env.crm.store.all("products") if p["code"] == item["itemCode"])
    assert [p["price"] for p in product["prices"]] == [99.99]


OK_BODY = '{"data":[{"id":1}]}'


def _tiny_sandbox(created: list[object] | None = None) -> Sandbox:
    async def hello(request: Request) -> Response:
        if request.method == "POST" and created is not None:
            created.append(await request.json())
        return JSONResponse({"data": [{"id": 1}]})

    return Sandbox("tiny", [Route("/items", hello, methods=["GET", "POST"])], config={})


async def _statuses(sandbox: Sandbox, calls: int) -> list[str]:
    out = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url="http://tiny") as client:
        for _ in range(calls):
            try:
                answer = await client.get("/items")
                out.append("ok" if answer.text == OK_BODY else f"{answer.status_code} {answer.text[:12]}")
            except ConnectionResetError:
                out.append("dropped")
    return out


def test_chaos_faults_a_share_of_requests_reproducibly_and_revokes_through_the_sandbox_hook() -> None:
    first, second = _tiny_sandbox(), _tiny_sandbox()
    revoked: list[str] = []
    for sandbox in (first, second):
        sandbox.chaos.configure(0.5, seed=3, stall=0.0)
        sandbox.chaos.revoke_tokens = lambda: revoked.append("revoked")
    one, two = asyncio.run(_statuses(first, 60)), asyncio.run(_statuses(second, 60))
    assert one == two  # the same seed, the same faults on the same requests
    assert first.chaos.injected == second.chaos.injected
    faulted = sum(first.chaos.injected.values())
    assert 20 <= faulted <= 40 and one.count("ok") == 60 - faulted + (
        first.chaos.injected["revoked_token"])  # a revocation lets the request through (the tiny app has no auth)
    assert len(revoked) == 2 * first.chaos.injected["revoked_token"] > 0
    assert "200 <html><body>" in one and "dropped" in one and any(s.startswith("429") for s in one)
    first.chaos.configure(0.0)
    assert asyncio.run(_statuses(first, 20)) == ["ok"] * 20


def test_a_late_write_is_applied_after_its_client_saw_the_connection_drop() -> None:
    created: list[object] = []
    sandbox = _tiny_sandbox(created)
    sandbox.faults.add(Fault(method="POST", status=0, drop=True, late=0.05))

    async def scenario() -> tuple[list[object], list[object]]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url="http://tiny") as client:
            with pytest.raises(ConnectionResetError):
                await client.post("/items", json={"name": "late"})
            at_once = list(created)
            await asyncio.sleep(0.2)
            return at_once, list(created)

    assert asyncio.run(scenario()) == ([], [{"name": "late"}])


def test_every_sandbox_wires_its_own_token_revocation_for_chaos() -> None:
    erp, crm = create_qad_sandbox(customers=1, items=1), create_pipedrive_sandbox()
    assert erp.chaos.revoke_tokens == erp.tokens.expire_all
    assert crm.chaos.revoke_tokens == crm.oauth.expire_all
