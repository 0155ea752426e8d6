"""Read-only views a report gives of one `update()` call, built from what the job already holds.

A million acknowledged IDs cost the report nothing of their own: the view keeps the call's
settled batches (whose ID lists the job's index shares) and their count, and becomes a mapping
only when someone looks an ID up. Batches are never changed once settled, so a view shows the
same thing forever, even after the job is closed and its ledger has forgotten the IDs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence, Set

from pleo_export_async._enums import ItemStatus

from ._batches import Batch


class AcknowledgedView(Mapping[str, ItemStatus]):
    """accountingEntryId -> the status Pleo acknowledged, for the IDs one call got acknowledged."""

    __slots__ = ("_batches", "_count", "_mapping")

    def __init__(self, batches: Sequence[Batch], count: int) -> None:
        self._batches = tuple(batches)
        self._count = count
        self._mapping: dict[str, ItemStatus] | None = None

    def _materialized(self) -> dict[str, ItemStatus]:
        if self._mapping is None:
            mapping: dict[str, ItemStatus] = {}
            for batch in self._batches:
                if batch.others:
                    status_of = batch.status_of
                    mapping.update((i, status_of(i)) for i in batch.acknowledged_ids())
                else:
                    mapping.update(dict.fromkeys(batch.acknowledged_ids(), ItemStatus.SUCCESSFUL))
            self._mapping = mapping
        return self._mapping

    def __getitem__(self, entry_id: str) -> ItemStatus:
        return self._materialized()[entry_id]

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._materialized()

    def __iter__(self) -> Iterator[str]:
        if self._mapping is not None:
            return iter(self._mapping)
        return (entry_id for batch in self._batches for entry_id in batch.acknowledged_ids())

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"AcknowledgedView({len(self)} IDs)"


class IdSetView(Set[str]):
    """A read-only set of accountingEntryIds, over the keys of a mapping nobody changes again."""

    __slots__ = ("_ids",)

    def __init__(self, ids: Mapping[str, object]) -> None:
        self._ids = ids

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"IdSetView({len(self)} IDs)"
