"""Tests of the Adobe Commerce sandbox's HTTP surface: OAuth 1.0a / Bearer / IMS auth, store views, routes and
``searchCriteria`` (in-process through httpx.ASGITransport; facts: shared/api-facts/adobe-commerce-marketo-qad.md §1).

Most tests run against a small fake store (the contract's read interface), so that each expectation is exact.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import httpx
import pytest
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA1, SIGNATURE_HMAC_SHA256, Client

from ml_connector.sandbox.adobe_commerce import AdobeCommerceSandbox, create_adobe_commerce_sandbox
from ml_connector.sandbox.adobe_commerce import credentials as cred
from ml_connector.sandbox.adobe_commerce.app import DEFAULT_CONFIG
from ml_connector.sandbox.core import ManualClock
from ml_connector.sandbox.registry import create_sandbox, default_port
from ml_connector.sandbox.serve import SandboxServer

T = TypeVar("T")
HOST = "https://shop.example.com"
PAAS = f"{HOST}/rest/V1"
SAAS = f"{HOST}/{cred.TENANT_ID}/V1"
START = 1_767_225_600.0  # ManualClock's default: 2026-01-01T00:00:00Z
SC = "searchCriteria"


def _order(entity_id: int, store_id: int, **extra: Any) -> dict[str, Any]:
    base = {"entity_id": entity_id, "increment_id": f"{entity_id:09d}", "store_id": store_id, "state": "new",
            "status": "pending", "customer_email": f"buyer{entity_id}@example.com", "grand_total": 10.0 * entity_id,
            "created_at": f"2025-12-0{entity_id} 10:00:00", "updated_at": f"2025-12-0{entity_id} 12:00:00"}
    return {**base, **extra}


ORDERS = [
    _order(1, 1, customer_id=7, status="complete", customer_email="Ann@Example.com"),
    _order(2, 1, status="processing"),  # a guest order: no customer_id at all
    _order(3, 2, customer_id=8, status="pending"),
    _order(4, 1, customer_id=7, status="canceled"),
    _order(5, 2, status="pending", customer_email="zed@example.org"),
]
PRODUCTS = [
    {"id": 11, "sku": "MB-01", "name": "Bag", "price": 34.0, "status": 1, "type_id": "simple",
     "category_ids": "3,4,12", "created_at": "2025-11-01 00:00:00", "updated_at": "2025-11-02 00:00:00"},
    {"id": 12, "sku": "MB 02-x", "name": "Sling bag", "price": 45.5, "status": 2, "type_id": "simple",
     "category_ids": "4", "created_at": "2025-11-01 00:00:00", "updated_at": "2025-11-03 00:00:00"},
]
CUSTOMERS = [{"id": 7, "email": "ann@example.com", "firstname": "Ann", "lastname": "Lee", "store_id": 1,
              "website_id": 1, "group_id": 1, "created_at": "2025-10-01 00:00:00",
              "updated_at": "2025-10-01 00:00:00"}]
COMPANIES = [{"id": 3, "company_name": "Acme", "status": 1, "company_email": "ops@acme.example",
              "super_user_id": 7, "customer_group_id": 1}]
INVOICES = [{"entity_id": 21, "order_id": 1, "store_id": 1, "increment_id": "000000021", "state": 2,
             "grand_total": 10.0, "created_at": "2025-12-01 11:00:00", "updated_at": "2025-12-01 11:00:00"}]
CREDITMEMOS = [{"entity_id": 31, "order_id": 1, "invoice_id": 21, "store_id": 1, "increment_id": "000000031",
                "grand_total": 10.0, "created_at": "2025-12-01 12:00:00", "updated_at": "2025-12-01 12:00:00"}]


class FakeStore:
    """The contract's read interface over fixed lists (store 1 = ``default``, 2 = ``de``)."""

    STORES = {"default": 1, "de": 2}
    DATA = {"orders": ORDERS, "invoices": INVOICES, "creditmemos": CREDITMEMOS, "customers": CUSTOMERS,
            "companies": COMPANIES, "products": PRODUCTS}

    def records(self, entity: str, store_code: str) -> list[dict[str, Any]]:
        rows = self.DATA[entity]
        if entity in {"products", "companies"} or store_code == "all":
            return copy.deepcopy(rows)
        return [copy.deepcopy(r) for r in rows if r.get("store_id") == self.STORES[store_code]]

    def get(self, entity: str, key: str) -> dict[str, Any] | None:
        field = self.key_field(entity) if entity != "products" else "sku"
        for row in self.DATA[entity]:
            if str(row[field]) == key:
                return copy.deepcopy(row)
        return None

    @staticmethod
    def key_field(entity: str) -> str:
        return "entity_id" if entity in {"orders", "invoices", "creditmemos"} else "id"

    def listen(self, callback: Any) -> None:
        """The admin API hooks its webhook sender here; the fake store never places orders."""

    def __getattr__(self, name: str) -> Any:
        """The admin API's write methods: bound at start, never called by these tests."""
        if not name.startswith(("upsert_", "place_", "invoice_", "refund", "ship_", "update")):
            raise AttributeError(name)

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError(name)

        return refuse


