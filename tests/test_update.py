"""JobRun.update() against the fake Pleo server over TCP: batches, acknowledgement, retries."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator

import pytest

from helpers import (
    IN_FLIGHT_GRACE,
    client_for,
    mixed_updates,
    put_bodies,
    successful_updates,
)
from pleo_export_async import (
    ApiError,
    ConflictingUpdates,
    InvalidInput,
    ItemStatus,
    ItemUpdate,
    JobFinished,
    JobNotFound,
    PermissionDenied,
    Progress,
    RetryPolicy,
)
from pleo_export_async.testing import FakePleo, Faults, FaultSpec

pytestmark = pytest.mark.usefixtures("instant")


async def test_batches_hold_at_most_batch_size_items_and_no_id_twice(fake: FakePleo) -> None:
    """Every PUT carries at most batch_size items, never the same ID twice, and all are sent."""
    job = fake.create_job(items=50)
    async with client_for(fake, batch_size=7) as client:
        report = await client.job(job.id).update(successful_updates(job.item_ids))
    bodies = put_bodies(fake, job.id)
    assert len(bodies) == math.ceil(50 / 7)
    for body in bodies:
        ids = [item["accountingEntryId"] for item in body]
        assert len(ids) <= 7
        assert len(ids) == len(set(ids))
    assert set(report.acknowledged) == set(job.item_ids)
    assert report.requests == len(bodies)


async def test_updates_arrive_with_their_fields(fake: FakePleo) -> None:
    """Pleo ends up holding each item's status, external ID, URL and failure reason as sent."""
    job = fake.create_job(items=20)
    updates = mixed_updates(job, failed_every=4)
    async with client_for(fake) as client:
        await client.job(job.id).update(updates)
    for update in updates:
        item = fake.item(job.id, update.accounting_entry_id)
        assert item["status"] == update.status.value
        assert item.get("externalId") == update.external_id
        assert item.get("failureReason") == update.failure_reason
        expected_type = update.failure_reason_type.value if update.failure_reason_type else None
        assert item.get("failureReasonType") == expected_type


async def test_partial_acknowledgement_resends_only_the_missing_ids(fake: FakePleo) -> None:
    """IDs a 200 leaves out of `data` are sent again; the acknowledged ones never are."""
    fake.faults = Faults(partial_ack=FaultSpec(at={1}), partial_ack_fraction=0.3)
    job = fake.create_job(items=100)
    async with client_for(fake) as client:
        report = await client.job(job.id).update(successful_updates(job.item_ids))
    first, second = fake.journal.puts(job.id)
    left_out = {item["accountingEntryId"] for item in first.body} - set(first.acknowledged_ids)
    assert len(left_out) == 30
    assert {item["accountingEntryId"] for item in second.body} == left_out
    assert report.items_resent == 30
    assert set(report.acknowledged) == set(job.item_ids)
    assert fake.journal.resent_after_ack() == {}


async def test_server_errors_are_retried_without_resending_acknowledged_updates(
    fake: FakePleo,
) -> None:
    """503s are retried with backoff, counted by cause, and nothing is acknowledged twice."""
    fake.faults = Faults(server_error=FaultSpec(at={1, 2, 5}))
    job = fake.create_job(items=300)
    async with client_for(fake, max_concurrency=2) as client:
        report = await client.job(job.id).update(successful_updates(job.item_ids))
    assert report.retries == 3
    assert report.retries_by_cause == {"http_503": 3}
    assert set(report.acknowledged) == set(job.item_ids)
    assert fake.journal.resent_after_ack() == {}


async def test_lost_response_after_commit_is_resent_and_then_acknowledged(fake: FakePleo) -> None:
    """A response lost after Pleo committed is retried; no resend follows a delivered ack."""
    fake.faults = Faults(lost_response=FaultSpec(at={1}))
    job = fake.create_job(items=10)
    async with client_for(fake) as client:
        report = await client.job(job.id).update(successful_updates(job.item_ids))
    history = fake.journal.item_history(job.item_ids[0])
    assert [(send.committed, send.delivered) for send in history] == [(True, False), (True, True)]
    assert report.retries_by_cause == {"connection_error": 1}
    assert fake.journal.resent_after_ack() == {}


