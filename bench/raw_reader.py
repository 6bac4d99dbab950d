"""Baseline reader: plain httpx over every page of QAD items, each record hashed (sorted json.dumps + sha256).

`python bench/raw_reader.py URL` (a child process of bench.compare, so it pays interpreter start-up as the
engine does). Prints `{"records": n, "pages": p}`. Standard library and httpx only.
"""

from __future__ import annotations

import hashlib
import json
import sys

import httpx

PAGE_SIZE = 1000
CREDENTIALS = {"grant_type": "password", "client_id": "ml-connector", "username": "demo", "password": "demo-password"}


def read(url: str) -> tuple[int, int]:
    with httpx.Client(base_url=url, timeout=60) as client:
        token = client.post("/clouderp/oauth/token", data=CREDENTIALS).json()["access_token"]
        client.headers.update({"Authorization": f"Bearer {token}", "x-qad-workspace-id": "10USA_10USACO"})
        records = pages = 0
        page, more = 1, True
        while more:
            response = client.get("/clouderp/api/erp/items", params={
                "domainCode": "10USA", "sort": "lastModifiedDate,asc", "page": page, "pageSize": PAGE_SIZE})
            response.raise_for_status()
            body = response.json()
            for record in body["data"]:
                hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
                records += 1
            pages += 1
            page += 1
            more = bool(body["hasMore"])
    return records, pages


if __name__ == "__main__":
    n, p = read(sys.argv[1])
    print(json.dumps({"records": n, "pages": p}))
