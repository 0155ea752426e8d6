"""Round trips of every wire model against the examples of docs/pleo-api.md; the PUT reader."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, get_args, get_origin

import attrs
import cattrs
import pytest

from examples import (
    COMPANY_ID,
    CREATE_EXPORT_JOB,
    EMPLOYEE_ID,
    ENTRY_ID_1,
    ENTRY_ID_2,
    ENTRY_ID_3,
    EXCEPTION_INFO,
    EXPORT_ITEM,
    EXPORT_ITEM_MINIMAL,
    EXPORT_ITEMS_PAGE,
    EXPORT_JOB,
    EXPORT_JOB_EXPIRED,
    EXPORT_JOB_RESPONSE,
    ITEM_UPDATE_BATCH,
    ITEM_UPDATE_FAILED,
    ITEM_UPDATE_SUCCESSFUL,
    ITEM_UPDATE_SUCCESSFUL_EXPORTED_AT,
    JOB_EVENT_FAILED,
    JOB_EVENT_SERVICE_UNREACHABLE,
    JOB_EVENT_STARTED,
    JOB_ID,
    JOB_ITEMS_PAGE,
    JOB_ITEMS_PAGINATION,
    JOBS_PAGE,
    PUT_ITEMS_RESPONSE,
    WEBHOOK_EXPORT_JOB_CREATED,
)
from pleo_export_async import _codec, _export_items, _models
from pleo_export_async._codec import (
    dumps,
    encode,
    encode_item_updates,
    from_wire,
    loads,
    read_item_update_response,
    to_wire,
)
from pleo_export_async._enums import (
    ItemFailureReasonType,
    ItemStatus,
    JobEvent,
    JobFailureReasonType,
)
from pleo_export_async._export_items import (
    Account,
    Bookkeeping,
    ContraAccount,
    ExportItem,
    ExportItemAdditionalInformation,
    ExportItemAmount,
    ExportItemFile,
    ExportItemLine,
    ExportItemUser,
    InvoiceInformation,
    Links,
    Money,
    ServicePeriod,
    Supplier,
    SupplierBankAccount,
    Tag,
    Tax,
    TaxAmount,
    Team,
    Vendor,
)
from pleo_export_async._models import (
    CreateExportJob,
    CursorPage,
    CursorPageCurrentRequestInfo,
    CursorPageInfo,
    DataResponse,
    ExceptionInfo,
    ExportJob,
    ExportJobItem,
    ExportJobOptions,
    ItemUpdate,
    ItemUpdateError,
    ItemUpdateResponse,
    JobEventRequest,
)

Reader = Callable[[bytes], tuple[list[str], list[ItemUpdateError]]]

_LINE: dict[str, Any] = EXPORT_ITEM["accountingEntryLines"][0]
_INFO: dict[str, Any] = EXPORT_ITEM["additionalInformation"]

# (model, wire example): every model, structured from a documented example.
ROUND_TRIPS: list[tuple[Any, Any]] = [
    (ItemUpdate, ITEM_UPDATE_SUCCESSFUL),
    (ItemUpdate, ITEM_UPDATE_SUCCESSFUL_EXPORTED_AT),
    (ItemUpdate, ITEM_UPDATE_FAILED),
    (ExportJobItem, PUT_ITEMS_RESPONSE["data"][0]),
    (ExportJobItem, PUT_ITEMS_RESPONSE["data"][1]),
    (ExportJobItem, JOB_ITEMS_PAGE["data"][1]),
    (ItemUpdateError, PUT_ITEMS_RESPONSE["errors"][0]),
    (ItemUpdateResponse, PUT_ITEMS_RESPONSE),
    (JobEventRequest, JOB_EVENT_STARTED),
    (JobEventRequest, JOB_EVENT_FAILED),
    (JobEventRequest, JOB_EVENT_SERVICE_UNREACHABLE),
    (ExportJobOptions, CREATE_EXPORT_JOB["options"]),
    (CreateExportJob, CREATE_EXPORT_JOB),
    (ExportJob, EXPORT_JOB),
    (ExportJob, EXPORT_JOB_EXPIRED),
    (ExportJob, WEBHOOK_EXPORT_JOB_CREATED["data"]),
    (DataResponse[ExportJob], EXPORT_JOB_RESPONSE),
    (CursorPageCurrentRequestInfo, JOB_ITEMS_PAGINATION["currentRequestPagination"]),
    (CursorPageInfo, JOB_ITEMS_PAGINATION),
    (CursorPage[ExportJobItem], JOB_ITEMS_PAGE),
    (CursorPage[ExportJob], JOBS_PAGE),
    (CursorPage[ExportItem], EXPORT_ITEMS_PAGE),
    (ExceptionInfo, EXCEPTION_INFO),
    (ExportItem, EXPORT_ITEM),
    (ExportItem, EXPORT_ITEM_MINIMAL),
    (Links, EXPORT_ITEM["_links"]),
    (ExportItemLine, _LINE),
    (ExportItemLine, EXPORT_ITEM["accountingEntryLines"][1]),
    (ExportItemAmount, _LINE["lineAmount"]),
    (Money, _LINE["lineAmount"]["inWalletCurrency"]),
    (Account, _LINE["account"]),
    (Tag, _LINE["tags"][0]),
    (Tax, _LINE["tax"]),
    (TaxAmount, _LINE["tax"]["amount"]),
    (ExportItemAdditionalInformation, _INFO),
    (InvoiceInformation, _INFO["invoiceInformation"]),
    (SupplierBankAccount, _INFO["invoiceInformation"]["supplierBankAccount"]),
    (Bookkeeping, EXPORT_ITEM["bookkeeping"]),
    (ContraAccount, EXPORT_ITEM["contraAccount"]),
    (ExportItemFile, EXPORT_ITEM["files"][0]),
    (ServicePeriod, EXPORT_ITEM["servicePeriod"]),
    (Supplier, EXPORT_ITEM["supplier"]),
    (Team, EXPORT_ITEM["team"]),
    (ExportItemUser, EXPORT_ITEM["user"]),
    (Vendor, EXPORT_ITEM["vendor"]),
]


def _case_id(case: tuple[Any, Any]) -> str:
    model = case[0]
    name: str = (get_origin(model) or model).__name__
    return name + "".join(f"[{arg.__name__}]" for arg in get_args(model))


def _truncated(value: Any) -> Any:
    """`value` with every datetime in it cut to whole seconds, as the codec sends it."""
    if isinstance(value, datetime):
        return value.replace(microsecond=0)
    if isinstance(value, list):
        return [_truncated(element) for element in value]
    if attrs.has(type(value)):
        changes = {
            field.alias: _truncated(getattr(value, field.name))
            for field in attrs.fields(type(value))
        }
        return attrs.evolve(value, **changes)
    return value


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


@pytest.mark.parametrize("case", ROUND_TRIPS, ids=_case_id)
def test_every_model_round_trips_through_the_wire(case: tuple[Any, Any]) -> None:
    """Structuring an example, unstructuring it and structuring again gives the same object.

    Datetimes are sent with whole seconds, so fractional seconds are the one thing lost.
    """
    model, example = case
    first = from_wire(copy.deepcopy(example), model)
    assert isinstance(first, get_origin(model) or model)
    wire = to_wire(first)
    assert loads(dumps(wire)) == wire
    second = from_wire(wire, model)
    assert second == _truncated(first)
    assert to_wire(second) == wire


def test_round_trip_cases_cover_every_model() -> None:
    """Every attrs class of the model modules has at least one round-trip example."""
    covered = {get_origin(model) or model for model, _ in ROUND_TRIPS}
    defined = {
        value
        for module in (_models, _export_items)
        for value in vars(module).values()
        if isinstance(value, type) and attrs.has(value) and value.__module__ == module.__name__
    }
    assert defined - covered == set()


def test_whole_second_examples_round_trip_without_any_change() -> None:
    """An object whose datetimes have whole seconds comes back exactly equal."""
    job = from_wire(EXPORT_JOB, ExportJob)
    assert from_wire(to_wire(job), ExportJob) == job
    update = from_wire(ITEM_UPDATE_SUCCESSFUL_EXPORTED_AT, ItemUpdate)
    assert from_wire(to_wire(update), ItemUpdate) == update


def test_response_models_unstructure_their_required_fields() -> None:
    """Unstructuring a response keeps the fields the spec requires, even when equal to a default."""
    assert to_wire(from_wire(EXPORT_JOB, ExportJob)) == _without_nulls(EXPORT_JOB)
    page = to_wire(from_wire(JOB_ITEMS_PAGE, CursorPage[ExportJobItem]))
    assert [item["status"] for item in page["data"]] == ["pending", "pending"]


def test_export_item_fields_are_read_from_the_documented_example() -> None:
    """Every nested type of ExportItemV3 is read with its values, names and types."""
    item = from_wire(EXPORT_ITEM, ExportItem)
    assert item.links.web == {"exportItem": f"https://app.pleo.io/export/{ENTRY_ID_1}"}
    assert item.links.api is not None
    assert item.links.mobile == {"exportItem": f"pleo://export-items/{ENTRY_ID_1}"}
    assert item.accounting_entry_id == ENTRY_ID_1
    assert item.company_id == COMPANY_ID
    assert item.date == datetime(2025, 2, 21, 10, 5, 43, 530450, tzinfo=UTC)
    assert item.type == "invoice"
    assert item.sub_type is None
    assert item.amount == ExportItemAmount(Money("EUR", 12500), Money("DKK", 93245))
    line, other_line = item.accounting_entry_lines
    assert line.accounting_entry_line_id == "7778e9d5-9b15-4115-95b0-251d5943eb9c"
    assert line.net_amount.in_wallet_currency == Money("DKK", 59677)
    assert line.account == Account(
        "98282eac-ecfb-40b8-bc1c-3b865d0d7f40", "Software subscriptions", "6810", "GL-6810"
    )
    assert line.tags is not None
    assert [tag.group_code for tag in line.tags] == ["DEPARTMENT", "PROJECT"]
    assert line.tax is not None
    assert line.tax.rate == 0.25
    assert line.tax.type == "inclusive"
    assert line.tax.amount.in_supplier_currency == Money("EUR", 2000)
    assert line.tax.ingoing_tax_account == "5610"
    assert (other_line.tags, other_line.tax) == (None, None)
    assert other_line.account is not None
    assert other_line.account.code is None
    info = item.additional_information
    assert info.reconciliation_id == "B-2025-00417"
    assert info.attendees == ["Ana Silva", "Jonas Berg"]
    assert info.reconciled_entries == ["B-2025-00398", "B-2025-00399"]
    invoice = info.invoice_information
    assert invoice is not None
    assert invoice.invoice_date == datetime(2025, 2, 14, tzinfo=UTC)
    assert invoice.due_date == datetime(2025, 3, 16, tzinfo=UTC)
    assert invoice.payment_date == datetime(2025, 2, 21, tzinfo=UTC)
    assert invoice.status == "paid"
    assert invoice.supplier_bank_account is not None
    assert invoice.supplier_bank_account.iban == "IE29AIBK93115212345678"
    assert item.bookkeeping == Bookkeeping("accounts_payable")
    assert item.contra_account is not None
    assert item.contra_account.identifier == "BANK-PLEO-DKK"
    assert item.files is not None
    assert [file.size for file in item.files] == [48213, 2084]
    assert item.service_period == ServicePeriod(
        datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 12, 31, tzinfo=UTC)
    )
    assert item.supplier is not None
    assert item.supplier.category_code == "5734"
    assert item.team == Team("844a58a6-5639-49f0-adf2-b3a1f29e9481", "Marketing", "T-MKT")
    assert item.user == ExportItemUser(EMPLOYEE_ID, "Ana Silva", "EMP-117")
    assert item.vendor is not None
    assert item.vendor.default_currency == "EUR"
    assert item.vendor.tax_registration_number == "IE9825613N"


def test_export_item_sends_its_irregular_wire_names() -> None:
    """`links` is `_links` and `from_` is `from` on the wire; both keys are read and written."""
    wire = to_wire(from_wire(EXPORT_ITEM, ExportItem))
    assert "_links" in wire
    assert "links" not in wire
    assert wire["servicePeriod"] == {"from": "2025-01-01T00:00:00Z", "to": "2025-12-31T00:00:00Z"}
    assert wire["accountingEntryLines"][0]["netAmount"]["inWalletCurrency"] == {
        "currency": "DKK",
        "value": 59677,
    }


def test_money_keeps_whole_minor_units_and_refuses_fractional_ones() -> None:
    """A whole number of cents is an int, even written as a float; a fraction of a cent raises."""
    money = from_wire({"currency": "SEK", "value": 89696.0}, Money)
    assert money == Money("SEK", 89696)
    assert type(money.value) is int
    with pytest.raises(cattrs.ClassValidationError) as caught:
        from_wire({"currency": "SEK", "value": 896.96}, Money)
    assert [str(error) for error in caught.value.exceptions] == [
        "Money.value must be a whole number of minor units, got 896.96"
    ]


def test_missing_optional_export_item_fields_are_none() -> None:
    """An ExportItemV3 with only its required fields reads every optional field as None."""
    item = from_wire(EXPORT_ITEM_MINIMAL, ExportItem)
    assert item.links == Links()
    assert (item.bookkeeping, item.contra_account, item.files, item.note) == (None,) * 4
    assert (item.service_period, item.sub_type, item.supplier) == (None,) * 3
    assert (item.team, item.user, item.vendor) == (None,) * 3
    line = item.accounting_entry_lines[0]
    assert (line.account, line.tags, line.tax) == (None, None, None)
    info = item.additional_information
    assert (info.attendees, info.invoice_information, info.reconciled_entries) == (None,) * 3
    assert item.date == datetime(2025, 2, 20, 13, 31, 9, tzinfo=UTC)


def test_missing_optional_job_and_item_fields_are_none() -> None:
    """Job, job item and error bodies without their optional fields read them as None."""
    job = from_wire(
        {
            "id": JOB_ID,
            "companyId": COMPANY_ID,
            "createdAt": "2025-02-21T09:58:12Z",
            "expiresIn": 3600,
            "isInteractive": True,
            "numberOfItems": 1,
            "status": "pending",
            "vendorBasedBookkeeping": False,
        },
        ExportJob,
    )
    assert job.completed_at is None
    assert job.created_by is None
    assert job.expired_at is None
    assert job.failure_reason is None
    assert job.failure_reason_type is None
    assert job.last_updated_at is None
    assert job.started_at is None
    item = from_wire(
        {"accountingEntryId": ENTRY_ID_1, "exportJobId": JOB_ID, "status": "in_progress"},
        ExportJobItem,
    )
    assert item == ExportJobItem(ENTRY_ID_1, JOB_ID, "in_progress")
    assert item.exported_at is None
    assert item.failure_reason_type is None
    assert from_wire({"type": "BAD_REQUEST"}, ExceptionInfo) == ExceptionInfo("BAD_REQUEST", None)
    page = from_wire(
        {
            "data": [],
            "pagination": {
                "currentRequestPagination": {"parameters": {}},
                "hasNextPage": False,
                "hasPreviousPage": False,
            },
        },
        CursorPage[ExportJob],
    )
    assert page.data == []
    assert page.pagination.end_cursor is None
    assert page.pagination.total is None
    assert page.pagination.current_request_pagination.limit is None


def test_null_fields_of_a_job_items_page_are_none() -> None:
    """HT-RETRIEVE's page: null fields read as None and a null status reads as pending."""
    page = from_wire(JOB_ITEMS_PAGE, CursorPage[ExportJobItem])
    first, second = page.data
    assert first == ExportJobItem(ENTRY_ID_1, JOB_ID, "pending")
    assert second == ExportJobItem(ENTRY_ID_2, JOB_ID, "pending")
    assert second.status == ItemStatus.PENDING
    assert second.external_url is None


