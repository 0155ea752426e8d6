"""Property tests of the item tracker (rules R1, R3, R4, R5, R9), driven the way a JobRun drives it.

A JobRun's `update()` call plans a batch (leftovers first), tops it up with the call's updates,
sends it, and settles it with Pleo's response (or gives it up, or sends it again later), while
other batches are in flight; when the call ends, what is still queued is dropped. The next call
starts once nothing of the previous one is in flight. Pleo is modelled by a dict of the update it
last acknowledged per ID; the report of each call is checked against a model of what an eager
report would hold, also after later calls and after the job is closed.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Sequence

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

from batching import ID_A, ID_B, ID_C, new_tracker, planned, settled
from pleo_export_async._core._batches import Batch, BatchState
from pleo_export_async._core._decision import Tally
from pleo_export_async._core._tracker import EntryState, ItemTracker, Offer
from pleo_export_async._core._views import AcknowledgedView, IdSetView
from pleo_export_async._enums import ItemFailureReasonType, ItemStatus, ItemUpdateErrorType
from pleo_export_async._errors import ConflictingUpdates, InvalidInput
from pleo_export_async._models import ItemUpdate, ItemUpdateError

TRANSIENT_TYPES = frozenset({"EXPORT_ENTRY_STATUS_UPDATE_FAILED", "ACCOUNTING_ENTRY_UPDATE_FAILED"})
DOCUMENTED_TYPES = [member.value for member in ItemUpdateErrorType]
FINAL_STATUSES = frozenset({ItemStatus.SUCCESSFUL, ItemStatus.FAILED})
#: The run's view of an ID that still needs attention (an ID settled for good has none).
UNSETTLED_STATES = frozenset({"queued", "in_flight", "unacknowledged", "acknowledged"})


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


def as_remembered(update: ItemUpdate) -> ItemStatus | ItemUpdate:
    """What the job's record returns for an acknowledged update: a successful one is its status."""
    return ItemStatus.SUCCESSFUL if update.status is ItemStatus.SUCCESSFUL else update


def tally_of(acknowledged: dict[str, ItemUpdate]) -> Tally:
    statuses = Counter(update.status for update in acknowledged.values())
    failure_types = Counter(
        update.failure_reason_type.value
        for update in acknowledged.values()
        if update.status is ItemStatus.FAILED and update.failure_reason_type is not None
    )
    return Tally(
        successful=statuses[ItemStatus.SUCCESSFUL],
        failed=statuses[ItemStatus.FAILED],
        failure_types=dict(failure_types),
    )


# -- the state machine -----------------------------------------------------------------------------