def make(clock: ManualClock | None = None, **config: Any) -> AdobeCommerceSandbox:
    settings = {**copy.deepcopy(DEFAULT_CONFIG), **config}
    return AdobeCommerceSandbox(FakeStore(), settings, clock or ManualClock())  # type: ignore[arg-type]


def run(sandbox: AdobeCommerceSandbox, scenario: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    async def go() -> T:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url=HOST) as client:
            return await scenario(client)

    return asyncio.run(go())


def query(pairs: list[tuple[str, str]] | dict[str, str]) -> str:
    """A query string with RFC 3986 escaping (space = %20), the way a careful client sends it."""
    return urlencode(pairs, quote_via=quote)


def oauth_client(clock: ManualClock, **overrides: Any) -> Client:
    options: dict[str, Any] = {
        "client_secret": cred.CONSUMER_SECRET, "resource_owner_key": cred.ACCESS_TOKEN,
        "resource_owner_secret": cred.ACCESS_TOKEN_SECRET, "signature_method": SIGNATURE_HMAC_SHA256,
        "timestamp": str(int(clock.now)),
    }
    options.update(overrides)
    return Client(cred.CONSUMER_KEY, **options)


def signed(clock: ManualClock, method: str, url: str, **overrides: Any) -> tuple[str, dict[str, str]]:
    """The URL and headers oauthlib's Client produces for this request (HMAC-SHA256, header placement)."""
    uri, headers, _body = oauth_client(clock, **overrides).sign(url, http_method=method)
    return uri, dict(headers)


def get_signed(sandbox: AdobeCommerceSandbox, clock: ManualClock, url: str, **overrides: Any) -> httpx.Response:
    uri, headers = signed(clock, "GET", url, **overrides)

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get(httpx.URL(uri), headers=headers)

    return run(sandbox, scenario)