def test_missing_item_status_reads_as_pending() -> None:
    """A job item without a status at all is pending too."""
    item = from_wire({"accountingEntryId": ENTRY_ID_1, "exportJobId": JOB_ID}, ExportJobItem)
    assert item.status == "pending"


def test_webhook_job_without_interactive_and_bookkeeping_flags_is_read() -> None:
    """The webhook's job lacks isInteractive and vendorBasedBookkeeping; the spec defaults apply."""
    job = from_wire(WEBHOOK_EXPORT_JOB_CREATED["data"], ExportJob)
    assert job.id == JOB_ID
    assert job.created_by == EMPLOYEE_ID
    assert job.status == "pending"
    assert job.is_interactive is True
    assert job.vendor_based_bookkeeping is False
    assert job.created_at == datetime(2025, 2, 21, 9, 58, 12, tzinfo=UTC)


def test_cursor_pages_structure_from_their_envelopes() -> None:
    """CursorPage of job items, jobs and export items read data and pagination per
    docs/pleo-api.md#cursor-pagination."""
    items = from_wire(JOB_ITEMS_PAGE, CursorPage[ExportJobItem])
    assert all(isinstance(item, ExportJobItem) for item in items.data)
    assert items.pagination == CursorPageInfo(
        CursorPageCurrentRequestInfo({"limit": ["2"]}, limit=2, sorting_keys=[], sorting_order=[]),
        has_next_page=True,
        has_previous_page=False,
        end_cursor="MFRGGZDFMZTWQ2LK",
        start_cursor="GEZDGNBVGY3TQOJQ",
        total=3,
    )
    jobs = from_wire(JOBS_PAGE, CursorPage[ExportJob])
    assert [job.status for job in jobs.data] == ["failed", "in_progress"]
    assert jobs.data[0].failure_reason_type == "job_expired"
    assert jobs.data[0].expired_at == datetime(2025, 2, 20, 9, 15, tzinfo=UTC)
    assert jobs.pagination.current_request_pagination.parameters == {
        "company_id": [COMPANY_ID],
        "statuses": ["pending", "in_progress"],
    }
    assert jobs.pagination.has_next_page is False
    assert jobs.pagination.total == 2
    export_items = from_wire(EXPORT_ITEMS_PAGE, CursorPage[ExportItem])
    assert [item.accounting_entry_id for item in export_items.data] == [ENTRY_ID_1, ENTRY_ID_2]
    assert all(isinstance(item, ExportItem) for item in export_items.data)
    assert export_items.pagination.current_request_pagination.parameters == {"job_id": [JOB_ID]}


