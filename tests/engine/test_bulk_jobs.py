"""Server-side bulk read jobs (`read.bulk`): create, poll, download (CSV, or CSV in a ZIP), rows as records, the
next job page, abort; and when a reader uses one (a full read) instead of paging the list endpoint."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml_connector.connection import Connection
from ml_connector.http.client import ConnectorClient
from ml_connector.http.errors import FatalError
from ml_connector.http.jobs import BulkRead
from ml_connector.http.reader import EntityReader
from ml_connector.http.waits import WaitTooLong
from ml_connector.report import run_table
from ml_connector.sandbox.core import ManualClock
from ml_connector.spec import load_specs
from ml_connector.spec.typed import typed_config
from ml_connector.store import State
from ml_connector.sync.flow import FlowContext, FlowRun, FlowSummary
from ml_connector.transform.mapping import CompiledMapping
from tests.engine import configs, flowkit
from tests.engine.fakeapi import FakeAPI
from tests.engine.flowkit import flow_spec
from tests.engine.test_client import API_KEY, BASE

CREATE_BODY = {"query": {"module": "Products", "fields": ["id", "Code", "Price", "Vendor", "Modified"]}}
BULK: dict[str, Any] = {
    "create": {"path": "/bulk/read", "body": CREATE_BODY, "id": "data[0].details.id"},
    "poll": {"path": "/bulk/read/{{ job.id }}", "state": "data[0].state", "done": ["COMPLETED"],
             "failed": ["FAILURE"], "error": "data[0].result.error_message.message", "interval": 10, "timeout": 60},
    "download": {"path": "/bulk/read/{{ job.id }}/result", "format": "csv_zip"},
    "next": {"more": "data[0].result.more_records", "token": "data[0].result.next_page_token",
             "into": "query.page_token"},
    "rows": {"columns": {"Vendor": "Vendor.id"}},
}
FIELDS = {"id": {"type": "string"}, "Code": {"type": "string"}, "Price": {"type": "number"},
          "Stock": {"type": "integer"}, "Active": {"type": "boolean"}, "Modified": {"type": "datetime"},
          "Vendor": {"type": "object", "fields": {"id": {"type": "string"}}}}
HEADER = "id,Code,Price,Vendor,Modified\n"


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")


def zipped(members: dict[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def created(job: str) -> dict[str, Any]:
    return {"data": [{"status": "success", "details": {"id": job, "state": "ADDED"}}]}


def status(job: str, state: str, *, more: bool = False, token: str | None = None,
           error: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"download_url": f"/v2/bulk/read/{job}/result", "more_records": more,
                              "next_page_token": token}
    if error is not None:
        result = {"error_message": {"code": "INTERNAL", "message": error}}
    return {"data": [{"id": job, "state": state, "result": result}]}


class Harness:
    """A bulk read over a scripted API, with a manual clock and a sleep that only records."""

    def __init__(self, api: FakeAPI, bulk: dict[str, Any] | None = None, *,
                 read: dict[str, Any] | None = None, fields: dict[str, Any] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        self.clock = ManualClock(1_000_000.0)
        self.sleeps: list[float] = []
        entity: dict[str, Any] = {"key": "id", "fields": fields or FIELDS,
                                  "read": {"path": "/things", **(read or {}), "bulk": bulk or BULK}}
        spec = {**API_KEY, **(extra or {}), "entities": {"thing": entity}}
        config = configs.connector({"connector": "fake", "base_url": BASE + "/v2", "retries": 3, **spec})
        connection = Connection("fake", config, {}, {"key": "env:FAKE_KEY"}, None)
        self.client = ConnectorClient(connection, State(":memory:").credentials,
                                      transport=httpx.ASGITransport(app=api.app), sleep=self.sleep, clock=self.clock)
        self.config = self.client.connection.connector.entities["thing"]

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(seconds)

    def job(self) -> BulkRead:
        assert self.config.read is not None and self.config.read.bulk is not None
        return BulkRead(self.client, "fake.thing", self.config.read.bulk, self.config.fields,
                        sleep=self.sleep, clock=self.clock)

    def read(self, since: str | None = None) -> list[list[dict[str, Any]]]:
        async def go() -> list[list[dict[str, Any]]]:
            return [page async for page in self.job().pages(since=since)]

        return asyncio.run(go())


def log(api: FakeAPI) -> list[tuple[str, str, dict[str, str], Any]]:
    return [(c["method"], c["path"], c["params"], json.loads(c["body"]) if c["body"] else None)
            for c in api.calls()]


def flat(pages: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [record for page in pages for record in page]


def test_a_job_is_created_polled_until_done_downloaded_and_its_rows_become_records() -> None:
    csv = HEADER + "1,A-1,12.5,V9,2026-01-02T00:00:00Z\n2,A-2,,,2026-01-03T00:00:00Z\n"
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "ADDED")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "IN PROGRESS")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "COMPLETED")) \
                   .on("GET", "/v2/bulk/read/J1/result", 200, zipped({"J1.csv": csv}),
                       {"content-type": "application/x-download"})
    harness = Harness(api)
    assert flat(harness.read()) == [
        {"id": "1", "Code": "A-1", "Price": 12.5, "Vendor": {"id": "V9"}, "Modified": "2026-01-02T00:00:00Z"},
        {"id": "2", "Code": "A-2", "Price": None, "Vendor": None, "Modified": "2026-01-03T00:00:00Z"},
    ]
    assert log(api) == [("POST", "/v2/bulk/read", {}, CREATE_BODY),
                        ("GET", "/v2/bulk/read/J1", {}, None), ("GET", "/v2/bulk/read/J1", {}, None),
                        ("GET", "/v2/bulk/read/J1", {}, None), ("GET", "/v2/bulk/read/J1/result", {}, None)]
    assert harness.sleeps == [10, 10]  # the poll interval, twice; nothing really slept
    assert (harness.client.stats.reads, harness.client.stats.writes) == (5, 0)  # the create is a charged read


def test_more_records_start_the_next_job_with_the_token_in_its_body() -> None:
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")).on("POST", "/v2/bulk/read", 201, created("J2")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "COMPLETED", more=True, token="T2")) \
                   .on("GET", "/v2/bulk/read/J2", 200, status("J2", "COMPLETED")) \
                   .on("GET", "/v2/bulk/read/J1/result", 200, zipped({"J1.csv": HEADER + "1,A,1,V,t1\n"})) \
                   .on("GET", "/v2/bulk/read/J2/result", 200, zipped({"J2.csv": HEADER + "2,B,2,V,t2\n"}))
    harness = Harness(api)
    assert [r["id"] for r in flat(harness.read())] == ["1", "2"]
    second = {"query": {**CREATE_BODY["query"], "page_token": "T2"}}
    assert [(m, p, b) for m, p, _, b in log(api)] == [
        ("POST", "/v2/bulk/read", CREATE_BODY), ("GET", "/v2/bulk/read/J1", None),
        ("GET", "/v2/bulk/read/J1/result", None),
        ("POST", "/v2/bulk/read", second), ("GET", "/v2/bulk/read/J2", None),
        ("GET", "/v2/bulk/read/J2/result", None)]
    assert harness.sleeps == []  # done at the first poll


def test_more_records_without_a_token_is_an_error() -> None:
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "COMPLETED", more=True)) \
                   .on("GET", "/v2/bulk/read/J1/result", 200, zipped({"J1.csv": HEADER + "1,A,1,V,t1\n"}))
    with pytest.raises(FatalError, match="fake.thing: bulk job J1 has more records but no next token"):
        Harness(api).read()


def test_a_failed_job_is_an_error_with_its_message_never_zero_records() -> None:
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "QUEUED")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "FAILURE", error="field not available"))
    with pytest.raises(FatalError) as failure:
        Harness(api).read()
    assert str(failure.value) == "fake.thing: bulk job J1 ended FAILURE: field not available"


def test_a_create_answer_without_a_job_id_is_an_error() -> None:
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, {"data": [{"status": "success"}]})
    with pytest.raises(FatalError, match=r"fake.thing: the bulk job's create answer has no id at 'data\[0\]"):
        Harness(api).read()


def test_a_poll_answer_without_a_state_is_an_error_and_aborts_the_job() -> None:
    bulk = {**BULK, "abort": {"method": "DELETE", "path": "/bulk/read/{{ job.id }}"}}
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")) \
                   .on("GET", "/v2/bulk/read/J1", 200, {"data": []}) \
                   .on("DELETE", "/v2/bulk/read/J1", 204, None)
    with pytest.raises(FatalError, match=r"fake.thing: bulk job J1: the status answer has no state at"):
        Harness(api, bulk).read()
    assert [(m, p) for m, p, _, _ in log(api)][-1] == ("DELETE", "/v2/bulk/read/J1")


def test_a_job_that_outlasts_the_poll_timeout_is_aborted_and_fails() -> None:
    bulk = {**BULK, "abort": {"method": "PATCH", "path": "/bulk/read/{{ job.id }}", "body": {"state": "Aborted"}}}
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "IN PROGRESS")) \
                   .on("PATCH", "/v2/bulk/read/J1", 200, {"state": "Aborted"})
    harness = Harness(api, bulk)
    with pytest.raises(FatalError) as failure:
        harness.read()
    assert str(failure.value) == "fake.thing: bulk job J1 not done after 60 s (read.bulk.poll.timeout); aborted"
    assert harness.sleeps == [10] * 6
    assert [(m, p, b) for m, p, _, b in log(api)] == [("POST", "/v2/bulk/read", CREATE_BODY)] + \
        [("GET", "/v2/bulk/read/J1", None)] * 7 + [("PATCH", "/v2/bulk/read/J1", {"state": "Aborted"})]


def test_a_cancelled_read_aborts_its_job() -> None:
    bulk = {**BULK, "abort": {"method": "DELETE", "path": "/bulk/read/{{ job.id }}"}}
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "IN PROGRESS")) \
                   .on("DELETE", "/v2/bulk/read/J1", 204, None)
    harness = Harness(api, bulk)

    async def interrupted(seconds: float) -> None:
        raise asyncio.CancelledError

    async def go() -> None:
        job = harness.job()
        job.sleep = interrupted
        async for _ in job.pages():
            pass

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(go())
    assert [(m, p) for m, p, _, _ in log(api)] == [("POST", "/v2/bulk/read"), ("GET", "/v2/bulk/read/J1"),
                                                   ("DELETE", "/v2/bulk/read/J1")]


def test_a_zip_with_more_members_than_allowed_is_refused() -> None:
    bulk = {**BULK, "download": {**BULK["download"], "max_members": 2}}
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "COMPLETED")) \
                   .on("GET", "/v2/bulk/read/J1/result", 200, zipped({f"m{i}.csv": HEADER for i in range(3)}))
    with pytest.raises(FatalError) as failure:
        Harness(api, bulk).read()
    assert str(failure.value) == ("fake.thing: bulk job J1: the ZIP holds 3 members, more than 2 "
                                  "(read.bulk.download.max_members)")


def test_a_zip_bomb_is_refused_by_its_uncompressed_size() -> None:
    bomb = zipped({"J1.csv": HEADER + "1,A,1,V,t\n" * 100_000})  # 1 MB of text, a few kB zipped
    bulk = {**BULK, "download": {**BULK["download"], "max_bytes": 100_000}}
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "COMPLETED")) \
                   .on("GET", "/v2/bulk/read/J1/result", 200, bomb)
    assert len(bomb) < 100_000
    with pytest.raises(FatalError) as failure:
        Harness(api, bulk).read()
    assert str(failure.value) == ("fake.thing: bulk job J1: ZIP member 'J1.csv' is larger than 100000 bytes "
                                  "uncompressed (read.bulk.download.max_bytes)")


def test_a_member_that_lies_about_its_size_is_cut_off_while_reading() -> None:
    content = HEADER + "1,A,1,V,t\n" * 20_000
    data = bytearray(zipped({"J1.csv": content}))
    declared = len(content).to_bytes(4, "little")
    small = (100).to_bytes(4, "little")
    data = data.replace(declared, small)  # local header and central directory both claim 100 bytes
    bulk = {**BULK, "download": {**BULK["download"], "max_bytes": 50_000}}
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "COMPLETED")) \
                   .on("GET", "/v2/bulk/read/J1/result", 200, bytes(data))
    with pytest.raises(FatalError, match="fake.thing: bulk job J1: the file cannot be read as CSV \\(Bad CRC-32"):
        Harness(api, bulk).read()


def test_a_download_that_is_not_a_zip_is_an_error() -> None:
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "COMPLETED")) \
                   .on("GET", "/v2/bulk/read/J1/result", 200, {"status": "error", "message": "expired"})
    with pytest.raises(FatalError) as failure:
        Harness(api).read()
    assert str(failure.value) == ("fake.thing: bulk job J1: the download is not a file "
                                  "(content-type application/json): {\"status\":\"error\",\"message\":\"expired\"}")


def test_a_named_member_must_be_in_the_zip() -> None:
    bulk = {**BULK, "download": {**BULK["download"], "member": "{{ job.id }}.csv"}}
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "COMPLETED")) \
                   .on("GET", "/v2/bulk/read/J1/result", 200, zipped({"other.csv": HEADER, "J0.csv": HEADER}))
    with pytest.raises(FatalError) as failure:
        Harness(api, bulk).read()
    assert str(failure.value) == "fake.thing: bulk job J1: the ZIP has no member 'J1.csv' (it has J0.csv, other.csv)"


def test_without_a_member_name_a_zip_must_hold_exactly_one() -> None:
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "COMPLETED")) \
                   .on("GET", "/v2/bulk/read/J1/result", 200, zipped({"a.csv": HEADER, "b.csv": HEADER}))
    with pytest.raises(FatalError, match="the ZIP holds 2 members; name one in read.bulk.download.member"):
        Harness(api).read()


def test_a_row_with_more_values_than_the_header_is_an_error() -> None:
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "COMPLETED")) \
                   .on("GET", "/v2/bulk/read/J1/result", 200, zipped({"J1.csv": HEADER + "1,A,1,V,t,extra\n"}))
    with pytest.raises(FatalError) as failure:
        Harness(api).read()
    assert str(failure.value) == "fake.thing: bulk job J1: row 2 has 6 values for 5 columns"


def test_csv_result_pages_follow_a_locator_header_until_it_says_null() -> None:
    """A query job whose results come in pages: each answer names the next (a header), `null` at the end."""
    bulk = {"create": {"path": "/jobs/query", "body": {"operation": "query", "query": "SELECT Id, Name FROM T"},
                       "id": "id"},
            "poll": {"path": "/jobs/query/{{ job.id }}", "state": "state", "done": ["JobComplete"],
                     "failed": ["Failed", "Aborted"], "error": "errorMessage", "interval": 5, "timeout": 600},
            "download": {"path": "/jobs/query/{{ job.id }}/results", "params": {"maxRecords": 2},
                         "format": "csv", "next": {"header": "Sforce-Locator", "param": "locator",
                                                   "end": ["null"]}},
            "page_size": 2}
    api = FakeAPI().on("POST", "/v2/jobs/query", 200, {"id": "750A", "state": "UploadComplete"}) \
                   .on("GET", "/v2/jobs/query/750A", 200, {"id": "750A", "state": "InProgress"}) \
                   .on("GET", "/v2/jobs/query/750A", 200, {"id": "750A", "state": "JobComplete"}) \
                   .on("GET", "/v2/jobs/query/750A/results", 200, b"Id,Name\n1,a\n2,\n",
                       {"content-type": "text/csv", "Sforce-Locator": "L2"}) \
                   .on("GET", "/v2/jobs/query/750A/results", 200, b"Id,Name\n3,c\n",
                       {"content-type": "text/csv", "Sforce-Locator": "null"})
    harness = Harness(api, bulk, fields={"Id": {"type": "string"}})
    pages = harness.read()
    assert pages == [[{"Id": "1", "Name": "a"}, {"Id": "2", "Name": None}], [{"Id": "3", "Name": "c"}]]
    assert [(m, p, q) for m, p, q, _ in log(api)] == [
        ("POST", "/v2/jobs/query", {}), ("GET", "/v2/jobs/query/750A", {}), ("GET", "/v2/jobs/query/750A", {}),
        ("GET", "/v2/jobs/query/750A/results", {"maxRecords": "2"}),
        ("GET", "/v2/jobs/query/750A/results", {"maxRecords": "2", "locator": "L2"})]
    assert harness.sleeps == [5]


def test_rows_keep_empty_text_when_the_spec_says_so_and_nest_only_when_asked() -> None:
    bulk = {**BULK, "rows": {"empty": "keep", "nest": False}, "download": {**BULK["download"], "format": "csv"}}
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "COMPLETED")) \
                   .on("GET", "/v2/bulk/read/J1/result", 200, b"id,Vendor.id,Note\n1,,\n", {"content-type": "text/csv"})
    assert flat(Harness(api, bulk, fields={"id": {"type": "string"}}).read()) == \
        [{"id": "1", "Vendor.id": "", "Note": ""}]


def test_values_take_the_declared_field_types_and_a_bad_value_is_an_error() -> None:
    csv = b"id,Price,Stock,Active\n1,12.5,3,true\n2,7,,FALSE\n"
    bulk = {**BULK, "rows": {}, "download": {**BULK["download"], "format": "csv"}}
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "COMPLETED")) \
                   .on("GET", "/v2/bulk/read/J1/result", 200, csv, {"content-type": "text/csv"})
    assert flat(Harness(api, bulk).read()) == [{"id": "1", "Price": 12.5, "Stock": 3, "Active": True},
                                              {"id": "2", "Price": 7, "Stock": None, "Active": False}]
    api2 = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")) \
                    .on("GET", "/v2/bulk/read/J1", 200, status("J1", "COMPLETED")) \
                    .on("GET", "/v2/bulk/read/J1/result", 200, b"id,Stock\n1,many\n", {"content-type": "text/csv"})
    with pytest.raises(FatalError) as failure:
        Harness(api2, bulk).read()
    assert str(failure.value) == "fake.thing: bulk job J1: row 2: Stock 'many' is not an integer"


def test_a_column_that_is_both_a_value_and_an_object_is_an_error() -> None:
    bulk = {**BULK, "rows": {}, "download": {**BULK["download"], "format": "csv"}}
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "COMPLETED")) \
                   .on("GET", "/v2/bulk/read/J1/result", 200, b"id,Vendor,Vendor.name\n1,V1,Acme\n",
                       {"content-type": "text/csv"})
    with pytest.raises(FatalError, match="column 'Vendor.name' nests under 'Vendor', which is a value"):
        Harness(api, bulk, fields={"id": {"type": "string"}}).read()


def test_the_create_spends_the_named_quota_pool() -> None:
    """A job's create is charged like every request: a pool of one create per 100 s makes the second wait."""
    bulk = {**BULK, "create": {**BULK["create"], "quota": "bulk"}}
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")).on("POST", "/v2/bulk/read", 201, created("J2")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "COMPLETED", more=True, token="T2")) \
                   .on("GET", "/v2/bulk/read/J2", 200, status("J2", "COMPLETED")) \
                   .on("GET", "/v2/bulk/read/J1/result", 200, zipped({"J1.csv": HEADER})) \
                   .on("GET", "/v2/bulk/read/J2/result", 200, zipped({"J2.csv": HEADER}))
    harness = Harness(api, bulk, extra={"quotas": {"bulk": {"calls": 1, "window": 100}}})
    assert harness.read() == []
    assert [round(w) for w in harness.sleeps] == [100]


