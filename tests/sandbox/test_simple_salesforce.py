"""The Salesforce sandbox against the real ``simple-salesforce`` client, over TLS (facts §9).

simple-salesforce always builds ``https://`` URLs: the sandbox is served with a certificate from a throwaway
``trustme`` CA. Client credentials log in at ``https://{domain}.salesforce.com/services/oauth2/token``; the
test's requests Session stands in for DNS, sending the org's My Domain (``acme.my.salesforce.com``) to the
local server. From then on the client uses the ``instance_url`` the sandbox answered (``localhost:<port>``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceMalformedRequest

from ml_connector.sandbox.salesforce import DEFAULT_CONFIG, SalesforceSandbox, create_salesforce_sandbox
from ml_connector.sandbox.serve import SandboxServer

MY_DOMAIN = "acme.my.salesforce.com"


class LocalDns(requests.Session):
    """A requests Session that reaches ``https://acme.my.salesforce.com/...`` at the local sandbox."""

    def __init__(self, port: int, ca_file: str) -> None:
        super().__init__()
        self.port = port
        self.ca_file = ca_file
        self.trust_env = False  # no proxy, and REQUESTS_CA_BUNDLE must not replace the test CA
        self.seen: list[str] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        text = url.decode() if isinstance(url, bytes) else url
        self.seen.append(f"{method} {text}")
        text = text.replace(f"https://{MY_DOMAIN}/", f"https://localhost:{self.port}/")
        kwargs["verify"] = self.ca_file
        return super().request(method, text, *args, **kwargs)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SalesforceSandbox, int, str]]:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1", MY_DOMAIN)
    folder: Path = tmp_path_factory.mktemp("sf-tls")
    ca_file, key_file, cert_file = folder / "ca.pem", folder / "key.pem", folder / "cert.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    sandbox = create_salesforce_sandbox(accounts=450)
    server = SandboxServer()
    try:
        port = server.start("salesforce", sandbox, ssl_keyfile=str(key_file), ssl_certfile=str(cert_file)).port
        yield sandbox, port, str(ca_file)
    finally:
        server.stop()


def login(port: int, ca_file: str, **session_headers: str) -> tuple[Salesforce, LocalDns]:
    session = LocalDns(port, ca_file)
    session.headers.update(session_headers)
    sf = Salesforce(consumer_key=DEFAULT_CONFIG["client_id"], consumer_secret=DEFAULT_CONFIG["client_secret"],
                    domain="acme.my", version="66.0", session=session)
    return sf, session


def test_client_credentials_login_goes_to_my_domain(served: tuple[SalesforceSandbox, int, str]) -> None:
    _sandbox, port, ca_file = served
    sf, session = login(port, ca_file)
    assert session.seen == [f"POST https://{MY_DOMAIN}/services/oauth2/token"]
    assert sf.sf_instance == f"localhost:{port}"
    assert sf.base_url == f"https://localhost:{port}/services/data/v66.0/"


def test_login_on_the_login_domain_is_refused(served: tuple[SalesforceSandbox, int, str]) -> None:
    _sandbox, port, ca_file = served
    with pytest.raises(SalesforceAuthenticationFailed, match="request not supported on this domain"):
        Salesforce(consumer_key=DEFAULT_CONFIG["client_id"], consumer_secret=DEFAULT_CONFIG["client_secret"],
                   domain="acme.my", version="66.0",
                   session=_Redirect(port, ca_file, "login.salesforce.com"))


class _Redirect(LocalDns):
    """Sends the request to the sandbox but with another Host (a login server's name)."""

    def __init__(self, port: int, ca_file: str, host: str) -> None:
        super().__init__(port, ca_file)
        self.host = host

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs["headers"] = {**(kwargs.get("headers") or {}), "Host": self.host}
        return super().request(method, url, *args, **kwargs)


def test_query_all_follows_next_records_urls_in_small_batches(served: tuple[SalesforceSandbox, int, str]) -> None:
    sandbox, port, ca_file = served
    sf, session = login(port, ca_file, **{"Sforce-Query-Options": "batchSize=200"})
    before = len(sandbox.log.entries())
    result = sf.query_all("SELECT Id, ERP_Id__c FROM Account WHERE ERP_Id__c LIKE 'C%' ORDER BY Id")
    assert result["totalSize"] == 450 and result["done"] is True
    assert [r["ERP_Id__c"] for r in result["records"]] == [f"C{i:05d}" for i in range(1, 451)]
    paths = [e.path for e in sandbox.log.entries()[before:]]
    locator = paths[1].rsplit("/", 1)[1].split("-")[0]
    assert paths == ["/services/data/v66.0/query/", f"/services/data/v66.0/query/{locator}-200",
                     f"/services/data/v66.0/query/{locator}-400"]
    assert sf.api_usage["api-usage"].used >= 3
    with pytest.raises(SalesforceMalformedRequest):
        sf.query("SELECT Id FRM Account")


def test_upsert_by_external_id_and_read_back(served: tuple[SalesforceSandbox, int, str]) -> None:
    sandbox, port, ca_file = served
    sf, _session = login(port, ca_file, **{"Sforce-Call-Options": "client=ERPSync"})
    changes: list[Any] = []
    sandbox.store.listen(changes.append)
    assert sf.Account.upsert("ERP_Id__c/C9001", {"Name": "Acme GmbH"}) == 201
    assert sf.Account.upsert("ERP_Id__c/C9001", {"Name": "Acme AG"}) == 200
    record = sf.Account.get_by_custom_id("ERP_Id__c", "C9001")
    assert record["Name"] == "Acme AG" and record["attributes"]["type"] == "Account"
    assert [c.change_type for c in changes] == ["CREATE", "UPDATE"]
    assert changes[0].change_origin == "com/salesforce/api/rest/66.0;client=ERPSync"


def test_client_logs_in_again_after_the_session_expired(served: tuple[SalesforceSandbox, int, str]) -> None:
    sandbox, port, ca_file = served
    sf, session = login(port, ca_file)
    sandbox.tokens.expire_all()
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] >= 450
    assert [call.split()[0] for call in session.seen] == ["POST", "GET", "POST", "GET"]
