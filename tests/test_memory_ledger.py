"""MemoryLedger and MemoryJobLedger (the Ledgers layer, docs/architecture.md): one shared record per
job of what Pleo acknowledged, kept per batch, and of the final event (rules R2, R4, R10, R11)."""

from __future__ import annotations

import asyncio
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from batching import ID_A, ID_B, ID_C, JOB_ID, OTHER_JOB_ID, new_tracker, planned, settled
from pleo_export_async._codec import encode_item_updates
from pleo_export_async._core._decision import Tally
from pleo_export_async._core._tracker import Offer
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


def as_remembered(update: ItemUpdate | None) -> ItemStatus | ItemUpdate | None:
    """What `acknowledged` returns: a successful update is kept as its status alone (R4)."""
    if update is not None and update.status is ItemStatus.SUCCESSFUL:
        return ItemStatus.SUCCESSFUL
    return update


async def test_open_job_returns_the_same_object_for_the_same_job() -> None:
    """open_job hands every caller the one JobLedger of a job, and another one for another job."""
    ledger = MemoryLedger()
    first = await ledger.open_job(JOB_ID)
    assert await ledger.open_job(JOB_ID) is first
    other = await ledger.open_job(OTHER_JOB_ID)
    assert other is not first
    assert (first.job_id, other.job_id) == (JOB_ID, OTHER_JOB_ID)
    assert first.acknowledgements is not other.acknowledgements
    assert isinstance(ledger, Ledger)
    assert isinstance(first, JobLedger)
    assert "jobs=2" in repr(ledger)
    await ledger.close()


async def test_acknowledged_is_the_last_update_acknowledged() -> None:
    """acknowledged is None until a batch acknowledges the ID, then the failed update, then
    SUCCESSFUL alone once a successful update supersedes it."""
    job = MemoryJobLedger(JOB_ID)
    tracker = new_tracker(job.acknowledgements)
    assert job.acknowledgements.acknowledged(ID_A) is None
    failed = ItemUpdate.failed(ID_A, reason_type="vendor_unknown")
    await job.record_acknowledged(settled(tracker, [failed]))
    assert job.acknowledgements.acknowledged(ID_A) == failed
    successful = ItemUpdate.successful(ID_A, external_id="JE-1")
    await job.record_acknowledged(settled(tracker, [successful]))
    assert job.acknowledgements.acknowledged(ID_A) is ItemStatus.SUCCESSFUL
    assert job.acknowledgements.acknowledged(ID_B) is None


async def test_only_the_acknowledged_part_of_a_batch_is_acknowledged() -> None:
    """IDs of a batch that Pleo's answer left out are not acknowledged and not counted."""
    job = MemoryJobLedger(JOB_ID)
    tracker = new_tracker(job.acknowledgements)
    batch = settled(
        tracker,
        [ItemUpdate.successful(ID_A), ItemUpdate.successful(ID_B), ItemUpdate.successful(ID_C)],
        acknowledged=[ID_B],
    )
    await job.record_acknowledged(batch)
    acknowledgements = job.acknowledgements
    assert [acknowledgements.acknowledged(i) for i in (ID_A, ID_B, ID_C)] == [
        None,
        ItemStatus.SUCCESSFUL,
        None,
    ]
    assert acknowledgements.tally() == Tally(successful=1)


async def test_tally_counts_acknowledged_items_by_status() -> None:
    """The tally counts successful and failed items and the failed items' failure types."""
    job = MemoryJobLedger(JOB_ID)
    assert job.acknowledgements.tally() == Tally()
    tracker = new_tracker(job.acknowledgements)
    batch = settled(
        tracker,
        [
            ItemUpdate.successful(ID_A),
            ItemUpdate.failed(ID_B, reason_type="vendor_unknown"),
            ItemUpdate.failed(ID_C, reason_type="vendor_unknown"),
        ],
    )
    await job.record_acknowledged(batch)
    assert job.acknowledgements.tally() == Tally(
        successful=1, failed=2, failure_types={"vendor_unknown": 2}
    )


