"""The single-record write path's own cost: the retry strategy and the base URL are built once per client, not per
call; what the matcher keeps of each written record is its match key and target id, never the payload."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from typing import Any

import pytest

import ml_connector.http.client as client_module
from ml_connector.http.errors import TransientError
from ml_connector.http.matching import TargetFinder
from ml_connector.http.writer import EntityWriter, PushItem
from tests.engine import configs
from tests.engine.fakeapi import FakeAPI
from tests.engine.test_client import API_KEY, make_client


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")


ENTITY = {
    "key": "id",
    "write": {
        "strategy": "search_then_write",
        "search": {"path": "/things/search", "params": {"term": "{{ match.value }}"}, "records": "data"},
        "create": {"method": "POST", "path": "/things", "id": "data.id"},
        "update": {"method": "PATCH", "path": "/things/{{ target_id }}", "id": "data.id"},
    },
}


def test_the_retry_strategy_is_built_once_per_client_and_keeps_retrying_as_before(
        monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []

    class Counted(client_module.RetryPolicy):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(client_module, "RetryPolicy", Counted)
    api = FakeAPI()
    api.on("GET", "/v2/things", 503, {"error": "busy"}).on("GET", "/v2/things", 503, {"error": "busy"})
    api.on("GET", "/v2/things", 200, {"data": [1]})
    for number in range(5):
        api.on("POST", "/v2/things", 200, {"data": {"id": number}})
    waits: list[float] = []
    client = make_client(api, API_KEY, {"key": "env:FAKE_KEY"}, waits=waits)

    async def calls() -> list[Any]:
        replies = [await client.request("GET", "/things")]
        replies += [await client.request("POST", "/things", json={"n": n}) for n in range(5)]
        return [reply.body for reply in replies]

    bodies = asyncio.run(calls())
    assert bodies == [{"data": [1]}] + [{"data": {"id": n}} for n in range(5)]
    assert len(built) == 1  # one strategy for 6 calls and 2 retries
    assert len(waits) == 2 and client.stats.retries == 2 and client.stats.reads == 3 and client.stats.writes == 5
    assert 0.25 <= waits[0] <= 0.5 and 0.5 <= waits[1] <= 1.0  # backoff_base * 2 ** (attempt - 1), jittered


def test_retries_stop_after_the_budget_and_raise_the_last_failure() -> None:
    api = FakeAPI().on("GET", "/v2/things", 503, {"error": "busy"})  # the last answer repeats
    waits: list[float] = []
    client = make_client(api, API_KEY, {"key": "env:FAKE_KEY"}, waits=waits)  # retries: 3
    with pytest.raises(TransientError, match="HTTP 503"):
        asyncio.run(client.request("GET", "/things"))
    assert len(api.calls()) == 4 and len(waits) == 3


def test_the_base_url_is_parsed_once_for_every_call_to_the_same_path() -> None:
    api = FakeAPI()
    for number in range(20):
        api.on("POST", "/v2/things", 200, {"data": {"id": number}})
    client = make_client(api, API_KEY, {"key": "env:FAKE_KEY"})
    client_module._join.cache_clear()

    async def calls() -> None:
        for n in range(20):
            await client.request("POST", "/things", json={"n": n})

    asyncio.run(calls())
    assert client_module._join.cache_info().misses == 1
    assert [call["path"] for call in api.calls()] == ["/v2/things"] * 20


def test_sniffio_is_installed_so_httpcore_does_not_retry_a_failed_import_per_call() -> None:
    assert importlib.util.find_spec("sniffio") is not None


def _retained(root: Any) -> tuple[int, list[dict[str, Any]]]:
    """Bytes of the plain containers reachable from ``root`` (not the client or callables), and its dicts."""
    seen: set[int] = set()
    size, dicts, todo = 0, [], [root]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            size += sys.getsizeof(node)
            dicts.append(node)
            todo.extend(node.keys())
            todo.extend(node.values())
        elif isinstance(node, (list, tuple, set, frozenset)):
            size += sys.getsizeof(node)
            todo.extend(node)
        elif isinstance(node, (str, bytes, int, float)):
            size += sys.getsizeof(node)
    return size, dicts


def test_after_writing_n_records_the_matcher_keeps_keys_and_ids_not_payloads() -> None:
    count = 300
    api = FakeAPI()
    for number in range(count):
        api.on("POST", "/v2/things", 200, {"data": {"id": 1000 + number}})
    w = EntityWriter(make_client(api, API_KEY, {"key": "env:FAKE_KEY"}), "thing", configs.entity(ENTITY),
                     match_field="code")
    w.finder.use_index([])  # a prefetched (empty) target: no search per record
    items = [PushItem(f"s{n}", {"code": f"C{n}", "notes": "x" * 1700}, f"C{n}") for n in range(count)]
    results = asyncio.run(w.push(items))
    assert [r.target_id for r in results] == [str(1000 + n) for n in range(count)]
    state = {k: v for k, v in vars(w.finder).items() if k in ("index", "_recent", "_written")}
    size, dicts = _retained(state)
    assert not [d for d in dicts if "notes" in d]  # no payload kept
    assert size / count < 400  # a key and an id per record (a payload per record is > 1,700 bytes)
    # a later record with the same match value still finds what this run wrote, without asking the API
    assert asyncio.run(w.finder.find("C7")) == [{"id": "1007"}]


def test_a_record_this_run_wrote_is_found_as_an_id_only_and_read_again_before_a_merge() -> None:
    client = make_client(FakeAPI(), API_KEY, {"key": "env:FAKE_KEY"})
    write = configs.entity(ENTITY).write
    assert write is not None
    finder = TargetFinder(client, write, "code", "id")
    finder.use_index([{"id": 5, "code": "A", "name": "listed"}])
    finder.remember("B", "6")
    assert asyncio.run(finder.find("A")) == [{"id": 5, "code": "A", "name": "listed"}]
    [hit] = asyncio.run(finder.find("B"))
    assert hit == {"id": "6"} and not finder.complete(hit)  # not the record: an update that merges reads it first
    assert finder.complete({"id": 5, "code": "A", "name": "listed"})


@pytest.mark.parametrize(("extra", "remembers"), [
    ({"match": {"target": "code"}}, False),  # the match value is the key: the id map knows every record written
    ({"match": {"target": "code", "normalize": ["casefold"]}}, True),  # "a" and "A": two keys, one match value
    ({"match": {"target": "name"}}, True),  # two records may share a name
    ({"match": {"target": "code"}, "let": {"code": "upper(code)"}}, True),  # a let may change what `code` is
])
def test_the_matcher_remembers_written_ids_only_when_the_id_map_cannot_answer(extra: dict[str, Any],
                                                                              remembers: bool) -> None:
    """A first sync of a million records kept ~20 MiB of written ids (issue 24, target 2), yet when the match value
    is the record's own key, a later record with that value is the same record: its link answers."""
    from ml_connector.store import State
    from ml_connector.sync.flow import FlowContext, FlowRun
    from ml_connector.transform.mapping import CompiledMapping
    from tests.engine.flowkit import SOURCE, client, flow_spec

    target = configs.entity(ENTITY)
    config = configs.mapping(flow_spec({"code": "code", "name": "name"}, **extra))
    context = FlowContext(run_id="r1", state=State(":memory:"), source=client(FakeAPI(), "src"),
                          target=client(FakeAPI(), "dst"), source_entity=SOURCE, target_entity=target,
                          mapping=CompiledMapping(config), known_flows={config.flow})
    writer = asyncio.run(FlowRun(config, context)._writer())
    writer.finder.use_index([])
    writer.finder.remember("C1", "7")
    assert (asyncio.run(writer.finder.find("C1")) == [{"id": "7"}]) == remembers
