"""What the library tells its caller: the report of an `update()`, the outcome of `complete()`,
and the progress snapshots handed to a progress callback. Frozen values, no behaviour."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set

import attrs

from ._enums import ItemStatus, JobEvent, JobFailureReasonType


@attrs.frozen
class Rejection:
    """Pleo refused an item's update for good: its error `type` and `message`."""

    error_type: str
    message: str


@attrs.frozen
class UpdateReport:
    """The result of one `JobRun.update()` call, keyed by accountingEntryId.

    What a report shows never changes after `update()` returns. `acknowledged` and `skipped`
    are read-only views over what the job already holds: holding a report of a million items
    costs next to nothing, `len()` is free, and looking an ID up builds the mapping once.

    * `acknowledged`: Pleo acknowledged the update in this call (the value is the status sent).
    * `rejected`: Pleo refused it with a permanent per-item error. An ID that is not one of
      the job's items is rejected with `ACCOUNTING_ENTRY_DOES_NOT_EXIST`: listed here, but left
      out of the counts and the event of `complete()`.
    * `skipped`: not sent, because Pleo had already acknowledged it (in this run, an earlier
      one, or another JobRun sharing the ledger).
    * `unacknowledged`: sent (or about to be) but never acknowledged: the value says why. These
      block `complete()` until a later `update()` gets them acknowledged.
    """

    job_id: str
    acknowledged: Mapping[str, ItemStatus]
    rejected: Mapping[str, Rejection]
    skipped: Set[str]
    unacknowledged: Mapping[str, str]
    requests: int  # PUT requests sent, retries included
    retries: int  # requests sent again after a transient failure
    retries_by_cause: Mapping[str, int]  # e.g. {"http_503": 2, "connection_error": 1}
    items_resent: int  # items sent again because a response left them out or a transient error


@attrs.frozen
class CompletionOutcome:
    """How the job was closed: the final event and the counts behind it.

    The counts are of the job's items: `successful` and `failed` as Pleo acknowledged them,
    `rejected` those Pleo refused for good. An update for an ID that is not one of the job's
    items (Pleo rejects it with `ACCOUNTING_ENTRY_DOES_NOT_EXIST`) is in no count here and does
    not decide the event; the `UpdateReport` of its `update()` call lists it in `rejected`.
    """

    job_id: str
    event: JobEvent
    failure_reason: str | None
    failure_reason_type: JobFailureReasonType | None
    successful: int
    failed: int
    rejected: int  # the job's items refused by Pleo for good
    #: True when the event was not sent by this call because Pleo already had it: a retry whose
    #: first attempt landed, or an earlier run the ledger recorded (another JobRun or replica, a
    #: run before a crash). The job is in the event's status either way. Only the JobRun that
    #: sent the event reports False, each time its complete() is called.
    already_delivered: bool = False


@attrs.frozen
class Progress:
    """A snapshot after each settled batch of an `update()` call."""

    job_id: str
    acknowledged: int
    rejected: int
    skipped: int
    unacknowledged: int
    in_flight: int
    requests: int
    retries: int


#: Called with a `Progress` after each settled batch of an `update()`.
ProgressCallback = Callable[[Progress], None]
