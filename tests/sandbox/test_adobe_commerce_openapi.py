"""The Commerce sandbox answers what Adobe's OpenAPI file says (``admin-schema-2.4.8.yaml``, Swagger 2.0).

Two checks per body:
- *vendor*: JSON Schema validation against the definition the path's 200 answer names, ``additionalProperties`` as
  the vendor file says (unset: extra fields allowed). One adaptation: a property in a definition's ``required`` list
  may be ``null``: Magento's ``DataObjectProcessor`` leaves out a getter's null value unless the getter is declared
  non-nullable, and then it sends ``null`` (``payment.account_status``, a company's ``rejected_at``); the
  generator turns exactly those getters into ``required``, and Swagger 2.0 cannot say "nullable".
- *declared*: every field the sandbox sends is declared in the definition (Commerce serialises interface getters
  only), so a misspelt or invented field fails here even though the vendor file would let it through.

The bodies come through the sandbox's app when ``create_adobe_commerce_sandbox`` exists (Bearer-enabled
integration token), else straight from the store.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from ml_connector.sandbox.adobe_commerce.seed import seed_store
from ml_connector.sandbox.adobe_commerce.store import CommerceStore
from ml_connector.sandbox.core import ManualClock

SPEC_FILE = Path("/work/shared/vendor-specs/adobe-commerce/admin-schema-2.4.8.yaml")
COUNTS = {"customers": 12, "companies": 3, "products": 10, "orders": 40, "seed": 11}
BY_ID = [("/V1/orders/{id}", "orders"), ("/V1/invoices/{id}", "invoices"), ("/V1/creditmemo/{id}", "creditmemos"),
         ("/V1/customers/{customerId}", "customers"), ("/V1/company/{companyId}", "companies"),
         ("/V1/products/{sku}", "products")]
LISTS = [("/V1/orders", "orders"), ("/V1/invoices", "invoices"), ("/V1/creditmemos", "creditmemos"),
         ("/V1/customers/search", "customers"), ("/V1/company/", "companies"), ("/V1/products", "products")]

pytestmark = pytest.mark.skipif(not SPEC_FILE.exists(), reason="the vendor OpenAPI file is not on this machine")


def _nullable_required(definitions: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(definitions)
    for definition in out.values():
        for name in definition.get("required", []):
            prop = definition.get("properties", {}).get(name)
            if prop is not None and isinstance(prop.get("type"), str):
                prop["type"] = [prop["type"], "null"]
    return out


def _closed(definitions: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(definitions)
    for definition in out.values():
        if definition.get("type") == "object" and "properties" in definition:
            definition["additionalProperties"] = False
    return out


class Spec:
    """The vendor file, loaded once, with a validator factory per check."""

    def __init__(self) -> None:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        with SPEC_FILE.open() as handle:
            document = yaml.load(handle, Loader=loader)  # noqa: S506 - a safe loader
        self.paths: dict[str, Any] = document["paths"]
        self.vendor = _nullable_required(document["definitions"])
        self.declared = _closed(self.vendor)

    def answer_ref(self, path: str) -> str:
        ref: str = self.paths[path]["get"]["responses"]["200"]["schema"]["$ref"]
        return ref

    def errors(self, path: str, body: Any, *, declared: bool = False) -> list[str]:
        schema = {"definitions": self.declared if declared else self.vendor, "$ref": self.answer_ref(path)}
        validator = jsonschema.Draft4Validator(schema)
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)][:10]


@pytest.fixture(scope="module")
def spec() -> Spec:
    return Spec()


def _factory() -> Any:
    try:
        module = importlib.import_module("ml_connector.sandbox.adobe_commerce")
    except ImportError:
        return None
    return getattr(module, "create_adobe_commerce_sandbox", None)


class Bodies:
    """GET answers by vendor path, through the app when there is one."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        factory = _factory()
        if factory is None:
            self.store = CommerceStore(self.clock)
            seed_store(self.store, **COUNTS)
            self.client: _SyncASGI | None = None
        else:
            from ml_connector.sandbox.adobe_commerce.credentials import ACCESS_TOKEN

            sandbox = factory(clock=self.clock, integration_as_bearer=True, **COUNTS)
            self.store = sandbox.store
            self.client = _SyncASGI(sandbox, {"Authorization": f"Bearer {ACCESS_TOKEN}"})

    def one(self, path: str, entity: str, key: str) -> Any:
        if self.client is None:
            return self.store.get(entity, key)
        name = path.rsplit("{", 1)[0]
        response = self.client.get(f"/rest/default{name}{key}")
        assert response.status_code == 200, response.text
        return response.json()

    def many(self, path: str, entity: str) -> Any:
        if self.client is None:
            items = self.store.records(entity, "default")
            return {"items": items, "search_criteria": {"filter_groups": []}, "total_count": len(items)}
        response = self.client.get(f"/rest/default{path}", params={"searchCriteria[pageSize]": "200",
                                                                    "searchCriteria[currentPage]": "1"})
        assert response.status_code == 200, response.text
        return response.json()


