"""Server-side bulk read jobs, as one declarative component: create, poll, download, abort (`read.bulk`).

An API that can export a whole entity as a file reads it in a few calls where paging its list endpoint takes
thousands: the job is created (a templated body), its status polled every `interval` seconds until a done state
(bounded by `timeout`), and its result file downloaded (CSV, or CSV in a ZIP; bounded, streamed row by row). A job
holding only part of the records names the next page (`next.more`, `next.token`), read by a new job; a job whose
results come in pages names the next one in a header (`download.next`). A job the read gives up on (a timeout, a
bad answer, an interruption) is aborted when the spec says how. A failed job or an answer that is not what the spec
says is an error, never "zero records".

Every request goes through the connection's client, so it is authenticated, paced and charged to its quota pool
like any other; the create may name its own pool (`create.quota`), as a job often costs many credits.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from ml_connector.config.entity import BulkReadConfig, FieldDeclConfig, JobRequestConfig
from ml_connector.http.client import ConnectorClient, Reply
from ml_connector.http.errors import FatalError, RecordError
from ml_connector.http.job_files import NotAFile, download
from ml_connector.http.job_rows import BadFile, RowShaper, csv_rows, csv_text
from ml_connector.http.job_windows import date_windows
from ml_connector.http.redact import REDACTOR

log = logging.getLogger("ml_connector.http")
Sleep = Callable[[float], Awaitable[None]]


class JobFailed(FatalError):
    """The API reports the job failed (or was aborted by someone else)."""


class BulkRead:
    """One bulk read of an entity: as many jobs as its pages need, each created, polled, downloaded."""

    def __init__(self, client: ConnectorClient, where: str, config: BulkReadConfig,
                 fields: Mapping[str, FieldDeclConfig] | None, *, sleep: Sleep | None = None,
                 clock: Callable[[], float] = time.monotonic, now: Callable[[], float] = time.time) -> None:
        """``where``: `connection.entity`, for messages; ``fields``: the entity's declared fields (value types);
        ``sleep`` and ``clock`` (for the poll interval and timeout) and ``now`` (the end of the last date window)
        are injectable for tests."""
        self.client = client
        self.where = where
        self.config = config
        self.fields = fields
        self.sleep: Sleep = sleep or client._sleep
        self.clock = clock
        self.now = now
        self.date: str | None = None  # the HTTP Date of the first create answer: the source's clock at the start
        self.jobs = 0

    async def pages(self, since: str | None = None) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of records (``page_size`` each) of every job; ``since``: the formatted watermark, for templates."""
        if self.config.windows is None:
            async for page in self._jobs(since, None):
                yield page
            return
        for window in date_windows(self.config.windows, self.client.context, self.now(), self.where,
                                   self.client.connection.connector.limits.max_pages):
            async for page in self._jobs(since, window):
                yield page

    async def _jobs(self, since: str | None, window: Mapping[str, str] | None) -> AsyncIterator[list[dict[str, Any]]]:
        """The jobs of one read (or of one date window): a next job while the done one names more."""
        token: str | None = None
        tokens: set[str] = set()
        max_jobs = self.client.connection.connector.limits.max_pages
        while True:
            self.jobs += 1
            job = {"id": None, "token": token, "number": self.jobs, "status": None, "window": window}
            await self._create(job, since)
            job["status"] = await self._finish(job, since)
            async for page in self._results(job, since):
                yield page
            more = self.config.next
            if more is None or not more.more.evaluate(job["status"]):
                return
            token = more.token.evaluate(job["status"])
            if not isinstance(token, (str, int)) or token == "":
                raise FatalError(f"{self.where}: bulk job {job['id']} has more records but no next token")
            token = str(token)
            if token in tokens or self.jobs >= max_jobs:
                fault = "a next token already used" if token in tokens else f"more than {max_jobs} jobs"
                raise FatalError(f"{self.where}: bulk read does not end: {fault} (the connector's limits.max_pages)")
            tokens.add(token)

    def _context(self, job: Mapping[str, Any], since: str | None) -> dict[str, Any]:
        return {**self.client.context, "since": since, "job": dict(job), "window": job.get("window")}

    async def _create(self, job: dict[str, Any], since: str | None) -> None:
        create = self.config.create
        context = self._context(job, since)
        body = create.body.evaluate(context) if create.body is not None else None
        into = self.config.next.into if self.config.next is not None else None
        if job["token"] is not None and into:
            body = _with(body, into, job["token"], self.where)
        reply = await self._send(create.method, str(create.path.evaluate(context)), create.params.evaluate(context),
                                 body, create.quota, idempotent=True)  # a second job writes nothing
        if self.date is None:
            self.date = reply.headers.get("date")
        found = create.id.evaluate(reply.body) if isinstance(reply.body, (dict, list)) else None
        if not isinstance(found, (str, int)) or found == "" or isinstance(found, bool):
            raise FatalError(f"{self.where}: the bulk job's create answer has no id at {create.id.source!r}: "
                             f"{REDACTOR(str(reply.body))[:200]}")
        job["id"] = str(found)
        log.info("%s: bulk job %s created", self.where, job["id"])

    async def _finish(self, job: dict[str, Any], since: str | None) -> Any:
        """Start (when the API needs it) and poll the job until done; a read that gives up aborts it."""
        try:
            if self.config.start is not None:
                await self._call(self.config.start, job, since)
            return await self._poll(job, since)
        except JobFailed:
            raise
        except BaseException:
            await self._abort(job, since)
            raise

    async def _poll(self, job: dict[str, Any], since: str | None) -> Any:
        poll = self.config.poll
        started = self.clock()
        while True:
            context = self._context(job, since)
            reply = await self._send(poll.method, str(poll.path.evaluate(context)), poll.params.evaluate(context),
                                     None, poll.quota, idempotent=True)
            body = reply.body
            state = poll.state.evaluate(body) if isinstance(body, (dict, list)) else None
            if state is None or isinstance(state, (dict, list)):
                raise FatalError(f"{self.where}: bulk job {job['id']}: the status answer has no state at "
                                 f"{poll.state.source!r}: {REDACTOR(str(body))[:200]}")
            state = str(state)
            if state in poll.done:
                return body
            if state in poll.failed:
                error = poll.error.evaluate(body) if poll.error is not None else None
                detail = f": {REDACTOR(str(error))[:300]}" if error not in (None, "") else ""
                raise JobFailed(f"{self.where}: bulk job {job['id']} ended {state}{detail}")
            if self.clock() - started + poll.interval > poll.timeout:
                aborted = "; aborted" if self.config.abort is not None else ""
                raise FatalError(f"{self.where}: bulk job {job['id']} not done after {poll.timeout:g} s "
                                 f"(read.bulk.poll.timeout){aborted}")
            self.client.stats.waited_seconds += poll.interval
            await self.sleep(poll.interval)

    async def _abort(self, job: Mapping[str, Any], since: str | None) -> None:
        """Ask the API to end the job (best effort, bounded: the read's own failure is what is reported)."""
        if self.config.abort is None or job.get("id") is None:
            return
        try:
            async with asyncio.timeout(self.client.options.stop_grace):
                await self._call(self.config.abort, job, since)
            log.info("%s: bulk job %s aborted", self.where, job["id"])
        except Exception as exc:  # the job ends by itself at the API's retention; the read's failure matters
            log.warning("%s: bulk job %s could not be aborted: %s", self.where, job["id"], REDACTOR(str(exc)))

    async def _call(self, request: JobRequestConfig, job: Mapping[str, Any], since: str | None) -> None:
        context = self._context(job, since)
        body = request.body.evaluate(context) if request.body is not None else None
        await self._send(request.method, str(request.path.evaluate(context)), request.params.evaluate(context), body,
                         request.quota, idempotent=request.method != "POST")

    async def _send(self, method: str, path: str, params: Mapping[str, Any], body: Any, quota: str | None, *,
                    idempotent: bool) -> Reply:
        """One call of the job, counted as a read (a job changes no record); a refusal fails the read."""
        try:
            return await self.client.request(method, path, params=params, json=body, quota=quota, reads=True,
                                             idempotent=idempotent)
        except RecordError as exc:  # no record to park: the job's request itself was refused
            raise FatalError(f"{self.where}: {exc}") from None

    async def _results(self, job: Mapping[str, Any], since: str | None) -> AsyncIterator[list[dict[str, Any]]]:
        """The records of a done job: its file (or its result pages, one after another), ``page_size`` at a time."""
        spec = self.config.download
        context = self._context(job, since)
        path = str(spec.path.evaluate(context))
        params = dict(spec.params.evaluate(context))
        member = str(spec.member.evaluate(context)) if spec.member is not None else None
        locator: str | None = None
        seen: set[str] = set()
        prefix = f"{self.where}: bulk job {job['id']}"
        while True:
            query = {**params, spec.next.param: locator} if spec.next is not None and locator else params
            try:
                got = await download(self.client, spec.method, path, query, max_bytes=spec.max_bytes,
                                     quota=spec.quota, sleep=self.sleep)
            except NotAFile as exc:
                raise FatalError(f"{prefix}: {exc}") from None
            try:
                text = csv_text(got.file, spec.format, member, max_bytes=spec.max_bytes,
                                max_members=spec.max_members)
                shaper = RowShaper(self.config.rows, self.fields)
                page: list[dict[str, Any]] = []
                for line, row in csv_rows(text):
                    page.append(shaper.shape(row, line))
                    if len(page) >= self.config.page_size:
                        yield page
                        page = []
                if page:
                    yield page
            except BadFile as exc:
                raise FatalError(f"{prefix}: {exc}") from None
            finally:
                got.file.close()
            if spec.next is None:
                return
            locator = got.headers.get(spec.next.header)
            if not locator or locator in spec.next.end:
                return
            if locator in seen:
                raise FatalError(f"{prefix}: result pages do not end: locator {locator!r} came back")
            seen.add(locator)


def _with(body: Any, path: str, value: Any, where: str) -> dict[str, Any]:
    """A copy of the create body with ``value`` at the dotted ``path`` (the objects on the way created)."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise FatalError(f"{where}: read.bulk.next.into needs a JSON object create body")
    placed = copy.deepcopy(body)
    target = placed
    *parents, last = path.split(".")
    for part in parents:
        child = target.setdefault(part, {})
        if not isinstance(child, dict):
            raise FatalError(f"{where}: read.bulk.next.into {path!r} runs through {part!r}, which is not an object")
        target = child
    target[last] = value
    return placed
