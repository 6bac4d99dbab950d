"""Flow runs as tasks (engine/cluster/): the flow lock, the actor, the scheduler, on dramatiq's StubBroker."""

from __future__ import annotations

import asyncio
import functools
import json
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dramatiq
import httpx
import pytest
from click.testing import CliRunner
from dramatiq.brokers.stub import StubBroker

from ml_connector.cli import main
from ml_connector.cluster.jobs import QUEUE, FlowJob, Tenant
from ml_connector.cluster.lease import FlowLeases, LeaseLost, run_leased, under_lease
from ml_connector.cluster.scheduler import Scheduler
from ml_connector.cluster.tasks import FlowTasks, TaskSettings
from ml_connector.store import State
from ml_connector.store.flow_locks import FlowLocks
from ml_connector.store.postgres import PostgresTarget
from ml_connector.sync.runner import Runner
from tests.engine.fakeapi import FakeAPI
from tests.engine.tiny_workspace import FLOW, write_workspace
from tests.engine.two_flows import two_flow_files
from tests.pg import fresh_schema, postgres_url  # noqa: F401  (the session fixture)
from tests.redis_server import fresh_prefix, redis_url  # noqa: F401  (the session fixture)

T0 = datetime(2026, 1, 1)


@pytest.fixture(params=["duckdb", "postgresql"])
def state(request, tmp_path):
    """The lock's state on both backends (PostgreSQL: the session's test server, a fresh schema)."""
    if request.param == "duckdb":
        opened = State(tmp_path / "state.duckdb")
    else:
        url = request.getfixturevalue("postgres_url")
        opened = State(PostgresTarget(url, schema=fresh_schema(url), key_file=tmp_path / "state.key"))
    yield opened
    opened.close()


# ---- the lock ------------------------------------------------------------------------------------------------------

def test_a_held_lock_is_refused_to_another_holder_until_it_expires(state):
    locks = FlowLocks(state.db)
    assert locks.take("items", "worker-a", ttl=30, now=T0)
    assert not locks.take("items", "worker-b", ttl=30, now=T0 + timedelta(seconds=29))
    assert locks.holder("items", now=T0 + timedelta(seconds=29)) == "worker-a"
    assert locks.take("items", "worker-b", ttl=30, now=T0 + timedelta(seconds=30))  # a killed holder's lease ran out
    assert locks.holder("items", now=T0 + timedelta(seconds=31)) == "worker-b"
    assert locks.holder("items", now=T0 + timedelta(seconds=61)) is None


def test_renewing_keeps_the_lock_and_only_the_holder_can_renew_or_release_it(state):
    locks = FlowLocks(state.db)
    assert locks.take("items", "worker-a", ttl=30, now=T0)
    assert locks.renew("items", "worker-a", ttl=30, now=T0 + timedelta(seconds=20))
    assert not locks.take("items", "worker-b", ttl=30, now=T0 + timedelta(seconds=40))
    assert not locks.renew("items", "worker-b", ttl=30, now=T0 + timedelta(seconds=40))
    locks.release("items", "worker-b")
    assert locks.holder("items", now=T0 + timedelta(seconds=40)) == "worker-a"
    locks.release("items", "worker-a")
    assert locks.holder("items", now=T0 + timedelta(seconds=40)) is None
    assert locks.take("items", "worker-b", ttl=30, now=T0 + timedelta(seconds=41))


def test_a_lease_lost_to_another_worker_cannot_be_renewed(state):
    locks = FlowLocks(state.db)
    assert locks.take("items", "worker-a", ttl=10, now=T0)
    assert locks.take("items", "worker-b", ttl=10, now=T0 + timedelta(seconds=11))
    assert not locks.renew("items", "worker-a", ttl=10, now=T0 + timedelta(seconds=12))
    assert locks.holder("items", now=T0 + timedelta(seconds=12)) == "worker-b"


def test_locks_of_different_flows_are_independent(state):
    locks = FlowLocks(state.db)
    assert locks.take("items", "worker-a", ttl=30, now=T0)
    assert locks.take("customers", "worker-b", ttl=30, now=T0)


