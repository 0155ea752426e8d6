"""GET /v3/export-items (the data layer) and the hidden GET /v3/export-job-items."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from pleo_export_async.testing import FakePleo, _spec

from .helpers import DATETIME_PATTERN, UNKNOWN_ID, call, finish, session_for

REQUIRED_FIELDS = {
    "_links",
    "accountingEntryId",
    "accountingEntryLines",
    "additionalInformation",
    "amount",
    "companyId",
    "date",
    "type",
}


async def _all_export_items(session: aiohttp.ClientSession, job_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params = {"job_id": job_id, "limit": "100"}
    while True:
        status, body = await call(session, "GET", "/v3/export-items", params=params)
        assert status == 200
        items.extend(body["data"])
        if not body["pagination"]["hasNextPage"]:
            return items
        params["after"] = body["pagination"]["endCursor"]


def _uses_documented_enums(item: dict[str, Any]) -> bool:
    """Whether a generated item only uses the documented enum values of
    docs/pleo-api.md#export-item-enums."""
    info = item["additionalInformation"]["invoiceInformation"]
    return (
        item["type"] in _spec.EXPORT_ITEM_TYPES
        # docs/pleo-api.md#schema-check: a subType without a value is left out, never null.
        and ("subType" not in item or item["subType"] in _spec.EXPORT_ITEM_SUB_TYPES)
        and (
            item["bookkeeping"] is None
            or item["bookkeeping"]["method"] in _spec.BOOKKEEPING_METHODS
        )
        and (info is None or info["status"] in _spec.INVOICE_STATUSES)
        and all(line["tax"]["type"] in _spec.TAX_TYPES for line in item["accountingEntryLines"])
    )


def _money_ok(money: Any) -> bool:
    return isinstance(money["value"], int) and isinstance(money["currency"], str)


