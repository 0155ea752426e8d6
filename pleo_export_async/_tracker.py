"""The item tracker: each accountingEntryId's state in one JobRun, batch planning and the
reconciliation of PUT responses by ID (rules R1, R3, R4, R5). No I/O: the JobRun feeds it what it
pulled from the input and what Pleo answered, and asks it what to send next.

An entry lives while its ID needs attention; once Pleo acknowledges a final status the ledger
holds that fact, and the tracker keeps only the ID in the call's report. A million acknowledged
items thus leave no per-item objects for the garbage collector to walk on every pass.

    offer ──► QUEUED ──take_batch──► IN_FLIGHT ──reconcile──► ACKNOWLEDGED
                 ▲                      │                 ├─► REJECTED (permanent item error)
                 └───── not acknowledged, budget left ◄───┤
                                                          └─► UNACKNOWLEDGED (budget spent/stopped)
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime

import attrs

from ._classify import ItemErrorKind
from ._enums import ItemFailureReasonType, ItemStatus
from ._errors import ConflictingUpdates, InvalidInput
from ._models import ItemUpdate, ItemUpdateError


class EntryState(enum.Enum):
    QUEUED = "queued"
    IN_FLIGHT = "in_flight"
    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"
    UNACKNOWLEDGED = "unacknowledged"


class Offer(enum.Enum):
    QUEUED = "queued"
    SKIPPED = "skipped"  # already acknowledged (R4)
    COLLAPSED = "collapsed"  # an identical update for this ID is already in this call


@attrs.define(slots=True, eq=False)
class Entry:
    update: ItemUpdate  # what is being sent, or what Pleo acknowledged or rejected
    state: EntryState
    call: int  # the update() call that last offered this ID
    attempts: int = 0
    error_type: str | None = None
    error_message: str = ""


@attrs.frozen
class BatchOutcome:
    """What one 200 PUT response settled, for the ledger and the log."""

    acknowledged: list[ItemUpdate]
    rejected: list[Entry]
    requeued: int  # entries sent again later: missing from the response or a transient error
    given_up: int  # entries left unacknowledged because their attempts ran out
    unexpected_ids: list[str]  # IDs in the response that were not in the request


class ItemTracker:
    """States of the items submitted to one JobRun.

    `acknowledged(entry_id)` looks up the ledger: what Pleo last acknowledged for that ID, from
    this JobRun or any other that shares the ledger (`JobLedger.acknowledged`).

    `entries` holds the IDs still queued, in flight, rejected, unacknowledged, or acknowledged
    (or skipped as acknowledged) with a status that is not final; an ID acknowledged
    `successful` or `failed` leaves it, and the call lists it in `acknowledged_in_call` or
    `skipped_in_call`.
    """

    def __init__(
        self,
        acknowledged: Callable[[str], ItemStatus | ItemUpdate | None],
        classify_error: Callable[[str], ItemErrorKind],
        max_attempts: int,
    ) -> None:
        self._acknowledged = acknowledged
        self._classify_error = classify_error
        self._max_attempts = max_attempts
        self.entries: dict[str, Entry] = {}
        self._call: int | None = None
        self._seen: dict[str, _Fields] = {}  # the latest call's first offer of each ID
        #: IDs acknowledged in the latest call, with the status Pleo acknowledged.
        self.acknowledged_in_call: dict[str, ItemStatus] = {}
        self.skipped_in_call: set[str] = set()  # IDs the latest call skipped (R4)
        self._pulled = 0  # position in the input, to name a bad element
        self._ready: deque[Entry] = deque()
        self.in_flight = 0

    @property
    def ready(self) -> int:
        """How many entries wait to be sent."""
        return len(self._ready)

    def offer(self, update: ItemUpdate, call: int) -> Offer:
        """Take one update pulled from the input of `update()` call number `call`.

        Calls run one after another, numbered upwards.
        """
        if call != self._call:
            self.begin_call(call)
        entry_id = update.accounting_entry_id
        seen = self._seen
        fields = _fields(update)
        first = seen.get(entry_id)
        if first is not None:
            if first == fields:
                return Offer.COLLAPSED
            raise ConflictingUpdates(entry_id, _rebuilt(entry_id, first), update)
        seen[entry_id] = fields
        entry = self.entries.get(entry_id)
        acknowledged = self._acknowledged(entry_id)
        if acknowledged is not None and (
            acknowledged is _SUCCESSFUL
            or (isinstance(acknowledged, ItemUpdate) and acknowledged.status is _SUCCESSFUL)
            or acknowledged == update
        ):
            # Whatever this run left it as, Pleo holds the acknowledged update (perhaps from
            # another JobRun sharing the ledger): the item is settled.
            self.skipped_in_call.add(entry_id)
            if isinstance(acknowledged, ItemStatus) or acknowledged.status in _FINAL:
                self.entries.pop(entry_id, None)
            elif entry is None:
                self.entries[entry_id] = Entry(acknowledged, EntryState.ACKNOWLEDGED, call)
            else:
                self._reset(entry, acknowledged, EntryState.ACKNOWLEDGED, call)
            return Offer.SKIPPED
        if entry is None:
            entry = self.entries[entry_id] = Entry(update, EntryState.QUEUED, call)
        else:
            # A later call supersedes what an earlier call left rejected, unacknowledged, or
            # acknowledged as failed (R4 allows replacing a failed item).
            self._reset(entry, update, EntryState.QUEUED, call)
        self._ready.append(entry)
        return Offer.QUEUED

    def begin_call(self, call: int) -> None:
        """Start counting the input, the acknowledgements and the skips of `update()` call
        number `call`. What the previous call reported is left to its report."""
        self._call = call
        self._seen = {}
        self.acknowledged_in_call = {}
        self.skipped_in_call = set()
        self._pulled = 0

    def offer_from(self, source: Iterator[object], call: int, wanted: int) -> bool:
        """Offer updates from `source` until `wanted` are ready to send; False once it is
        exhausted.

        The hot loop of `update()`: an ItemUpdate for an ID this tracker has never seen and the
        ledger has no acknowledgement for is queued here; anything else goes through `offer`.
        """
        if call != self._call:
            self.begin_call(call)
        offer_pulled = self.offer_pulled
        ready = self._ready
        seen = self._seen
        entries = self.entries
        acknowledged = self._acknowledged
        while len(ready) < wanted:
            update = next(source, _END)
            if (
                type(update) is not ItemUpdate
                or (entry_id := update.accounting_entry_id) in seen
                or entry_id in entries
                or acknowledged(entry_id) is not None
            ):
                if update is _END:
                    return False
                offer_pulled(update, call)
                continue
            self._pulled += 1
            seen[entry_id] = _fields(update)
            entry = entries[entry_id] = Entry(update, _QUEUED, call)
            ready.append(entry)
        return True

    def offer_pulled(self, update: object, call: int) -> Offer:
        """Offer the next element of the call's input, which may not be an ItemUpdate at all."""
        if type(update) is not ItemUpdate and not isinstance(update, ItemUpdate):
            raise InvalidInput(f"updates[{self._pulled}]", update, "not an ItemUpdate")
        self._pulled += 1
        return self.offer(update, call)

    def in_call(self, call: int) -> Iterator[tuple[str, Entry]]:
        """The entries `update()` call number `call` offered that are still kept (not those
        acknowledged with a final status: see `acknowledged_in_call`)."""
        return ((i, entry) for i, entry in self.entries.items() if entry.call == call)

    @staticmethod
    def _reset(entry: Entry, update: ItemUpdate, state: EntryState, call: int) -> None:
        entry.update = update
        entry.state = state
        entry.call = call
        entry.attempts = 0
        entry.error_type = None
        entry.error_message = ""

    def take_batch(self, size: int) -> list[Entry]:
        """Up to `size` entries to send now, re-sent ones first; they become in flight."""
        ready = self._ready
        batch = [ready.popleft() for _ in range(min(size, len(ready)))]
        for entry in batch:
            entry.state = _IN_FLIGHT
            entry.attempts += 1
        self.in_flight += len(batch)
        return batch

    def reconcile(
        self,
        batch: Sequence[Entry],
        acknowledged_ids: Iterable[str],
        errors: Iterable[ItemUpdateError],
    ) -> BatchOutcome:
        """Settle a batch from a 200 PUT response, matching by ID, never by position (R3).

        An ID in `errors` is not acknowledged even if it is also in `data`: resending is safe,
        believing a refused update landed is not.
        """
        by_id = {entry.update.accounting_entry_id: entry for entry in batch}
        rejected: list[Entry] = []
        unexpected: list[str] = []
        requeued = given_up = 0
        for error in errors:
            entry = by_id.get(error.accounting_entry_id)  # the codec lower-cases error IDs
            if entry is None:
                unexpected.append(error.accounting_entry_id)
                continue
            if entry.state is not EntryState.IN_FLIGHT:
                continue  # a second error for the same ID
            entry.error_type = error.type
            entry.error_message = error.message
            if (
                self._classify_error(error.type) is ItemErrorKind.TRANSIENT
                and entry.attempts < self._max_attempts
            ):
                self._send_again(entry)
                requeued += 1
            else:
                entry.state = EntryState.REJECTED
                rejected.append(entry)
        acknowledged: list[ItemUpdate] = []
        acknowledged_in_call = self.acknowledged_in_call
        entries = self.entries
        for entry_id in acknowledged_ids:
            entry = by_id.get(entry_id)
            if entry is None:
                # Our IDs are canonical (lower case); Pleo's answer may not be.
                entry = by_id.get(entry_id.lower())
                if entry is None:
                    unexpected.append(entry_id)
                    continue
            if entry.state is not _IN_FLIGHT:
                continue  # acknowledged twice in one response, or also in `errors`
            entry.state = _ACKNOWLEDGED
            entry.error_type = None
            update = entry.update
            acknowledged.append(update)
            status = update.status
            acknowledged_in_call[update.accounting_entry_id] = status
            if status is _SUCCESSFUL or status is _FAILED:
                # Settled: the ledger remembers it from now on.
                del entries[update.accounting_entry_id]
        for entry in batch:
            if entry.state is _IN_FLIGHT:
                if entry.attempts < self._max_attempts:
                    self._send_again(entry)
                    requeued += 1
                else:
                    entry.state = EntryState.UNACKNOWLEDGED
                    entry.error_message = (
                        f"not acknowledged by Pleo after {entry.attempts} attempts"
                    )
                    given_up += 1
        self.in_flight -= len(batch)
        return BatchOutcome(acknowledged, rejected, requeued, given_up, unexpected)

    def send_again_later(self, batch: Sequence[Entry]) -> None:
        """Put a batch that was refused as a whole (e.g. 413) back in line, no attempt counted."""
        for entry in reversed(batch):
            entry.attempts -= 1
            self._send_again(entry)
        self.in_flight -= len(batch)

    def give_up(self, batch: Sequence[Entry], reason: str) -> None:
        """The batch's request failed for good, or was cancelled: its entries are unacknowledged."""
        for entry in batch:
            if entry.state is EntryState.IN_FLIGHT:
                entry.state = EntryState.UNACKNOWLEDGED
                entry.error_message = reason
                self.in_flight -= 1

    def drop_ready(self, reason: str) -> None:
        """The call stopped: what was waiting to be sent is unacknowledged."""
        while self._ready:
            entry = self._ready.popleft()
            entry.state = EntryState.UNACKNOWLEDGED
            entry.error_message = reason

    def unsettled(self) -> dict[str, str]:
        """IDs not yet acknowledged with a final status nor rejected, with the reason (R9)."""
        unsettled: dict[str, str] = {}
        for entry_id, entry in self.entries.items():
            state = entry.state
            if state is EntryState.ACKNOWLEDGED or state is EntryState.REJECTED:
                if state is EntryState.ACKNOWLEDGED and entry.update.status not in _FINAL:
                    unsettled[entry_id] = f"acknowledged as {entry.update.status.value}, not final"
                continue
            unsettled[entry_id] = entry.error_message or state.value
        return unsettled

    def unacknowledged_updates(self) -> dict[str, ItemUpdate]:
        return {
            entry_id: entry.update
            for entry_id, entry in self.entries.items()
            if entry.state is EntryState.UNACKNOWLEDGED
        }

    def mark_acknowledged(self, updates: Iterable[ItemUpdate]) -> None:
        """Pleo was found to hold these updates (reconciliation): settle their entries."""
        for update in updates:
            entry = self.entries.get(update.accounting_entry_id)
            if (
                entry is not None
                and entry.state is EntryState.UNACKNOWLEDGED
                and (entry.update == update)
            ):
                entry.state = EntryState.ACKNOWLEDGED
                entry.error_message = ""

    def rejected(self) -> list[Entry]:
        return [entry for entry in self.entries.values() if entry.state is EntryState.REJECTED]

    def _send_again(self, entry: Entry) -> None:
        entry.state = EntryState.QUEUED
        self._ready.appendleft(entry)