def test_the_database_clock_is_used_when_no_time_is_given(state):
    locks = FlowLocks(state.db)
    assert locks.take("items", "worker-a", ttl=30)
    assert not locks.take("items", "worker-b", ttl=30)
    assert locks.holder("items") == "worker-a"


def test_completed_after_counts_only_runs_that_ended_on_their_own(state):
    locks = FlowLocks(state.db)
    assert not locks.completed_after("items", None)
    state.runs.start("r1", "run")
    state.runs.start_flow("r1", "items")
    finished = state.db.fetchone("SELECT CAST(now() AS TIMESTAMP)")[0]
    assert not locks.completed_after("items", None)  # still running
    state.runs.start("r2", "run")  # marks r1's flow interrupted, as a killed worker's run is found later
    assert not locks.completed_after("items", None)
    state.runs.start_flow("r2", "items")
    state.runs.finish_flow("r2", "items", "failed", {})
    assert locks.completed_after("items", None)
    assert locks.completed_after("items", finished - timedelta(seconds=1))
    assert not locks.completed_after("items", datetime(2999, 1, 1))


# ---- the actor -----------------------------------------------------------------------------------------------------




THINGS = {"data": [{"id": 1, "name": "x", "updated": "2026-01-01"}]}


@pytest.fixture
def broker():
    stub = StubBroker()
    stub.emit_after("process_boot")
    yield stub
    stub.flush_all()
    stub.close()


def workspace_at(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FAKE_KEY", "k-123456")
    monkeypatch.delenv("ML_CONNECTOR_KEY", raising=False)
    return write_workspace(root, flow=FLOW + "schedule: every 15m\n")


def pg_workspace_at(root: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> tuple[Path, PostgresTarget]:
    """``workspace_at`` with its state in a fresh schema of the test PostgreSQL, and that state's target."""
    workspace = workspace_at(root, monkeypatch)
    schema = fresh_schema(url)
    workspace.write_text(workspace.read_text().replace(
        "state: state/state.duckdb", f"state: {{postgresql: '{url}', schema: {schema}}}"))
    return workspace, PostgresTarget(url, schema=schema, key_file=root / "state" / f"{schema}.key")


def tasks_for(broker: StubBroker, api: FakeAPI, workspaces: list[Path], holder: str = "w1", **settings: float):
    outcomes: list[tuple[str, str, str]] = []
    tasks = FlowTasks(broker, holder=holder, workspaces=workspaces,
                      settings=TaskSettings(**{"retry_delay": 0.05, "lease_seconds": 30, **settings}),
                      make_runner=functools.partial(Runner, transport=httpx.ASGITransport(app=api.app)),
                      on_outcome=lambda job, outcome: outcomes.append((job.tenant, job.flow, outcome)))
    return tasks, outcomes


def drain(broker: StubBroker, threads: int = 1, fail_fast: bool = True) -> None:
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=threads)
    worker.start()
    try:
        broker.join(QUEUE, timeout=20_000, fail_fast=fail_fast)
        worker.join()
    finally:
        worker.stop()


def flow_runs(workspace: Path) -> list[tuple[str, str]]:
    state = State(workspace.parent / "state" / "state.duckdb")
    try:
        return [tuple(row) for row in state.db.fetchall("SELECT flow, status FROM flow_runs ORDER BY started_at")]
    finally:
        state.close()


def job(workspace: Path, flow: str = "things", tenant: str = "t1", after: str | None = None) -> FlowJob:
    return FlowJob(str(workspace), tenant, flow, "2026-01-01T00:00:00", after)


def test_a_task_runs_its_one_flow_once_under_the_lease_and_lets_go(broker, tmp_path, monkeypatch):
    workspace = workspace_at(tmp_path, monkeypatch)
    api = FakeAPI().on("GET", "/v2/things", 200, THINGS)
    tasks, outcomes = tasks_for(broker, api, [workspace])
    tasks.send(job(workspace))
    drain(broker)
    assert outcomes == [("t1", "things", "ok")]
    assert len(api.calls("GET", "/v2/things")) == 1
    assert flow_runs(workspace) == [("things", "ok")]
    state = State(workspace.parent / "state" / "state.duckdb")
    try:
        assert FlowLocks(state.db).holder("things") is None
    finally:
        state.close()


def test_a_flow_locked_by_another_worker_is_not_run_and_its_task_comes_back_later(broker, tmp_path, monkeypatch):
    workspace = workspace_at(tmp_path, monkeypatch)
    api = FakeAPI().on("GET", "/v2/things", 200, THINGS)
    state = State(workspace.parent / "state" / "state.duckdb")
    assert FlowLocks(state.db).take("things", "w2", ttl=30)
    state.close()
    tasks, outcomes = tasks_for(broker, api, [workspace], retry_delay=0.2)
    tasks.send(job(workspace))
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=1)
    worker.start()
    try:
        for _ in range(200):
            if outcomes:
                break
            asyncio.run(asyncio.sleep(0.01))
        assert outcomes == [("t1", "things", "busy")]
        assert api.calls() == []
        state = State(workspace.parent / "state" / "state.duckdb")
        FlowLocks(state.db).release("things", "w2")  # the other worker finished
        state.close()
        broker.join(QUEUE, timeout=20_000)
        worker.join()
    finally:
        worker.stop()
    assert outcomes == [("t1", "things", "busy"), ("t1", "things", "ok")]  # not dropped: taken again
    assert len(api.calls("GET", "/v2/things")) == 1


