"""Realistic, seeded ExportItemV3 payloads (docs/pleo-api.md#export-item) for GET /v3/export-items.

Everything is derived from a `random.Random` the caller seeds, and dates are anchored to a fixed
day rather than the wall clock, so the same seed always yields the same payloads.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ._request_checks import format_datetime

# Dates are spread over the 90 days before this anchor: fixed, so that seeds repeat.
_DATE_ANCHOR: Final = datetime(2025, 1, 31, 12, 0, 0, tzinfo=UTC)

# Weighted so the common expense types dominate, as in a real export queue.
_TYPE_WEIGHTS: Final[dict[str, int]] = {
    "card_purchase": 50,
    "out_of_pocket": 10,
    "card_invoice": 5,
    "invoice": 6,
    "invoice_payment": 4,
    "mileage": 4,
    "per_diem": 3,
    "direct_reimbursement": 3,
    "external_reimbursement": 2,
    "refund": 3,
    "chargeback": 1,
    "cashback": 1,
    "atm_withdrawal": 2,
    "wallet_topup": 2,
    "wallet_unload": 1,
    "personal_spend": 1,
    "fee": 2,
}
_SUB_TYPES: Final[dict[str, tuple[str, ...]]] = {
    "direct_reimbursement": ("reimbursement_to_employee", "reimbursement_to_employee_refund"),
    "external_reimbursement": ("reimbursement_to_employee", "reimbursement_to_company"),
    "invoice_payment": ("invoice_payment_sent", "invoice_payment_returned"),
    "fee": ("interest",),
}
_INVOICE_TYPES: Final = frozenset({"invoice", "card_invoice", "invoice_payment"})
_REIMBURSEMENT_TYPES: Final = frozenset({"direct_reimbursement", "external_reimbursement"})

_ACCOUNTS: Final = (
    ("6800", "Office supplies"),
    ("7130", "Travel"),
    ("7140", "Meals and entertainment"),
    ("6540", "Software subscriptions"),
    ("7010", "Marketing"),
    ("6310", "Rent"),
    ("7780", "Bank charges"),
)
_SUPPLIERS: Final = (
    ("Staples", "DK", "5111"),
    ("SAS Scandinavian Airlines", "SE", "4511"),
    ("Joe & The Juice", "DK", "5812"),
    ("Atlassian", "AU", "5734"),
    ("Uber", "NL", "4121"),
    ("Hotel Alexandra", "DK", "7011"),
    ("Amazon Web Services", "US", "5734"),
    ("DSB", "DK", "4112"),
)
_TAG_GROUPS: Final = (("DEPT", ("SALES", "ENG", "OPS", "FIN")), ("PROJ", ("P100", "P200", "P300")))
_TEAMS: Final = (("Sales", "S01"), ("Engineering", "E01"), ("Finance", "F01"))
_PEOPLE: Final = ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson")
_TAX_RATES: Final = (0.25, 0.25, 0.25, 0.2, 0.12, 0.0)
_FILE_TYPES: Final = (("image/jpeg", "jpg"), ("application/pdf", "pdf"), ("image/png", "png"))
_CURRENCIES: Final = ("DKK", "EUR", "SEK", "USD", "GBP")


def seeded_uuid(rng: random.Random) -> str:
    """A version-4 UUID drawn from `rng`, as a lowercase string."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _money(currency: str, value: int) -> dict[str, Any]:
    return {"currency": currency, "value": value}


def _amount(
    supplier_currency: str, supplier_value: int, wallet_currency: str, wallet_value: int
) -> dict[str, Any]:
    return {
        "inSupplierCurrency": _money(supplier_currency, supplier_value),
        "inWalletCurrency": _money(wallet_currency, wallet_value),
    }


def _split(total: int, parts: int, rng: random.Random) -> list[int]:
    """Split a total in minor units into `parts` positive shares that sum to it exactly."""
    if parts == 1 or total < parts:
        return [total]
    cuts = sorted(rng.sample(range(1, total), parts - 1))
    bounds = [0, *cuts, total]
    return [bounds[i + 1] - bounds[i] for i in range(parts)]