class TrackerMachine(RuleBasedStateMachine):
    """Drives one ItemTracker as a JobRun does, checking every step against a small model."""

    def __init__(self) -> None:
        super().__init__()
        self.pool: list[str] = []
        self.max_attempts = 1
        self.size = 1
        self.tracker: ItemTracker = new_tracker()
        self.pleo: dict[str, ItemUpdate] = {}  # the update Pleo last acknowledged, per ID
        self.state: dict[str, str] = {}  # the run's view of each ID that needs attention
        self.meant: dict[str, ItemUpdate] = {}  # the update the run means to send, per ID
        self.attempts: dict[str, int] = {}
        self.leftovers: set[str] = set()
        self.planning: Batch | None = None
        self.planning_ids: list[str] = []
        self.in_flight: list[Batch] = []
        self.first_offer: dict[str, tuple[ItemUpdate, Offer]] = {}  # this call's first offers
        self.call_acknowledged: dict[str, ItemStatus] = {}
        self.call_skipped: set[str] = set()
        # Reports of ended calls: they must keep showing what they showed.
        self.reports: list[tuple[AcknowledgedView, dict[str, ItemStatus], IdSetView, set[str]]] = []
        self.closed_tally: Tally | None = None

    @initialize(
        pool=st.lists(st.uuids().map(str), min_size=1, max_size=7, unique=True),
        max_attempts=st.integers(min_value=1, max_value=4),
        size=st.integers(min_value=1, max_value=6),
    )
    def start(self, pool: list[str], max_attempts: int, size: int) -> None:
        self.pool, self.max_attempts, self.size = pool, max_attempts, size
        self.tracker = new_tracker(max_attempts=max_attempts)
        self.tracker.begin_call()

    def _open(self) -> bool:
        return bool(self.pool) and self.closed_tally is None

    # -- planning and the input side -----------------------------------------------------------

    @precondition(lambda self: self._open() and self.planning is None)
    @rule()
    def plan(self) -> None:
        """A worker plans a batch: what waits to be sent again comes first (R1)."""
        batch = self.tracker.plan(self.size)
        assert batch.updates is not None
        ids = [update.accounting_entry_id for update in batch.updates]
        assert len(ids) == min(self.size, len(self.leftovers))
        assert set(ids) <= self.leftovers
        for entry_id in ids:
            assert batch.updates[ids.index(entry_id)] == self.meant[entry_id]
            self.attempts[entry_id] += 1
            self.state[entry_id] = "in_flight"
        self.leftovers -= set(ids)
        self.planning, self.planning_ids = batch, ids

    @precondition(
        lambda self: (
            self._open()
            and self.planning is not None
            and len(self.planning.updates or ()) < self.size
        )
    )
    @rule(data=st.data())
    def offer(self, data: st.DataObject) -> None:
        """The call's next update goes into the batch, is skipped (R4), collapses or raises (R1)."""
        assert self.planning is not None
        assert self.planning.updates is not None
        entry_id = data.draw(st.sampled_from(self.pool), label="entry_id")
        update = data.draw(st.sampled_from(updates_for(entry_id)), label="update")
        size_before = len(self.planning.updates)
        first = self.first_offer.get(entry_id)
        if first is not None:
            first_update, _ = first
            # Within a call, a repeat is judged against the first offer, skipped or not.
            if update == first_update:
                assert self.tracker.offer(self.planning, update) is Offer.COLLAPSED
            else:
                with pytest.raises(ConflictingUpdates) as caught:
                    self.tracker.offer(self.planning, update)
                assert isinstance(caught.value, InvalidInput)
                assert caught.value.field == "accounting_entry_id"
                assert caught.value.value == entry_id
            assert len(self.planning.updates) == size_before
            return
        acknowledged = self.pleo.get(entry_id)
        result = self.tracker.offer(self.planning, update)
        self.first_offer[entry_id] = (update, result)
        if acknowledged is not None and (
            acknowledged.status is ItemStatus.SUCCESSFUL or acknowledged == update
        ):
            # R4: an acknowledged update, or anything after an acknowledged `successful`.
            assert result is Offer.SKIPPED
            assert len(self.planning.updates) == size_before
            self.call_skipped.add(entry_id)
            if acknowledged.status in FINAL_STATUSES:
                self.state.pop(entry_id, None)
            else:
                self.state[entry_id] = "acknowledged"
                self.meant[entry_id] = acknowledged
            return
        assert result is Offer.QUEUED
        assert self.planning.updates[-1] == update
        self.planning_ids.append(entry_id)
        self.meant[entry_id] = update
        self.state[entry_id] = "in_flight"
        self.attempts[entry_id] = 1

    @precondition(lambda self: self._open() and bool(self.planning and self.planning.updates))
    @rule()
    def send(self) -> None:
        """The planned batch goes out: at most `size` IDs, none twice, nothing acknowledged."""
        batch = self.planning
        assert batch is not None
        in_flight_before = self.tracker.in_flight
        self.tracker.mark_sent(batch)
        assert batch.state is BatchState.IN_FLIGHT
        assert batch.ids == self.planning_ids
        assert len(batch.ids) <= self.size  # full batches, never larger than asked (R1)
        assert len(set(batch.ids)) == len(batch.ids)  # no ID twice in one batch (R1)
        assert batch.updates is not None
        for update in batch.updates:
            acknowledged = self.pleo.get(update.accounting_entry_id)
            # R4: never resend an acknowledged update, nor anything after a `successful` one.
            assert acknowledged is None or (
                acknowledged.status is not ItemStatus.SUCCESSFUL and acknowledged != update
            )
            assert self.attempts[update.accounting_entry_id] <= self.max_attempts
        assert self.tracker.in_flight == in_flight_before + len(batch.ids)
        self.in_flight.append(batch)
        self.planning, self.planning_ids = None, []

    # -- the response side -----------------------------------------------------------------------

    def _pop_batch(self, data: st.DataObject) -> Batch:
        index = data.draw(st.integers(0, len(self.in_flight) - 1), label="batch")
        return self.in_flight.pop(index)

    @precondition(lambda self: self._open() and bool(self.in_flight))
    @rule(data=st.data())
    def reconcile(self, data: st.DataObject) -> None:
        """Pleo's 200 settles the batch by ID (R3), errors by their kind (R5)."""
        batch = self._pop_batch(data)
        batch_ids = list(batch.ids)
        in_batch = set(batch_ids)
        others = [entry_id for entry_id in self.pool if entry_id not in in_batch]
        foreign = st.uuids().map(str).filter(lambda value: value not in in_batch)
        if others:
            foreign = st.one_of(st.sampled_from(others), foreign)

        if data.draw(st.booleans(), label="a clean answer"):
            # Pleo's usual answer: every ID, in the order sent, no errors.
            self._settle_expecting(batch, batch_ids, [], batch_ids)
            return
        acked = data.draw(st.lists(st.sampled_from(batch_ids), unique=True), label="acked")
        acknowledged_ids = acked + data.draw(st.lists(foreign, max_size=3), label="foreign")
        if acked:
            acknowledged_ids += data.draw(
                st.lists(st.sampled_from(acked), max_size=3), label="duplicates"
            )
            acknowledged_ids += data.draw(
                st.lists(st.sampled_from(acked).map(str.upper), max_size=2), label="upper case"
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
        self._settle_expecting(batch, acknowledged_ids, errors, acked)

    def _settle_expecting(
        self,
        batch: Batch,
        acknowledged_ids: list[str],
        errors: list[ItemUpdateError],
        acked: list[str],
    ) -> None:
        tracker = self.tracker
        batch_ids = list(batch.ids)
        in_batch = set(batch_ids)
        # What R3 and R5 say must happen, computed before the tracker is asked.
        error_by_id = {error.accounting_entry_id: error for error in errors}
        expected: dict[str, str] = {}
        for entry_id in batch_ids:
            budget_left = self.attempts[entry_id] < self.max_attempts
            error = error_by_id.get(entry_id)
            if error is not None:
                retry = is_transient(error.type) and budget_left
                expected[entry_id] = "queued" if retry else "rejected"
            elif entry_id in acked:
                expected[entry_id] = "acknowledged"
            else:
                expected[entry_id] = "queued" if budget_left else "unacknowledged"
        untouched = {
            entry_id: (entry.state, entry.update, entry.attempts, entry.error_type)
            for entry_id, entry in tracker.attention.items()
            if entry_id not in in_batch
        }
        in_flight_before = tracker.in_flight

        outcome = tracker.reconcile(batch, acknowledged_ids, errors)

        assert batch.state is BatchState.SETTLED
        assert batch.updates is None  # nothing per item outlives its batch
        assert outcome.acknowledged == sum(v == "acknowledged" for v in expected.values())
        assert Counter(outcome.rejected) == Counter(
            i for i, v in expected.items() if v == "rejected"
        )
        assert outcome.requeued == sum(v == "queued" for v in expected.values())
        assert outcome.given_up == sum(v == "unacknowledged" for v in expected.values())
        response_ids = list(acknowledged_ids) + [error.accounting_entry_id for error in errors]
        assert Counter(outcome.unexpected_ids) == Counter(
            entry_id for entry_id in response_ids if entry_id.lower() not in in_batch
        )
        # IDs not in the request change nothing (R3).
        assert {
            entry_id: (entry.state, entry.update, entry.attempts, entry.error_type)
            for entry_id, entry in tracker.attention.items()
            if entry_id not in in_batch
        } == untouched
        assert tracker.in_flight == in_flight_before - len(batch_ids)
        for entry_id, verdict in expected.items():
            update = self.meant[entry_id]
            entry = tracker.attention.get(entry_id)
            if verdict == "acknowledged":
                assert batch.acknowledges(entry_id)
                assert not set(error_by_id) & {entry_id}  # in data and errors: not acknowledged
                self.pleo[entry_id] = update
                self.call_acknowledged[entry_id] = update.status
                if update.status in FINAL_STATUSES:
                    assert entry is None  # settled: the batch and the job's record hold it
                    self.state.pop(entry_id, None)
                else:
                    assert entry is not None
                    assert entry.state is EntryState.ACKNOWLEDGED
                    self.state[entry_id] = "acknowledged"
                continue
            assert not batch.acknowledges(entry_id)
            assert entry is not None
            assert entry.update == update
            self.state[entry_id] = verdict
            if verdict == "rejected":
                assert entry.state is EntryState.REJECTED
                assert entry.error_type == error_by_id[entry_id].type
                assert entry.error_message == error_by_id[entry_id].message
            elif verdict == "queued":
                assert entry.state is EntryState.QUEUED
                self.leftovers.add(entry_id)
            else:
                assert entry.state is EntryState.UNACKNOWLEDGED
                assert str(self.max_attempts) in entry.error_message

    @precondition(lambda self: self._open() and bool(self.in_flight))
    @rule(data=st.data(), reason=st.sampled_from(["HTTP 400", "cancelled while in flight"]))
    def give_up(self, data: st.DataObject, reason: str) -> None:
        """A batch that will get no answer leaves its IDs unacknowledged, with the reason."""
        batch = self._pop_batch(data)
        in_flight_before = self.tracker.in_flight
        self.tracker.give_up(batch, reason)
        assert batch.state is BatchState.ABANDONED
        for entry_id in batch.ids:
            entry = self.tracker.attention[entry_id]
            assert entry.state is EntryState.UNACKNOWLEDGED
            assert entry.error_message == reason
            assert not batch.acknowledges(entry_id)
            self.state[entry_id] = "unacknowledged"
        assert self.tracker.in_flight == in_flight_before - len(batch.ids)

    @precondition(lambda self: self._open() and bool(self.in_flight))
    @rule(data=st.data())
    def send_again_later(self, data: st.DataObject) -> None:
        """A batch refused as a whole (413) goes back in line and costs no attempt."""
        batch = self._pop_batch(data)
        self.tracker.send_again_later(batch)
        for entry_id in batch.ids:
            entry = self.tracker.attention[entry_id]
            assert entry.state is EntryState.QUEUED
            self.attempts[entry_id] -= 1
            assert entry.attempts == self.attempts[entry_id]
            self.leftovers.add(entry_id)
            self.state[entry_id] = "queued"

    @precondition(lambda self: self._open() and not self.in_flight)
    @rule(reason=st.sampled_from(["not sent: the update call stopped", "not sent: cancelled"]))
    def end_call(self, reason: str) -> None:
        """The call is over: what was not sent is unacknowledged (R9), and the next call begins."""
        tracker = self.tracker
        if self.planning is not None:
            tracker.give_up(self.planning, reason)
            for entry_id in self.planning_ids:
                self.state[entry_id] = "unacknowledged"
            self.planning, self.planning_ids = None, []
        tracker.drop_ready(reason)
        assert tracker.ready == 0
        for entry_id in self.leftovers:
            entry = tracker.attention[entry_id]
            assert entry.state is EntryState.UNACKNOWLEDGED
            assert entry.error_message == reason
            self.state[entry_id] = "unacknowledged"
        self.leftovers = set()
        call = tracker.call
        self.reports.append(
            (
                AcknowledgedView(call.batches, call.acknowledged),
                dict(self.call_acknowledged),
                IdSetView(call.skipped),
                set(self.call_skipped),
            )
        )
        tracker.begin_call()
        self.first_offer, self.call_acknowledged, self.call_skipped = {}, {}, set()

    @precondition(lambda self: self._open() and not self.in_flight and self.planning is None)
    @rule()
    def close_job(self) -> None:
        """The final event is delivered: the job's per-ID state goes, its counts stay."""
        self.end_call("not sent: the update call stopped")
        acknowledgements = self.tracker.acknowledgements
        tally = acknowledgements.tally()
        acknowledgements.forget()
        assert acknowledgements.index == {}
        assert acknowledgements.forgotten
        assert acknowledgements.tally() == tally
        self.closed_tally = tally

    @precondition(lambda self: self.closed_tally is not None)
    @rule()
    def closed_job_keeps_its_counts(self) -> None:
        """A closed job holds no per-ID state and the same counts, however long it is kept."""
        acknowledgements = self.tracker.acknowledgements
        assert acknowledgements.index == {}
        assert acknowledgements.tally() == self.closed_tally

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def counts_agree(self) -> None:
        """`in_flight` and `ready` always match the batches in flight and the leftovers (R2)."""
        if not self.pool:
            return
        assert self.tracker.in_flight == sum(len(batch.ids) for batch in self.in_flight)
        assert self.tracker.ready == len(self.leftovers)

    @invariant()
    def the_job_record_holds_what_pleo_acknowledged(self) -> None:
        """The job's record says, per ID, what Pleo last acknowledged, and counts it (R4, R10)."""
        if not self._open():
            return
        acknowledgements = self.tracker.acknowledgements
        for entry_id in self.pool:
            expected = self.pleo.get(entry_id)
            remembered = acknowledgements.acknowledged(entry_id)
            assert remembered == (None if expected is None else as_remembered(expected))
        assert acknowledgements.tally() == tally_of(self.pleo)
        # One entry per ID the job has seen, and every ID needing attention among them.
        assert set(self.tracker.attention) <= set(acknowledgements.index)
        assert set(self.state) <= set(acknowledgements.index)

    @invariant()
    def only_ids_needing_attention_have_an_entry(self) -> None:
        """An ID settled for good keeps no per-ID entry in the tracker."""
        if not self._open():
            return
        in_batches = set(self.planning_ids).union(*(batch.ids for batch in self.in_flight))
        for entry_id in self.pool:
            if entry_id not in self.state and entry_id not in in_batches:
                assert entry_id not in self.tracker.attention

    @invariant()
    def unsettled_lists_exactly_the_unsettled(self) -> None:
        """With nothing planned or in flight, `unsettled()` lists the IDs not acknowledged with a
        final status nor rejected, and only those (R9)."""
        if not self._open() or self.in_flight or self.planning is not None:
            return
        unsettled = self.tracker.unsettled()
        assert set(unsettled) == {i for i, s in self.state.items() if s in UNSETTLED_STATES}
        assert all(isinstance(reason, str) and reason for reason in unsettled.values())

    @invariant()
    def the_call_report_shows_what_an_eager_report_would(self) -> None:
        """The lazy views of the current call equal the model's acknowledged and skipped IDs."""
        if not self._open():
            return
        call = self.tracker.call
        view = AcknowledgedView(call.batches, call.acknowledged)
        assert view == self.call_acknowledged
        assert len(view) == len(self.call_acknowledged)
        assert set(IdSetView(call.skipped)) == self.call_skipped

    @invariant()
    def reports_never_change(self) -> None:
        """A call's report shows the same after later calls, and after the job is closed."""
        for view, expected, skipped, expected_skipped in self.reports:
            assert dict(view) == expected
            assert len(view) == len(expected)
            assert set(skipped) == expected_skipped

    def teardown(self) -> None:
        """Settle everything still in flight, as a JobRun's call does before it returns."""
        if not self._open():
            return
        tracker = self.tracker
        for batch in self.in_flight:
            tracker.reconcile(batch, list(batch.ids), [])
        if self.planning is not None:
            tracker.give_up(self.planning, "not sent: the update call stopped")
        while True:
            batch = tracker.plan(100)
            if not batch.updates:
                break
            tracker.mark_sent(batch)
            tracker.reconcile(batch, list(batch.ids), [])
        assert tracker.in_flight == 0
        assert tracker.ready == 0
        assert all(
            entry.state in (EntryState.ACKNOWLEDGED, EntryState.REJECTED, EntryState.UNACKNOWLEDGED)
            for entry in tracker.attention.values()
        )


def test_tracker_state_machine() -> None:
    """Any JobRun-like sequence of offers, batches, responses, calls and a close keeps R1, R3,
    R4, R5 and R9, and every report shows what an eager one would, for good."""
    run_state_machine_as_test(
        TrackerMachine,
        settings=settings(max_examples=200, stateful_step_count=50, deadline=None),
    )


# -- focused properties ----------------------------------------------------------------------------


def _outcome_of(
    ids: Sequence[str], acknowledged: Sequence[str], errors: Sequence[ItemUpdateError]
) -> tuple[dict[str, object], set[str], set[str], int, int]:
    tracker = new_tracker(max_attempts=2)
    tracker.begin_call()
    batch = planned(tracker, [ItemUpdate.successful(entry_id) for entry_id in ids])
    outcome = tracker.reconcile(batch, acknowledged, errors)
    return (
        {entry_id: entry.state for entry_id, entry in tracker.attention.items()},
        set(batch.acknowledged_ids()),
        set(outcome.rejected),
        outcome.requeued,
        outcome.given_up,
    )


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
    forward = _outcome_of(ids, acked, errors)
    assert _outcome_of(ids[::-1], acked[::-1], errors[::-1]) == forward
    shuffled = data.draw(st.permutations(ids))
    assert (
        _outcome_of(shuffled, data.draw(st.permutations(acked)), data.draw(st.permutations(errors)))
        == forward
    )
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
    tracker = new_tracker(max_attempts=max_attempts)
    tracker.begin_call()
    batch = planned(tracker, [ItemUpdate.successful(ID_A)])
    for attempt in range(1, max_attempts + 1):
        assert batch.ids == [ID_A]
        outcome = tracker.reconcile(batch, [], [ItemUpdateError(ID_A, error_type, "busy")])
        if attempt < max_attempts:
            assert outcome.requeued == 1
            assert tracker.attention[ID_A].state is EntryState.QUEUED
            batch = planned(tracker, [])
        else:
            assert outcome.requeued == 0
            assert outcome.rejected == [ID_A]
    entry = tracker.attention[ID_A]
    assert entry.state is EntryState.REJECTED
    assert entry.attempts == max_attempts
    assert (entry.error_type, entry.error_message) == (error_type, "busy")
    assert tracker.plan(100).updates == []


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
    tracker = new_tracker(max_attempts=max_attempts)
    settled(tracker, [ItemUpdate.successful(ID_A)], [], [ItemUpdateError(ID_A, error_type)])
    assert tracker.attention[ID_A].state is EntryState.REJECTED
    assert tracker.ready == 0
    assert tracker.unsettled() == {}


@pytest.mark.parametrize("max_attempts", [1, 2, 4])
def test_missing_id_is_resent_until_the_budget_then_unacknowledged(max_attempts: int) -> None:
    """An ID in neither `data` nor `errors` is resent until max_attempts, then unacknowledged."""
    tracker = new_tracker(max_attempts=max_attempts)
    tracker.begin_call()
    batch = planned(tracker, [ItemUpdate.successful(ID_A)])
    sends = 0
    while batch.ids:
        sends += 1
        tracker.reconcile(batch, [], [])
        batch = planned(tracker, [])
    assert sends == max_attempts
    entry = tracker.attention[ID_A]
    assert entry.state is EntryState.UNACKNOWLEDGED
    assert str(max_attempts) in tracker.unsettled()[ID_A]


def test_leftovers_are_repacked_with_fresh_items_into_full_batches() -> None:
    """Items a response left out go first in the next batch, topped up with fresh items (R1)."""
    ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(7)]
    tracker = new_tracker()
    tracker.begin_call()
    first = planned(tracker, [ItemUpdate.successful(i) for i in ids[:3]], size=3)
    tracker.reconcile(first, [ids[1]], [])  # ids[0] and ids[2] missing: re-queued
    second = planned(tracker, [ItemUpdate.successful(ids[3])], size=3)
    assert len(second.ids) == 3
    assert set(second.ids[:2]) == {ids[0], ids[2]}
    assert second.ids[2] == ids[3]
    assert not second.fresh  # it carries IDs that needed attention