async def test_superseding_a_failed_update_moves_the_counts() -> None:
    """A successful update replacing an acknowledged failed one moves the counts, drops the type."""
    job = MemoryJobLedger(JOB_ID)
    tracker = new_tracker(job.acknowledgements)
    first = settled(
        tracker,
        [
            ItemUpdate.failed(ID_A, reason_type="tag_unknown"),
            ItemUpdate.failed(ID_B, reason_type="vendor_unknown"),
        ],
    )
    await job.record_acknowledged(first)
    await job.record_acknowledged(settled(tracker, [ItemUpdate.successful(ID_A)]))
    tally = job.acknowledgements.tally()
    assert tally == Tally(successful=1, failed=1, failure_types={"vendor_unknown": 1})
    assert "tag_unknown" not in tally.failure_types
    # A failed update replacing another failed one swaps the type, the count stays.
    replacing = settled(tracker, [ItemUpdate.failed(ID_B, reason_type="account_unknown")])
    await job.record_acknowledged(replacing)
    assert job.acknowledgements.tally() == Tally(
        successful=1, failed=1, failure_types={"account_unknown": 1}
    )


async def test_the_same_update_again_counts_once() -> None:
    """An identical update repeated in one call collapses, and offered by a second run sharing
    the ledger it is skipped: either way the item counts once."""
    ledger = MemoryLedger()
    job = await ledger.open_job(JOB_ID)
    update = ItemUpdate.failed(ID_A, reason_type="vendor_unknown")
    batch = settled(new_tracker(job.acknowledgements), [update, update])
    assert batch.ids == [ID_A]
    await job.record_acknowledged(batch)
    other_run = new_tracker((await ledger.open_job(JOB_ID)).acknowledgements)
    other_run.begin_call()
    assert other_run.offer(other_run.plan(100), update) is Offer.SKIPPED
    assert job.acknowledgements.tally() == Tally(failed=1, failure_types={"vendor_unknown": 1})


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
#: One call's updates (no ID twice, which R1 would refuse), each with whether Pleo acknowledged it.
CALL = st.lists(
    st.tuples(UPDATES, st.booleans()),
    max_size=3,
    unique_by=lambda pair: pair[0].accounting_entry_id,
)


@settings(max_examples=150, deadline=None)
@given(calls=st.lists(CALL, max_size=8))
def test_tally_matches_the_last_acknowledged_update_of_each_item(
    calls: list[list[tuple[ItemUpdate, bool]]],
) -> None:
    """After any sequence of batches the record holds, per ID, the last update Pleo acknowledged
    (a successful one is terminal, R4), and the tally counts exactly those."""
    job = MemoryJobLedger(JOB_ID)
    tracker = new_tracker(job.acknowledgements)
    last: dict[str, ItemUpdate] = {}

    async def record_all() -> None:
        for call in calls:
            updates = [update for update, _ in call]
            acknowledged = [update.accounting_entry_id for update, ack in call if ack]
            await job.record_acknowledged(settled(tracker, updates, acknowledged))
            for update, ack in call:
                previous = last.get(update.accounting_entry_id)
                if ack and (previous is None or previous.status is not ItemStatus.SUCCESSFUL):
                    last[update.accounting_entry_id] = update

    asyncio.run(record_all())
    statuses = Counter(update.status for update in last.values())
    failure_types = Counter(
        update.failure_reason_type.value
        for update in last.values()
        if update.failure_reason_type is not None
    )
    assert job.acknowledgements.tally() == Tally(
        successful=statuses[ItemStatus.SUCCESSFUL],
        failed=statuses[ItemStatus.FAILED],
        failure_types=dict(failure_types),
    )
    for entry_id in (ID_A, ID_B, ID_C):
        assert job.acknowledgements.acknowledged(entry_id) == as_remembered(last.get(entry_id))


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


async def test_delivering_the_final_event_forgets_the_ids_but_keeps_tally_and_event() -> None:
    """Once the final event is delivered the per-ID index is released (R2) while the tally and
    the outcome stay, also for whoever opens the job again."""
    ledger = MemoryLedger()
    job = await ledger.open_job(JOB_ID)
    tracker = new_tracker(job.acknowledgements)
    batch = settled(
        tracker,
        [ItemUpdate.successful(ID_A), ItemUpdate.failed(ID_B, reason_type="tag_unknown")],
    )
    await job.record_acknowledged(batch)
    request = JobEventRequest(JobEvent.COMPLETED_WITH_ERRORS, JOB_ID)
    delivered = outcome(JobEvent.COMPLETED_WITH_ERRORS)
    await job.record_event_intent(request)
    assert job.acknowledgements.index  # the IDs are kept until the event is delivered
    await job.record_event_delivered(delivered)

    acknowledgements = job.acknowledgements
    assert acknowledgements.index == {}
    assert acknowledgements.forgotten
    assert acknowledgements.tally() == Tally(
        successful=1, failed=1, failure_types={"tag_unknown": 1}
    )
    assert job.final_event() == FinalEventRecord(request, delivered)
    reopened = await ledger.open_job(JOB_ID)
    assert reopened is job
    record = reopened.final_event()
    assert record is not None
    assert record.outcome == delivered


