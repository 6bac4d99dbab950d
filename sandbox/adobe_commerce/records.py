"""Record shapes of the Commerce REST API (OpenAPI ``admin-schema-2.4.8.yaml`` field names and types).

Records are kept in their wire shape. Like Magento's ``DataObjectProcessor``, a field without a value is left out
of the answer unless its getter is declared non-nullable (the OpenAPI ``required`` list): those come back as
``null`` (``payment.account_status``, ``payment.cc_last4``, a company's ``reject_reason``/``rejected_at``). So a
never-invoiced order has no ``total_invoiced`` at all, and a guest order no ``customer_id``: a reader must cope.
"""

from __future__ import annotations

import time
from typing import Any

CURRENCY = "USD"
STORE_NAMES = {1: "Main Website\nMain Website Store\nDefault Store View",
               2: "Main Website\nMain Website Store\nGerman Store View"}
CREATED_IN = {1: "Default Store View", 2: "German Store View"}
SHIPPING_PER_ITEM = 5.0  # Magento's Flat Rate default: 5.00 per item
SHIPPING_METHOD = "flatrate_flatrate"
SHIPPING_DESCRIPTION = "Flat Rate - Fixed"
PAYMENT_METHOD = "checkmo"
PAYMENT_TITLE = "Check / Money order"


def wire_time(epoch: float) -> str:
    """Commerce's timestamp on the wire: UTC, ``YYYY-MM-DD HH:MM:SS``, no zone suffix."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def money(value: float) -> float:
    return round(float(value) + 0.0, 2)


def increment_id(number: int) -> str:
    """A document number as Commerce shows it: 9 digits, zero-padded text."""
    return f"{number:09d}"


def order_address(address: dict[str, Any], *, entity_id: int, parent_id: int, address_type: str,
                  email: str, customer_id: int | None) -> dict[str, Any]:
    """A billing or shipping address of an order, copied from the customer's address (or the guest's input)."""
    region = address.get("region") if isinstance(address.get("region"), dict) else {}
    out: dict[str, Any] = {
        "address_type": address_type, "entity_id": entity_id, "parent_id": parent_id,
        "firstname": address.get("firstname", ""), "lastname": address.get("lastname", ""), "email": email,
        "street": list(address.get("street") or []), "city": address.get("city", ""),
        "postcode": address.get("postcode", ""), "country_id": address.get("country_id", "US"),
        "telephone": address.get("telephone", ""),
    }
    if region:
        out.update(region=region.get("region"), region_code=region.get("region_code"),
                   region_id=region.get("region_id"))
    if customer_id is not None:
        out["customer_id"] = customer_id
        if address.get("id") is not None:
            out["customer_address_id"] = address["id"]
    return {k: v for k, v in out.items() if v is not None}


def order_item(*, item_id: int, order_id: int, store_id: int, product: dict[str, Any], qty: float, price: float,
               at: str) -> dict[str, Any]:
    row = money(price * qty)
    return {
        "item_id": item_id, "order_id": order_id, "quote_item_id": item_id, "store_id": store_id,
        "sku": product["sku"], "name": product.get("name", product["sku"]), "product_id": product["id"],
        "product_type": product.get("type_id", "simple"), "is_virtual": 0, "is_qty_decimal": 0, "no_discount": 0,
        "free_shipping": 0, "weight": product.get("weight", 1.0), "row_weight": money(product.get("weight", 1.0) * qty),
        "qty_ordered": float(qty), "qty_invoiced": 0.0, "qty_refunded": 0.0, "qty_shipped": 0.0, "qty_canceled": 0.0,
        "qty_backordered": 0.0, "qty_returned": 0.0,
        "price": money(price), "base_price": money(price), "original_price": money(product.get("price", price)),
        "base_original_price": money(product.get("price", price)), "price_incl_tax": money(price),
        "base_price_incl_tax": money(price), "row_total": row, "base_row_total": row, "row_total_incl_tax": row,
        "base_row_total_incl_tax": row, "row_invoiced": 0.0, "base_row_invoiced": 0.0, "amount_refunded": 0.0,
        "base_amount_refunded": 0.0, "tax_amount": 0.0, "base_tax_amount": 0.0, "tax_percent": 0.0,
        "tax_invoiced": 0.0, "base_tax_invoiced": 0.0, "discount_amount": 0.0, "base_discount_amount": 0.0,
        "discount_percent": 0.0, "discount_invoiced": 0.0, "base_discount_invoiced": 0.0,
        "created_at": at, "updated_at": at,
    }


def payment(*, entity_id: int, parent_id: int, amount: float) -> dict[str, Any]:
    return {
        "account_status": None, "additional_information": [PAYMENT_TITLE], "cc_last4": None,
        "method": PAYMENT_METHOD, "entity_id": entity_id, "parent_id": parent_id,
        "amount_ordered": money(amount), "base_amount_ordered": money(amount),
        "shipping_amount": 0.0, "base_shipping_amount": 0.0,
    }


def status_history(*, entity_id: int, parent_id: int, status: str, comment: str, entity_name: str,
                   at: str) -> dict[str, Any]:
    return {"entity_id": entity_id, "parent_id": parent_id, "status": status, "comment": comment,
            "entity_name": entity_name, "is_customer_notified": 0, "is_visible_on_front": 0, "created_at": at}


def order_totals(order: dict[str, Any]) -> None:
    """Recompute the order's header totals from its items (subtotal, shipping, grand total, quantities)."""
    items = order["items"]
    subtotal = money(sum(i["row_total"] for i in items))
    qty = sum(i["qty_ordered"] for i in items)
    shipping = money(SHIPPING_PER_ITEM * qty)
    grand = money(subtotal + shipping)
    order.update(
        subtotal=subtotal, base_subtotal=subtotal, subtotal_incl_tax=subtotal, base_subtotal_incl_tax=subtotal,
        shipping_amount=shipping, base_shipping_amount=shipping, shipping_incl_tax=shipping,
        base_shipping_incl_tax=shipping, shipping_tax_amount=0.0, base_shipping_tax_amount=0.0,
        shipping_discount_amount=0.0, base_shipping_discount_amount=0.0,
        tax_amount=0.0, base_tax_amount=0.0, discount_amount=0.0, base_discount_amount=0.0,
        grand_total=grand, base_grand_total=grand, total_qty_ordered=float(qty), base_total_qty_ordered=float(qty),
        total_item_count=len(items), weight=money(sum(i["row_weight"] for i in items)),
    )
    order["total_due"] = order["base_total_due"] = money(grand - order.get("total_paid", 0.0))


