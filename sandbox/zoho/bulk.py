"""Bulk Read jobs (`/crm/bulk/v8/read`, facts §5.1): a job is created, moves ADDED → QUEUED → IN PROGRESS →
COMPLETED by the sandbox clock (or ends in FAILURE when an admin says so), and its result is a ZIP holding one CSV.

The CSV is the snapshot of the matching records when the job is first seen past its completion time (a status
poll, a download, a tick): records created after the completion time are left out, so a poll that comes late sees
what the job would have seen. Criteria reuse COQL's checked criteria (same types, same comparisons).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import secrets
import zipfile
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ml_connector.sandbox.zoho.common import ApiError, Org, ZohoContext, iso, json_response, parse_iso, zoho_error
from ml_connector.sandbox.zoho.coql import And, Cond, CoqlError, Or, Path, Resolver, compile_where, module_scope
from ml_connector.sandbox.zoho.coql import _matches as matches
from ml_connector.sandbox.zoho.coql import _Row as Row

CONFIG_DEFAULTS: dict[str, Any] = {
    "bulk_state_seconds": 2.0,  # each of ADDED, QUEUED, IN PROGRESS lasts this long on the sandbox clock
    "bulk_per_page": 200_000,  # rows per result page (facts §5.1); lower it to test paging
    "bulk_max_page": 5,  # UNCONFIRMED: highest `page` without a page_token (PAGE_RANGE_EXCEEDED beyond)
    "bulk_retention_seconds": 86_400.0,  # UNCONFIRMED (facts §10): results expire (404) this long after completion
    "bulk_downloads_per_minute": 10,  # per org, else 429
    "bulk_page_token_seconds": 86_400.0,  # page tokens last 24 h
}
STATES = ("ADDED", "QUEUED", "IN PROGRESS")
UNSUPPORTED_MODULES = frozenset({"Notes", "Attachments", "Emails"})
COMPARATORS = {
    "equal": "=", "not_equal": "!=", "in": "in", "not_in": "not in", "less_than": "<", "less_equal": "<=",
    "greater_than": ">", "greater_equal": ">=", "between": "between", "not_between": "not between",
    "contains": "like", "not_contains": "not like", "starts_with": "like", "ends_with": "like",
}
EMPTY = "${EMPTY}"


def _error(code: str, message: str, details: dict[str, Any] | None = None, status: int = 400) -> ApiError:
    return ApiError(zoho_error(code, message, status, details))


@dataclass
class Job:
    """One Bulk Read job of one org."""

    id: str
    org: Org
    created: float
    query: dict[str, Any]  # as echoed in the status body
    module: str
    columns: list[Path]
    where: Any
    page: int
    signature: str  # what page tokens are bound to
    callback: str | None
    failure: dict[str, Any] | None = None
    finished: bool = False  # snapshot taken (or failed)
    notified: bool = False
    csv_text: str = ""
    count: int = 0
    more: bool = False
    next_token: str | None = None


@dataclass
class BulkJobs:
    """The jobs of every org, advanced by the sandbox clock."""

    ctx: ZohoContext
    jobs: dict[str, Job] = field(default_factory=dict)
    tokens: dict[str, tuple[str, str, int, float]] = field(default_factory=dict)  # token -> org, sig, page, expiry
    downloads: dict[str, deque[float]] = field(default_factory=dict)
    fail_next: dict[str, Any] | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def config(self) -> dict[str, Any]:
        return self.ctx.config

    def completes_at(self, job: Job) -> float:
        return job.created + len(STATES) * float(self.config["bulk_state_seconds"])

    def state(self, job: Job) -> str:
        now = self.ctx.clock()
        if now >= self.completes_at(job):
            return "FAILURE" if job.failure is not None else "COMPLETED"
        return STATES[int((now - job.created) // float(self.config["bulk_state_seconds"]))]

    # -- advancing --------------------------------------------------------------------------------------------
    def tick(self) -> list[tuple[str, dict[str, Any]]]:
        """Finish every job past its completion time; the callbacks now due (url, body), each sent once."""
        due: list[tuple[str, dict[str, Any]]] = []
        for job in list(self.jobs.values()):
            if self.state(job) in STATES:
                continue
            if not job.finished:
                self._finish(job)
            if job.callback and not job.notified:
                job.notified = True
                due.append((job.callback, self.status_body(job)))
        return due

    def tick_later(self) -> None:
        """Send due callbacks in the background: never inside the request that noticed them."""
        for url, body in self.tick():
            task = asyncio.get_running_loop().create_task(self._send(url, body))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def schedule(self, job: Job) -> None:
        """Wake up when the job should complete (real time), so a callback comes even if nobody polls."""
        async def wake() -> None:
            await asyncio.sleep(max(0.0, self.completes_at(job) - self.ctx.clock()) + 0.05)
            self.tick_later()

        task = asyncio.get_running_loop().create_task(wake())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send(self, url: str, body: dict[str, Any]) -> None:
        await self.ctx.deliver(url, body)

    def _finish(self, job: Job) -> None:
        job.finished = True
        if job.failure is not None:
            return
        cutoff = self.completes_at(job)
        store = self.ctx.store_for(job.org)
        cache: dict[tuple[str, str], dict[str, Any] | None] = {}
        per_page = int(self.config["bulk_per_page"])
        skip = (job.page - 1) * per_page
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([path.name for path in job.columns])
        matched = 0
        for record in store.records(job.module):
            created = record.get("Created_Time")
            if isinstance(created, str) and parse_iso(created) > cutoff:
                continue
            row = Row(record, store, cache)
            if job.where is not None and not matches(job.where, row):
                continue
            matched += 1
            if matched <= skip:
                continue
            if matched > skip + per_page:
                job.more = True
                break
            writer.writerow([_cell(path, row.raw(path)) for path in job.columns])
            job.count += 1
        job.csv_text = out.getvalue()
        if job.more:
            token = secrets.token_hex(16)
            expiry = self.ctx.clock() + float(self.config["bulk_page_token_seconds"])
            self.tokens[token] = (job.org.org_id, job.signature, job.page + 1, expiry)
            job.next_token = token

    # -- bodies -----------------------------------------------------------------------------------------------
    def status_body(self, job: Job) -> dict[str, Any]:
        state = self.state(job)
        detail: dict[str, Any] = {
            "id": job.id, "operation": "read", "state": state, "query": job.query,
            "created_by": {"id": job.org.user_id, "name": job.org.user_name},
            "created_time": iso(job.created), "file_type": "csv",
        }
        if state == "COMPLETED":
            detail["result"] = {
                "page": job.page, "per_page": int(self.config["bulk_per_page"]), "count": job.count,
                "download_url": f"/crm/bulk/v8/read/{job.id}/result", "more_records": job.more,
                "next_page_token": job.next_token,
            }
        elif state == "FAILURE":
            detail["result"] = {"error_message": job.failure}
        return {"data": [detail]}

    # -- creating ---------------------------------------------------------------------------------------------
    def create(self, org: Org, body: Any) -> Job:
        """A checked job (raises ApiError with the documented codes); the caller charges and answers."""
        if not isinstance(body, dict) or not isinstance(body.get("query"), dict):
            raise _error("MANDATORY_NOT_FOUND", "required field not found",
                         {"api_name": "query", "json_path": "$.query"})
        query = body["query"]
        callback = self._callback(body.get("callback"))
        module = (query.get("module") or {}).get("api_name") if isinstance(query.get("module"), dict) else None
        if not isinstance(module, str) or not module:
            raise _error("MANDATORY_NOT_FOUND", "required field not found",
                         {"api_name": "module", "json_path": "$.query.module"})
        store = self.ctx.store_for(org)
        definition = store.module(module) if store.has_module(module) else None
        if definition is None or module in UNSUPPORTED_MODULES or definition.generated_type == "subform":
            raise _error("MODULE_NOT_SUPPORTED", "the module given is not supported", {"api_name": module})
        resolver = Resolver(store)
        columns = self._columns(module, query.get("fields"), resolver, definition)
        where = self._criteria(module, query.get("criteria"), resolver)
        page, token = query.get("page"), query.get("page_token")
        signature = hashlib.sha256(json.dumps(
            [module, [c.name for c in columns], query.get("criteria")], sort_keys=True).encode()).hexdigest()
        if token is not None:
            if page not in (None, 1):
                raise _error("AMBIGUITY_DURING_PROCESSING", "page and page_token cannot be given together",
                             {"param_name": "page_token"})
            page = self._page_from_token(org, token, signature)
        else:
            page = 1 if page is None else page
            if not isinstance(page, int) or isinstance(page, bool) or page < 1:
                raise _error("INVALID_DATA", "invalid data", {"api_name": "page", "json_path": "$.query.page"})
            if page > int(self.config["bulk_max_page"]):
                raise _error("PAGE_RANGE_EXCEEDED", "page range exceeded",
                             {"max_limit": int(self.config["bulk_max_page"])})
        echo = {k: v for k, v in query.items() if k != "page_token"}
        echo["page"] = page
        job = Job(id=store.next_id(), org=org, created=self.ctx.clock(), query=echo, module=module,
                  columns=columns, where=where, page=page, signature=signature, callback=callback)
        if self.fail_next is not None:
            job.failure, self.fail_next = self.fail_next, None
        return job

    def _callback(self, callback: Any) -> str | None:
        if callback is None:
            return None
        url = callback.get("url") if isinstance(callback, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise _error("INVALID_CALLBACK_URL", "the callback url given is invalid", {"api_name": "url"})
        if str(callback.get("method", "post")).lower() != "post":
            raise _error("INVALID_CALLBACK_METHOD", "the callback method given is invalid", {"api_name": "method"})
        return url

    def _columns(self, module: str, fields: Any, resolver: Resolver, definition: Any) -> list[Path]:
        if fields in (None, []):
            names = [f["api_name"] for f in definition.fields if f.get("data_type") != "subform"]
        elif isinstance(fields, list) and all(isinstance(name, str) for name in fields):
            names = list(fields)
        else:
            raise _error("INVALID_DATA", "invalid data", {"api_name": "fields", "json_path": "$.query.fields"})
        columns: list[Path] = []
        for name in dict.fromkeys(["id", *names]):
            try:
                path = resolver.resolve(module, name)
            except CoqlError:
                raise _error("FIELD_NOT_AVAILABLE", "the field given is not available", {"api_name": name}) from None
            if len(path.hops) > 1:
                raise _error("FIELD_NOT_AVAILABLE", "the field given is not available", {"api_name": name})
            columns.append(path)
        return columns

    def _criteria(self, module: str, criteria: Any, resolver: Resolver) -> Any:
        if criteria is None:
            return None
        try:
            return compile_where(_to_cond(criteria), module, resolver)
        except CoqlError as exc:
            details = {k: v for k, v in exc.details.items() if k in {"column_name", "operator", "expected_data_type"}}
            raise _error("INVALID_CRITERIA", "invalid criteria given", details) from None

    def _page_from_token(self, org: Org, token: Any, signature: str) -> int:
        entry = self.tokens.get(token) if isinstance(token, str) else None
        if entry is None or entry[0] != org.org_id or entry[3] <= self.ctx.clock():
            raise _error("INVALID_DATA", "invalid data", {"api_name": "page_token", "json_path": "$.query.page_token"})
        if entry[1] != signature:
            raise _error("TOKEN_BOUND_DATA_MISMATCH", "the page_token does not match the query",
                         {"param_name": "page_token"})
        return entry[2]

    # -- downloading ------------------------------------------------------------------------------------------
    def download(self, org: Org, job_id: str) -> Response:
        job = self.jobs.get(job_id)
        now = self.ctx.clock()
        if job is None or job.org.org_id != org.org_id or self.state(job) != "COMPLETED" \
                or now >= self.completes_at(job) + float(self.config["bulk_retention_seconds"]):
            raise not_found()
        window = self.downloads.setdefault(org.org_id, deque())
        while window and window[0] <= now - 60:
            window.popleft()
        if len(window) >= int(self.config["bulk_downloads_per_minute"]):
            raise _error("TOO_MANY_REQUESTS", "the download limit per minute has been exceeded", {}, 429)
        window.append(now)
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
            zipped.writestr(f"{job.id}.csv", job.csv_text)
        return Response(archive.getvalue(), media_type="application/x-download",
                        headers={"content-disposition": f'attachment; filename="{job.id}.zip"'})


def not_found() -> ApiError:
    return _error("RESOURCE_NOT_FOUND", "the requested resource is not found", {"resource": "job_id"}, 404)


def _to_cond(criteria: Any) -> Any:
    """Bulk Read criteria as COQL criteria (raises CoqlError for what COQL would refuse too)."""
    if not isinstance(criteria, dict):
        raise CoqlError("INVALID_CRITERIA", "invalid criteria", {})
    if "group" in criteria:
        operator = str(criteria.get("group_operator", "")).lower()
        group = criteria["group"]
        if operator not in {"and", "or"} or not isinstance(group, list) or not group:
            raise CoqlError("INVALID_CRITERIA", "invalid criteria", {"operator": operator})
        items = tuple(_to_cond(item) for item in group)
        return And(items) if operator == "and" else Or(items)
    name = (criteria.get("field") or {}).get("api_name") if isinstance(criteria.get("field"), dict) else None
    comparator = criteria.get("comparator")
    value = criteria.get("value")
    if not isinstance(name, str) or comparator not in COMPARATORS:
        raise CoqlError("INVALID_CRITERIA", "invalid criteria", {"column_name": name, "operator": comparator})
    op = COMPARATORS[comparator]
    if value == EMPTY and comparator in {"equal", "not_equal"}:
        return Cond(name, "is null" if comparator == "equal" else "is not null", None)
    if op in {"in", "not in", "between", "not between"}:
        size = 2 if "between" in op else None
        if not isinstance(value, list) or not value or (size is not None and len(value) != size):
            raise CoqlError("INVALID_CRITERIA", "invalid criteria", {"column_name": name, "operator": comparator})
        return Cond(name, op, tuple(value))
    if isinstance(value, (list, dict)) or value is None:
        raise CoqlError("INVALID_CRITERIA", "invalid criteria", {"column_name": name, "operator": comparator})
    if op in {"like", "not like"}:
        text = str(value)
        pattern = {"contains": f"%{text}%", "not_contains": f"%{text}%", "starts_with": f"{text}%",
                   "ends_with": f"%{text}"}[comparator]
        return Cond(name, op, pattern)
    return Cond(name, op, value)


def _cell(path: Path, value: Any) -> str:
    """A CSV cell: lookups as their ids, booleans lower-case, lists joined with ``;``, empty as ""."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return str(value.get("id") or "")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(_cell(path, item) for item in value)
    return str(value)


