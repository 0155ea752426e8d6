"""Property tests of the item tracker (rules R1, R3, R4, R5, R9), driven the way a JobRun drives it.

A JobRun offers the updates of one `update()` call (numbered 1, 2, ...), takes batches while
earlier batches are still in flight, settles each batch with Pleo's response (or gives it up, or
sends it again later), and drops what is still queued when the call stops. The next call starts
only when nothing of the previous one is in flight. The ledger is modelled by a dict that is
updated with each `BatchOutcome.acknowledged`.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from pleo_export_async._classify import make_item_error_classifier
from pleo_export_async._enums import ItemFailureReasonType, ItemStatus, ItemUpdateErrorType
from pleo_export_async._errors import ConflictingUpdates, InvalidInput
from pleo_export_async._models import ItemUpdate, ItemUpdateError
from pleo_export_async._tracker import BatchOutcome, Entry, EntryState, ItemTracker, Offer

TRANSIENT_TYPES = frozenset({"EXPORT_ENTRY_STATUS_UPDATE_FAILED", "ACCOUNTING_ENTRY_UPDATE_FAILED"})
DOCUMENTED_TYPES = [member.value for member in ItemUpdateErrorType]
FINAL_STATUSES = frozenset({ItemStatus.SUCCESSFUL, ItemStatus.FAILED})

ID_A = "47324e87-8d05-4049-871b-f0dbe09ed4e0"
ID_B = "9cac86ed-c003-4a39-8387-28672a913b50"
ID_C = "1090aff0-72ea-4a31-a24f-53955c8b83e3"


# -- strategies and helpers ------------------------------------------------------------------------


def any_case(text: str) -> st.SearchStrategy[str]:
    """`text` with each letter upper- or lower-cased at random."""
    return st.lists(st.booleans(), min_size=len(text), max_size=len(text)).map(
        lambda flags: "".join(
            char.upper() if upper else char.lower() for char, upper in zip(text, flags, strict=True)
        )
    )


ERROR_TYPES: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(DOCUMENTED_TYPES).flatmap(any_case),
    st.text(alphabet=string.ascii_letters + "_", max_size=30),
)


def is_transient(error_type: str) -> bool:
    """The documented default classification (R5): two types are transient, in any case."""
    return error_type.upper() in TRANSIENT_TYPES


def updates_for(entry_id: str) -> list[ItemUpdate]:
    """A few distinct updates for one ID, so that identical and conflicting offers both occur."""
    return [
        ItemUpdate.successful(entry_id),
        ItemUpdate.successful(entry_id, external_id="JE-1"),
        ItemUpdate.failed(
            entry_id, reason="Vendor missing", reason_type=ItemFailureReasonType.VENDOR_UNKNOWN
        ),
        ItemUpdate.failed(entry_id, reason_type="validation_failure"),
        ItemUpdate(entry_id, ItemStatus.IN_PROGRESS),
    ]


def new_tracker(
    ledger: dict[str, ItemUpdate], max_attempts: int = 3
) -> tuple[ItemTracker, Callable[[BatchOutcome], None]]:
    """A tracker backed by `ledger`, and the function that records an outcome in the ledger."""

    def record(outcome: BatchOutcome) -> None:
        for update in outcome.acknowledged:
            ledger[update.accounting_entry_id] = update

    tracker = ItemTracker(ledger.get, make_item_error_classifier(), max_attempts)
    return tracker, record


def ids_of(batch: Sequence[Entry]) -> list[str]:
    return [entry.update.accounting_entry_id for entry in batch]


def expected_unsettled(tracker: ItemTracker) -> set[str]:
    """IDs neither acknowledged with a final status nor rejected (R9)."""
    return {
        entry_id
        for entry_id, entry in tracker.entries.items()
        if not (
            entry.state is EntryState.REJECTED
            or (entry.state is EntryState.ACKNOWLEDGED and entry.update.status in FINAL_STATUSES)
        )
    }


# -- the state machine -----------------------------------------------------------------------------


class TrackerMachine(RuleBasedStateMachine):
    """Drives one ItemTracker as a JobRun does, checking every step against a small model."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger: dict[str, ItemUpdate] = {}
        self.max_attempts = 1
        self.pool: list[str] = []
        self.tracker, self.record = new_tracker(self.ledger)
        self.call = 1
        self.first_offer: dict[str, tuple[ItemUpdate, Offer]] = {}  # this call's first offers
        self.leftovers: set[str] = set()  # queued again after being sent: go first
        self.fresh: list[str] = []  # queued by offer, in offer order
        self.attempts: dict[str, int] = {}
        self.batches: list[list[Entry]] = []  # in flight
        self.acknowledged_in_call: dict[str, ItemStatus] = {}

    @initialize(
        pool=st.lists(st.uuids().map(str), min_size=1, max_size=7, unique=True),
        max_attempts=st.integers(min_value=1, max_value=4),
    )
    def start(self, pool: list[str], max_attempts: int) -> None:
        self.pool = pool
        self.max_attempts = max_attempts
        self.tracker, self.record = new_tracker(self.ledger, max_attempts)

    # -- the input side --------------------------------------------------------------------------

    @rule(data=st.data())
    def offer(self, data: st.DataObject) -> None:
        entry_id = data.draw(st.sampled_from(self.pool), label="entry_id")
        update = data.draw(st.sampled_from(updates_for(entry_id)), label="update")
        tracker = self.tracker
        ready_before = tracker.ready
        first = self.first_offer.get(entry_id)
        if first is not None:
            first_update, _ = first
            # Within a call, a repeat is judged against the first offer, skipped or not.
            if update == first_update:
                assert tracker.offer(update, self.call) is Offer.COLLAPSED
            else:
                with pytest.raises(ConflictingUpdates) as caught:
                    tracker.offer(update, self.call)
                assert isinstance(caught.value, InvalidInput)
                assert caught.value.field == "accounting_entry_id"
                assert caught.value.value == entry_id
            assert tracker.ready == ready_before
            return
        acknowledged = self.ledger.get(entry_id)
        result = tracker.offer(update, self.call)
        self.first_offer[entry_id] = (update, result)
        if acknowledged is not None and (
            acknowledged.status is ItemStatus.SUCCESSFUL or acknowledged == update
        ):
            # R4: an acknowledged update, or anything after an acknowledged `successful`.
            assert result is Offer.SKIPPED
            assert tracker.ready == ready_before
            entry = tracker.entries.get(entry_id)
            assert entry is None or entry.state not in (EntryState.QUEUED, EntryState.IN_FLIGHT)
            return
        assert result is Offer.QUEUED
        entry = tracker.entries[entry_id]
        assert entry.update == update
        assert entry.state is EntryState.QUEUED
        assert entry.attempts == 0
        assert entry.error_type is None
        self.fresh.append(entry_id)
        self.attempts[entry_id] = 0

    @rule(size=st.integers(min_value=1, max_value=6))
    def take_batch(self, size: int) -> None:
        leftovers, fresh = set(self.leftovers), list(self.fresh)
        batch = self.tracker.take_batch(size)
        ids = ids_of(batch)
        expected_size = min(size, len(leftovers) + len(fresh))
        assert len(batch) == expected_size  # full batches, never larger than asked (R1)
        assert len(set(ids)) == len(ids)  # no ID twice in one batch (R1)
        from_leftovers = min(expected_size, len(leftovers))
        assert set(ids[:from_leftovers]) <= leftovers  # leftovers first (R1)
        assert ids[from_leftovers:] == fresh[: expected_size - from_leftovers]
        for entry in batch:
            entry_id = entry.update.accounting_entry_id
            acknowledged = self.ledger.get(entry_id)
            # R4: never resend an acknowledged update, nor anything after a `successful` one.
            assert acknowledged is None or (
                acknowledged.status is not ItemStatus.SUCCESSFUL and acknowledged != entry.update
            )
            assert entry.state is EntryState.IN_FLIGHT
            self.attempts[entry_id] += 1
            assert entry.attempts == self.attempts[entry_id] <= self.max_attempts
        self.leftovers -= set(ids)
        self.fresh = fresh[expected_size - from_leftovers :]
        if batch:
            self.batches.append(batch)

    # -- the response side -----------------------------------------------------------------------

    def _pop_batch(self, data: st.DataObject) -> list[Entry]:
        index = data.draw(st.integers(0, len(self.batches) - 1), label="batch")
        return self.batches.pop(index)

    @precondition(lambda self: bool(self.batches))
    @rule(data=st.data())
    def reconcile(self, data: st.DataObject) -> None:
        tracker = self.tracker
        batch = self._pop_batch(data)
        batch_ids = ids_of(batch)
        in_batch = set(batch_ids)
        others = [entry_id for entry_id in self.pool if entry_id not in in_batch]
        foreign = st.uuids().map(str).filter(lambda value: value not in in_batch)
        if others:
            foreign = st.one_of(st.sampled_from(others), foreign)

        acked = data.draw(st.lists(st.sampled_from(batch_ids), unique=True), label="acked")
        acknowledged_ids = acked + data.draw(st.lists(foreign, max_size=3), label="foreign")
        if acked:
            acknowledged_ids += data.draw(
                st.lists(st.sampled_from(acked), max_size=3), label="duplicates"
            )
        acknowledged_ids = data.draw(st.permutations(acknowledged_ids), label="ack order")

        error_ids = data.draw(st.lists(st.sampled_from(batch_ids), unique=True), label="errors")
        errors = [
            ItemUpdateError(entry_id, data.draw(ERROR_TYPES, label="type"), f"message {entry_id}")
            for entry_id in error_ids
        ]
        foreign_errors = [
            ItemUpdateError(entry_id, data.draw(ERROR_TYPES, label="type"), "not ours")
            for entry_id in data.draw(st.lists(foreign, max_size=2), label="foreign errors")
        ]
        errors = data.draw(st.permutations(errors + foreign_errors), label="error order")

        # What R3 and R5 say must happen, computed before the tracker is asked.
        error_by_id = {error.accounting_entry_id: error for error in errors}
        expected_state: dict[str, EntryState] = {}
        for entry_id in batch_ids:
            budget_left = self.attempts[entry_id] < self.max_attempts
            error = error_by_id.get(entry_id)
            if error is not None:
                transient = is_transient(error.type)
                expected_state[entry_id] = (
                    EntryState.QUEUED if transient and budget_left else EntryState.REJECTED
                )
            elif entry_id in acked:
                expected_state[entry_id] = EntryState.ACKNOWLEDGED
            else:
                expected_state[entry_id] = (
                    EntryState.QUEUED if budget_left else EntryState.UNACKNOWLEDGED
                )
        untouched = {
            entry_id: (entry.state, entry.update, entry.attempts, entry.error_type)
            for entry_id, entry in tracker.entries.items()
            if entry_id not in in_batch
        }
        updates = {entry.update.accounting_entry_id: entry.update for entry in batch}
        in_flight_before = tracker.in_flight

        outcome = tracker.reconcile(batch, acknowledged_ids, errors)
        self.record(outcome)

        for entry in batch:
            entry_id = entry.update.accounting_entry_id
            assert entry.state is expected_state[entry_id], entry_id
            assert entry.update == updates[entry_id]
            if entry.state is EntryState.REJECTED:
                assert entry.error_type == error_by_id[entry_id].type
                assert entry.error_message == error_by_id[entry_id].message
        acknowledged = [u.accounting_entry_id for u in outcome.acknowledged]
        assert Counter(acknowledged) == Counter(
            entry_id
            for entry_id, state in expected_state.items()
            if state is EntryState.ACKNOWLEDGED
        )
        assert not set(acknowledged) & set(error_by_id)  # in data and errors: not acknowledged
        assert all(u == updates[u.accounting_entry_id] for u in outcome.acknowledged)
        assert Counter(ids_of(outcome.rejected)) == Counter(
            entry_id for entry_id, state in expected_state.items() if state is EntryState.REJECTED
        )
        assert all(any(entry is other for other in batch) for entry in outcome.rejected)
        assert outcome.requeued == sum(s is EntryState.QUEUED for s in expected_state.values())
        assert outcome.given_up == sum(
            s is EntryState.UNACKNOWLEDGED for s in expected_state.values()
        )
        response_ids = list(acknowledged_ids) + [error.accounting_entry_id for error in errors]
        assert Counter(outcome.unexpected_ids) == Counter(
            entry_id for entry_id in response_ids if entry_id not in in_batch
        )
        # IDs not in the request change nothing (R3).
        assert {
            entry_id: (entry.state, entry.update, entry.attempts, entry.error_type)
            for entry_id, entry in tracker.entries.items()
            if entry_id not in in_batch
        } == untouched
        assert tracker.in_flight == in_flight_before - len(batch)
        self.leftovers |= {i for i, s in expected_state.items() if s is EntryState.QUEUED}
        self.acknowledged_in_call.update(
            (entry_id, updates[entry_id].status)
            for entry_id, state in expected_state.items()
            if state is EntryState.ACKNOWLEDGED
        )

    @precondition(lambda self: bool(self.batches))
    @rule(data=st.data(), reason=st.sampled_from(["HTTP 400", "cancelled while in flight"]))
    def give_up(self, data: st.DataObject, reason: str) -> None:
        batch = self._pop_batch(data)
        in_flight_before = self.tracker.in_flight
        self.tracker.give_up(batch, reason)
        for entry in batch:
            assert entry.state is EntryState.UNACKNOWLEDGED
            assert entry.error_message == reason
        assert self.tracker.in_flight == in_flight_before - len(batch)

    @precondition(lambda self: bool(self.batches))
    @rule(data=st.data())
    def send_again_later(self, data: st.DataObject) -> None:
        batch = self._pop_batch(data)
        self.tracker.send_again_later(batch)
        for entry in batch:
            entry_id = entry.update.accounting_entry_id
            assert entry.state is EntryState.QUEUED
            self.attempts[entry_id] -= 1  # a batch refused as a whole costs no attempt
            assert entry.attempts == self.attempts[entry_id]
            self.leftovers.add(entry_id)

    @precondition(lambda self: not self.batches)
    @rule(reason=st.sampled_from(["not sent: the update call stopped", "not sent: cancelled"]))
    def end_call(self, reason: str) -> None:
        """The call is over: what is still queued is dropped (R9), and the next call begins."""
        queued = self.leftovers | set(self.fresh)
        self.tracker.drop_ready(reason)
        assert self.tracker.ready == 0
        for entry_id in queued:
            entry = self.tracker.entries[entry_id]
            assert entry.state is EntryState.UNACKNOWLEDGED
            assert entry.error_message == reason
        self.leftovers, self.fresh = set(), []
        self.call += 1
        self.first_offer = {}
        self.acknowledged_in_call = {}

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def counts_agree(self) -> None:
        """`in_flight` and `ready` always match the entries' states (R2, R9)."""
        entries = self.tracker.entries.values()
        in_flight = [e for e in entries if e.state is EntryState.IN_FLIGHT]
        assert self.tracker.in_flight == len(in_flight) == sum(map(len, self.batches))
        queued = {e.update.accounting_entry_id for e in entries if e.state is EntryState.QUEUED}
        assert queued == self.leftovers | set(self.fresh)
        assert self.tracker.ready == len(self.leftovers) + len(self.fresh)

    @invariant()
    def the_call_report_lists_what_this_call_skipped_and_got_acknowledged(self) -> None:
        """The call's skipped IDs and acknowledged statuses match the model (until the next
        call's first offer, the tracker still holds the previous call's, for its report)."""
        if not self.first_offer:
            return
        skipped = {i for i, (_, result) in self.first_offer.items() if result is Offer.SKIPPED}
        assert self.tracker.skipped_in_call == skipped
        assert self.tracker.acknowledged_in_call == self.acknowledged_in_call

    @invariant()
    def unsettled_lists_exactly_the_unsettled(self) -> None:
        """`unsettled()` lists every ID not acknowledged-final nor rejected, and only those."""
        unsettled = self.tracker.unsettled()
        assert set(unsettled) == expected_unsettled(self.tracker)
        assert all(isinstance(reason, str) and reason for reason in unsettled.values())

    def teardown(self) -> None:
        """Settle everything still in flight, as a JobRun's call does before it returns."""
        if not self.pool:
            return
        tracker = self.tracker
        for batch in self.batches:
            self.record(tracker.reconcile(batch, ids_of(batch), []))
        self.batches = []
        while batch := tracker.take_batch(100):
            self.record(tracker.reconcile(batch, ids_of(batch), []))
        assert tracker.in_flight == 0
        assert tracker.ready == 0
        assert all(
            e.state in (EntryState.ACKNOWLEDGED, EntryState.REJECTED, EntryState.UNACKNOWLEDGED)
            for e in tracker.entries.values()
        )
        assert set(tracker.unsettled()) == expected_unsettled(tracker)