def get(sandbox: AdobeCommerceSandbox, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get(httpx.URL(url), headers=headers or {})

    return run(sandbox, scenario)


BEARER = {"Authorization": f"Bearer {cred.ACCESS_TOKEN}"}


def bearer_sandbox(**config: Any) -> AdobeCommerceSandbox:
    return make(integration_as_bearer=True, **config)


def ids(response: httpx.Response, key: str = "entity_id") -> list[Any]:
    assert response.status_code == 200, response.text
    return [item[key] for item in response.json()["items"]]


def filters(*groups: list[tuple[str, str, str | None]], camel: bool = False) -> list[tuple[str, str]]:
    """searchCriteria filter pairs: each group a list of (field, value, condition or None)."""
    fg, cond = ("filterGroups", "conditionType") if camel else ("filter_groups", "condition_type")
    out: list[tuple[str, str]] = []
    for g, group in enumerate(groups):
        for f, (field, value, condition) in enumerate(group):
            prefix = f"{SC}[{fg}][{g}][filters][{f}]"
            out += [(f"{prefix}[field]", field), (f"{prefix}[value]", value)]
            if condition is not None:
                out.append((f"{prefix}[{cond}]", condition))
    return out


# -- OAuth 1.0a (facts §1.2) -------------------------------------------------------------------------------------
def test_an_oauth_signed_call_lists_the_default_store_orders() -> None:
    clock = ManualClock()
    sandbox = make(clock)
    url = f"{PAAS}/orders?" + query([*filters([("status", "pending", "neq")]), (f"{SC}[pageSize]", "10"),
                                     (f"{SC}[currentPage]", "1")])
    response = get_signed(sandbox, clock, url)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [o["entity_id"] for o in body["items"]] == [1, 2, 4]
    assert body["total_count"] == 3
    assert body["search_criteria"] == {
        "filter_groups": [{"filters": [{"field": "status", "value": "pending", "condition_type": "neq"}]}],
        "page_size": 10, "current_page": 1}
    assert [(e.method, e.path, e.status) for e in sandbox.log.entries()] == [("GET", "/rest/V1/orders", 200)]


def test_a_signed_call_works_on_a_store_path() -> None:
    clock = ManualClock()
    response = get_signed(make(clock), clock, f"{HOST}/rest/de/V1/orders?" + query(filters([("store_id", "2", None)])))
    assert ids(response) == [3, 5]


def test_a_wrong_secret_is_an_invalid_signature() -> None:
    clock = ManualClock()
    response = get_signed(make(clock), clock, f"{PAAS}/orders?{SC}=", client_secret="x" * 32)
    assert response.status_code == 401
    assert response.json() == {"message": "The signature is invalid. Verify and try again."}


def test_a_raw_equals_sign_in_a_query_value_is_not_signed_by_the_server() -> None:
    """Magento drops a query pair with a second raw ``=`` from the base string; oauthlib signs it: mismatch."""
    clock = ManualClock()
    sandbox = make(clock)
    prefix = quote(f"{SC}[filter_groups][0][filters][0]")  # oauthlib signs only %-encoded brackets
    raw = f"{PAAS}/orders?{prefix}%5Bfield%5D=customer_email&{prefix}%5Bvalue%5D=a=b"
    assert get_signed(sandbox, clock, raw).status_code == 401
    encoded = raw.replace("=a=b", "=a%3Db")
    assert get_signed(sandbox, clock, encoded).status_code == 200


def test_a_plus_in_the_query_is_a_literal_plus_for_the_signature() -> None:
    """The server rawurldecodes query pairs ('+' stays '+'), oauthlib reads '+' as a space: only %20 works."""
    clock = ManualClock()
    sandbox = make(clock)
    prefix = quote(f"{SC}[filter_groups][0][filters][0]")
    plus = f"{PAAS}/products?{prefix}%5Bfield%5D=name&{prefix}%5Bvalue%5D=Sling+bag"
    assert get_signed(sandbox, clock, plus).status_code == 401
    response = get_signed(sandbox, clock, plus.replace("Sling+bag", "Sling%20bag"))
    assert ids(response, "sku") == ["MB 02-x"]


def test_a_nonce_is_single_use_even_after_a_refused_signature() -> None:
    clock = ManualClock()
    sandbox = make(clock)
    url = f"{PAAS}/orders?{SC}="
    first = get_signed(sandbox, clock, url, nonce="n0nce1", client_secret="y" * 32)
    assert first.status_code == 401  # bad signature, but the nonce is stored first (as Magento does)
    again = get_signed(sandbox, clock, url, nonce="n0nce1")
    assert again.status_code == 401
    assert again.json() == {"message": "The nonce is already being used by the consumer with ID %1",
                            "parameters": [cred.CONSUMER_ID]}
    assert get_signed(sandbox, clock, url, nonce="n0nce2").status_code == 200


def test_a_timestamp_more_than_600_s_ahead_is_refused_and_a_past_one_is_fine() -> None:
    clock = ManualClock()
    sandbox = make(clock)
    url = f"{PAAS}/orders?{SC}="
    ahead = get_signed(sandbox, clock, url, timestamp=str(int(clock.now) + 601))
    # NonceGenerator::validateNonce wraps its OauthInputException into "An error occurred validating the nonce"
    assert ahead.status_code == 401
    assert ahead.json() == {"message": "An error occurred validating the nonce"}
    assert get_signed(sandbox, clock, url, timestamp=str(int(clock.now) + 600)).status_code == 200
    assert get_signed(sandbox, clock, url, timestamp=str(int(clock.now) - 86_400)).status_code == 200
    direct = make(clock, oauth_timestamp_error="direct")
    refused = get_signed(direct, clock, url, timestamp=str(int(clock.now) + 601))
    assert refused.status_code == 400
    assert refused.json() == {"message": "Incorrect timestamp value in the oauth_timestamp parameter"}


def test_only_hmac_sha256_is_supported() -> None:
    clock = ManualClock()
    response = get_signed(make(clock), clock, f"{PAAS}/orders?{SC}=", signature_method=SIGNATURE_HMAC_SHA1)
    assert response.status_code == 400
    assert response.json() == {"message": "Signature method %1 is not supported", "parameters": ["HMAC-SHA1"]}


def test_a_missing_oauth_parameter_is_named() -> None:
    clock = ManualClock()
    sandbox = make(clock)
    uri, headers = signed(clock, "GET", f"{PAAS}/orders?{SC}=")
    params = headers["Authorization"].removeprefix("OAuth ").split(", ")
    header = "OAuth " + ", ".join(p for p in params if not p.startswith("oauth_nonce="))
    response = get(sandbox, uri, {"Authorization": header})
    assert response.status_code == 400
    assert response.json() == {"message": '"%fieldName" is required. Enter and try again.',
                               "parameters": {"fieldName": "oauth_nonce"}}


def test_unknown_consumer_and_token_are_refused() -> None:
    clock = ManualClock()
    sandbox = make(clock)
    url = f"{PAAS}/orders?{SC}="
    bad_token = get_signed(sandbox, clock, url, resource_owner_key="z" * 32)
    assert (bad_token.status_code, bad_token.json()["message"]) == (401, "Specified token does not exist")
    short = get_signed(sandbox, clock, url, resource_owner_key="short")
    assert (short.status_code, short.json()["message"]) == (
        400, "The token length is invalid. Check the length and try again.")
    uri, headers = signed(clock, "GET", url)
    other_key = headers["Authorization"].replace(cred.CONSUMER_KEY, "q" * 32)
    response = get(sandbox, uri, {"Authorization": other_key})
    assert (response.status_code, response.json()["message"]) == (
        401, "A consumer having the specified key does not exist")


# -- Bearer and guests (facts §1.2, §1.5) -----------------------------------------------------------------------
def test_the_integration_token_is_no_bearer_token_by_default() -> None:
    response = get(make(), f"{PAAS}/orders?{SC}=", BEARER)
    assert response.status_code == 401
    assert response.json() == {"message": "The consumer isn't authorized to access %resources.",
                               "parameters": {"resources": "Magento_Sales::actions_view"}}
    assert ids(get(bearer_sandbox(), f"{PAAS}/orders?{SC}=", BEARER)) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(("path", "resource"), [
    ("/orders/1", "Magento_Sales::actions_view"), ("/invoices?searchCriteria=", "Magento_Sales::sales_invoice"),
    ("/creditmemo/31", "Magento_Sales::sales_creditmemo"), ("/customers/search?searchCriteria=",
                                                           "Magento_Customer::customer"),
    ("/products/MB-01", "Magento_Catalog::products"), ("/company/", "Magento_Company::index"),
])
def test_a_guest_or_unknown_bearer_gets_the_acl_refusal_of_the_route(path: str, resource: str) -> None:
    sandbox = bearer_sandbox()
    for headers in ({}, {"Authorization": "Bearer " + "n" * 32}):
        response = get(sandbox, f"{PAAS}{path}", headers)
        assert response.status_code == 401
        assert response.json()["parameters"] == {"resources": resource}


# -- IMS and the SaaS surface (facts §1.1, §1.4) ----------------------------------------------------------------
IMS_FORM = {"grant_type": "client_credentials", "client_id": cred.IMS_CLIENT_ID,
            "client_secret": cred.IMS_CLIENT_SECRET,
            "scope": "openid,AdobeID,email,profile,additional_info.roles,commerce.accs"}


def ims_token(client: httpx.AsyncClient, **form: str) -> Awaitable[httpx.Response]:
    return client.post(f"{HOST}/ims/token/v3", data={**IMS_FORM, **form})


def test_an_ims_token_reads_the_saas_api_with_a_store_header_until_it_expires() -> None:
    clock = ManualClock()
    sandbox = make(clock, store_view_filters_lists=True)

    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        issued = await ims_token(client)
        assert issued.status_code == 200
        body = issued.json()
        assert (body["token_type"], body["expires_in"]) == ("bearer", 86399)
        auth = {"Authorization": f"Bearer {body['access_token']}", "x-api-key": cred.IMS_CLIENT_ID}
        no_key = await client.get(f"{SAAS}/orders?{SC}=", headers={"Authorization": auth["Authorization"]})
        assert (no_key.status_code, no_key.json()) == (403, {"error_code": "403000", "message": "Api Key is required"})
        wrong = await client.get(f"{SAAS}/orders?{SC}=", headers={**auth, "x-api-key": "other"})
        assert (wrong.status_code, wrong.json()["error_code"]) == (403, "403003")
        default = await client.get(f"{SAAS}/orders?{SC}=", headers=auth)
        german = await client.get(f"{SAAS}/orders?{SC}=", headers={**auth, "Store": "de"})
        unknown = await client.get(f"{SAAS}/orders?{SC}=", headers={**auth, "Store": "xx"})
        on_paas = await client.get(f"{PAAS}/orders?{SC}=", headers=auth)
        clock.advance(86_398)
        late = await client.get(f"{SAAS}/orders/1", headers=auth)
        clock.advance(1)
        expired = await client.get(f"{SAAS}/orders/1", headers=auth)
        return [ids(default), ids(german), unknown.status_code, unknown.json(), on_paas.status_code,
                late.status_code, expired.status_code, expired.json()["message"]]

    assert run(sandbox, scenario) == [
        [1, 2, 4], [3, 5], 400, {"message": "The store that was requested wasn't found. Verify the store and try "
                                            "again."},
        401, 200, 401, "The consumer isn't authorized to access %resources."]


def test_ims_refuses_bad_clients_and_scopes() -> None:
    async def scenario(client: httpx.AsyncClient) -> list[tuple[int, str]]:
        out = []
        for form in ({"client_secret": "wrong"}, {"client_id": "nobody"}, {"scope": "openid,AdobeID"},
                     {"grant_type": "password"}):
            response = await ims_token(client, **form)
            out.append((response.status_code, response.json()["error"]))
        return out

    assert run(make(), scenario) == [(401, "invalid_client"), (401, "invalid_client"), (400, "invalid_scope"),
                                     (400, "unsupported_grant_type")]


def test_oauth_signatures_do_not_open_the_saas_surface() -> None:
    clock = ManualClock()
    uri, headers = signed(clock, "GET", f"{SAAS}/orders?{SC}=")
    response = get(make(clock), uri, {**headers, "x-api-key": cred.IMS_CLIENT_ID})
    assert (response.status_code, response.json()["parameters"]) == (401, {"resources": "Magento_Sales::actions_view"})
    assert get(make(clock, saas_require_api_key=False), uri, headers).status_code == 401


def test_an_unknown_tenant_is_no_route() -> None:
    response = get(bearer_sandbox(), f"{HOST}/otherTenant/V1/orders?{SC}=", BEARER)
    assert (response.status_code, response.json()) == (404, {"message": "Request does not match any route."})


# -- routes, store codes, by-id reads (facts §1.7, §1.9) ---------------------------------------------------------
def test_store_codes_in_paas_paths() -> None:
    """By default a store view does not filter sales or customer lists (their repositories add no store filter)."""
    sandbox = bearer_sandbox()
    for code in ("default", "de", "all"):
        assert ids(get(sandbox, f"{HOST}/rest/{code}/V1/orders?{SC}=", BEARER)) == [1, 2, 3, 4, 5]
    assert ids(get(sandbox, f"{HOST}/rest/de/V1/customers/search?{SC}=", BEARER), "id") == [7]
    filtering = bearer_sandbox(store_view_filters_lists=True)
    assert ids(get(filtering, f"{HOST}/rest/default/V1/orders?{SC}=", BEARER)) == [1, 2, 4]
    assert ids(get(filtering, f"{HOST}/rest/de/V1/orders?{SC}=", BEARER)) == [3, 5]
    assert ids(get(filtering, f"{HOST}/rest/de/V1/customers/search?{SC}=", BEARER), "id") == []
    unknown = get(sandbox, f"{HOST}/rest/xx/V1/orders?{SC}=", BEARER)  # the code stays in the path: no route
    assert (unknown.status_code, unknown.json()) == (404, {"message": "Request does not match any route."})


def test_by_id_reads_and_their_not_found_messages() -> None:
    sandbox = bearer_sandbox()
    assert get(sandbox, f"{PAAS}/orders/3", BEARER).json()["increment_id"] == "000000003"
    assert get(sandbox, f"{PAAS}/invoices/21", BEARER).json()["order_id"] == 1
    assert get(sandbox, f"{PAAS}/creditmemo/31", BEARER).json()["invoice_id"] == 21
    assert get(sandbox, f"{PAAS}/customers/7", BEARER).json()["email"] == "ann@example.com"
    assert get(sandbox, f"{PAAS}/company/3", BEARER).json()["company_name"] == "Acme"
    assert get(sandbox, f"{PAAS}/products/MB%2002-x", BEARER).json()["id"] == 12
    entity = {"message": "The entity that was requested doesn't exist. Verify the entity and try again."}
    cases = {
        "/orders/99": (404, entity), "/invoices/99": (404, entity), "/creditmemo/99": (404, entity),
        "/customers/99": (404, {"message": "No such entity with %fieldName = %fieldValue",
                                "parameters": {"fieldName": "customerId", "fieldValue": 99}}),
        "/company/99": (404, {"message": "No such entity with %fieldName = %fieldValue",
                              "parameters": {"fieldName": "id", "fieldValue": 99}}),
        "/products/NOPE": (404, {"message": "The product that was requested doesn't exist. Verify the product and "
                                            "try again."}),
        "/orders/abc": (400, {"message": "The \"%value\" value's type is invalid. The \"%type\" type was expected. "
                                         "Verify and try again.", "parameters": {"value": "abc", "type": "int"}}),
        "/orders/0": (400, {"message": "An ID is needed. Set the ID and try again."}),
    }
    for path, (status, body) in cases.items():
        response = get(sandbox, f"{PAAS}{path}", BEARER)
        assert (path, response.status_code, response.json()) == (path, status, body)


def test_unknown_routes_methods_and_missing_search_criteria() -> None:
    sandbox = bearer_sandbox()
    no_route = {"message": "Request does not match any route."}

    async def scenario(client: httpx.AsyncClient) -> list[tuple[int, Any]]:
        out = []
        for method, path in (("GET", "/nothing"), ("GET", "/orders/1/items"), ("POST", "/orders"),
                             ("DELETE", "/products/MB-01"), ("PATCH", "/orders/1"), ("GET", "/orders")):
            response = await client.request(method, f"{PAAS}{path}", headers=BEARER)
            out.append((response.status_code, response.json()))
        return out

    assert run(sandbox, scenario) == [
        (404, no_route), (404, no_route), (404, no_route), (404, no_route),
        (400, {"message": "Request method is invalid."}),
        (400, {"message": '"%fieldName" is required. Enter and try again.',
               "parameters": {"fieldName": "searchCriteria"}}),
    ]


# -- searchCriteria (facts §1.6) --------------------------------------------------------------------------------
def search(path: str, pairs: list[tuple[str, str]], **config: Any) -> httpx.Response:
    return get(bearer_sandbox(**config), f"{HOST}/rest/all/V1{path}?" + query(pairs), BEARER)


def test_filters_in_a_group_are_or_and_groups_are_and_in_snake_and_camel_case() -> None:
    groups = ([("status", "pending", None), ("status", "processing", "eq")], [("store_id", "2", "eq")])
    assert ids(search("/orders", filters(*groups))) == [3, 5]
    assert ids(search("/orders", filters(*groups, camel=True))) == [3, 5]
    assert ids(search("/orders", filters(groups[0]))) == [2, 3, 5]


@pytest.mark.parametrize(("filter_", "expected"), [
    (("customer_email", "%@example.com", "like"), [1, 2, 3, 4]),  # case-insensitive, like MySQL's collation
    (("customer_email", "%example.org", "nlike"), [1, 2, 3, 4]),
    (("customer_email", "ann@example.com", "eq"), [1]),
    (("status", "pending,canceled", "in"), [3, 4, 5]),
    (("status", "pending,canceled", "nin"), [1, 2]),
    (("customer_id", "", "null"), [2, 5]),
    (("customer_id", "", "notnull"), [1, 3, 4]),
    (("customer_id", "7", "neq"), [3]),  # SQL: a NULL column matches no comparison
    (("customer_id", "8", "nin"), [1, 4]),
    (("grand_total", "30", "gt"), [4, 5]), (("grand_total", "30", "gteq"), [3, 4, 5]),
    (("grand_total", "30", "moreq"), [3, 4, 5]), (("grand_total", "30", "lt"), [1, 2]),
    (("grand_total", "30", "lteq"), [1, 2, 3]), (("entity_id", "10", "lt"), [1, 2, 3, 4, 5]),  # numeric, not text
    (("updated_at", "2025-12-03 12:00:00", "from"), [3, 4, 5]),
    (("updated_at", "2025-12-03 11:59:59", "to"), [1, 2]),
    (("increment_id", "000000004", "gteq"), [4, 5]),
])
def test_condition_types(filter_: tuple[str, str, str], expected: list[int]) -> None:
    assert ids(search("/orders", filters([filter_]))) == expected


def test_a_range_needs_two_groups_because_filters_in_one_group_are_ored() -> None:
    low, high = ("updated_at", "2025-12-02 00:00:00", "from"), ("updated_at", "2025-12-03 23:59:59", "to")
    assert ids(search("/orders", filters([low], [high]))) == [2, 3]
    assert ids(search("/orders", filters([low, high]))) == [1, 2, 3, 4, 5]


def test_finset_and_like_on_products() -> None:
    assert ids(search("/products", filters([("category_ids", "4", "finset")])), "sku") == ["MB-01", "MB 02-x"]
    assert ids(search("/products", filters([("category_ids", "12", "finset")])), "sku") == ["MB-01"]
    assert ids(search("/products", filters([("category_ids", "12", "nfinset")])), "sku") == ["MB 02-x"]
    assert ids(search("/products", filters([("category_ids", "1", "finset")])), "sku") == []
    assert ids(search("/products", filters([("name", "bag", "like")])), "sku") == ["MB-01"]  # no %: exact
    assert ids(search("/products", filters([("sku", "MB_0%", "like")])), "sku") == ["MB-01", "MB 02-x"]


def test_sort_orders_default_to_descending() -> None:
    pairs = [(f"{SC}[sortOrders][0][field]", "store_id"), (f"{SC}[sortOrders][0][direction]", "asc"),
             (f"{SC}[sortOrders][1][field]", "entity_id")]
    response = search("/orders", pairs)
    assert ids(response) == [4, 2, 1, 5, 3]
    assert response.json()["search_criteria"]["sort_orders"] == [{"field": "store_id", "direction": "ASC"},
                                                                 {"field": "entity_id"}]
    assert ids(search("/orders", [(f"{SC}[sort_orders][0][field]", "grand_total")])) == [5, 4, 3, 2, 1]
    bad = search("/orders", [(f"{SC}[sortOrders][0][field]", "entity_id"), (f"{SC}[sortOrders][0][direction]", "UP")])
    assert bad.status_code == 400


def test_page_size_limits_and_paging() -> None:
    too_big = search("/orders", [(f"{SC}[pageSize]", "301")])
    assert (too_big.status_code, too_big.json()) == (400, {"message": "Maximum SearchCriteria pageSize is %max",
                                                           "parameters": {"max": 300}})
    assert search("/orders", [(f"{SC}[pageSize]", "301")], input_limit_enabled=False).status_code == 200
    page = search("/orders", [(f"{SC}[pageSize]", "2"), (f"{SC}[currentPage]", "2")])
    assert (ids(page), page.json()["total_count"]) == ([3, 4], 5)
    first = search("/orders", [(f"{SC}[page_size]", "2"), (f"{SC}[current_page]", "0")])
    assert ids(first) == [1, 2]
    clamp = search("/orders", [(f"{SC}[pageSize]", "2"), (f"{SC}[currentPage]", "9")])
    assert (ids(clamp), clamp.json()["total_count"], clamp.json()["search_criteria"]["current_page"]) == ([5], 5, 9)
    empty = search("/orders", [(f"{SC}[pageSize]", "2"), (f"{SC}[currentPage]", "9")], out_of_range_page="empty")
    assert (ids(empty), empty.json()["total_count"]) == ([], 5)


def test_a_missing_page_size_is_20_with_input_limits_and_everything_without() -> None:
    orders = [_order(i, 1) | {"created_at": "2025-12-01 00:00:00"} for i in range(1, 26)]
    for limits, expected in ((True, 20), (False, 25)):
        sandbox = bearer_sandbox(input_limit_enabled=limits)
        sandbox.store.DATA = {**FakeStore.DATA, "orders": orders}  # type: ignore[attr-defined]
        body = get(sandbox, f"{PAAS}/orders?{SC}=", BEARER).json()
        assert (len(body["items"]), body["total_count"]) == (expected, 25)
        assert "page_size" not in body["search_criteria"]  # echoed only when sent (2.4.4+)


def test_fields_projection() -> None:
    pairs = [*filters([("store_id", "2", None)]), ("fields", "items[entity_id,increment_id],total_count")]
    assert search("/orders", pairs).json() == {
        "items": [{"entity_id": 3, "increment_id": "000000003"}, {"entity_id": 5, "increment_id": "000000005"}],
        "total_count": 2}
    one = get(bearer_sandbox(), f"{PAAS}/orders/3?fields=entity_id,status", BEARER)
    assert one.json() == {"entity_id": 3, "status": "pending"}


def test_filters_on_unknown_fields_and_unknown_criteria_keys_are_refused() -> None:
    unknown_field = search("/orders", filters([("colour", "red", "eq")]))
    assert (unknown_field.status_code, unknown_field.json()) == (
        400, {"message": "Invalid attribute name: %1", "parameters": ["colour"]})
    unknown_key = search("/orders", [(f"{SC}[filter_group][0][filters][0][field]", "status")])
    assert unknown_key.status_code == 400
    unknown_condition = search("/orders", filters([("status", "x", "regexp")]))
    assert unknown_condition.status_code == 400


# -- the real store, the factory and the registry ----------------------------------------------------------------
def test_the_registry_creates_a_seeded_sandbox_whose_lists_agree_with_its_store() -> None:
    clock = ManualClock()
    sandbox = create_sandbox("adobe_commerce", customers=6, companies=2, products=5, orders=12, clock=clock,
                             integration_as_bearer=True)
    assert isinstance(sandbox, AdobeCommerceSandbox) and default_port("adobe_commerce") == 8706
    store = sandbox.store
    for path, entity, key in (("/orders", "orders", "entity_id"), ("/invoices", "invoices", "entity_id"),
                              ("/creditmemos", "creditmemos", "entity_id"), ("/customers/search", "customers", "id"),
                              ("/company/", "companies", "id"), ("/products", "products", "id")):
        for code in ("default", "de", "all"):
            scoped = entity in {"products", "companies"}  # store views filter no other list (by default)
            expected = [r[key] for r in store.records(entity, code if scoped else "all")]
            body = get(sandbox, f"{HOST}/rest/{code}/V1{path}?{SC}[pageSize]=300", BEARER).json()
            assert ([item[key] for item in body["items"]], body["total_count"]) == (expected, len(expected))
    order = store.records("orders", "all")[0]
    one = get(sandbox, f"{PAAS}/orders/{order['entity_id']}", BEARER).json()
    assert one == order
    product = store.records("products", "all")[0]
    assert get(sandbox, f"{PAAS}/products/{quote(product['sku'])}", BEARER).json() == product


def test_the_factory_refuses_unknown_config_keys() -> None:
    with pytest.raises(TypeError, match="unknown adobe_commerce sandbox config keys"):
        create_adobe_commerce_sandbox(colour="red")


def test_an_incremental_read_by_updated_at_pages_through_the_seeded_orders() -> None:
    """What the connector does: updated_at >= watermark, sorted by updated_at then entity_id, 5 per page."""
    clock = ManualClock()
    sandbox = create_adobe_commerce_sandbox(customers=4, products=3, orders=12, clock=clock)
    everything = sandbox.store.records("orders", "all")
    watermark = sorted(o["updated_at"] for o in everything)[3]
    expected = sorted((o for o in everything if o["updated_at"] >= watermark),
                      key=lambda o: (o["updated_at"], o["entity_id"]))
    seen: list[int] = []
    for page in (1, 2, 3, 4):
        pairs = [*filters([("updated_at", watermark, "gteq")]),
                 (f"{SC}[sortOrders][0][field]", "updated_at"), (f"{SC}[sortOrders][0][direction]", "ASC"),
                 (f"{SC}[sortOrders][1][field]", "entity_id"), (f"{SC}[sortOrders][1][direction]", "ASC"),
                 (f"{SC}[pageSize]", "5"), (f"{SC}[currentPage]", str(page))]
        response = get_signed(sandbox, clock, f"{HOST}/rest/all/V1/orders?" + query(pairs))
        body = response.json()
        assert body["total_count"] == len(expected)
        seen += [o["entity_id"] for o in body["items"]]
    # the last page is served again past the end (clamp): a reader must stop on total_count
    assert seen[: len(expected)] == [o["entity_id"] for o in expected]
    assert len(seen) > len(expected)


def test_over_real_http_the_signed_url_keeps_its_port() -> None:
    """uvicorn on a random port: the base string names host:port, as a client signing the real URL does."""
    clock = ManualClock()
    sandbox = create_adobe_commerce_sandbox(customers=2, products=2, orders=3, clock=clock)
    server = SandboxServer()
    try:
        served = server.start("adobe_commerce", sandbox)
        url = f"{served.url}/rest/default/V1/orders?" + query([*filters([("status", "canceled", "neq")]),
                                                                (f"{SC}[pageSize]", "300")])
        uri, headers = signed(clock, "GET", url)
        with httpx.Client() as client:
            response = client.get(httpx.URL(uri), headers=headers)
            assert response.status_code == 200, response.text
            expected = [o["entity_id"] for o in sandbox.store.records("orders", "all") if o["status"] != "canceled"]
            assert ids(response) == expected
            token = client.post(f"{served.url}/ims/token/v3", data=IMS_FORM).json()["access_token"]
            saas = client.get(f"{served.url}/{cred.TENANT_ID}/V1/orders?" + query(filters([("store_id", "2", None)])),
                              headers={"Authorization": f"Bearer {token}", "Store": "de",
                                       "x-api-key": cred.IMS_CLIENT_ID})
            assert ids(saas) == [o["entity_id"] for o in sandbox.store.records("orders", "de")]
    finally:
        server.stop()


class ViewStore(FakeStore):
    """A store offering ``view()`` (uncopied rows): the sandbox must use it and copy only the page it answers."""

    def records(self, entity: str, store_code: str) -> list[dict[str, Any]]:
        raise AssertionError("records() copies every row: view() must be used")

    def view(self, entity: str, store_code: str) -> list[dict[str, Any]]:
        rows = self.DATA[entity]
        if entity in {"products", "companies"} or store_code == "all":
            return list(rows)
        return [r for r in rows if r.get("store_id") == self.STORES[store_code]]


def test_a_store_view_is_searched_without_copying_and_answers_are_copies() -> None:
    settings = {**copy.deepcopy(DEFAULT_CONFIG), "integration_as_bearer": True}
    sandbox = AdobeCommerceSandbox(ViewStore(), settings, ManualClock())  # type: ignore[arg-type]
    response = get(sandbox, f"{PAAS}/orders?" + query([*filters([("status", "pending", "neq")]),
                                                       (f"{SC}[pageSize]", "2")]), BEARER)
    assert ids(response) == [1, 2]
    assert response.json()["items"][0] == ORDERS[0]
