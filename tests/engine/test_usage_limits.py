"""API usage limits (a daily org-wide allowance reported in a header, e.g. `Sforce-Limit-Info: api-usage=N/M`).

A quota pool with `usage_header` + `usage_pattern` reads how much of the allowance is used after every answer; once
`used >= limit - reserve` it starts no new call. The call in progress ends normally, the flow stops with status
"quota" (confirmed writes recorded, watermark where it stood), the remaining flows are not started, the run's status
is "quota" and the CLI exits 3 with one line; the next run resumes. A response rule `do: quota_exhausted` (a 403
saying the allowance is spent) does the same and is never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

import ml_connector.cli
from ml_connector.cli import main
from ml_connector.http.usage import QuotaExhausted
from ml_connector.store import State
from ml_connector.sync.runner import Runner
from ml_connector.workspace import Workspace
from tests.engine.fakeapi import FakeAPI
from tests.engine.test_client import API_KEY, make_client
from tests.engine.two_flows import two_flow_files

HEADER = "Sforce-Limit-Info"
PATTERN = r"api-usage=(?P<used>\d+)/(?P<limit>\d+)"
LIMIT_SPENT = {"when": {"status": 403, "body": "[0].errorCode == 'REQUEST_LIMIT_EXCEEDED'"}, "do": "quota_exhausted"}


def used(n: int, of: int = 100) -> dict[str, str]:
    return {HEADER: f"api-usage={n}/{of}"}


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")


def pool_client(api: FakeAPI, pool: dict[str, Any], **spec: Any) -> Any:
    quotas = {"default": {"usage_header": HEADER, "usage_pattern": PATTERN, **pool}}
    return make_client(api, {**API_KEY, "quotas": quotas, **spec}, {"key": "env:FAKE_KEY"})


def call(client: Any, times: int) -> None:
    async def go() -> None:
        for _ in range(times):
            await client.request("GET", "/things")
    asyncio.run(go())


# ---- the pool ------------------------------------------------------------------------------------------------------

def test_the_pool_starts_no_call_once_usage_reaches_the_limit_less_the_reserve() -> None:
    api = FakeAPI().on("GET", "/v2/things", 200, {"data": []}, used(89)) \
                   .on("GET", "/v2/things", 200, {"data": []}, used(90))
    client = pool_client(api, {"reserve_calls": 10})
    with pytest.raises(QuotaExhausted) as caught:
        call(client, 3)
    assert str(caught.value) == ("connection fake: API usage limit reached, 90 of 100 used (reserve 10); "
                                 "no new call is started, the next run resumes")
    assert len(api.calls()) == 2  # the call that reported 90 of 100 ended normally; the third was never sent


def test_a_fractional_reserve_counts_from_the_announced_limit() -> None:
    api = FakeAPI().on("GET", "/v2/things", 200, {"data": []}, {HEADER: "api-usage=94999/100000"}) \
                   .on("GET", "/v2/things", 200, {"data": []}, {HEADER: "api-usage=95000/100000;per-app=1/5"})
    client = pool_client(api, {"reserve": 0.05})
    with pytest.raises(QuotaExhausted, match="95000 of 100000 used \\(reserve 5000\\)"):
        call(client, 3)
    assert len(api.calls()) == 2


def test_without_a_reserve_the_pool_stops_at_the_limit_and_ignores_answers_without_the_header() -> None:
    api = FakeAPI().on("GET", "/v2/things", 200, {"data": []}, used(99)) \
                   .on("GET", "/v2/things", 200, {"data": []}) \
                   .on("GET", "/v2/things", 200, {"data": []}, {HEADER: "garbled"}) \
                   .on("GET", "/v2/things", 200, {"data": []}, used(100))
    client = pool_client(api, {})
    with pytest.raises(QuotaExhausted, match="100 of 100 used"):
        call(client, 5)
    assert len(api.calls()) == 4


def test_a_rule_saying_the_allowance_is_spent_stops_at_once_without_retrying() -> None:
    spent = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    api = FakeAPI().on("GET", "/v2/things", 403, spent)
    client = make_client(api, {**API_KEY, "responses": [LIMIT_SPENT]}, {"key": "env:FAKE_KEY"})
    with pytest.raises(QuotaExhausted) as caught:
        call(client, 2)
    assert str(caught.value) == ("connection fake: API usage limit reached: GET /v2/things -> HTTP 403: "
                                 "TotalRequests Limit exceeded.; no new call is started, the next run resumes")
    assert len(api.calls()) == 1 and client.stats.retries == 0
    with pytest.raises(QuotaExhausted):  # and the pool stays closed for this run
        call(client, 1)
    assert len(api.calls()) == 1


def test_an_invalid_usage_pattern_is_a_spec_error() -> None:
    from ml_connector.spec.problems import SpecError
    with pytest.raises(SpecError, match="usage_pattern: .* does not match"):
        pool_client(FakeAPI(), {"usage_pattern": r"api-usage=(\d+)/(\d+)"})


# ---- a run ---------------------------------------------------------------------------------------------------------

FILES = {
    "connectors/src.yaml": f"""
        connector: src
        base_url: http://api.test/src
        auth: {{key: {{type: api_key, header: x-key, value: k-literal}}}}
        quotas: {{default: {{usage_header: {HEADER}, usage_pattern: '{PATTERN}', reserve_calls: 5}}}}
        paginators: {{next: {{type: next_url, next: next}}}}
        entities:
          thing:
            key: code
            read: {{path: /things, records: data, paginator: next, incremental: {{param: since, field: at}}}}
          other: {{key: code, read: {{path: /others, records: data}}}}
        """,
    **two_flow_files("thing", "other"),
}
PAGE_1 = {"data": [{"code": "A", "name": "a", "at": "2026-03-01T10:00:00Z"}], "next": "things/p2"}
PAGE_2 = {"data": [{"code": "B", "name": "b", "at": "2026-03-01T11:00:00Z"}]}
STOPPED = "stopped: connection src: API usage limit reached, 95 of 100 used (reserve 5); no new call is started, " \
          "the next run resumes"


def workspace(tmp_path: Path) -> Path:
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path / "workspace.yaml"


def run(tmp_path: Path, api: FakeAPI, state: State) -> Any:
    project = Workspace.open(workspace(tmp_path)).project
    return asyncio.run(Runner(project, state, transport=httpx.ASGITransport(app=api.app)).run())


def test_a_run_stops_cleanly_at_the_usage_limit_and_the_next_run_resumes(tmp_path: Path) -> None:
    api = FakeAPI().on("GET", "/src/things", 200, PAGE_1, used(95)) \
                   .on("POST", "/dst/items", 200, {"data": {"id": 1}})
    state = State(":memory:")

    summary = run(tmp_path, api, state)

    assert [(f.flow, f.status, f.read, f.created, f.error) for f in summary.flows] == [
        ("first", "quota", 1, 1, STOPPED)]
    assert summary.status == "quota"
    assert summary.as_dict()["not_started"] == ["second"]
    assert [(c["method"], c["path"]) for c in api.calls()] == [("GET", "/src/things"), ("POST", "/dst/items")]
    assert state.id_maps.get_many("first", ["A"])["A"].target_id == "1"  # the confirmed write is recorded
    assert state.watermarks.get("first") is None  # the read did not end: the watermark stays
    assert [r["status"] for r in state.runs.recent()] == ["quota"]
    assert {f["flow"]: f["last_status"] for f in state.runs.flow_status()} == {"first": "quota"}

    again = FakeAPI().on("GET", "/src/things", 200, PAGE_1, used(10)) \
                     .on("GET", "/src/things/p2", 200, PAGE_2, used(11)) \
                     .on("POST", "/dst/items", 200, {"data": {"id": 2}}) \
                     .on("GET", "/src/others", 200, {"data": []}, used(12))
    summary = run(tmp_path, again, state)
    assert [(f.flow, f.status, f.created, f.unchanged) for f in summary.flows] == [("first", "ok", 1, 1),
                                                                                  ("second", "ok", 0, 0)]
    assert summary.status == "ok"
    assert state.watermarks.get("first") == "2026-03-01T11:00:00Z"


def test_a_403_limit_answer_on_a_write_stops_the_run_the_same_way(tmp_path: Path) -> None:
    files = dict(FILES)
    files["connectors/dst.yaml"] = FILES["connectors/dst.yaml"].replace(
        "entities:", "quotas: {default: {concurrency: 1}}\n        responses:\n"
        "          - {when: {status: 403, body: \"[0].errorCode == 'REQUEST_LIMIT_EXCEEDED'\"}, do: quota_exhausted}\n"
        "        entities:")
    page = {"data": [{"code": c, "name": c, "at": "2026-03-01T10:00:00Z"} for c in "ABC"]}
    api = FakeAPI().on("GET", "/src/things", 200, page, used(1)) \
                   .on("POST", "/dst/items", 200, {"data": {"id": 1}}) \
                   .on("POST", "/dst/items", 403, [{"message": "TotalRequests Limit exceeded.",
                                                    "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    state = State(":memory:")
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    project = Workspace.open(tmp_path / "workspace.yaml").project
    summary = asyncio.run(Runner(project, state, transport=httpx.ASGITransport(app=api.app)).run())

    first, = summary.flows
    assert (first.status, first.created, first.failed) == ("quota", 1, 0)
    assert first.error == ("stopped: connection dst: API usage limit reached: POST /dst/items -> HTTP 403: "
                           "TotalRequests Limit exceeded.; no new call is started, the next run resumes")
    assert [json.loads(c["body"])["name"] for c in api.calls("POST")] == ["A", "B"]  # C was never sent
    assert summary.status == "quota"
    assert state.pending.list(flow="first") == []  # B and C stay dirty (no hash), not parked as bad records


def test_the_cli_exits_3_with_one_line_at_the_usage_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = workspace(tmp_path)
    api = FakeAPI().on("GET", "/src/things", 200, PAGE_1, used(95)) \
                   .on("POST", "/dst/items", 200, {"data": {"id": 1}})
    transport = httpx.ASGITransport(app=api.app)
    monkeypatch.setattr(ml_connector.cli, "Runner", functools.partial(Runner, transport=transport))
    result = CliRunner().invoke(main, ["run", "-w", str(path)])
    assert result.exit_code == 3, result.output
    assert result.stderr.splitlines() == [
        "ml-connector: API usage limit reached: flow first stopped, not started: second; what the targets confirmed "
        "is recorded, the next run resumes"]
    assert "first: " + STOPPED in result.stdout


class Gathering(httpx.AsyncBaseTransport):
    """Serves the scripted API, holding each write until ``writes`` of them are on the wire (at most 5 s)."""

    def __init__(self, api: FakeAPI, writes: int) -> None:
        self.inner = httpx.ASGITransport(app=api.app)
        self.writes = writes
        self.waiting = 0
        self.together = 0
        self.all_there = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.waiting += 1
            self.together = max(self.together, self.waiting)
            if self.waiting >= self.writes:
                self.all_there.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.all_there.wait(), 5)
        return await self.inner.handle_async_request(request)


def test_writes_already_on_the_wire_when_the_limit_is_reached_are_recorded(tmp_path: Path) -> None:
    files = dict(FILES)
    files["connectors/dst.yaml"] = FILES["connectors/dst.yaml"].replace(
        "entities:", f"quotas: {{default: {{usage_header: {HEADER}, usage_pattern: '{PATTERN}', concurrency: 3}}}}\n"
        "        entities:")
    page = {"data": [{"code": c, "name": c, "at": "2026-03-01T10:00:00Z"} for c in "ABC"], "next": "things/p2"}
    last = {"data": [{"code": "D", "name": "D", "at": "2026-03-01T11:00:00Z"}]}
    api = FakeAPI().on("GET", "/src/things", 200, page, used(1)) \
                   .on("GET", "/src/things/p2", 200, last) \
                   .on("POST", "/dst/items", 200, {"data": {"id": 1}}, used(100)) \
                   .on("POST", "/dst/items", 200, {"data": {"id": 2}}, used(101)) \
                   .on("POST", "/dst/items", 200, {"data": {"id": 3}}, used(102))
    state = State(":memory:")
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    project = Workspace.open(tmp_path / "workspace.yaml").project
    transport = Gathering(api, writes=3)
    summary = asyncio.run(Runner(project, state, transport=transport).run())

    assert transport.together == 3  # the three writes were on the wire at once
    first, = summary.flows
    assert (first.status, first.created, first.failed) == ("quota", 3, 0)
    assert first.error == ("stopped: connection dst: API usage limit reached, 100 of 100 used (reserve 0); no new call "
                           "is started, the next run resumes")
    assert sorted(e.target_id for e in state.id_maps.get_many("first", ["A", "B", "C"]).values()) == ["1", "2", "3"]
    # the source's own allowance is not spent: its next page is read; D's write to the spent target is never sent
    assert [c["path"] for c in api.calls("GET")] == ["/src/things", "/src/things/p2"]
    assert [json.loads(c["body"])["name"] for c in api.calls("POST")] == ["A", "B", "C"]
    assert summary.not_started == ["second"]
    assert state.watermarks.get("first") is None