def shipping_assignments(order: dict[str, Any], address: dict[str, Any]) -> list[dict[str, Any]]:
    """``extension_attributes.shipping_assignments``: one assignment holding every item and the shipping total."""
    total = {"shipping_amount": order["shipping_amount"], "base_shipping_amount": order["base_shipping_amount"],
             "shipping_incl_tax": order["shipping_incl_tax"], "base_shipping_incl_tax": order["base_shipping_incl_tax"],
             "shipping_tax_amount": 0.0, "base_shipping_tax_amount": 0.0, "shipping_discount_amount": 0.0,
             "base_shipping_discount_amount": 0.0}
    for key in ("shipping_invoiced", "base_shipping_invoiced", "shipping_refunded", "base_shipping_refunded"):
        if key in order:
            total[key] = order[key]
    return [{"shipping": {"address": address, "method": SHIPPING_METHOD, "total": total},
             "items": [dict(item) for item in order["items"]]}]


def invoice_item(*, entity_id: int, parent_id: int, item: dict[str, Any], qty: float) -> dict[str, Any]:
    row = money(item["price"] * qty)
    return {"entity_id": entity_id, "parent_id": parent_id, "order_item_id": item["item_id"], "sku": item["sku"],
            "name": item["name"], "product_id": item["product_id"], "qty": float(qty), "price": item["price"],
            "base_price": item["base_price"], "price_incl_tax": item["price_incl_tax"],
            "base_price_incl_tax": item["base_price_incl_tax"], "row_total": row, "base_row_total": row,
            "row_total_incl_tax": row, "base_row_total_incl_tax": row, "tax_amount": 0.0, "base_tax_amount": 0.0,
            "discount_amount": 0.0, "base_discount_amount": 0.0}


