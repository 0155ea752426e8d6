"""The item tracker: what one JobRun sends next, and what Pleo's answers settle (rules R1, R3,
R4, R5, R9). No I/O: the JobRun feeds it the input of `update()` and Pleo's answers.

Bookkeeping is per batch (see `_batches`). An ID new to the job costs one entry in the job's
index (`_acknowledgements`), pointing at the batch that carries it, and nothing else: when Pleo
acknowledges the whole batch, one flag on the batch settles all its IDs. The tracker keeps a
per-ID `Entry` only while an ID needs attention: sent again, superseding an acknowledged
update, rejected, left unacknowledged, or acknowledged with a status that is not final.

    offer ──► in a batch ──sent──► IN_FLIGHT ──reconcile──► acknowledged (the batch says so)
                 ▲                      │                 ├─► REJECTED (permanent item error)
                 └─ QUEUED: not acknowledged, budget left ◄┤
                                                          └─► UNACKNOWLEDGED (budget spent/stopped)
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice

import attrs

from pleo_export_async._enums import ItemStatus
from pleo_export_async._errors import ConflictingUpdates, InvalidInput
from pleo_export_async._models import ItemUpdate, ItemUpdateError

from ._acknowledgements import Acknowledgements
from ._batches import Batch, BatchState, offer_fingerprint
from ._classify import ItemErrorKind


class EntryState(enum.Enum):
    QUEUED = "queued"  # waiting to be sent again
    IN_FLIGHT = "in_flight"  # in a batch being filled or sent
    ACKNOWLEDGED = "acknowledged"  # with a status that is not final (pending, in_progress)
    REJECTED = "rejected"
    UNACKNOWLEDGED = "unacknowledged"


_REJECTED = EntryState.REJECTED


class Offer(enum.Enum):
    QUEUED = "queued"
    SKIPPED = "skipped"  # already acknowledged (R4)
    COLLAPSED = "collapsed"  # an identical update for this ID is already in this call


@attrs.define(slots=True, eq=False)
class Entry:
    """An ID that needs attention, with the update this run means to send for it."""

    update: ItemUpdate
    state: EntryState
    call: object  # the CallRecord of the update() call that last offered the ID
    attempts: int = 0
    error_type: str | None = None
    error_message: str = ""


class CallRecord:
    """What one `update()` call did; its identity tells the call's batches and entries apart."""

    __slots__ = ("acknowledged", "batches", "checked", "pulled", "skipped")

    def __init__(self, checked: bool = False) -> None:
        #: The whole input was checked before the call began: no two different updates for one
        #: ID (R1), so a repeat needs no comparing, and settled batches keep no fingerprints.
        self.checked = checked
        self.batches: list[Batch] = []  # the call's batches that got something acknowledged
        self.acknowledged = 0
        #: IDs the call skipped as already acknowledged, with the fingerprint of what it offered.
        self.skipped: dict[str, int] = {}
        self.pulled = 0  # elements read from the input, to name a bad one by its position


@attrs.frozen
class BatchOutcome:
    """What one 200 PUT response settled, for the log and the call's counts."""

    acknowledged: int
    rejected: list[str]
    requeued: int  # IDs to send again: missing from the response or a transient error
    given_up: int  # IDs left unacknowledged because their attempts ran out
    unexpected_ids: list[str]  # IDs in the response that were not in the request


_FINAL = frozenset({ItemStatus.SUCCESSFUL, ItemStatus.FAILED})
#: States of an ID whose update may have landed at Pleo without this run knowing.
_UNSURE = frozenset({EntryState.UNACKNOWLEDGED, EntryState.REJECTED})
_SUCCESSFUL_STATUS = ItemStatus.SUCCESSFUL
_ACKNOWLEDGE, _RETRY, _REJECT = 1, 2, 3
_END = object()