def test_tracker_state_machine() -> None:
    """Any JobRun-like sequence of offers, batches and responses keeps R1, R3, R4, R5 and R9."""
    run_state_machine_as_test(
        TrackerMachine,
        settings=settings(max_examples=150, stateful_step_count=40, deadline=None),
    )


# -- focused properties ----------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    ids=st.lists(st.uuids().map(str), min_size=1, max_size=10, unique=True),
    data=st.data(),
)
def test_settled_by_id_not_by_position(ids: list[str], data: st.DataObject) -> None:
    """Reversing or shuffling `data`, `errors` and the batch itself settles every entry the same."""
    acked = data.draw(st.lists(st.sampled_from(ids), unique=True))
    errored = data.draw(st.lists(st.sampled_from(ids), unique=True))
    errors = [ItemUpdateError(entry_id, data.draw(ERROR_TYPES)) for entry_id in errored]
    shuffled_acks = data.draw(st.permutations(acked))
    shuffled_errors = data.draw(st.permutations(errors))

    def settle(
        batch_order: Callable[[list[Entry]], list[Entry]],
        ack_ids: list[str],
        errs: list[ItemUpdateError],
    ) -> tuple[dict[str, EntryState], set[str], set[str], int, int]:
        tracker, _ = new_tracker({}, max_attempts=2)
        for entry_id in ids:
            tracker.offer(ItemUpdate.successful(entry_id), 1)
        batch = tracker.take_batch(len(ids))
        outcome = tracker.reconcile(batch_order(batch), ack_ids, errs)
        return (
            {entry_id: entry.state for entry_id, entry in tracker.entries.items()},
            {u.accounting_entry_id for u in outcome.acknowledged},
            set(ids_of(outcome.rejected)),
            outcome.requeued,
            outcome.given_up,
        )

    forward = settle(list, acked, errors)
    assert settle(lambda b: b[::-1], acked[::-1], errors[::-1]) == forward
    assert settle(lambda b: b[::-1], shuffled_acks, shuffled_errors) == forward
    assert forward[1] == set(acked) - set(errored)