@pytest.mark.parametrize("http_date", [False, True])
async def test_retry_after_pauses_every_sender_of_the_client(
    fake: FakePleo, http_date: bool
) -> None:
    """After a 429 with Retry-After, no request of the client reaches Pleo before it expires."""
    fake.faults = Faults(
        rate_limit=FaultSpec(at={3}),
        retry_after=1.0 if http_date else 0.4,
        retry_after_http_date=http_date,
        latency=0.02,
    )
    first_job, second_job = fake.create_job(items=400), fake.create_job(items=400)
    async with client_for(fake, max_concurrency=4) as client:
        reports = await asyncio.gather(
            client.job(first_job.id).update(successful_updates(first_job.item_ids)),
            client.job(second_job.id).update(successful_updates(second_job.item_ids)),
        )
    assert sum(report.retries_by_cause.get("http_429", 0) for report in reports) == 1
    assert fake.journal.requests_during_pause(epsilon=IN_FLIGHT_GRACE) == []
    assert len(fake.journal.requests_during_pause(epsilon=0.0)) <= 4 - 1
    pause_end = max(window.end for window in fake.journal.pause_windows)
    assert any(entry.received_at >= pause_end for entry in fake.journal.requests)
    assert fake.journal.resent_after_ack() == {}


async def test_transient_item_errors_are_sent_again(fake: FakePleo) -> None:
    """Items refused with EXPORT_ENTRY_STATUS_UPDATE_FAILED are retried and then acknowledged."""
    fake.faults = Faults(item_error=FaultSpec(at={1}))
    job = fake.create_job(items=10)
    async with client_for(fake) as client:
        report = await client.job(job.id).update(successful_updates(job.item_ids))
    assert len(fake.journal.puts(job.id)) == 2
    assert set(report.acknowledged) == set(job.item_ids)
    assert report.items_resent == 10


async def test_transient_item_errors_become_rejections_when_the_budget_is_spent(
    fake: FakePleo,
) -> None:
    """An item that keeps failing transiently is rejected after max_attempts sends."""
    fake.faults = Faults(item_error=FaultSpec(probability=1.0))
    job = fake.create_job(items=3)
    async with client_for(fake, retry=RetryPolicy(max_attempts=3, initial_delay=0.01)) as client:
        report = await client.job(job.id).update(successful_updates(job.item_ids))
    assert len(fake.journal.puts(job.id)) == 3
    assert set(report.rejected) == set(job.item_ids)
    assert {r.error_type for r in report.rejected.values()} == {"EXPORT_ENTRY_STATUS_UPDATE_FAILED"}


async def test_permanent_item_errors_are_rejected_at_once(fake: FakePleo) -> None:
    """An ID Pleo does not know is rejected with Pleo's type and message, and sent only once."""
    job = fake.create_job(items=5)
    stranger = "00000000-0000-4000-8000-000000000001"
    updates = [*successful_updates(job.item_ids), ItemUpdate.successful(stranger)]
    async with client_for(fake) as client:
        report = await client.job(job.id).update(updates)
    assert len(fake.journal.puts(job.id)) == 1
    assert report.rejected[stranger].error_type == "ACCOUNTING_ENTRY_DOES_NOT_EXIST"
    assert report.rejected[stranger].message
    assert set(report.acknowledged) == set(job.item_ids)


async def test_acknowledged_updates_are_skipped_on_a_later_call(fake: FakePleo) -> None:
    """Sending the same updates again makes no request and reports them as skipped."""
    job = fake.create_job(items=30)
    updates = successful_updates(job.item_ids)
    async with client_for(fake) as client:
        run = client.job(job.id)
        await run.update(updates)
        again = await run.update(updates)
        other_run = await client.job(job.id).update(updates[:5])
    assert len(fake.journal.puts(job.id)) == 1
    assert again.skipped == frozenset(job.item_ids)
    assert again.requests == 0
    assert other_run.skipped == frozenset(job.item_ids[:5])


