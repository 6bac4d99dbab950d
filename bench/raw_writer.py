"""Baseline writer: plain httpx POSTing prepared Pipedrive products, one per call, N calls in flight at once.

`python bench/raw_writer.py URL TOKEN PRODUCTS.jsonl CONCURRENCY` (a child process of bench.compare).
Prints `{"written": n, "calls": c, "failed": f}`. Standard library and httpx only.
"""

from __future__ import annotations

import asyncio
import json
import sys

import httpx


async def write(url: str, token: str, products: list[dict[str, object]], concurrency: int) -> dict[str, int]:
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    for product in products:
        queue.put_nowait(product)
    counts = {"written": 0, "calls": 0, "failed": 0}

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            product = queue.get_nowait()
            response = await client.post("/api/v2/products", json=product)
            counts["calls"] += 1
            counts["written" if response.status_code in (200, 201) else "failed"] += 1

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers={"x-api-token": token}, timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return counts


if __name__ == "__main__":
    url, token, path, concurrency = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with open(path, encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    print(json.dumps(asyncio.run(write(url, token, rows, concurrency))))