def test_send_again_later_puts_the_batch_first_without_counting_an_attempt() -> None:
    """A batch refused as a whole (413) is taken again before fresh items, attempts unchanged."""
    tracker = new_tracker(max_attempts=1)
    tracker.begin_call()
    batch = planned(tracker, [ItemUpdate.successful(ID_A), ItemUpdate.successful(ID_B)], size=2)
    tracker.send_again_later(batch)
    assert tracker.in_flight == 0
    again = planned(tracker, [], size=2)
    assert again.ids == [ID_A, ID_B]
    assert [tracker.attention[i].attempts for i in again.ids] == [1, 1]


def test_identical_duplicates_collapse_and_conflicting_ones_raise() -> None:
    """In one call an identical update collapses and a different one raises ConflictingUpdates."""
    tracker = new_tracker()
    tracker.begin_call()
    batch = tracker.plan(100)
    update = ItemUpdate.successful(ID_A, external_id="JE-1")
    assert tracker.offer(batch, update) is Offer.QUEUED
    assert tracker.offer(batch, ItemUpdate.successful(ID_A, external_id="JE-1")) is Offer.COLLAPSED
    with pytest.raises(ConflictingUpdates) as caught:
        tracker.offer(batch, ItemUpdate.successful(ID_A, external_id="JE-2"))
    assert caught.value.field == "accounting_entry_id"
    assert caught.value.value == ID_A
    assert batch.updates == [update]