_FINAL = frozenset({ItemStatus.SUCCESSFUL, ItemStatus.FAILED})

#: An update's fields after its ID, in `ItemUpdate`'s order, enums as their values: a tuple of
#: strings, datetimes and None, which the garbage collector stops tracking at its first pass.
#: A call keeps one per ID it offered, to judge repeats (R1) without keeping the update alive.
_Fields = tuple[str, datetime | None, str | None, str | None, str | None, str | None]


def _fields(update: ItemUpdate) -> _Fields:
    failure_type = update.failure_reason_type
    return (
        update.status._value_,
        update.exported_at,
        update.external_id,
        update.external_url,
        update.failure_reason,
        None if failure_type is None else failure_type._value_,
    )


def _rebuilt(entry_id: str, fields: _Fields) -> ItemUpdate:
    status, exported_at, external_id, external_url, reason, reason_type = fields
    return ItemUpdate(
        entry_id,
        ItemStatus(status),
        exported_at,
        external_id,
        external_url,
        reason,
        None if reason_type is None else ItemFailureReasonType(reason_type),
    )


_SUCCESSFUL = ItemStatus.SUCCESSFUL
_FAILED = ItemStatus.FAILED
_QUEUED = EntryState.QUEUED
_IN_FLIGHT = EntryState.IN_FLIGHT
_ACKNOWLEDGED = EntryState.ACKNOWLEDGED
_END = object()
