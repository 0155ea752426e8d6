"""The fake refuses what Pleo's OpenAPI document refuses (issue 23, item 9): pagination numbers
outside their int64/int32 formats, and, in strict mode, null in request fields the spec does not
declare nullable. Lenient mode reads such a null as an absent field."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
import pytest

from pleo_export_async import ApiKeyAuth, ItemUpdate, PleoExportClient
from pleo_export_async.testing import FakePleo

from .helpers import call, post_event, put_items, successful

INT64_MAX: Final = 2**63 - 1
INT32_MAX: Final = 2**31 - 1

# Every paginated GET of v3: the spec gives each `offset` int64 and `limit` int32, minimum 0.
PAGINATED: Final = ("jobs", "job items", "export items")

# UpdateExportJobItemV3's optional fields: none is `nullable: true` in the spec.
OPTIONAL_ITEM_FIELDS: Final = (
    "exportedAt",
    "externalId",
    "externalUrl",
    "failureReason",
    "failureReasonType",
)


def _path_and_params(fake: FakePleo, endpoint: str) -> tuple[str, dict[str, str]]:
    job = fake.create_job(items=3)
    if endpoint == "jobs":
        return "/v3/export-jobs", {}
    if endpoint == "job items":
        return f"/v3/export-jobs/{job.id}/items", {}
    return "/v3/export-items", {"job_id": job.id}


def _bad_request(message: str) -> dict[str, str]:
    return {"type": "BAD_REQUEST", "message": message}


def _cursor(ordinal_digits: str) -> str:
    """A cursor in the fake's own encoding, for an ordinal written as these digits."""
    return base64.b32encode(f"p:{ordinal_digits}".encode()).decode("ascii")


# ---- offset and limit: whole numbers within their formats ---------------------------------


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "lenient"])
@pytest.mark.parametrize("endpoint", PAGINATED)
async def test_offset_above_int64_is_400(
    fake_pleo: FakePleo, session: aiohttp.ClientSession, endpoint: str, strict: bool
) -> None:
    """An offset one above the int64 maximum gets 400 BAD_REQUEST in either mode, not a page
    that echoes it back."""
    fake_pleo.strict = strict
    path, params = _path_and_params(fake_pleo, endpoint)
    status, body = await call(session, "GET", path, params={**params, "offset": str(2**63)})
    assert (status, body) == (
        400,
        _bad_request(
            "offset: above the int64 maximum 9223372036854775807, got '9223372036854775808'"
        ),
    )


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "lenient"])
@pytest.mark.parametrize("endpoint", PAGINATED)
@pytest.mark.parametrize("limit", [str(2**31), str(2**63)])
async def test_limit_above_int32_is_400(
    fake_pleo: FakePleo,
    session: aiohttp.ClientSession,
    endpoint: str,
    strict: bool,
    limit: str,
) -> None:
    """A limit above the int32 maximum (the spec's format for it), int64-sized or not, gets 400
    BAD_REQUEST in either mode instead of being capped quietly."""
    fake_pleo.strict = strict
    path, params = _path_and_params(fake_pleo, endpoint)
    status, body = await call(session, "GET", path, params={**params, "limit": limit})
    assert (status, body) == (
        400,
        _bad_request(f"limit: above the int32 maximum 2147483647, got {limit!r}"),
    )


@pytest.mark.parametrize("endpoint", PAGINATED)
async def test_the_largest_offset_and_limit_are_accepted(
    fake_pleo: FakePleo, session: aiohttp.ClientSession, endpoint: str
) -> None:
    """The int64 maximum as offset gives an empty last page, and the int32 maximum as limit is
    capped to the page size maximum, both echoed within their formats."""
    path, params = _path_and_params(fake_pleo, endpoint)
    status, body = await call(
        session, "GET", path, params={**params, "offset": str(INT64_MAX), "limit": str(INT32_MAX)}
    )
    assert status == 200
    assert body["data"] == []
    echo = body["pagination"]["currentRequestPagination"]
    assert (echo["offset"], echo["limit"]) == (INT64_MAX, 100)
    assert (body["pagination"]["hasNextPage"], body["pagination"]["hasPreviousPage"]) == (
        False,
        True,
    )


