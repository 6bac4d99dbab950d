"""`plan` resolves matches read-only: create versus update and deferred counts are what the run would do."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from ml_connector.sync.runner import Runner
from ml_connector.workspace import Workspace
from tests.engine.fakeapi import FakeAPI
from tests.engine.pair_workspace import write_pair


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")


def source(api: FakeAPI) -> FakeAPI:
    api.on("GET", "/v2/src/orgs", 200, {"data": [{"code": "A", "name": "Acme"}, {"code": "B", "name": "Bolt"}]})
    api.on("GET", "/v2/src/people", 200, {"data": [{"id": "p1", "name": "Ann", "org": "A"},
                                                   {"id": "p2", "name": "Ben", "org": "B"},
                                                   {"id": "p3", "name": "Cy", "org": "C"}]})
    return api


def plan(tmp_path: Path, api: FakeAPI) -> dict[str, dict[str, int]]:
    workspace = Workspace.open(write_pair(tmp_path))
    state = workspace.state()
    try:
        summary = asyncio.run(Runner(workspace.project, state, transport=httpx.ASGITransport(app=api.app))
                              .run(dry_run=True))
        assert state.audit.query() == [] and state.id_maps.count("orgs") == 0  # a plan writes no state
    finally:
        state.close()
    return {f.flow: {"created": f.created, "updated": f.updated, "deferred": f.deferred, "failed": f.failed}
            for f in summary.flows}


def test_plan_counts_a_record_found_by_the_match_search_as_an_update(tmp_path: Path) -> None:
    api = source(FakeAPI())
    api.on("GET", "/v2/orgs/search", 200, {"data": [{"id": 7, "code": "A"}]})  # A exists in the target
    api.on("GET", "/v2/orgs/search", 200, {"data": []})  # B does not
    counts = plan(tmp_path, api)
    assert counts["orgs"] == {"created": 1, "updated": 1, "deferred": 0, "failed": 0}
    assert [call["params"]["term"] for call in api.calls("GET", "/v2/orgs/search")] == ["A", "B"]
    assert api.calls("POST") == [] and api.calls("PATCH") == []


def test_plan_does_not_defer_records_behind_those_the_same_plan_creates(tmp_path: Path) -> None:
    api = source(FakeAPI())
    api.on("GET", "/v2/orgs/search", 200, {"data": []})
    counts = plan(tmp_path, api)
    # p1 and p2 reference organisations the plan creates; only p3's organisation C is nowhere
    assert counts["people"] == {"created": 2, "updated": 0, "deferred": 1, "failed": 0}


def test_plan_counts_two_matching_target_records_as_a_failure(tmp_path: Path) -> None:
    api = source(FakeAPI())
    api.on("GET", "/v2/orgs/search", 200, {"data": [{"id": 7, "code": "A"}, {"id": 8, "code": "A"}]})
    api.on("GET", "/v2/orgs/search", 200, {"data": []})
    counts = plan(tmp_path, api)
    assert counts["orgs"] == {"created": 1, "updated": 0, "deferred": 0, "failed": 1}
    assert counts["people"]["deferred"] == 2  # p1's organisation would not be written, nor C