def test_data_response_structures_an_export_job() -> None:
    """`{"data": ExportJobV3}` reads into DataResponse[ExportJob] with every field."""
    response = from_wire(EXPORT_JOB_RESPONSE, DataResponse[ExportJob])
    assert response.data == ExportJob(
        id=JOB_ID,
        company_id=COMPANY_ID,
        created_at=datetime(2025, 2, 21, 9, 58, 12, tzinfo=UTC),
        status="in_progress",
        expires_in=3600,
        is_interactive=True,
        number_of_items=3,
        vendor_based_bookkeeping=True,
        created_by=EMPLOYEE_ID,
        last_updated_at=datetime(2025, 2, 21, 10, 4, 3, tzinfo=UTC),
        started_at=datetime(2025, 2, 21, 10, 1, 47, tzinfo=UTC),
    )


def test_put_response_structures_data_and_errors() -> None:
    """The 200 PUT body reads into acknowledged items and refused entries."""
    response = from_wire(PUT_ITEMS_RESPONSE, ItemUpdateResponse)
    assert [item.status for item in response.data] == ["successful", "failed"]
    assert response.data[0].exported_at == datetime(2023, 11, 7, 5, 31, 56, tzinfo=UTC)
    assert response.data[1].failure_reason_type == "accounting_system_validation_failure"
    assert response.errors == [
        ItemUpdateError(
            ENTRY_ID_3, "ACCOUNTING_ENTRY_DOES_NOT_EXIST", "Accounting entry does not exist."
        )
    ]