def test_a_redelivered_task_whose_cycle_already_ran_costs_no_api_call(broker, tmp_path, monkeypatch):
    workspace = workspace_at(tmp_path, monkeypatch)
    api = FakeAPI().on("GET", "/v2/things", 200, THINGS)
    tasks, outcomes = tasks_for(broker, api, [workspace])
    tasks.send(job(workspace))
    tasks.send(job(workspace))  # the same cycle's task again (a worker judged dead, a scheduler restarted)
    drain(broker)
    assert outcomes == [("t1", "things", "ok"), ("t1", "things", "already run")]
    assert len(api.calls("GET", "/v2/things")) == 1


def test_a_failing_flow_is_recorded_and_not_retried_by_the_queue(broker, tmp_path, monkeypatch):
    workspace = workspace_at(tmp_path, monkeypatch)
    api = FakeAPI().on("GET", "/v2/things", 400, {"error": "bad"})
    tasks, outcomes = tasks_for(broker, api, [workspace])
    tasks.send(job(workspace))
    drain(broker)
    assert outcomes == [("t1", "things", "failed")]  # its schedule brings it back, as `serve` does
    assert flow_runs(workspace) == [("things", "failed")]
    assert broker.dead_letters == []


def test_a_tenants_broken_workspace_does_not_delay_another_tenants_flow(broker, tmp_path, monkeypatch):
    good = workspace_at(tmp_path / "good", monkeypatch)
    broken = workspace_at(tmp_path / "broken", monkeypatch)
    broken.write_text("connections: [this is not a mapping\n")
    api = FakeAPI().on("GET", "/v2/things", 200, THINGS)
    tasks, outcomes = tasks_for(broker, api, [good, broken])
    tasks.send(job(broken, tenant="broken"))  # first in the queue, one worker thread
    tasks.send(job(good, tenant="good"))
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=1)
    worker.start()
    try:
        for _ in range(300):
            if ("good", "things", "ok") in outcomes:
                break
            asyncio.run(asyncio.sleep(0.01))
    finally:
        worker.stop()
    assert ("good", "things", "ok") in outcomes
    assert outcomes[0][:2] == ("broken", "things") and outcomes[0][2].startswith("error: ")
    assert len(api.calls("GET", "/v2/things")) == 1


def test_a_task_for_a_workspace_the_worker_does_not_serve_is_refused(broker, tmp_path, monkeypatch):
    served = workspace_at(tmp_path / "a", monkeypatch)
    other = workspace_at(tmp_path / "b", monkeypatch)
    api = FakeAPI()
    tasks, outcomes = tasks_for(broker, api, [served])
    tasks.send(job(other))
    drain(broker, fail_fast=False)
    assert outcomes == [("t1", "things", f"refused: this worker does not serve {other}")]
    assert not (other.parent / "state").exists()
    assert len(broker.dead_letters) == 1


