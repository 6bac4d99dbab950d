"""dlt's rest_api source reading QAD items into DuckDB; runs in bench/.venv-dlt only (never the project's venv).

`python bench/dlt_reader.py URL PIPELINES_DIR LOADER` with LOADER `jsonl` or `default` (dlt's own choice of
file format). Prints `{"records": n}`. Imports dlt only: the project is not installed in that venv.
"""

from __future__ import annotations

import json
import sys

import dlt
import requests
from dlt.sources.rest_api import rest_api_source

CREDENTIALS = {"grant_type": "password", "client_id": "ml-connector", "username": "demo", "password": "demo-password"}


def main(url: str, pipelines_dir: str, loader: str) -> int:
    token = requests.post(f"{url}/clouderp/oauth/token", data=CREDENTIALS, timeout=60).json()["access_token"]
    source = rest_api_source({
        "client": {
            "base_url": f"{url}/clouderp/api/erp/",
            "auth": {"type": "bearer", "token": token},
            "headers": {"x-qad-workspace-id": "10USA_10USACO"},
            "paginator": {"type": "page_number", "page_param": "page", "base_page": 1,
                          "total_path": None, "stop_after_empty_page": True},
        },
        "resources": [{
            "name": "items",
            "endpoint": {"path": "items", "data_selector": "data",
                         "params": {"domainCode": "10USA", "sort": "lastModifiedDate,asc", "pageSize": 1000}},
        }],
    })
    pipeline = dlt.pipeline(pipeline_name=f"bench_items_{loader}", destination="duckdb",
                            dataset_name="qad", pipelines_dir=pipelines_dir)
    kwargs = {"loader_file_format": "jsonl"} if loader == "jsonl" else {}
    pipeline.run(source, write_disposition="replace", **kwargs)
    with pipeline.sql_client() as client:
        rows = client.execute_sql("select count(*) from items")
    return int(rows[0][0])


if __name__ == "__main__":
    print(json.dumps({"records": main(sys.argv[1], sys.argv[2], sys.argv[3])}))
