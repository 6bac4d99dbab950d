"""`ml-connector ping CONNECTION`: authenticate, make one cheap read per object, and say plainly what worked.

The cheap read is each entity's own read asking for one record (its paginator's page size set to 1), so nothing
vendor-specific is needed: which objects are checked follows from the flows that use the connection. What failed
is told from what happened on the wire (a recording transport keeps each answer's status): the name does not
resolve (DNS), the certificate is refused (TLS), nothing listens, every read answers 404 (the base URL), 401 (the
credentials), 403 (permissions or scopes), one read answers 404 (that object is missing).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import httpx

from ml_connector.commands.options import workspace_option
from ml_connector.config import MappingConfig
from ml_connector.config.connector import PingCheckConfig
from ml_connector.config.entity import EntityConfig
from ml_connector.errors import SetupError
from ml_connector.http.bodies import RecordsAt
from ml_connector.http.client import ClientOptions, ConnectorClient, Unreachable
from ml_connector.http.redact import REDACTOR
from ml_connector.sync.runner import Runner
from ml_connector.workspace import Workspace

EXIT_PING_FAILED = 3  # as a failed flow: the connection, its auth or an API refusal


@dataclass
class Answer:
    method: str
    url: httpx.URL
    status: int


class RecordingTransport(httpx.AsyncBaseTransport):
    """Passes requests on and keeps the status of every answer, so a failure can be told by what came back."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.answers: list[Answer] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.answers.append(Answer(request.method, request.url, response.status_code))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def base_transport() -> httpx.AsyncBaseTransport:
    """The network (tests put an in-process API here)."""
    return httpx.AsyncHTTPTransport()


@dataclass
class Check:
    subject: str
    ok: bool
    message: str
    stop: bool = False  # nothing after this can work (unreachable, refused credentials)
    answered: bool = False  # the API answered the read (whatever it said): it is there, the credentials passed
    missing: bool = False  # the read answered 404

    def line(self) -> str:
        return f"  {'ok  ' if self.ok else 'FAIL'}  {self.subject}: {self.message}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _entities(workspace: Workspace, connection: str, connector_entities: dict[str, EntityConfig]) -> list[str]:
    """The entities the flows read or write through ``connection``, in order; all readable ones when no flow uses
    it."""
    used: list[str] = []
    for spec in workspace.project.flows.values():
        config = spec.config
        if not isinstance(config, MappingConfig):
            continue
        for end in (config.source, config.target):
            if end.connection == connection and end.entity not in used:
                used.append(end.entity)
    return used or [name for name, entity in connector_entities.items() if entity.read is not None]