async def test_turn_lets_one_holder_at_a_time_and_the_next_waits() -> None:
    """Two tasks taking the job's turn never overlap: the second enters only once the first left."""
    ledger = MemoryLedger()
    inside = False
    entered: list[str] = []
    first_holds = asyncio.Event()
    release_first = asyncio.Event()

    async def work(name: str, hold: bool) -> None:
        nonlocal inside
        async with (await ledger.open_job(JOB_ID)).turn():
            assert not inside, "two holders of the turn at once"
            inside = True
            entered.append(name)
            if hold:
                first_holds.set()
                await release_first.wait()
            for _ in range(3):
                await asyncio.sleep(0)
            inside = False

    first = asyncio.create_task(work("first", hold=True))
    await first_holds.wait()
    second = asyncio.create_task(work("second", hold=False))
    for _ in range(5):
        await asyncio.sleep(0)
    assert entered == ["first"]
    assert not second.done()
    release_first.set()
    await asyncio.gather(first, second)
    assert entered == ["first", "second"]
    assert not inside


async def test_recording_batches_keeps_nothing_extra() -> None:
    """record_in_flight and record_acknowledged are accepted and change nothing the tracker did
    not: a memory ledger has no crash to recover from, so nothing is in flight at open."""
    ledger = MemoryLedger()
    job = await ledger.open_job(JOB_ID)
    tracker = new_tracker(job.acknowledgements)
    tracker.begin_call()
    batch = planned(tracker, [ItemUpdate.successful(ID_A), ItemUpdate.successful(ID_B)])
    assert batch.updates is not None
    index_before = dict(job.acknowledgements.index)
    await job.record_in_flight(batch, encode_item_updates(batch.updates))
    assert job.acknowledgements.index == index_before
    assert job.acknowledgements.acknowledged(ID_A) is None
    assert job.in_flight_at_open() == {}
    tracker.reconcile(batch, [ID_A], ())
    tally_before = job.acknowledgements.tally()
    index_before = dict(job.acknowledgements.index)
    await job.record_acknowledged(batch)
    assert job.acknowledgements.tally() == tally_before == Tally(successful=1)
    assert job.acknowledgements.index == index_before
    assert job.in_flight_at_open() == {}
    assert (await ledger.open_job(JOB_ID)).in_flight_at_open() == {}


async def test_two_jobs_are_independent() -> None:
    """Acknowledgements and final events of one job are invisible to another job."""
    ledger = MemoryLedger()
    job = await ledger.open_job(JOB_ID)
    other = await ledger.open_job(OTHER_JOB_ID)
    await job.record_acknowledged(
        settled(new_tracker(job.acknowledgements), [ItemUpdate.successful(ID_A)])
    )
    await other.record_acknowledged(
        settled(
            new_tracker(other.acknowledgements),
            [ItemUpdate.failed(ID_B, reason_type="tag_unknown")],
        )
    )
    request = JobEventRequest(JobEvent.COMPLETED, JOB_ID)
    await job.record_event_intent(request)
    await job.record_event_delivered(outcome(JobEvent.COMPLETED))

    assert job.acknowledgements.acknowledged(ID_B) is None
    assert other.acknowledgements.acknowledged(ID_A) is None
    assert job.acknowledgements.tally() == Tally(successful=1)
    assert other.acknowledgements.tally() == Tally(failed=1, failure_types={"tag_unknown": 1})
    assert other.final_event() is None
    assert not other.acknowledgements.forgotten
    assert other.acknowledgements.acknowledged(ID_B) == ItemUpdate.failed(
        ID_B, reason_type="tag_unknown"
    )
    record = job.final_event()
    assert record is not None
    assert record.outcome == outcome(JobEvent.COMPLETED)
    # The shared object seen through open_job again holds the same records.
    assert (await ledger.open_job(OTHER_JOB_ID)) is other
    assert (await ledger.open_job(JOB_ID)).acknowledgements.tally() == Tally(successful=1)