@settings(max_examples=60, deadline=None)
@given(
    error_type=st.sampled_from(sorted(TRANSIENT_TYPES)).flatmap(any_case),
    max_attempts=st.integers(min_value=1, max_value=5),
)
def test_transient_error_is_retried_until_the_budget_then_rejected(
    error_type: str, max_attempts: int
) -> None:
    """A transient per-item error (any case) re-queues the item until max_attempts, then rejects."""
    tracker, _ = new_tracker({}, max_attempts)
    tracker.offer(ItemUpdate.successful(ID_A), 1)
    for attempt in range(1, max_attempts + 1):
        batch = tracker.take_batch(100)
        assert ids_of(batch) == [ID_A]
        outcome = tracker.reconcile(batch, [], [ItemUpdateError(ID_A, error_type, "busy")])
        if attempt < max_attempts:
            assert outcome.requeued == 1
            assert tracker.entries[ID_A].state is EntryState.QUEUED
        else:
            assert outcome.requeued == 0
            assert ids_of(outcome.rejected) == [ID_A]
    entry = tracker.entries[ID_A]
    assert entry.state is EntryState.REJECTED
    assert entry.attempts == max_attempts
    assert (entry.error_type, entry.error_message) == (error_type, "busy")
    assert tracker.take_batch(100) == []


