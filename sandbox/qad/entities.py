"""The business entities the sandbox serves: key field, URN, browse module and field rules of each."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ml_connector.sandbox.qad.rules import (
    ACTIVITY_RULES,
    CREDIT_NOTE_RULES,
    CUSTOMER_CONTEXT_RULES,
    CUSTOMER_INVOICE_RULES,
    CUSTOMER_RULES,
    ITEM_RULES,
    ORDER_RULES,
    PAYMENT_RULES,
    PURCHASE_ORDER_RULES,
    RECEIPT_RULES,
    SUPPLIER_INVOICE_RULES,
    SUPPLIER_RULES,
    Rule,
)

ADMIN_USER = "sandbox-admin"
SYSTEM_FIELDS = frozenset(
    {"uri", "domainCode", "lastModifiedDate", "lastModifiedUser", "concurrencyHash", "dataOperation"})
CUSTOMER_CONTEXT_DEFAULTS: dict[str, Any] = dict.fromkeys(CUSTOMER_CONTEXT_RULES)  # every record shows them


@dataclass(frozen=True)
class EntitySpec:
    """Static description of one business entity."""

    name: str
    key_field: str
    urn: str
    module: str  # browse module: urn:browse:bebrowse:com.qad.erp.<module>.<name>
    salt: int  # seeded stream of this entity: data.stream_base(seed, salt)
    rules: Mapping[str, Rule]
    defaults: Mapping[str, Any]
    read_only: frozenset[str] = frozenset()
    writable: bool = True  # False: the API only reads it (POST answers 405)


SPECS: dict[str, EntitySpec] = {s.name: s for s in (
    EntitySpec("customerV2s", "customerCode", "urn:be:com.qad.base.customer.ICustomerV2", "base", 1,
               CUSTOMER_RULES,
               {"currencyCode": "USD", "creditTermsCode": "30D", "creditLimit": 0.0, "isActive": True,
                "taxZone": None, "addresses": [], "contacts": [], **CUSTOMER_CONTEXT_DEFAULTS}),
    EntitySpec("supplierV2s", "supplierCode", "urn:be:com.qad.base.supplier.ISupplierV2", "base", 2,
               SUPPLIER_RULES,
               {"currencyCode": "USD", "paymentTermsCode": "30D", "isActive": True, "addresses": []}),
    EntitySpec("items", "itemCode", "urn:be:com.qad.base.item.IItem", "base", 3,
               ITEM_RULES,
               {"description2": "", "unitOfMeasure": "EA", "productLine": "1000", "itemType": "PURCH",
                "itemStatus": "ACTIVE", "listPrice": 0.0, "currencyCode": "USD", "siteCode": "10-100"}),
    EntitySpec("salesOrders", "salesOrderNumber", "urn:be:com.qad.sales.salesorder.ISalesOrder", "sales", 4,
               ORDER_RULES,
               {"requiredDate": None, "status": "open", "externalReference": None, "invoiceNumber": None,
                "invoiceDate": None, "lines": []},
               frozenset({"totalAmount"})),
    EntitySpec("purchaseOrders", "purchaseOrderNumber", "urn:be:com.qad.purchasing.purchaseorder.IPurchaseOrder",
               "purchasing", 5, PURCHASE_ORDER_RULES,
               {"dueDate": None, "status": "open", "lines": []}, frozenset({"totalAmount"})),
    EntitySpec("purchaseOrderReceipts", "receiptId", "urn:be:com.qad.purchasing.receipt.IPurchaseOrderReceipt",
               "purchasing", 6, RECEIPT_RULES,
               {"locationCode": "RECV", "lotSerial": None}),
    EntitySpec("supplierInvoices", "invoiceId", "urn:be:com.qad.financials.supplierinvoice.ISupplierInvoice",
               "financials", 7, SUPPLIER_INVOICE_RULES,
               {"dueDate": None, "taxAmount": 0.0, "isApproved": False, "lines": []},
               frozenset({"matchStatus", "matchedReceivers"})),
    EntitySpec("customerInvoices", "invoiceNumber", "urn:be:com.qad.financials.customerinvoice.ICustomerInvoice",
               "financials", 8, CUSTOMER_INVOICE_RULES,
               {"salesOrderNumber": None, "dueDate": None, "taxAmount": 0.0, "freightAmount": 0.0,
                "externalReference": None, "creditedAmount": 0.0, "paidAmount": 0.0, "lines": []},
               frozenset({"status", "balance", "creditedAmount", "paidAmount"})),
    EntitySpec("creditNotes", "creditNoteNumber", "urn:be:com.qad.financials.creditnote.ICreditNote",
               "financials", 9, CREDIT_NOTE_RULES,
               {"creditDate": None, "taxAmount": 0.0, "freightAmount": 0.0, "externalReference": None,
                "reason": None, "lines": []}),
    EntitySpec("payments", "paymentNumber", "urn:be:com.qad.financials.payment.ICustomerPayment",
               "financials", 10, PAYMENT_RULES, {}, writable=False),
    EntitySpec("customerActivities", "activityId", "urn:be:com.qad.crm.activity.ICustomerActivity", "crm", 11,
               ACTIVITY_RULES, {"contactId": None, "subject": None, "source": None}),
)}