def creditmemo_item(*, entity_id: int, parent_id: int, item: dict[str, Any], qty: float) -> dict[str, Any]:
    out = invoice_item(entity_id=entity_id, parent_id=parent_id, item=item, qty=qty)
    out["base_cost"] = None  # required getter, no cost kept in the sandbox's catalogue: Commerce answers null
    return out


def document_totals(*, subtotal: float, shipping: float, adjustment_positive: float = 0.0,
                    adjustment_negative: float = 0.0) -> dict[str, Any]:
    grand = money(subtotal + shipping + adjustment_positive - adjustment_negative)
    return {"subtotal": money(subtotal), "base_subtotal": money(subtotal), "subtotal_incl_tax": money(subtotal),
            "base_subtotal_incl_tax": money(subtotal), "shipping_amount": money(shipping),
            "base_shipping_amount": money(shipping), "shipping_incl_tax": money(shipping),
            "base_shipping_incl_tax": money(shipping), "shipping_tax_amount": 0.0, "base_shipping_tax_amount": 0.0,
            "tax_amount": 0.0, "base_tax_amount": 0.0, "discount_amount": 0.0, "base_discount_amount": 0.0,
            "grand_total": grand, "base_grand_total": grand}


def currencies() -> dict[str, Any]:
    return {"base_currency_code": CURRENCY, "global_currency_code": CURRENCY, "order_currency_code": CURRENCY,
            "store_currency_code": CURRENCY, "base_to_global_rate": 1.0, "base_to_order_rate": 1.0,
            "store_to_base_rate": 0.0, "store_to_order_rate": 0.0}


def customer_address(address: dict[str, Any], *, address_id: int, customer_id: int) -> dict[str, Any]:
    region = address.get("region")
    out: dict[str, Any] = {
        "id": address_id, "customer_id": customer_id, "firstname": address.get("firstname", ""),
        "lastname": address.get("lastname", ""), "street": list(address.get("street") or []),
        "city": address.get("city", ""), "postcode": address.get("postcode", ""),
        "country_id": address.get("country_id", "US"), "telephone": address.get("telephone", ""),
        "default_billing": bool(address.get("default_billing", False)),
        "default_shipping": bool(address.get("default_shipping", False)),
    }
    if isinstance(region, dict):
        out["region"] = {"region_code": region.get("region_code"), "region": region.get("region"),
                         "region_id": int(region.get("region_id") or 0)}
        out["region_id"] = out["region"]["region_id"]
    for key in ("company", "vat_id", "middlename"):
        if address.get(key) is not None:
            out[key] = address[key]
    return out


def company_defaults(company_id: int) -> dict[str, Any]:
    """A new company as Commerce B2B answers it: approved, not rejected, no payment-method override."""
    return {"id": company_id, "status": 1, "street": [], "customer_group_id": 1, "sales_representative_id": 1,
            "reject_reason": None, "rejected_at": None,
            "extension_attributes": {"applicable_payment_method": 0, "use_config_settings": 1,
                                     "is_purchase_order_enabled": False,
                                     "quote_config": {"company_id": str(company_id), "is_quote_enabled": False}}}


def product_defaults(product_id: int, sku: str, at: str) -> dict[str, Any]:
    return {"id": product_id, "sku": sku, "name": sku, "attribute_set_id": 4, "price": 0.0, "status": 1,
            "visibility": 4, "type_id": "simple", "created_at": at, "updated_at": at, "weight": 1.0,
            "extension_attributes": {"website_ids": [1], "category_links": []},
            "product_links": [], "options": [], "media_gallery_entries": [], "tier_prices": [],
            "custom_attributes": [{"attribute_code": "tax_class_id", "value": "2"},
                                  {"attribute_code": "url_key", "value": sku.lower()}]}
