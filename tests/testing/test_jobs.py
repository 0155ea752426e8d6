"""Export jobs: get, list, create, the event lifecycle of docs/pleo-api.md#job-transitions, and
expiry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from pleo_export_async.testing import FakePleo

from .helpers import DATETIME_PATTERN, UNKNOWN_ID, call, failed, post_event, put_items, session_for

# ExportJobV3's required fields: always there.
REQUIRED_JOB_FIELDS = {
    "id",
    "companyId",
    "createdAt",
    "expiresIn",
    "isInteractive",
    "numberOfItems",
    "status",
    "vendorBasedBookkeeping",
}


def _create_body(company_id: str, entry_ids: list[str], **extra: Any) -> dict[str, Any]:
    return {"companyId": company_id, "accountingEntryIds": entry_ids, **extra}


# ---- GET /v3/export-jobs/{jobId} ---------------------------------------------------------


async def test_get_job_returns_export_job_v3(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """GET a job returns {data: ExportJobV3} with its required fields, lastUpdatedAt, Z datetimes,
    and none of the optional fields it has no value for (docs/pleo-api.md#schema-check: left out,
    not null)."""
    job = fake_pleo.create_job(items=4, status="pending")
    status, body = await call(session, "GET", f"/v3/export-jobs/{job.id}")
    assert status == 200
    data = body["data"]
    assert set(data) == REQUIRED_JOB_FIELDS | {"lastUpdatedAt"}
    assert data["id"] == job.id
    assert data["companyId"] == job.company_id
    assert data["status"] == "pending"
    assert data["numberOfItems"] == 4
    assert data["expiresIn"] == 3600
    assert DATETIME_PATTERN.match(data["createdAt"])
    assert DATETIME_PATTERN.match(data["lastUpdatedAt"])
    assert data == fake_pleo.job_payload(job.id)


async def test_get_unknown_job_is_404_export_not_found(session: aiohttp.ClientSession) -> None:
    """An unknown job ID gets 404 EXPORT_NOT_FOUND."""
    status, body = await call(session, "GET", f"/v3/export-jobs/{UNKNOWN_ID}")
    assert status == 404
    assert body == {"type": "EXPORT_NOT_FOUND", "message": "Export job not found."}


async def test_get_job_with_malformed_id_is_400(session: aiohttp.ClientSession) -> None:
    """A job ID that is not a UUID gets 400 BAD_REQUEST naming jobId."""
    status, body = await call(session, "GET", "/v3/export-jobs/not-a-uuid")
    assert status == 400
    assert body["type"] == "BAD_REQUEST"
    assert body["message"].startswith("jobId:")


async def test_injected_clock_sets_timestamps() -> None:
    """Timestamps come from the injected clock, rendered as YYYY-MM-DDTHH:MM:SSZ."""
    moment = datetime(2024, 5, 1, 12, 30, 15, 987654, tzinfo=UTC)
    async with FakePleo(clock=lambda: moment) as fake:
        job = fake.create_job(items=1)
        payload = fake.job_payload(job.id)
        assert payload["createdAt"] == "2024-05-01T12:30:15Z"
        assert payload["startedAt"] == "2024-05-01T12:30:15Z"


# ---- GET /v3/export-jobs ------------------------------------------------------------------


async def test_list_filters_by_repeated_statuses_oldest_first(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """Repeated `statuses` select any of them; results are oldest first."""
    pending = fake_pleo.create_job(items=1, status="pending")
    running = fake_pleo.create_job(items=1, status="in_progress")
    fake_pleo.create_job(items=1, status="completed")
    status, body = await call(
        session,
        "GET",
        "/v3/export-jobs",
        params=[("statuses", "pending"), ("statuses", "in_progress")],
    )
    assert status == 200
    assert [job["id"] for job in body["data"]] == [pending.id, running.id]
    assert body["pagination"]["currentRequestPagination"]["parameters"] == {
        "statuses": ["pending", "in_progress"]
    }


async def test_list_filters_by_company(fake_pleo: FakePleo, session: aiohttp.ClientSession) -> None:
    """`company_id` keeps that company's jobs; an unknown company gets an empty list."""
    other_company = "11111111-1111-4111-8111-111111111111"
    fake_pleo.create_job(items=1)
    theirs = fake_pleo.create_job(items=1, company_id=other_company)
    _, body = await call(session, "GET", "/v3/export-jobs", params={"company_id": other_company})
    assert [job["id"] for job in body["data"]] == [theirs.id]
    _, body = await call(session, "GET", "/v3/export-jobs", params={"company_id": UNKNOWN_ID})
    assert body["data"] == []
    assert body["pagination"]["hasNextPage"] is False