# --- when a reader uses the job ---------------------------------------------------------------------------------

def reader_pages(harness: Harness, since: str | None) -> tuple[list[dict[str, Any]], str]:
    reader = EntityReader(harness.client, "thing", harness.config)

    async def go() -> list[dict[str, Any]]:
        return [r async for page in reader.pages(since=since) for r in page]

    return asyncio.run(go()), reader.read_path


LIST_READ = {"records": "data", "incremental": {"param": "since", "field": "Modified"}}


def test_a_full_read_runs_the_job_and_an_incremental_read_pages_the_list() -> None:
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1"), {"date": "Fri, 02 Jan 2026 10:00:00 GMT"}) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "COMPLETED")) \
                   .on("GET", "/v2/bulk/read/J1/result", 200, zipped({"J1.csv": HEADER + "1,A,1,V,t1\n"})) \
                   .on("GET", "/v2/things", 200, {"data": [{"id": "2", "Modified": "t2"}]})
    harness = Harness(api, {**BULK, "when": "full"}, read=LIST_READ)
    records, path = reader_pages(harness, None)
    assert ([r["id"] for r in records], path) == (["1"], "bulk")
    records, path = reader_pages(harness, "2026-01-01T00:00:00Z")
    assert ([r["id"] for r in records], path) == (["2"], "list")
    assert api.calls("GET", "/v2/things")[0]["params"] == {"since": "2026-01-01T00:00:00Z"}