async def test_a_failed_item_may_be_superseded_but_a_successful_one_may_not(
    fake: FakePleo,
) -> None:
    """A later successful update replaces an acknowledged failure; a successful item is final."""
    job = fake.create_job(items=2)
    failed_id, done_id = job.item_ids
    async with client_for(fake) as client:
        run = client.job(job.id)
        await run.update(
            [
                ItemUpdate.failed(
                    failed_id, reason="Tax code T9 missing", reason_type="tax_code_unknown"
                ),
                ItemUpdate.successful(done_id, external_id="JE-1"),
            ]
        )
        report = await run.update(
            [
                ItemUpdate.successful(failed_id, external_id="JE-2"),
                ItemUpdate.failed(done_id, reason="late", reason_type="unexpected_failure"),
            ]
        )
    assert report.acknowledged == {failed_id: ItemStatus.SUCCESSFUL}
    assert report.skipped == frozenset({done_id})
    assert fake.item(job.id, failed_id)["status"] == "successful"
    assert fake.item(job.id, done_id)["externalId"] == "JE-1"


async def test_conflicting_duplicates_raise_before_any_request(fake: FakePleo) -> None:
    """Two different updates for one ID in a list raise ConflictingUpdates and send nothing."""
    job = fake.create_job(items=3)
    entry_id = job.item_ids[0]
    updates = [
        *successful_updates(job.item_ids),
        ItemUpdate.failed(entry_id, reason="x", reason_type="unexpected_failure"),
    ]
    async with client_for(fake) as client:
        with pytest.raises(ConflictingUpdates) as raised:
            await client.job(job.id).update(updates)
    assert entry_id in str(raised.value)
    assert fake.journal.count(method="PUT") == 0


async def test_identical_duplicates_collapse_into_one_send(fake: FakePleo) -> None:
    """The same update twice in one call is sent once."""
    job = fake.create_job(items=3)
    updates = successful_updates(job.item_ids)
    async with client_for(fake) as client:
        report = await client.job(job.id).update(updates + updates)
    (body,) = put_bodies(fake, job.id)
    assert len(body) == 3
    assert set(report.acknowledged) == set(job.item_ids)


async def test_an_element_that_is_not_an_item_update_raises_before_any_request(
    fake: FakePleo,
) -> None:
    """A stray dict in the input is named by its position, and nothing is sent."""
    job = fake.create_job(items=2)
    updates: list[object] = [*successful_updates(job.item_ids), {"status": "successful"}]
    async with client_for(fake) as client:
        with pytest.raises(InvalidInput) as raised:
            await client.job(job.id).update(updates)  # type: ignore[arg-type]
    assert raised.value.field == "updates[2]"
    assert fake.journal.count(method="PUT") == 0


async def test_a_conflict_in_a_stream_stops_after_settling_what_is_in_flight(
    fake: FakePleo,
) -> None:
    """A conflict found mid-stream raises after in-flight batches settle; their acks are kept."""
    job = fake.create_job(items=300)
    updates = successful_updates(job.item_ids)

    async def stream() -> AsyncIterator[ItemUpdate]:
        for update in updates:
            yield update
        yield ItemUpdate.failed(job.item_ids[0], reason="x", reason_type="unexpected_failure")

    async with client_for(fake, max_concurrency=2) as client:
        run = client.job(job.id)
        with pytest.raises(ConflictingUpdates) as raised:
            await run.update(stream())
        assert raised.value.report is not None
        settled = raised.value.report.acknowledged
        assert settled
        again = await run.update(updates)
    assert set(again.skipped) == set(settled)
    assert fake.journal.resent_after_ack() == {}


async def test_requests_in_flight_never_exceed_max_concurrency_across_jobs(
    fake: FakePleo,
) -> None:
    """Two jobs on one client share its limit: at most max_concurrency requests at once."""
    fake.faults = Faults(latency=0.03)
    jobs = [fake.create_job(items=600) for _ in range(2)]
    async with client_for(fake, max_concurrency=3) as client:
        await asyncio.gather(
            *(client.job(job.id).update(successful_updates(job.item_ids)) for job in jobs)
        )
    assert fake.journal.max_in_flight == 3


