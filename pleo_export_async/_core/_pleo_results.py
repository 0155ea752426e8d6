"""What an item's state at Pleo says about the updates we sent (rules R11, R13). Pure, no I/O.

A job's items as Pleo lists them (`GET /v3/export-jobs/{jobId}/items`) are the truth after a
crash or a lost answer: an update Pleo shows landed, whatever the ledger recorded. Two questions
are asked of an item: does it show this update of ours (`item_shows_update`), and which update
would give it the result it shows (`update_behind_result`).
"""

from __future__ import annotations

from pleo_export_async._enums import ItemFailureReasonType, ItemStatus
from pleo_export_async._errors import InvalidInput
from pleo_export_async._models import ExportJobItem, ItemUpdate

_ITEM_FAILURE_TYPES = frozenset(member.value for member in ItemFailureReasonType)


def item_shows_update(item: ExportJobItem, update: ItemUpdate) -> bool:
    """Whether Pleo's item shows this update: the same status, and every field we sent."""
    if item.status != update.status.value:
        return False
    sent = (
        (update.external_id, item.external_id),
        (update.external_url, item.external_url),
        (update.failure_reason, item.failure_reason),
        (update.failure_reason_type, item.failure_reason_type),
    )
    if any(ours is not None and ours != theirs for ours, theirs in sent):
        return False
    if update.exported_at is None:
        return True
    # Sent in whole seconds, so compare in whole seconds.
    return item.exported_at is not None and int(item.exported_at.timestamp()) == int(
        update.exported_at.timestamp()
    )


def update_behind_result(item: ExportJobItem) -> ItemUpdate | None:
    """The update that gives Pleo's item the final result it shows; None if it shows none.

    A failure type this version does not know counts as `unexpected_failure`: it only decides
    the job's counts and failure type. A result this library could not have sent (a blank
    failure reason, say) gives None: it is left to Pleo."""
    try:
        if item.status == ItemStatus.SUCCESSFUL:
            return _successful(item, item.external_url)
        if item.status == ItemStatus.FAILED:
            known = item.failure_reason_type in _ITEM_FAILURE_TYPES
            return ItemUpdate.failed(
                item.accounting_entry_id,
                reason=item.failure_reason,
                reason_type=item.failure_reason_type if known else "unexpected_failure",  # type: ignore[arg-type]
            )
    except InvalidInput:
        return None
    return None


def _successful(item: ExportJobItem, external_url: str | None) -> ItemUpdate:
    try:
        return ItemUpdate.successful(
            item.accounting_entry_id,
            external_id=item.external_id,
            external_url=external_url,
            exported_at=item.exported_at,
        )
    except InvalidInput as error:
        if error.field != "external_url":
            raise
        # Set by another connector, or by an earlier version that took any string: the item
        # is successful all the same, and that is what the job's counts need.
        return _successful(item, None)