# ---- the lease while a flow runs -----------------------------------------------------------------------------------

class Beats:
    """A sleep that returns at once and counts the beats, so renewals are tested without waiting."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, _seconds: float) -> None:
        self.count += 1
        await asyncio.sleep(0)


def test_the_lease_is_renewed_while_the_flow_runs(state):
    locks = FlowLocks(state.db)
    assert locks.take("items", "w1", ttl=30, now=T0)
    beats = Beats()

    async def work() -> str:
        while beats.count < 3:
            await asyncio.sleep(0)
        return "done"

    assert asyncio.run(run_leased(work(), locks, "items", "w1", ttl=30, every=10, sleep=beats)) == "done"
    expires = state.db.fetchone("SELECT expires_at FROM flow_locks")[0]
    # renewed on the database clock, not left at T0 + 30
    assert expires > datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=25)


def test_a_lost_lease_stops_the_flow(state):
    locks = FlowLocks(state.db)
    assert locks.take("items", "w1", ttl=10, now=T0)
    assert locks.take("items", "w2", ttl=10, now=T0 + timedelta(seconds=11))  # it ran out; another worker took it
    stopped: list[str] = []

    async def work() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError as exc:
            stopped.append(str(exc.args[0]) if exc.args else "")
            raise

    with pytest.raises(LeaseLost):
        asyncio.run(run_leased(work(), locks, "items", "w1", ttl=10, every=1, sleep=Beats()))
    assert stopped == ["lease lost"]
    assert locks.holder("items", now=T0 + timedelta(seconds=12)) == "w2"


# ---- a runner with leases (serve replicas on one shared state) --------------------------------------------------

def leased_runner(workspace: Path, state: State, api: FakeAPI, holder: str = "replica-a",
                  watch: Callable[[], None] | None = None) -> Runner:
    from ml_connector.workspace import Workspace

    class Watched(httpx.AsyncBaseTransport):
        inner = httpx.ASGITransport(app=api.app)

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if watch is not None:
                watch()
            return await self.inner.handle_async_request(request)

    return Runner(Workspace.open(workspace).project, state, transport=Watched(), leases=FlowLeases(holder, ttl=30))


def test_a_runner_with_leases_leaves_a_flow_another_replica_holds(tmp_path, monkeypatch):
    workspace = workspace_at(tmp_path, monkeypatch)
    api = FakeAPI()  # strict: any call fails the test
    state = State(workspace.parent / "state" / "state.duckdb")
    try:
        assert FlowLocks(state.db).take("things", "replica-b", ttl=30)
        summary = asyncio.run(leased_runner(workspace, state, api).run(due=True))
        assert (summary.flows, summary.elsewhere, summary.status) == ([], ["things"], "ok")
        assert summary.as_dict()["elsewhere"] == ["things"]
        assert api.calls() == []
        assert state.db.fetchall("SELECT flow FROM flow_runs") == []
        assert FlowLocks(state.db).holder("things") == "replica-b"
    finally:
        state.close()


def test_a_runner_with_leases_runs_a_flow_holding_its_lease_and_lets_go(tmp_path, monkeypatch):
    workspace = workspace_at(tmp_path, monkeypatch)
    state = State(workspace.parent / "state" / "state.duckdb")
    held: list[str | None] = []
    api = FakeAPI().on("GET", "/v2/things", 200, THINGS)
    try:
        runner = leased_runner(workspace, state, api, watch=lambda: held.append(FlowLocks(state.db).holder("things")))
        summary = asyncio.run(runner.run(due=True))
        assert ([f.flow for f in summary.flows], summary.elsewhere, summary.status) == (["things"], [], "ok")
        assert held == ["replica-a"]
        assert FlowLocks(state.db).holder("things") is None
    finally:
        state.close()


def test_a_due_flow_another_replica_ran_since_it_was_found_due_is_not_run_again(tmp_path, monkeypatch):
    workspace = workspace_at(tmp_path, monkeypatch)
    api = FakeAPI().on("GET", "/v2/things", 200, THINGS)
    state = State(workspace.parent / "state" / "state.duckdb")
    try:
        runner = leased_runner(workspace, state, api)
        found_due = runner.select(due=True)
        assert found_due == ["things"]
        other = leased_runner(workspace, state, api, holder="replica-b")  # ran it meanwhile, and let go
        assert [f.status for f in asyncio.run(other.run(due=True)).flows] == ["ok"]
        monkeypatch.setattr(runner, "select", lambda flows=None, due=False, now=None: found_due)
        summary = asyncio.run(runner.run(due=True))
        assert (summary.flows, summary.elsewhere) == ([], ["things"])
        assert len(api.calls("GET", "/v2/things")) == 1
    finally:
        state.close()


# ---- the scheduler -------------------------------------------------------------------------------------------------


NOW = datetime(2026, 1, 1, 12, 0, 0)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def finish(workspace: Path, flow: str, status: str = "ok", run_id: str | None = None) -> None:
    """What a worker leaves in the state when it has run ``flow``."""
    state = State(workspace.parent / "state" / "state.duckdb")
    try:
        run_id = run_id or f"run-{flow}-{len(state.runs.recent(1000))}"
        state.runs.start(run_id, "run")
        state.runs.start_flow(run_id, flow)
        state.runs.finish_flow(run_id, flow, status, {})
        state.runs.finish(run_id, status, {})
    finally:
        state.close()


def test_a_due_flow_is_enqueued_once_until_its_run_completes(tmp_path, monkeypatch):
    workspace = workspace_at(tmp_path, monkeypatch)
    sent: list[FlowJob] = []
    clock = Clock()
    scheduler = Scheduler([Tenant("t1", workspace)], sent.append, clock=clock)
    assert scheduler.tick() == [FlowJob(str(workspace), "t1", "things", "2026-01-01T12:00:00", None)]
    clock.now += timedelta(minutes=20)
    assert scheduler.tick() == []  # enqueued, not yet run: not again
    finish(workspace, "things")
    assert scheduler.tick() == []  # just run: due again 15 minutes after it finished
    assert len(sent) == 1


def test_a_flow_is_enqueued_again_when_its_schedule_comes_round(tmp_path, monkeypatch):
    workspace = workspace_at(tmp_path, monkeypatch)
    sent: list[FlowJob] = []
    clock = Clock()
    scheduler = Scheduler([Tenant("t1", workspace)], sent.append, clock=clock)
    scheduler.tick()
    finish(workspace, "things")
    state = State(workspace.parent / "state" / "state.duckdb")
    finished = FlowLocks(state.db).last_completed("things")
    state.close()
    clock.now = finished + timedelta(minutes=15)
    again = scheduler.tick()
    assert [(j.flow, j.after) for j in again] == [("things", finished.isoformat())]


def test_a_killed_run_leaves_its_flow_outstanding_not_enqueued_twice(tmp_path, monkeypatch):
    workspace = workspace_at(tmp_path, monkeypatch)
    sent: list[FlowJob] = []
    clock = Clock()
    scheduler = Scheduler([Tenant("t1", workspace)], sent.append, clock=clock)
    scheduler.tick()
    state = State(workspace.parent / "state" / "state.duckdb")
    state.runs.start("killed", "run")
    state.runs.start_flow("killed", "things")  # a worker died here: the queue redelivers its task
    state.runs.start("later", "run")  # ... and a later run marks it interrupted
    state.close()
    clock.now += timedelta(minutes=20)
    assert scheduler.tick() == []
    assert len(sent) == 1


def test_an_outstanding_task_that_never_completes_is_enqueued_again_after_stale_after(tmp_path, monkeypatch):
    workspace = workspace_at(tmp_path, monkeypatch)
    sent: list[FlowJob] = []
    clock = Clock()
    scheduler = Scheduler([Tenant("t1", workspace)], sent.append, clock=clock, stale_after=timedelta(hours=1))
    scheduler.tick()
    clock.now += timedelta(minutes=59)
    assert scheduler.tick() == []
    clock.now += timedelta(minutes=2)  # the task was dead-lettered after its retries: the flow must not stop for good
    assert [j.flow for j in scheduler.tick()] == ["things"]


def two_flow_workspace(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    files = two_flow_files("a", "b")
    files["mappings/p/first.yaml"] += "        schedule: every 5m\n"
    files["mappings/p/second.yaml"] += "        schedule: every 5m\n"
    files["connectors/src.yaml"] = """
        connector: src
        base_url: http://api.test/src
        auth: {key: {type: api_key, header: x-key, value: k-literal}}
        entities:
          a: {key: code, read: {path: /a, records: data}}
          b: {key: code, read: {path: /b, records: data}}
        """
    files["workspace.yaml"] = "state: state/state.duckdb\n" + textwrap.dedent(files["workspace.yaml"])
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root / "workspace.yaml"


def test_a_dependent_waits_until_its_dependencies_run_of_this_cycle_completed(tmp_path, monkeypatch):
    workspace = two_flow_workspace(tmp_path, monkeypatch)
    sent: list[FlowJob] = []
    clock = Clock()
    scheduler = Scheduler([Tenant("t1", workspace)], sent.append, clock=clock)
    assert [j.flow for j in scheduler.tick()] == ["first"]  # both due; `second` depends on `first`
    assert scheduler.tick() == []  # `first` enqueued, not yet run
    state = State(workspace.parent / "state" / "state.duckdb")
    assert FlowLocks(state.db).take("first", "w1", ttl=60)
    state.close()
    finish(workspace, "first")  # the run is recorded; the worker has not let go of the lease yet
    assert scheduler.tick() == []
    state = State(workspace.parent / "state" / "state.duckdb")
    FlowLocks(state.db).release("first", "w1")
    state.close()
    assert [j.flow for j in scheduler.tick()] == ["second"]
    assert [j.flow for j in sent] == ["first", "second"]


@pytest.mark.duckdb_only  # its broken state is a corrupt .duckdb file
def test_a_tenant_whose_workspace_or_state_fails_does_not_delay_another_tenant(tmp_path, monkeypatch):
    good = workspace_at(tmp_path / "good", monkeypatch)
    broken = workspace_at(tmp_path / "broken", monkeypatch)
    busy = workspace_at(tmp_path / "busy", monkeypatch)
    broken.write_text("connections: [this is not a mapping\n")
    (busy.parent / "state").mkdir()
    (busy.parent / "state" / "state.duckdb").write_text("not a database")  # a state that cannot be opened
    sent: list[FlowJob] = []
    scheduler = Scheduler([Tenant("broken", broken), Tenant("busy", busy), Tenant("good", good)], sent.append,
                          clock=Clock())
    assert [(j.tenant, j.flow) for j in scheduler.tick()] == [("good", "things")]
    assert set(scheduler.problems) == {"broken", "busy"}
    assert "not a valid state database" in scheduler.problems["busy"]
    (busy.parent / "state" / "state.duckdb").unlink()  # restored
    assert [(j.tenant, j.flow) for j in scheduler.tick()] == [("busy", "things")]
    assert set(scheduler.problems) == {"broken"}


# ---- the commands --------------------------------------------------------------------------------------------------





@pytest.mark.parametrize("command", ["worker", "scheduler"])
def test_an_unreachable_broker_is_one_line_and_exit_code_2(command, tmp_path, monkeypatch):
    workspace = workspace_at(tmp_path, monkeypatch)
    result = CliRunner().invoke(main, [command, "-w", str(workspace), "--broker", "redis://:s3cret@127.0.0.1:1/0"])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "ml-connector: cannot reach the broker at redis://:***@127.0.0.1:1/0: Error 111 connecting to 127.0.0.1:1. "
        "Connection refused."]


def test_scheduler_once_enqueues_the_due_flows_of_every_tenant_on_redis(tmp_path, monkeypatch, redis_url):  # noqa: F811
    import redis

    one = workspace_at(tmp_path / "one", monkeypatch)
    two = workspace_at(tmp_path / "two", monkeypatch)
    namespace = fresh_prefix()
    result = CliRunner().invoke(main, ["scheduler", "--once", "-w", f"a={one}", "-w", f"b={two}", "--broker",
                                       redis_url, "--namespace", namespace])
    assert result.exit_code == 0, result.output
    assert result.stdout == "enqueued 2 flows\n"
    client = redis.Redis.from_url(redis_url)
    ids = client.lrange(f"{namespace}:flows", 0, -1)
    messages = [json.loads(client.hget(f"{namespace}:flows.msgs", i)) for i in ids]
    assert [(m["actor_name"], m["args"][1:3]) for m in messages] == [("run_flow", ["a", "things"]),
                                                                      ("run_flow", ["b", "things"])]
    assert [m["args"][0] for m in messages] == [str(one), str(two)]


def test_two_workspaces_with_one_tenant_name_are_refused(tmp_path, monkeypatch):
    one = workspace_at(tmp_path / "x" / "acme", monkeypatch)
    two = workspace_at(tmp_path / "y" / "acme", monkeypatch)
    result = CliRunner().invoke(main, ["scheduler", "-w", str(one), "-w", str(two), "--broker", "redis://x"])
    assert result.exit_code == 2
    assert result.stderr == "ml-connector: two workspaces are named acme: name them with NAME=PATH\n"


def test_a_lease_taken_after_a_killed_holder_marks_its_flow_run_interrupted(broker, tmp_path, monkeypatch, postgres_url):  # noqa: E501,F811
    # on a shared state no one else says a killed worker's run ended: the worker taking the flow's lease does
    from ml_connector.store.runs import Runs

    workspace, target = pg_workspace_at(tmp_path, monkeypatch, postgres_url)
    state = State(target)
    Runs(state.db).start("killed-run", "run")
    Runs(state.db).start_flow("killed-run", "things")
    assert FlowLocks(state.db).take("things", "w-dead", ttl=30, now=T0)  # its lease ran out long ago
    other = Runs(state.db)
    other.start("other-run", "run")
    other.start_flow("other-run", "others")  # another flow, still running on a live worker: left alone
    state.close()
    api = FakeAPI().on("GET", "/v2/things", 200, THINGS)
    tasks, outcomes = tasks_for(broker, api, [workspace])
    assert tasks.perform(job(workspace)) == "ok"
    state = State(target)
    try:
        rows = state.db.fetchall("SELECT run_id, flow, status FROM flow_runs ORDER BY started_at")
        assert [row for row in rows if row[0] in ("killed-run", "other-run")] == [
            ("killed-run", "things", "interrupted"), ("other-run", "others", "running")]
        assert [row[1:] for row in rows if row[0] not in ("killed-run", "other-run")] == [("things", "ok")]
    finally:
        state.close()
    result = CliRunner().invoke(main, ["status", "-w", str(workspace)])
    assert result.exit_code == 0, result.output
    listed = {line.split()[0]: line.split()[2] for line in result.output.splitlines() if line.endswith("-run")
              or "-run " in line}
    assert listed == {"killed-run": "interrupted", "other-run": "running"}, result.output


def test_work_under_a_named_lease_waits_for_the_other_holder_and_never_overlaps(state):
    """Serve replicas maintain webhook channels one at a time: two registering one channel would leave a
    registration at the source that no state row knows."""
    locks = FlowLocks(state.db)
    inside: list[str] = []
    log: list[str] = []

    async def maintain(holder: str) -> str:
        inside.append(holder)
        log.append(f"{holder} in ({len(inside)} inside)")
        await asyncio.sleep(0.05)
        inside.remove(holder)
        return holder

    async def both() -> list[str | None]:
        return list(await asyncio.gather(
            under_lease(locks, "serve:channels", "replica-a", lambda: maintain("replica-a"), ttl=30, wait=5, poll=0.01),
            under_lease(locks, "serve:channels", "replica-b", lambda: maintain("replica-b"), ttl=30, wait=5,
                        poll=0.01)))

    assert asyncio.run(both()) == ["replica-a", "replica-b"]
    assert log == ["replica-a in (1 inside)", "replica-b in (1 inside)"]
    assert locks.holder("serve:channels") is None


def test_work_under_a_named_lease_gives_up_after_its_wait(state):
    locks = FlowLocks(state.db)
    assert locks.take("serve:channels", "replica-b", ttl=30)

    async def maintain(holder: str) -> str:
        raise AssertionError("ran without the lease")

    assert asyncio.run(under_lease(locks, "serve:channels", "replica-a", lambda: maintain("replica-a"), ttl=30,
                                   wait=0.05, poll=0.01)) is None
    assert locks.holder("serve:channels") == "replica-b"


def test_serve_replicas_on_a_shared_state_run_a_due_flow_on_one_replica(tmp_path, monkeypatch, postgres_url):  # noqa: F811
    import ml_connector.cli

    workspace, target = pg_workspace_at(tmp_path, monkeypatch, postgres_url)
    api = FakeAPI().on("GET", "/v2/things", 200, THINGS)
    monkeypatch.setattr(ml_connector.cli, "Runner", functools.partial(Runner, transport=httpx.ASGITransport(
        app=api.app)))
    state = State(target)
    assert FlowLocks(state.db).take("things", "serve other-host:1", ttl=30)  # another replica runs it
    state.close()

    busy = CliRunner().invoke(main, ["serve", "--once", "-w", str(workspace)])
    assert busy.exit_code == 0, busy.output
    assert (busy.stdout, api.calls()) == ("", [])

    state = State(target)
    FlowLocks(state.db).release("things", "serve other-host:1")  # ... and is done with it (it failed: due again)
    state.close()
    ran = CliRunner().invoke(main, ["serve", "--once", "-w", str(workspace)])
    assert ran.exit_code == 0, ran.output
    assert "things" in ran.stdout and len(api.calls("GET", "/v2/things")) == 1
    state = State(target)
    try:
        assert FlowLocks(state.db).holder("things") is None
        assert state.db.fetchall("SELECT flow, status FROM flow_runs") == [("things", "ok")]
    finally:
        state.close()


def test_a_manual_run_on_a_shared_state_leaves_a_flow_a_worker_runs(tmp_path, monkeypatch, postgres_url):  # noqa: F811
    import ml_connector.cli

    workspace, target = pg_workspace_at(tmp_path, monkeypatch, postgres_url)
    api = FakeAPI()  # strict: the flow must not read
    monkeypatch.setattr(ml_connector.cli, "Runner", functools.partial(Runner, transport=httpx.ASGITransport(
        app=api.app)))
    state = State(target)
    assert FlowLocks(state.db).take("things", "worker-1", ttl=30)
    state.close()
    result = CliRunner().invoke(main, ["run", "-w", str(workspace)])
    assert result.exit_code == 0, result.output
    assert "  things: run by another process sharing this state (it held the flow's lease, or had just run it)" \
        in result.stdout.splitlines()
    assert api.calls() == []


def test_a_run_right_after_a_local_run_was_killed_takes_its_stale_lease(tmp_path, monkeypatch):
    """A SIGKILLed `run` leaves its leases until they run out (60 s): the next run on this machine sees that the
    holder's process is gone and takes over, instead of leaving every flow to a dead process."""
    import subprocess
    import sys

    from ml_connector.cluster.lease import dead_local_holder, process_holder

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = process_holder("run").rsplit(":", 1)[0] + f":{gone.pid}"
    alive = process_holder("run")
    assert (dead_local_holder(dead), dead_local_holder(alive), dead_local_holder("run other-host:1")) == (
        True, False, False)
    workspace = workspace_at(tmp_path, monkeypatch)
    api = FakeAPI().on("GET", "/v2/things", 200, THINGS)
    state = State(workspace.parent / "state" / "state.duckdb")
    try:
        assert FlowLocks(state.db).take("things", dead, ttl=60)
        summary = asyncio.run(leased_runner(workspace, state, api, holder=alive).run())
        assert ([f.flow for f in summary.flows], summary.elsewhere) == (["things"], [])
        assert FlowLocks(state.db).take("things", "run other-host:1", ttl=60)  # another machine's: left alone
        again = asyncio.run(leased_runner(workspace, state, api, holder=alive).run())
        assert (again.flows, again.elsewhere) == ([], ["things"])
    finally:
        state.close()
