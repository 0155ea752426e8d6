"""Per-batch bookkeeping: a `Batch` is one PUT's worth of updates, from the moment it is planned
until Pleo's answer settles it (rules R1, R3, R4).

While a batch is planned or in flight it holds its updates. Once settled it keeps only what the
job must remember, and nothing per item that the garbage collector would have to walk: the IDs it
carried (the same string objects the job's index and the call's report use), which of them Pleo
acknowledged, the updates acknowledged with a status other than `successful` (R4 compares them),
and for the successful ones a 64-bit fingerprint of their fields, so that a repeat later in the
same call can still be told identical or conflicting (R1).
"""

from __future__ import annotations

import enum
from array import array
from collections.abc import Collection, Iterable

from pleo_export_async._enums import ItemStatus
from pleo_export_async._models import ItemUpdate

_SUCCESSFUL = ItemStatus.SUCCESSFUL
_NONE_ACKNOWLEDGED: frozenset[str] = frozenset()


class BatchState(enum.Enum):
    PLANNED = "planned"  # being filled, or waiting to be sent
    IN_FLIGHT = "in_flight"
    SETTLED = "settled"  # Pleo answered 200; `acknowledges` says for which IDs
    ABANDONED = "abandoned"  # no usable answer: refused as a whole, given up, or never sent


def fingerprint(update: ItemUpdate) -> int:
    """What tells two `successful` updates of one ID apart: their optional fields, hashed.

    `Batch.settle` computes the same for every update it settles, written out for speed.
    """
    if update.exported_at is None and update.external_url is None:
        return hash(update.external_id)
    return hash((update.exported_at, update.external_id, update.external_url))


class Batch:
    """One PUT's worth of updates of one job. See the module docstring for what it keeps."""

    __slots__ = (
        "acknowledged_all",
        "acknowledged_some",
        "call",
        "durable_key",
        "fingerprints",
        "fresh",
        "ids",
        "others",
        "state",
        "updates",
    )

    def __init__(self, call: object, updates: list[ItemUpdate] | None = None) -> None:
        #: The `update()` call that planned it (an identity token), or None when it was read
        #: back from a durable ledger or made to record what reconciliation found.
        self.call = call
        self.updates: list[ItemUpdate] | None = [] if updates is None else updates
        self.ids: list[str] = []
        #: True while no update in it needed attention when planned: each ID was new to the job.
        self.fresh = True
        self.state = BatchState.PLANNED
        self.acknowledged_all = False
        self.acknowledged_some = _NONE_ACKNOWLEDGED
        self.others: dict[str, ItemUpdate] = {}
        self.fingerprints: array[int] | None = None
        #: Where a durable ledger filed this batch (SqliteLedger: its row), for the ledger's use.
        self.durable_key: object = None

    def __repr__(self) -> str:
        size = len(self.ids) if self.ids else len(self.updates or ())
        return f"<Batch {self.state.value}, {size} items, {self.acknowledged_count} acknowledged>"

    # -- its life --------------------------------------------------------------------------------

    def mark_sent(self) -> None:
        assert self.updates is not None
        self.ids = [update.accounting_entry_id for update in self.updates]
        self.state = BatchState.IN_FLIGHT

    def settle(self, acknowledged: Collection[str] | None, *, fingerprinted: bool = True) -> None:
        """Pleo's answer acknowledged these IDs of the batch (None: every one of them).

        `fingerprinted=False` when no repeat in the call can conflict (its input was checked
        whole): the successful updates then go without a trace."""
        updates = self.updates
        assert updates is not None, "a batch is settled once"
        if acknowledged is None or len(acknowledged) == len(updates):
            self.acknowledged_all = True
            kept = updates
        else:
            self.acknowledged_some = frozenset(acknowledged)
            kept = [u for u in updates if u.accounting_entry_id in self.acknowledged_some]
        self.others = {u.accounting_entry_id: u for u in kept if u.status is not _SUCCESSFUL}
        if kept and fingerprinted:
            self.fingerprints = array(
                "q",
                [
                    hash(u.external_id)
                    if u.exported_at is None and u.external_url is None
                    else hash((u.exported_at, u.external_id, u.external_url))
                    for u in updates
                ],
            )
        self.state = BatchState.SETTLED
        self.updates = None

    def abandon(self) -> None:
        """No answer will settle it: nothing in it is acknowledged."""
        if self.updates is not None and not self.ids:
            self.ids = [update.accounting_entry_id for update in self.updates]
        self.state = BatchState.ABANDONED
        self.updates = None

    # -- what it says about an ID ------------------------------------------------------------------

    def acknowledges(self, entry_id: str) -> bool:
        return self.acknowledged_all or entry_id in self.acknowledged_some

    def status_of(self, entry_id: str) -> ItemStatus:
        """The status Pleo acknowledged for an ID this batch acknowledges."""
        other = self.others.get(entry_id)
        return _SUCCESSFUL if other is None else other.status

    def acknowledged_update(self, entry_id: str) -> ItemStatus | ItemUpdate:
        """`ItemStatus.SUCCESSFUL` for a successful ID (its fields no longer decide anything, R4),
        else the update Pleo acknowledged."""
        return self.others.get(entry_id) or _SUCCESSFUL

    def holds_same(self, entry_id: str, update: ItemUpdate) -> bool:
        """Whether `update` is what this batch carried and got acknowledged for the ID."""
        if not self.acknowledges(entry_id):
            return False
        other = self.others.get(entry_id)
        if other is not None:
            return other == update
        if update.status is not _SUCCESSFUL or self.fingerprints is None:
            return False
        return self.fingerprints[self.ids.index(entry_id)] == fingerprint(update)

    def planned_update(self, entry_id: str) -> ItemUpdate | None:
        """The update for this ID while the batch is planned or in flight."""
        for update in self.updates or ():
            if update.accounting_entry_id == entry_id:
                return update
        return None

    @property
    def acknowledged_count(self) -> int:
        if self.acknowledged_all:
            return len(self.ids)
        return len(self.acknowledged_some)

    def acknowledged_ids(self) -> Iterable[str]:
        if self.acknowledged_all:
            return self.ids
        some = self.acknowledged_some
        return [entry_id for entry_id in self.ids if entry_id in some]


def offer_fingerprint(update: ItemUpdate) -> int:
    """Every field of an update but its ID, hashed: how a call remembers an update it skipped."""
    failure_type = update.failure_reason_type
    return hash(
        (
            update.status._value_,
            update.exported_at,
            update.external_id,
            update.external_url,
            update.failure_reason,
            None if failure_type is None else failure_type._value_,
        )
    )


def read_back(
    ids: list[str], acknowledged: Collection[str] | None, others: dict[str, ItemUpdate]
) -> Batch:
    """A batch as a durable ledger recorded it: the IDs it carried, those Pleo acknowledged
    (None if no answer was recorded) and the acknowledged updates that were not successful."""
    batch = Batch(None, None)
    batch.ids = ids
    if acknowledged is None:
        batch.state = BatchState.ABANDONED
        return batch
    if len(acknowledged) == len(ids):
        batch.acknowledged_all = True
    else:
        batch.acknowledged_some = frozenset(acknowledged)
    batch.others = others
    batch.state = BatchState.SETTLED
    return batch
