"""What a durable ledger stores for a job, and how it is read back: shared by `SqliteLedger` and
`PostgresLedger`, which differ only in where the rows live and who may write them.

A job's records are its batch rows, in the order they were recorded, each holding the PUT body as
it was sent; an acknowledgement row per answered batch, saying which of its IDs Pleo acknowledged;
and the final event's row, intended, then delivered with its outcome.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

import attrs
import cattrs

from . import _codec
from ._checks import PLAIN_HTTP_URL, http_url_problem
from ._core._acknowledgements import Acknowledgements
from ._core._batches import Batch, read_back
from ._errors import UnexpectedResponse
from ._ledger import FinalEventRecord
from ._models import ItemUpdate, JobEventRequest
from ._report import CompletionOutcome

#: The acknowledgement of a batch whose every ID Pleo acknowledged; otherwise it is a JSON array
#: of the IDs it acknowledged. A batch without one was never answered. It is a row apart from the
#: batch's, so that recording it writes a few bytes, not the batch's updates again.
EVERY_ID = "*"

#: What reading a stored row can raise when the row is not what this version wrote.
UNREADABLE = (ValueError, TypeError, KeyError, cattrs.BaseValidationError, UnexpectedResponse)


def acknowledged_text(batch: Batch) -> str:
    """The acknowledgement row of a settled batch."""
    if batch.acknowledged_all:
        return EVERY_ID
    return _codec.dumps(sorted(batch.acknowledged_some)).decode()


@attrs.frozen
class JobRecords:
    """A job as read back from a durable ledger."""

    batches: list[Batch]
    in_flight: dict[str, ItemUpdate]
    final_event: FinalEventRecord | None

    def replay_into(self, acknowledgements: Acknowledgements) -> None:
        """Rebuild the job's acknowledgement record, batch by batch in the order recorded."""
        restore = acknowledgements.restore
        for batch in self.batches:
            restore(batch)
        if self.final_event is not None and self.final_event.outcome is not None:
            acknowledgements.forget()


def read_final_event(request: bytes | None, outcome: bytes | None) -> FinalEventRecord | None:
    if request is None:
        return None
    return FinalEventRecord(
        _codec.decode(request, JobEventRequest),
        None if outcome is None else _codec.decode(outcome, CompletionOutcome),
    )


def read_job(
    rows: Iterable[tuple[object, bytes, str | None]], final_event: FinalEventRecord | None
) -> JobRecords:
    """A job from its batch rows `(key, PUT body, acknowledgement or None)`, oldest first."""
    batches: list[Batch] = []
    in_flight: dict[str, ItemUpdate] = {}
    for key, body, acknowledged in rows:
        batch = read_batch(body, acknowledged, in_flight)
        batch.durable_key = key
        batches.append(batch)
    return JobRecords(batches, in_flight, final_event)


def read_batch(body: bytes, acknowledged: str | None, in_flight: dict[str, ItemUpdate]) -> Batch:
    """Rebuild a batch row; its updates that were sent and never acknowledged go to `in_flight`.

    Only the updates still needed become ItemUpdates: a successful acknowledged item needs no
    more than its ID (R4 makes it terminal).
    """
    items = _codec.loads(body)
    ids = [item["accountingEntryId"] for item in items]
    if acknowledged is None:
        acknowledged_ids: Collection[str] | None = None
    elif acknowledged == EVERY_ID:
        acknowledged_ids = ids
    else:
        acknowledged_ids = frozenset(_codec.loads(acknowledged))
    others: dict[str, ItemUpdate] = {}
    for entry_id, item in zip(ids, items, strict=True):
        if acknowledged_ids is not None and entry_id in acknowledged_ids:
            in_flight.pop(entry_id, None)
            if item["status"] != "successful":
                others[entry_id] = _stored_update(item)
        else:
            in_flight[entry_id] = _stored_update(item)
    return read_back(ids, acknowledged_ids, others)


def _stored_update(item: dict[str, Any]) -> ItemUpdate:
    """An update as the ledger holds it, which is what was sent. One that earlier versions
    accepted and this one would refuse (an `external_url` that is no http(s) URL) reads back
    as it was, so that a resend after an upgrade sends the very same update (R13, R22)."""
    url = item.get("externalUrl")
    if url is None or (
        isinstance(url, str) and (PLAIN_HTTP_URL.fullmatch(url) or http_url_problem(url) is None)
    ):
        return _codec.from_wire(item, ItemUpdate)
    update = _codec.from_wire(
        {name: value for name, value in item.items() if name != "externalUrl"}, ItemUpdate
    )
    # Frozen: set past attrs, as its own constructor does.
    object.__setattr__(update, "external_url", url)
    return update


def settle_in_flight(in_flight: dict[str, ItemUpdate], batch: Batch) -> None:
    """A batch was acknowledged: its IDs are no longer in doubt."""
    if in_flight:
        for entry_id in batch.acknowledged_ids():
            in_flight.pop(entry_id, None)