@settings(max_examples=60, deadline=None)
@given(
    error_type=st.one_of(
        any_case("ACCOUNTING_ENTRY_DOES_NOT_EXIST"),
        st.text(alphabet=string.ascii_letters + "_", max_size=30).filter(
            lambda t: not is_transient(t)
        ),
    ),
    max_attempts=st.integers(min_value=1, max_value=5),
)
def test_permanent_or_unknown_error_is_rejected_at_once(error_type: str, max_attempts: int) -> None:
    """ACCOUNTING_ENTRY_DOES_NOT_EXIST (any case) and unknown types reject on the first attempt."""
    tracker, _ = new_tracker({}, max_attempts)
    tracker.offer(ItemUpdate.successful(ID_A), 1)
    outcome = tracker.reconcile(tracker.take_batch(100), [], [ItemUpdateError(ID_A, error_type)])
    assert ids_of(outcome.rejected) == [ID_A]
    assert (outcome.requeued, outcome.given_up) == (0, 0)
    assert tracker.entries[ID_A].state is EntryState.REJECTED
    assert tracker.unsettled() == {}


@pytest.mark.parametrize("max_attempts", [1, 2, 4])
def test_missing_id_is_resent_until_the_budget_then_unacknowledged(max_attempts: int) -> None:
    """An ID in neither `data` nor `errors` is resent until max_attempts, then unacknowledged."""
    tracker, _ = new_tracker({}, max_attempts)
    tracker.offer(ItemUpdate.successful(ID_A), 1)
    sends = 0
    while batch := tracker.take_batch(100):
        sends += 1
        tracker.reconcile(batch, [], [])
    assert sends == max_attempts
    entry = tracker.entries[ID_A]
    assert entry.state is EntryState.UNACKNOWLEDGED
    assert ID_A in tracker.unsettled()
    assert str(max_attempts) in tracker.unsettled()[ID_A]