def test_the_server_date_of_a_bulk_read_is_the_create_answers() -> None:
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1"), {"date": "Fri, 02 Jan 2026 10:00:00 GMT"}) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "COMPLETED")) \
                   .on("GET", "/v2/bulk/read/J1/result", 200, zipped({"J1.csv": HEADER}))
    harness = Harness(api, BULK, read=LIST_READ)
    reader = EntityReader(harness.client, "thing", harness.config)

    async def go() -> None:
        async for _ in reader.pages():
            pass

    asyncio.run(go())
    assert reader.server_date == "Fri, 02 Jan 2026 10:00:00 GMT"


def test_always_runs_the_job_with_the_watermark_in_its_body() -> None:
    bulk = {**BULK, "when": "always",
            "create": {**BULK["create"], "body": {"query": {"module": "Products", "since": "{{ since }}"}}}}
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "COMPLETED")) \
                   .on("GET", "/v2/bulk/read/J1/result", 200, zipped({"J1.csv": HEADER}))
    harness = Harness(api, bulk, read={**LIST_READ, "incremental": {**LIST_READ["incremental"], "lookback": 60}})
    assert reader_pages(harness, "2026-01-01T00:01:00Z") == ([], "bulk")
    assert log(api)[0][3] == {"query": {"module": "Products", "since": "2026-01-01T00:00:00Z"}}