async def test_export_items_are_realistic(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """One ExportItemV3 per job item, with the required fields, integer minor-unit amounts,
    1-3 lines whose wallet amounts add up, accounts, tax, supplier and documented enums."""
    job = fake_pleo.create_job(items=250)
    items = await _all_export_items(session, job.id)
    assert [item["accountingEntryId"] for item in items] == job.item_ids
    for item in items:
        assert set(item) >= REQUIRED_FIELDS
        assert item["companyId"] == job.company_id
        assert DATETIME_PATTERN.match(item["date"])
        assert item["additionalInformation"]["reconciliationId"]
        assert item["_links"]["web"]["exportItem"].endswith(item["accountingEntryId"])
        assert item["supplier"]["name"]
        assert _uses_documented_enums(item)
        assert _money_ok(item["amount"]["inWalletCurrency"])
        assert _money_ok(item["amount"]["inSupplierCurrency"])
        lines = item["accountingEntryLines"]
        assert 1 <= len(lines) <= 3
        assert (
            sum(line["lineAmount"]["inWalletCurrency"]["value"] for line in lines)
            == (item["amount"]["inWalletCurrency"]["value"])
        )
        for line in lines:
            assert line["account"]["name"]
            assert 0 <= line["tax"]["rate"] < 1
            assert (
                line["netAmount"]["inWalletCurrency"]["value"]
                <= (line["lineAmount"]["inWalletCurrency"]["value"])
            )
    assert {len(item["accountingEntryLines"]) for item in items} == {1, 2, 3}
    assert len({item["type"] for item in items}) > 5
    vendors = [item["vendor"] is not None for item in items]
    assert any(vendors)
    assert not all(vendors)
    # Vendor-based bookkeeping is off for this job, so `bookkeeping` is null
    # (docs/pleo-api.md#export-item).
    assert all(item["bookkeeping"] is None for item in items)


async def test_vendor_based_bookkeeping_fills_bookkeeping(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """With vendorBasedBookkeeping, every item has a bookkeeping method; AP ones a vendor."""
    job = fake_pleo.create_job(items=40, vendor_based_bookkeeping=True)
    items = await _all_export_items(session, job.id)
    assert all(
        item["bookkeeping"]["method"] in ("none", "journal", "accounts_payable") for item in items
    )
    assert all(
        item["vendor"] is not None
        for item in items
        if item["bookkeeping"]["method"] == "accounts_payable"
    )
    assert fake_pleo.job_payload(job.id)["vendorBasedBookkeeping"] is True


async def test_export_items_are_stable_between_requests(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """Asking twice returns the same payloads."""
    job = fake_pleo.create_job(items=5)
    assert await _all_export_items(session, job.id) == await _all_export_items(session, job.id)


@pytest.mark.parametrize("final_status", ["completed", "failed", "completed_with_errors"])
async def test_export_items_of_finished_job_is_422(
    fake_pleo: FakePleo, session: aiohttp.ClientSession, final_status: str
) -> None:
    """Export items of a finished job get 422 EXPORT_JOB_STATUS_UNPROCESSABLE."""
    job = fake_pleo.create_job(items=2)
    assert (await finish(session, job.id, job.item_ids, final_status))[0] == 202
    status, body = await call(session, "GET", "/v3/export-items", params={"job_id": job.id})
    assert (status, body["type"]) == (422, "EXPORT_JOB_STATUS_UNPROCESSABLE")


async def test_export_items_of_pending_job_are_served(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """A pending job's export items are served too."""
    job = fake_pleo.create_job(items=2, status="pending")
    status, body = await call(session, "GET", "/v3/export-items", params={"job_id": job.id})
    assert (status, len(body["data"])) == (200, 2)


async def test_export_items_of_unknown_job_is_404(session: aiohttp.ClientSession) -> None:
    """An unknown job_id gets 404 EXPORT_NOT_FOUND."""
    status, body = await call(session, "GET", "/v3/export-items", params={"job_id": UNKNOWN_ID})
    assert (status, body["type"]) == (404, "EXPORT_NOT_FOUND")


async def test_export_items_with_malformed_job_id_is_400(session: aiohttp.ClientSession) -> None:
    """A job_id that is not a UUID gets 400."""
    status, body = await call(session, "GET", "/v3/export-items", params={"job_id": "x"})
    assert (status, body["message"]) == (400, "job_id: not a UUID: 'x'")


@pytest.mark.fake_pleo(strict=False)
async def test_lenient_export_items_without_job_id_lists_running_jobs(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """Without job_id the lenient fake lists the items of every running job."""
    first = fake_pleo.create_job(items=2)
    fake_pleo.create_job(items=3, status="completed")
    second = fake_pleo.create_job(items=1, status="pending")
    status, body = await call(session, "GET", "/v3/export-items")
    assert status == 200
    assert [i["accountingEntryId"] for i in body["data"]] == first.item_ids + second.item_ids


@pytest.mark.fake_pleo(strict=True)
async def test_strict_export_items_without_job_id_is_400(session: aiohttp.ClientSession) -> None:
    """GET export-items without job_id gets 400 REQUIRED_PARAMETER_MISSING (strict)."""
    status, body = await call(session, "GET", "/v3/export-items")
    assert (status, body["type"]) == (400, "REQUIRED_PARAMETER_MISSING")


async def test_export_items_missing_contra_accounts_is_400() -> None:
    """With missing_contra_accounts, GET export-items gets 400 MISSING_CONTRA_ACCOUNTS."""
    async with FakePleo(missing_contra_accounts=True) as fake, session_for(fake) as session:
        job = fake.create_job(items=1)
        status, body = await call(session, "GET", "/v3/export-items", params={"job_id": job.id})
        assert (status, body["type"]) == (400, "MISSING_CONTRA_ACCOUNTS")


async def test_hidden_export_job_item_lookup(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """GET /v3/export-job-items finds a job item by entry ID, else 404 EXPORT_ENTRY_NOT_FOUND."""
    job = fake_pleo.create_job(items=2)
    entry_id = job.item_ids[1]
    status, body = await call(
        session, "GET", "/v3/export-job-items", params={"accounting_entry_id": entry_id}
    )
    assert status == 200
    assert body["data"] == fake_pleo.item(job.id, entry_id)
    status, body = await call(
        session, "GET", "/v3/export-job-items", params={"accounting_entry_id": UNKNOWN_ID}
    )
    assert (status, body["type"]) == (404, "EXPORT_ENTRY_NOT_FOUND")


async def test_unknown_path_and_method_get_exception_info(
    session: aiohttp.ClientSession,
) -> None:
    """Unknown /v3 paths get 404 NOT_FOUND and wrong methods 405, both as ExceptionInfo."""
    status, body = await call(session, "GET", "/v3/nothing-here")
    assert (status, body["type"]) == (404, "NOT_FOUND")
    status, body = await call(session, "DELETE", "/v3/export-jobs")
    assert (status, body["type"]) == (405, "METHOD_NOT_ALLOWED")