def _api(handler: Any) -> Any:
    async def wrapped(request: Request) -> Response:
        try:
            response: Response = await handler(request)
            return response
        except ApiError as exc:
            return exc.response
    return wrapped


def _jobs(ctx: ZohoContext) -> BulkJobs:
    """One job book per context (routes and admin routes share it)."""
    book = getattr(ctx, "_bulk_jobs", None)
    if book is None:
        book = BulkJobs(ctx)
        ctx._bulk_jobs = book  # type: ignore[attr-defined]
        for key, value in CONFIG_DEFAULTS.items():
            ctx.config.setdefault(key, value)
    return book


def routes(ctx: ZohoContext) -> list[BaseRoute]:
    book = _jobs(ctx)

    @_api
    async def create(request: Request) -> Response:
        org = ctx.authorize(request, "ZohoCRM.bulk.read")
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise _error("MEDIA_TYPE_NOT_SUPPORTED", "the media type given is not supported", {}, 415)
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise _error("INVALID_DATA", "body is not a valid JSON") from None
        module = ((body.get("query") or {}).get("module") or {}) if isinstance(body, dict) else {}
        store = ctx.store_for(org)
        if isinstance(module, dict) and store.has_module(str(module.get("api_name"))):
            ctx.authorize(request, module_scope(store, str(module.get("api_name")), "READ"))
        job = book.create(org, body)
        async with ctx.slot(org):
            ctx.charge(org, 50)
        book.jobs[job.id] = job
        book.tick_later()
        book.schedule(job)
        return json_response({"data": [{"status": "success", "code": "ADDED_SUCCESSFULLY",
                                        "message": "Added successfully.", "details": {
                                            "id": job.id, "operation": "read", "state": "ADDED",
                                            "created_by": {"id": org.user_id, "name": org.user_name},
                                            "created_time": iso(job.created)}}], "info": {}}, 201)

    @_api
    async def status(request: Request) -> Response:
        org = ctx.authorize(request, "ZohoCRM.bulk.read")
        ctx.charge(org, 1)
        book.tick_later()
        job = book.jobs.get(request.path_params["job_id"])
        if job is None or job.org.org_id != org.org_id:
            raise not_found()
        return json_response(book.status_body(job))

    @_api
    async def result(request: Request) -> Response:
        org = ctx.authorize(request, "ZohoCRM.bulk.read")
        ctx.charge(org, 1)
        book.tick_later()
        return book.download(org, request.path_params["job_id"])

    return [
        Route("/crm/bulk/v8/read", create, methods=["POST"]),
        Route("/crm/bulk/v8/read/{job_id}", status, methods=["GET"]),
        Route("/crm/bulk/v8/read/{job_id}/result", result, methods=["GET"]),
    ]


def admin_routes(ctx: ZohoContext) -> list[BaseRoute]:
    """``POST /_admin/bulk/fail`` {job_id?, code, message, details?}: that job (or the next one created) ends in
    FAILURE; ``POST /_admin/bulk/tick``: finish due jobs and send their callbacks now (for tests)."""
    book = _jobs(ctx)

    async def fail(request: Request) -> Response:
        body = json.loads(await request.body() or b"{}")
        failure = {"status": "error", "code": str(body.get("code", "INTERNAL_ERROR")),
                   "message": str(body.get("message", "Internal Server Error")), "details": body.get("details", {})}
        job_id = body.get("job_id")
        if job_id is None:
            book.fail_next = failure
            return json_response({"next_job": failure})
        job = book.jobs.get(str(job_id))
        if job is None or job.finished:
            return json_response({"error": "no such job, or already finished"}, 404)
        job.failure = failure
        return json_response({"job_id": job.id, "failure": failure})

    async def tick(request: Request) -> Response:
        due = book.tick()
        for url, body in due:
            await ctx.deliver(url, body)
        return json_response({"delivered": len(due)})

    return [Route("/_admin/bulk/fail", fail, methods=["POST"]), Route("/_admin/bulk/tick", tick, methods=["POST"])]