async def test_leading_zeros_do_not_count_against_the_format(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """Zeros before the digits are read as the number they write, however many there are."""
    job = fake_pleo.create_job(items=5)
    status, body = await call(
        session,
        "GET",
        f"/v3/export-jobs/{job.id}/items",
        params={"offset": "0" * 30 + "2", "limit": "0" * 30 + "2"},
    )
    assert status == 200
    assert [item["accountingEntryId"] for item in body["data"]] == job.item_ids[2:4]
    echo = body["pagination"]["currentRequestPagination"]
    assert (echo["offset"], echo["limit"]) == (2, 2)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("offset", "-1", "offset: expected a non-negative integer, got '-1'"),
        ("offset", "+1", "offset: expected a non-negative integer, got '+1'"),
        ("offset", "1e3", "offset: expected a non-negative integer, got '1e3'"),
        ("limit", "2.0", "limit: expected a non-negative integer, got '2.0'"),
        ("limit", "", "limit: expected a non-negative integer, got ''"),
        # A digit int() cannot read: this was a 500.
        ("offset", "\u00b2", "offset: expected a non-negative integer, got '²'"),
        # More digits than int() converts: this was a 500.
        (
            "offset",
            "1" * 5000,
            "offset: above the int64 maximum 9223372036854775807, got '11111111111111111111'",
        ),
        (
            "limit",
            "9" * 5000,
            "limit: above the int32 maximum 2147483647, got '99999999999999999999'",
        ),
    ],
)
async def test_numbers_outside_the_formats_are_400_naming_the_parameter(
    fake_pleo: FakePleo, session: aiohttp.ClientSession, name: str, value: str, message: str
) -> None:
    """Signs, fractions, exponents, empty values, non-decimal digits and numbers too long for
    any integer format all get 400 BAD_REQUEST naming the parameter, never a 500."""
    job = fake_pleo.create_job(items=3)
    status, body = await call(
        session, "GET", f"/v3/export-jobs/{job.id}/items", params={name: value}
    )
    assert (status, body) == (400, _bad_request(message))


@pytest.mark.parametrize("digits", [20, 4400], ids=["past-int64", "past-int()"])
async def test_a_cursor_beyond_int64_is_an_unknown_cursor(
    fake_pleo: FakePleo, session: aiohttp.ClientSession, digits: int
) -> None:
    """A cursor in the fake's encoding whose ordinal is longer than any int64 is refused as an
    unknown cursor, not read (or failed on as a 500)."""
    job = fake_pleo.create_job(items=3)
    path = f"/v3/export-jobs/{job.id}/items"
    # The control: the same encoding with a short ordinal is one of ours, past this job's end.
    status, body = await call(session, "GET", path, params={"after": _cursor("9")})
    assert (status, body["data"]) == (200, [])
    status, body = await call(session, "GET", path, params={"after": _cursor("9" * digits)})
    assert (status, body) == (400, _bad_request("after: unknown cursor"))


# ---- PUT items: null in fields the spec does not make nullable ----------------------------


@pytest.mark.parametrize("field", OPTIONAL_ITEM_FIELDS)
async def test_strict_refuses_null_in_an_optional_item_field(
    fake_pleo: FakePleo, session: aiohttp.ClientSession, field: str
) -> None:
    """Strict: null in an optional UpdateExportJobItemV3 field gets 400 BAD_REQUEST naming the
    field, and no item of the request is committed."""
    job = fake_pleo.create_job(items=2)
    first, second = job.item_ids
    status, body = await put_items(
        session, job.id, [successful(first), successful(second, **{field: None})]
    )
    assert (status, body) == (
        400,
        _bad_request(f"[1].{field}: null is not allowed (leave the field out instead)"),
    )
    assert [item["status"] for item in fake_pleo.items(job.id)] == ["pending", "pending"]
    assert fake_pleo.journal.puts(job.id)[-1].committed_indexes == frozenset()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"externalId": None}, "[0].externalId: null is not allowed (leave the field out instead)"),
        ({"externalID": "JE-1"}, "[0].externalID: unknown field"),
    ],
    ids=["null", "unknown field"],
)
async def test_strict_refuses_both_nulls_and_unknown_fields(
    fake_pleo: FakePleo, session: aiohttp.ClientSession, extra: dict[str, Any], message: str
) -> None:
    """Strict: a null optional field and an unknown field both get 400 BAD_REQUEST naming the
    field, and the item stays as it was."""
    job = fake_pleo.create_job(items=1)
    status, body = await put_items(session, job.id, [successful(job.item_ids[0], **extra)])
    assert (status, body) == (400, _bad_request(message))
    assert fake_pleo.item(job.id, job.item_ids[0])["status"] == "pending"


