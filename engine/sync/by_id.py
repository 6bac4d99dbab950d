"""Reading source records by id, for a flow a callback triggered (the ids come from the inbox, events/inbox.py).

A callback only says *which* records changed; what they hold is read here, through the source entity's `get`, so a
forged or stale notice can at most cause a read. A record the get does not find (404, 410, or an empty 204) is gone:
the flow applies its `on_delete` to it (its id is taken as the flow's source key, which is the entity's key in every
flow a trigger may run), or, with `on_delete: ignore`, skips it with an audit row. A get the source refuses for one
record (another 4xx) is recorded as failed for that record; the flow's schedule reads it again. A connection-level
failure fails the flow, and the ids stay pending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ml_connector.config.entity import EntityConfig
from ml_connector.http.bodies import RecordsAt
from ml_connector.http.catalog import LazyCatalog
from ml_connector.http.client import ConnectorClient
from ml_connector.http.errors import FatalError, RecordError
from ml_connector.http.reader import EntityReader
from ml_connector.http.redact import REDACTOR
from ml_connector.store import AuditRow, State
from ml_connector.transform.expressions import UnsafePath

GONE_STATUSES = frozenset({404, 410})  # a get's answer that says the record does not exist
EMPTY_STATUSES = frozenset({204})  # ... and one that says so with an empty body
GONE_NOTE = "gone at the source (its get found no record); on_delete is ignore"


@dataclass
class ById:
    """What a read by id found: records (catalog labels applied, children expanded), ids gone, ids refused."""

    records: list[dict[str, Any]] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # id -> the error (redacted)


async def read_by_ids(client: ConnectorClient, entity: str, config: EntityConfig, ids: Sequence[str], *,
                      catalog: LazyCatalog | None = None, expand: Sequence[str] = ()) -> ById:
    """Each id through the entity's `get`, in order, once each."""
    get = config.get
    if get is None:
        raise FatalError(f"{client.connection.name}.{entity}: a triggered flow reads records by id, and the entity "
                         "has no get operation")
    result = ById()
    records = RecordsAt(get.record, single=True, none_statuses=EMPTY_STATUSES)
    for record_id in dict.fromkeys(ids):
        context = {**client.context, "id": record_id}
        try:
            path = str(get.path.evaluate(context))
            reply = await client.request("GET", path, params=get.params.evaluate(context), quota=get.quota,
                                         reads=True, idempotent=True, records=records)
        except UnsafePath as exc:  # an id that would leave the path (a forged `../x`): never sent
            result.refused[record_id] = REDACTOR(str(exc))
            continue
        except RecordError as exc:
            if exc.status in GONE_STATUSES:
                result.gone.append(record_id)
            else:
                result.refused[record_id] = REDACTOR(str(exc))
            continue
        found = [r for r in reply.records or () if isinstance(r, dict)]
        if not found:
            result.gone.append(record_id)
            continue
        result.records.extend(found)
    if result.records and catalog is not None:
        labels = await catalog.get()
        if labels is not None:
            result.records = [labels.to_labels(r) for r in result.records]
    if expand and result.records and config.read is not None:
        reader = EntityReader(client, entity, config, catalog)
        for name in expand:
            await reader._expand(result.records, name)  # the same children a listing read would bring
    elif expand and result.records:
        raise FatalError(f"{client.connection.name}.{entity}: expanding children needs the entity's read")
    return result


def record_skipped(state: State, run_id: str, flow: str, gone: Sequence[str], refused: dict[str, str]) -> None:
    """Audit rows for ids the flow did not sync: gone (on_delete ignore) and refused gets."""
    rows = [AuditRow(run_id, flow, key, None, "filter", "filtered", note=GONE_NOTE) for key in gone]
    rows += [AuditRow(run_id, flow, key, None, "get", "failed", 1, error) for key, error in refused.items()]
    if rows:

        def write() -> None:
            state.pending.clear(flow, list(gone))
            state.audit.add(rows)
        state.db.atomically(write)
