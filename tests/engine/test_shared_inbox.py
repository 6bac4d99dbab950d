"""Webhook receivers as replicas (issue 25): on a PostgreSQL state the inbox is a table of the tenant's schema, so
receivers behind one address all write to one inbox; a delivery that reaches two of them is kept once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ml_connector.events.inbox import Inbox
from ml_connector.events.shared_inbox import SharedInbox, open_inbox
from ml_connector.store.postgres import PostgresTarget
from tests.engine.test_receiver import ENDPOINT, NOW, TOKEN, channel, make, post
from tests.pg import fresh_schema, postgres_url  # noqa: F401  (the session fixture)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def body(ids: list[str]) -> dict[str, object]:
    return {"token": TOKEN, "channel_id": "1700000000001", "ids": ids, "operation": "update"}


async def test_two_receivers_on_one_postgresql_state_fill_one_inbox_once(tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    target = PostgresTarget(postgres_url, schema=fresh_schema(postgres_url), key_file=tmp_path / "state.key")
    first, second, reader = SharedInbox.open(target), SharedInbox.open(target), SharedInbox.open(target)
    try:
        one, woken_one = make(first)
        two, woken_two = make(second)
        assert (await post(one, ENDPOINT, body(["10", "11"]))).status_code == 200
        assert (await post(two, ENDPOINT, body(["10", "11"]))).status_code == 200  # the same delivery, again
        assert (woken_one, woken_two) == ([1], [])  # the second replica added nothing: its serve is not woken
        answers = await asyncio.gather(post(one, ENDPOINT, body(["12"])), post(two, ENDPOINT, body(["12", "13"])))
        assert [answer.status_code for answer in answers] == [200, 200]
        pending = reader.pending("crm", "account")
        assert [(item.record_id, item.operation) for item in pending] == [
            ("10", "update"), ("11", "update"), ("12", "update"), ("13", "update")]
        assert all(item.received_at == NOW for item in pending)
        assert woken_two == [1]  # 13 is its own; 12 went to whichever replica wrote it first
        reader.done([item.seq for item in pending[:3]])  # one serve processed them: gone for every replica
        assert [item.record_id for item in first.pending("crm", "account")] == ["13"]
        assert second.add(channel(), ["10"], "update", NOW) == 1  # a change after it was synced is new again
    finally:
        for inbox in (first, second, reader):
            inbox.close()


def test_a_postgresql_state_gets_the_shared_inbox_and_a_duckdb_state_its_file(tmp_path: Path,
                                                                             postgres_url: str) -> None:  # noqa: F811
    target = PostgresTarget(postgres_url, schema=fresh_schema(postgres_url), key_file=tmp_path / "state.key")
    shared = open_inbox(target, tmp_path / "state" / "unused.duckdb")
    local = open_inbox(tmp_path / "state" / "state.duckdb", tmp_path / "state" / "state.duckdb")
    try:
        assert isinstance(shared, SharedInbox)
        assert type(local) is Inbox
        assert (tmp_path / "state" / "state.duckdb.inbox").exists()
        assert not (tmp_path / "state" / "unused.duckdb.inbox").exists()
    finally:
        shared.close()
        local.close()


@pytest.mark.parametrize("kind", ["file", "postgresql"])
def test_done_rows_are_kept_a_day_then_pruned(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Every callback adds a row; before, done rows stayed for ever and the inbox grew with every notice received."""
    from datetime import timedelta

    from ml_connector.events.inbox import DONE_KEPT

    if kind == "file":
        inbox: Inbox = Inbox.open(tmp_path / "s.duckdb.inbox")
    else:
        url = request.getfixturevalue("postgres_url")
        inbox = SharedInbox.open(PostgresTarget(url, schema=fresh_schema(url), key_file=tmp_path / "state.key"))
    try:
        inbox.add(channel(), ["10", "11", "12"], "update", NOW)
        first, second, third = inbox.pending("crm", "account")
        inbox.done([first.seq], now=NOW)
        assert inbox.kept() == 3  # done, and kept for a day (what was received, for a look after the fact)
        inbox.done([second.seq], now=NOW + DONE_KEPT + timedelta(seconds=1))
        assert inbox.kept() == 2  # the first, done over a day ago, is gone; the second is kept
        assert [item.record_id for item in inbox.pending("crm", "account")] == ["12"]  # pending ones never go
        assert timedelta(days=1) == DONE_KEPT
    finally:
        inbox.close()