class Pinger:
    """Runs the checks of one connection and collects them as lines."""

    def __init__(self, client: ConnectorClient, recorder: RecordingTransport) -> None:
        self.client = client
        self.recorder = recorder
        self.checks: list[Check] = []

    async def probe(self, name: str, entity: EntityConfig) -> Check:
        """One read of at most one record of ``entity``."""
        read = entity.read
        if read is None:
            return Check(name, True, "not checked (the connector declares no read for it)")
        if read.keys is not None:  # a read needs keys a flow's id map supplies; a probe has none to send
            return Check(name, True, "not checked (read by keys: read.keys; the flow with from.keys reads it)")
        client = self.client
        context = {**client.context, "since": None}
        path = str(read.path.evaluate(client.context))
        paginator = client.paginator(read.paginator)
        first = paginator.first()
        limit = getattr(paginator, "limit_param", None)
        if limit is not None:
            first[limit] = 1
        params = {**read.params.evaluate(client.context), **first}
        body = read.body.evaluate(context) if read.body is not None else None
        params, body = paginator.request(params, body)
        seen = len(self.recorder.answers)
        try:
            reply = await client.request(read.method, path, params=params, json=body, reads=True, idempotent=True,
                                         records=RecordsAt(read.records), quota=read.quota)
        except Exception as exc:  # every failure becomes a line saying what it means
            return self._explain(name, read.method, path, exc, self.recorder.answers[seen:])
        count = len(reply.records or [])
        return Check(name, True, f"read {count} {'record' if count == 1 else 'records'} ({read.method} {path})",
                     answered=True)

    def _explain(self, name: str, method: str, path: str, exc: Exception, answers: list[Answer]) -> Check:
        host = self.client.base_url
        for cause in _causes(exc):
            if isinstance(cause, ssl.SSLCertVerificationError):
                return Check("TLS", False, f"the certificate of {host} is not trusted: "
                             f"{cause.verify_message or cause.reason}", stop=True)
            if isinstance(cause, ssl.SSLError):
                return Check("TLS", False, f"the TLS handshake with {host} failed: {cause.reason or cause}",
                             stop=True)
        if isinstance(exc, Unreachable):
            subject = "DNS" if "does not resolve" in str(exc) else "connect"
            return Check(subject, False, str(exc).split(": ", 1)[-1], stop=True)
        last = answers[-1] if answers else None
        if last is None:
            return Check(name, False, " ".join(str(exc).split()) or type(exc).__name__)
        where = f"{last.method} {last.url.path} -> HTTP {last.status}"
        if not last.url.path.endswith(path.rstrip("/")):  # not the read: the auth's own request (a token)
            return Check("auth", False, f"the credentials were refused ({where}): check the secrets of connection "
                         f"{self.client.connection.name}", stop=True)
        if last.status == 401:
            return Check("auth", False, f"the credentials were refused ({where}): check the secrets of connection "
                         f"{self.client.connection.name}", stop=True)
        if last.status == 403:
            return Check(name, False, f"no permission to read {name} ({where}): check the token's scopes or the "
                         "user's rights", answered=True)
        if last.status == 404:
            return Check(name, False, f"the object {name} is missing ({where})", answered=True, missing=True)
        return Check(name, False, " ".join(str(exc).split()) or type(exc).__name__, answered=True)

    async def declared(self, check: PingCheckConfig) -> Check:
        """A check the connector declares (`ping:`): the answer's body says whether something is wrong."""
        client = self.client
        path = str(check.path.evaluate(client.context))
        seen = len(self.recorder.answers)
        try:
            reply = await client.request(check.method, path, params=check.params.evaluate(client.context),
                                         reads=True, idempotent=True)
        except Exception as exc:  # said as what it means, like a read
            return self._explain(check.name, check.method, path, exc, self.recorder.answers[seen:])
        if check.fails_when.evaluate(reply.body if isinstance(reply.body, (dict, list)) else {}):
            return Check(check.name, False, str(check.message.evaluate({**client.context, "body": reply.body})),
                         answered=True)
        return Check(check.name, True, f"{check.method} {path}", answered=True)

    async def run(self, entities: list[str], config: dict[str, EntityConfig]) -> None:
        for name in entities:
            check = await self.probe(name, config[name])
            self.checks.append(check)
            if check.stop:
                return
        for declared in self.client.connection.connector.ping:
            check = await self.declared(declared)
            self.checks.append(check)
            if check.stop:
                return
        answered = [c for c in self.checks if c.answered]
        if len(answered) > 1 and all(c.missing for c in answered):
            self.checks.insert(0, Check("URL", False, f"every read answered 404: is the base URL "
                                        f"{self.client.base_url} right?"))
        elif answered:
            self.checks.insert(0, Check("auth", True, f"{self.client.base_url} answered; credentials accepted"))


def ping_connection(workspace: Workspace, name: str, transport: httpx.AsyncBaseTransport | None = None
                    ) -> list[Check]:
    """The checks of connection ``name``, in the order they ran (a stopping failure ends them)."""
    state = workspace.state()
    try:
        recorder = RecordingTransport(transport or base_transport())
        probe = Runner(workspace.project, state, transport=recorder)
        connection = probe.connection(name)  # an unknown name is said here
        options = dataclasses.replace(ClientOptions.of(connection), max_retries=0, max_rate_limited=0)
        runner = Runner(workspace.project, state, transport=recorder, client_options=options)
        entities = _entities(workspace, name, dict(connection.connector.entities))

        async def checks() -> list[Check]:
            pinger = Pinger(runner.client(name), recorder)
            try:
                await pinger.run(entities, dict(connection.connector.entities))
            finally:
                await runner.aclose()
            return pinger.checks

        return asyncio.run(checks())
    finally:
        state.close()


@click.command()
@workspace_option
@click.argument("connection")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def ping(workspace_path: Path, connection: str, as_json: bool) -> None:
    """Authenticate and read one record of each object CONNECTION's flows use; say what worked and what did not
    (DNS, TLS, the URL, credentials, permissions, missing objects). Exit code 3 when a check failed.

    \b
    Example:
      ml-connector ping crm -w workspace.yaml
    """
    workspace = Workspace.open(workspace_path)
    known = (workspace.project.workspace.data.get("connections") or {}) if workspace.project.workspace else {}
    if connection not in known:
        raise SetupError(f"the workspace has no connection named {connection!r} "
                         f"(connections: {', '.join(sorted(known)) or 'none'})")
    checks = ping_connection(workspace, connection)
    failed = sum(1 for c in checks if not c.ok)
    if as_json:
        click.echo(REDACTOR(json.dumps([{"subject": c.subject, "ok": c.ok, "message": c.message} for c in checks],
                                       indent=2)))
        if failed:
            raise SystemExit(EXIT_PING_FAILED)
        return
    click.echo(f"ping {connection}")
    for check in checks:
        click.echo(REDACTOR(check.line()))
    click.echo(f"{len(checks) - failed} ok, {failed} failed")
    if failed:
        raise SystemExit(EXIT_PING_FAILED)
