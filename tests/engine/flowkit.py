"""Flow-level test kit: one flow between two strict scripted APIs, a state in memory, an injected clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from ml_connector.connection import Connection
from ml_connector.http.client import ConnectorClient
from ml_connector.store import State
from ml_connector.sync.flow import FlowContext, FlowRun, FlowSummary
from ml_connector.transform.mapping import CompiledMapping
from tests.engine.configs import connector, entity, mapping
from tests.engine.fakeapi import FakeAPI

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# The source lists /things (incremental on `updated`, 60 s lookback); the target creates one record per POST /items.
SOURCE = entity({"key": "code", "read": {"path": "/things", "records": "data",
                                         "incremental": {"field": "updated", "param": "since", "lookback": 60}}})
TARGET = entity({"key": "id", "write": {"strategy": "create_only",
                                        "create": {"method": "POST", "path": "/items", "id": "data.id"}}})


def client(api: FakeAPI, name: str) -> ConnectorClient:
    config = connector({"connector": name, "base_url": f"http://{name}.test/v2", "retries": 0})

    async def no_sleep(seconds: float) -> None:
        raise AssertionError(f"a flow test should not wait ({seconds} s)")

    return ConnectorClient(Connection(name, config, {}, {}, None), State(":memory:").credentials,
                           transport=httpx.ASGITransport(app=api.app), sleep=no_sleep)


def flow_spec(fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"flow": "things", "from": {"connection": "src", "entity": "thing"},
            "to": {"connection": "dst", "entity": "item"}, "key": "code", "fields": fields, **extra}


def run_flow(state: State, spec: dict[str, Any], source: FakeAPI, target: FakeAPI, *, full: bool = False,
             now: Callable[[], datetime] = lambda: NOW, run_id: str = "r1") -> FlowSummary:
    config = mapping(spec)
    context = FlowContext(run_id=run_id, state=state, source=client(source, "src"), target=client(target, "dst"),
                          source_entity=SOURCE, target_entity=TARGET, mapping=CompiledMapping(config),
                          known_flows={config.flow}, full=full, now=now)
    return asyncio.run(FlowRun(config, context).execute())


def bodies(api: FakeAPI, method: str = "POST") -> list[Any]:
    return [json.loads(call["body"]) for call in api.calls(method)]
