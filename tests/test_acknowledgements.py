"""Properties of `Acknowledgements`, a job's record of what Pleo acknowledged (rules R4, R10):
what it says per ID, its tally, `forget`, and `restore` from batches read back."""

from __future__ import annotations

from collections import Counter

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from batching import ID_A, ID_B, ID_C, new_tracker, planned, settled
from pleo_export_async._core._acknowledgements import Acknowledgements
from pleo_export_async._core._batches import Batch, BatchState, read_back
from pleo_export_async._core._decision import Tally
from pleo_export_async._core._tracker import ItemTracker
from pleo_export_async._enums import ItemFailureReasonType, ItemStatus
from pleo_export_async._models import ItemUpdate

ID_D = "2d3c4b5a-6f70-4a8b-9c0d-1e2f3a4b5c6d"
ID_E = "e5f6a7b8-c9d0-4e1f-8a2b-3c4d5e6f7a8b"
POOL = [ID_A, ID_B, ID_C, ID_D, ID_E]


def updates_for(entry_id: str) -> list[ItemUpdate]:
    """The few updates one ID may get: successful (twice), failed (twice), in progress."""
    return [
        ItemUpdate.successful(entry_id),
        ItemUpdate.successful(entry_id, external_id="JE-1"),
        ItemUpdate.failed(
            entry_id, reason="Vendor missing", reason_type=ItemFailureReasonType.VENDOR_UNKNOWN
        ),
        ItemUpdate.failed(entry_id, reason_type="validation_failure"),
        ItemUpdate(entry_id, ItemStatus.IN_PROGRESS),
    ]


SUCCESSFUL, SUCCESSFUL_JE, VENDOR_UNKNOWN, VALIDATION_FAILURE, IN_PROGRESS = range(5)


@attrs.frozen
class Call:
    """One `update()` call: its updates (distinct IDs), the IDs Pleo's answer lists in `data`,
    and whether the batch got no answer at all (given up)."""

    updates: list[ItemUpdate]
    acknowledged: list[str]
    abandoned: bool = False


@st.composite
def calls(draw: st.DrawFn) -> list[Call]:
    """A sequence of calls over a pool of 3 to 5 IDs, each acknowledged in part, in any order."""
    pool = POOL[: draw(st.integers(min_value=3, max_value=5))]
    sequence: list[Call] = []
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        ids = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=len(pool), unique=True))
        updates = [updates_for(entry_id)[draw(st.integers(0, 4))] for entry_id in ids]
        answered = [entry_id for entry_id in ids if draw(st.booleans())]
        abandoned = draw(st.integers(0, 9)) == 0
        sequence.append(Call(updates, draw(st.permutations(answered)), abandoned))
    return sequence


def run(tracker: ItemTracker, call: Call) -> Batch:
    """Drive one call through the tracker: settle its batch with the answer, or give it up."""
    if not call.abandoned:
        return settled(tracker, call.updates, call.acknowledged)
    tracker.drop_ready("not sent: the update call stopped")
    tracker.begin_call()
    batch = planned(tracker, call.updates)
    tracker.give_up(batch, "cancelled")
    return batch


class Model:
    """For each ID, the update Pleo last acknowledged (R4: a successful one is never replaced,
    because later offers of the ID are skipped; so is an offer of the update acknowledged)."""

    def __init__(self) -> None:
        self.acknowledged: dict[str, ItemUpdate] = {}

    def apply(self, call: Call) -> None:
        if call.abandoned:
            return
        for update in call.updates:
            entry_id = update.accounting_entry_id
            previous = self.acknowledged.get(entry_id)
            if previous is not None and (
                previous.status is ItemStatus.SUCCESSFUL or previous == update
            ):
                continue  # skipped, not sent
            if entry_id in call.acknowledged:
                self.acknowledged[entry_id] = update

    def expected(self, entry_id: str) -> ItemStatus | ItemUpdate | None:
        update = self.acknowledged.get(entry_id)
        if update is None:
            return None
        return ItemStatus.SUCCESSFUL if update.status is ItemStatus.SUCCESSFUL else update

    def tally(self) -> Tally:
        statuses = Counter(update.status for update in self.acknowledged.values())
        failure_types = Counter(
            update.failure_reason_type.value
            for update in self.acknowledged.values()
            if update.failure_reason_type is not None
        )
        return Tally(
            successful=statuses[ItemStatus.SUCCESSFUL],
            failed=statuses[ItemStatus.FAILED],
            failure_types=dict(failure_types),
        )


