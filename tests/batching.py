"""Helpers for tests of the core and the ledgers: batches made the way a JobRun makes them."""

from __future__ import annotations

from collections.abc import Sequence

from pleo_export_async._core._acknowledgements import Acknowledgements
from pleo_export_async._core._batches import Batch
from pleo_export_async._core._classify import make_item_error_classifier
from pleo_export_async._core._tracker import ItemTracker
from pleo_export_async._models import ItemUpdate, ItemUpdateError

JOB_ID = "6a3b0e41-5ef9-46ea-9c21-2ffa41789288"
OTHER_JOB_ID = "a7327909-115c-4b8a-bcea-9c10f38cb4c4"
ID_A = "47324e87-8d05-4049-871b-f0dbe09ed4e0"
ID_B = "9cac86ed-c003-4a39-8387-28672a913b50"
ID_C = "1090aff0-72ea-4a31-a24f-53955c8b83e3"


def new_tracker(
    acknowledgements: Acknowledgements | None = None, max_attempts: int = 3
) -> ItemTracker:
    """A tracker over `acknowledgements` (a fresh record if None), with the default classifier."""
    return ItemTracker(
        Acknowledgements() if acknowledgements is None else acknowledgements,
        make_item_error_classifier(),
        max_attempts,
    )


def planned(tracker: ItemTracker, updates: Sequence[ItemUpdate], size: int = 100) -> Batch:
    """A batch of the tracker's current call holding `updates` (leftovers first), sent."""
    batch = tracker.plan(size)
    for update in updates:
        tracker.offer(batch, update)
    tracker.mark_sent(batch)
    return batch


def settled(
    tracker: ItemTracker,
    updates: Sequence[ItemUpdate],
    acknowledged: Sequence[str] | None = None,
    errors: Sequence[ItemUpdateError] = (),
) -> Batch:
    """Offer `updates` in a new call, send them in one batch and settle it with Pleo's answer:
    `acknowledged` lists the IDs in `data` (None: every ID sent), `errors` the refusals. What
    the previous call left queued is dropped first, as a JobRun's call does when it ends."""
    tracker.drop_ready("not sent: the update call stopped")
    tracker.begin_call()
    batch = planned(tracker, updates)
    answer = list(batch.ids) if acknowledged is None else list(acknowledged)
    tracker.reconcile(batch, answer, errors)
    return batch