def test_a_flows_own_query_parameters_keep_the_list_read() -> None:
    """A bulk job does not take a flow's filter parameters: reading without them would read other records."""
    api = FakeAPI().on("GET", "/v2/things", 200, {"data": [{"id": "2", "Modified": "t2"}]})
    harness = Harness(api, BULK, read=LIST_READ)
    reader = EntityReader(harness.client, "thing", harness.config)
    from ml_connector.config import compile_expr

    async def go() -> list[Any]:
        return [r["id"] async for page in reader.pages(params=compile_expr("template", {"status": "active"}))
                for r in page]

    assert (asyncio.run(go()), reader.read_path) == (["2"], "list")
    assert api.calls()[0]["params"] == {"status": "active"}


# --- a flow whose source reads in bulk ---------------------------------------------------------------------------

def run_things(state: State, harness: Harness, target: FakeAPI, *, full: bool = False) -> FlowSummary:
    spec = flow_spec({"name": "Code"}, key="id")
    config = flowkit.mapping(spec)
    context = FlowContext(run_id="r1", state=state, source=harness.client, target=flowkit.client(target, "dst"),
                          source_entity=harness.config, target_entity=flowkit.TARGET,
                          mapping=CompiledMapping(config), known_flows={config.flow}, full=full,
                          now=lambda: flowkit.NOW)
    return asyncio.run(FlowRun(config, context).execute())


