"""The seeders of every entity for one seed: which generator builds which entity, and from what."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ml_connector.sandbox.qad import data
from ml_connector.sandbox.qad import procurement_data as pd
from ml_connector.sandbox.qad import receivables_data as rd
from ml_connector.sandbox.qad.config import DEFAULT_CONFIG
from ml_connector.sandbox.qad.entities import CUSTOMER_CONTEXT_DEFAULTS, SPECS
from ml_connector.sandbox.qad.procurement import match_against
from ml_connector.sandbox.qad.seeding import IndexedSeeder, Seeder


class ReceiptSeeder:
    """Seeded receipt lines: receiver ``r`` holds one line per received line of PO ``r``.

    Receipt keys do not encode a dense index, so the seeded keys are listed once (O(receipt lines)
    memory, like the sorted index itself); the records are still built on read.
    """

    def __init__(self, receivers: int, order: Callable[[int], tuple[dict[str, Any], int]]) -> None:
        self._order = order
        self.receivers = receivers
        self._ms: dict[str, int] = {}
        for r in range(receivers):
            record, ms = order(r)
            for line in record["lines"]:
                if line["quantityReceived"] > 0:
                    self._ms[pd.receipt_id(pd.receiver_number(r), line["lineNumber"])] = ms
        self.count = len(self._ms)

    def entries(self) -> Iterable[tuple[int, str]]:
        return ((ms, key) for key, ms in self._ms.items())

    def ms(self, key: str) -> int | None:
        return self._ms.get(key)

    def fields(self, key: str) -> dict[str, Any]:
        parsed = pd.parse_receipt_id(key)
        assert parsed is not None and key in self._ms, key
        record, ms = self._order(parsed[0])
        return pd.receipt(record, ms, parsed[0], parsed[1])

    def salt(self, key: str) -> int:
        parsed = pd.parse_receipt_id(key)
        assert parsed is not None, key
        return data.mix64((parsed[0] << 16) ^ parsed[1] ^ 0x5EED0)


def build_seeders(seed: int, counts: Mapping[str, int], entity_code: str) -> dict[str, Seeder]:
    """Seeders of all entities; ``counts`` gives how many records each seeds (missing: none).

    For purchaseOrderReceipts the count is of receivers (one per received PO), not of receipt lines.
    Credit notes and payments each refer to the invoice of the same index (see ``receivables_data``).
    """
    base = {name: data.stream_base(seed, spec.salt) for name, spec in SPECS.items()}
    n = {name: counts.get(name, 0) for name in SPECS}
    customers = (base["customerV2s"], n["customerV2s"])
    items = (base["items"], n["items"])
    b = base["customerV2s"]
    refs = pd.Refs((base["supplierV2s"], n["supplierV2s"]), items, min(n["purchaseOrderReceipts"],
                   n["purchaseOrders"]), min(n["supplierInvoices"], n["purchaseOrders"]))
    bp, bi = base["purchaseOrders"], base["supplierInvoices"]

    def order(i: int) -> tuple[dict[str, Any], int]:
        ms = data.seeded_lmd_ms(bp, i)
        return pd.purchase_order(bp, i, ms, refs), ms

    def seeded_order(number: str) -> dict[str, Any] | None:
        i = pd.po_index(number)
        return order(i)[0] if i is not None and i < n["purchaseOrders"] else None

    def seeded_receipts(number: str, line: int) -> list[str]:
        found = seeded_order(number)
        i = pd.po_index(number)
        if found is None or i is None or i >= refs.receipts:
            return []
        received = [ln for ln in found["lines"] if ln["lineNumber"] == line and ln["quantityReceived"] > 0]
        return [pd.receipt_id(pd.receiver_number(i), line)] if received else []

    def invoice(k: int) -> dict[str, Any]:
        fields = pd.supplier_invoice(bi, k, order(k)[0], entity_code, refs)
        fields["matchStatus"], fields["matchedReceivers"] = match_against(
            fields, seeded_order, seeded_receipts, float(DEFAULT_CONFIG["match_price_tolerance"]))
        return fields

    def invoice_index(key: str) -> int | None:
        parsed = pd.parse_invoice_id(key)
        if parsed is None or not 0 < parsed[3] <= refs.invoices:
            return None
        return parsed[3] - 1 if invoice(parsed[3] - 1)["invoiceId"] == key else None

    n_ar = n["customerInvoices"]
    ar = rd.SeededReceivables(
        rd.Refs(customers, items, (base["salesOrders"], n["salesOrders"]), min(n["creditNotes"], n_ar),
                min(n["payments"], n_ar)),
        base["customerInvoices"], base["creditNotes"], base["payments"])

    seeders: dict[str, Seeder] = {
        "customerV2s": IndexedSeeder(b, n["customerV2s"], data.customer_code, data.customer_index,
                                     lambda i, _ms: {**data.customer(b, i), **CUSTOMER_CONTEXT_DEFAULTS}),
        "supplierV2s": IndexedSeeder(base["supplierV2s"], n["supplierV2s"], data.supplier_code,
                                     data.supplier_index, lambda i, _ms: data.supplier(base["supplierV2s"], i)),
        "items": IndexedSeeder(base["items"], n["items"], data.item_code, data.item_index,
                               lambda i, _ms: data.item(base["items"], i)),
        "salesOrders": IndexedSeeder(base["salesOrders"], n["salesOrders"], data.order_number, data.order_index,
                                     lambda i, ms: data.sales_order(base["salesOrders"], i, ms, customers, items)),
        "purchaseOrders": IndexedSeeder(bp, n["purchaseOrders"], pd.po_number, pd.po_index,
                                        lambda i, ms: pd.purchase_order(bp, i, ms, refs)),
        "purchaseOrderReceipts": ReceiptSeeder(refs.receipts, order),
        "supplierInvoices": IndexedSeeder(bi, refs.invoices, lambda k: str(invoice(k)["invoiceId"]),
                                          invoice_index, lambda k, _ms: invoice(k)),
        "customerInvoices": IndexedSeeder(base["customerInvoices"], n_ar, rd.invoice_number, rd.invoice_index,
                                          lambda k, _ms: ar.invoice(k), ar.invoice_ms),
        "creditNotes": IndexedSeeder(base["creditNotes"], ar.refs.credits, rd.credit_note_number,
                                     rd.credit_note_index, lambda k, _ms: ar.credit_note(k), ar.credit_ms),
        "payments": IndexedSeeder(base["payments"], ar.refs.payments, rd.payment_number, rd.payment_index,
                                  lambda k, _ms: ar.payment(k), ar.payment_ms),
        "customerActivities": IndexedSeeder(base["customerActivities"], n["customerActivities"], data.activity_id,
                                            data.activity_index, lambda k, ms: data.customer_activity(
                                                base["customerActivities"], k, ms, customers)),
    }
    return seeders
