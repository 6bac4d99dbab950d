"""Bulk extract jobs for leads and activities (facts §2.6): create, enqueue, status, file, cancel, list.

A job moves Created -> Queued -> Processing -> Completed, each step no sooner than ``bulk_status_seconds`` of the
sandbox clock after the last one; at most 2 jobs process at once and 10 are queued (processing included). The
file is written when the job completes (a snapshot at that moment) and charged to the daily export bytes
(``bulk_daily_bytes``, reset at midnight US Central). Jobs are seen only by the API client that created them.
Jobs advance lazily: every bulk call first plays the queue forward to the clock's now.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from ml_connector.sandbox.marketo import envelope
from ml_connector.sandbox.marketo.activities import Activity, activity_log, parse_datetime
from ml_connector.sandbox.marketo.envelope import Refusal
from ml_connector.sandbox.marketo.limits import quota_day
from ml_connector.sandbox.marketo.store import SCHEMAS, iso

CONFIG_DEFAULTS: dict[str, Any] = {
    "bulk_daily_bytes": 500_000_000,
    "bulk_status_seconds": 60,  # a job's status moves at most this often (facts: "updates at most every 60 s")
    "bulk_max_processing": 2,
    "bulk_max_queued": 10,  # queued + processing
    "bulk_max_days": 31,  # longest createdAt/updatedAt range
    "bulk_updated_at_filter": True,  # False: a subscription without the updatedAt filter (1035)
    "bulk_retention_days": 7,  # files kept, jobs listed
}
FORMATS = {"CSV": ",", "TSV": "\t", "SSV": " "}
LEAD_FILTERS = ("createdAt", "updatedAt", "staticListId", "staticListName", "smartListId", "smartListName")
ACTIVITY_FIELDS = ("marketoGUID", "leadId", "activityDate", "activityTypeId", "campaignId",
                   "primaryAttributeValueId", "primaryAttributeValue", "attributes")
ACTIVITY_FILTERS = ("createdAt", "activityTypeIds", "primaryAttributeValueIds", "primaryAttributeValues")
KINDS = ("leads", "activities")
ACTIVE = ("Queued", "Processing")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass
class Job:
    id: str
    kind: str  # leads | activities
    owner: str  # the client id that created it
    fields: list[str]
    format: str
    headers: dict[str, str]
    filter: dict[str, Any]
    created: float
    status: str = "Created"
    queued: float | None = None
    started: float | None = None
    finished: float | None = None
    moved: float = 0.0  # when the status last changed
    turn: int = 0  # place in the queue (first in, first out)
    content: bytes = b""
    records: int | None = None
    error: str | None = None

    def body(self) -> dict[str, Any]:
        done = self.status == "Completed"
        out: dict[str, Any] = {"exportId": self.id, "format": self.format, "status": self.status,
                               "createdAt": iso(self.created)}
        for key, at in (("queuedAt", self.queued), ("startedAt", self.started), ("finishedAt", self.finished)):
            if at is not None:
                out[key] = iso(at)
        if done:
            out["numberOfRecords"] = self.records
            out["fileSize"] = len(self.content)
            out["fileChecksum"] = hashlib.sha256(self.content).hexdigest()
        if self.error is not None:
            out["errorMsg"] = self.error
        return out


@dataclass
class BulkJobs:
    """Every export job of the sandbox, with the shared queue and the daily export bytes."""

    sandbox: Any
    jobs: dict[str, Job] = field(default_factory=dict)
    exported: Counter[str] = field(default_factory=Counter)  # bytes per quota day
    last_event: float = 0.0
    turns: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = self.sandbox.config
        return config

    def _cfg(self, key: str) -> Any:
        return self.config.get(key, CONFIG_DEFAULTS[key])

    # -- the queue ------------------------------------------------------------------------------------------
    def advance(self) -> None:
        """Play the queue forward to now: each move in time order, never sooner than a status step apart."""
        now = self.sandbox.clock()
        step = float(self._cfg("bulk_status_seconds"))
        with self.lock:
            while True:
                processing = [j for j in self.jobs.values() if j.status == "Processing"]
                queued = sorted((j for j in self.jobs.values() if j.status == "Queued"),
                                key=lambda j: j.turn)
                moves: list[tuple[float, int, Job]] = [(j.moved + step, 0, j) for j in processing]
                if queued and len(processing) < int(self._cfg("bulk_max_processing")):
                    first = queued[0]
                    moves.append((max(first.moved + step, self.last_event), 1, first))
                if not moves:
                    return
                at, kind, job = min(moves, key=lambda m: (m[0], m[1]))
                if at > now:
                    return
                self.last_event = max(self.last_event, at)
                if kind == 0:
                    self._complete(job, at)
                else:
                    job.status, job.started, job.moved = "Processing", at, at

    def _complete(self, job: Job, at: float) -> None:
        job.content = self._render(job)
        job.status, job.finished, job.moved = "Completed", at, at
        self.exported[quota_day(at)] += len(job.content)

    # -- files ----------------------------------------------------------------------------------------------
    def _render(self, job: Job) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, delimiter=FORMATS[job.format], lineterminator="\n")
        writer.writerow([job.headers.get(name, name) for name in job.fields])
        count = 0
        for row in self._rows(job):
            writer.writerow([_cell(row.get(name)) for name in job.fields])
            count += 1
        job.records = count
        return out.getvalue().encode()

    def _rows(self, job: Job) -> list[dict[str, Any]]:
        if job.kind == "leads":
            name, window = next(iter(job.filter.items()))
            start, end = _window(window)
            rows = []
            for lead in self.sandbox.store.records("leads"):
                moment = parse_datetime(str(lead.get(name) or ""))
                if moment is not None and start <= moment <= end:
                    rows.append(lead)
            return rows
        start, end = _window(job.filter["createdAt"])
        types = set(job.filter.get("activityTypeIds") or ())
        ids = set(job.filter.get("primaryAttributeValueIds") or ())
        values = set(job.filter.get("primaryAttributeValues") or ())
        log = activity_log(self.sandbox)
        with log.lock:
            index = log.after((start, -1))
            chosen: list[Activity] = []
            while index < len(log.items) and log.items[index].at <= end:
                activity = log.items[index]
                index += 1
                if ((not types or activity.type_id in types) and (not ids or activity.primary_id in ids)
                        and (not values or activity.primary_value in values)):
                    chosen.append(activity)
        return [_activity_row(a) for a in chosen]

    # -- requests -------------------------------------------------------------------------------------------
    def create(self, kind: str, owner: str, body: Any) -> Job:
        if not isinstance(body, dict):
            raise Refusal("609")
        fmt = body.get("format", "CSV")
        if fmt not in FORMATS:
            raise Refusal("1003", f"Invalid format: {fmt}")
        fields = body.get("fields")
        allowed = _lead_fields() if kind == "leads" else ACTIVITY_FIELDS
        if fields is None and kind == "activities":
            fields = list(ACTIVITY_FIELDS)
        if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
            raise Refusal("701", "fields cannot be blank")
        unknown = [f for f in fields if f not in allowed]
        if unknown:
            raise Refusal("1006", f"Field '{unknown[0]}' not found")
        headers = body.get("columnHeaderNames") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise Refusal("1003", "Invalid columnHeaderNames")
        query = self._filter(kind, body.get("filter"))
        with self.lock:
            now = self.sandbox.clock()
            job = Job(str(uuid.uuid4()), kind, owner, list(fields), fmt, dict(headers), query, now, moved=now)
            self.jobs[job.id] = job
            return job

    def _filter(self, kind: str, query: Any) -> dict[str, Any]:
        if not isinstance(query, dict) or not query:
            raise Refusal("701", "filter cannot be blank")
        if kind == "leads":
            if len(query) != 1:
                raise Refusal("1003", "Exactly one filter type is allowed")
            name, value = next(iter(query.items()))
            if name not in LEAD_FILTERS:
                raise Refusal("1035", f"Unsupported filter type for target subscription: {name}")
            if name == "updatedAt" and not self._cfg("bulk_updated_at_filter"):
                raise Refusal("1035", "Unsupported filter type for target subscription: updatedAt")
            if name in ("createdAt", "updatedAt"):
                self._check_window(name, value)
                return {name: dict(value)}
            # the sandbox has no static or smart lists: every list named is unknown
            raise Refusal("1003", f"{name} {value} not found")
        unknown = sorted(set(query) - set(ACTIVITY_FILTERS))
        if unknown:
            raise Refusal("1003", f"Invalid filter: {unknown[0]}")
        if "createdAt" not in query:
            raise Refusal("701", "createdAt cannot be blank")
        self._check_window("createdAt", query["createdAt"])
        for name in ("activityTypeIds", "primaryAttributeValueIds"):
            value = query.get(name)
            if value is not None and (not isinstance(value, list)
                                      or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
                raise Refusal("1003", f"Invalid {name}")
        return dict(query)

    def _check_window(self, name: str, value: Any) -> None:
        if not isinstance(value, dict) or "startAt" not in value or "endAt" not in value:
            raise Refusal("1003", f"{name} requires startAt and endAt")
        start = parse_datetime(str(value["startAt"]))
        end = parse_datetime(str(value["endAt"]))
        if start is None or end is None:
            raise Refusal("1003", f"Invalid date in {name}")
        if end < start:
            raise Refusal("1003", f"{name}.endAt is before startAt")
        if end - start > float(self._cfg("bulk_max_days")) * 86_400:
            raise Refusal("1003", f"Date range exceeds {self._cfg('bulk_max_days')} days")

    def find(self, kind: str, owner: str, export_id: str) -> Job:
        self.advance()
        job = self.jobs.get(export_id)
        if job is None or job.kind != kind or job.owner != owner:  # another client's job does not exist for you
            raise Refusal("1003", f"Export id {export_id} not found")
        return job

    def enqueue(self, job: Job) -> Job:
        with self.lock:
            now = self.sandbox.clock()
            if job.status != "Created":
                raise Refusal("1029", "Export job already queued" if job.status in ACTIVE
                              else f"Export job is {job.status}")
            if self.exported[quota_day(now)] >= int(self._cfg("bulk_daily_bytes")):
                raise Refusal("1029", "Export daily quota exceeded")
            active = sum(1 for j in self.jobs.values() if j.status in ACTIVE)
            if active >= int(self._cfg("bulk_max_queued")):
                raise Refusal("1029", f"Too many jobs ({active}) in queue")
            self.turns += 1
            job.status, job.queued, job.moved, job.turn = "Queued", now, now, self.turns
            return job

    def cancel(self, job: Job) -> Job:
        with self.lock:
            if job.status in ("Completed", "Failed", "Canceled"):
                raise Refusal("1003", f"Export job is {job.status}")
            now = self.sandbox.clock()
            job.status, job.moved = "Canceled", now
            return job

    def listed(self, kind: str, owner: str, statuses: set[str] | None) -> list[Job]:
        self.advance()
        horizon = self.sandbox.clock() - float(self._cfg("bulk_retention_days")) * 86_400
        return [j for j in self.jobs.values() if j.kind == kind and j.owner == owner and j.created >= horizon
                and (statuses is None or j.status in statuses)]


def _lead_fields() -> set[str]:
    return {f.name for f in SCHEMAS["leads"].fields}


def _window(value: dict[str, Any]) -> tuple[float, float]:
    return parse_datetime(str(value["startAt"])) or 0.0, parse_datetime(str(value["endAt"])) or 0.0


def _cell(value: Any) -> str:
    """Bulk files write an empty value as ``null`` (UNCONFIRMED for every field type)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _activity_row(activity: Activity) -> dict[str, Any]:
    item = activity.item()
    return {"marketoGUID": item["marketoGUID"], "leadId": item["leadId"], "activityDate": item["activityDate"],
            "activityTypeId": item["activityTypeId"], "campaignId": None,
            "primaryAttributeValueId": item["primaryAttributeValueId"],
            "primaryAttributeValue": item["primaryAttributeValue"],
            "attributes": json.dumps({a["name"]: a["value"] for a in item["attributes"]}, separators=(",", ":"))}


