"""Which final event closes the job, and with what reason (rule R10). Pure functions, no I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping

import attrs

from pleo_export_async._enums import JobEvent, JobFailureReasonType

#: The per-item error Pleo gives an update whose ID is none of the job's items.
NOT_AN_ITEM_OF_THE_JOB = "ACCOUNTING_ENTRY_DOES_NOT_EXIST"


def names_no_item_of_the_job(error_type: str | None) -> bool:
    """Whether Pleo rejected an update because its ID is not one of the job's items (Pleo
    writes the type in upper and in lower case)."""
    return error_type is not None and error_type.upper() == NOT_AN_ITEM_OF_THE_JOB


@attrs.frozen
class Tally:
    """The settled items of a job: what Pleo acknowledged, and what it rejected."""

    successful: int = 0
    failed: int = 0  # acknowledged with status failed
    rejected: int = 0  # refused by Pleo with a permanent per-item error
    #: Item-level failure types of the failed items, and of the rejected ones `validation_failure`.
    failure_types: Mapping[str, int] = attrs.field(factory=dict)
    #: Updates rejected because their ID is none of the job's items: not the job's results, so
    #: in no count above, not in `total`, and never a reason for the event.
    not_in_job: int = 0

    @property
    def total(self) -> int:
        """The job's items with a result: what the event is chosen from."""
        return self.successful + self.failed + self.rejected


def with_rejections(
    acknowledged: Tally,
    rejections: Iterable[tuple[str, str | None]],
    was_acknowledged: Callable[[str], bool],
) -> Tally:
    """The tally of a job: what Pleo acknowledged, plus each rejected item that it never
    acknowledged, counted as a `validation_failure`.

    `rejections` are the rejected IDs with Pleo's error type. An item rejected now but
    acknowledged earlier is in whatever state Pleo acknowledged, so it is counted once, as that.
    An ID Pleo says is none of the job's items (`ACCOUNTING_ENTRY_DOES_NOT_EXIST`) is counted
    apart, in `not_in_job`: an update for another job's item, say, says nothing about this
    job's."""
    failure_types = Counter(acknowledged.failure_types)
    rejected = not_in_job = 0
    for entry_id, error_type in rejections:
        if was_acknowledged(entry_id):
            continue
        if names_no_item_of_the_job(error_type):
            not_in_job += 1
        else:
            rejected += 1
            failure_types[JobFailureReasonType.VALIDATION_FAILURE.value] += 1
    return attrs.evolve(
        acknowledged,
        rejected=rejected,
        failure_types=dict(failure_types),
        not_in_job=not_in_job,
    )


def nothing_to_decide(tally: Tally) -> str:
    """Why the counts choose no event for a job none of whose items has a result: what
    `complete()` says when it refuses to guess."""
    if not tally.not_in_job:
        return "no item update was acknowledged or rejected; pass event= to close it anyway"
    return (
        "no update of the job's items was acknowledged or rejected: the"
        f" {tally.not_in_job} rejected update(s) for IDs that are not items of the job"
        f" ({NOT_AN_ITEM_OF_THE_JOB}) are left out of its counts; pass event= to close it anyway"
    )


@attrs.frozen
class EventChoice:
    event: JobEvent
    failure_reason: str | None = None
    failure_reason_type: JobFailureReasonType | None = None


_JOB_LEVEL_TYPES = frozenset(member.value for member in JobFailureReasonType)


def job_failure_type(failure_types: Mapping[str, int]) -> JobFailureReasonType:
    """The job-level type for a job whose items failed: their most frequent type that is also a
    job-level value, else `validation_failure`.

    Several item-level types (receipt_*, vendor_unknown, accounting_system_validation_failure...)
    do not exist at job level; Pleo refuses them on an event, so they count as validation_failure.
    """
    counts: Counter[str] = Counter()
    for item_type, count in failure_types.items():
        if item_type in _JOB_LEVEL_TYPES:
            counts[item_type] += count
        else:
            counts[JobFailureReasonType.VALIDATION_FAILURE.value] += count
    if not counts:
        return JobFailureReasonType.VALIDATION_FAILURE
    # Ties go to the type listed first in the enum, so the choice does not depend on input order.
    order = {member.value: index for index, member in enumerate(JobFailureReasonType)}
    best = max(counts, key=lambda value: (counts[value], -order[value]))
    return JobFailureReasonType(best)


def _describe_failures(tally: Tally) -> str:
    parts = []
    if tally.failed:
        parts.append(f"{tally.failed} failed in the accounting system")
    if tally.rejected:
        parts.append(f"{tally.rejected} rejected by Pleo")
    # Most frequent first, ties by name, so equal tallies give equal reasons.
    common = sorted(tally.failure_types.items(), key=lambda item: (-item[1], item[0]))[:1]
    most_often = f"; most often {common[0][0]}" if common else ""
    return ", ".join(parts) + most_often


def choose_final_event(tally: Tally) -> EventChoice:
    """The event that closes a job whose items are all settled (the caller checks that)."""
    not_exported = tally.failed + tally.rejected
    if not_exported == 0:
        return EventChoice(JobEvent.COMPLETED)
    failure_type = job_failure_type(tally.failure_types)
    if tally.successful == 0:
        return EventChoice(
            JobEvent.FAILED,
            f"All {not_exported} items could not be exported: {_describe_failures(tally)}.",
            failure_type,
        )
    return EventChoice(
        JobEvent.COMPLETED_WITH_ERRORS,
        f"{not_exported} of {tally.total} items could not be exported: "
        f"{_describe_failures(tally)}.",
        failure_type,
    )


def choose_event_for(
    tally: Tally,
    event: JobEvent | None = None,
    failure_reason: str | None = None,
    failure_reason_type: JobFailureReasonType | None = None,
) -> EventChoice:
    """The event for a settled job, with what the caller asked for in place of the choice: an
    event of its own (then with no reason of ours), a reason, a job-level failure type."""
    choice = choose_final_event(tally)
    if event is not None and event is not choice.event:
        choice = EventChoice(event, None, None)
    if failure_reason is not None or failure_reason_type is not None:
        choice = attrs.evolve(
            choice,
            failure_reason=failure_reason or choice.failure_reason,
            failure_reason_type=failure_reason_type or choice.failure_reason_type,
        )
    return choice