def test_a_flows_first_read_runs_the_job_and_the_watermark_stops_at_the_read_start() -> None:
    """The job has no sort: the watermark is the newest stamp seen, but never past when the read began (the
    create answer's Date, minus the lookback)."""
    csv = ("id,Code,Price,Vendor,Modified\n1,A,1,V,2026-03-01T11:00:00Z\n2,B,2,V,2026-03-01T11:59:30Z\n"
           "3,C,3,V,2026-02-01T00:00:00Z\n")
    source = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1"), {"date": "Sun, 01 Mar 2026 11:59:00 GMT"}) \
                      .on("GET", "/v2/bulk/read/J1", 200, status("J1", "COMPLETED")) \
                      .on("GET", "/v2/bulk/read/J1/result", 200, zipped({"J1.csv": csv})) \
                      .on("GET", "/v2/things", 200, {"data": []}, {"date": "Sun, 01 Mar 2026 12:10:00 GMT"})
    target = FakeAPI()
    for n in range(3):
        target.on("POST", "/v2/items", 200, {"data": {"id": 100 + n}})
    state = State(":memory:")
    harness = Harness(source, BULK, read={**LIST_READ, "incremental": {**LIST_READ["incremental"], "lookback": 60}})
    summary = run_things(state, harness, target)
    assert (summary.status, summary.read, summary.created, summary.read_path) == ("ok", 3, 3, "bulk")
    assert summary.as_dict()["read_path"] == "bulk"
    text = run_table({"run_id": "r1", "status": "ok", "flows": [summary.as_dict()]})
    assert "\n  things: read by a server-side bulk job (read.bulk)\n" in text
    assert state.watermarks.get("things") == "2026-03-01T11:58:00Z"  # 11:59:30 is after the read began (11:59)
    again = run_things(state, harness, FakeAPI())
    assert (again.status, again.read, again.read_path) == ("ok", 0, "list")
    assert source.calls("GET", "/v2/things")[0]["params"] == {"since": "2026-03-01T11:57:00Z"}


