"""Issue 18, case 8, end to end: a QAD item set OBSOLETE (the item entity's deletes.flag) deletes its Pipedrive product
(items_to_products has on_delete: delete); `plan` names it first; a product deleted already counts as deleted."""

from __future__ import annotations

import json
from collections import Counter

from ml_connector.store import State
from tests.e2e.conftest import Env, flows
from tests.e2e.requestlog import CRM_PARAMS, Call, call, calls, crm_catalog, crm_list


def product_calls(env: Env) -> list[Call]:
    """The calls to Pipedrive products (other flows read organizations and deals)."""
    return [c for c in calls(env.crm, CRM_PARAMS) if "product" in c[1]]


def test_an_item_set_obsolete_deletes_its_product_once_and_plan_names_it_first(env: Env) -> None:
    code, first = env.run_json()
    assert code == 0, first
    products = {p["code"]: p["id"] for p in env.crm.store.all("products")}
    gone, already_gone = [i["itemCode"] for i in env.qad.store.all("items") if i["itemStatus"] == "ACTIVE"][:2]
    env.crm.store.delete("products", products[already_gone])  # someone deleted it in the CRM meanwhile
    for code_ in (gone, already_gone):
        env.qad.store.patch("items", code_, {"itemStatus": "OBSOLETE"})

    env.crm.log.reset()
    result = env.cli("plan", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    planned = flows(json.loads(result.stdout))["items_to_products"]
    assert (planned["deleted"], planned["delete_keys"], planned["updated"]) == (2, [gone, already_gone], 0)
    assert product_calls(env) == []  # a plan calls no target

    env.crm.log.reset()
    code, second = env.run_json()
    assert code == 0, second
    items = flows(second)["items_to_products"]
    assert (items["deleted"], items["delete_keys"], items["failed"]) == (2, [gone, already_gone], 0)
    assert second["totals"]["deleted"] == 2
    assert Counter(product_calls(env)) == Counter([
        call("DELETE", f"/api/v2/products/{products[gone]}"),
        call("DELETE", f"/api/v2/products/{products[already_gone]}")])  # 404: already gone, counted as deleted
    live = {p["code"] for p in env.crm.store.all("products") if not p.get("is_deleted")}
    assert gone not in live and already_gone not in live

    state = State(env.workspace.parent / "state" / "ml-connector.duckdb")
    try:
        rows = state.db.fetchall("SELECT source_key, target_id, action, outcome, note FROM audit "
                                 "WHERE flow = 'items_to_products' AND action = 'delete' ORDER BY source_key")
        assert sorted(rows) == sorted([(gone, str(products[gone]), "delete", "ok", None),
                                       (already_gone, str(products[already_gone]), "delete", "ok",
                                        "already gone (HTTP 404)")])
        assert state.id_maps.get_many("items_to_products", [gone, already_gone]) == {}
    finally:
        state.close()

    env.crm.log.reset()
    code, third = env.run_json()  # deleted once: the next run neither deletes nor writes anything
    assert code == 0 and flows(third)["items_to_products"]["deleted"] == 0, third
    assert product_calls(env) == []

    env.qad.store.patch("items", gone, {"itemStatus": "ACTIVE"})  # back in use: a new product, like a new item
    env.crm.log.reset()
    code, fourth = env.run_json()
    assert code == 0 and flows(fourth)["items_to_products"]["created"] == 1, fourth
    assert Counter(product_calls(env)) == Counter([
        crm_catalog("product"), crm_list("products"), call("POST", "/api/v2/products")])
