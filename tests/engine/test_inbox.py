"""The inbox: ids a callback announced, kept beside the state until the flow recorded their records."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from ml_connector.config.channel import CallbackConfig, VerifyRule
from ml_connector.events.active import ActiveChannel
from ml_connector.events.inbox import Inbox, InboxItem, inbox_path

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CALLBACK = CallbackConfig(max_bytes=1024, verify=(VerifyRule(path="token", equals="channel.token"),), ids="ids",
                          operation="operation", answer_status=200, answer_body=None)


def channel(entity: str = "account", connection: str = "crm") -> ActiveChannel:
    return ActiveChannel(connection=connection, channel="changes", entity=entity, channel_id="1234567890123",
                         token="s3cret-token", expires_at=datetime(2026, 3, 8, tzinfo=UTC), callback=CALLBACK)


def test_the_inbox_lives_beside_the_state(tmp_path: Path) -> None:
    assert inbox_path(tmp_path / "state" / "state.duckdb") == tmp_path / "state" / "state.duckdb.inbox"


def test_added_ids_are_pending_in_order_until_done(tmp_path: Path) -> None:
    inbox = Inbox.open(tmp_path / "s.duckdb.inbox")
    try:
        assert inbox.add(channel(), ["10", "11"], "update", T0) == 2
        assert inbox.add(channel("contact"), ["10"], None, T0) == 1
        items = inbox.pending("crm", "account")
        assert [(i.record_id, i.operation, i.received_at) for i in items] == [("10", "update", T0),
                                                                              ("11", "update", T0)]
        assert all(isinstance(i, InboxItem) and i.connection == "crm" and i.entity == "account" for i in items)
        assert items[0].seq < items[1].seq
        inbox.done([items[0].seq])
        assert [i.record_id for i in inbox.pending("crm", "account")] == ["11"]
        assert [i.record_id for i in inbox.pending("crm", "contact")] == ["10"]
        assert inbox.pending("other", "account") == []
    finally:
        inbox.close()


def test_a_second_notice_for_a_pending_id_adds_no_row_but_one_after_done_does(tmp_path: Path) -> None:
    inbox = Inbox.open(tmp_path / "s.duckdb.inbox")
    try:
        assert inbox.add(channel(), ["10", "10", "12"], "update", T0) == 2
        assert inbox.add(channel(), ["10"], "update", T0) == 0
        assert [i.record_id for i in inbox.pending("crm", "account")] == ["10", "12"]
        inbox.done([i.seq for i in inbox.pending("crm", "account")])
        assert inbox.add(channel(), ["10"], "delete", T0) == 1  # a new change after the record was synced
        assert [(i.record_id, i.operation) for i in inbox.pending("crm", "account")] == [("10", "delete")]
    finally:
        inbox.close()


def test_pending_is_bounded_by_limit(tmp_path: Path) -> None:
    inbox = Inbox.open(tmp_path / "s.duckdb.inbox")
    try:
        inbox.add(channel(), [str(n) for n in range(5)], None, T0)
        assert [i.record_id for i in inbox.pending("crm", "account", limit=2)] == ["0", "1"]
    finally:
        inbox.close()


def test_pending_ids_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb.inbox"
    inbox = Inbox.open(path)
    inbox.add(channel(), ["10", "11"], "update", T0)
    inbox.done([inbox.pending("crm", "account")[0].seq])
    inbox.close()
    reopened = Inbox.open(path)
    try:
        assert [(i.record_id, i.received_at) for i in reopened.pending("crm", "account")] == [("11", T0)]
        assert reopened.add(channel(), ["11"], "update", T0) == 0  # still pending after the restart
    finally:
        reopened.close()


def test_adds_from_many_threads_lose_nothing(tmp_path: Path) -> None:
    inbox = Inbox.open(tmp_path / "s.duckdb.inbox")
    try:
        def worker(n: int) -> None:
            for i in range(20):
                inbox.add(channel(), [f"{n}-{i}"], None, T0)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(inbox.pending("crm", "account")) == 80
    finally:
        inbox.close()
