"""container/compose.yaml, run as processes: its scheduler, two workers and two receivers, with the commands,
environment and replica counts the file gives them, over the test session's PostgreSQL and Redis.

No container registry is reachable here (the images of PostgreSQL, Redis and Python's base cannot be pulled), so
the containers themselves are not built; what the file says about ml-connector (commands, flags, variables, the
workspace path every service must share) is what this test runs. A flag renamed or a variable the commands do not
read fails here before it fails in a deployment.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet

from ml_connector.sandbox.workspace import SANDBOX_ENV
from tests.e2e.conftest import REPO, Env, Lines, wait_for
from tests.e2e.test_first_integration import assert_no_duplicates, expected_counts
from tests.pg import fresh_schema, postgres_url  # noqa: F401  (the session fixture)
from tests.redis_server import fresh_prefix, redis_url  # noqa: F401  (the session fixture)

COMPOSE = REPO / "container" / "compose.yaml"
REQUIRED = re.compile(r"\$\{(\w+):\?[^}]*\}")


def _resolved(value: str, variables: dict[str, str]) -> str:
    """``${NAME:?message}`` as compose resolves it: the variable, or the deployment refuses to start."""
    def one(match: re.Match[str]) -> str:
        if match.group(1) not in variables:
            raise AssertionError(f"compose.yaml needs {match.group(1)}, which this test does not set")
        return variables[match.group(1)]

    return REQUIRED.sub(one, value)


def services(variables: dict[str, str]) -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(COMPOSE.read_text())  # the YAML merge key (<<) folds the shared block in
    found = {}
    for name in ("scheduler", "worker", "receiver"):
        service = document["services"][name]
        found[name] = {"command": service["command"],
                       "environment": {k: _resolved(str(v), variables) for k, v in service["environment"].items()},
                       "replicas": service.get("deploy", {}).get("replicas", 1),
                       "mount": service["volumes"][0].split(":")[1]}
    return found


def test_the_compose_files_scheduler_and_two_workers_run_an_integration(
        env: Env, redis_url: str, postgres_url: str, tmp_path: Path) -> None:  # noqa: F811
    variables = {"ML_CONNECTOR_KEY": Fernet.generate_key().decode(), "POSTGRES_PASSWORD": "unused-by-trust-auth"}
    found = services(variables)
    assert (found["scheduler"]["replicas"], found["worker"]["replicas"], found["receiver"]["replicas"]) == (1, 2, 2)
    mount = found["worker"]["mount"]
    assert found["scheduler"]["mount"] == found["receiver"]["mount"] == mount  # one workspace path for every service
    document = yaml.safe_load(env.workspace.read_text())
    document["state"] = {"postgresql": postgres_url, "schema": fresh_schema(postgres_url),
                         "password": "env:PGPASSWORD"}  # as the compose file's comment says
    env.workspace.write_text(yaml.safe_dump(document, sort_keys=False))
    started: list[tuple[subprocess.Popen[str], Lines]] = []
    receivers: list[Lines] = []  # what the receivers printed on stdout: a run table, had they run a flow
    namespace = fresh_prefix()  # the session's Redis serves other tests too
    try:
        for name in ("worker", "worker", "scheduler", "receiver", "receiver"):
            service = found[name]
            environment = {**service["environment"], "ML_CONNECTOR_BROKER_NAMESPACE": namespace}
            # the hosts of the compose network are this machine's test servers
            assert environment["ML_CONNECTOR_BROKER"] == "redis://redis:6379/0"
            environment["ML_CONNECTOR_BROKER"] = redis_url
            command = [str(env.workspace) if arg == f"{mount}/workspace.yaml" else arg for arg in service["command"]]
            assert str(env.workspace) in command, command
            if name == "receiver":  # two replicas on one machine: each its own port (behind one proxy in a deployment)
                assert command[command.index("--listen") + 1] == "0.0.0.0:8780" and "--triggered-only" in command
                command[command.index("--listen") + 1] = "127.0.0.1:0"
            process = subprocess.Popen(["nice", "-n", "19", sys.executable, "-m", "ml_connector.cli", "-v", *command],
                                       cwd=REPO, env={**os.environ, **SANDBOX_ENV, **environment}, text=True,
                                       stdout=subprocess.PIPE if name == "receiver" else subprocess.DEVNULL,
                                       stderr=subprocess.PIPE)
            assert process.stderr is not None
            started.append((process, Lines(process.stderr)))
            if name == "receiver":
                assert process.stdout is not None
                receivers.append(Lines(process.stdout))
        expected = expected_counts(env)

        def done() -> bool:
            return (len(env.crm.store.all("products")) >= expected["items_to_products"]
                    and len(env.crm.store.all("organizations")) >= expected["customers_to_organizations"]
                    and len(env.crm.store.all("persons")) >= expected["contacts_to_persons"])

        wait_for(done, 240, "the compose services did not complete the integration:\n"
                 + "\n".join("".join(lines.lines[-15:]) for _, lines in started))
        assert_no_duplicates(env)
        assert any(": ok" in line for _, lines in started[:2] for line in lines.lines), "no worker ran a flow"
        for _, lines in started[3:]:  # the receivers listened, and left every scheduled flow to the workers
            assert any("listening for callbacks on http://127.0.0.1:" in line for line in lines.lines), lines.text()
        assert [out.text() for out in receivers] == ["", ""]
    finally:
        for process, _ in started:
            if process.poll() is None:
                process.terminate()
        for process, _ in started:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.mark.parametrize("missing", ["ML_CONNECTOR_KEY", "POSTGRES_PASSWORD"])
def test_the_compose_file_refuses_to_start_without_its_secrets(missing: str) -> None:
    variables = {"ML_CONNECTOR_KEY": "k", "POSTGRES_PASSWORD": "p"}
    del variables[missing]
    with pytest.raises(AssertionError, match=missing):
        services(variables)
