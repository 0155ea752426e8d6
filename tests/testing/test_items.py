"""Export job items: GET with pagination and status filter, PUT with its per-item outcomes."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from pleo_export_async.testing import FakePleo

from .helpers import (
    CURSOR_PATTERN,
    UNKNOWN_ID,
    call,
    failed,
    finish,
    put_items,
    session_for,
    successful,
)

REQUIRED_ITEM_FIELDS = {"accountingEntryId", "exportJobId", "status"}


async def _get_items(session: aiohttp.ClientSession, job_id: str, **params: str) -> tuple[int, Any]:
    return await call(session, "GET", f"/v3/export-jobs/{job_id}/items", params=params)


# ---- GET items ----------------------------------------------------------------------------


async def test_items_start_pending_with_only_the_required_fields(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """Before processing every item is pending, and the optional fields, having no value, are
    left out rather than null (docs/pleo-api.md#schema-check)."""
    job = fake_pleo.create_job(items=3)
    status, body = await _get_items(session, job.id)
    assert status == 200
    assert [item["accountingEntryId"] for item in body["data"]] == job.item_ids
    for item in body["data"]:
        assert set(item) == REQUIRED_ITEM_FIELDS
        assert item["exportJobId"] == job.id
        assert item["status"] == "pending"


async def test_pagination_walk_visits_every_item_once(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """230 items with limit 100 come in 3 pages (100, 100, 30), each ID exactly once."""
    job = fake_pleo.create_job(items=230)
    seen: list[str] = []
    page_sizes = []
    after: str | None = None
    while True:
        params = {"limit": "100"} if after is None else {"limit": "100", "after": after}
        status, body = await _get_items(session, job.id, **params)
        assert status == 200
        page_sizes.append(len(body["data"]))
        seen.extend(item["accountingEntryId"] for item in body["data"])
        pagination = body["pagination"]
        assert pagination["total"] == 230
        assert pagination["currentRequestPagination"]["parameters"] == {
            name: [value] for name, value in params.items()
        }
        assert CURSOR_PATTERN.match(pagination["endCursor"])
        if not pagination["hasNextPage"]:
            break
        after = pagination["endCursor"]
    assert page_sizes == [100, 100, 30]
    assert seen == job.item_ids


async def test_previous_page_flags_and_before_cursor(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """hasPreviousPage is set after page one; `before` a page's start gives the page before."""
    job = fake_pleo.create_job(items=25)
    _, first = await _get_items(session, job.id, limit="10")
    _, second = await _get_items(
        session, job.id, limit="10", after=first["pagination"]["endCursor"]
    )
    assert first["pagination"]["hasPreviousPage"] is False
    assert second["pagination"]["hasPreviousPage"] is True
    _, back = await _get_items(
        session, job.id, limit="10", before=second["pagination"]["startCursor"]
    )
    assert back["data"] == first["data"]


async def test_offset_skips_items(fake_pleo: FakePleo, session: aiohttp.ClientSession) -> None:
    """`offset` starts the page at that position."""
    job = fake_pleo.create_job(items=30)
    _, body = await _get_items(session, job.id, offset="25")
    assert [item["accountingEntryId"] for item in body["data"]] == job.item_ids[25:]
    assert body["pagination"]["currentRequestPagination"]["offset"] == 25


async def test_default_and_maximum_page_size(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """Without `limit` a page holds 50 items; a larger `limit` is capped at 100."""
    job = fake_pleo.create_job(items=150)
    _, body = await _get_items(session, job.id)
    assert len(body["data"]) == 50
    _, body = await _get_items(session, job.id, limit="500")
    assert len(body["data"]) == 100
    assert body["pagination"]["currentRequestPagination"]["limit"] == 100


async def test_page_sizes_are_configurable() -> None:
    """page_size_default and page_size_max change the defaults."""
    async with FakePleo(page_size_default=5, page_size_max=7) as fake, session_for(fake) as s:
        job = fake.create_job(items=20)
        assert len((await _get_items(s, job.id))[1]["data"]) == 5
        assert len((await _get_items(s, job.id, limit="20"))[1]["data"]) == 7


async def test_status_filter(fake_pleo: FakePleo, session: aiohttp.ClientSession) -> None:
    """`status` keeps only the items in that status."""
    job = fake_pleo.create_job(items=5)
    await put_items(session, job.id, [successful(job.item_ids[1]), failed(job.item_ids[3])])
    _, body = await _get_items(session, job.id, status="pending")
    assert [i["accountingEntryId"] for i in body["data"]] == [
        job.item_ids[0],
        job.item_ids[2],
        job.item_ids[4],
    ]
    _, body = await _get_items(session, job.id, status="successful")
    assert [i["accountingEntryId"] for i in body["data"]] == [job.item_ids[1]]


async def test_status_filtered_walk_survives_items_changing_status(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """Cursors point at items, so a `status=pending` walk skips none as earlier ones finish."""
    job = fake_pleo.create_job(items=30)
    _, first = await _get_items(session, job.id, status="pending", limit="10")
    await put_items(session, job.id, [successful(i["accountingEntryId"]) for i in first["data"]])
    _, second = await _get_items(
        session, job.id, status="pending", limit="10", after=first["pagination"]["endCursor"]
    )
    assert [i["accountingEntryId"] for i in second["data"]] == job.item_ids[10:20]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"after": "GE======", "before": "GE======"}, "before and after: cannot be combined"),
        ({"after": "GE======", "offset": "3"}, "after and offset: cannot be combined"),
        ({"after": "not-base32"}, "after: not a cursor (expected ^[A-Z2-7=~]+$)"),
        ({"after": "MFRGG==="}, "after: unknown cursor"),
        ({"limit": "-1"}, "limit: expected a non-negative integer, got '-1'"),
        ({"offset": "x"}, "offset: expected a non-negative integer, got 'x'"),
        ({"status": "done"}, "status: unknown value 'done'"),
        (
            {"sorting_keys": "createdAt", "sorting_order": "SIDEWAYS"},
            "sorting_order[0]: unknown value 'SIDEWAYS'",
        ),
        ({"sorting_order": "ASC"}, "sorting_order: must have as many values as sorting_keys"),
    ],
)
async def test_bad_pagination_parameters_are_400(
    fake_pleo: FakePleo, session: aiohttp.ClientSession, params: dict[str, str], message: str
) -> None:
    """Mixed cursors, foreign cursors and bad numbers or enums get 400 naming the parameter."""
    job = fake_pleo.create_job(items=3)
    status, body = await _get_items(session, job.id, **params)
    assert (status, body["type"], body["message"]) == (400, "BAD_REQUEST", message)


async def test_items_of_unknown_job_is_404(session: aiohttp.ClientSession) -> None:
    """GET items of an unknown job gets 404 EXPORT_NOT_FOUND."""
    status, body = await _get_items(session, UNKNOWN_ID)
    assert (status, body["type"]) == (404, "EXPORT_NOT_FOUND")


async def test_items_of_finished_job_are_readable(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """GET items works on a finished job (for audit and recovery)."""
    job = fake_pleo.create_job(items=2, status="completed")
    status, body = await _get_items(session, job.id)
    assert status == 200
    assert len(body["data"]) == 2


# ---- PUT items ----------------------------------------------------------------------------


async def test_put_commits_and_acknowledges_in_data(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """A PUT commits each item and lists it in `data` as ExportJobItemV3 with exportJobId."""
    job = fake_pleo.create_job(items=2)
    ok, bad = job.item_ids
    update = successful(
        ok,
        externalId="JE-10452",
        externalUrl="https://erp.example.com/journal/JE-10452",
        exportedAt="2024-05-01T12:00:00.250+02:00",
    )
    status, body = await put_items(session, job.id, [update, failed(bad)])
    assert status == 200
    assert body["errors"] == []
    first, second = body["data"]
    assert first == {
        "accountingEntryId": ok,
        "exportJobId": job.id,
        "status": "successful",
        "exportedAt": "2024-05-01T10:00:00Z",
        "externalId": "JE-10452",
        "externalUrl": "https://erp.example.com/journal/JE-10452",
    }
    assert set(second) == REQUIRED_ITEM_FIELDS | {"failureReason", "failureReasonType"}
    assert (second["status"], second["failureReasonType"]) == ("failed", "vendor_unknown")
    assert fake_pleo.item(job.id, ok) == first
    assert fake_pleo.item(job.id, bad) == second


async def test_unknown_entry_is_reported_as_does_not_exist(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """An ID that is not in the job is an ACCOUNTING_ENTRY_DOES_NOT_EXIST error; others commit."""
    job = fake_pleo.create_job(items=1)
    status, body = await put_items(
        session, job.id, [successful(UNKNOWN_ID), successful(job.item_ids[0])]
    )
    assert status == 200
    assert [item["accountingEntryId"] for item in body["data"]] == job.item_ids
    assert body["errors"] == [
        {
            "accountingEntryId": UNKNOWN_ID,
            "type": "ACCOUNTING_ENTRY_DOES_NOT_EXIST",
            "message": "Accounting entry does not exist.",
        }
    ]


async def test_abandoned_status_is_refused_per_item(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """Sending status abandoned (Pleo's to set) is an EXPORT_ENTRY_STATUS_UPDATE_FAILED error."""
    job = fake_pleo.create_job(items=1)
    entry_id = job.item_ids[0]
    _, body = await put_items(
        session, job.id, [{"accountingEntryId": entry_id, "status": "abandoned"}]
    )
    assert body["data"] == []
    [error] = body["errors"]
    assert (error["accountingEntryId"], error["type"]) == (
        entry_id,
        "EXPORT_ENTRY_STATUS_UPDATE_FAILED",
    )
    assert "abandoned" in error["message"]
    assert fake_pleo.item(job.id, entry_id)["status"] == "pending"


async def test_empty_array_is_200_with_empty_lists(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """An empty PUT body answers 200 {data: [], errors: []}."""
    job = fake_pleo.create_job(items=1)
    assert await put_items(session, job.id, []) == (200, {"data": [], "errors": []})


async def test_more_than_100_items_is_413_and_commits_nothing(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """101 items get 413 EXPORT_JOB_ITEMS_UPDATE_LIMIT; 100 are accepted."""
    job = fake_pleo.create_job(items=101)
    status, body = await put_items(session, job.id, [successful(i) for i in job.item_ids])
    assert status == 413
    assert body == {
        "type": "EXPORT_JOB_ITEMS_UPDATE_LIMIT",
        "message": "Number of items to update is more than 100.",
    }
    assert all(item["status"] == "pending" for item in fake_pleo.items(job.id))
    status, body = await put_items(session, job.id, [successful(i) for i in job.item_ids[:100]])
    assert (status, len(body["data"])) == (200, 100)


@pytest.mark.parametrize("final_status", ["completed", "completed_with_errors", "failed"])
async def test_put_on_finished_job_is_422(
    fake_pleo: FakePleo, session: aiohttp.ClientSession, final_status: str
) -> None:
    """A PUT on a finished job gets 422 EXPORT_JOB_STATUS_UNPROCESSABLE (job is finished)."""
    job = fake_pleo.create_job(items=1)
    assert (await finish(session, job.id, job.item_ids, final_status))[0] == 202
    status, body = await put_items(session, job.id, [successful(job.item_ids[0])])
    assert status == 422
    assert body == {"type": "EXPORT_JOB_STATUS_UNPROCESSABLE", "message": "Export job is finished."}


async def test_put_on_unknown_job_is_404(session: aiohttp.ClientSession) -> None:
    """A PUT on an unknown job gets 404 EXPORT_NOT_FOUND."""
    status, body = await put_items(session, UNKNOWN_ID, [successful(UNKNOWN_ID)])
    assert (status, body["type"]) == (404, "EXPORT_NOT_FOUND")


@pytest.mark.fake_pleo(strict=False)
async def test_lenient_put_on_pending_job_is_accepted(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """Lenient: a PUT on a job that was never started is accepted."""
    job = fake_pleo.create_job(items=1, status="pending")
    status, body = await put_items(session, job.id, [successful(job.item_ids[0])])
    assert (status, len(body["data"])) == (200, 1)


@pytest.mark.fake_pleo(strict=True)
async def test_strict_put_on_pending_job_is_422(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """A PUT on a job that was never started gets 422 and commits nothing (strict)."""
    job = fake_pleo.create_job(items=1, status="pending")
    status, body = await put_items(session, job.id, [successful(job.item_ids[0])])
    assert (status, body["type"]) == (422, "EXPORT_JOB_STATUS_UNPROCESSABLE")
    assert fake_pleo.item(job.id, job.item_ids[0])["status"] == "pending"


@pytest.mark.fake_pleo(strict=False)
async def test_lenient_rewrite_last_write_wins(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """Lenient: an item can be rewritten, even after success; the last write wins."""
    job = fake_pleo.create_job(items=1)
    entry_id = job.item_ids[0]
    await put_items(session, job.id, [failed(entry_id)])
    await put_items(session, job.id, [successful(entry_id, externalId="A")])
    _, body = await put_items(session, job.id, [successful(entry_id, externalId="B")])
    assert body["errors"] == []
    item = fake_pleo.item(job.id, entry_id)
    assert (item["status"], item["externalId"], item.get("failureReasonType")) == (
        "successful",
        "B",
        None,
    )


@pytest.mark.fake_pleo(strict=True)
async def test_strict_rewrite_of_successful_item_is_an_item_error(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """Strict: rewriting a successful item is EXPORT_ENTRY_STATUS_UPDATE_FAILED; failed is not."""
    job = fake_pleo.create_job(items=2)
    done, retried = job.item_ids
    await put_items(session, job.id, [successful(done, externalId="A"), failed(retried)])
    _, body = await put_items(
        session, job.id, [successful(done, externalId="B"), successful(retried)]
    )
    assert [item["accountingEntryId"] for item in body["data"]] == [retried]
    assert [(e["accountingEntryId"], e["type"]) for e in body["errors"]] == [
        (done, "EXPORT_ENTRY_STATUS_UPDATE_FAILED")
    ]
    assert fake_pleo.item(job.id, done)["externalId"] == "A"


async def test_a_successful_item_cannot_turn_failed_by_default(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """By default turning a successful item into a failed one is EXPORT_ENTRY_STATUS_UPDATE_FAILED,
    while the very same successful update again is acknowledged and changes nothing."""
    job = fake_pleo.create_job(items=1)
    entry_id = job.item_ids[0]
    update = successful(entry_id, externalId="A", exportedAt="2024-05-01T12:00:00+02:00")
    await put_items(session, job.id, [update])
    _, body = await put_items(session, job.id, [failed(entry_id)])
    assert body["data"] == []
    assert [(e["accountingEntryId"], e["type"]) for e in body["errors"]] == [
        (entry_id, "EXPORT_ENTRY_STATUS_UPDATE_FAILED")
    ]
    _, body = await put_items(session, job.id, [update])
    assert (body["errors"], [item["accountingEntryId"] for item in body["data"]]) == (
        [],
        [entry_id],
    )
    assert fake_pleo.item(job.id, entry_id)["status"] == "successful"
    # The journal still counts both later sends: a connector should have sent neither.
    assert fake_pleo.journal.resent_after_ack(job.id) == {entry_id: 2}


async def test_uppercase_ids_are_matched_and_answered_lowercase(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """UUIDs are case-insensitive; the answer uses the lowercase form."""
    job = fake_pleo.create_job(items=1)
    _, body = await put_items(session, job.id, [successful(job.item_ids[0].upper())])
    assert body["data"][0]["accountingEntryId"] == job.item_ids[0]


# ---- PUT validation: 400 for the whole request, nothing committed ---------------------------

VALID = "55555555-5555-4555-8555-555555555555"


@pytest.mark.parametrize(
    ("bad_item", "message"),
    [
        (
            {"accountingEntryId": VALID, "status": "failed", "failureReasonType": "bogus"},
            "[1].failureReasonType: unknown value 'bogus'",
        ),
        ({"accountingEntryId": VALID, "status": "done"}, "[1].status: unknown value 'done'"),
        ({"accountingEntryId": VALID}, "[1].status: required field missing"),
        ({"status": "successful"}, "[1].accountingEntryId: required field missing"),
        (
            {"accountingEntryId": None, "status": "successful"},
            "[1].accountingEntryId: required field is null",
        ),
        (
            {"accountingEntryId": "123-456", "status": "successful"},
            "[1].accountingEntryId: not a UUID: '123-456'",
        ),
        (
            {"accountingEntryId": VALID, "status": "successful", "exportedAt": "2024-05-01"},
            "[1].exportedAt: not an RFC 3339 date-time with an offset "
            "(e.g. 2024-05-01T12:00:00Z): '2024-05-01'",
        ),
        (
            {
                "accountingEntryId": VALID,
                "status": "successful",
                "exportedAt": "2024-05-01T12:00:00",
            },
            None,
        ),
        (
            {
                "accountingEntryId": VALID,
                "status": "successful",
                "exportedAt": "2024-13-01T12:00:00Z",
            },
            None,
        ),
        (
            {"accountingEntryId": VALID, "status": "successful", "externalId": 42},
            "[1].externalId: expected a string, got number",
        ),
        ("not an object", "[1]: expected an object, got string"),
    ],
)
async def test_malformed_item_rejects_the_whole_request(
    fake_pleo: FakePleo, session: aiohttp.ClientSession, bad_item: Any, message: str | None
) -> None:
    """One malformed item gets 400 BAD_REQUEST naming it, and no item of the request commits."""
    job = fake_pleo.create_job(items=1)
    status, body = await put_items(session, job.id, [successful(job.item_ids[0]), bad_item])
    assert (status, body["type"]) == (400, "BAD_REQUEST")
    if message is not None:
        assert body["message"] == message
    assert fake_pleo.item(job.id, job.item_ids[0])["status"] == "pending"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"items": []}, "body: expected a JSON array of UpdateExportJobItemV3, got object"),
        (None, "body: missing or malformed JSON"),
    ],
)
async def test_put_body_must_be_a_json_array(
    fake_pleo: FakePleo, session: aiohttp.ClientSession, body: Any, message: str
) -> None:
    """A wrapped body ({"items": [...]}) or no JSON at all gets 400."""
    job = fake_pleo.create_job(items=1)
    kwargs: dict[str, Any] = {"json": body} if body is not None else {"data": b"{not json"}
    status, answer = await call(session, "PUT", f"/v3/export-jobs/{job.id}/items", **kwargs)
    assert (status, answer["message"]) == (400, message)


async def test_every_item_failure_reason_type_is_accepted(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """All 18 item-level failure reason types are valid in a PUT."""
    types = [
        "receipt_upload_failure",
        "receipt_download_failure",
        "receipt_file_size_limit_exceeded",
        "receipt_conversion_failure",
        "unexpected_failure",
        "invalid_configuration",
        "missing_configuration",
        "accounting_system_authentication_failure",
        "accounting_system_rate_limit",
        "accounting_system_unreachable",
        "validation_failure",
        "accounting_system_validation_failure",
        "authorization_failure",
        "accounting_system_timeout",
        "vendor_unknown",
        "account_unknown",
        "tax_code_unknown",
        "tag_unknown",
    ]
    job = fake_pleo.create_job(items=len(types))
    updates = [
        failed(entry_id, failureReasonType=failure_type)
        for entry_id, failure_type in zip(job.item_ids, types, strict=True)
    ]
    status, body = await put_items(session, job.id, updates)
    assert (status, len(body["data"]), body["errors"]) == (200, 18, [])


@pytest.mark.fake_pleo(strict=False)
async def test_lenient_mode_ignores_unknown_fields(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """Lenient: an unknown item field is ignored, as a default Jackson setup does."""
    job = fake_pleo.create_job(items=1)
    status, _ = await put_items(session, job.id, [successful(job.item_ids[0], externalID="x")])
    assert status == 200


@pytest.mark.fake_pleo(strict=True)
async def test_strict_mode_refuses_unknown_fields(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """Strict: a misspelt field name gets 400 naming it."""
    job = fake_pleo.create_job(items=1)
    status, body = await put_items(session, job.id, [successful(job.item_ids[0], externalID="x")])
    assert (status, body["message"]) == (400, "[0].externalID: unknown field")


async def test_a_lower_item_limit_answers_413_above_it() -> None:
    """`max_items_per_update` lowers the 413 threshold, for testing how clients split batches."""
    async with FakePleo(max_items_per_update=10) as fake, session_for(fake) as session:
        job = fake.create_job(items=11)
        status, body = await put_items(session, job.id, [successful(i) for i in job.item_ids])
        assert (status, body["type"]) == (413, "EXPORT_JOB_ITEMS_UPDATE_LIMIT")
        status, _ = await put_items(session, job.id, [successful(i) for i in job.item_ids[:10]])
        assert status == 200