@pytest.mark.parametrize(
    "repeat",
    [
        ItemUpdate.successful(ID_A, external_id="JE-2"),
        ItemUpdate.successful(ID_A, external_id="JE-1", external_url="https://erp.example.com/1"),
        ItemUpdate.failed(ID_A, reason_type="unexpected_failure"),
    ],
)
def test_a_conflicting_repeat_after_the_first_was_acknowledged_raises(repeat: ItemUpdate) -> None:
    """A repeat in the same call, after its first offer was acknowledged and its update let go,
    is still told apart from the first by the batch's fingerprint (R1)."""
    tracker = new_tracker()
    first = ItemUpdate.successful(ID_A, external_id="JE-1")
    batch = settled(tracker, [first])
    assert batch.updates is None
    later = planned(tracker, [])  # the same call goes on
    assert tracker.offer(later, ItemUpdate.successful(ID_A, external_id="JE-1")) is Offer.COLLAPSED
    with pytest.raises(ConflictingUpdates, match="an earlier one"):
        tracker.offer(later, repeat)


def test_later_call_supersedes_an_acknowledged_failed_update() -> None:
    """A different update in a later call replaces an acknowledged `failed` one and is sent (R4)."""
    tracker = new_tracker()
    failed = ItemUpdate.failed(ID_A, reason_type="vendor_unknown")
    settled(tracker, [failed])
    skipped = settled(tracker, [failed])
    assert skipped.ids == []  # skipped: nothing to send
    assert ID_A in tracker.call.skipped
    successful = ItemUpdate.successful(ID_A)
    tracker.begin_call()
    batch = planned(tracker, [successful])
    assert batch.ids == [ID_A]
    # Until the new update is acknowledged, the job's record keeps the acknowledged failure.
    assert tracker.acknowledgements.acknowledged(ID_A) == failed
    tracker.reconcile(batch, [ID_A], [])
    assert tracker.acknowledgements.acknowledged(ID_A) is ItemStatus.SUCCESSFUL
    assert tracker.acknowledgements.tally() == Tally(successful=1)
    assert tracker.unsettled() == {}


