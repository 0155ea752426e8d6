"""JobRun.complete(), fail() and start() against the fake server: the final event, exactly once."""

from __future__ import annotations

import asyncio

import attrs
import pytest

from helpers import (
    client_for,
    mixed_updates,
    successful_updates,
    update_with_the_last_refused,
    wait_until,
)
from pleo_export_async import (
    IncompleteJob,
    InvalidInput,
    ItemUpdate,
    JobEvent,
    JobFailureReasonType,
    JobFinished,
    RetryPolicy,
)
from pleo_export_async.testing import FakePleo, Faults, FaultSpec

pytestmark = pytest.mark.usefixtures("instant")


async def test_all_successful_sends_completed(fake: FakePleo) -> None:
    """A job whose items all succeeded is closed with `completed` and no failure reason."""
    job = fake.create_job(items=120)
    async with client_for(fake) as client:
        run = client.job(job.id)
        await run.update(successful_updates(job.item_ids))
        outcome = await run.complete()
    assert outcome.event is JobEvent.COMPLETED
    assert (outcome.successful, outcome.failed, outcome.rejected) == (120, 0, 0)
    (event,) = fake.journal.final_events_applied(job.id)
    assert event.body == {"event": "completed", "jobId": job.id}
    assert fake.job_status(job.id) == "completed"


async def test_some_failed_sends_completed_with_errors_with_counts(fake: FakePleo) -> None:
    """Successes mixed with failures close the job as completed_with_errors, counts stated."""
    job = fake.create_job(items=50)
    async with client_for(fake) as client:
        run = client.job(job.id)
        await run.update(mixed_updates(job, failed_every=10))
        outcome = await run.complete()
    assert outcome.event is JobEvent.COMPLETED_WITH_ERRORS
    assert (outcome.successful, outcome.failed) == (45, 5)
    assert outcome.failure_reason is not None
    assert "5 of 50" in outcome.failure_reason
    # vendor_unknown exists only at item level: the job-level type falls back.
    assert outcome.failure_reason_type is JobFailureReasonType.VALIDATION_FAILURE
    assert fake.job_payload(job.id)["status"] == "completed_with_errors"


async def test_rejected_items_count_as_errors() -> None:
    """An item of the job that Pleo rejected makes an otherwise successful job
    completed_with_errors."""
    # Not strict: a strict fake refuses any completion while the rejected item is still pending.
    async with FakePleo(seed=7, strict=False) as fake:
        job = fake.create_job(items=4)
        updates = successful_updates(job.item_ids)
        async with client_for(fake) as client:
            run = client.job(job.id)
            report = await update_with_the_last_refused(fake, run, updates, "ITEM_LOCKED")
            outcome = await run.complete()
        (event,) = fake.journal.final_events_applied(job.id)
    assert set(report.rejected) == {job.item_ids[3]}
    assert outcome.event is JobEvent.COMPLETED_WITH_ERRORS
    assert (outcome.successful, outcome.failed, outcome.rejected) == (3, 0, 1)
    assert event.body["event"] == "completed_with_errors"
    assert "1 of 4 items" in event.body["failureReason"]


async def test_nothing_successful_sends_failed_with_a_job_level_type(fake: FakePleo) -> None:
    """A job with no success fails, typed from its items' most common job-level type."""
    job = fake.create_job(items=6)
    updates = [
        ItemUpdate.failed(
            entry_id,
            reason="Journal J1 missing: provide journal J1 in the configurations",
            reason_type="missing_configuration" if index < 4 else "vendor_unknown",
        )
        for index, entry_id in enumerate(job.item_ids)
    ]
    async with client_for(fake) as client:
        run = client.job(job.id)
        await run.update(updates)
        outcome = await run.complete()
    assert outcome.event is JobEvent.FAILED
    assert outcome.failure_reason_type is JobFailureReasonType.MISSING_CONFIGURATION
    payload = fake.job_payload(job.id)
    assert payload["status"] == "failed"
    assert payload["failureReasonType"] == "missing_configuration"
    assert "6" in payload["failureReason"]


async def test_unacknowledged_items_block_completion_and_nothing_is_sent(fake: FakePleo) -> None:
    """complete() refuses, listing the unacknowledged IDs, while any item lacks an ack."""
    fake.faults = Faults(partial_ack=FaultSpec(probability=1.0), partial_ack_fraction=0.5)
    job = fake.create_job(items=8)
    async with client_for(fake, retry=RetryPolicy(max_attempts=2, initial_delay=0.01)) as client:
        run = client.job(job.id)
        report = await run.update(successful_updates(job.item_ids))
        assert report.unacknowledged
        with pytest.raises(IncompleteJob) as raised:
            await run.complete()
        assert raised.value.unacknowledged == frozenset(report.unacknowledged)
        assert fake.journal.events(job.id) == []
        fake.faults = Faults()
        retry = await run.update(successful_updates(job.item_ids))
        assert set(retry.acknowledged) == set(report.unacknowledged)
        outcome = await run.complete()
    assert outcome.event is JobEvent.COMPLETED
    assert fake.journal.resent_after_ack() == {}


