"""Checking a job's records against what Pleo holds (rules R11, R13): updates whose answer was
lost or cut off, batches in flight at a crash, refusals of a resend whose first send landed.
What Pleo shows landed is recorded as acknowledged, durably, so it is never sent again (R4)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence

from . import _codec
from ._core._pleo_results import item_shows_update, update_behind_result
from ._core._tracker import ItemTracker
from ._ledger import JobLedger, commit_kind
from ._models import ExportJobItem, ItemUpdate
from ._telemetry import Telemetry

logger = logging.getLogger("pleo_export_async")

_DOES_NOT_EXIST = "ACCOUNTING_ENTRY_DOES_NOT_EXIST"


async def updates_pleo_shows(
    items: AsyncIterable[ExportJobItem], candidates: Mapping[str, ItemUpdate]
) -> list[ItemUpdate]:
    """The candidate updates that Pleo's items show landed."""
    if not candidates:
        return []
    return [
        update
        async for item in items
        if (update := candidates.get(item.accounting_entry_id)) is not None
        and item_shows_update(item, update)
    ]


def results_unrecorded(job_ledger: JobLedger, items: Iterable[ExportJobItem]) -> list[ItemUpdate]:
    """The updates behind the final results Pleo shows for items the ledger has no
    acknowledgement of."""
    acknowledgements = job_ledger.acknowledgements
    return [
        update
        for item in items
        if acknowledgements.acknowledged(item.accounting_entry_id) is None
        and (update := update_behind_result(item)) is not None
    ]


def refusals_to_recheck(tracker: ItemTracker) -> dict[str, ItemUpdate]:
    """The rejected updates that may have landed after all: an attempt whose answer was lost,
    cut off or left the item out, whose resend Pleo refused as a rewrite. Items Pleo does not
    have are not asked about."""
    return {
        entry_id: entry.update
        for entry_id, entry in tracker.rejected()
        if (entry.error_type or "").upper() != _DOES_NOT_EXIST
    }


async def record_found(
    job_ledger: JobLedger, tracker: ItemTracker, held: Sequence[ItemUpdate], telemetry: Telemetry
) -> None:
    """Pleo was found to hold these updates: record them as acknowledged, durably."""
    if not held:
        return
    body = _codec.encode_item_updates(held)
    batch = tracker.record_landed(held)
    kind = commit_kind(job_ledger)
    with telemetry.ledger_commit(kind, "in_flight"):
        await job_ledger.record_in_flight(batch, body)
    with telemetry.ledger_commit(kind, "acknowledged"):
        await job_ledger.record_acknowledged(batch)