async def test_list_pages_through_jobs(fake_pleo: FakePleo, session: aiohttp.ClientSession) -> None:
    """Jobs are cursor-paginated: limit 2 over 3 jobs gives 2 pages."""
    ids = [fake_pleo.create_job(items=1).id for _ in range(3)]
    _, first = await call(session, "GET", "/v3/export-jobs", params={"limit": "2"})
    assert first["pagination"]["hasNextPage"] is True
    after = first["pagination"]["endCursor"]
    _, second = await call(session, "GET", "/v3/export-jobs", params={"limit": "2", "after": after})
    assert second["pagination"]["hasNextPage"] is False
    assert [job["id"] for job in first["data"] + second["data"]] == ids


async def test_list_with_unknown_status_is_400(session: aiohttp.ClientSession) -> None:
    """An unknown `statuses` value gets 400 naming the parameter."""
    status, body = await call(session, "GET", "/v3/export-jobs", params={"statuses": "expired"})
    assert status == 400
    assert body["message"] == "statuses[0]: unknown value 'expired'"


@pytest.mark.fake_pleo(strict=True)
async def test_strict_list_refuses_singular_status(session: aiohttp.ClientSession) -> None:
    """Strict mode answers 400 to the singular `status`, which v3's job list does not have."""
    status, body = await call(session, "GET", "/v3/export-jobs", params={"status": "pending"})
    assert status == 400
    assert body["message"].startswith("status: unknown query parameter")


# ---- POST /v3/export-jobs -----------------------------------------------------------------


