"""A job's acknowledgement record: one entry per accountingEntryId, and counts by status (R4, R10).

The index maps each ID the job has seen to one `Batch`: the batch holding its latest
acknowledgement, or, for an ID Pleo has not acknowledged yet, the latest batch that carried it.
Settled batches are never changed again, so a report that reads them stays as it was.

Every JobRun that shares a ledger shares this record (the ledger hands out one per job); the
ledger makes it durable and reads it back, the tracker reads and updates it. Once the job's final
event is delivered the ledger calls `forget`: the per-ID entries go, the counts stay.
"""

from __future__ import annotations

from collections import Counter
from itertools import repeat

from pleo_export_async._enums import ItemStatus
from pleo_export_async._models import ItemUpdate

from ._batches import Batch, BatchState
from ._decision import Tally

_SUCCESSFUL = ItemStatus.SUCCESSFUL
_FAILED = ItemStatus.FAILED


class Acknowledgements:
    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Empty, as before the job's first batch: for a ledger about to read the job again."""
        self.index: dict[str, Batch] = {}
        self._successful = 0
        self._failed = 0
        self._failure_types: Counter[str] = Counter()
        self.forgotten = False

    def __repr__(self) -> str:
        state = "forgotten" if self.forgotten else f"{len(self.index)} IDs"
        return f"<Acknowledgements {state}, {self._successful} successful, {self._failed} failed>"

    def lookup(self, entry_id: str) -> Batch | None:
        """The batch this ID's entry points at (see the module docstring), or None."""
        return self.index.get(entry_id)

    def acknowledged(self, entry_id: str) -> ItemStatus | ItemUpdate | None:
        """What Pleo last acknowledged for this ID: None if nothing, `ItemStatus.SUCCESSFUL` for
        a successful item (terminal, R4), else the update."""
        batch = self.index.get(entry_id)
        if batch is None or not batch.acknowledges(entry_id):
            return None
        return batch.acknowledged_update(entry_id)

    def tally(self) -> Tally:
        """Counts of acknowledged items by final status, with the failed items' failure types."""
        return Tally(
            successful=self._successful,
            failed=self._failed,
            failure_types={kind: n for kind, n in self._failure_types.items() if n},
        )

    def add(self, batch: Batch) -> None:
        """Take in what a settled batch acknowledged: its IDs point at it, the counts move.

        In a fresh batch every ID already points at the batch (the tracker filed it when it
        planned the batch) and none was acknowledged before, so only the counts change.
        """
        if batch.fresh:
            successful = batch.acknowledged_count - len(batch.others)
            for update in batch.others.values():
                self._count(update, 1)
        else:
            successful = 0
            index = self.index
            for entry_id in batch.acknowledged_ids():
                previous = index.get(entry_id)
                if previous is not batch:
                    if previous is not None and previous.acknowledges(entry_id):
                        self._uncount(previous, entry_id)
                    index[entry_id] = batch
                other = batch.others.get(entry_id)
                if other is None:
                    successful += 1
                else:
                    self._count(other, 1)
        self._successful += successful

    def restore(self, batch: Batch) -> None:
        """Replay a batch read back from a durable ledger, in the order they were recorded."""
        index = self.index
        if batch.state is not BatchState.SETTLED or not batch.acknowledged_count:
            for entry_id in batch.ids:
                previous = index.get(entry_id)
                if previous is None or not previous.acknowledges(entry_id):
                    index[entry_id] = batch
            return
        if batch.acknowledged_all and not any(i in index for i in batch.ids):
            index.update(zip(batch.ids, repeat(batch)))
            batch.fresh = True
        else:
            for entry_id in batch.ids:
                previous = index.get(entry_id)
                if previous is None or not previous.acknowledges(entry_id):
                    index[entry_id] = batch  # what is not acknowledged here still points here
            batch.fresh = False
        self.add(batch)

    def forget(self) -> None:
        """The job is closed: drop the per-ID entries, keep the counts."""
        self.index = {}
        self.forgotten = True

    def _count(self, update: ItemUpdate, sign: int) -> None:
        if update.status is _SUCCESSFUL:
            self._successful += sign
        elif update.status is _FAILED:
            self._failed += sign
            if update.failure_reason_type is not None:
                self._failure_types[update.failure_reason_type.value] += sign

    def _uncount(self, batch: Batch, entry_id: str) -> None:
        other = batch.others.get(entry_id)
        if other is None:
            self._successful -= 1
        else:
            self._count(other, -1)