def test_exception_info_structures() -> None:
    """ExceptionInfo reads its type and message."""
    assert from_wire(EXCEPTION_INFO, ExceptionInfo) == ExceptionInfo(
        "EXPORT_NOT_FOUND", "Export job not found."
    )


# --- requests: exactly the documented wire JSON ---------------------------------------------


def test_successful_item_update_is_the_documented_payload() -> None:
    """`ItemUpdate.successful` sends HT-UPDATE's successful payload, with None fields left out."""
    update = ItemUpdate.successful(
        ENTRY_ID_1,
        external_id="JE-10452",
        external_url="https://erp.example.com/journal/JE-10452",
    )
    assert to_wire(update) == ITEM_UPDATE_SUCCESSFUL
    assert list(to_wire(update)) == ["accountingEntryId", "status", "externalId", "externalUrl"]


def test_exported_at_is_sent_in_utc_with_whole_seconds() -> None:
    """An `exported_at` in another offset, with microseconds, is sent as `YYYY-MM-DDTHH:MM:SSZ`."""
    update = ItemUpdate.successful(
        ENTRY_ID_1,
        external_id="JE-10452",
        external_url="https://erp.example.com/journal/JE-10452",
        exported_at=datetime(2023, 11, 7, 7, 31, 56, 999999, tzinfo=timezone(timedelta(hours=2))),
    )
    assert to_wire(update) == ITEM_UPDATE_SUCCESSFUL_EXPORTED_AT
    behind_utc = datetime(2023, 11, 6, 23, 1, 56, tzinfo=timezone(timedelta(hours=-6, minutes=-30)))
    wire = to_wire(ItemUpdate.successful(ENTRY_ID_1, exported_at=behind_utc))
    assert wire["exportedAt"] == "2023-11-07T05:31:56Z"