def as_read_back(batch: Batch) -> Batch:
    """The batch as a durable ledger would read it back: IDs, acknowledged IDs, others."""
    if batch.state is BatchState.ABANDONED:
        return read_back(list(batch.ids), None, {})
    return read_back(list(batch.ids), list(batch.acknowledged_ids()), dict(batch.others))


# -- what it says per ID ---------------------------------------------------------------------------


def test_nothing_until_a_batch_acknowledges_it() -> None:
    """An ID is acknowledged as nothing until a batch acknowledges it, however often it was sent."""
    tracker = new_tracker()
    record = tracker.acknowledgements
    assert record.acknowledged(ID_A) is None
    settled(tracker, [ItemUpdate.successful(ID_A)], [])
    assert record.acknowledged(ID_A) is None
    assert record.lookup(ID_A) is not None  # the job has seen it
    settled(tracker, [ItemUpdate.successful(ID_A)])
    assert record.acknowledged(ID_A) is ItemStatus.SUCCESSFUL
    assert record.acknowledged(ID_B) is None
    assert record.lookup(ID_B) is None


def test_successful_and_failed() -> None:
    """A successful ID reads as SUCCESSFUL, a failed one as the failed update, and both count."""
    tracker = new_tracker()
    record = tracker.acknowledgements
    failed = updates_for(ID_B)[VENDOR_UNKNOWN]
    settled(tracker, [ItemUpdate.successful(ID_A, external_id="JE-1"), failed])
    assert record.acknowledged(ID_A) is ItemStatus.SUCCESSFUL
    assert record.acknowledged(ID_B) == failed
    assert record.tally() == Tally(successful=1, failed=1, failure_types={"vendor_unknown": 1})


def test_failed_superseded_by_successful() -> None:
    """A later batch acknowledging a successful update for a failed ID replaces it; the tally
    moves from failed to successful (R4)."""
    tracker = new_tracker()
    record = tracker.acknowledgements
    settled(tracker, [updates_for(ID_A)[VENDOR_UNKNOWN], updates_for(ID_B)[SUCCESSFUL]])
    assert record.tally() == Tally(successful=1, failed=1, failure_types={"vendor_unknown": 1})
    settled(tracker, [updates_for(ID_A)[SUCCESSFUL_JE]])
    assert record.acknowledged(ID_A) is ItemStatus.SUCCESSFUL
    assert record.tally() == Tally(successful=2, failed=0, failure_types={})


def test_failed_superseded_by_another_failure() -> None:
    """A different failed update replaces a failed one: the failure type moves with it (R4)."""
    tracker = new_tracker()
    record = tracker.acknowledgements
    settled(tracker, [updates_for(ID_A)[VENDOR_UNKNOWN]])
    settled(tracker, [updates_for(ID_A)[VALIDATION_FAILURE]])
    assert record.acknowledged(ID_A) == updates_for(ID_A)[VALIDATION_FAILURE]
    assert record.tally() == Tally(failed=1, failure_types={"validation_failure": 1})


def test_superseding_update_not_acknowledged_keeps_the_old_one() -> None:
    """Until Pleo acknowledges the superseding update, the failed one stays acknowledged."""
    tracker = new_tracker()
    record = tracker.acknowledgements
    failed = updates_for(ID_A)[VENDOR_UNKNOWN]
    settled(tracker, [failed])
    settled(tracker, [updates_for(ID_A)[SUCCESSFUL]], [])
    assert record.acknowledged(ID_A) == failed
    assert record.tally() == Tally(failed=1, failure_types={"vendor_unknown": 1})


def test_successful_is_terminal() -> None:
    """Once successful, an ID stays successful: a later failed update is skipped (R4)."""
    tracker = new_tracker()
    record = tracker.acknowledgements
    settled(tracker, [updates_for(ID_A)[SUCCESSFUL]])
    batch = settled(tracker, [updates_for(ID_A)[VENDOR_UNKNOWN]])
    assert batch.ids == []
    assert record.acknowledged(ID_A) is ItemStatus.SUCCESSFUL
    assert record.tally() == Tally(successful=1)