async def test_input_is_pulled_lazily(fake: FakePleo) -> None:
    """A stream is read only as fast as batches go out: never more than one batch per worker
    ahead of what Pleo has acknowledged."""
    fake.faults = Faults(latency=0.01)
    job = fake.create_job(items=2000)
    acknowledged = 0
    most_ahead = 0

    def on_progress(progress: Progress) -> None:
        nonlocal acknowledged
        acknowledged = progress.acknowledged

    async def stream() -> AsyncIterator[ItemUpdate]:
        nonlocal most_ahead
        for pulled, update in enumerate(successful_updates(job.item_ids)):
            most_ahead = max(most_ahead, pulled - acknowledged)
            yield update

    async with client_for(fake, max_concurrency=4, batch_size=50) as client:
        report = await client.job(job.id).update(stream(), on_progress=on_progress)
    assert len(report.acknowledged) == 2000
    assert most_ahead <= 4 * 50 + 50


async def test_unknown_job_raises_job_not_found(fake: FakePleo) -> None:
    """A PUT for a job Pleo does not know raises JobNotFound with the report attached."""
    async with client_for(fake) as client:
        run = client.job("00000000-0000-4000-8000-00000000abcd")
        with pytest.raises(JobNotFound) as raised:
            await run.update([ItemUpdate.successful("00000000-0000-4000-8000-000000000002")])
    assert raised.value.status == 404
    assert raised.value.report is not None
    assert raised.value.report.unacknowledged


async def test_a_finished_job_raises_job_finished_and_later_calls_send_nothing(
    fake: FakePleo,
) -> None:
    """422 EXPORT_JOB_STATUS_UNPROCESSABLE raises JobFinished; the JobRun then stays final."""
    job = fake.create_job(items=4, status="completed")
    async with client_for(fake) as client:
        run = client.job(job.id)
        with pytest.raises(JobFinished):
            await run.update(successful_updates(job.item_ids))
        sent = fake.journal.count(method="PUT")
        with pytest.raises(JobFinished):
            await run.update(successful_updates(job.item_ids))
    assert sent == 1
    assert fake.journal.count(method="PUT") == 1


async def test_server_errors_beyond_the_budget_raise_with_the_report(fake: FakePleo) -> None:
    """When 503 persists past max_attempts, update() raises ApiError carrying the report."""
    fake.faults = Faults(server_error=FaultSpec(probability=1.0))
    job = fake.create_job(items=5)
    async with client_for(fake, retry=RetryPolicy(max_attempts=3, initial_delay=0.01)) as client:
        with pytest.raises(ApiError) as raised:
            await client.job(job.id).update(successful_updates(job.item_ids))
    assert raised.value.status == 503
    assert raised.value.attempts == 3
    assert fake.journal.count(method="PUT") == 3
    assert raised.value.report is not None
    assert set(raised.value.report.unacknowledged) == set(job.item_ids)


async def test_progress_is_reported_after_each_batch(fake: FakePleo) -> None:
    """The progress callback sees acknowledged counts grow to the total, once per batch."""
    job = fake.create_job(items=250)
    seen: list[Progress] = []
    async with client_for(fake, max_concurrency=1) as client:
        await client.job(job.id).update(successful_updates(job.item_ids), on_progress=seen.append)
    assert [progress.acknowledged for progress in seen] == [100, 200, 250]
    assert seen[-1].requests == 3


async def test_log_records_carry_context_and_no_credential(
    fake: FakePleo, caplog: pytest.LogCaptureFixture
) -> None:
    """Retry warnings name job, batch size, attempt, status and wait, and never the API key."""
    fake.faults = Faults(server_error=FaultSpec(at={1}))
    job = fake.create_job(items=3)
    caplog.set_level(logging.DEBUG, logger="pleo_export_async")
    async with client_for(fake) as client:
        await client.job(job.id).update(successful_updates(job.item_ids))
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.job_id == job.id  # type: ignore[attr-defined]
    assert record.batch_size == 3  # type: ignore[attr-defined]
    assert record.attempt == 1  # type: ignore[attr-defined]
    assert record.status == "http_503"  # type: ignore[attr-defined]
    assert record.wait >= 0  # type: ignore[attr-defined]
    header = fake.auth_headers()["Authorization"].split()[-1]
    for logged in caplog.records:
        assert fake.api_key not in logged.getMessage()
        assert header not in logged.getMessage()