def test_leftovers_are_repacked_with_fresh_items_into_full_batches() -> None:
    """Items a response left out go first in the next batch, topped up with fresh items (R1)."""
    ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(7)]
    tracker, _ = new_tracker({})
    for entry_id in ids:
        tracker.offer(ItemUpdate.successful(entry_id), 1)
    first = tracker.take_batch(3)
    assert ids_of(first) == ids[:3]
    tracker.reconcile(first, [ids[1]], [])  # ids[0] and ids[2] missing: re-queued
    second = tracker.take_batch(3)
    assert len(second) == 3
    assert set(ids_of(second)[:2]) == {ids[0], ids[2]}
    assert ids_of(second)[2] == ids[3]
    assert ids_of(tracker.take_batch(3)) == ids[4:7]


def test_send_again_later_puts_the_batch_first_without_counting_an_attempt() -> None:
    """A batch refused as a whole (413) is taken again before fresh items, attempts unchanged."""
    tracker, _ = new_tracker({}, max_attempts=1)
    for entry_id in (ID_A, ID_B, ID_C):
        tracker.offer(ItemUpdate.successful(entry_id), 1)
    batch = tracker.take_batch(2)
    tracker.send_again_later(batch)
    assert tracker.in_flight == 0
    again = tracker.take_batch(2)
    assert ids_of(again) == [ID_A, ID_B]
    assert [entry.attempts for entry in again] == [1, 1]


