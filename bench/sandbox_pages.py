"""A sandbox must never be the bottleneck: the cost of a page and of a lookup at 100 vs 1,000,000 records.

`python -m bench.sandbox_pages [--large 1000000]` — in-process (ASGI), so only the simulators are measured.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx

from ml_connector.sandbox.pipedrive import create_pipedrive_sandbox
from ml_connector.sandbox.qad import create_qad_sandbox
from ml_connector.sandbox.workspace import SANDBOX_ENV

PD_TOKEN = {"x-api-token": SANDBOX_ENV["ML_SANDBOX_PIPEDRIVE_TOKEN"]}


async def timed(client: httpx.AsyncClient, requests: list[tuple[str, dict[str, Any]]],
                headers: dict[str, str]) -> float:
    """Median milliseconds of the given GETs."""
    samples = []
    for path, params in requests:
        started = time.perf_counter()
        response = await client.get(path, params=params, headers=headers)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text[:200]
    return statistics.median(samples)


async def qad_costs(size: int) -> tuple[float, float]:
    app = create_qad_sandbox(customers=size, items=10)
    app.config.update(rate_per_second=0)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://qad.test") as client:
        token = (await client.post("/clouderp/oauth/token", data={
            "grant_type": "password", "client_id": "ml-connector", "username": "demo",
            "password": "demo-password"})).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "x-qad-workspace-id": "10USA_10USACO"}
        last_page = max(1, size // 100)
        pages = [("/clouderp/api/erp/customerV2s", {"domainCode": "10USA", "page": p, "pageSize": 100})
                 for p in (1, last_page // 2 or 1, last_page)] * 5
        keys = [r["customerCode"] for r in app.store.all("customerV2s", limit=5)]
        gets = [(f"/clouderp/api/erp/customerV2s/{k}", {"domainCode": "10USA"}) for k in keys] * 3
        return await timed(client, pages, headers), await timed(client, gets, headers)


async def pipedrive_costs(size: int) -> tuple[float, float]:
    app = create_pipedrive_sandbox(deals=size)
    app.config.update(burst_limit=None, daily_budget=None, search_burst_limit=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pd.test") as client:
        first = (await client.get("/api/v2/deals", params={"limit": 500}, headers=PD_TOKEN)).json()
        cursor = first["additional_data"]["next_cursor"]
        pages = [("/api/v2/deals", {"limit": 500, "cursor": cursor} if cursor else {"limit": 500})] * 10
        no_params: dict[str, Any] = {}
        gets = [(f"/api/v2/deals/{i}", no_params) for i in (1, max(1, size // 2), size)] * 5
        return await timed(client, pages, PD_TOKEN), await timed(client, gets, PD_TOKEN)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--large", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"{'sandbox':10} {'records':>9} {'seed s':>7} {'page ms':>8} {'get ms':>7}")
    measures: list[tuple[str, Callable[[int], Any]]] = [("qad", qad_costs), ("pipedrive", pipedrive_costs)]
    for name, measure in measures:
        for size in (100, args.large):
            started = time.perf_counter()
            page, get = asyncio.run(measure(size))
            print(f"{name:10} {size:9d} {time.perf_counter() - started:7.1f} {page:8.1f} {get:7.2f}")


if __name__ == "__main__":
    main()