async def test_create_job_returns_201_pending_job(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """POST export-jobs creates a pending job with pending items and answers 201."""
    company = "22222222-2222-4222-8222-222222222222"
    entry_ids = ["33333333-3333-4333-8333-333333333333", "44444444-4444-4444-8444-444444444444"]
    status, body = await call(
        session,
        "POST",
        "/v3/export-jobs",
        json=_create_body(company, entry_ids, isInteractive=False),
    )
    assert status == 201
    job = body["data"]
    assert (job["status"], job["companyId"], job["numberOfItems"]) == ("pending", company, 2)
    assert job["isInteractive"] is False
    assert [item["status"] for item in fake_pleo.items(job["id"])] == ["pending", "pending"]


async def test_create_job_conflicts_while_company_has_open_job(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """409 EXPORT_ALREADY_IN_PROGRESS while the company has a pending or in_progress job."""
    for open_status in ("pending", "in_progress"):
        blocking_job = fake_pleo.create_job(items=1, status=open_status, company_id=UNKNOWN_ID)
        status, body = await call(
            session, "POST", "/v3/export-jobs", json=_create_body(UNKNOWN_ID, [])
        )
        assert status == 409
        assert body["type"] == "EXPORT_ALREADY_IN_PROGRESS"
        await post_event(session, blocking_job.id, "failed")
    status, _ = await call(session, "POST", "/v3/export-jobs", json=_create_body(UNKNOWN_ID, []))
    assert status == 201


async def test_pending_job_need_not_block_create() -> None:
    """With pending_blocks_create=False only an in_progress job blocks a new one."""
    async with FakePleo(pending_blocks_create=False) as fake, session_for(fake) as session:
        fake.create_job(items=1, status="pending")
        body = _create_body(fake.company_id, [])
        assert (await call(session, "POST", "/v3/export-jobs", json=body))[0] == 201


async def test_create_job_with_bad_body_is_400(session: aiohttp.ClientSession) -> None:
    """A CreateExportJob without companyId, or with a bad entry ID, gets 400."""
    status, body = await call(session, "POST", "/v3/export-jobs", json={"accountingEntryIds": []})
    assert (status, body["message"]) == (400, "companyId: required field missing")
    status, body = await call(
        session, "POST", "/v3/export-jobs", json=_create_body(UNKNOWN_ID, ["nope"])
    )
    assert (status, body["message"]) == (400, "accountingEntryIds[0]: not a UUID: 'nope'")


async def test_missing_contra_accounts_is_400() -> None:
    """With missing_contra_accounts set, creating a job gets 400 MISSING_CONTRA_ACCOUNTS."""
    async with FakePleo(missing_contra_accounts=True) as fake, session_for(fake) as session:
        status, body = await call(
            session, "POST", "/v3/export-jobs", json=_create_body(UNKNOWN_ID, [])
        )
        assert (status, body["type"]) == (400, "MISSING_CONTRA_ACCOUNTS")


# ---- POST /v3/export-job-events: the transition table --------------------------------------

ACCEPTED = [
    # (from, event, strict, resulting status)
    ("pending", "started", False, "in_progress"),
    ("pending", "started", True, "in_progress"),
    ("pending", "failed", False, "failed"),
    ("pending", "failed", True, "failed"),
    ("pending", "completed", False, "completed"),
    ("pending", "completed_with_errors", False, "completed_with_errors"),
    ("in_progress", "completed", False, "completed"),
    ("in_progress", "completed_with_errors", False, "completed_with_errors"),
    ("in_progress", "failed", False, "failed"),
    ("in_progress", "failed", True, "failed"),
]

REFUSED = [
    # (from, event, strict)
    ("pending", "completed", True),
    ("pending", "completed_with_errors", True),
    ("in_progress", "started", False),
    ("in_progress", "started", True),
    *(
        (terminal, event, strict)
        for terminal in ("failed", "completed", "completed_with_errors")
        for event in ("started", "completed", "completed_with_errors", "failed")
        for strict in (False, True)
    ),
]


@pytest.mark.parametrize(("from_status", "event", "strict", "to_status"), ACCEPTED)
async def test_accepted_transition(
    from_status: str, event: str, strict: bool, to_status: str
) -> None:
    """An allowed event answers 202 with an empty body and moves the job."""
    async with FakePleo(strict=strict) as fake, session_for(fake) as session:
        # No items: strict mode's "every item final" check is trivially met.
        job = fake.create_job(items=0, status=from_status)
        status, body = await post_event(session, job.id, event)
        assert (status, body) == (202, None)
        assert fake.job_status(job.id) == to_status
        assert len(fake.journal.final_events_applied(job.id)) == (event != "started")


@pytest.mark.parametrize(("from_status", "event", "strict"), REFUSED)
async def test_refused_transition(from_status: str, event: str, strict: bool) -> None:
    """A disallowed event gets 422 INVALID_EXPORT_JOB_STATUS_CHANGE and changes nothing."""
    async with FakePleo(strict=strict) as fake, session_for(fake) as session:
        job = fake.create_job(items=0, status=from_status)
        before = fake.job_payload(job.id)
        status, body = await post_event(session, job.id, event)
        assert status == 422
        assert body["type"] == "INVALID_EXPORT_JOB_STATUS_CHANGE"
        assert body["message"].startswith("Export Job status change failed")
        assert fake.job_payload(job.id) == before
        assert fake.journal.final_events_applied() == []


async def test_repeated_started_may_be_accepted() -> None:
    """With accept_repeated_started, `started` on an in_progress job is a 202 no-op."""
    async with FakePleo(accept_repeated_started=True) as fake, session_for(fake) as session:
        job = fake.create_job(items=0, status="in_progress")
        started_at = fake.job_payload(job.id)["startedAt"]
        fake.advance_clock(10)
        assert (await post_event(session, job.id, "started"))[0] == 202
        assert fake.job_payload(job.id)["startedAt"] == started_at
        assert fake.journal.events()[0].event_applied is False


async def test_started_sets_started_at_and_completed_sets_completed_at(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """`started` sets startedAt, `completed` sets completedAt, each refreshes lastUpdatedAt."""
    job = fake_pleo.create_job(items=0, status="pending")
    fake_pleo.advance_clock(60)
    await post_event(session, job.id, "started")
    payload = fake_pleo.job_payload(job.id)
    assert payload["startedAt"] == payload["lastUpdatedAt"] != payload["createdAt"]
    fake_pleo.advance_clock(60)
    await post_event(session, job.id, "completed")
    payload = fake_pleo.job_payload(job.id)
    assert payload["completedAt"] == payload["lastUpdatedAt"] != payload["startedAt"]


@pytest.mark.fake_pleo(strict=True)
async def test_strict_completion_needs_every_item_final(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """Strict: completing with pending items, or `completed` with failed items, gets 422."""
    job = fake_pleo.create_job(items=2)
    first, second = job.item_ids
    await put_items(session, job.id, [failed(first)])
    assert (await post_event(session, job.id, "completed_with_errors"))[0] == 422
    await put_items(session, job.id, [{"accountingEntryId": second, "status": "successful"}])
    assert (await post_event(session, job.id, "completed"))[0] == 422
    assert (await post_event(session, job.id, "completed_with_errors"))[0] == 202


@pytest.mark.fake_pleo(strict=True)
async def test_strict_completed_with_all_items_successful(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """Strict: `completed` is accepted once every item is successful."""
    job = fake_pleo.create_job(items=2)
    await put_items(
        session, job.id, [{"accountingEntryId": i, "status": "successful"} for i in job.item_ids]
    )
    assert (await post_event(session, job.id, "completed"))[0] == 202


async def test_failure_fields_stored_on_failed_and_completed_with_errors(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """failureReason/Type are stored for failed and completed_with_errors, not completed."""
    reason = {"failureReason": "ERP down", "failureReasonType": "service_unreachable"}
    outcomes = {}
    for event in ("failed", "completed_with_errors", "completed"):
        job = fake_pleo.create_job(items=0)
        assert (await post_event(session, job.id, event, **reason))[0] == 202
        payload = fake_pleo.job_payload(job.id)
        outcomes[event] = (payload.get("failureReason"), payload.get("failureReasonType"))
    assert outcomes == {
        "failed": ("ERP down", "service_unreachable"),
        "completed_with_errors": ("ERP down", "service_unreachable"),
        "completed": (None, None),
    }


async def test_failed_event_abandons_unfinished_items(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """A failed job's pending and in_progress items become abandoned; final ones stay."""
    job = fake_pleo.create_job(items=4)
    ok, bad, busy, untouched = job.item_ids
    await put_items(
        session,
        job.id,
        [
            {"accountingEntryId": ok, "status": "successful"},
            failed(bad),
            {"accountingEntryId": busy, "status": "in_progress"},
        ],
    )
    await post_event(session, job.id, "failed", failureReasonType="validation_failure")
    statuses = {item["accountingEntryId"]: item["status"] for item in fake_pleo.items(job.id)}
    assert statuses == {
        ok: "successful",
        bad: "failed",
        busy: "abandoned",
        untouched: "abandoned",
    }


@pytest.mark.parametrize("event", ["completed", "completed_with_errors"])
async def test_lenient_completion_abandons_unfinished_items(event: str) -> None:
    """Lenient: a job completed with items still pending or in progress abandons them."""
    async with FakePleo(strict=False) as fake, session_for(fake) as session:
        job = fake.create_job(items=3)
        ok, busy, untouched = job.item_ids
        await put_items(
            session,
            job.id,
            [
                {"accountingEntryId": ok, "status": "successful"},
                {"accountingEntryId": busy, "status": "in_progress"},
            ],
        )
        assert (await post_event(session, job.id, event))[0] == 202
        statuses = {item["accountingEntryId"]: item["status"] for item in fake.items(job.id)}
        assert statuses == {ok: "successful", busy: "abandoned", untouched: "abandoned"}


async def test_completing_with_unfinished_items_is_refused_by_default(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """By default completing with an item still pending gets 422 and abandons nothing."""
    job = fake_pleo.create_job(items=2)
    ok, untouched = job.item_ids
    await put_items(session, job.id, [{"accountingEntryId": ok, "status": "successful"}])
    status, body = await post_event(session, job.id, "completed")
    assert (status, body["type"]) == (422, "INVALID_EXPORT_JOB_STATUS_CHANGE")
    assert "1 item is neither successful nor failed" in body["message"]
    assert fake_pleo.item(job.id, untouched)["status"] == "pending"
    assert fake_pleo.job_status(job.id) == "in_progress"


async def test_event_for_unknown_job_is_404(session: aiohttp.ClientSession) -> None:
    """An event for an unknown job gets 404 EXPORT_NOT_FOUND."""
    status, body = await post_event(session, UNKNOWN_ID, "started")
    assert (status, body["type"]) == (404, "EXPORT_NOT_FOUND")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"event": "bogus", "jobId": UNKNOWN_ID}, "event: unknown value 'bogus'"),
        ({"event": "canceled", "jobId": UNKNOWN_ID}, "event: unknown value 'canceled'"),
        ({"jobId": UNKNOWN_ID}, "event: required field missing"),
        ({"event": "started", "jobId": "12345"}, "jobId: not a UUID: '12345'"),
        (
            {"event": "started", "exportJobId": UNKNOWN_ID},
            "jobId: required field missing (the field is jobId, not exportJobId)",
        ),
        (
            {"event": "failed", "jobId": UNKNOWN_ID, "failureReasonType": "bogus"},
            "failureReasonType: unknown value 'bogus'",
        ),
        (
            # An item-level value: not in the 15-value job-level enum
            # (docs/pleo-api.md#inconsistencies (row 4)).
            {
                "event": "failed",
                "jobId": UNKNOWN_ID,
                "failureReasonType": "accounting_system_validation_failure",
            },
            "failureReasonType: unknown value 'accounting_system_validation_failure'",
        ),
        ({"event": "failed", "jobId": UNKNOWN_ID, "failureReason": 7}, None),
        ([], "body: expected an object, got array"),
    ],
)
async def test_malformed_event_is_400(
    session: aiohttp.ClientSession, body: Any, message: str | None
) -> None:
    """A malformed CreateExportJobEvent gets 400 BAD_REQUEST naming the field."""
    status, answer = await call(session, "POST", "/v3/export-job-events", json=body)
    assert (status, answer["type"]) == (400, "BAD_REQUEST")
    if message is not None:
        assert answer["message"] == message


async def test_event_with_every_job_failure_reason_type_is_accepted(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """Each of the 15 job-level failure reason types is accepted on a failed event."""
    types = [
        "invalid_configuration",
        "missing_configuration",
        "authentication_failure",
        "accounting_system_authentication_failure",
        "pleo_rate_limit",
        "accounting_system_rate_limit",
        "service_unreachable",
        "accounting_system_unreachable",
        "validation_failure",
        "authorization_failure",
        "integration_unusable",
        "job_expired",
        "service_timeout",
        "accounting_system_timeout",
        "canceled_by_user",
    ]
    for failure_type in types:
        job = fake_pleo.create_job(items=0)
        status, _ = await post_event(session, job.id, "failed", failureReasonType=failure_type)
        assert status == 202, failure_type


# ---- expiry -------------------------------------------------------------------------------


FROZEN_NOW = datetime(2024, 5, 1, 9, 0, 0, tzinfo=UTC)


@pytest.mark.fake_pleo(clock=lambda: FROZEN_NOW)
async def test_job_expires_an_hour_after_its_last_update(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """A job untouched for 3600 s (injected clock) fails with job_expired; open items abandon."""
    job = fake_pleo.create_job(items=2)
    done, open_item = job.item_ids
    fake_pleo.advance_clock(600)
    await put_items(session, job.id, [{"accountingEntryId": done, "status": "successful"}])
    assert fake_pleo.job_payload(job.id)["lastUpdatedAt"] == "2024-05-01T09:10:00Z"
    fake_pleo.advance_clock(3599.9)
    assert fake_pleo.job_status(job.id) == "in_progress"
    fake_pleo.advance_clock(0.1)
    _, body = await call(session, "GET", f"/v3/export-jobs/{job.id}")
    data = body["data"]
    assert data["status"] == "failed"
    assert data["failureReasonType"] == "job_expired"
    assert data["expiredAt"] == "2024-05-01T10:10:00Z"
    assert fake_pleo.item(job.id, done)["status"] == "successful"
    assert fake_pleo.item(job.id, open_item)["status"] == "abandoned"
    status, body = await put_items(session, job.id, [failed(open_item)])
    assert (status, body["type"]) == (422, "EXPORT_JOB_STATUS_UNPROCESSABLE")


async def test_pending_job_expires_too(fake_pleo: FakePleo) -> None:
    """A pending job never started also expires an hour after creation."""
    job = fake_pleo.create_job(items=1, status="pending")
    fake_pleo.advance_clock(3600)
    assert fake_pleo.job_status(job.id) == "failed"
    assert fake_pleo.job_payload(job.id)["failureReasonType"] == "job_expired"


async def test_updates_and_events_postpone_expiry(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """Each PUT and event refreshes lastUpdatedAt, so an active job does not expire."""
    job = fake_pleo.create_job(items=2, status="pending")
    fake_pleo.advance_clock(3000)
    await post_event(session, job.id, "started")
    fake_pleo.advance_clock(3000)
    first, second = job.item_ids
    await put_items(
        session, job.id, [failed(first), {"accountingEntryId": second, "status": "successful"}]
    )
    fake_pleo.advance_clock(3000)
    assert fake_pleo.job_status(job.id) == "in_progress"
    assert (await post_event(session, job.id, "completed_with_errors"))[0] == 202


async def test_reads_do_not_postpone_expiry(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """GETs do not count as updates: the job still expires on time."""
    job = fake_pleo.create_job(items=1)
    fake_pleo.advance_clock(3000)
    await call(session, "GET", f"/v3/export-jobs/{job.id}")
    await call(session, "GET", f"/v3/export-jobs/{job.id}/items")
    fake_pleo.advance_clock(600)
    assert fake_pleo.job_status(job.id) == "failed"


async def test_expired_job_refuses_events(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """A final event on an expired job gets 422 INVALID_EXPORT_JOB_STATUS_CHANGE."""
    job = fake_pleo.create_job(items=1)
    fake_pleo.advance_clock(7200)
    status, body = await post_event(session, job.id, "completed")
    assert (status, body["type"]) == (422, "INVALID_EXPORT_JOB_STATUS_CHANGE")