def test_failed_item_update_is_the_documented_payload() -> None:
    """`ItemUpdate.failed` sends HT-UPDATE's failed payload."""
    update = ItemUpdate.failed(
        ENTRY_ID_2,
        reason="Vendor not found in ERP",
        reason_type=ItemFailureReasonType.ACCOUNTING_SYSTEM_VALIDATION_FAILURE,
    )
    assert to_wire(update) == ITEM_UPDATE_FAILED


def test_put_body_is_a_bare_array_of_the_documented_payloads() -> None:
    """The encoded PUT body parses back to exactly the documented JSON array."""
    batch = [
        ItemUpdate.successful(
            ENTRY_ID_1,
            external_id="JE-10452",
            external_url="https://erp.example.com/journal/JE-10452",
            exported_at=datetime(2023, 11, 7, 5, 31, 56, tzinfo=UTC),
        ),
        ItemUpdate.failed(
            ENTRY_ID_2,
            reason="Vendor not found in ERP",
            reason_type="accounting_system_validation_failure",
        ),
    ]
    body = encode_item_updates(batch)
    assert isinstance(body, bytes)
    assert loads(body) == ITEM_UPDATE_BATCH
    assert loads(encode(batch)) == ITEM_UPDATE_BATCH


def test_job_events_are_the_documented_payloads() -> None:
    """JobEventRequest sends `event` and `jobId`, and the failure fields only when given."""
    started = JobEventRequest(JobEvent.STARTED, JOB_ID)
    assert loads(encode(started)) == JOB_EVENT_STARTED
    failed = JobEventRequest(
        JobEvent.FAILED,
        JOB_ID,
        failure_reason="Failed to reach the Accounting System.",
        failure_reason_type=JobFailureReasonType.ACCOUNTING_SYSTEM_UNREACHABLE,
    )
    assert loads(encode(failed)) == JOB_EVENT_FAILED
    assert to_wire(failed) == JOB_EVENT_FAILED