BULK_YAML = """\
connector: jobbed
base_url: https://api.example.com/crm
auth: {key: {type: api_key, header: x-key, value: "{{ secrets.key }}"}}
connection: {secrets: {key: {required: true}}}
quotas: {credits: {calls: 1000, window: 86400}}
entities:
  product:
    key: id
    updated: Modified_Time
    fields: {id: {type: string}, Unit_Price: {type: number}, Modified_Time: {type: datetime}}
    read:
      path: /v8/Products
      incremental: {param: modified_since, field: Modified_Time}
      bulk:
        when: full
        create:
          path: /bulk/v8/read
          quota: credits
          body: {query: {module: {api_name: Products}, fields: [id, Unit_Price, Modified_Time], page: 1}}
          id: data[0].details.id
        poll:
          path: "/bulk/v8/read/{{ job.id }}"
          state: data[0].state
          done: [COMPLETED]
          failed: [FAILURE]
          error: data[0].result.error_message.message
        download: {path: "/bulk/v8/read/{{ job.id }}/result", format: csv_zip, member: "{{ job.id }}.csv"}
        next: {more: "data[0].result.more_records", token: "data[0].result.next_page_token", into: query.page_token}
        abort: {method: DELETE, path: "/bulk/v8/read/{{ job.id }}"}
        rows: {columns: {Vendor_Name: Vendor_Name.id}}
"""


def test_a_bulk_read_spec_validates_with_its_defaults(tmp_path: Path) -> None:
    (tmp_path / "jobbed.yaml").write_text(BULK_YAML)
    project, problems = load_specs([tmp_path])
    assert problems == []
    read = typed_config(project.connectors["jobbed"]).entities["product"].read  # type: ignore[union-attr]
    assert read is not None and read.bulk is not None
    bulk = read.bulk
    assert (bulk.create.method, bulk.poll.method, bulk.poll.interval, bulk.poll.timeout) == ("POST", "GET", 30, 3600)
    assert (bulk.download.max_bytes, bulk.download.max_members, bulk.page_size) == (1 << 30, 16, 500)
    assert (bulk.rows.nest, bulk.rows.empty) == (True, "null")
    assert dict(bulk.rows.columns) == {"Vendor_Name": "Vendor_Name.id"}


def test_a_bulk_read_without_a_done_state_is_refused(tmp_path: Path) -> None:
    (tmp_path / "jobbed.yaml").write_text(BULK_YAML.replace("          done: [COMPLETED]\n", ""))
    _, problems = load_specs([tmp_path])
    assert [(p.field, p.message) for p in problems] == [
        ("entities.product.read.bulk.poll", "missing required key 'done'")]


