"""MemoryLedger and MemoryJobLedger (layer 4): shared per-job records of acknowledgements and of
the final event (rules R4, R10, R11)."""

from __future__ import annotations

import asyncio
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from pleo_export_async._decision import Tally
from pleo_export_async._enums import ItemStatus, JobEvent, JobFailureReasonType
from pleo_export_async._ledger import (
    FinalEventRecord,
    JobLedger,
    Ledger,
    MemoryJobLedger,
    MemoryLedger,
)
from pleo_export_async._models import ItemUpdate, JobEventRequest
from pleo_export_async._report import CompletionOutcome

JOB_ID = "6a3b0e41-5ef9-46ea-9c21-2ffa41789288"
OTHER_JOB_ID = "a7327909-115c-4b8a-bcea-9c10f38cb4c4"
ID_A = "47324e87-8d05-4049-871b-f0dbe09ed4e0"
ID_B = "9cac86ed-c003-4a39-8387-28672a913b50"
ID_C = "1090aff0-72ea-4a31-a24f-53955c8b83e3"


def outcome(event: JobEvent, job_id: str = JOB_ID) -> CompletionOutcome:
    return CompletionOutcome(
        job_id=job_id,
        event=event,
        failure_reason=None,
        failure_reason_type=None,
        successful=2,
        failed=0,
        rejected=0,
    )


async def test_open_job_returns_the_same_object_for_the_same_job() -> None:
    """open_job hands every caller the one JobLedger of a job, and another one for another job."""
    ledger = MemoryLedger()
    first = await ledger.open_job(JOB_ID)
    assert await ledger.open_job(JOB_ID) is first
    other = await ledger.open_job(OTHER_JOB_ID)
    assert other is not first
    assert (first.job_id, other.job_id) == (JOB_ID, OTHER_JOB_ID)
    assert isinstance(ledger, Ledger)
    assert isinstance(first, JobLedger)
    assert "jobs=2" in repr(ledger)
    await ledger.close()


def as_remembered(update: ItemUpdate | None) -> ItemStatus | ItemUpdate | None:
    """What `acknowledged` returns: a successful update is kept as its status alone (R4)."""
    if update is not None and update.status is ItemStatus.SUCCESSFUL:
        return ItemStatus.SUCCESSFUL
    return update


async def test_acknowledged_is_the_last_update_recorded() -> None:
    """acknowledged is None until recorded, then the last failed update, or SUCCESSFUL alone."""
    job = MemoryJobLedger(JOB_ID)
    assert job.acknowledged(ID_A) is None
    failed = ItemUpdate.failed(ID_A, reason_type="vendor_unknown")
    await job.record_acknowledged([failed])
    assert job.acknowledged(ID_A) == failed
    successful = ItemUpdate.successful(ID_A, external_id="JE-1")
    await job.record_acknowledged([successful])
    assert job.acknowledged(ID_A) is ItemStatus.SUCCESSFUL
    assert job.acknowledged(ID_B) is None


async def test_tally_counts_acknowledged_items_by_status() -> None:
    """The tally counts successful and failed items and the failed items' failure types."""
    job = MemoryJobLedger(JOB_ID)
    assert job.tally() == Tally()
    await job.record_acknowledged(
        [
            ItemUpdate.successful(ID_A),
            ItemUpdate.failed(ID_B, reason_type="vendor_unknown"),
            ItemUpdate.failed(ID_C, reason_type="vendor_unknown"),
        ]
    )
    assert job.tally() == Tally(successful=1, failed=2, failure_types={"vendor_unknown": 2})


async def test_superseding_a_failed_update_moves_the_counts() -> None:
    """A successful update replacing an acknowledged failed one moves the counts, drops the type."""
    job = MemoryJobLedger(JOB_ID)
    await job.record_acknowledged(
        [
            ItemUpdate.failed(ID_A, reason_type="tag_unknown"),
            ItemUpdate.failed(ID_B, reason_type="vendor_unknown"),
        ]
    )
    await job.record_acknowledged([ItemUpdate.successful(ID_A)])
    tally = job.tally()
    assert tally == Tally(successful=1, failed=1, failure_types={"vendor_unknown": 1})
    assert "tag_unknown" not in tally.failure_types
    # A failed update replacing another failed one swaps the type, the count stays.
    await job.record_acknowledged([ItemUpdate.failed(ID_B, reason_type="account_unknown")])
    assert job.tally() == Tally(successful=1, failed=1, failure_types={"account_unknown": 1})