def test_create_export_job_is_the_documented_payload() -> None:
    """CreateExportJob sends camelCase keys, nested options, and leaves out what is None."""
    full = CreateExportJob(
        [ENTRY_ID_1, ENTRY_ID_2, ENTRY_ID_3],
        COMPANY_ID,
        employee_id=EMPLOYEE_ID,
        is_interactive=False,
        options=ExportJobOptions(vendor_based_bookkeeping=True),
    )
    assert loads(encode(full)) == CREATE_EXPORT_JOB
    minimal = CreateExportJob([ENTRY_ID_1], COMPANY_ID)
    assert loads(encode(minimal)) == {"accountingEntryIds": [ENTRY_ID_1], "companyId": COMPANY_ID}


# --- lenient responses ------------------------------------------------------------------------


def test_unknown_enum_strings_in_responses_are_kept() -> None:
    """Status and type strings outside the documented enums are kept as they are, never raise."""
    item = from_wire(
        {
            "accountingEntryId": ENTRY_ID_1,
            "exportJobId": JOB_ID,
            "status": "exported_elsewhere",
            "failureReasonType": "cosmic_rays",
        },
        ExportJobItem,
    )
    assert item.status == "exported_elsewhere"
    assert item.failure_reason_type == "cosmic_rays"
    job = from_wire({**EXPORT_JOB, "status": "archived", "failureReasonType": "gone"}, ExportJob)
    assert job.status == "archived"
    assert job.failure_reason_type == "gone"
    error = from_wire(
        {"accountingEntryId": ENTRY_ID_1, "type": "SOMETHING_NEW", "message": "?"},
        ItemUpdateError,
    )
    assert error.type == "SOMETHING_NEW"
    assert from_wire({"type": "TEAPOT"}, ExceptionInfo).type == "TEAPOT"


