"""The records of one Commerce instance, indexed by id (and orders by increment id, products by sku).

Orders, invoices, credit memos and customers belong to a store view (``store_id``); products and B2B companies are
global. The sales documents keep their sums true: an invoice moves ``qty_invoiced``/``total_invoiced``/
``total_paid`` on the order, a credit memo ``qty_refunded``/``total_refunded``; the order's ``state``/``status``
follow (new/pending -> processing -> complete once shipped, closed once fully refunded).

Refusals raise ``StoreError(message, parameters)`` with Commerce's placeholder wording; the admin API answers
them 400 in Commerce's error body. The invoice and credit memo checks and their wording follow Magento's
``Sales/Model/Order/Validation/{CanInvoice,CanRefund}``, ``InvoiceQuantityValidator``,
``Creditmemo/Validation/QuantityValidator`` and ``TotalsValidator`` (magento/magento2 source). One sandbox
choice: the money check is per invoice (Commerce checks the order's paid total; per invoice is stricter).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

from sortedcontainers import SortedDict

from ml_connector.sandbox.adobe_commerce import records as rec
from ml_connector.sandbox.core import Clock

ENTITIES = ("orders", "invoices", "creditmemos", "customers", "companies", "products")
STORES = {"default": 1, "de": 2}
"""Store view code -> store_id (website 1). ``all`` names every store view."""
WEBSITE_ID = 1
_SCOPED = frozenset({"orders", "invoices", "creditmemos", "customers"})
_SALES = frozenset({"orders", "invoices", "creditmemos"})
_NO_INVOICE = frozenset({"payment_review", "holded", "canceled", "complete", "closed"})  # Validation/CanInvoice.php
_NO_REFUND = frozenset({"payment_review", "holded", "canceled", "closed"})  # Validation/CanRefund.php
NOT_FOUND = "The entity that was requested doesn't exist. Verify the entity and try again."
STORE_NOT_FOUND = "The store that was requested wasn't found. Verify the store and try again."
PLACE_EVENT = "sales_order_place_after"  # the Magento event; its webhook method is "observer.sales_order_place_after"
Listener = Callable[[str, dict[str, Any]], None]


class StoreError(Exception):
    """A business refusal, in Commerce's error shape (``message`` with ``%1``/``%name`` placeholders)."""

    def __init__(self, message: str, parameters: dict[str, Any] | list[Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.parameters: dict[str, Any] | list[Any] = parameters if parameters is not None else []

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "parameters": self.parameters}


def copy_record(record: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a wire-shaped record (dicts, lists, scalars): three times faster than ``copy.deepcopy``."""
    return {key: _copy_value(value) for key, value in record.items()}


def _copy_value(value: Any) -> Any:
    if type(value) is dict:
        return {key: _copy_value(item) for key, item in value.items()}
    if type(value) is list:
        return [_copy_value(item) for item in value]
    return value


_copy = copy_record


class CommerceStore:
    """Every entity's records; reads return copies, writes go through the methods below."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        # sorted by id: an order waiting on its webhook commits after a later one, yet lists stay in id order
        self._tables: dict[str, SortedDict] = {entity: SortedDict() for entity in ENTITIES}
        self._by_store: dict[str, dict[int, SortedDict]] = {
            entity: {store_id: SortedDict() for store_id in STORES.values()} for entity in _SCOPED}
        self._order_numbers: dict[str, int] = {}
        self._skus: dict[str, int] = {}
        self._invoice_memos: dict[int, list[int]] = {}  # invoice id -> its credit memo ids (no scan per refund)
        self._emails: dict[str, int] = {}  # folded email -> customer id (one website)
        self._ids = {entity: itertools.count(1) for entity in ENTITIES}
        self._numbers = {entity: itertools.count(1) for entity in _SALES}
        self._child_ids = {name: itertools.count(1) for name in ("order_item", "address", "payment", "history",
                                                                 "invoice_item", "creditmemo_item",
                                                                 "customer_address")}
        self._listeners: list[Listener] = []
        self._lock = threading.RLock()

    # -- reads ------------------------------------------------------------------------------------------------
    @staticmethod
    def key_field(entity: str) -> str:
        return "entity_id" if entity in _SALES else "id"

    def records(self, entity: str, store_code: str) -> list[dict[str, Any]]:
        """Every record of the entity visible in that store view, ordered by entity id (copies)."""
        with self._lock:
            return [_copy(r) for r in self._visible(entity, store_code).values()]

    def view(self, entity: str, store_code: str) -> list[dict[str, Any]]:
        """The live records ``records`` would copy, in entity id order: for a search that filters and sorts many
        records and answers a page of them. Read only; ``copy_record`` what leaves the sandbox."""
        with self._lock:
            return list(self._visible(entity, store_code).values())

    def count(self, entity: str, store_code: str = "all") -> int:
        with self._lock:
            return len(self._visible(entity, store_code))

    def _visible(self, entity: str, store_code: str) -> SortedDict:
        if entity not in self._tables:
            raise KeyError(f"unknown entity {entity!r}; known: {', '.join(ENTITIES)}")
        if store_code != "all" and store_code not in STORES:
            raise StoreError(STORE_NOT_FOUND)
        if store_code == "all" or entity not in _SCOPED:
            return self._tables[entity]
        return self._by_store[entity][STORES[store_code]]

    def get(self, entity: str, key: str) -> dict[str, Any] | None:
        """One record by its numeric id as text (products: by sku); a copy, or None."""
        with self._lock:
            record = self._find(entity, key)
            return None if record is None else _copy(record)

    def order_by_increment_id(self, increment_id: str) -> dict[str, Any] | None:
        with self._lock:
            entity_id = self._order_numbers.get(increment_id)
            return None if entity_id is None else _copy(self._tables["orders"][entity_id])

    def _find(self, entity: str, key: str) -> dict[str, Any] | None:
        if entity not in self._tables:
            raise KeyError(f"unknown entity {entity!r}; known: {', '.join(ENTITIES)}")
        if entity == "products":
            product_id = self._skus.get(key)
            return None if product_id is None else self._tables["products"][product_id]
        if not str(key).isdigit():
            return None
        return self._tables[entity].get(int(key))

    def _must(self, entity: str, key: str | int) -> dict[str, Any]:
        record = self._find(entity, str(key))
        if record is None:
            raise StoreError(NOT_FOUND)
        return record

    def _now(self) -> str:
        return rec.wire_time(self.clock())

    def _add(self, entity: str, record: dict[str, Any]) -> None:
        key = record[self.key_field(entity)]
        self._tables[entity][key] = record
        if entity in _SCOPED:
            self._by_store[entity][record["store_id"]][key] = record

    def listen(self, callback: Listener) -> None:
        """``callback(event, order)`` runs after each placed order, before it is committed: raising
        ``StoreError`` there refuses the placement (a required synchronous webhook that failed)."""
        self._listeners.append(callback)

    # -- sales documents --------------------------------------------------------------------------------------
    def place_order(self, store_code: str, customer_id: int | None, email: str,
                    items: list[dict[str, Any]], *, at: float | None = None, copy: bool = True) -> dict[str, Any]:
        """Place an order (state new, status pending). ``at`` backdates it and ``copy=False`` returns the live
        record (both for seeding, which reads a few ids and changes nothing: copies were most of its time)."""
        if store_code not in STORES:
            raise StoreError(STORE_NOT_FOUND)
        store_id = STORES[store_code]
        if not items:
            raise StoreError("The order can't be placed without products. Add products and try again.")
        now = rec.wire_time(self.clock() if at is None else at)
        with self._lock:
            customer = None
            if customer_id is not None:
                customer = self._must("customers", customer_id)
                email = customer["email"]
            if not email:
                raise StoreError('"%fieldName" is required. Enter and try again.', {"fieldName": "customer_email"})
            lines = []
            for line in items:
                product = self._find("products", str(line.get("sku", "")))
                if product is None:
                    raise StoreError("The product that was requested doesn't exist. Verify the product and try "
                                     "again.", [])
                qty = float(line.get("qty", 1))
                if qty <= 0:
                    raise StoreError('The requested qty is not available', [])
                lines.append((product, qty, float(line.get("price", product.get("price", 0.0)))))
            entity_id = next(self._ids["orders"])
            number = rec.increment_id(next(self._numbers["orders"]))
            order_items = [rec.order_item(item_id=next(self._child_ids["order_item"]), order_id=entity_id,
                                          store_id=store_id, product=p, qty=q, price=price, at=now)
                           for p, q, price in lines]
            address_source = (customer or {}).get("addresses") or [{}]
            first = customer.get("firstname", "Guest") if customer else "Guest"
            last = customer.get("lastname", "Buyer") if customer else "Buyer"
            source = {"firstname": first, "lastname": last, **address_source[0]}
            billing = rec.order_address(source, entity_id=next(self._child_ids["address"]), parent_id=entity_id,
                                        address_type="billing", email=email, customer_id=customer_id)
            shipping = rec.order_address(source, entity_id=next(self._child_ids["address"]), parent_id=entity_id,
                                         address_type="shipping", email=email, customer_id=customer_id)
            order: dict[str, Any] = {
                "entity_id": entity_id, "increment_id": number, "state": "new", "status": "pending",
                "store_id": store_id, "store_name": rec.STORE_NAMES[store_id], "customer_email": email,
                "customer_firstname": first, "customer_lastname": last,
                "customer_is_guest": 0 if customer else 1, "customer_group_id": customer["group_id"] if customer else 0,
                "customer_note_notify": 1, "email_sent": 1, "is_virtual": 0, "quote_id": entity_id,
                "billing_address_id": billing["entity_id"], "shipping_description": rec.SHIPPING_DESCRIPTION,
                "created_at": now, "updated_at": now, **rec.currencies(), "items": order_items,
            }
            if customer is not None:
                order["customer_id"] = customer["id"]
            rec.order_totals(order)
            order["billing_address"] = billing
            order["payment"] = rec.payment(entity_id=next(self._child_ids["payment"]), parent_id=entity_id,
                                           amount=order["grand_total"])
            order["status_histories"] = []
            order["extension_attributes"] = {"shipping_assignments": rec.shipping_assignments(order, shipping)}
            member = ((customer or {}).get("extension_attributes") or {}).get("company_attributes") or {}
            if member.get("company_id"):  # B2B (Magento_Company): the order names the buyer's company
                company = self._must("companies", int(member["company_id"]))
                order["extension_attributes"]["company_order_attributes"] = {
                    "order_id": entity_id, "company_id": company["id"], "company_name": company["company_name"]}
        for listener in list(self._listeners):  # outside the lock: a listener may wait on the network
            listener(PLACE_EVENT, _copy(order))
        with self._lock:
            self._add("orders", order)
            self._order_numbers[number] = entity_id
            return _copy(order) if copy else order

    def invoice_order(self, order_id: int, items: list[dict[str, Any]] | None = None, *,
                      at: float | None = None, copy: bool = True) -> dict[str, Any]:
        """Capture an invoice: ``items`` [{"order_item_id"|"sku", "qty"}], None = every open quantity.

        The first invoice also captures the order's whole shipping amount (as Commerce's invoice totals do)."""
        with self._lock:
            order = self._must("orders", order_id)
            if order["state"] in _NO_INVOICE or not self._open_to_invoice(order):
                raise StoreError("An invoice cannot be created when an order has a status of %1.", [order["status"]])
            wanted = self._quantities(order, items, "qty_invoiced", "invoice")
            if not wanted:
                raise StoreError("The invoice can't be created without products. Add products and try again.")
            now = rec.wire_time(self.clock() if at is None else at)
            invoice_id = next(self._ids["invoices"])
            lines = [rec.invoice_item(entity_id=next(self._child_ids["invoice_item"]), parent_id=invoice_id,
                                      item=item, qty=qty) for item, qty in wanted]
            subtotal = sum(line["row_total"] for line in lines)
            shipping = 0.0 if order.get("shipping_invoiced") else order["shipping_amount"]
            invoice: dict[str, Any] = {
                "entity_id": invoice_id, "increment_id": rec.increment_id(next(self._numbers["invoices"])),
                "order_id": order["entity_id"], "store_id": order["store_id"], "state": 2, "can_void_flag": 0,
                "email_sent": 1, "billing_address_id": order["billing_address_id"],
                "total_qty": float(sum(qty for _, qty in wanted)), **rec.currencies(),
                **rec.document_totals(subtotal=subtotal, shipping=shipping),
                "created_at": now, "updated_at": now, "items": lines, "comments": [],
            }
            for item, qty in wanted:
                item["qty_invoiced"] = item["qty_invoiced"] + qty
                item["row_invoiced"] = item["base_row_invoiced"] = rec.money(item["row_invoiced"] + item["price"] * qty)
                item["updated_at"] = now
            grand = invoice["grand_total"]
            for key in ("total_invoiced", "base_total_invoiced", "total_paid", "base_total_paid"):
                order[key] = rec.money(order.get(key, 0.0) + grand)
            for key in ("subtotal_invoiced", "base_subtotal_invoiced"):
                order[key] = rec.money(order.get(key, 0.0) + invoice["subtotal"])
            for key in ("shipping_invoiced", "base_shipping_invoiced"):
                order[key] = rec.money(order.get(key, 0.0) + shipping)
            for key in ("tax_invoiced", "base_tax_invoiced", "discount_invoiced", "base_discount_invoiced"):
                order[key] = 0.0
            order["payment"]["amount_paid"] = order["payment"]["base_amount_paid"] = order["total_paid"]
            order["payment"]["shipping_captured"] = order["payment"]["base_shipping_captured"] = \
                order["shipping_invoiced"]
            self._history(order, f"Captured amount of ${grand:.2f} offline.", now, "invoice")
            self._settle(order, now)
            self._add("invoices", invoice)
            return _copy(invoice) if copy else invoice

    def refund(self, order_id: int, invoice_id: int, items: list[dict[str, Any]] | None = None,
               adjustment: float = 0, *, at: float | None = None, copy: bool = True) -> dict[str, Any]:
        """A credit memo against one invoice: ``items`` [{"order_item_id"|"sku", "qty"}], None = all that invoice
        captured and no refund took back yet (then also the invoice's shipping). ``adjustment`` > 0 is an
        adjustment refund, < 0 an adjustment fee."""
        with self._lock:
            order = self._must("orders", order_id)
            if order["state"] in _NO_REFUND:
                raise StoreError("A creditmemo can not be created when an order has a status of %1",
                                 [order["status"]])
            if abs(order.get("total_paid", 0.0) - order.get("total_refunded", 0.0)) < 0.0001:
                raise StoreError("We can't create creditmemo for the order.")
            invoice = self._find("invoices", str(invoice_id))
            if invoice is None or invoice["order_id"] != order["entity_id"]:
                raise StoreError(NOT_FOUND)
            refundable = self._invoice_refundable(invoice)
            wanted: list[tuple[dict[str, Any], float]] = []
            by_item = {item["item_id"]: item for item in order["items"]}
            if items is None:
                wanted = [(by_item[item_id], qty) for item_id, qty in refundable.items() if qty > 0]
            else:
                for line in items:
                    item = self._order_item(order, line, "The creditmemo contains product item that is not part "
                                                          "of the original order.")
                    qty = float(line.get("qty", 0))
                    if qty <= 0:
                        continue
                    if qty > refundable.get(item["item_id"], 0.0) + 1e-9:
                        raise StoreError('The quantity to creditmemo must not be greater than the unrefunded '
                                         'quantity for product SKU "%1".', [item["sku"]])
                    wanted.append((item, qty))
            shipping = 0.0
            if items is None and not any(m["shipping_amount"] for m in self._memos_of(invoice)):
                shipping = invoice["shipping_amount"]
            positive, negative = (float(adjustment), 0.0) if adjustment >= 0 else (0.0, -float(adjustment))
            now = rec.wire_time(self.clock() if at is None else at)
            memo_id = next(self._ids["creditmemos"])
            lines = [rec.creditmemo_item(entity_id=next(self._child_ids["creditmemo_item"]), parent_id=memo_id,
                                         item=item, qty=qty) for item, qty in wanted]
            totals = rec.document_totals(subtotal=sum(line["row_total"] for line in lines), shipping=shipping,
                                         adjustment_positive=positive, adjustment_negative=negative)
            available = rec.money(invoice["grand_total"] - invoice.get("base_total_refunded", 0.0))
            if totals["grand_total"] <= 0:
                raise StoreError("The credit memo's total must be positive.")
            if totals["grand_total"] > available + 1e-9:
                raise StoreError("The most money available to refund is %1.", [available])
            memo: dict[str, Any] = {
                "entity_id": memo_id, "increment_id": rec.increment_id(next(self._numbers["creditmemos"])),
                "order_id": order["entity_id"], "invoice_id": invoice["entity_id"], "store_id": order["store_id"],
                "state": 2, "email_sent": 1, "billing_address_id": order["billing_address_id"], **rec.currencies(),
                "adjustment": rec.money(positive - negative), "base_adjustment": rec.money(positive - negative),
                "adjustment_positive": rec.money(positive), "base_adjustment_positive": rec.money(positive),
                "adjustment_negative": rec.money(negative), "base_adjustment_negative": rec.money(negative),
                **totals, "created_at": now, "updated_at": now, "items": lines, "comments": [],
            }
            for item, qty in wanted:
                item["qty_refunded"] = item["qty_refunded"] + qty
                item["amount_refunded"] = item["base_amount_refunded"] = \
                    rec.money(item["amount_refunded"] + item["price"] * qty)
                item["updated_at"] = now
            grand = memo["grand_total"]
            for key in ("total_refunded", "base_total_refunded", "total_offline_refunded",
                        "base_total_offline_refunded"):
                order[key] = rec.money(order.get(key, 0.0) + grand)
            for key in ("subtotal_refunded", "base_subtotal_refunded"):
                order[key] = rec.money(order.get(key, 0.0) + memo["subtotal"])
            if shipping:
                for key in ("shipping_refunded", "base_shipping_refunded"):
                    order[key] = rec.money(order.get(key, 0.0) + shipping)
            if positive:
                for key in ("adjustment_positive", "base_adjustment_positive"):
                    order[key] = rec.money(order.get(key, 0.0) + positive)
            if negative:
                for key in ("adjustment_negative", "base_adjustment_negative"):
                    order[key] = rec.money(order.get(key, 0.0) + negative)
            order["payment"]["amount_refunded"] = order["payment"]["base_amount_refunded"] = order["total_refunded"]
            invoice["is_used_for_refund"] = 1
            invoice["base_total_refunded"] = rec.money(invoice.get("base_total_refunded", 0.0) + grand)
            invoice["updated_at"] = now
            self._history(order, f"We refunded ${grand:.2f} offline.", now, "creditmemo")
            self._settle(order, now)
            self._add("creditmemos", memo)
            self._invoice_memos.setdefault(invoice["entity_id"], []).append(memo_id)
            return _copy(memo) if copy else memo

    def ship_order(self, order_id: int, *, at: float | None = None, copy: bool = True) -> dict[str, Any]:
        """Ship every quantity not yet shipped, refunded or canceled (an order is complete once invoiced and
        shipped)."""
        with self._lock:
            order = self._must("orders", order_id)
            now = rec.wire_time(self.clock() if at is None else at)
            open_items = [i for i in order["items"]
                          if i["qty_ordered"] - i["qty_shipped"] - i["qty_refunded"] - i["qty_canceled"] > 0]
            if not open_items or order["state"] in ("closed", "canceled"):
                raise StoreError("The order does not allow a shipment to be created.")
            for item in open_items:
                item["qty_shipped"] = item["qty_ordered"] - item["qty_refunded"] - item["qty_canceled"]
                item["updated_at"] = now
            self._settle(order, now)
            return _copy(order) if copy else order

    def _open_to_invoice(self, order: dict[str, Any]) -> bool:
        return any(i["qty_ordered"] - i["qty_invoiced"] - i["qty_canceled"] > 0 for i in order["items"])

    def _order_item(self, order: dict[str, Any], line: dict[str, Any],
                    unknown: str = "The invoice contains one or more items that are not part of the original "
                                   "order.") -> dict[str, Any]:
        for item in order["items"]:
            if ("order_item_id" in line and item["item_id"] == int(line["order_item_id"])) or \
                    ("order_item_id" not in line and item["sku"] == line.get("sku")):
                return item
        raise StoreError(unknown)

    def _quantities(self, order: dict[str, Any], items: list[dict[str, Any]] | None, done: str,
                    doc: str) -> list[tuple[dict[str, Any], float]]:
        """(order item, qty) pairs of a new invoice, refused beyond the open quantity."""
        if items is None:
            return [(i, i["qty_ordered"] - i[done] - i["qty_canceled"]) for i in order["items"]
                    if i["qty_ordered"] - i[done] - i["qty_canceled"] > 0]
        out = []
        for line in items:
            item = self._order_item(order, line)
            qty = float(line.get("qty", 0))
            if qty <= 0:
                continue
            if qty > item["qty_ordered"] - item[done] - item["qty_canceled"] + 1e-9:
                raise StoreError(f'The quantity to {doc} must not be greater than the un{doc}d quantity for '
                                 'product SKU "%1".', [item["sku"]])
            out.append((item, qty))
        return out

    def _invoice_refundable(self, invoice: dict[str, Any]) -> dict[int, float]:
        """Order item id -> quantity this invoice captured and no credit memo on it took back yet."""
        left = {line["order_item_id"]: line["qty"] for line in invoice["items"]}
        for memo in self._memos_of(invoice):
            for line in memo["items"]:
                left[line["order_item_id"]] = left.get(line["order_item_id"], 0.0) - line["qty"]
        return left

    def _memos_of(self, invoice: dict[str, Any]) -> list[dict[str, Any]]:
        ids = self._invoice_memos.get(invoice["entity_id"], [])
        return [self._tables["creditmemos"][memo_id] for memo_id in ids]

    def _history(self, order: dict[str, Any], comment: str, now: str, entity_name: str) -> None:
        order["status_histories"].insert(0, rec.status_history(
            entity_id=next(self._child_ids["history"]), parent_id=order["entity_id"], status=order["status"],
            comment=comment, entity_name=entity_name, at=now))

    def _settle(self, order: dict[str, Any], now: str) -> None:
        """State and status after a document: closed when all is refunded, complete when invoiced and shipped."""
        items = order["items"]
        refunded_all = all(i["qty_refunded"] >= i["qty_ordered"] - i["qty_canceled"] for i in items)
        invoiced_all = all(i["qty_invoiced"] >= i["qty_ordered"] - i["qty_canceled"] for i in items)
        shipped_all = all(i["qty_shipped"] + i["qty_refunded"] >= i["qty_ordered"] - i["qty_canceled"]
                          for i in items)
        if refunded_all:
            state = "closed"
        elif invoiced_all and shipped_all:
            state = "complete"
        elif any(i["qty_invoiced"] > 0 or i["qty_shipped"] > 0 for i in items):
            state = "processing"
        else:
            state = order["state"]
        order["state"] = state
        order["status"] = {"new": "pending"}.get(state, state)
        order["total_due"] = order["base_total_due"] = rec.money(order["grand_total"] - order.get("total_paid", 0.0))
        order["updated_at"] = now
        assignment = order["extension_attributes"]["shipping_assignments"][0]
        order["extension_attributes"]["shipping_assignments"] = rec.shipping_assignments(
            order, assignment["shipping"]["address"])

    # -- customers, companies, products -----------------------------------------------------------------------
    def upsert_customer(self, data: dict[str, Any], *, at: float | None = None) -> dict[str, Any]:
        """Create (no ``id``) or update (``id`` given) a customer; the email is unique in the website."""
        with self._lock:
            now = rec.wire_time(self.clock() if at is None else at)
            if data.get("id") is not None:
                current = self._must("customers", data["id"])
                return self._update_customer(current, data, now)
            for name in ("email", "firstname", "lastname"):
                if not data.get(name):
                    raise StoreError('"%fieldName" is required. Enter and try again.', {"fieldName": name})
            self._check_email(data["email"], None)
            store_id = int(data.get("store_id", 1))
            if store_id not in STORES.values():
                raise StoreError(STORE_NOT_FOUND)
            customer_id = next(self._ids["customers"])
            customer: dict[str, Any] = {
                "id": customer_id, "group_id": int(data.get("group_id", 1)), "created_at": now, "updated_at": now,
                "created_in": rec.CREATED_IN[store_id], "email": data["email"], "firstname": data["firstname"],
                "lastname": data["lastname"], "store_id": store_id, "website_id": WEBSITE_ID,
                "addresses": [], "disable_auto_group_change": 0,
                "extension_attributes": {"is_subscribed": False},
            }
            self._set_customer_fields(customer, data)
            self._emails[data["email"].casefold()] = customer_id
            self._add("customers", customer)
            return _copy(customer)

    def _check_email(self, email: str, customer_id: int | None) -> None:
        owner = self._emails.get(email.casefold())
        if owner is not None and owner != customer_id:
            raise StoreError("A customer with the same email address already exists in an associated website.")

    def _update_customer(self, current: dict[str, Any], data: dict[str, Any], now: str) -> dict[str, Any]:
        if "email" in data and data["email"] != current["email"]:
            self._check_email(data["email"], current["id"])
            self._emails.pop(current["email"].casefold(), None)
            self._emails[data["email"].casefold()] = current["id"]
            current["email"] = data["email"]
        for name in ("firstname", "lastname", "group_id"):
            if name in data:
                current[name] = data[name]
        self._set_customer_fields(current, data)
        current["updated_at"] = now
        return _copy(current)

    def _set_customer_fields(self, customer: dict[str, Any], data: dict[str, Any]) -> None:
        for name in ("middlename", "prefix", "suffix", "dob", "taxvat", "gender"):
            if data.get(name) is not None:
                customer[name] = data[name]
        if "addresses" in data:
            customer["addresses"] = [
                rec.customer_address(a, address_id=int(a.get("id") or next(self._child_ids["customer_address"])),
                                     customer_id=customer["id"]) for a in data["addresses"] or []]
            for address in customer["addresses"]:
                if address["default_billing"]:
                    customer["default_billing"] = str(address["id"])
                if address["default_shipping"]:
                    customer["default_shipping"] = str(address["id"])
        if data.get("custom_attributes"):
            customer["custom_attributes"] = [dict(a) for a in data["custom_attributes"]]
        company = (data.get("extension_attributes") or {}).get("company_attributes")
        if company:
            self._join_company(customer, int(company["company_id"]), company.get("job_title"))

    def _join_company(self, customer: dict[str, Any], company_id: int, job_title: str | None) -> None:
        self._must("companies", company_id)
        attributes: dict[str, Any] = {"customer_id": customer["id"], "company_id": company_id, "status": 1}
        if job_title:
            attributes["job_title"] = job_title
        customer["extension_attributes"]["company_attributes"] = attributes

    def upsert_company(self, data: dict[str, Any], *, at: float | None = None) -> dict[str, Any]:
        """Create (no ``id``) or update a B2B company; its ``super_user_id`` must be an existing customer, who
        becomes a member. Companies have no ``updated_at`` (Commerce keeps none)."""
        with self._lock:
            if data.get("id") is not None:
                company = self._must("companies", data["id"])
            else:
                for name in ("company_name", "company_email", "super_user_id"):
                    if not data.get(name):
                        raise StoreError('"%fieldName" is required. Enter and try again.', {"fieldName": name})
                company = rec.company_defaults(next(self._ids["companies"]))
            admin_id = data.get("super_user_id", company.get("super_user_id"))
            if admin_id is None:
                raise StoreError('"%fieldName" is required. Enter and try again.', {"fieldName": "super_user_id"})
            admin = self._must("customers", admin_id)
            for name, value in data.items():
                if name == "extension_attributes" and isinstance(value, dict):
                    company["extension_attributes"].update(value)
                elif name != "id":
                    company[name] = value
            if data.get("id") is None:
                self._add("companies", company)
            if (admin["extension_attributes"].get("company_attributes") or {}).get("company_id") != company["id"]:
                self._join_company(admin, company["id"], "Company Administrator")
                admin["updated_at"] = rec.wire_time(self.clock() if at is None else at)
            return _copy(company)

    def upsert_product(self, data: dict[str, Any], *, at: float | None = None) -> dict[str, Any]:
        """Create or update a product by ``sku``."""
        with self._lock:
            sku = data.get("sku")
            if not sku:
                raise StoreError('"%fieldName" is required. Enter and try again.', {"fieldName": "sku"})
            now = rec.wire_time(self.clock() if at is None else at)
            product = self._find("products", sku)
            if product is None:
                product = rec.product_defaults(next(self._ids["products"]), sku, now)
                self._skus[sku] = product["id"]
                self._add("products", product)
            if "status" in data and data["status"] not in (1, 2):
                raise StoreError('Invalid attribute value "%1" for "status".', [str(data["status"])])
            for name, value in data.items():
                if name in ("id", "sku", "created_at", "updated_at"):
                    continue
                if name == "custom_attributes":
                    merged = {a["attribute_code"]: a for a in product["custom_attributes"]}
                    merged.update({a["attribute_code"]: dict(a) for a in value})
                    product["custom_attributes"] = list(merged.values())
                elif name == "extension_attributes" and isinstance(value, dict):
                    product["extension_attributes"].update(value)
                else:
                    product[name] = value
            product["updated_at"] = now
            return _copy(product)

    def update(self, entity: str, key: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Set top-level fields of a record (an admin edit: a renamed order status, a changed email, ...)."""
        if entity == "customers":
            return self.upsert_customer({**changes, "id": int(key)})
        if entity == "companies":
            return self.upsert_company({**changes, "id": int(key)})
        if entity == "products":
            with self._lock:
                self._must("products", key)
            return self.upsert_product({**changes, "sku": key})
        with self._lock:
            record = self._must(entity, key)
            field = self.key_field(entity)
            for name, value in changes.items():
                if name in (field, "increment_id", "store_id", "order_id", "created_at"):
                    raise StoreError('"%1" can\'t be changed.', [name])
                record[name] = value
            record["updated_at"] = self._now()
            return _copy(record)
