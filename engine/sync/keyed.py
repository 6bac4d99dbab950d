"""The keys a keyed read asks for: every id-map entry of another flow (`from.keys`)."""

from __future__ import annotations

from ml_connector.config.mapping import FromKeysConfig
from ml_connector.store import State


def flow_keys(state: State, keys: FromKeysConfig | None) -> list[str] | None:
    """The source keys (or target ids) of ``keys.flow``'s id map, distinct and sorted; None for a listed read.

    Read from the state the flow runs on, so a flow that `depends_on` the keys flow sees what that flow just
    wrote in the same run.
    """
    if keys is None:
        return None
    column = "source_key" if keys.side == "source" else "target_id"
    rows = state.db.fetchall(f"SELECT DISTINCT {column} FROM id_map WHERE flow = ? AND {column} IS NOT NULL "
                             f"AND {column} <> '' ORDER BY {column}", [keys.flow])
    return [str(row[0]) for row in rows]