def test_later_call_does_not_supersede_an_acknowledged_successful_update() -> None:
    """Once a `successful` update is acknowledged, every later update for the ID is skipped (R4)."""
    tracker = new_tracker()
    settled(tracker, [ItemUpdate.successful(ID_A)])
    for update in updates_for(ID_A):
        tracker.drop_ready("next call")
        tracker.begin_call()
        batch = tracker.plan(100)
        assert tracker.offer(batch, update) is Offer.SKIPPED
        assert set(tracker.call.skipped) == {ID_A}
        assert batch.updates == []
    assert ID_A not in tracker.attention  # settled: the job's record holds it
    assert tracker.unsettled() == {}


def test_acknowledged_ids_match_in_any_case() -> None:
    """An ID Pleo writes in upper case acknowledges the canonical lower-case one that was sent."""
    tracker = new_tracker()
    tracker.begin_call()
    batch = planned(tracker, [ItemUpdate.successful(ID_A), ItemUpdate.successful(ID_B)])
    outcome = tracker.reconcile(batch, [ID_A.upper(), ID_C.upper()], [])
    assert list(batch.acknowledged_ids()) == [ID_A]
    assert AcknowledgedView(tracker.call.batches, tracker.call.acknowledged) == {
        ID_A: ItemStatus.SUCCESSFUL
    }
    assert outcome.unexpected_ids == [ID_C.upper()]
    assert outcome.requeued == 1


