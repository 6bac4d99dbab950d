"""Issue 24 (start-up cost): the connections of one process share one TLS context.

httpx builds a context for every client, loading the whole CA bundle each time (~17 ms of CPU): two connections,
two loads, for http:// sandboxes too. One verified context per CA setting of the environment serves them all; a
different SSL_CERT_FILE / SSL_CERT_DIR (a private CA) gets its own.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from ml_connector.connection import Connection
from ml_connector.http import tls
from ml_connector.http.client import ConnectorClient
from ml_connector.store import State
from tests.engine import configs


def client(name: str) -> ConnectorClient:
    config = configs.connector({"connector": name, "base_url": f"https://{name}.example/v1"})
    return ConnectorClient(Connection(name, config, {}, {}, None), State(":memory:").credentials)


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The CA files each new verified context loaded (the bundle's path, or SSL_CERT_FILE's)."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    tls._context.cache_clear()  # a context another test built under other settings
    loaded: list[str | None] = []
    real = ssl.create_default_context

    def counted(*args: object, cafile: str | None = None, **kwargs: object) -> ssl.SSLContext:
        loaded.append(cafile)
        return real(*args, cafile=cafile, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl, "create_default_context", counted)
    return loaded


def test_the_clients_of_one_process_load_the_ca_bundle_once(loads: list[str | None]) -> None:
    first, second, third = client("one"), client("two"), client("three")

    assert len(loads) == 1
    contexts = {id(c.http._transport._pool._ssl_context) for c in (first, second, third)}  # type: ignore[attr-defined]
    assert len(contexts) == 1
    assert tls.verified_context().verify_mode == ssl.CERT_REQUIRED and tls.verified_context().check_hostname


def test_a_private_ca_named_in_the_environment_gets_its_own_context(tmp_path: Path, loads: list[str | None],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    public = client("public")
    ca = trustme.CA()
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))

    private = client("private")

    assert loads[1:] == [str(pem)]
    context = private.http._transport._pool._ssl_context  # type: ignore[attr-defined]
    assert context is not public.http._transport._pool._ssl_context  # type: ignore[attr-defined]
    assert [cert["subject"] for cert in context.get_ca_certs()] == \
        [cert["subject"] for cert in ssl.create_default_context(cafile=str(pem)).get_ca_certs()]
