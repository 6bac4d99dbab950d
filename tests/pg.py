"""A throwaway PostgreSQL server for the tests: initdb into a temporary folder, a free port, its unix socket in
that folder, one database; stopped (and the folder removed) at the end of the session.

Import the fixture into a test module (``from tests.pg import postgres_url``) and give each test its own schema
with :func:`fresh_schema`. Without the server binaries (initdb, pg_ctl) the tests that use it are skipped with a
reason that says what is missing. PostgreSQL refuses to run as root: as root the server runs as the ``postgres``
user (``runuser``), which then owns the folder.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

DATABASE = "ml_connector_test"
USER = "postgres"


def server_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl (PATH first, then Debian's /usr/lib/postgresql/<version>/bin)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl", path=str(Path(found).parent)):
        return Path(found).parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """One initdb'd cluster, started on a free port; ``url`` names its test database."""

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self.folder = Path(tempfile.mkdtemp(prefix="ml-connector-pg-"))  # not under pytest's 0700 root folder
        self.data = self.folder / "data"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        self.url = f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.binaries / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", USER, "--", *command]
        return subprocess.run(["nice", "-n", "19", *command], capture_output=True, text=True, timeout=120,
                              check=False)

    def start(self) -> None:
        if self.as_root:
            shutil.chown(self.folder, USER)
        done = self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C",
                         "--no-sync")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()}")
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
                   "-c shared_buffers=32MB")
        done = self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "server.log"),
                         "-w", "-t", "60", "start")
        if done.returncode != 0:
            log = (self.folder / "server.log").read_text() if (self.folder / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()} {log[-2000:]}")
        import psycopg

        with psycopg.connect(f"postgresql://{USER}@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


def start_server() -> Server:
    """A started server, or ``pytest.skip`` saying why none can run here."""
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
    try:
        import psycopg  # noqa: F401
    except ModuleNotFoundError:
        pytest.skip("psycopg is not installed: pip install 'ml-connector[cluster]'")
    server = Server(binaries)
    server.start()
    return server


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of the session's test database (no password: the server trusts local connections)."""
    url = os.environ.get("ML_CONNECTOR_TEST_POSTGRES_URL")  # a server already started (tests/conftest.py)
    if url:
        yield url
        return
    server = start_server()
    try:
        yield server.url
    finally:
        server.stop()


def fresh_schema(url: str) -> str:
    """A new, empty schema in that database, named uniquely (one per test: tenants' rows never meet)."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    return name