async def test_a_lost_event_response_is_reconciled_by_reading_the_job(fake: FakePleo) -> None:
    """If the event landed but its answer was lost, the retry's 422 plus a read count it as
    delivered, and exactly one final event is applied."""
    job = fake.create_job(items=3)
    async with client_for(fake) as client:
        run = client.job(job.id)
        await run.update(successful_updates(job.item_ids))
        first_event = len(fake.journal.requests) + 1
        fake.faults = Faults(lost_event_response=FaultSpec(at={first_event}))
        outcome = await run.complete()
    assert outcome.event is JobEvent.COMPLETED
    assert outcome.already_delivered
    assert len(fake.journal.final_events_applied(job.id)) == 1
    assert len(fake.journal.events(job.id)) == 2


async def test_complete_twice_returns_the_same_outcome_without_a_request(fake: FakePleo) -> None:
    """A second complete() returns the first outcome and sends nothing."""
    job = fake.create_job(items=3)
    async with client_for(fake) as client:
        run = client.job(job.id)
        await run.update(successful_updates(job.item_ids))
        first = await run.complete()
        requests = len(fake.journal.requests)
        second = await run.complete()
    assert second == first
    assert len(fake.journal.requests) == requests


async def test_concurrent_completes_send_one_event(fake: FakePleo) -> None:
    """Several tasks calling complete() at once still close the job once."""
    fake.faults = Faults(latency=0.02)
    job = fake.create_job(items=3)
    async with client_for(fake) as client:
        run = client.job(job.id)
        await run.update(successful_updates(job.item_ids))
        outcomes = await asyncio.gather(*(run.complete() for _ in range(5)))
    assert len(set(outcomes)) == 1
    assert len(fake.journal.events(job.id)) == 1


async def test_complete_waits_for_a_running_update(fake: FakePleo) -> None:
    """complete() called while update() runs waits for it, then closes the job after the
    last acknowledgement."""
    fake.faults = Faults(latency=0.02)
    job = fake.create_job(items=500)
    async with client_for(fake, max_concurrency=2) as client:
        run = client.job(job.id)
        updating = asyncio.create_task(run.update(successful_updates(job.item_ids)))
        await asyncio.sleep(0.01)
        outcome = await run.complete()
        await updating
    assert outcome.successful == 500
    (event,) = fake.journal.final_events_applied(job.id)
    last_put = max(entry.answered_at or 0 for entry in fake.journal.puts(job.id))
    assert event.received_at >= last_put


async def test_update_after_the_event_raises_without_a_request(fake: FakePleo) -> None:
    """Once the job is closed, update() raises JobFinished and sends nothing."""
    job = fake.create_job(items=2)
    async with client_for(fake) as client:
        run = client.job(job.id)
        await run.update(successful_updates(job.item_ids))
        await run.complete()
        requests = len(fake.journal.requests)
        with pytest.raises(JobFinished):
            await run.update(successful_updates(job.item_ids))
    assert len(fake.journal.requests) == requests


async def test_the_caller_can_choose_the_event_and_reason(fake: FakePleo) -> None:
    """complete(event=..., failure_reason=..., failure_reason_type=...) sends what was asked."""
    job = fake.create_job(items=2)
    async with client_for(fake) as client:
        run = client.job(job.id)
        await run.update(successful_updates(job.item_ids))
        outcome = await run.complete(
            event="completed_with_errors",
            failure_reason="Attachments could not be uploaded",
            failure_reason_type="accounting_system_unreachable",
        )
    assert outcome.event is JobEvent.COMPLETED_WITH_ERRORS
    (event,) = fake.journal.final_events_applied(job.id)
    assert event.body["failureReasonType"] == "accounting_system_unreachable"
    assert event.body["failureReason"] == "Attachments could not be uploaded"


async def test_bad_overrides_raise_before_any_request(fake: FakePleo) -> None:
    """An item-only failure type or a non-final event is refused before anything is sent."""
    job = fake.create_job(items=1)
    async with client_for(fake) as client:
        run = client.job(job.id)
        with pytest.raises(InvalidInput) as raised:
            await run.complete(failure_reason_type="accounting_system_validation_failure")
        assert raised.value.field == "failure_reason_type"
        with pytest.raises(InvalidInput):
            await run.complete(event="started")
        with pytest.raises(InvalidInput):
            await run.fail("", "validation_failure")
    assert fake.journal.requests == []


async def test_fail_closes_the_job_whatever_the_items(fake: FakePleo) -> None:
    """fail() sends `failed` with the caller's reason even with nothing acknowledged."""
    job = fake.create_job(items=5)
    async with client_for(fake) as client:
        outcome = await client.job(job.id).fail(
            "Failed to reach the Accounting System.", "accounting_system_unreachable"
        )
    assert outcome.event is JobEvent.FAILED
    payload = fake.job_payload(job.id)
    assert payload["status"] == "failed"
    assert payload["failureReasonType"] == "accounting_system_unreachable"
    assert {item["status"] for item in fake.items(job.id)} == {"abandoned"}