def _owner(sandbox: Any, request: Request) -> str:
    """The API client (client id) whose token made the request: jobs are seen only by their creator."""
    return str(sandbox.identity.client_of(request))


def _file_response(job: Job, request: Request) -> Response:
    content = job.content
    wanted = request.headers.get("range")
    if not wanted:
        return Response(content, media_type="text/plain; charset=utf-8", headers={"Accept-Ranges": "bytes"})
    match = _RANGE.match(wanted.strip())
    size = len(content)
    if match is None or match.group(1) == match.group(2) == "":
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    first_text, last_text = match.groups()
    if first_text == "":  # the last N bytes
        first, last = max(0, size - int(last_text)), size - 1
    else:
        first, last = int(first_text), min(size - 1, int(last_text)) if last_text else size - 1
    if first >= size or last < first:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    return Response(content[first:last + 1], status_code=206, media_type="text/plain; charset=utf-8",
                    headers={"Content-Range": f"bytes {first}-{last}/{size}", "Accept-Ranges": "bytes"})


def bulk_jobs(sandbox: Any) -> BulkJobs:
    existing = getattr(sandbox, "bulk_jobs", None)
    if isinstance(existing, BulkJobs):
        return existing
    jobs = BulkJobs(sandbox)
    sandbox.bulk_jobs = jobs
    return jobs