def test_a_job_that_must_be_started_is_started_before_it_is_polled() -> None:
    """An export that is created, then queued by a second call, polled, and downloaded as plain CSV."""
    bulk = {"create": {"path": "/export/create.json", "id": "result[0].exportId",
                       "body": {"fields": ["id", "email"], "format": "CSV",
                                "filter": {"updatedAt": {"startAt": "{{ since }}"}}}},
            "start": {"method": "POST", "path": "/export/{{ job.id }}/enqueue.json"},
            "poll": {"path": "/export/{{ job.id }}/status.json", "state": "result[0].status", "done": ["Completed"],
                     "failed": ["Failed", "Cancelled"], "error": "result[0].errorMsg", "interval": 60},
            "download": {"path": "/export/{{ job.id }}/file.json"},
            "abort": {"method": "POST", "path": "/export/{{ job.id }}/cancel.json"},
            "when": "always"}
    api = FakeAPI().on("POST", "/v2/export/create.json", 200, {"result": [{"exportId": "E1", "status": "Created"}]}) \
                   .on("POST", "/v2/export/E1/enqueue.json", 200, {"result": [{"status": "Queued"}]}) \
                   .on("GET", "/v2/export/E1/status.json", 200, {"result": [{"status": "Processing"}]}) \
                   .on("GET", "/v2/export/E1/status.json", 200, {"result": [{"status": "Completed"}]}) \
                   .on("GET", "/v2/export/E1/file.json", 200, b"id,email\n7,a@example.com\n",
                       {"content-type": "text/csv"})
    harness = Harness(api, bulk, fields={"id": {"type": "integer"}})
    assert flat(harness.read(since="2026-01-01T00:00:00Z")) == [{"id": 7, "email": "a@example.com"}]
    assert [(m, p) for m, p, _, _ in log(api)] == [
        ("POST", "/v2/export/create.json"), ("POST", "/v2/export/E1/enqueue.json"),
        ("GET", "/v2/export/E1/status.json"), ("GET", "/v2/export/E1/status.json"), ("GET", "/v2/export/E1/file.json")]
    assert log(api)[0][3]["filter"] == {"updatedAt": {"startAt": "2026-01-01T00:00:00Z"}}
    assert harness.sleeps == [60]


def test_a_failed_start_aborts_the_created_job() -> None:
    bulk = {**BULK, "start": {"method": "POST", "path": "/bulk/read/{{ job.id }}/enqueue"},
            "abort": {"method": "POST", "path": "/bulk/read/{{ job.id }}/cancel"}}
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")) \
                   .on("POST", "/v2/bulk/read/J1/enqueue", 400, {"message": "queue full"}) \
                   .on("POST", "/v2/bulk/read/J1/cancel", 200, {})
    with pytest.raises(FatalError, match="queue full"):
        Harness(api, bulk).read()
    assert [(m, p) for m, p, _, _ in log(api)] == [("POST", "/v2/bulk/read"), ("POST", "/v2/bulk/read/J1/enqueue"),
                                                   ("POST", "/v2/bulk/read/J1/cancel")]


# --- against the Zoho sandbox's Bulk Read (shapes as the vendor sends them) ----------------------------------------

def test_a_bulk_read_of_the_crm_sandbox_pages_through_jobs_and_matches_its_records() -> None:
    from starlette.applications import Starlette

    from ml_connector.sandbox.zoho import bulk as sandbox_bulk
    from tests.sandbox.test_zoho_coql import FakeCtx, seeded

    store, ids = seeded()
    ctx = FakeCtx(store)
    ctx.config["bulk_per_page"] = 3
    clock = store.clock
    assert isinstance(clock, ManualClock)
    app = Starlette(routes=sandbox_bulk.routes(ctx))  # type: ignore[arg-type]
    spec = {"connector": "crm", "base_url": "https://www.zohoapis.com/crm", "retries": 0,
            "auth": {"token": {"type": "api_key", "header": "authorization", "value": "Zoho-oauthtoken good"}},
            "entities": {"product": {
                "key": "id",
                "fields": {"id": {"type": "string"}, "Product_Code": {"type": "string"},
                           "Unit_Price": {"type": "number"},
                           "Vendor_Name": {"type": "object", "fields": {"id": {"type": "string"},
                                                                        "name": {"type": "string"}}}},
                "read": {"path": "/v8/Products", "bulk": {
                    "create": {"path": "/bulk/v8/read", "id": "data[0].details.id",
                               "body": {"query": {"module": {"api_name": "Products"}, "page": 1,
                                                  "fields": ["Product_Code", "Unit_Price", "Vendor_Name",
                                                             "Vendor_Name.Vendor_Name"]}}},
                    "poll": {"path": "/bulk/v8/read/{{ job.id }}", "state": "data[0].state", "done": ["COMPLETED"],
                             "failed": ["FAILURE"], "error": "data[0].result.error_message.message", "interval": 2},
                    "download": {"path": "/bulk/v8/read/{{ job.id }}/result", "format": "csv_zip",
                                 "member": "{{ job.id }}.csv"},
                    "next": {"more": "data[0].result.more_records", "token": "data[0].result.next_page_token",
                             "into": "query.page_token"},
                    "rows": {"columns": {"Vendor_Name": "Vendor_Name.id",
                                         "Vendor_Name.Vendor_Name": "Vendor_Name.name"}}}}}}}
    connection = Connection("crm", configs.connector(spec), {}, {}, None)

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    client = ConnectorClient(connection, State(":memory:").credentials, transport=httpx.ASGITransport(app=app),
                             sleep=sleep, clock=clock)
    reader = EntityReader(client, "product", connection.connector.entities["product"])

    async def go() -> list[dict[str, Any]]:
        return [r async for page in reader.pages() for r in page]

    records = asyncio.run(go())
    assert reader.read_path == "bulk"
    assert [(r["Product_Code"], r["Unit_Price"], r["Vendor_Name"]) for r in records] == [
        ("SKU-1", 10, {"id": ids["Acme Supply"], "name": "Acme Supply"}),
        ("SKU-2", 25.5, {"id": ids["Bolt Works"], "name": "Bolt Works"}),
        ("XSKU-3", 99, None),  # an empty lookup is null, as the list read gives it
        ("SKU-4", 5, {"id": ids["Acme Supply"], "name": "Acme Supply"})]
    assert ctx.charged.count(50) == 2  # two jobs (3 + 1 rows), 50 credits each