def test_a_fully_acknowledged_fresh_batch_keeps_nothing_per_item() -> None:
    """When Pleo acknowledges every ID of a batch of new IDs, the tracker keeps no entry for
    them and the batch keeps no update, only the IDs and their fingerprints."""
    tracker = new_tracker()
    ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(50)]
    batch = settled(tracker, [ItemUpdate.successful(i, external_id=f"JE-{i}") for i in ids])
    assert batch.fresh
    assert batch.acknowledged_all
    assert batch.updates is None
    assert batch.others == {}
    assert tracker.attention == {}
    assert all(tracker.acknowledgements.index[i] is batch for i in ids)


def test_drop_ready_makes_queued_entries_unacknowledged() -> None:
    """When the call stops, what waits to be sent again becomes unacknowledged (R9)."""
    tracker = new_tracker()
    tracker.begin_call()
    batch = planned(tracker, [ItemUpdate.successful(i) for i in (ID_A, ID_B, ID_C)])
    tracker.reconcile(batch, [ID_A], [])
    tracker.drop_ready("not sent: cancelled")
    assert tracker.ready == 0
    assert tracker.plan(100).updates == []
    assert tracker.unsettled() == {ID_B: "not sent: cancelled", ID_C: "not sent: cancelled"}


def test_acknowledged_in_progress_is_not_settled() -> None:
    """An item acknowledged as `in_progress` still blocks completion: its status is not final."""
    tracker = new_tracker()
    settled(tracker, [ItemUpdate(ID_A, ItemStatus.IN_PROGRESS)])
    assert tracker.attention[ID_A].state is EntryState.ACKNOWLEDGED
    assert set(tracker.unsettled()) == {ID_A}