class _SyncASGI:
    """A small sync facade over ``httpx.ASGITransport`` (one event loop per request is fine for a few GETs)."""

    def __init__(self, app: Any, headers: dict[str, str]) -> None:
        self.app, self.headers = app, headers

    def get(self, url: str, params: dict[str, str] | None = None) -> httpx.Response:
        import asyncio

        async def fetch() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://commerce.test",
                                         headers=self.headers) as client:
                response = await client.get(url, params=params)
                await response.aread()
                return response

        return asyncio.run(fetch())


@pytest.fixture(scope="module")
def bodies() -> Iterator[Bodies]:
    yield Bodies()


def _keys(bodies: Bodies, entity: str) -> list[str]:
    field = "sku" if entity == "products" else CommerceStore.key_field(entity)
    records = bodies.store.records(entity, "default" if entity not in ("products", "companies") else "all")
    assert records, f"the seed made no {entity} in the default store view"
    return [str(r[field]) for r in records[:8]]


@pytest.mark.parametrize(("path", "entity"), BY_ID, ids=[e for _, e in BY_ID])
def test_by_id_answers_validate(spec: Spec, bodies: Bodies, path: str, entity: str) -> None:
    for key in _keys(bodies, entity):
        body = bodies.one(path, entity, key)
        assert spec.errors(path, body) == [], (entity, key)
        assert spec.errors(path, body, declared=True) == [], (entity, key)


@pytest.mark.parametrize(("path", "entity"), LISTS, ids=[e for _, e in LISTS])
def test_list_answers_validate(spec: Spec, bodies: Bodies, path: str, entity: str) -> None:
    body = bodies.many(path, entity)
    assert body["items"], entity
    assert spec.errors(path, body) == []
    assert spec.errors(path, body, declared=True) == []


def test_the_checks_catch_a_wrong_body(spec: Spec, bodies: Bodies) -> None:
    """The two checks can fail: a wrong type, a missing required field and an invented field are each caught."""
    order = bodies.store.get("orders", _keys(bodies, "orders")[0])
    assert order is not None
    wrong_type = {**order, "increment_id": 1}
    assert any("increment_id" in e for e in spec.errors("/V1/orders/{id}", wrong_type))
    missing = {k: v for k, v in order.items() if k != "customer_email"}
    assert any("customer_email" in e for e in spec.errors("/V1/orders/{id}", missing))
    invented = {**order, "order_number": "1"}
    assert spec.errors("/V1/orders/{id}", invented) == []
    assert any("order_number" in e for e in spec.errors("/V1/orders/{id}", invented, declared=True))
    nested = copy.deepcopy(order)
    nested["items"][0]["quantity"] = 1
    assert any("quantity" in e for e in spec.errors("/V1/orders/{id}", nested, declared=True))


def test_seed_covers_every_shape(bodies: Bodies) -> None:
    """The validated sample holds guest and customer orders, B2B members and credit memos with adjustments."""
    orders = bodies.store.records("orders", "default")
    assert {o["customer_is_guest"] for o in orders} == {0, 1}
    assert {"new", "processing", "complete", "closed"} <= {o["state"] for o in orders}
    customers = bodies.store.records("customers", "all")
    assert any("company_attributes" in c["extension_attributes"] for c in customers)


def test_bodies_come_through_the_app_once_it_exists(bodies: Bodies) -> None:
    assert (bodies.client is not None) == (_factory() is not None)
    if bodies.client is not None:  # and a guest is refused, so the Bearer header above is what opened the reads
        guest = _SyncASGI(bodies.client.app, {}).get("/rest/default/V1/orders/1")
        assert guest.status_code == 401