async def test_nothing_to_complete_raises_unless_the_event_is_given(fake: FakePleo) -> None:
    """complete() with no item settled refuses; with an explicit event it closes the job."""
    job = fake.create_job(items=0)
    async with client_for(fake) as client:
        run = client.job(job.id)
        with pytest.raises(IncompleteJob):
            await run.complete()
        outcome = await run.complete(event=JobEvent.COMPLETED)
    assert outcome.event is JobEvent.COMPLETED
    assert len(fake.journal.final_events_applied(job.id)) == 1


async def test_cancelling_update_sends_no_event_and_loses_no_acknowledgement(
    fake: FakePleo,
) -> None:
    """A cancelled update() re-raises CancelledError, sends no event; a later call finishes
    the rest without resending anything acknowledged."""
    fake.faults = Faults(latency=0.02)
    job = fake.create_job(items=2000)
    updates = successful_updates(job.item_ids)
    async with client_for(fake, max_concurrency=4) as client:
        run = client.job(job.id)
        task = asyncio.create_task(run.update(updates))
        await wait_until(lambda: len(fake.journal.puts(job.id)) >= 6)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert fake.journal.events(job.id) == []
        assert fake.job_status(job.id) == "in_progress"
        report = await run.update(updates)
        assert report.skipped
        outcome = await run.complete()
    assert outcome.event is JobEvent.COMPLETED
    assert fake.journal.resent_after_ack() == {}
    assert len(fake.journal.final_events_applied(job.id)) == 1


async def test_cancelling_complete_mid_flight_then_completing_sends_one_event(
    fake: FakePleo,
) -> None:
    """A complete() cancelled while its event is in flight never turns into `failed`; the next
    complete() reads the job first and the event is applied once."""
    job = fake.create_job(items=3)
    async with client_for(fake) as client:
        run = client.job(job.id)
        await run.update(successful_updates(job.item_ids))
        fake.faults = Faults(latency=0.2)
        task = asyncio.create_task(run.complete())
        await wait_until(lambda: bool(fake.journal.events(job.id)))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        fake.faults = Faults()
        await asyncio.sleep(0.3)  # the server finishes applying the event it received
        outcome = await run.complete()
    assert outcome.event is JobEvent.COMPLETED
    assert outcome.already_delivered
    assert [e.body["event"] for e in fake.journal.final_events_applied(job.id)] == ["completed"]


async def test_start_moves_a_pending_job_in_progress_and_accepts_a_resumed_one(
    fake: FakePleo,
) -> None:
    """start() sends `started` once; on a job already in progress it resumes without error."""
    job = fake.create_job(items=1, status="pending")
    async with client_for(fake) as client:
        first = await client.job(job.id).start()
        again = await client.job(job.id).start()
    assert first.status == again.status == "in_progress"
    assert [entry.status for entry in fake.journal.events(job.id)] == [202, 422]


async def test_items_pages_through_every_item(fake: FakePleo) -> None:
    """items() walks every page of the job's items."""
    job = fake.create_job(items=230)
    async with client_for(fake) as client:
        seen = [item.accounting_entry_id async for item in client.job(job.id).items()]
    assert sorted(seen) == sorted(job.item_ids)
    assert fake.journal.count(method="GET") == 3


async def test_a_closed_job_keeps_its_outcome_but_no_per_item_state(fake: FakePleo) -> None:
    """Once the final event is delivered the ledger forgets the job's items and keeps the
    outcome: a new JobRun's update() raises JobFinished and complete() returns the outcome
    marked already_delivered, neither sending anything, and earlier reports still show what
    they showed."""
    job = fake.create_job(items=300)
    updates = mixed_updates(job, failed_every=10)
    async with client_for(fake) as client:
        run = client.job(job.id)
        report = await run.update(updates)
        shown = dict(report.acknowledged)
        outcome = await run.complete()
        job_ledger = await client.ledger.open_job(job.id)
        assert job_ledger.acknowledgements.forgotten
        assert job_ledger.acknowledgements.index == {}
        requests = len(fake.journal.requests)
        again = client.job(job.id)
        with pytest.raises(JobFinished):
            await again.update(updates)
        assert await again.complete() == attrs.evolve(outcome, already_delivered=True)
        assert await run.complete() == outcome  # the run that sent it says so again (R11)
        assert len(fake.journal.requests) == requests
    assert dict(report.acknowledged) == shown
    assert len(report.acknowledged) == 300
    assert (outcome.successful, outcome.failed) == (270, 30)


async def test_runs_of_one_job_sharing_a_ledger_send_one_final_event(fake: FakePleo) -> None:
    """Two JobRuns of one job completing at once take turns: one sends the event, the other
    finds the outcome recorded and says it was already delivered."""
    job = fake.create_job(items=200)
    async with client_for(fake) as client:
        await client.job(job.id).update(successful_updates(job.item_ids))
        first, second = await asyncio.gather(
            client.job(job.id).complete(), client.job(job.id).complete()
        )
    assert sorted([first.already_delivered, second.already_delivered]) == [False, True]
    assert attrs.evolve(first, already_delivered=True) == attrs.evolve(
        second, already_delivered=True
    )
    assert len(fake.journal.final_events_applied(job.id)) == 1
    assert len(fake.journal.events(job.id)) == 1
