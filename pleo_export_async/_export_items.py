"""Wire models of `GET /v3/export-items`: ExportItemV3 and its nested types (the Models layer,
docs/architecture.md).

These are responses only, so they are lenient: enum-like values (item type and subtype, bookkeeping
method, tax type, invoice status, currency, country) are plain strings and an unknown value never
raises. Required fields of the spec (docs/pleo-api.md#export-item) are required attributes; optional
and nullable ones default to None. IDs are `str`; date-times are aware `datetime`s (an invoice's
bare `YYYY-MM-DD` date is read as midnight UTC by the codec).

`_codec` maps snake_case to camelCase; the two wire names that are not plain camelCase (`_links`,
and `from`, a Python keyword) are given with the codec's wire-name metadata key. The key is spelled
out here because `_codec` imports the models, so importing it from there would be a cycle.
"""

from __future__ import annotations

from datetime import datetime

import attrs

__all__ = [
    "Account",
    "Bookkeeping",
    "ContraAccount",
    "ExportItem",
    "ExportItemAdditionalInformation",
    "ExportItemAmount",
    "ExportItemFile",
    "ExportItemLine",
    "ExportItemUser",
    "InvoiceInformation",
    "Links",
    "Money",
    "ServicePeriod",
    "Supplier",
    "SupplierBankAccount",
    "Tag",
    "Tax",
    "TaxAmount",
    "Team",
    "Vendor",
]

# Equal to `_codec.WIRE_NAME` and `_codec.STRUCTURE_HOOK`.
_WIRE_NAME = "pleo_export_async.wire_name"
_STRUCTURE_HOOK = "pleo_export_async.structure_hook"


def _minor_units(value: object, _: object) -> int:
    # The spec types `value` as a number of cents; a plain `int(...)` would silently truncate a
    # fractional amount, and a wrong amount in a ledger is worse than a loud error.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"Money.value must be a whole number of minor units, got {value!r}")


@attrs.frozen
class Money:
    """MoneyModel: an amount in minor units (896.96 SEK is 89696) and its ISO 4217 currency."""

    currency: str
    value: int = attrs.field(metadata={_STRUCTURE_HOOK: _minor_units})


@attrs.frozen
class ExportItemAmount:
    """ExportItemAmountV3 (same shape as ExportItemLineAmountV3 and ExportItemNetAmountV3)."""

    in_supplier_currency: Money
    in_wallet_currency: Money


@attrs.frozen
class TaxAmount:
    """TaxAmountV3: the tax of a line, in the supplier's and in the wallet's currency."""

    in_supplier_currency: Money
    in_wallet_currency: Money


@attrs.frozen
class Account:
    """AccountV3: the general-ledger account of a line."""

    id: str
    name: str
    code: str | None = None
    identifier: str | None = None


@attrs.frozen
class Tag:
    """TagV3: a tag (cost centre) of a line."""

    id: str
    code: str
    group_code: str


@attrs.frozen
class Tax:
    """TaxV3: the tax code of a line; `type` is one of TaxTypeV3 (kept as a string)."""

    id: str
    amount: TaxAmount
    rate: float
    type: str
    code: str | None = None
    ingoing_tax_account: str | None = None
    outgoing_tax_account: str | None = None


@attrs.frozen
class ExportItemLine:
    """ExportItemLineV3: one line of an accounting entry."""

    accounting_entry_line_id: str
    line_amount: ExportItemAmount
    net_amount: ExportItemAmount
    account: Account | None = None
    tags: list[Tag] | None = None
    tax: Tax | None = None


@attrs.frozen
class SupplierBankAccount:
    """SupplierBankAccount: the bank account of an invoice's supplier."""

    bank_name: str
    country: str
    account_number: str | None = None
    bank_code: str | None = None
    bic: str | None = None
    iban: str | None = None


@attrs.frozen
class InvoiceInformation:
    """InvoiceInformationV3: invoice data; `status` is one of InvoiceInformationStatusV3."""

    invoice_date: datetime
    invoice_number: str
    status: str
    due_date: datetime | None = None
    payment_date: datetime | None = None
    supplier_bank_account: SupplierBankAccount | None = None


@attrs.frozen
class ExportItemAdditionalInformation:
    """ExportItemAdditionalInformationV3: the book ID, attendees, invoice and reconciled entries."""

    reconciliation_id: str
    attendees: list[str | None] | None = None
    invoice_information: InvoiceInformation | None = None
    reconciled_entries: list[str | None] | None = None


@attrs.frozen
class Bookkeeping:
    """BookkeepingV3: `method` is one of BookkeepingMethodV3 (none, journal, accounts_payable)."""

    method: str


@attrs.frozen
class ContraAccount:
    """ContraAccount: the accounting-system account matching a Pleo account."""

    id: str
    name: str
    code: str | None = None
    identifier: str | None = None


@attrs.frozen
class ExportItemFile:
    """ExportItemFile: an attachment; `url` is valid for 24 hours from the fetch."""

    size: int
    type: str
    url: str


@attrs.frozen
class ServicePeriod:
    """ServicePeriodV3: when the service was provided (`from` on the wire is `from_` here)."""

    from_: datetime = attrs.field(metadata={_WIRE_NAME: "from"})
    to: datetime


@attrs.frozen
class Supplier:
    """SupplierV3: the supplier or merchant; every field may be null."""

    account: str | None = None
    category_code: str | None = None
    code: str | None = None
    country: str | None = None
    name: str | None = None
    tax_identifier: str | None = None


@attrs.frozen
class Team:
    """TeamV3: the team the spend is assigned to."""

    id: str
    name: str
    code: str | None = None


@attrs.frozen
class ExportItemUser:
    """ExportItemUserV3: the person who initiated the spend."""

    id: str
    name: str
    code: str | None = None


@attrs.frozen
class Vendor:
    """VendorV3: the vendor of the entry (set when vendor-based bookkeeping is on)."""

    id: str
    name: str
    default_currency: str
    code: str | None = None
    country: str | None = None
    external_id: str | None = None
    registration_number: str | None = None
    tax_registration_number: str | None = None


@attrs.frozen
class Links:
    """LinksResponse: link maps such as `{"exportItem": "https://..."}` per client kind."""

    api: dict[str, str] | None = None
    mobile: dict[str, str] | None = None
    web: dict[str, str] | None = None


@attrs.frozen
class ExportItem:
    """ExportItemV3: an accounting entry with all it takes to book it (GET /v3/export-items)."""

    links: Links = attrs.field(metadata={_WIRE_NAME: "_links"})
    accounting_entry_id: str
    accounting_entry_lines: list[ExportItemLine]
    additional_information: ExportItemAdditionalInformation
    amount: ExportItemAmount
    company_id: str
    date: datetime
    type: str
    bookkeeping: Bookkeeping | None = None
    contra_account: ContraAccount | None = None
    files: list[ExportItemFile] | None = None
    note: str | None = None
    service_period: ServicePeriod | None = None
    sub_type: str | None = None
    supplier: Supplier | None = None
    team: Team | None = None
    user: ExportItemUser | None = None
    vendor: Vendor | None = None