def routes(sandbox: Any) -> list[BaseRoute]:
    """``/bulk/v1/{leads|activities}/export/...``; app.py puts them behind the token check and the limits."""
    for key, value in CONFIG_DEFAULTS.items():  # tunable through PATCH /_admin/config
        sandbox.config.setdefault(key, value)
    jobs = bulk_jobs(sandbox)
    out: list[BaseRoute] = []
    for kind in KINDS:
        out += _kind_routes(sandbox, jobs, kind)
    return out


def _kind_routes(sandbox: Any, jobs: BulkJobs, kind: str) -> list[BaseRoute]:
    base = f"/bulk/v1/{kind}/export"

    async def create(request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError as exc:
            raise Refusal("609") from exc
        job = jobs.create(kind, _owner(sandbox, request), body)
        return envelope.ok([job.body()])

    async def enqueue(request: Request) -> Response:
        job = jobs.find(kind, _owner(sandbox, request), request.path_params["export_id"])
        return envelope.ok([jobs.enqueue(job).body()])

    async def status(request: Request) -> Response:
        job = jobs.find(kind, _owner(sandbox, request), request.path_params["export_id"])
        return envelope.ok([job.body()])

    async def cancel(request: Request) -> Response:
        job = jobs.find(kind, _owner(sandbox, request), request.path_params["export_id"])
        return envelope.ok([jobs.cancel(job).body()])

    async def file(request: Request) -> Response:
        job = jobs.find(kind, _owner(sandbox, request), request.path_params["export_id"])
        retention = float(jobs._cfg("bulk_retention_days")) * 86_400
        if job.status != "Completed" or (job.finished or 0.0) + retention < sandbox.clock():
            return PlainTextResponse("Not Found", status_code=404)
        return _file_response(job, request)

    async def listing(request: Request) -> Response:
        text = ",".join(request.query_params.getlist("status"))
        statuses = {s.strip() for s in text.split(",") if s.strip()} or None
        return envelope.ok([j.body() for j in jobs.listed(kind, _owner(sandbox, request), statuses)])

    return [
        Route(f"{base}.json", listing, methods=["GET"]),
        Route(f"{base}/create.json", create, methods=["POST"]),
        Route(base + "/{export_id}/enqueue.json", enqueue, methods=["POST"]),
        Route(base + "/{export_id}/status.json", status, methods=["GET"]),
        Route(base + "/{export_id}/cancel.json", cancel, methods=["POST"]),
        Route(base + "/{export_id}/file.json", file, methods=["GET"]),
    ]