async def test_a_413_halves_the_batches_and_sends_every_item() -> None:
    """When Pleo's item limit is below the batch size, batches are split until they fit."""
    async with FakePleo(seed=5, max_items_per_update=30) as fake:
        job = fake.create_job(items=200)
        async with client_for(fake, max_concurrency=2) as client:
            report = await client.job(job.id).update(successful_updates(job.item_ids))
        accepted = [entry for entry in fake.journal.puts(job.id) if entry.status == 200]
        refused = [entry for entry in fake.journal.puts(job.id) if entry.status == 413]
    assert refused
    assert all(len(entry.body) <= 30 for entry in accepted)
    assert set(report.acknowledged) == set(job.item_ids)
    assert fake.journal.resent_after_ack() == {}


async def test_a_403_raises_at_once(fake: FakePleo) -> None:
    """403 raises PermissionDenied after a single request: it is never retried."""
    fake.faults = Faults(forbidden=FaultSpec(probability=1.0))
    job = fake.create_job(items=3)
    async with client_for(fake) as client:
        with pytest.raises(PermissionDenied) as raised:
            await client.job(job.id).update(successful_updates(job.item_ids))
    assert raised.value.status == 403
    assert raised.value.error_type == "FORBIDDEN"
    assert fake.journal.count(method="PUT") == 1


async def test_two_runs_of_one_job_sharing_a_ledger_take_turns(fake: FakePleo) -> None:
    """Two JobRuns of one job on one ledger, given the same updates at once, send each update
    once: the second finds them acknowledged and skips them."""
    job = fake.create_job(items=500)
    updates = successful_updates(job.item_ids)
    async with client_for(fake, max_concurrency=4) as client:
        first, second = await asyncio.gather(
            client.job(job.id).update(updates), client.job(job.id).update(updates)
        )
    sent = [item["accountingEntryId"] for body in put_bodies(fake, job.id) for item in body]
    assert sorted(sent) == sorted(job.item_ids)
    assert fake.journal.resent_after_ack() == {}
    assert {len(first.acknowledged), len(second.acknowledged)} == {500, 0}
    assert {len(first.skipped), len(second.skipped)} == {0, 500}


async def test_an_input_that_fails_mid_stream_raises_its_own_error_with_the_report(
    fake: FakePleo,
) -> None:
    """When the input raises (the ERP connection drops), update() settles what is in flight and
    raises the input's own exception, carrying the report of what was acknowledged."""
    job = fake.create_job(items=1000)
    updates = successful_updates(job.item_ids)

    async def stream() -> AsyncIterator[ItemUpdate]:
        for update in updates[:550]:
            yield update
        raise ConnectionResetError("ERP connection dropped")

    async with client_for(fake, max_concurrency=2) as client:
        run = client.job(job.id)
        with pytest.raises(ConnectionResetError, match="ERP connection dropped") as raised:
            await run.update(stream())
        report = raised.value.report  # type: ignore[attr-defined]
        assert len(report.acknowledged) >= 500
        assert set(report.acknowledged) | set(report.unacknowledged) == set(job.item_ids[:550])
        again = await run.update(updates)
    assert set(again.skipped) == set(report.acknowledged)
    assert set(again.acknowledged) == set(job.item_ids) - set(report.acknowledged)
    assert fake.journal.resent_after_ack() == {}


async def test_the_report_is_a_view_that_reads_like_a_mapping(fake: FakePleo) -> None:
    """`acknowledged` and `skipped` read like a mapping and a set, and their repr stays short."""
    job = fake.create_job(items=250)
    updates = mixed_updates(job, failed_every=5)
    async with client_for(fake) as client:
        run = client.job(job.id)
        report = await run.update(updates)
        again = await run.update(updates[:10])
    expected = {update.accounting_entry_id: update.status for update in updates}
    assert report.acknowledged == expected
    assert dict(report.acknowledged.items()) == expected
    assert len(report.acknowledged) == 250
    assert report.acknowledged[job.item_ids[4]] is ItemStatus.FAILED
    assert "00000000-0000-4000-8000-000000000000" not in report.acknowledged
    assert again.skipped == frozenset(job.item_ids[:10])
    assert job.item_ids[0] in again.skipped
    assert len(repr(report)) < 1000