def test_in_progress_is_not_counted() -> None:
    """An in-progress acknowledgement reads as its update but counts in no tally."""
    tracker = new_tracker()
    record = tracker.acknowledgements
    in_progress = updates_for(ID_C)[IN_PROGRESS]
    settled(tracker, [in_progress])
    assert record.acknowledged(ID_C) == in_progress
    assert record.tally() == Tally()
    settled(tracker, [updates_for(ID_C)[VALIDATION_FAILURE]])
    assert record.tally() == Tally(failed=1, failure_types={"validation_failure": 1})


@settings(max_examples=200, deadline=None)
@given(sequence=calls())
def test_tally_follows_the_last_acknowledged_update(sequence: list[Call]) -> None:
    """After every call, each ID reads as the update Pleo last acknowledged for it (R4) and the
    tally counts exactly those updates by status and failure type."""
    tracker = new_tracker()
    record = tracker.acknowledgements
    model = Model()
    for call in sequence:
        run(tracker, call)
        model.apply(call)
        for entry_id in POOL:
            assert record.acknowledged(entry_id) == model.expected(entry_id), entry_id
        assert record.tally() == model.tally()


# -- forget ----------------------------------------------------------------------------------------


def test_forget_drops_the_ids_and_keeps_the_counts() -> None:
    """`forget` empties the index and marks the record forgotten; the tally stays."""
    tracker = new_tracker()
    record = tracker.acknowledgements
    settled(tracker, [updates_for(ID_A)[SUCCESSFUL], updates_for(ID_B)[VENDOR_UNKNOWN]])
    tally = record.tally()
    assert not record.forgotten
    record.forget()
    assert record.forgotten
    assert record.index == {}
    assert record.acknowledged(ID_A) is None
    assert record.lookup(ID_B) is None
    assert record.tally() == tally == Tally(1, 1, 0, {"vendor_unknown": 1})


def test_repr_is_short() -> None:
    """The record's repr gives counts, never IDs."""
    tracker = new_tracker()
    record = tracker.acknowledgements
    settled(tracker, [updates_for(ID_A)[SUCCESSFUL], updates_for(ID_B)[VENDOR_UNKNOWN]])
    assert repr(record) == "<Acknowledgements 2 IDs, 1 successful, 1 failed>"
    record.forget()
    assert repr(record) == "<Acknowledgements forgotten, 1 successful, 1 failed>"
    assert ID_A not in repr(record)


# -- restore ---------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(sequence=calls())
def test_restore_gives_what_live_adds_gave(sequence: list[Call]) -> None:
    """Batches read back and restored in order give the same index and tally as live `add`."""
    tracker = new_tracker()
    live = tracker.acknowledgements
    batches = [run(tracker, call) for call in sequence]
    restored = Acknowledgements()
    for batch in batches:
        restored.restore(as_read_back(batch))
    assert set(restored.index) == set(live.index)
    for entry_id in POOL:
        assert restored.acknowledged(entry_id) == live.acknowledged(entry_id), entry_id
    assert restored.tally() == live.tally()


@settings(max_examples=150, deadline=None)
@given(sequence=calls(), data=st.data())
def test_a_resumed_tracker_goes_on_like_the_live_one(
    sequence: list[Call], data: st.DataObject
) -> None:
    """A new tracker over a restored record skips and supersedes as the model says (R4, R13)."""
    split = data.draw(st.integers(min_value=0, max_value=len(sequence)))
    tracker = new_tracker()
    model = Model()
    batches: list[Batch] = []
    for call in sequence[:split]:
        batches.append(run(tracker, call))
        model.apply(call)
    restored = Acknowledgements()
    for batch in batches:
        restored.restore(as_read_back(batch))
    resumed = new_tracker(restored)
    for call in sequence[split:]:
        run(resumed, call)
        model.apply(call)
        for entry_id in POOL:
            assert restored.acknowledged(entry_id) == model.expected(entry_id), entry_id
        assert restored.tally() == model.tally()