def test_a_sample_read_never_starts_a_job() -> None:
    """A preview or a discover reads a few records: paging the list, not a job that costs credits and minutes."""
    api = FakeAPI().on("GET", "/v2/things", 200, {"data": [{"id": "1", "Modified": "t1"}]})
    harness = Harness(api, BULK, read=LIST_READ)
    reader = EntityReader(harness.client, "thing", harness.config)

    async def go() -> list[Any]:
        return [r["id"] async for page in reader.pages(bulk=False) for r in page]

    assert (asyncio.run(go()), reader.read_path) == (["1"], "list")


def test_a_rate_limited_download_waits_as_the_api_says_then_succeeds() -> None:
    rules = {"responses": [{"when": {"status": 429}, "do": "rate_limited",
                            "wait": {"header": "retry-after", "unit": "seconds"}}]}
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "COMPLETED")) \
                   .on("GET", "/v2/bulk/read/J1/result", 429, {"code": "TOO_MANY_REQUESTS"}, {"retry-after": "40"}) \
                   .on("GET", "/v2/bulk/read/J1/result", 429, {"code": "TOO_MANY_REQUESTS"}, {"retry-after": "40"}) \
                   .on("GET", "/v2/bulk/read/J1/result", 429, {"code": "TOO_MANY_REQUESTS"}, {"retry-after": "40"}) \
                   .on("GET", "/v2/bulk/read/J1/result", 429, {"code": "TOO_MANY_REQUESTS"}, {"retry-after": "40"}) \
                   .on("GET", "/v2/bulk/read/J1/result", 200, zipped({"J1.csv": HEADER + "1,A,1,V,t\n"}))
    harness = Harness(api, extra=rules)
    assert [r["id"] for r in flat(harness.read())] == ["1"]  # more 429s than `retries` (3): a rate limit is no failure
    assert [round(w) for w in harness.sleeps] == [40, 40, 40, 40]
    assert harness.client.stats.rate_limited == 4


def test_a_download_wait_beyond_max_wait_stops_the_read() -> None:
    rules = {"responses": [{"when": {"status": 429}, "do": "rate_limited",
                            "wait": {"header": "retry-after", "unit": "seconds"}}]}
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "COMPLETED")) \
                   .on("GET", "/v2/bulk/read/J1/result", 429, {"code": "TOO_MANY_REQUESTS"}, {"retry-after": "3600"})
    with pytest.raises(WaitTooLong):
        Harness(api, extra=rules).read()


def test_a_large_csv_is_read_in_pages_from_a_spooled_file() -> None:
    rows = "".join(f"{n},CODE-{n:06d},{n}.5,V{n % 7},2026-01-01T00:00:00Z\n" for n in range(30_000))
    assert len(rows) > 1 << 20  # past what the spool keeps in memory
    bulk = {**BULK, "download": {**BULK["download"], "format": "csv"}}
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "COMPLETED")) \
                   .on("GET", "/v2/bulk/read/J1/result", 200, (HEADER + rows).encode(), {"content-type": "text/csv"})
    pages = Harness(api, bulk).read()
    assert [len(p) for p in pages] == [500] * 60
    assert pages[-1][-1] == {"id": "29999", "Code": "CODE-029999", "Price": 29999.5, "Vendor": {"id": "V4"},
                             "Modified": "2026-01-01T00:00:00Z"}


def test_a_read_cancelled_from_outside_aborts_its_job_before_it_ends() -> None:
    """SIGINT cancels the run's task while it waits between polls: the abort still goes out."""
    bulk = {**BULK, "abort": {"method": "DELETE", "path": "/bulk/read/{{ job.id }}"}}
    api = FakeAPI().on("POST", "/v2/bulk/read", 201, created("J1")) \
                   .on("GET", "/v2/bulk/read/J1", 200, status("J1", "IN PROGRESS")) \
                   .on("DELETE", "/v2/bulk/read/J1", 204, None)
    harness = Harness(api, bulk)

    async def go() -> None:
        waiting = asyncio.Event()

        async def forever(seconds: float) -> None:
            waiting.set()
            await asyncio.Event().wait()

        job = harness.job()
        job.sleep = forever

        async def read() -> None:
            async for _ in job.pages():
                pass

        task = asyncio.create_task(read())
        await waiting.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert [(m, p) for m, p, _, _ in log(api)] == [("POST", "/v2/bulk/read"), ("GET", "/v2/bulk/read/J1"),
                                                   ("DELETE", "/v2/bulk/read/J1")]
