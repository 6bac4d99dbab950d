"""Zoho's own Python SDK (``zohocrmsdk8-0``) against the Zoho sandbox served over real HTTP.

The SDK is the strictest client we have: it refreshes tokens through the accounts URL, asks for the current
user, reads ``/settings/modules`` and ``/settings/fields`` (recursively for lookups and line items) and parses
answers by the metadata, so a sandbox whose shapes drift from Zoho's breaks here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ml_connector.sandbox.serve import SandboxServer
from ml_connector.sandbox.zoho import ZohoSandbox, create_zoho_sandbox

sdk = pytest.importorskip("zohocrmsdk", reason="the dev extra installs zohocrmsdk8-0")

from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken  # noqa: E402
from zohocrmsdk.src.com.zoho.api.authenticator.store import FileStore  # noqa: E402
from zohocrmsdk.src.com.zoho.crm.api import HeaderMap, ParameterMap  # noqa: E402
from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter  # noqa: E402
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer  # noqa: E402
from zohocrmsdk.src.com.zoho.crm.api.record import (  # noqa: E402
    ActionWrapper,
    BodyWrapper,
    Record,
    RecordOperations,
    ResponseWrapper,
    SuccessResponse,
)
from zohocrmsdk.src.com.zoho.crm.api.sdk_config import SDKConfig  # noqa: E402


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ZohoSandbox, str]]:
    """The sandbox on all its hosts, and the SDK initialised for the EU org (the default org)."""
    sandbox = create_zoho_sandbox(vendors=3, products=2, purchase_orders=1)
    server = SandboxServer()
    try:
        port = server.start("zoho", sandbox).port
        org = sandbox.org()
        base = f"http://127.0.0.2:{port}"
        environment = DataCenter.Environment(base, f"{base}/oauth/v2/token", base)
        token = OAuthToken(client_id=org.client_id, client_secret=org.client_secret, refresh_token=org.refresh_token)
        (tmp_path / "sdk").mkdir()
        Initializer.initialize(environment=environment, token=token, store=FileStore(str(tmp_path / "tokens.txt")),
                               sdk_config=SDKConfig(auto_refresh_fields=False, pick_list_validation=True),
                               resource_path=str(tmp_path / "sdk"))
        yield sandbox, base
    finally:
        server.stop()


def test_sdk_refreshes_a_token_and_reads_one_record_with_line_items(served: tuple[ZohoSandbox, str]) -> None:
    sandbox, _base = served
    po = sandbox.store.all_raw("Purchase_Orders")[0]
    response = RecordOperations("Purchase_Orders").get_record(int(po["id"]), ParameterMap(), HeaderMap())
    assert response.get_status_code() == 200
    wrapper = response.get_object()
    assert isinstance(wrapper, ResponseWrapper)
    record = wrapper.get_data()[0]
    assert str(record.get_id()) == po["id"]
    assert record.get_key_value("Subject") == "PO-00001"
    items = record.get_key_value("Purchase_Items")
    assert len(items) == len(po["Purchase_Items"])
    assert str(items[0].get_key_value("Product_Name").get_id()) == po["Purchase_Items"][0]["Product_Name"]["id"]
    counts = sandbox.log.summary()["counts"]
    assert {k: v for k, v in counts.items() if k != "GET /crm/v8/settings/fields"} == {
        "POST /oauth/v2/token": 1, "GET /crm/v8/users": 1, "GET /crm/v8/org": 1,
        "GET /crm/v8/Purchase_Orders/{id}": 1}
    described = {e.query for e in sandbox.log.entries() if e.path == "/crm/v8/settings/fields"}
    assert {"module=Purchase_Orders", "module=Purchase_Items"} <= described
    assert all(e.status == 200 for e in sandbox.log.entries())
    assert [e.status for e in sandbox.log.entries() if e.path == "/oauth/v2/token"] == [200]


def test_sdk_upserts_on_the_erp_key_twice(served: tuple[ZohoSandbox, str]) -> None:
    sandbox, _base = served
    results: list[Any] = []
    for city in ("Rome", "Turin"):
        record = Record()
        record.add_key_value("Vendor_Name", "SDK Vendor")
        record.add_key_value("ERP_Key", "V-SDK-1")
        record.add_key_value("City", city)
        body = BodyWrapper()
        body.set_data([record])
        body.set_duplicate_check_fields(["ERP_Key"])
        response = RecordOperations("Vendors").upsert_records(body, HeaderMap())
        assert response.get_status_code() == 200
        wrapper = response.get_object()
        assert isinstance(wrapper, ActionWrapper)
        result = wrapper.get_data()[0]
        assert isinstance(result, SuccessResponse), vars(result)
        results.append((result.get_status().get_value(), result.get_code().get_value(),
                        result.get_action().get_value(), result.get_duplicate_field(), result.get_details()["id"]))
    assert [r[:4] for r in results] == [("success", "SUCCESS", "insert", None),
                                        ("success", "SUCCESS", "update", "ERP_Key")]
    assert str(results[0][4]) == str(results[1][4])
    stored = [r for r in sandbox.store.all_raw("Vendors") if r.get("ERP_Key") == "V-SDK-1"]
    assert [(r["Vendor_Name"], r["City"]) for r in stored] == [("SDK Vendor", "Turin")]
