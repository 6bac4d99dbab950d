"""`ml-connector demo`: the shipped ERP <-> CRM integration, end to end, against local sandboxes over HTTP."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ml_connector.errors import SetupError
from ml_connector.report import run_table
from ml_connector.resources import shipped_specs
from ml_connector.sandbox.pipedrive import create_pipedrive_sandbox
from ml_connector.sandbox.qad import create_qad_sandbox
from ml_connector.sandbox.serve import SandboxServer
from ml_connector.sandbox.workspace import apply_env, write_workspace
from ml_connector.sync.runner import Runner, RunSummary
from ml_connector.workspace import Workspace

Echo = Callable[[str], Any]


def _run(workspace: Workspace, echo: Echo, title: str, flows: list[str] | None = None) -> RunSummary:
    echo(f"\n== {title}")
    state = workspace.state()
    try:
        summary = asyncio.run(Runner(workspace.project, state).run(flows))
    finally:
        state.close()
    echo(run_table(summary.as_dict()))
    return summary


def _check(ok: bool, what: str, echo: Echo) -> bool:
    echo(f"   {'ok ' if ok else 'NOT OK'} {what}")
    return ok


def _check_shipped_specs() -> None:
    """The demo runs the shipped specs (installed with the package as data, or a checkout's own folders)."""
    specs = shipped_specs()
    if not (specs / "mappings" / "qad-pipedrive").is_dir():
        raise SetupError(f"the demo needs the shipped integration mappings/qad-pipedrive, not found in {specs}")


def _make_room(directory: Path, force: bool) -> None:
    """An earlier demo's state and workspace are replaced only with --force: the folder may hold a user's work."""
    found = [name for name in ("state", "workspace.yaml") if (directory / name).exists()]
    if found and not force:
        raise SetupError(f"{directory} already holds a state or workspace ({', '.join(found)}); pass --force to "
                         "replace them, or choose another --dir")
    if (directory / "state").exists():
        shutil.rmtree(directory / "state")
    (directory / "workspace.yaml").unlink(missing_ok=True)


def run_demo(directory: Path, echo: Echo = print, *, force: bool = False) -> int:
    """Run the demo; 0 when every step did what it should."""
    _check_shipped_specs()
    apply_env()
    _make_room(directory, force)
    server = SandboxServer()
    try:
        erp = create_qad_sandbox(customers=300, items=200)
        crm = create_pipedrive_sandbox()
        crm.config.update(burst_limit=100)  # a Premium plan: 100 requests per 2 s window
        urls = {"qad": server.start("qad", erp).url, "pipedrive": server.start("pipedrive", crm).url}
        echo(f"sandboxes: QAD at {urls['qad']}, Pipedrive at {urls['pipedrive']}")
        workspace = Workspace.open(write_workspace(directory, urls))
        checks = []

        first = _run(workspace, echo, "1. first run: every active item, customer and key contact is created")
        checks.append(_check(first.status == "ok" and first.flows[0].created > 0, "first run synced everything", echo))

        crm.log.reset()
        second = _run(workspace, echo, "2. second run: nothing changed, so nothing is written")
        writes = crm.log.summary()["writes"]
        checks.append(_check(writes == 0 and all(f.created + f.updated == 0 for f in second.flows),
                             f"zero writes (the Pipedrive sandbox saw {writes})", echo))

        items = [r for r in erp.store.all("items") if r.get("itemStatus") == "ACTIVE"][:3]
        for item in items:
            erp.store.patch("items", item["itemCode"], {"listPrice": round(item["listPrice"] + 1.5, 2)})
        third = _run(workspace, echo, f"3. three QAD items repriced ({', '.join(i['itemCode'] for i in items)})")
        checks.append(_check(third.flows[0].updated == 3 and sum(f.updated for f in third.flows) == 3,
                             "exactly those 3 products updated", echo))

        org = crm.store.all("organizations")[0]
        products = crm.store.all("products")[:3]
        deal = crm.store.insert("deals", {"title": f"Order from {org['name']}", "org_id": org["id"], "status": "won",
                                          "currency": "USD", "value": 0})
        total = 0.0
        for quantity, product in enumerate(products, start=2):
            price = product["prices"][0]["price"] if product.get("prices") else 10.0
            crm.store.add_deal_product(deal["id"], product["id"], price, quantity)
            total += price * quantity
        crm.store.patch("deals", deal["id"], {"value": round(total, 2)})
        fourth = _run(workspace, echo, f"4. deal {deal['id']} won in Pipedrive with 3 product lines")
        order = next((o for o in erp.store.all("salesOrders")
                      if o.get("externalReference") == f"pipedrive-deal-{deal['id']}"), None)
        if order:
            echo(f"   QAD sales order {order['salesOrderNumber']} for {order['customerCode']}: "
                 + ", ".join(f"{ln['itemCode']} x {ln['quantityOrdered']}" for ln in order["lines"]))
        checks.append(_check(order is not None and len(order["lines"]) == 3 and fourth.status == "ok",
                             "one QAD sales order with 3 lines", echo))

        echo(f"\nstate and audit trail: {workspace.state_path}")
        echo(f"try: ml-connector status -w {workspace.path}   |   ml-connector audit -w {workspace.path} --limit 10")
        return 0 if all(checks) else 1
    finally:
        server.stop()