async def test_recording_the_same_update_again_counts_it_once() -> None:
    """Acknowledging the same update twice (e.g. two runs sharing the ledger) counts it once."""
    job = MemoryJobLedger(JOB_ID)
    update = ItemUpdate.failed(ID_A, reason_type="vendor_unknown")
    await job.record_acknowledged([update])
    await job.record_acknowledged([update, update])
    assert job.tally() == Tally(failed=1, failure_types={"vendor_unknown": 1})


UPDATES = st.sampled_from([ID_A, ID_B, ID_C]).flatmap(
    lambda entry_id: st.sampled_from(
        [
            ItemUpdate.successful(entry_id),
            ItemUpdate.successful(entry_id, external_id="JE-7"),
            ItemUpdate.failed(entry_id, reason_type="vendor_unknown"),
            ItemUpdate.failed(entry_id, reason_type="validation_failure"),
            ItemUpdate(entry_id, ItemStatus.IN_PROGRESS),
        ]
    )
)


@settings(max_examples=150)
@given(batches=st.lists(st.lists(UPDATES, max_size=5), max_size=8))
def test_tally_matches_the_last_update_of_each_item(batches: list[list[ItemUpdate]]) -> None:
    """After any sequence of acknowledgements the tally counts exactly the last update per ID."""
    job = MemoryJobLedger(JOB_ID)

    async def record_all() -> None:
        for batch in batches:
            await job.record_acknowledged(batch)

    asyncio.run(record_all())
    last = {update.accounting_entry_id: update for batch in batches for update in batch}
    statuses = Counter(update.status for update in last.values())
    failure_types = Counter(
        update.failure_reason_type.value
        for update in last.values()
        if update.failure_reason_type is not None
    )
    assert job.tally() == Tally(
        successful=statuses[ItemStatus.SUCCESSFUL],
        failed=statuses[ItemStatus.FAILED],
        failure_types=dict(failure_types),
    )
    for entry_id in (ID_A, ID_B, ID_C):
        assert job.acknowledged(entry_id) == as_remembered(last.get(entry_id))


async def test_final_event_intent_then_delivered() -> None:
    """The intent is recorded without an outcome; delivery adds the outcome to the same request."""
    job = MemoryJobLedger(JOB_ID)
    assert job.final_event() is None
    request = JobEventRequest(
        JobEvent.FAILED, JOB_ID, "All 2 items failed", JobFailureReasonType.VALIDATION_FAILURE
    )
    await job.record_event_intent(request)
    assert job.final_event() == FinalEventRecord(request)
    assert job.final_event() == FinalEventRecord(request, None)
    delivered = outcome(JobEvent.FAILED)
    await job.record_event_delivered(delivered)
    assert job.final_event() == FinalEventRecord(request, delivered)


async def test_in_flight_is_not_remembered() -> None:
    """A memory ledger has no crash to recover from: nothing is in flight at open."""
    ledger = MemoryLedger()
    job = await ledger.open_job(JOB_ID)
    await job.record_in_flight([ItemUpdate.successful(ID_A)])
    assert job.in_flight_at_open() == {}
    assert job.acknowledged(ID_A) is None
    assert (await ledger.open_job(JOB_ID)).in_flight_at_open() == {}


async def test_two_jobs_are_independent() -> None:
    """Acknowledgements and final events of one job are invisible to another job."""
    ledger = MemoryLedger()
    job = await ledger.open_job(JOB_ID)
    other = await ledger.open_job(OTHER_JOB_ID)
    await job.record_acknowledged([ItemUpdate.successful(ID_A)])
    await other.record_acknowledged([ItemUpdate.failed(ID_B, reason_type="tag_unknown")])
    request = JobEventRequest(JobEvent.COMPLETED, JOB_ID)
    await job.record_event_intent(request)
    await job.record_event_delivered(outcome(JobEvent.COMPLETED))

    assert job.acknowledged(ID_B) is None
    assert other.acknowledged(ID_A) is None
    assert job.tally() == Tally(successful=1)
    assert other.tally() == Tally(failed=1, failure_types={"tag_unknown": 1})
    assert other.final_event() is None
    record = job.final_event()
    assert record is not None
    assert record.outcome == outcome(JobEvent.COMPLETED)
    # The shared object seen through open_job again holds the same records.
    assert (await ledger.open_job(JOB_ID)).acknowledged(ID_A) is ItemStatus.SUCCESSFUL