class ItemTracker:
    """The states of the items one JobRun submits to one job.

    `acknowledgements` is the job's record in the ledger, shared by every JobRun of the ledger;
    JobRuns of one job take turns, so nothing changes it while this tracker is at work.
    """

    def __init__(
        self,
        acknowledgements: Acknowledgements,
        classify_error: Callable[[str], ItemErrorKind],
        max_attempts: int,
    ) -> None:
        self.acknowledgements = acknowledgements
        self._classify_error = classify_error
        self._max_attempts = max_attempts
        self.attention: dict[str, Entry] = {}
        self._leftovers: deque[Entry] = deque()
        self.call = CallRecord()
        self.in_flight = 0  # items in batches sent and not yet settled

    @property
    def ready(self) -> int:
        """How many IDs wait to be sent again."""
        return len(self._leftovers)

    def begin_call(self, checked: bool = False) -> CallRecord:
        """Start the record of the next `update()` call; calls run one after another.

        `checked`: the caller has made sure the call's input holds no conflicting updates."""
        assert not self.in_flight, "the previous call has batches in flight"
        assert not self._leftovers, "the previous call left IDs queued"
        self.call = CallRecord(checked)
        return self.call

    # -- planning ------------------------------------------------------------------------------

    def plan(self, size: int) -> Batch:
        """A new batch of the current call, holding up to `size` of the IDs to send again.

        `fill` or `offer` then tops it up with fresh updates (R1: leftovers are re-packed with
        fresh items into full batches).
        """
        batch = Batch(self.call)
        leftovers = self._leftovers
        if leftovers:
            batch.fresh = False
            assert batch.updates is not None
            index = self.acknowledgements.index
            while leftovers and len(batch.updates) < size:
                entry = leftovers.popleft()
                entry.state = EntryState.IN_FLIGHT
                entry.attempts += 1
                batch.updates.append(entry.update)
                self._file(index, entry.update.accounting_entry_id, batch)
        return batch

    def fill(self, batch: Batch, source: Iterator[object], size: int) -> bool:
        """Pull updates from `source` into `batch` until it holds `size`; False once `source`
        is exhausted.

        The hot loop of `update()`: an ItemUpdate for an ID the job has never seen costs one
        index entry and one list slot. Anything else goes through `offer_pulled`.
        """
        updates = batch.updates
        assert updates is not None
        append = updates.append
        index = self.acknowledgements.index
        call = self.call
        while (wanted := size - len(updates)) > 0:
            first = position = call.pulled
            for position, update in enumerate(islice(source, wanted), first + 1):
                if (
                    type(update) is not ItemUpdate
                    or (entry_id := update.accounting_entry_id) in index
                ):
                    call.pulled = position - 1
                    self.offer_pulled(batch, update)
                    continue
                index[entry_id] = batch
                append(update)
            call.pulled = position
            if position - first < wanted:
                return False  # the source ran out
        return True

    def offer_pulled(self, batch: Batch, update: object) -> Offer:
        """Offer the next element of the call's input, which may not be an ItemUpdate at all."""
        if not isinstance(update, ItemUpdate):
            raise InvalidInput(f"updates[{self.call.pulled}]", update, "not an ItemUpdate")
        self.call.pulled += 1
        return self.offer(batch, update)

    def offer(self, batch: Batch, update: ItemUpdate) -> Offer:
        """Take one update of the current call into `batch`, skip it, or collapse it (R1, R4)."""
        call = self.call
        entry_id = update.accounting_entry_id
        index = self.acknowledgements.index
        carrier = index.get(entry_id)
        if carrier is None:
            index[entry_id] = batch
            assert batch.updates is not None
            batch.updates.append(update)
            return Offer.QUEUED
        entry = self.attention.get(entry_id)
        # A repeat within this call is judged against the call's first offer of the ID.
        if entry is not None and entry.call is call:
            return _repeat(entry_id, entry.update, update)
        skipped = call.skipped.get(entry_id)
        if skipped is not None:
            if offer_fingerprint(update) == skipped:
                return Offer.COLLAPSED
            raise ConflictingUpdates(entry_id, None, update)
        if carrier.call is call:
            if carrier.state is BatchState.PLANNED or carrier.state is BatchState.IN_FLIGHT:
                first = carrier.planned_update(entry_id)
                assert first is not None, "an ID points at a batch that carries it"
                return _repeat(entry_id, first, update)
            # What this call sent and Pleo did not acknowledge has an entry (above).
            assert carrier.acknowledges(entry_id)
            if call.checked or carrier.holds_same(entry_id, update):
                return Offer.COLLAPSED
            earlier = carrier.acknowledged_update(entry_id)
            raise ConflictingUpdates(
                entry_id, earlier if isinstance(earlier, ItemUpdate) else None, update
            )
        # The call's first offer of an ID the job has seen before.
        if carrier.acknowledges(entry_id):
            acknowledged = carrier.acknowledged_update(entry_id)
            if acknowledged is ItemStatus.SUCCESSFUL or acknowledged == update:
                # Pleo holds the acknowledged update (perhaps from another JobRun sharing the
                # ledger): whatever this run left the ID as, it is settled.
                call.skipped[entry_id] = offer_fingerprint(update)
                if isinstance(acknowledged, ItemUpdate) and acknowledged.status not in _FINAL:
                    self._attend(entry, entry_id, acknowledged, EntryState.ACKNOWLEDGED)
                elif entry is not None:
                    del self.attention[entry_id]
                return Offer.SKIPPED
            # R4 lets a different update replace an acknowledged failed one. The index keeps
            # pointing at the acknowledged one until the new one is acknowledged.
        else:
            # Rejected, unacknowledged or given up before: nothing acknowledged to keep.
            index[entry_id] = batch
        self._attend(entry, entry_id, update, EntryState.IN_FLIGHT).attempts = 1
        batch.fresh = False
        assert batch.updates is not None
        batch.updates.append(update)
        return Offer.QUEUED

    def mark_sent(self, batch: Batch) -> None:
        batch.mark_sent()
        self.in_flight += len(batch.ids)

    # -- answers ---------------------------------------------------------------------------------

    def reconcile(
        self,
        batch: Batch,
        acknowledged_ids: Sequence[str],
        errors: Iterable[ItemUpdateError],
    ) -> BatchOutcome:
        """Settle a sent batch from a 200 PUT response, matching by ID, never by position (R3).

        An ID in `errors` is not acknowledged even if it is also in `data`: resending is safe,
        believing a refused update landed is not.
        """
        ids = batch.ids
        self.in_flight -= len(ids)
        if batch.fresh and not errors and acknowledged_ids == ids:
            # Every ID acknowledged, each new to the job: nothing to do per successful ID.
            batch.settle(None, fingerprinted=not self.call.checked)
            for entry_id, update in batch.others.items():
                if update.status not in _FINAL:  # acknowledged, but blocking completion (R9)
                    self._attend(None, entry_id, update, EntryState.ACKNOWLEDGED)
            self.acknowledgements.add(batch)
            self._note_settled(batch)
            return BatchOutcome(len(ids), [], 0, 0, [])
        return self._reconcile_each(batch, acknowledged_ids, errors)

    def _reconcile_each(
        self,
        batch: Batch,
        acknowledged_ids: Sequence[str],
        errors: Iterable[ItemUpdateError],
    ) -> BatchOutcome:
        ids, updates = batch.ids, batch.updates
        assert updates is not None
        attention = self.attention
        position = {entry_id: i for i, entry_id in enumerate(ids)}
        verdicts: list[int] = [0] * len(ids)
        error_of: dict[int, ItemUpdateError] = {}
        unexpected: list[str] = []
        for error in errors:
            i = position.get(error.accounting_entry_id)  # the codec lower-cases error IDs
            if i is None:
                unexpected.append(error.accounting_entry_id)
                continue
            if verdicts[i]:
                continue  # a second error for the same ID
            error_of[i] = error
            transient = self._classify_error(error.type) is ItemErrorKind.TRANSIENT
            if transient and self._attempts(ids[i]) < self._max_attempts:
                verdicts[i] = _RETRY
            else:
                verdicts[i] = _REJECT
        for entry_id in acknowledged_ids:
            i = position.get(entry_id)
            if i is None:
                # Our IDs are canonical (lower case); Pleo's answer may not be.
                i = position.get(entry_id.lower())
                if i is None:
                    unexpected.append(entry_id)
                    continue
            if not verdicts[i]:  # not acknowledged twice, nor both refused and acknowledged
                verdicts[i] = _ACKNOWLEDGE
        acknowledged = [ids[i] for i, verdict in enumerate(verdicts) if verdict == _ACKNOWLEDGE]
        rejected: list[str] = []
        requeued = given_up = 0
        for i, verdict in enumerate(verdicts):
            entry_id, update = ids[i], updates[i]
            entry = attention.get(entry_id)
            if verdict == _ACKNOWLEDGE:
                if update.status in _FINAL:
                    if entry is not None:
                        del attention[entry_id]
                else:
                    self._attend(entry, entry_id, update, EntryState.ACKNOWLEDGED)
                continue
            if entry is None:
                entry = attention[entry_id] = Entry(update, EntryState.IN_FLIGHT, batch.call, 1)
            refusal = error_of.get(i)
            if refusal is not None:
                entry.error_type, entry.error_message = refusal.type, refusal.message
            if verdict == _REJECT:
                entry.state = EntryState.REJECTED
                rejected.append(entry_id)
            elif verdict == _RETRY or entry.attempts < self._max_attempts:
                entry.state = EntryState.QUEUED
                self._leftovers.appendleft(entry)
                requeued += 1
            else:
                entry.state = EntryState.UNACKNOWLEDGED
                entry.error_message = f"not acknowledged by Pleo after {entry.attempts} attempts"
                given_up += 1
        batch.settle(acknowledged, fingerprinted=not self.call.checked)
        if acknowledged:
            self.acknowledgements.add(batch)
            self._note_settled(batch)
        return BatchOutcome(len(acknowledged), rejected, requeued, given_up, unexpected)

    def send_again_later(self, batch: Batch) -> None:
        """Put a batch refused as a whole (e.g. 413) back in line, no attempt counted."""
        assert batch.updates is not None
        for update in reversed(batch.updates):
            entry = self._entry_for(batch, update)
            entry.attempts -= 1
            entry.state = EntryState.QUEUED
            self._leftovers.appendleft(entry)
        self._abandon(batch)

    def give_up(self, batch: Batch, reason: str) -> None:
        """The batch will get no answer (its request failed for good, was cancelled, or was
        never sent): its IDs are unacknowledged."""
        if batch.updates is None:
            return  # settled or given up already
        for update in batch.updates:
            entry = self._entry_for(batch, update)
            entry.state = EntryState.UNACKNOWLEDGED
            entry.error_message = reason
        self._abandon(batch)

    def drop_ready(self, reason: str) -> None:
        """The call stopped: what was waiting to be sent again is unacknowledged."""
        while self._leftovers:
            entry = self._leftovers.popleft()
            entry.state = EntryState.UNACKNOWLEDGED
            entry.error_message = reason

    def record_landed(self, updates: Sequence[ItemUpdate]) -> Batch:
        """Pleo was found to hold these updates (reconciliation): a settled batch records them.

        An ID rejected by a resend (Pleo refuses to rewrite an item whose first send landed
        unconfirmed) is settled as acknowledged too: Pleo holds its update."""
        batch = Batch(None, list(updates))
        batch.fresh = False
        batch.mark_sent()
        for update in updates:
            entry_id = update.accounting_entry_id
            entry = self.attention.get(entry_id)
            if entry is not None and entry.state in _UNSURE:
                if entry.update == update and update.status in _FINAL:
                    del self.attention[entry_id]
                elif entry.update == update:
                    entry.state = EntryState.ACKNOWLEDGED
                    entry.error_message = ""
        batch.settle(None)
        self.acknowledgements.add(batch)
        return batch

    def catch_up(self) -> int:
        """The job's acknowledgements were read again (another process worked the job): what
        they now hold for an ID this tracker was still attending to settles that ID. Returns
        how many were settled so."""
        acknowledgements = self.acknowledgements
        settled = 0
        for entry_id, entry in list(self.attention.items()):
            acknowledged = acknowledgements.acknowledged(entry_id)
            if acknowledged is None:
                continue
            update = entry.update
            if acknowledged is _SUCCESSFUL_STATUS:
                held = update.status is _SUCCESSFUL_STATUS
            else:
                held = acknowledged == update
            if not held:
                continue  # this run's update for the ID is newer than what was acknowledged
            settled += 1
            if update.status in _FINAL:
                del self.attention[entry_id]
            else:
                entry.state = EntryState.ACKNOWLEDGED
                entry.error_message = ""
        return settled

    # -- what is left --------------------------------------------------------------------------

    def unsettled(self) -> dict[str, str]:
        """IDs not yet acknowledged with a final status nor rejected, with the reason (R9)."""
        unsettled: dict[str, str] = {}
        for entry_id, entry in self.attention.items():
            state = entry.state
            if state is EntryState.REJECTED:
                continue
            if state is EntryState.ACKNOWLEDGED:
                unsettled[entry_id] = f"acknowledged as {entry.update.status.value}, not final"
            else:
                unsettled[entry_id] = entry.error_message or state.value
        return unsettled

    def unacknowledged_updates(self) -> dict[str, ItemUpdate]:
        return {
            entry_id: entry.update
            for entry_id, entry in self.attention.items()
            if entry.state is EntryState.UNACKNOWLEDGED
        }

    def rejected(self) -> list[tuple[str, Entry]]:
        return [(i, entry) for i, entry in self.attention.items() if entry.state is _REJECTED]

    def rejections(self) -> Iterator[tuple[str, str | None]]:
        """The rejected IDs, each with Pleo's error type: what the job's tally is made from."""
        return (
            (i, entry.error_type) for i, entry in self.attention.items() if entry.state is _REJECTED
        )

    def entries_of(self, call: CallRecord) -> Iterator[tuple[str, Entry]]:
        """The entries `update()` call `call` left needing attention."""
        return ((i, entry) for i, entry in self.attention.items() if entry.call is call)

    # -- helpers -------------------------------------------------------------------------------

    def _attempts(self, entry_id: str) -> int:
        entry = self.attention.get(entry_id)
        return 1 if entry is None else entry.attempts

    def _attend(
        self, entry: Entry | None, entry_id: str, update: ItemUpdate, state: EntryState
    ) -> Entry:
        """The ID's entry for the current call, made afresh."""
        if entry is None:
            entry = self.attention[entry_id] = Entry(update, state, self.call)
            return entry
        entry.update = update
        entry.state = state
        entry.call = self.call
        entry.attempts = 0
        entry.error_type = None
        entry.error_message = ""
        return entry

    def _entry_for(self, batch: Batch, update: ItemUpdate) -> Entry:
        """The entry of an update in a batch that will not be settled, made if it was fresh."""
        entry_id = update.accounting_entry_id
        entry = self.attention.get(entry_id)
        if entry is None:
            entry = self.attention[entry_id] = Entry(update, EntryState.IN_FLIGHT, batch.call, 1)
        return entry

    def _abandon(self, batch: Batch) -> None:
        if batch.state is BatchState.IN_FLIGHT:
            self.in_flight -= len(batch.ids)
        batch.abandon()

    @staticmethod
    def _file(index: dict[str, Batch], entry_id: str, batch: Batch) -> None:
        """Point an ID at the batch now carrying it, unless an acknowledgement must stay found."""
        carrier = index.get(entry_id)
        if carrier is None or not carrier.acknowledges(entry_id):
            index[entry_id] = batch

    def _note_settled(self, batch: Batch) -> None:
        call = batch.call
        if isinstance(call, CallRecord):
            call.batches.append(batch)
            call.acknowledged += batch.acknowledged_count


def _repeat(entry_id: str, first: ItemUpdate, update: ItemUpdate) -> Offer:
    if first == update:
        return Offer.COLLAPSED
    raise ConflictingUpdates(entry_id, first, update)