@pytest.mark.fake_pleo(strict=False)
async def test_lenient_accepts_nulls_and_unknown_fields(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """Lenient: null in every optional item field, and an unknown field, are accepted; the
    nulls are stored as absent and the unknown field is dropped."""
    job = fake_pleo.create_job(items=1)
    entry_id = job.item_ids[0]
    update = successful(entry_id, externalID="JE-1", **dict.fromkeys(OPTIONAL_ITEM_FIELDS))
    status, body = await put_items(session, job.id, [update])
    assert status == 200
    assert body["errors"] == []
    stored = {"accountingEntryId": entry_id, "exportJobId": job.id, "status": "successful"}
    assert body["data"] == [stored]
    assert fake_pleo.item(job.id, entry_id) == stored


@pytest.mark.fake_pleo(strict=False)
@pytest.mark.parametrize("field", ["accountingEntryId", "status"])
async def test_lenient_still_refuses_null_in_a_required_item_field(
    fake_pleo: FakePleo, session: aiohttp.ClientSession, field: str
) -> None:
    """Lenient: null in a required item field still gets 400 BAD_REQUEST, and nothing is
    committed."""
    job = fake_pleo.create_job(items=1)
    status, body = await put_items(session, job.id, [{**successful(job.item_ids[0]), field: None}])
    assert (status, body) == (400, _bad_request(f"[0].{field}: required field is null"))
    assert fake_pleo.item(job.id, job.item_ids[0])["status"] == "pending"


# ---- the other request bodies follow the same rule ----------------------------------------


@pytest.mark.parametrize("field", ["failureReason", "failureReasonType"])
async def test_strict_refuses_null_in_an_optional_event_field(
    fake_pleo: FakePleo, session: aiohttp.ClientSession, field: str
) -> None:
    """Strict: null in an optional CreateExportJobEvent field (none is nullable) gets 400
    BAD_REQUEST naming it, and the job keeps its status."""
    job = fake_pleo.create_job(items=1)
    status, body = await post_event(session, job.id, "failed", **{field: None})
    assert (status, body) == (
        400,
        _bad_request(f"{field}: null is not allowed (leave the field out instead)"),
    )
    assert fake_pleo.job_status(job.id) == "in_progress"
    assert fake_pleo.journal.final_events_applied(job.id) == []


@pytest.mark.fake_pleo(strict=False)
async def test_lenient_accepts_null_in_optional_event_fields(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """Lenient: a job event with null failureReason and failureReasonType is applied."""
    job = fake_pleo.create_job(items=1)
    status, body = await post_event(
        session, job.id, "failed", failureReason=None, failureReasonType=None
    )
    assert (status, body) == (202, None)
    assert fake_pleo.job_status(job.id) == "failed"


@pytest.mark.parametrize(
    "nulls",
    [
        {"employeeId": None},
        {"isInteractive": None},
        {"options": None},
        {"options": {"vendorBasedBookkeeping": None}},
    ],
    ids=["employeeId", "isInteractive", "options", "options.vendorBasedBookkeeping"],
)
async def test_strict_accepts_null_where_create_job_declares_it_nullable(
    fake_pleo: FakePleo, session: aiohttp.ClientSession, nulls: dict[str, Any]
) -> None:
    """Strict: the CreateExportJob fields the spec marks nullable take null, and the job is
    created."""
    company = str(uuid.uuid4())
    body = {"accountingEntryIds": [str(uuid.uuid4())], "companyId": company, **nulls}
    status, answer = await call(session, "POST", "/v3/export-jobs", json=body)
    assert status == 201
    assert answer["data"]["companyId"] == company
    assert fake_pleo.job_status(answer["data"]["id"]) == "pending"


# ---- the library's own client -------------------------------------------------------------


def _nulls_in(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(_nulls_in(v) for v in value.values())
    if isinstance(value, list):
        return any(_nulls_in(v) for v in value)
    return False


async def test_the_client_sends_no_null_the_strict_fake_refuses(fake_pleo: FakePleo) -> None:
    """The client's item updates, of every shape, and its final event carry no null, so the
    strict fake accepts them all."""
    job = fake_pleo.create_job(items=5)
    ids = job.item_ids
    updates = [
        ItemUpdate.successful(ids[0]),
        ItemUpdate.successful(ids[1], external_id="JE-1"),
        ItemUpdate.successful(
            ids[2],
            external_id="JE-2",
            external_url="https://erp.example.com/JE-2",
            exported_at=datetime(2024, 5, 1, 12, tzinfo=UTC),
        ),
        ItemUpdate.failed(ids[3], reason_type="vendor_unknown"),
        ItemUpdate.failed(ids[4], reason="Vendor not found", reason_type="vendor_unknown"),
    ]
    async with PleoExportClient(fake_pleo.base_url, auth=ApiKeyAuth(fake_pleo.api_key)) as client:
        run = client.job(job.id)
        report = await run.update(updates)
        await run.complete()
    assert (len(report.acknowledged), report.rejected) == (5, {})
    assert fake_pleo.job_status(job.id) == "completed_with_errors"
    sent = fake_pleo.journal.puts(job.id) + fake_pleo.journal.events(job.id)
    assert sent
    assert all(entry.status in (200, 202) and not _nulls_in(entry.body) for entry in sent)
