"""Properties of the final-event decision (rule R10): which event, which job-level failure type,
and a reason that states the counts."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pleo_export_async._core._decision import (
    EventChoice,
    Tally,
    choose_final_event,
    job_failure_type,
)
from pleo_export_async._enums import ItemFailureReasonType, JobEvent, JobFailureReasonType

JOB_TYPES = [member.value for member in JobFailureReasonType]
ITEM_TYPES = [member.value for member in ItemFailureReasonType]
ITEM_ONLY_TYPES = sorted(set(ITEM_TYPES) - set(JOB_TYPES))
ITEM_ONLY_VALIDATION: str = "accounting_system_validation_failure"
ENUM_ORDER = {value: index for index, value in enumerate(JOB_TYPES)}

FAILURE_TYPE_NAMES: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(ITEM_TYPES),
    st.sampled_from(JOB_TYPES),
    st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=20),
)
FAILURE_TYPES = st.dictionaries(FAILURE_TYPE_NAMES, st.integers(min_value=1, max_value=50))
COUNTS = st.integers(min_value=0, max_value=1000)
TALLIES = st.builds(Tally, COUNTS, COUNTS, COUNTS, FAILURE_TYPES)


def expected_job_type(failure_types: dict[str, int]) -> JobFailureReasonType:
    """Oracle: map item-only and unknown types to validation_failure, take the most frequent,
    and break ties by the order of the job-level enum."""
    counts: dict[str, int] = {}
    for name, count in failure_types.items():
        key = name if name in ENUM_ORDER else "validation_failure"
        counts[key] = counts.get(key, 0) + count
    if not counts:
        return JobFailureReasonType.VALIDATION_FAILURE
    best = min(counts, key=lambda name: (-counts[name], ENUM_ORDER[name]))
    return JobFailureReasonType(best)


def numbers_in(text: str) -> set[int]:
    return {int(number) for number in re.findall(r"\d+", text)}


def test_item_only_types_exist() -> None:
    """The item-level enum has values the job-level enum lacks (so mapping them matters)."""
    assert "accounting_system_validation_failure" in ITEM_ONLY_TYPES
    assert "vendor_unknown" in ITEM_ONLY_TYPES
    assert "receipt_upload_failure" in ITEM_ONLY_TYPES
    assert "accounting_system_validation_failure" not in JOB_TYPES


@settings(max_examples=300)
@given(tally=TALLIES)
def test_event_follows_the_counts(tally: Tally) -> None:
    """No failures: completed; failures and successes: completed_with_errors; else failed."""
    choice = choose_final_event(tally)
    not_exported = tally.failed + tally.rejected
    if not_exported == 0:
        assert choice == EventChoice(JobEvent.COMPLETED, None, None)
    elif tally.successful >= 1:
        assert choice.event is JobEvent.COMPLETED_WITH_ERRORS
    else:
        assert choice.event is JobEvent.FAILED


@settings(max_examples=300)
@given(tally=TALLIES.filter(lambda t: t.failed + t.rejected > 0))
def test_failure_type_is_always_a_job_level_value(tally: Tally) -> None:
    """A job with failures gets a job-level failureReasonType, never an item-only one (R10)."""
    choice = choose_final_event(tally)
    reason_type = choice.failure_reason_type
    assert isinstance(reason_type, JobFailureReasonType)
    assert reason_type.value in JOB_TYPES
    assert reason_type.value not in ITEM_ONLY_TYPES
    assert reason_type.value != ITEM_ONLY_VALIDATION
    assert reason_type is job_failure_type(tally.failure_types)


@settings(max_examples=300)
@given(tally=TALLIES.filter(lambda t: t.failed + t.rejected > 0))
def test_reason_states_the_counts(tally: Tally) -> None:
    """The reason is non-empty text naming the failed, rejected and not-exported counts (R10)."""
    choice = choose_final_event(tally)
    assert isinstance(choice.failure_reason, str)
    assert choice.failure_reason.strip()
    numbers = numbers_in(choice.failure_reason)
    assert tally.failed + tally.rejected in numbers
    if tally.failed:
        assert f"{tally.failed} failed" in choice.failure_reason
    if tally.rejected:
        assert f"{tally.rejected} rejected" in choice.failure_reason
    if tally.successful:
        assert tally.total in numbers


@settings(max_examples=300)
@given(failure_types=FAILURE_TYPES)
def test_job_failure_type_is_the_most_frequent_job_level_type(
    failure_types: dict[str, int],
) -> None:
    """The job type is the most frequent after mapping item-only types to validation_failure."""
    assert job_failure_type(failure_types) is expected_job_type(failure_types)


@settings(max_examples=200)
@given(failure_types=FAILURE_TYPES, data=st.data())
def test_job_failure_type_does_not_depend_on_dict_order(
    failure_types: dict[str, int], data: st.DataObject
) -> None:
    """Any reordering of the failure types gives the same job-level type."""
    reordered = dict(data.draw(st.permutations(list(failure_types.items()))))
    assert job_failure_type(reordered) is job_failure_type(failure_types)
    assert job_failure_type(dict(reversed(failure_types.items()))) is job_failure_type(
        failure_types
    )


@pytest.mark.parametrize(
    ("failure_types", "expected"),
    [
        ({}, JobFailureReasonType.VALIDATION_FAILURE),
        ({"vendor_unknown": 3}, JobFailureReasonType.VALIDATION_FAILURE),
        ({"accounting_system_validation_failure": 9}, JobFailureReasonType.VALIDATION_FAILURE),
        ({"receipt_upload_failure": 1, "tag_unknown": 1}, JobFailureReasonType.VALIDATION_FAILURE),
        ({"not_a_type_pleo_knows": 4}, JobFailureReasonType.VALIDATION_FAILURE),
        (
            {"accounting_system_timeout": 3, "vendor_unknown": 2},
            JobFailureReasonType.ACCOUNTING_SYSTEM_TIMEOUT,
        ),
        # Two item-only types add up as validation_failure and beat a single job-level type.
        (
            {"vendor_unknown": 2, "tag_unknown": 2, "accounting_system_timeout": 3},
            JobFailureReasonType.VALIDATION_FAILURE,
        ),
        # A tie goes to the type listed first in the job-level enum, in either dict order.
        (
            {"accounting_system_timeout": 2, "invalid_configuration": 2},
            JobFailureReasonType.INVALID_CONFIGURATION,
        ),
        (
            {"invalid_configuration": 2, "accounting_system_timeout": 2},
            JobFailureReasonType.INVALID_CONFIGURATION,
        ),
        (
            {"validation_failure": 1, "accounting_system_unreachable": 1},
            JobFailureReasonType.ACCOUNTING_SYSTEM_UNREACHABLE,
        ),
    ],
)
def test_job_failure_type_examples(
    failure_types: dict[str, int], expected: JobFailureReasonType
) -> None:
    """Worked examples of the mapping and the tie-break."""
    assert job_failure_type(failure_types) is expected


def test_failed_job_example() -> None:
    """Three rejected and two failed items, none successful: a failed event that says so."""
    choice = choose_final_event(Tally(0, 2, 3, {"validation_failure": 3, "vendor_unknown": 2}))
    assert choice.event is JobEvent.FAILED
    assert choice.failure_reason_type is JobFailureReasonType.VALIDATION_FAILURE
    assert choice.failure_reason is not None
    assert "5" in choice.failure_reason
    assert "2 failed" in choice.failure_reason
    assert "3 rejected" in choice.failure_reason


def test_equal_tallies_give_equal_choices() -> None:
    """choose_final_event is a function of the tally's value: dict order does not change it."""
    first = Tally(0, 4, 0, {"vendor_unknown": 2, "tag_unknown": 2})
    second = Tally(0, 4, 0, {"tag_unknown": 2, "vendor_unknown": 2})
    assert first == second
    assert choose_final_event(first) == choose_final_event(second)