def test_identical_duplicates_collapse_and_conflicting_ones_raise() -> None:
    """In one call an identical update collapses and a different one raises ConflictingUpdates."""
    tracker, _ = new_tracker({})
    update = ItemUpdate.successful(ID_A, external_id="JE-1")
    assert tracker.offer(update, 1) is Offer.QUEUED
    assert tracker.offer(ItemUpdate.successful(ID_A, external_id="JE-1"), 1) is Offer.COLLAPSED
    with pytest.raises(ConflictingUpdates) as caught:
        tracker.offer(ItemUpdate.successful(ID_A, external_id="JE-2"), 1)
    assert isinstance(caught.value, InvalidInput)
    assert caught.value.field == "accounting_entry_id"
    assert caught.value.value == ID_A
    assert tracker.ready == 1
    assert tracker.entries[ID_A].update == update


def test_later_call_supersedes_an_acknowledged_failed_update() -> None:
    """A different update in a later call replaces an acknowledged `failed` one and is sent (R4)."""
    ledger: dict[str, ItemUpdate] = {}
    tracker, record = new_tracker(ledger)
    failed = ItemUpdate.failed(ID_A, reason_type="vendor_unknown")
    tracker.offer(failed, 1)
    record(tracker.reconcile(tracker.take_batch(100), [ID_A], []))
    assert tracker.offer(failed, 2) is Offer.SKIPPED
    successful = ItemUpdate.successful(ID_A)
    assert tracker.offer(successful, 3) is Offer.QUEUED
    batch = tracker.take_batch(100)
    assert [entry.update for entry in batch] == [successful]
    record(tracker.reconcile(batch, [ID_A], []))
    assert ledger[ID_A] == successful
    assert tracker.unsettled() == {}


