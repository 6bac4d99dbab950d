"""What the sandboxes were asked, in a form tests can pin exactly; page sizes and windows derived from the specs."""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

import yaml

from ml_connector.sandbox.core import Sandbox
from tests.e2e.conftest import REPO, Env

TIMESTAMP_PARAMS = frozenset({"modifiedSince", "updated_since"})
ERP = "/clouderp/api/erp"
QAD_PARAMS = ("page", "pageSize", "modifiedSince")
CRM_PARAMS = ("limit", "start", "cursor", "status", "updated_since", "deal_ids", "term")
Call = tuple[str, str, tuple[tuple[str, Any], ...]]


@cache
def connector(name: str) -> dict[str, Any]:
    """A shipped connector spec, as data."""
    loaded: dict[str, Any] = yaml.safe_load((REPO / "connectors" / f"{name}.yaml").read_text())
    return loaded


def page_size(connector_name: str, paginator: str) -> int:
    """The largest page a paginator of a shipped connector asks for."""
    return int(connector(connector_name)["paginators"][paginator]["limit"]["max"])


def pages(records: int, size: int) -> int:
    """Calls a paged read of ``records`` records makes (an empty read still asks once)."""
    return max(1, math.ceil(records / size))


def instant(value: str) -> datetime:
    """A timestamp as an aware UTC datetime, whatever its format on the wire."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def lookback(connector_name: str, entity: str) -> timedelta:
    return timedelta(seconds=connector(connector_name)["entities"][entity]["read"]["incremental"].get("lookback", 0))


def calls(sandbox: Sandbox, keep: Collection[str]) -> list[Call]:
    """Each logged request as (method, path, the kept query parameters); timestamps compared as instants."""
    out = []
    for entry in sandbox.log.entries():
        params = {name: instant(value) if name in TIMESTAMP_PARAMS else value
                  for name, value in parse_qsl(entry.query, keep_blank_values=True) if name in keep}
        out.append((entry.method, entry.path, tuple(sorted(params.items()))))
    return out


def call(method: str, path: str, **params: Any) -> Call:
    return method, path, tuple(sorted(params.items()))


def newest(records: list[dict[str, Any]]) -> datetime:
    return max(instant(r["lastModifiedDate"]) for r in records)


def erp_reads(env: Env, collection: str, since: datetime | None) -> list[Call]:
    """The page calls that read one QAD collection from ``since`` (inclusive), at the largest page size."""
    size = page_size("qad", "pages")
    window = [r for r in env.qad.store.all(collection) if since is None or instant(r["lastModifiedDate"]) >= since]
    bound = {} if since is None else {"modifiedSince": since}
    return [call("GET", f"{ERP}/{collection}", page=str(n), pageSize=str(size), **bound)
            for n in range(1, pages(len(window), size) + 1)]


def erp_run(env: Env, items: datetime | None, customers: datetime | None, orders: datetime | None = None
            ) -> list[Call]:
    """One run of the shipped flows as QAD sees it: items, customers (two flows read them), sales orders."""
    customer_reads = erp_reads(env, "customerV2s", customers)
    return erp_reads(env, "items", items) + customer_reads + customer_reads + erp_reads(env, "salesOrders", orders)


def crm_list(entity: str, **params: Any) -> Call:
    """One page of a Pipedrive list read (every list in these tests fits one page of the largest size)."""
    return call("GET", f"/api/v2/{entity}", limit=str(page_size("pipedrive", "cursor")), **params)


def crm_catalog(entity: str) -> Call:
    """The read of an entity's custom-field catalog (labels to keys), one page."""
    return call("GET", f"/v1/{entity}Fields", start="0", limit=str(page_size("pipedrive", "v1_offset")))


def watermarks(env: Env) -> dict[str, datetime | None]:
    """Each flow's stored watermark (``status --json``), as an instant."""
    result = env.cli("status", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return {f["flow"]: instant(f["watermark"]) if f["watermark"] else None for f in json.loads(result.stdout)["flows"]}