class ExportItemFactory:
    """Builds the ExportItemV3 payloads of one company.

    The company's configuration (accounts, tax codes, tags, vendors) is drawn once from
    `config_rng`; each call to `build` draws the item itself from the RNG it is given, so each
    job's items depend only on that job's seed.
    """

    def __init__(
        self, config_rng: random.Random, *, company_id: str, wallet_currency: str = "DKK"
    ) -> None:
        rng = config_rng
        self._company_id = company_id
        self._wallet_currency = wallet_currency
        # Accounts, tax codes and tags are company configuration: shared by all items.
        self._accounts = [
            {"id": seeded_uuid(rng), "name": name, "code": code, "identifier": code}
            for code, name in _ACCOUNTS
        ]
        self._contra_account = {
            "id": seeded_uuid(rng),
            "name": "Pleo wallet",
            "code": "5820",
            "identifier": "5820",
        }
        self._tax_codes = {rate: seeded_uuid(rng) for rate in set(_TAX_RATES)}
        self._tags = [
            {"id": seeded_uuid(rng), "code": code, "groupCode": group}
            for group, codes in _TAG_GROUPS
            for code in codes
        ]
        self._teams = [
            {"id": seeded_uuid(rng), "name": name, "code": code} for name, code in _TEAMS
        ]
        self._people = [{"id": seeded_uuid(rng), "name": name, "code": None} for name in _PEOPLE]
        self._vendors = [
            {
                "id": seeded_uuid(rng),
                "name": name,
                "defaultCurrency": self._wallet_currency if country == "DK" else "EUR",
                "code": f"V{index + 1000}",
                "country": country,
                "externalId": f"ERP-V{index + 1000}",
                "registrationNumber": f"{rng.randrange(10**7, 10**8)}",
                "taxRegistrationNumber": f"{country}{rng.randrange(10**7, 10**8)}",
            }
            for index, (name, country, _mcc) in enumerate(_SUPPLIERS)
        ]

    def build(
        self, accounting_entry_id: str, *, rng: random.Random, vendor_based_bookkeeping: bool
    ) -> dict[str, Any]:
        """One ExportItemV3 for `accounting_entry_id`, drawn from `rng`."""
        item_type = rng.choices(list(_TYPE_WEIGHTS), weights=list(_TYPE_WEIGHTS.values()))[0]
        sub_type = rng.choice(_SUB_TYPES[item_type]) if item_type in _SUB_TYPES else None
        supplier_index = rng.randrange(len(_SUPPLIERS))
        supplier_name, supplier_country, category_code = _SUPPLIERS[supplier_index]
        supplier_currency = self._wallet_currency if rng.random() < 0.8 else rng.choice(_CURRENCIES)
        # Amounts are positive minor units (89696 means 896.96); the FX rate is made up.
        wallet_total = rng.randrange(500, 2_500_000)
        fx_rate = 1.0 if supplier_currency == self._wallet_currency else rng.uniform(0.1, 12.0)
        supplier_total = max(1, round(wallet_total / fx_rate))
        line_count = rng.choices((1, 2, 3), weights=(70, 20, 10))[0]
        wallet_shares = _split(wallet_total, line_count, rng)
        supplier_shares = _split(supplier_total, line_count, rng)
        lines = [
            self._line(rng, supplier_currency, supplier_share, wallet_share)
            for supplier_share, wallet_share in zip(supplier_shares, wallet_shares, strict=True)
        ]
        booked = _DATE_ANCHOR - timedelta(seconds=rng.randrange(90 * 24 * 3600))
        vendor = rng.choice(self._vendors) if rng.random() < 0.6 else None
        bookkeeping: dict[str, Any] | None = None
        if vendor_based_bookkeeping:
            method = "accounts_payable" if vendor is not None else rng.choice(("journal", "none"))
            bookkeeping = {"method": method}
        user = rng.choice(self._people)
        item: dict[str, Any] = {
            "_links": {
                "web": {"exportItem": f"https://app.pleo.io/export/items/{accounting_entry_id}"}
            },
            "accountingEntryId": accounting_entry_id,
            "accountingEntryLines": lines,
            "additionalInformation": {
                "reconciliationId": f"BOOK-{rng.randrange(10**6, 10**7)}",
                "attendees": [user["name"]] if item_type == "card_purchase" else None,
                "invoiceInformation": (
                    self._invoice_information(rng, booked) if item_type in _INVOICE_TYPES else None
                ),
                "reconciledEntries": (
                    [seeded_uuid(rng)] if item_type in _REIMBURSEMENT_TYPES else None
                ),
            },
            "amount": _amount(
                supplier_currency, supplier_total, self._wallet_currency, wallet_total
            ),
            "bookkeeping": bookkeeping,
            "companyId": self._company_id,
            "contraAccount": self._contra_account,
            "date": format_datetime(booked),
            "files": self._files(rng, rng.randrange(0, 3)),
            "note": rng.choice((None, None, "Client dinner", "Team offsite", "Annual licence")),
            "servicePeriod": (
                {
                    "from": format_datetime(booked - timedelta(days=30)),
                    "to": format_datetime(booked),
                }
                if rng.random() < 0.1
                else None
            ),
            "subType": sub_type,
            "supplier": {
                "account": None,
                "categoryCode": category_code,
                "code": None,
                "country": supplier_country,
                "name": supplier_name,
                "taxIdentifier": None,
            },
            "team": rng.choice(self._teams),
            "type": item_type,
            "user": user,
            "vendor": vendor,
        }
        if sub_type is None:
            # docs/pleo-api.md#schema-check: subType is a plain string in v3, not nullable; without
            # a value, leave it out.
            del item["subType"]
        return item

    def _line(
        self, rng: random.Random, supplier_currency: str, supplier_value: int, wallet_value: int
    ) -> dict[str, Any]:
        rate = rng.choice(_TAX_RATES)
        tax_type = rng.choices(("inclusive", "exclusive", "reverse"), weights=(85, 10, 5))[0]
        if tax_type == "reverse":
            # Reverse charge: the buyer accounts for the tax, so none is in the amount paid.
            supplier_tax = wallet_tax = 0
        else:
            supplier_tax = round(supplier_value * rate / (1 + rate))
            wallet_tax = round(wallet_value * rate / (1 + rate))
        tags = rng.sample(self._tags, rng.randrange(0, 3))
        return {
            "accountingEntryLineId": seeded_uuid(rng),
            "account": rng.choice(self._accounts),
            "lineAmount": _amount(
                supplier_currency, supplier_value, self._wallet_currency, wallet_value
            ),
            "netAmount": _amount(
                supplier_currency,
                supplier_value - supplier_tax,
                self._wallet_currency,
                wallet_value - wallet_tax,
            ),
            "tags": tags,
            "tax": {
                "id": self._tax_codes[rate],
                "amount": _amount(
                    supplier_currency, supplier_tax, self._wallet_currency, wallet_tax
                ),
                "rate": rate,
                "type": tax_type,
                "code": f"VAT{round(rate * 100)}",
                "ingoingTaxAccount": "6601",
                "outgoingTaxAccount": "6602",
            },
        }

    def _invoice_information(self, rng: random.Random, booked: datetime) -> dict[str, Any]:
        status = rng.choice(("paid", "scheduled", "ready", "marked_as_paid"))
        return {
            "invoiceDate": booked.strftime("%Y-%m-%d"),
            "invoiceNumber": f"INV-{rng.randrange(10**4, 10**5)}",
            "status": status,
            "dueDate": (booked + timedelta(days=30)).strftime("%Y-%m-%d"),
            "paymentDate": booked.strftime("%Y-%m-%d") if status == "paid" else None,
            "supplierBankAccount": {
                "bankName": "Danske Bank",
                "country": "DK",
                "accountNumber": f"{rng.randrange(10**9, 10**10)}",
                "bankCode": "3000",
                "bic": "DABADKKK",
                "iban": f"DK50{rng.randrange(10**13, 10**14)}",
            },
        }

    def _files(self, rng: random.Random, count: int) -> list[dict[str, Any]] | None:
        if count == 0:
            return None
        files = []
        for _ in range(count):
            mime, extension = rng.choice(_FILE_TYPES)
            files.append(
                {
                    "size": rng.randrange(20_000, 3_000_000),
                    "type": mime,
                    "url": f"https://receipts.example.com/{seeded_uuid(rng)}.{extension}",
                }
            )
        return files
