"""Tests of the Zoho sandbox's COQL: the parser (pure) and the `/crm/v8/coql` route."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from ml_connector.sandbox.core import ManualClock
from ml_connector.sandbox.zoho import coql
from ml_connector.sandbox.zoho.common import ApiError, Org, zoho_error
from ml_connector.sandbox.zoho.coql import And, Cond, CoqlError, Or, parse
from ml_connector.sandbox.zoho.metadata import build_catalog
from ml_connector.sandbox.zoho.store import ZohoStore


def error_of(text: str) -> tuple[str, dict[str, Any]]:
    with pytest.raises(CoqlError) as caught:
        parse(text)
    return caught.value.code, caught.value.details


# --- parser -------------------------------------------------------------------------------------------------------


def test_parse_full_query() -> None:
    q = parse(
        "select id, Product_Code, Vendor_Name.Vendor_Name from Products "
        "where Modified_Time > '2024-06-01T00:00:00+00:00' order by Modified_Time asc, id desc limit 2000 offset 400"
    )
    assert q.columns == ["id", "Product_Code", "Vendor_Name.Vendor_Name"]
    assert q.module == "Products"
    assert q.where == Cond("Modified_Time", ">", "2024-06-01T00:00:00+00:00")
    assert q.order_by == [("Modified_Time", False), ("id", True)]
    assert (q.limit, q.offset) == (2000, 400)


def test_keywords_are_case_insensitive_and_defaults() -> None:
    q = parse("SELECT id FROM Vendors WHERE id IS NOT NULL")
    assert q.where == Cond("id", "is not null", None)
    assert (q.limit, q.offset, q.order_by) == (200, 0, [])


def test_comparators() -> None:
    assert parse("select id from P where a != 'x'").where == Cond("a", "!=", "x")
    assert parse("select id from P where a <= 10").where == Cond("a", "<=", 10)
    assert parse("select id from P where a >= 1.5").where == Cond("a", ">=", 1.5)
    assert parse("select id from P where a between 1 and 5").where == Cond("a", "between", (1, 5))
    assert parse("select id from P where a not between '1' and '5'").where == Cond("a", "not between", ("1", "5"))
    assert parse("select id from P where a in ('x', 'y')").where == Cond("a", "in", ("x", "y"))
    assert parse("select id from P where a not in ('x')").where == Cond("a", "not in", ("x",))
    assert parse("select id from P where a is null").where == Cond("a", "is null", None)
    assert parse("select id from P where a like '%ab%'").where == Cond("a", "like", "%ab%")
    assert parse("select id from P where a not like 'ab%'").where == Cond("a", "not like", "ab%")
    assert parse("select id from P where a = 'it''s'").where == Cond("a", "=", "it's")
    assert parse("select id from P where a = true").where == Cond("a", "=", True)


def test_brackets_are_required_beyond_two_criteria() -> None:
    q = parse("select id from P where ((a = 1 and b = 2) or c = 3)")
    assert q.where == Or((And((Cond("a", "=", 1), Cond("b", "=", 2))), Cond("c", "=", 3)))
    code, details = error_of("select id from P where a = 1 and b = 2 and c = 3")
    assert code == "SYNTAX_ERROR"
    assert details == {"line": 1, "column": 40, "near": "and"}


def test_where_is_mandatory() -> None:
    assert error_of("select id from Products") == ("SYNTAX_ERROR", {"clause": "where"})
    assert error_of("select id from Products order by id") == ("SYNTAX_ERROR", {"clause": "where"})


def test_from_is_mandatory() -> None:
    assert error_of("select id, Name where id = '1'") == ("SYNTAX_ERROR", {"clause": "from"})


def test_syntax_error_position() -> None:
    code, details = error_of("select id from Products\nwhere id = = '1'")
    assert code == "SYNTAX_ERROR"
    assert details == {"line": 2, "column": 12, "near": "="}
    assert error_of("select id from P where a = 'open")[0] == "SYNTAX_ERROR"
    assert error_of("select * from P where a = 1")[1]["near"] == "*"
    assert error_of("select id from P where a = 1 limit 10 junk")[1]["near"] == "junk"


def test_limits_of_the_language() -> None:
    assert error_of("select id from P where a = 1 limit 2001") == (
        "LIMIT_EXCEEDED", {"clause": "limit", "limit": 2000})
    assert error_of("select id from P where a = 1 limit 2000 offset 98001") == (
        "LIMIT_EXCEEDED", {"clause": "offset", "limit": 100_000})
    parse("select id from P where a = 1 limit 2000 offset 98000")
    values = ", ".join(f"'{i}'" for i in range(51))
    assert error_of(f"select id from P where a in ({values})") == ("LIMIT_EXCEEDED", {"clause": "in", "limit": 50})
    many = "a = 1"
    for i in range(25):
        many = f"({many} and b{i} = 1)"
    assert error_of(f"select id from P where {many}") == ("LIMIT_EXCEEDED", {"clause": "where", "limit": 25})
    order = ", ".join(f"f{i}" for i in range(11))
    assert error_of(f"select id from P where a = 1 order by {order}") == (
        "LIMIT_EXCEEDED", {"clause": "order by", "limit": 10})
    assert error_of("select a.b.c.d from P where a = 1")[0] == "INVALID_QUERY"


def test_like_patterns() -> None:
    assert error_of("select id from P where a like 'a%b'") == (
        "INVALID_QUERY", {"column_name": "a", "operator": "like", "reason": "unsupported like pattern"})


def test_credits_by_limit() -> None:
    assert [coql.credits(n) for n in (1, 200, 201, 1000, 1001, 2000)] == [1, 1, 2, 2, 3, 3]


# --- the route, over the real store ------------------------------------------------------------------------------


class FakeCtx:
    """What the COQL route uses of ZohoContext: one org, every token valid, credits and slots recorded."""

    def __init__(self, store: ZohoStore) -> None:
        self.store = store
        self.stores = {"1": store}
        self.clock = store.clock
        self.config: dict[str, Any] = {}
        self.charged: list[int] = []
        self.slots: list[bool] = []
        self.scopes: list[str] = []
        self.delivered: list[tuple[str, dict[str, Any]]] = []
        self.answer_status = 200
        self.org = Org(org_id="1", dc="us", edition="enterprise", credits_per_day=10**6, concurrency=20,
                       user_id="4150868000000225013", user_name="P Boyle")

    def store_for(self, org: Org) -> ZohoStore:
        return self.store

    def authorize(self, request: Any, scope: str) -> Org:
        if request.headers.get("authorization") != "Zoho-oauthtoken good":
            raise ApiError(zoho_error("INVALID_TOKEN", "invalid oauth token", 401))
        self.scopes.append(scope)
        return self.org

    def charge(self, org: Org, amount: int) -> None:
        self.charged.append(amount)

    async def deliver(self, url: str, body: dict[str, Any]) -> int:
        self.delivered.append((url, body))
        return self.answer_status

    @contextlib.asynccontextmanager
    async def slot(self, org: Org, complex_api: bool = False) -> AsyncIterator[None]:
        self.slots.append(complex_api)
        yield


USER = {"id": "4150868000000225013", "name": "P Boyle"}
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def make_store(clock: ManualClock | None = None) -> ZohoStore:
    return ZohoStore(build_catalog({}), clock or ManualClock(T0))


def post(ctx: FakeCtx, query: Any, token: str = "good") -> httpx.Response:
    app = Starlette(routes=coql.routes(ctx))  # type: ignore[arg-type]

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://www.zohoapis.com") as client:
            body = query if isinstance(query, dict) else {"select_query": query}
            return await client.post("/crm/v8/coql", content=json.dumps(body),
                                     headers={"authorization": f"Zoho-oauthtoken {token}"})

    return asyncio.run(main())


def seeded(clock: ManualClock | None = None) -> tuple[ZohoStore, dict[str, str]]:
    """Two vendors and four products, one minute apart (Modified_Time = T0 + 60*i)."""
    clock = clock or ManualClock(T0)
    store = make_store(clock)
    ids: dict[str, str] = {}
    for name in ("Acme Supply", "Bolt Works"):
        ids[name] = store.insert("Vendors", {"Vendor_Name": name}, USER)["id"]
        clock.advance(60)
    for i, (code, price, vendor) in enumerate([("SKU-1", 10.0, "Acme Supply"), ("SKU-2", 25.5, "Bolt Works"),
                                               ("XSKU-3", 99.0, None), ("SKU-4", 5.0, "Acme Supply")]):
        values: dict[str, Any] = {"Product_Name": f"Product {i + 1}", "Product_Code": code, "Unit_Price": price,
                                  "Product_Active": i % 2 == 0}
        if vendor:
            values["Vendor_Name"] = {"id": ids[vendor]}
        ids[code] = store.insert("Products", values, USER)["id"]
        clock.advance(60)
    return store, ids


def test_select_with_lookup_and_dot_path() -> None:
    store, ids = seeded()
    ctx = FakeCtx(store)
    answer = post(ctx, "select Product_Code, Vendor_Name, Vendor_Name.Vendor_Name from Products "
                       "where Unit_Price >= 10 order by Unit_Price desc")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json;charset=UTF-8"
    assert answer.json() == {"data": [
        {"Product_Code": "XSKU-3", "Vendor_Name": None, "Vendor_Name.Vendor_Name": None, "id": ids["XSKU-3"]},
        {"Product_Code": "SKU-2", "Vendor_Name": {"id": ids["Bolt Works"], "name": "Bolt Works"},
         "Vendor_Name.Vendor_Name": "Bolt Works", "id": ids["SKU-2"]},
        {"Product_Code": "SKU-1", "Vendor_Name": {"id": ids["Acme Supply"], "name": "Acme Supply"},
         "Vendor_Name.Vendor_Name": "Acme Supply", "id": ids["SKU-1"]},
    ], "info": {"count": 3, "more_records": False}}
    assert ctx.scopes == ["ZohoCRM.coql.READ", "ZohoCRM.modules.products.READ"]
    assert ctx.charged == [1] and ctx.slots == [True]


def test_operators_over_records() -> None:
    store, ids = seeded()
    ctx = FakeCtx(store)

    def codes(where: str) -> list[str]:
        answer = post(ctx, f"select Product_Code from Products where {where} order by id")
        return [] if answer.status_code == 204 else [row["Product_Code"] for row in answer.json()["data"]]

    assert codes("Product_Code like 'SKU%'") == ["SKU-1", "SKU-2", "SKU-4"]
    assert codes("Product_Code like '%3'") == ["XSKU-3"]
    assert codes("Product_Code not like '%SKU-%'") == []
    assert codes("Unit_Price between 5 and 25.5") == ["SKU-1", "SKU-2", "SKU-4"]
    assert codes("Unit_Price not between 5 and 25.5") == ["XSKU-3"]
    assert codes("Product_Code in ('SKU-2', 'SKU-4')") == ["SKU-2", "SKU-4"]
    assert codes("Product_Code not in ('SKU-2', 'SKU-4')") == ["SKU-1", "XSKU-3"]
    assert codes(f"Vendor_Name = '{ids['Acme Supply']}'") == ["SKU-1", "SKU-4"]
    assert codes(f"Vendor_Name != '{ids['Acme Supply']}'") == ["SKU-2"]
    assert codes("Vendor_Name is null") == ["XSKU-3"]
    assert codes("Vendor_Name.Vendor_Name = 'Bolt Works'") == ["SKU-2"]
    assert codes("Product_Active = true") == ["SKU-1", "XSKU-3"]
    assert codes("((Unit_Price > 5 and Unit_Price < 99) or Product_Code = 'SKU-4')") == ["SKU-1", "SKU-2", "SKU-4"]
    # datetimes compare as instants, whatever the offset: T0+120 is SKU-1's time, written in +05:30
    assert codes("Modified_Time = '2026-01-01T05:32:00+05:30'") == ["SKU-1"]
    assert codes("Modified_Time > '2026-01-01T00:03:00+00:00'") == ["XSKU-3", "SKU-4"]


def test_invalid_queries() -> None:
    store, _ = seeded()
    ctx = FakeCtx(store)
    answer = post(ctx, "select Nope from Products where id is not null")
    assert answer.status_code == 400
    assert answer.json() == {"code": "INVALID_QUERY",
                             "details": {"column_name": "Nope", "reason": "invalid column given"},
                             "message": "column given seems to be invalid", "status": "error"}
    answer = post(ctx, "select id from Products where Vendor_Name like '%1%'")
    assert answer.json() == {"code": "INVALID_QUERY", "details": {
        "column_name": "Vendor_Name", "operator": "like", "reason": "operator not supported for the column"},
        "message": "invalid operator found", "status": "error"}
    answer = post(ctx, "select id from Products where Vendor_Name > '1'")
    assert answer.json()["details"]["operator"] == ">"
    answer = post(ctx, "select id from Products where Modified_Time > '2026-01-01'")
    assert answer.json() == {"code": "INVALID_QUERY", "details": {
        "column_name": "Modified_Time", "expected_data_type": "datetime"},
        "message": "value given seems to be invalid for the column", "status": "error"}
    answer = post(ctx, "select id from Nowhere where id is not null")
    assert (answer.status_code, answer.json()["code"]) == (400, "INVALID_QUERY")
    answer = post(ctx, "select id from Products")
    assert answer.json() == {"code": "SYNTAX_ERROR", "details": {"clause": "where"},
                             "message": "invalid query formed", "status": "error"}
    answer = post(ctx, {"query": "select id from Products where id is not null"})
    assert answer.json() == {"code": "MANDATORY_NOT_FOUND", "details": {
        "api_name": "select_query", "json_path": "$.select_query"}, "message": "required field not found",
        "status": "error"}
    assert post(ctx, "select id from Products where id is null limit 2001").json()["code"] == "LIMIT_EXCEEDED"
    assert ctx.charged == []  # refused queries cost nothing
    assert post(ctx, "select id from Products where id is null", token="bad").status_code == 401


def test_empty_result_is_204_unless_switched() -> None:
    store, _ = seeded()
    ctx = FakeCtx(store)
    answer = post(ctx, "select id from Products where Product_Code = 'none'")
    assert (answer.status_code, answer.content) == (204, b"")
    ctx.config["coql_empty_status"] = 200
    answer = post(ctx, "select id from Products where Product_Code = 'none'")
    assert answer.json() == {"data": [], "info": {"count": 0, "more_records": False}}


def test_limit_offset_and_credits() -> None:
    store, ids = seeded()
    ctx = FakeCtx(store)
    answer = post(ctx, "select Product_Code from Products where id is not null order by id limit 2 offset 1")
    assert answer.json() == {"data": [{"Product_Code": "SKU-2", "id": ids["SKU-2"]},
                                      {"Product_Code": "XSKU-3", "id": ids["XSKU-3"]}],
                             "info": {"count": 2, "more_records": True}}
    answer = post(ctx, "select Product_Code from Products where id is not null order by id limit 1, 3")
    assert [row["Product_Code"] for row in answer.json()["data"]] == ["SKU-2", "XSKU-3", "SKU-4"]
    assert answer.json()["info"]["more_records"] is False
    post(ctx, "select id from Products where id is not null limit 201")
    post(ctx, "select id from Products where id is not null limit 1001")
    assert ctx.charged == [1, 1, 2, 3]


def test_keyset_paging_by_id_stops_early(monkeypatch: pytest.MonkeyPatch) -> None:
    """A page over 100,000 records touches only what it answers: the store's ordered iterator starts after the key
    and stops early (counted in records made public, not timed: a timed unit test fails on a busy machine)."""
    clock = ManualClock(T0)
    store = make_store(clock)
    for i in range(100_000):
        store.insert("Vendors", {"Vendor_Name": f"V{i:06d}"}, USER, at=T0 + i)
    ids = list(store.ids("Vendors"))
    ctx = FakeCtx(store)
    made_public = 0
    public = store._public

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal made_public
        made_public += 1
        return public(*args, **kwargs)

    monkeypatch.setattr(store, "_public", counting)
    answer = post(ctx, f"select Vendor_Name from Vendors where id > '{ids[97_999]}' order by id asc limit 2000")
    page = answer.json()
    assert [row["id"] for row in page["data"]] == ids[98_000:100_000]
    assert page["info"] == {"count": 2000, "more_records": False}
    assert made_public <= 2_001  # the page (and at most one look past it), not the 100,000
    made_public = 0
    answer = post(ctx, "select Vendor_Name from Vendors where (Modified_Time >= '2026-01-01T13:53:20+00:00' "
                       "and Modified_Time < '2026-01-01T19:23:25+05:30') order by Modified_Time desc limit 3")
    assert [row["Vendor_Name"] for row in answer.json()["data"]] == ["V050004", "V050003", "V050002"]
    assert answer.json()["info"] == {"count": 3, "more_records": True}
    assert made_public <= 4


def test_subform_module_is_queried_directly() -> None:
    store, ids = seeded()
    order = store.insert("Purchase_Orders", {"Subject": "PO-1", "Vendor_Name": {"id": ids["Acme Supply"]},
                                             "Purchase_Items": [
                                                 {"Product_Name": {"id": ids["SKU-1"]}, "Quantity": 2.0},
                                                 {"Product_Name": {"id": ids["SKU-2"]}, "Quantity": 5.0}]}, USER)
    store.insert("Purchase_Orders", {"Subject": "PO-2", "Vendor_Name": {"id": ids["Bolt Works"]},
                                     "Purchase_Items": [{"Product_Name": {"id": ids["SKU-4"]}, "Quantity": 1.0}]},
                 USER)
    rows = order["Purchase_Items"]
    ctx = FakeCtx(store)
    answer = post(ctx, f"select Quantity, Product_Name, Parent_Id from Purchase_Items "
                       f"where Parent_Id = '{order['id']}' order by Quantity desc")
    assert answer.json() == {"data": [
        {"Quantity": 5.0, "Product_Name": {"id": ids["SKU-2"], "name": "Product 2"},
         "Parent_Id": {"id": order["id"], "name": "PO-1"}, "id": rows[1]["id"]},
        {"Quantity": 2.0, "Product_Name": {"id": ids["SKU-1"], "name": "Product 1"},
         "Parent_Id": {"id": order["id"], "name": "PO-1"}, "id": rows[0]["id"]},
    ], "info": {"count": 2, "more_records": False}}
    answer = post(ctx, "select Quantity from Purchase_Items where Quantity < 3 order by Quantity")
    assert [row["Quantity"] for row in answer.json()["data"]] == [1.0, 2.0]


def test_select_column_limit() -> None:
    columns = ", ".join(f"f{i}" for i in range(51))
    assert error_of(f"select {columns} from P where a = 1") == ("LIMIT_EXCEEDED", {"clause": "select", "limit": 50})