def test_unknown_enum_strings_in_export_items_are_kept() -> None:
    """Item type, subtype, method, tax type, invoice status, currency and country are kept."""
    example = copy.deepcopy(EXPORT_ITEM)
    example["type"] = "crypto_purchase"
    example["subType"] = "lunar_fee"
    example["bookkeeping"] = {"method": "hybrid"}
    line = example["accountingEntryLines"][0]
    line["tax"]["type"] = "partial"
    line["lineAmount"]["inSupplierCurrency"]["currency"] = "XBT"
    invoice = example["additionalInformation"]["invoiceInformation"]
    invoice["status"] = "disputed"
    invoice["supplierBankAccount"]["country"] = "ZZ"
    example["supplier"]["country"] = "QQ"
    example["vendor"]["country"] = "XX"
    item = from_wire(example, ExportItem)
    assert (item.type, item.sub_type) == ("crypto_purchase", "lunar_fee")
    assert item.bookkeeping == Bookkeeping("hybrid")
    lines = item.accounting_entry_lines
    assert lines[0].tax is not None
    assert lines[0].tax.type == "partial"
    assert lines[0].line_amount.in_supplier_currency.currency == "XBT"
    invoice_information = item.additional_information.invoice_information
    assert invoice_information is not None
    assert invoice_information.status == "disputed"
    assert invoice_information.supplier_bank_account is not None
    assert invoice_information.supplier_bank_account.country == "ZZ"
    assert item.supplier is not None
    assert item.supplier.country == "QQ"
    assert item.vendor is not None
    assert item.vendor.country == "XX"


# --- read_item_update_response -------------------------------------------------------------