def test_an_element_that_is_not_an_item_update_is_named_by_its_position() -> None:
    """A stray element of the input raises InvalidInput naming its position in the call."""
    tracker = new_tracker()
    tracker.begin_call()
    batch = tracker.plan(100)
    source = iter([ItemUpdate.successful(ID_A), ItemUpdate.successful(ID_B), {"id": ID_C}])
    with pytest.raises(InvalidInput) as raised:
        tracker.fill(batch, source, 100)
    assert raised.value.field == "updates[2]"


def test_fill_stops_when_the_batch_is_full_or_the_source_runs_out() -> None:
    """`fill` pulls no more than the batch needs, and says when the source is exhausted."""
    tracker = new_tracker()
    tracker.begin_call()
    ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(5)]
    source = iter([ItemUpdate.successful(i) for i in ids])
    first = tracker.plan(3)
    assert tracker.fill(first, source, 3) is True
    assert [u.accounting_entry_id for u in first.updates or ()] == ids[:3]
    second = tracker.plan(3)
    assert tracker.fill(second, source, 3) is False
    assert [u.accounting_entry_id for u in second.updates or ()] == ids[3:]
    assert tracker.call.pulled == 5


# -- bugs ------------------------------------------------------------------------------------------


def _acknowledged_then_left_unacknowledged() -> tuple[ItemTracker, ItemUpdate, ItemUpdate]:
    """Call 1 gets F1 acknowledged; call 2 sends F2, which is given up: the entry holds F2."""
    tracker = new_tracker()
    first = ItemUpdate.failed(ID_A, reason_type="vendor_unknown")
    second = ItemUpdate.failed(ID_A, reason_type="tag_unknown")
    settled(tracker, [first])
    tracker.begin_call()
    batch = planned(tracker, [second])
    assert batch.ids == [ID_A]
    tracker.give_up(batch, "HTTP 500")
    tracker.begin_call()
    return tracker, first, second