def test_later_call_does_not_supersede_an_acknowledged_successful_update() -> None:
    """Once a `successful` update is acknowledged, every later update for the ID is skipped (R4)."""
    ledger: dict[str, ItemUpdate] = {}
    tracker, record = new_tracker(ledger)
    tracker.offer(ItemUpdate.successful(ID_A), 1)
    record(tracker.reconcile(tracker.take_batch(100), [ID_A], []))
    assert tracker.acknowledged_in_call == {ID_A: ItemStatus.SUCCESSFUL}
    for call, update in enumerate(updates_for(ID_A), start=2):
        assert tracker.offer(update, call) is Offer.SKIPPED
        assert tracker.skipped_in_call == {ID_A}
        assert tracker.acknowledged_in_call == {}
    assert tracker.take_batch(100) == []
    assert ID_A not in tracker.entries  # settled: the ledger holds it
    assert tracker.unsettled() == {}


def test_acknowledged_ids_match_in_any_case() -> None:
    """An ID Pleo writes in upper case acknowledges the canonical lower-case one that was sent."""
    tracker, _ = new_tracker({})
    tracker.offer(ItemUpdate.successful(ID_A), 1)
    tracker.offer(ItemUpdate.successful(ID_B), 1)
    outcome = tracker.reconcile(tracker.take_batch(100), [ID_A.upper(), ID_C.upper()], [])
    assert [update.accounting_entry_id for update in outcome.acknowledged] == [ID_A]
    assert tracker.acknowledged_in_call == {ID_A: ItemStatus.SUCCESSFUL}
    assert outcome.unexpected_ids == [ID_C.upper()]
    assert outcome.requeued == 1


