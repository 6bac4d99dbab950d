"""QAD Adaptive ERP simulator ("qad-sim"): the DESIGNED REST contract of api-facts §3.5, assembled.

Routes (all JSON):
  POST /clouderp/oauth/token                    OAuth2 password / refresh_token grant (query string or form)
  GET  /clouderp/api/erp/<entity>               page by (lastModifiedDate, uri); modifiedSince is inclusive
  GET  /clouderp/api/erp/<entity>/<key>         one record as {"data": [record]}
  POST /clouderp/api/erp/<entity>               batch write, all-or-nothing, business errors on HTTP 200
  GET  /clouderp/api/qracore/browses            browse facade (zero rows unless page and pageAction are sent)
Entities: see ``entities.SPECS``. Modules: ``rules`` (field rules), ``entities`` (entity table), ``seeding``
and ``data`` (virtual seeded records), ``store``, ``business``/``procurement``/``receivables``/``activities``
(business rules), ``auth``, ``limits``, ``api`` (vendor routes), ``browse``, ``admin``.
"""

from __future__ import annotations

import time

from ml_connector.sandbox.core import Clock, Sandbox
from ml_connector.sandbox.qad.admin import QadAdmin
from ml_connector.sandbox.qad.api import QadApi
from ml_connector.sandbox.qad.auth import TokenBook
from ml_connector.sandbox.qad.config import DEFAULT_CONFIG
from ml_connector.sandbox.qad.limits import RateLimiter
from ml_connector.sandbox.qad.seeds import build_seeders
from ml_connector.sandbox.qad.store import QadStore
from ml_connector.sandbox.qad.timestamps import iso_ms, parse_timestamp_ms

__all__ = ["QadSandbox", "create_qad_sandbox", "iso_ms", "parse_timestamp_ms"]


class QadSandbox(Sandbox):
    """The QAD sandbox app; ``store`` and ``tokens`` give in-process tests direct access."""

    store: QadStore
    tokens: TokenBook

    def __init__(self, store: QadStore, api: QadApi, admin: QadAdmin) -> None:
        super().__init__(name="qad", routes=api.routes(), config=api.config, admin_routes=admin.routes(),
                         clock=store.clock)
        self.store = store
        self.tokens = api.tokens
        self.chaos.revoke_tokens = self.tokens.expire_all  # chaos may draw token revocations here too


def create_qad_sandbox(*, customers: int = 300, items: int = 200, sales_orders: int = 0, seed: int = 7,
                       client_id: str = "ml-connector", username: str = "demo",
                       password: str = "demo-password", domain: str = "10USA",
                       suppliers: int = 0, purchase_orders: int = 0, receipts: int = 0,
                       supplier_invoices: int = 0, entity_code: str | None = None,
                       customer_invoices: int = 0, credit_notes: int = 0, payments: int = 0,
                       customer_activities: int = 0, clock: Clock = time.time) -> QadSandbox:
    """Build a seeded QAD sandbox (deterministic for ``seed``); it reads time only through ``clock``.

    ``receipts`` counts receivers: receiver r received purchase order r; ``supplier_invoices`` invoice k
    bills purchase order k, so invoices past ``receipts`` are seeded pending. ``entity_code`` (default
    ``<domain>CO``) heads supplier invoice keys. ``customer_invoices``: invoice k bills sales order k when
    it can; ``credit_notes`` / ``payments``: credit note k and payment k settle part or all of invoice k.
    ``customer_activities`` (default none: integrations write them) touch seeded customers and their contacts.
    """
    if sales_orders and (customers <= 0 or items <= 0):
        raise ValueError("seeding sales orders needs at least one customer and one item")
    if purchase_orders and (suppliers <= 0 or items <= 0):
        raise ValueError("seeding purchase orders needs at least one supplier and one item")
    if receipts > purchase_orders or supplier_invoices > purchase_orders:
        raise ValueError("seeded receipts and supplier invoices each refer to one seeded purchase order")
    if customer_invoices and (customers <= 0 or items <= 0):
        raise ValueError("seeding customer invoices needs at least one customer and one item")
    if credit_notes > customer_invoices or payments > customer_invoices:
        raise ValueError("seeded credit notes and payments each refer to one seeded customer invoice")
    if customer_activities and customers <= 0:
        raise ValueError("seeding customer activities needs at least one customer")
    counts = {"customerV2s": customers, "supplierV2s": suppliers, "items": items, "salesOrders": sales_orders,
              "purchaseOrders": purchase_orders, "purchaseOrderReceipts": receipts,
              "supplierInvoices": supplier_invoices, "customerInvoices": customer_invoices,
              "creditNotes": credit_notes, "payments": payments, "customerActivities": customer_activities}
    config = dict(DEFAULT_CONFIG)
    entity = entity_code if entity_code is not None else f"{domain}CO"
    store = QadStore(domain=domain, seed=seed, seeders=build_seeders(seed, counts, entity), clock=clock,
                     config=config, entity_code=entity)
    tokens = TokenBook(client_id, {username: password}, config, clock)
    api = QadApi(store, tokens, config, RateLimiter(clock))
    return QadSandbox(store, api, QadAdmin(store, tokens))
