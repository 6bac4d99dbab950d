"""The org's sObjects and their fields (facts §2.4, §5): what describe answers and what writes are checked against."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SYSTEM_FIELDS = ("Id", "IsDeleted", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById",
                 "SystemModstamp")


@dataclass(frozen=True)
class FieldDef:
    name: str
    type: str  # id, string, textarea, email, phone, url, picklist, reference, boolean, currency, double, date, ...
    length: int = 0
    required: bool = False  # not nillable on create (REQUIRED_FIELD_MISSING)
    createable: bool = True
    updateable: bool = True
    external_id: bool = False
    unique: bool = False
    reference_to: tuple[str, ...] = ()
    relationship: str | None = None  # "Account" for AccountId
    picklist: tuple[str, ...] = ()
    default: Any = None
    custom: bool = False

    def describe(self) -> dict[str, Any]:
        nillable = not self.required and self.type not in {"boolean", "id"}
        return {
            "name": self.name, "label": self.name.removesuffix("__c").replace("_", " "), "type": self.type,
            "length": self.length, "precision": 18 if self.type in {"currency", "double"} else 0,
            "scale": 2 if self.type == "currency" else 0, "externalId": self.external_id, "unique": self.unique,
            "idLookup": self.external_id or self.name == "Id", "createable": self.createable,
            "updateable": self.updateable, "nillable": nillable,
            "defaultedOnCreate": self.default is not None or self.name in SYSTEM_FIELDS,
            "calculated": False, "autoNumber": self.type == "string" and not self.createable and
            self.name.endswith("Number"), "custom": self.custom, "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship,
            "picklistValues": [{"value": v, "label": v, "active": True, "defaultValue": v == self.default}
                               for v in self.picklist],
        }


@dataclass(frozen=True)
class ChildRelationship:
    name: str  # "OrderItems"
    child: str  # "OrderItem"
    field: str  # "OrderId"


@dataclass(frozen=True)
class ObjectDef:
    name: str
    key_prefix: str
    fields: tuple[FieldDef, ...]
    children: tuple[ChildRelationship, ...] = ()
    createable: bool = True
    deletable: bool = True
    revenue_cloud: bool = False  # exists only when the org has Revenue Cloud
    by_name: dict[str, FieldDef] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name.update({f.name.lower(): f for f in self.fields})

    def field(self, name: str) -> FieldDef | None:
        """Field names are case-insensitive in SOQL and writes."""
        return self.by_name.get(name.lower())

    def relationship(self, name: str) -> FieldDef | None:
        """The lookup field behind a relationship name (``Account`` -> ``AccountId``)."""
        for f in self.fields:
            if f.relationship and f.relationship.lower() == name.lower():
                return f
        return None

    def child(self, name: str) -> ChildRelationship | None:
        for rel in self.children:
            if rel.name.lower() == name.lower():
                return rel
        return None

    def external_ids(self) -> list[FieldDef]:
        return [f for f in self.fields if f.external_id]


def _system() -> tuple[FieldDef, ...]:
    ro: dict[str, Any] = {"createable": False, "updateable": False}
    return (FieldDef("Id", "id", 18, **ro), FieldDef("IsDeleted", "boolean", **ro),
            FieldDef("CreatedDate", "datetime", **ro),
            FieldDef("CreatedById", "reference", 18, reference_to=("User",), **ro),
            FieldDef("LastModifiedDate", "datetime", **ro),
            FieldDef("LastModifiedById", "reference", 18, reference_to=("User",), **ro),
            FieldDef("SystemModstamp", "datetime", **ro))


def _address(prefix: str) -> tuple[FieldDef, ...]:
    return (FieldDef(f"{prefix}Street", "textarea", 255), FieldDef(f"{prefix}City", "string", 40),
            FieldDef(f"{prefix}State", "string", 80), FieldDef(f"{prefix}PostalCode", "string", 20),
            FieldDef(f"{prefix}Country", "string", 80))


def _ref(name: str, to: str, **kw: Any) -> FieldDef:
    return FieldDef(name, "reference", 18, reference_to=(to,), relationship=name.removesuffix("Id"), **kw)


def _ext(name: str) -> FieldDef:
    return FieldDef(name, "string", 40, external_id=True, unique=True, custom=True)


ORDER_STATUSES = ("Draft", "Activated")


def catalog() -> list[ObjectDef]:
    """Every sObject the sandbox knows (Invoice/InvoiceLine are filtered by the org's ``revenue_cloud``)."""
    ro: dict[str, Any] = {"createable": False, "updateable": False}
    return [
        ObjectDef("Account", "001", _system() + (
            FieldDef("Name", "string", 255, required=True), FieldDef("AccountNumber", "string", 40),
            FieldDef("Phone", "phone", 40), FieldDef("Website", "url", 255),
            FieldDef("Type", "picklist", 255, picklist=("Prospect", "Customer - Direct", "Customer - Channel",
                                                         "Partner", "Other")),
            FieldDef("Industry", "picklist", 255, picklist=("Manufacturing", "Retail", "Technology", "Other")),
            *_address("Billing"), *_address("Shipping"), FieldDef("Description", "textarea", 32000),
            _ref("ParentId", "Account"), _ref("OwnerId", "User"), _ext("ERP_Id__c")),
            children=(ChildRelationship("Contacts", "Contact", "AccountId"),
                      ChildRelationship("Orders", "Order", "AccountId"))),
        ObjectDef("Contact", "003", _system() + (
            FieldDef("LastName", "string", 80, required=True), FieldDef("FirstName", "string", 40),
            FieldDef("Salutation", "picklist", 40, picklist=("Mr.", "Ms.", "Mrs.", "Dr.", "Prof.")),
            FieldDef("Name", "string", 121, **ro), FieldDef("Email", "email", 80), FieldDef("Phone", "phone", 40),
            FieldDef("MobilePhone", "phone", 40), FieldDef("Title", "string", 128), _ref("AccountId", "Account"),
            *_address("Mailing"), _ref("OwnerId", "User"), _ext("ERP_Id__c"))),
        ObjectDef("Product2", "01t", _system() + (
            FieldDef("Name", "string", 255, required=True), FieldDef("ProductCode", "string", 255),
            FieldDef("Description", "textarea", 4000), FieldDef("IsActive", "boolean", default=False),
            FieldDef("Family", "picklist", 255, picklist=("None", "Hardware", "Software", "Service")),
            FieldDef("StockKeepingUnit", "string", 180), FieldDef("QuantityUnitOfMeasure", "picklist", 255,
                                                                   picklist=("Each", "Box", "Kg", "Hour")),
            FieldDef("ExternalId", "string", 255), _ext("ERP_Item_No__c")),
            children=(ChildRelationship("PricebookEntries", "PricebookEntry", "Product2Id"),)),
        ObjectDef("Pricebook2", "01s", _system() + (
            FieldDef("Name", "string", 255, required=True), FieldDef("IsActive", "boolean", default=False),
            FieldDef("IsStandard", "boolean", **ro), FieldDef("Description", "string", 255)),
            children=(ChildRelationship("PricebookEntries", "PricebookEntry", "Pricebook2Id"),)),
        ObjectDef("PricebookEntry", "01u", _system() + (
            _ref("Pricebook2Id", "Pricebook2", required=True, updateable=False),
            _ref("Product2Id", "Product2", required=True, updateable=False),
            FieldDef("UnitPrice", "currency", required=True), FieldDef("IsActive", "boolean", default=False),
            FieldDef("UseStandardPrice", "boolean", default=False), FieldDef("ProductCode", "string", 255, **ro),
            FieldDef("Name", "string", 255, **ro))),
        ObjectDef("Order", "801", _system() + (
            _ref("AccountId", "Account", required=True), FieldDef("EffectiveDate", "date", required=True),
            FieldDef("Status", "picklist", 40, required=True, picklist=ORDER_STATUSES),
            FieldDef("StatusCode", "picklist", 40, picklist=ORDER_STATUSES, **ro),
            _ref("Pricebook2Id", "Pricebook2"), FieldDef("OrderNumber", "string", 30, **ro),
            FieldDef("TotalAmount", "currency", **ro), FieldDef("ActivatedDate", "datetime", **ro),
            FieldDef("EndDate", "date"), FieldDef("Type", "picklist", 255, picklist=("Standard", "Return")),
            FieldDef("PoNumber", "string", 80), FieldDef("Description", "textarea", 32000),
            *_address("Billing"), *_address("Shipping"), _ref("OwnerId", "User"), _ext("ERP_Id__c")),
            children=(ChildRelationship("OrderItems", "OrderItem", "OrderId"),)),
        ObjectDef("OrderItem", "802", _system() + (
            _ref("OrderId", "Order", required=True, updateable=False),
            _ref("PricebookEntryId", "PricebookEntry", required=True, updateable=False),
            _ref("Product2Id", "Product2", **ro), FieldDef("Quantity", "double", required=True),
            FieldDef("UnitPrice", "currency", required=True), FieldDef("ListPrice", "currency", **ro),
            FieldDef("TotalPrice", "currency", **ro), FieldDef("ServiceDate", "date"), FieldDef("EndDate", "date"),
            FieldDef("Description", "string", 255), FieldDef("OrderItemNumber", "string", 30, **ro),
            FieldDef("ERP_Line_Id__c", "string", 40, custom=True))),
        ObjectDef("Invoice", "3tt", _system() + (
            _ref("BillingAccountId", "Account"), _ref("BillToContactId", "Contact"),
            _ref("ReferenceEntityId", "Order"),  # the record billed (an Order here; polymorphic in the org)
            FieldDef("InvoiceNumber", "string", 255, **ro), FieldDef("InvoiceDate", "date"),
            FieldDef("DueDate", "date"), FieldDef("Status", "picklist", 40, picklist=("Draft", "Posted")),
            FieldDef("TotalAmount", "currency", **ro), FieldDef("TotalAmountWithTax", "currency", **ro),
            FieldDef("Balance", "currency", **ro)),
            children=(ChildRelationship("InvoiceLines", "InvoiceLine", "InvoiceId"),),
            createable=False, deletable=False, revenue_cloud=True),
        ObjectDef("InvoiceLine", "5TT", _system() + (
            _ref("InvoiceId", "Invoice", **ro), _ref("Product2Id", "Product2", **ro),
            FieldDef("Quantity", "double", **ro), FieldDef("UnitPrice", "currency", **ro),
            FieldDef("ChargeAmount", "currency", **ro), FieldDef("Description", "string", 255)),
            createable=False, deletable=False, revenue_cloud=True),
    ]