def test_drop_ready_makes_queued_entries_unacknowledged() -> None:
    """`drop_ready` empties the queue; its entries become unacknowledged with the reason (R9)."""
    tracker, _ = new_tracker({})
    for entry_id in (ID_A, ID_B, ID_C):
        tracker.offer(ItemUpdate.successful(entry_id), 1)
    in_flight = tracker.take_batch(1)
    tracker.drop_ready("not sent: cancelled")
    assert tracker.ready == 0
    assert tracker.take_batch(100) == []
    assert tracker.in_flight == 1
    for entry_id in (ID_B, ID_C):
        assert tracker.entries[entry_id].state is EntryState.UNACKNOWLEDGED
    assert tracker.unsettled() == {
        ID_A: "in_flight",
        ID_B: "not sent: cancelled",
        ID_C: "not sent: cancelled",
    }
    tracker.reconcile(in_flight, [ID_A], [])
    assert tracker.in_flight == 0
    assert set(tracker.unsettled()) == {ID_B, ID_C}


def test_acknowledged_in_progress_is_not_settled() -> None:
    """An item acknowledged as `in_progress` still blocks completion: its status is not final."""
    tracker, _ = new_tracker({})
    tracker.offer(ItemUpdate(ID_A, ItemStatus.IN_PROGRESS), 1)
    tracker.reconcile(tracker.take_batch(100), [ID_A], [])
    assert tracker.entries[ID_A].state is EntryState.ACKNOWLEDGED
    assert set(tracker.unsettled()) == {ID_A}


# -- bugs ------------------------------------------------------------------------------------------


def _acknowledged_then_left_unacknowledged() -> tuple[ItemTracker, ItemUpdate, ItemUpdate]:
    """Call 1 gets F1 acknowledged; call 2 sends F2, which is given up: the entry holds F2."""
    ledger: dict[str, ItemUpdate] = {}
    tracker, record = new_tracker(ledger)
    first = ItemUpdate.failed(ID_A, reason_type="vendor_unknown")
    second = ItemUpdate.failed(ID_A, reason_type="tag_unknown")
    tracker.offer(first, 1)
    record(tracker.reconcile(tracker.take_batch(100), [ID_A], []))
    assert tracker.offer(second, 2) is Offer.QUEUED
    tracker.give_up(tracker.take_batch(100), "HTTP 500")
    return tracker, first, second


def test_identical_duplicate_of_a_skipped_update_collapses() -> None:
    """Offering the same already-acknowledged update twice in one call never raises (R1)."""
    tracker, first, _ = _acknowledged_then_left_unacknowledged()
    assert tracker.offer(first, 3) is Offer.SKIPPED
    assert tracker.offer(first, 3) in (Offer.COLLAPSED, Offer.SKIPPED)


def test_conflicting_duplicate_after_a_skipped_update_raises() -> None:
    """A different update after a skipped one in the same call raises ConflictingUpdates (R1)."""
    tracker, first, second = _acknowledged_then_left_unacknowledged()
    assert tracker.offer(first, 3) is Offer.SKIPPED
    with pytest.raises(ConflictingUpdates):
        tracker.offer(second, 3)


def test_skipped_because_another_run_acknowledged_it_is_settled() -> None:
    """An ID skipped because a JobRun sharing the ledger acknowledged it `successful` is settled."""
    ledger: dict[str, ItemUpdate] = {}
    tracker, _ = new_tracker(ledger)
    update = ItemUpdate.successful(ID_A)
    tracker.offer(update, 1)
    tracker.give_up(tracker.take_batch(100), "HTTP 503")
    ledger[ID_A] = update  # another JobRun sharing the ledger got it acknowledged
    assert tracker.offer(update, 2) is Offer.SKIPPED
    assert tracker.unsettled() == {}


def test_duplicate_error_for_a_requested_id_is_not_unexpected() -> None:
    """`unexpected_ids` holds only IDs that were not in the request, even if errors repeat (R3)."""
    tracker, _ = new_tracker({})
    tracker.offer(ItemUpdate.successful(ID_A), 1)
    error = ItemUpdateError(ID_A, "ACCOUNTING_ENTRY_DOES_NOT_EXIST", "gone")
    outcome = tracker.reconcile(tracker.take_batch(100), [], [error, error])
    assert tracker.entries[ID_A].state is EntryState.REJECTED
    assert outcome.unexpected_ids == []
