"""`audit` beyond the table: what was sent for each record (its payload), and exports to CSV or Parquet."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import click

from ml_connector.store.audit import EXPORT_FORMATS

SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def export_format(fmt: str | None, output: Path | None) -> str | None:
    """The export format asked for (None: no export): --format, else the --output file's suffix."""
    if output is None:
        if fmt is not None:
            raise click.BadParameter("--format needs --output FILE", param_hint="--format")
        return None
    chosen = fmt or SUFFIXES.get(output.suffix.lower())
    if chosen is None:
        raise click.BadParameter(f"say --format {'|'.join(EXPORT_FORMATS)} (the file name {output.name} does not "
                                 "tell)", param_hint="--output")
    return chosen


def payload_lines(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Per row, a heading naming the record, then the payload sent (secrets masked) as indented JSON."""
    lines: list[str] = []
    for row in rows:
        record = (row["source_key"] if row["source_key"] is not None  # None: the summary row of unchanged records
                  else f"({row.get('count', 0)} records)")
        heading = f"{row['logged_at']}  {row['flow']}  {record} -> {row['target_id'] or '-'}  " \
                  f"{row['action']} {row['outcome']}"
        payload = row.get("payload")
        body = json.dumps(payload, indent=2, sort_keys=True, default=str) if payload is not None else \
            f"(no payload stored; hash {row['payload_hash'] or '-'})"
        lines.extend([heading, *("  " + line for line in body.splitlines()), ""])
    return lines