def test_identical_duplicate_of_a_skipped_update_collapses() -> None:
    """Offering the same already-acknowledged update twice in one call never raises (R1)."""
    tracker, first, _ = _acknowledged_then_left_unacknowledged()
    batch = tracker.plan(100)
    assert tracker.offer(batch, first) is Offer.SKIPPED
    assert tracker.offer(batch, first) is Offer.COLLAPSED


def test_conflicting_duplicate_after_a_skipped_update_raises() -> None:
    """A different update after a skipped one in the same call raises ConflictingUpdates (R1)."""
    tracker, first, second = _acknowledged_then_left_unacknowledged()
    batch = tracker.plan(100)
    assert tracker.offer(batch, first) is Offer.SKIPPED
    with pytest.raises(ConflictingUpdates):
        tracker.offer(batch, second)


def test_skipped_because_another_run_acknowledged_it_is_settled() -> None:
    """An ID skipped because a JobRun sharing the job's record acknowledged it is settled."""
    tracker = new_tracker()
    update = ItemUpdate.successful(ID_A)
    tracker.begin_call()
    tracker.give_up(planned(tracker, [update]), "HTTP 503")
    other_run = new_tracker(tracker.acknowledgements)
    settled(other_run, [update])
    tracker.begin_call()
    assert tracker.offer(tracker.plan(100), update) is Offer.SKIPPED
    assert tracker.unsettled() == {}


def test_duplicate_error_for_a_requested_id_is_not_unexpected() -> None:
    """`unexpected_ids` holds only IDs that were not in the request, even if errors repeat (R3)."""
    tracker = new_tracker()
    tracker.begin_call()
    batch = planned(tracker, [ItemUpdate.successful(ID_A)])
    error = ItemUpdateError(ID_A, "ACCOUNTING_ENTRY_DOES_NOT_EXIST", "gone")
    outcome = tracker.reconcile(batch, [], [error, error])
    assert tracker.attention[ID_A].state is EntryState.REJECTED
    assert outcome.unexpected_ids == []


def test_a_call_checked_whole_keeps_no_fingerprints_and_collapses_repeats() -> None:
    """When the call's input was checked whole (a list), a settled batch keeps no fingerprints,
    and a repeat of an acknowledged ID, necessarily identical, collapses."""
    tracker = new_tracker()
    tracker.begin_call(checked=True)
    update = ItemUpdate.successful(ID_A, external_id="JE-1")
    batch = planned(tracker, [update])
    tracker.reconcile(batch, [ID_A], [])
    assert batch.fingerprints is None
    later = planned(tracker, [])
    assert tracker.offer(later, ItemUpdate.successful(ID_A, external_id="JE-1")) is Offer.COLLAPSED
    assert later.updates == []
