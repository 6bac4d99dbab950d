"""The modules and fields of a sandbox org, and the routes that describe them (facts §3, §9).

The field metadata is what ``/settings/fields`` serves *and* what ``records.py`` validates writes against, so
the sandbox cannot accept a value its own metadata forbids. Field names follow the SDK's ``record/field.py``.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ml_connector.sandbox.zoho.common import ApiError, Org, json_response, new_id, zoho_error

if TYPE_CHECKING:
    from ml_connector.sandbox.zoho.common import ZohoContext

JSON_TYPES = {
    "text": "string", "textarea": "string", "email": "string", "phone": "string", "website": "string",
    "picklist": "string", "date": "string", "datetime": "string", "autonumber": "string",
    "integer": "integer", "bigint": "string", "double": "double", "currency": "double", "percent": "double",
    "boolean": "boolean", "lookup": "jsonobject", "ownerlookup": "jsonobject", "userlookup": "jsonobject",
    "subform": "jsonarray", "formula": "double", "linetax": "jsonarray",
}
DEFAULT_LENGTHS = {"text": 255, "textarea": 32000, "email": 100, "phone": 30, "website": 255, "picklist": 120}
SALES_ORDER_STATUSES = ["Created", "Approved", "Delivered", "Cancelled"]
PURCHASE_ORDER_STATUSES = ["Created", "Approved", "Delivered", "Cancelled"]
CARRIERS = ["FedEX", "UPS", "USPS", "DHL", "BlueDart"]
USAGE_UNITS = ["Box", "Carton", "Dozen", "Each", "Hours", "Impressions", "Lb", "M", "Pack", "Pages", "Pieces",
               "Quantity", "Reams", "Sheet", "Spiral Binder", "Sq Ft"]
ACCOUNT_TYPES = ["Analyst", "Competitor", "Customer", "Distributor", "Integrator", "Investor", "Other", "Partner",
                 "Press", "Prospect", "Reseller", "Supplier", "Vendor"]
PRODUCT_CATEGORIES = ["Hardware", "Software", "CRM Applications"]
MATCH_STATUSES = ["Pending", "Matched", "Mismatch"]


def _stable_id(*parts: str) -> str:
    """Metadata ids that stay the same across runs (clients may cache them)."""
    return new_id(900_000_000_000 + zlib.crc32("/".join(parts).encode()) % 99_999_999_999)


def make_field(module: str, api_name: str, data_type: str, *, label: str | None = None, length: int | None = None,
               mandatory: bool = False, read_only: bool = False, unique: bool = False, custom: bool = False,
               lookup: str | None = None, picklist: list[str] | None = None, subform: str | None = None,
               formula: str | None = None) -> dict[str, Any]:
    """One ``/settings/fields`` entry in the documented shape (facts §3 "Metadata")."""
    text = label or api_name.replace("_", " ")
    return {
        "api_name": api_name,
        "id": _stable_id(module, api_name),
        "data_type": data_type,
        "json_type": JSON_TYPES.get(data_type, "string"),
        "field_label": text,
        "display_label": text,
        "custom_field": custom,
        "system_mandatory": mandatory,
        "read_only": read_only,
        "field_read_only": read_only,
        "length": length or DEFAULT_LENGTHS.get(data_type, 16),
        "unique": {"casesensitive": "false"} if unique else {},
        "external": None,
        "lookup": {"module": {"api_name": lookup, "id": _stable_id("module", lookup)}, "api_name": None,
                   "display_label": lookup, "id": _stable_id(module, api_name, "lookup")} if lookup else {},
        "pick_list_values": [{"display_value": "-None-", "actual_value": "-None-", "id": _stable_id(module, api_name,
                                                                                                  "-None-")}]
        + [{"display_value": v, "actual_value": v, "id": _stable_id(module, api_name, v), "type": "used",
            "sequence_number": i + 1} for i, v in enumerate(picklist)] if picklist is not None else [],
        "associated_module": {"module": subform, "id": _stable_id("module", subform)} if subform else None,
        "formula": {"return_type": formula, "expression": ""} if formula else {},
        "visible": True,
        "api_supported": True,
    }


@dataclass
class ModuleDef:
    """A module: its metadata entry, its fields and the rules records.py applies."""

    api_name: str
    module_name: str
    singular: str
    plural: str
    name_field: str  # what a lookup's "name" shows
    dup_field: str  # the system duplicate-check field (facts §2.3)
    generated_type: str = "default"
    fields: list[dict[str, Any]] = field(default_factory=list)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # subform api name -> row fields
    listed: bool = True  # subform modules answer /settings/fields but are not in /settings/modules

    def __post_init__(self) -> None:
        self.by_name = {f["api_name"]: f for f in self.fields}
        self.row_by_name = {sub: {f["api_name"]: f for f in fs} for sub, fs in self.rows.items()}

    def summary(self) -> dict[str, Any]:
        return {"api_name": self.api_name, "module_name": self.module_name, "id": _stable_id("module", self.api_name),
                "api_supported": True, "generated_type": self.generated_type, "creatable": True, "editable": True,
                "deletable": True, "viewable": True, "visible": True, "singular_label": self.singular,
                "plural_label": self.plural, "modified_time": None, "parent_module": {},
                "sequence_number": 0}

    def subforms(self) -> tuple[str, ...]:
        return tuple(self.rows)

    def field(self, api_name: str) -> dict[str, Any] | None:
        return self.by_name.get(api_name)

    def lookup_target(self, api_name: str) -> str | None:
        """The module a lookup points to; "" for user lookups; None otherwise."""
        return _target(self.by_name.get(api_name))

    def row_lookup_target(self, subform: str, api_name: str) -> str | None:
        return _target(self.row_by_name.get(subform, {}).get(api_name))

    def unique_fields(self) -> list[str]:
        return [f["api_name"] for f in self.fields if f["unique"]]

    def indexed_fields(self) -> list[str]:
        """Fields upserts can match on: the system duplicate-check field, then the unique ones."""
        return list(dict.fromkeys([self.dup_field, *self.unique_fields()]))


def _target(spec: dict[str, Any] | None) -> str | None:
    if spec is None:
        return None
    if spec["data_type"] in {"ownerlookup", "userlookup"}:
        return ""
    if spec["data_type"] == "lookup":
        target: str = spec["lookup"]["module"]["api_name"]
        return target
    return None


def _system(module: str) -> list[dict[str, Any]]:
    return [
        make_field(module, "id", "bigint", label="Record Id", read_only=True),
        make_field(module, "Owner", "ownerlookup", label="Owner"),
        make_field(module, "Created_By", "ownerlookup", read_only=True),
        make_field(module, "Modified_By", "ownerlookup", read_only=True),
        make_field(module, "Created_Time", "datetime", read_only=True),
        make_field(module, "Modified_Time", "datetime", read_only=True),
        make_field(module, "Description", "textarea"),
        make_field(module, "ERP_Key", "text", label="ERP Key", length=100, unique=True, custom=True),
    ]


def _address(module: str, prefix: str, code: str = "Code") -> list[dict[str, Any]]:
    return [make_field(module, f"{prefix}_{part}", "text", length=250 if part == "Street" else 100)
            for part in ("Street", "City", "State", code, "Country")]


def _line_rows(subform: str) -> list[dict[str, Any]]:
    return [
        make_field(subform, "id", "bigint", read_only=True),
        make_field(subform, "Product_Name", "lookup", lookup="Products", mandatory=True),
        make_field(subform, "Quantity", "double", mandatory=True),
        make_field(subform, "List_Price", "currency"),
        make_field(subform, "Discount", "currency"),
        make_field(subform, "Tax", "currency"),
        make_field(subform, "Description", "textarea", length=2000),
        make_field(subform, "Sequence_Number", "bigint"),
        make_field(subform, "Total", "formula", read_only=True, formula="double"),
        make_field(subform, "Total_After_Discount", "formula", read_only=True, formula="double"),
        make_field(subform, "Net_Total", "formula", read_only=True, formula="double"),
        make_field(subform, "Parent_Id", "lookup", read_only=True),
        make_field(subform, "Created_Time", "datetime", read_only=True),
        make_field(subform, "Modified_Time", "datetime", read_only=True),
    ]


def _order_fields(module: str, statuses: list[str]) -> list[dict[str, Any]]:
    return [
        make_field(module, "Subject", "text", mandatory=True),
        make_field(module, "Status", "picklist", picklist=statuses),
        make_field(module, "Due_Date", "date"),
        make_field(module, "Contact_Name", "lookup", lookup="Contacts"),
        make_field(module, "Carrier", "picklist", picklist=CARRIERS),
        make_field(module, "Sub_Total", "currency", read_only=True),
        make_field(module, "Discount", "currency"),
        make_field(module, "Tax", "currency"),
        make_field(module, "Adjustment", "currency"),
        make_field(module, "Grand_Total", "currency", read_only=True),
        make_field(module, "Terms_and_Conditions", "textarea"),
        *_address(module, "Billing"),
        *_address(module, "Shipping"),
    ]


def build_catalog(config: dict[str, Any]) -> list[ModuleDef]:
    """The modules of a sandbox org; picklist values and layout-mandatory fields come from ``config``."""
    po_vendor_mandatory = bool(config.get("po_vendor_mandatory", True))
    purchase_items = str(config.get("purchase_items_name", "Purchase_Items"))
    so_statuses = list(config.get("sales_order_statuses", SALES_ORDER_STATUSES))
    po_statuses = list(config.get("purchase_order_statuses", PURCHASE_ORDER_STATUSES))
    m = make_field
    vendors = ModuleDef("Vendors", "Vendors", "Vendor", "Vendors", "Vendor_Name", "Vendor_Name", fields=[
        m("Vendors", "Vendor_Name", "text", mandatory=True, length=120),
        m("Vendors", "Email", "email"), m("Vendors", "Phone", "phone"), m("Vendors", "Website", "website"),
        m("Vendors", "GL_Account", "text", length=120), m("Vendors", "Category", "text", length=120),
        m("Vendors", "Street", "text", length=250), m("Vendors", "City", "text", length=100),
        m("Vendors", "State", "text", length=100), m("Vendors", "Zip_Code", "text", length=30),
        m("Vendors", "Country", "text", length=100), *_system("Vendors")])
    products = ModuleDef("Products", "Products", "Product", "Products", "Product_Name", "Product_Name", fields=[
        m("Products", "Product_Name", "text", mandatory=True, length=120),
        m("Products", "Product_Code", "text", length=40),
        m("Products", "Vendor_Name", "lookup", lookup="Vendors"),
        m("Products", "Unit_Price", "currency"), m("Products", "Qty_in_Stock", "double"),
        m("Products", "Qty_Ordered", "double"), m("Products", "Qty_in_Demand", "double"),
        m("Products", "Reorder_Level", "double"),
        m("Products", "Usage_Unit", "picklist", picklist=USAGE_UNITS),
        m("Products", "Product_Active", "boolean"),
        m("Products", "Product_Category", "picklist", picklist=PRODUCT_CATEGORIES),
        m("Products", "Manufacturer", "text", length=120), m("Products", "Taxable", "boolean"),
        m("Products", "Commission_Rate", "currency"), m("Products", "Handler", "userlookup"),
        *_system("Products")])
    accounts = ModuleDef("Accounts", "Accounts", "Account", "Accounts", "Account_Name", "Account_Name", fields=[
        m("Accounts", "Account_Name", "text", mandatory=True, length=200),
        m("Accounts", "Account_Number", "text", length=40),
        m("Accounts", "Account_Type", "picklist", picklist=ACCOUNT_TYPES),
        m("Accounts", "Parent_Account", "lookup", lookup="Accounts"),
        m("Accounts", "Phone", "phone"), m("Accounts", "Fax", "phone"), m("Accounts", "Website", "website"),
        m("Accounts", "Industry", "text", length=120), m("Accounts", "Employees", "integer"),
        m("Accounts", "Annual_Revenue", "currency"),
        *_address("Accounts", "Billing"), *_address("Accounts", "Shipping"), *_system("Accounts")])
    contacts = ModuleDef("Contacts", "Contacts", "Contact", "Contacts", "Full_Name", "Email", fields=[
        m("Contacts", "Last_Name", "text", mandatory=True, length=80),
        m("Contacts", "First_Name", "text", length=40),
        m("Contacts", "Full_Name", "text", read_only=True),
        m("Contacts", "Email", "email"), m("Contacts", "Phone", "phone"), m("Contacts", "Mobile", "phone"),
        m("Contacts", "Account_Name", "lookup", lookup="Accounts"),
        m("Contacts", "Vendor_Name", "lookup", lookup="Vendors"),
        m("Contacts", "Title", "text", length=100),
        *_address("Contacts", "Mailing", code="Zip"), *_system("Contacts")])
    purchase_orders = ModuleDef(
        "Purchase_Orders", "PurchaseOrders", "Purchase Order", "Purchase Orders", "Subject", "Subject",
        fields=[*_order_fields("Purchase_Orders", po_statuses),
                m("Purchase_Orders", "Vendor_Name", "lookup", lookup="Vendors", mandatory=po_vendor_mandatory),
                m("Purchase_Orders", "PO_Number", "text", length=100), m("Purchase_Orders", "PO_Date", "date"),
                m("Purchase_Orders", "Requisition_No", "text", length=100),
                m("Purchase_Orders", "Tracking_Number", "text", length=100),
                m("Purchase_Orders", purchase_items, "subform", subform=purchase_items),
                *_system("Purchase_Orders")],
        rows={purchase_items: _line_rows(purchase_items)})
    sales_orders = ModuleDef(
        "Sales_Orders", "SalesOrders", "Sales Order", "Sales Orders", "Subject", "Subject",
        fields=[*_order_fields("Sales_Orders", so_statuses),
                m("Sales_Orders", "Account_Name", "lookup", lookup="Accounts", mandatory=True),
                m("Sales_Orders", "SO_Number", "text", length=100),
                m("Sales_Orders", "Customer_No", "text", length=100),
                m("Sales_Orders", "Purchase_Order", "text", length=100),
                m("Sales_Orders", "Pending", "text", length=100),
                m("Sales_Orders", "Ordered_Items", "subform", subform="Ordered_Items"),
                *_system("Sales_Orders")],
        rows={"Ordered_Items": _line_rows("Ordered_Items")})
    invoices = ModuleDef(
        "Vendor_Invoices", "Vendor_Invoices", "Vendor Invoice", "Vendor Invoices", "Name", "Name",
        generated_type="custom",
        fields=[m("Vendor_Invoices", "Name", "text", mandatory=True, length=120),
                m("Vendor_Invoices", "Invoice_Reference", "text", length=100, custom=True),
                m("Vendor_Invoices", "Invoice_Date", "date", custom=True),
                m("Vendor_Invoices", "Due_Date", "date", custom=True),
                m("Vendor_Invoices", "Total_Amount", "currency", custom=True),
                m("Vendor_Invoices", "Currency", "text", length=10, custom=True),
                m("Vendor_Invoices", "Match_Status", "picklist", picklist=MATCH_STATUSES, custom=True),
                m("Vendor_Invoices", "Vendor", "lookup", lookup="Vendors", custom=True),
                m("Vendor_Invoices", "Purchase_Order", "lookup", lookup="Purchase_Orders", custom=True),
                *_system("Vendor_Invoices")])
    modules = [vendors, products, accounts, contacts, purchase_orders, sales_orders, invoices]
    for parent in (purchase_orders, sales_orders):
        for sub, rows in parent.rows.items():
            for row in rows:
                if row["api_name"] == "Parent_Id":
                    row["lookup"] = {"module": {"api_name": parent.api_name, "id": _stable_id("module",
                                                                                            parent.api_name)}}
            modules.append(ModuleDef(sub, sub, sub.replace("_", " "), sub.replace("_", " "), "id", "id",
                                     generated_type="subform", fields=rows, listed=False))
    return modules


def routes(ctx: ZohoContext) -> list[BaseRoute]:
    """``/settings/modules``, ``/settings/modules/{api_name}``, ``/settings/fields``, ``/users``, ``/org``."""

    def slotted(scope: str, handler: Callable[[Request, Org], Response]) -> Callable[[Request], Awaitable[Response]]:
        """Auth, then one of the org's concurrent slots for the whole call, then one credit."""
        async def run(request: Request) -> Response:
            org = ctx.authorize(request, scope)
            async with ctx.slot(org):
                ctx.charge(org, 1)
                return handler(request, org)

        return run

    def list_modules(request: Request, org: Org) -> Response:
        store = ctx.store_for(org)
        return json_response({"modules": [m.summary() for m in store.catalog.values() if m.listed]})

    def one_module(request: Request, org: Org) -> Response:
        store = ctx.store_for(org)
        name = request.path_params["api_name"]
        definition = store.catalog.get(name)
        if definition is None or not definition.listed:
            raise ApiError(zoho_error("INVALID_MODULE", "the module name given seems to be invalid", 400,
                                      {"resource_path_index": 2}))
        summary = definition.summary()
        summary["fields"] = store.fields(name)
        return json_response({"modules": [summary]})

    def list_fields(request: Request, org: Org) -> Response:
        store = ctx.store_for(org)
        name = request.query_params.get("module")
        if not name:
            raise ApiError(zoho_error("REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", 400,
                                      {"param_name": "module"}))
        if not store.has_module(name):
            raise ApiError(zoho_error("INVALID_MODULE", "the module name given seems to be invalid", 400,
                                      {"param_name": "module"}))
        return json_response({"fields": store.fields(name)})

    def users(request: Request, org: Org) -> Response:
        kind = request.query_params.get("type", "AllUsers")
        user = {"id": org.user_id, "email": org.user_email, "full_name": org.user_name,
                "first_name": org.user_name.split(" ")[0], "last_name": org.user_name.split(" ")[-1],
                "status": "active", "confirm": True, "role": {"name": "CEO", "id": _stable_id(org.org_id, "role")},
                "profile": {"name": "Administrator", "id": _stable_id(org.org_id, "profile")},
                "time_zone": "Etc/UTC", "zuid": org.user_id}
        if kind not in {"CurrentUser", "AllUsers", "ActiveUsers", "AdminUsers"}:
            raise ApiError(zoho_error("INVALID_DATA", "invalid data", 400, {"param_name": "type"}))
        return json_response({"users": [user], "info": {"per_page": 200, "count": 1, "page": 1,
                                                        "more_records": False}})

    def org_info(request: Request, org: Org) -> Response:
        return json_response({"org": [{"id": org.org_id, "zgid": org.org_id, "company_name": org.name,
                                       "domain_name": org.name.lower().replace(" ", ""),
                                       "primary_email": org.user_email, "time_zone": "Etc/UTC",
                                       "currency": "US Dollar", "iso_code": "USD", "type": "production",
                                       "country_code": org.dc.upper(),
                                       "license_details": {"paid_type": org.edition, "paid": True}}]})

    return [
        Route("/crm/v8/settings/modules", slotted("ZohoCRM.settings.modules.READ", list_modules), methods=["GET"]),
        Route("/crm/v8/settings/modules/{api_name}", slotted("ZohoCRM.settings.modules.READ", one_module),
              methods=["GET"]),
        Route("/crm/v8/settings/fields", slotted("ZohoCRM.settings.fields.READ", list_fields), methods=["GET"]),
        Route("/crm/v8/users", slotted("ZohoCRM.users.READ", users), methods=["GET"]),
        Route("/crm/v8/org", slotted("ZohoCRM.org.READ", org_info), methods=["GET"]),
    ]