@pytest.fixture(params=["msgspec", "lenient"])
def read(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Reader:
    """The PUT reader for JOB_ID, through the typed msgspec decoder (the `speed` extra) and
    through the lenient reader every install has: the two must agree on every body."""
    if request.param == "lenient":
        monkeypatch.setattr(_codec, "typed_reading", False)
    elif not _codec.typed_reading:
        pytest.skip("msgspec is not installed")

    def read(body: bytes) -> tuple[list[str], list[ItemUpdateError]]:
        answer = read_item_update_response(body, JOB_ID)
        return answer.acknowledged_ids, answer.errors

    return read


def test_put_reader_returns_acknowledged_ids_and_errors(read: Reader) -> None:
    """The reader returns the IDs in `data` and the structured `errors` of the documented body."""
    acknowledged, errors = read(dumps(PUT_ITEMS_RESPONSE))
    assert acknowledged == [ENTRY_ID_1, ENTRY_ID_2]
    assert errors == [
        ItemUpdateError(
            ENTRY_ID_3, "ACCOUNTING_ENTRY_DOES_NOT_EXIST", "Accounting entry does not exist."
        )
    ]


def test_put_reader_returns_acknowledged_ids_as_written(read: Reader) -> None:
    """Acknowledged IDs come back as Pleo wrote them; the tracker matches them in any case."""
    body = dumps({"data": [{"accountingEntryId": ENTRY_ID_1.upper()}], "errors": []})
    assert read(body) == ([ENTRY_ID_1.upper()], [])


def test_put_reader_ignores_entries_without_an_id(read: Reader) -> None:
    """Entries of `data` and `errors` without a string accountingEntryId are dropped."""
    body = dumps(
        {
            "data": [
                {"exportJobId": JOB_ID, "status": "successful"},
                {"accountingEntryId": None},
                {"accountingEntryId": 12},
                "not-an-object",
                {"accountingEntryId": ENTRY_ID_2, "status": "failed"},
            ],
            "errors": [
                {"type": "ACCOUNTING_ENTRY_DOES_NOT_EXIST", "message": "no ID"},
                {"accountingEntryId": None, "type": "X", "message": "null ID"},
                ["not", "an", "object"],
                {"accountingEntryId": ENTRY_ID_3, "type": "SOMETHING_NEW", "message": "later"},
            ],
        }
    )
    acknowledged, errors = read(body)
    assert acknowledged == [ENTRY_ID_2]
    assert errors == [ItemUpdateError(ENTRY_ID_3, "SOMETHING_NEW", "later")]


def test_put_reader_accepts_missing_or_null_arrays(read: Reader) -> None:
    """A body without `data` or `errors`, or with them null, acknowledges and refuses nothing."""
    assert read(b"{}") == ([], [])
    assert read(b'{"data":null,"errors":null}') == ([], [])
    assert read(b'{"data":[],"errors":[]}') == ([], [])


def test_put_reader_error_without_message_gets_an_empty_message(read: Reader) -> None:
    """An `errors` entry without `message` reads with an empty message."""
    body = dumps({"data": [], "errors": [{"accountingEntryId": ENTRY_ID_1, "type": "X"}]})
    assert read(body)[1] == [ItemUpdateError(ENTRY_ID_1, "X", "")]


@pytest.mark.parametrize("body", [b"[]", b'"ok"', b"null", b"42", b'[{"data": []}]'])
def test_put_reader_refuses_a_body_that_is_not_an_object(read: Reader, body: bytes) -> None:
    """A PUT body that is valid JSON but not an object raises ValueError."""
    with pytest.raises(ValueError, match="expected a JSON object"):
        read(body)


def test_put_reader_lower_cases_refused_ids(read: Reader) -> None:
    """IDs in `errors` are lower-cased like those in `data`, so a refusal matches its update."""
    body = dumps({"data": [], "errors": [{"accountingEntryId": ENTRY_ID_3.upper(), "type": "X"}]})
    assert read(body)[1] == [ItemUpdateError(ENTRY_ID_3, "X", "")]


def test_put_reader_error_with_null_message_gets_an_empty_message(read: Reader) -> None:
    """An `errors` entry whose `message` is null reads with an empty message, not 'None'."""
    body = dumps(
        {"data": [], "errors": [{"accountingEntryId": ENTRY_ID_1, "type": "X", "message": None}]}
    )
    assert read(body)[1] == [ItemUpdateError(ENTRY_ID_1, "X", "")]


def test_put_reader_acknowledges_nothing_for_items_of_another_job(read: Reader) -> None:
    """An item whose exportJobId names another job acknowledges nothing; the job ID is matched
    in any case, and an item without exportJobId still counts."""
    other_job = "0f0f0f0f-0000-4000-8000-000000000000"
    body = dumps(
        {
            "data": [
                {"accountingEntryId": ENTRY_ID_1, "exportJobId": other_job},
                {"accountingEntryId": ENTRY_ID_2, "exportJobId": JOB_ID.upper()},
                {"accountingEntryId": ENTRY_ID_3},
            ],
            "errors": [],
        }
    )
    assert read(body) == ([ENTRY_ID_2, ENTRY_ID_3], [])
    assert read_item_update_response(body, JOB_ID).other_jobs == 1


def test_decoded_item_update_is_validated_and_typed() -> None:
    """An item update read from the wire has enum members and a canonical ID."""
    update = from_wire({**ITEM_UPDATE_FAILED, "accountingEntryId": ENTRY_ID_2.upper()}, ItemUpdate)
    assert update.accounting_entry_id == ENTRY_ID_2
    assert update.status is ItemStatus.FAILED
    assert update.failure_reason_type is ItemFailureReasonType.ACCOUNTING_SYSTEM_VALIDATION_FAILURE


def test_request_enums_structure_to_their_members() -> None:
    """Strict enums read back from JSON are enum members, not plain strings."""
    request = from_wire(
        {"event": "failed", "jobId": "x", "failureReasonType": "job_expired"},
        _models.JobEventRequest,
    )
    assert request.event is JobEvent.FAILED
    assert request.failure_reason_type is JobFailureReasonType.JOB_EXPIRED
