"""Properties of the pure rules that read Pleo's items (rules R10, R11, R13): which of our updates
an item shows, which update is behind the result it shows, and how rejections count in the tally."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import attrs
from hypothesis import given
from hypothesis import strategies as st

from pleo_export_async._core._decision import (
    EventChoice,
    Tally,
    choose_event_for,
    choose_final_event,
    with_rejections,
)
from pleo_export_async._core._pleo_results import item_shows_update, update_behind_result
from pleo_export_async._enums import ItemFailureReasonType, JobEvent, JobFailureReasonType
from pleo_export_async._models import ExportJobItem, ItemUpdate

JOB_ID = "5d7f3c9e-8a1b-4c2d-9e0f-123456789abc"
IDS = st.uuids().map(str)
TEXTS = st.text(alphabet="abcdefghij -_0123456789", min_size=1, max_size=30).filter(str.strip)
MOMENTS = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
)
SUCCESSES = st.builds(
    ItemUpdate.successful,
    IDS,
    external_id=st.none() | TEXTS,
    external_url=st.none()
    | TEXTS.map(lambda text: f"https://erp.example/{text.strip().replace(' ', '%20')}"),
    exported_at=st.none() | MOMENTS,
)
FAILURES = st.builds(
    ItemUpdate.failed, IDS, reason=TEXTS, reason_type=st.sampled_from(list(ItemFailureReasonType))
)
UPDATES = SUCCESSES | FAILURES


def as_pleo_stores(update: ItemUpdate) -> ExportJobItem:
    """The item as Pleo lists it once the update landed: the fields sent, the time in seconds."""
    exported_at = update.exported_at
    if exported_at is not None:
        exported_at = exported_at.replace(microsecond=0)
    return ExportJobItem(
        update.accounting_entry_id,
        JOB_ID,
        update.status.value,
        exported_at=exported_at,
        external_id=update.external_id,
        external_url=update.external_url,
        failure_reason=update.failure_reason,
        failure_reason_type=(
            None if update.failure_reason_type is None else update.failure_reason_type.value
        ),
    )


@given(UPDATES)
def test_an_item_shows_the_update_that_landed_on_it(update: ItemUpdate) -> None:
    """An item holding what was sent (its time in whole seconds) shows that update."""
    assert item_shows_update(as_pleo_stores(update), update)


@given(UPDATES, st.sampled_from(["status", "external_id", "failure_reason", "exported_at"]))
def test_an_item_differing_in_a_field_sent_does_not_show_the_update(
    update: ItemUpdate, field: str
) -> None:
    """A different status, or any field we sent with another value, means the update is not
    what Pleo holds."""
    item = as_pleo_stores(update)
    other: object
    if field == "status":
        other = "pending"
    elif field == "exported_at":
        if item.exported_at is None:
            return
        other = item.exported_at + timedelta(seconds=1)
    else:
        if getattr(update, field) is None:
            return
        other = getattr(update, field) + "x"
    changes: dict[str, object] = {field: other}
    assert not item_shows_update(attrs.evolve(item, **changes), update)  # type: ignore[arg-type]


@given(UPDATES)
def test_a_field_left_out_of_the_update_does_not_matter(update: ItemUpdate) -> None:
    """What Pleo holds in a field the update left out (None) does not stop it showing the update."""
    item = as_pleo_stores(update)
    filled = attrs.evolve(
        item,
        external_id=item.external_id if update.external_id is not None else "set-by-someone",
        exported_at=item.exported_at if update.exported_at is not None else datetime.now(UTC),
    )
    assert item_shows_update(filled, update)


@given(UPDATES)
def test_the_update_behind_a_result_is_shown_by_that_item(update: ItemUpdate) -> None:
    """The update rebuilt from a final result has the result's status and fields, so the item
    shows it."""
    item = as_pleo_stores(update)
    behind = update_behind_result(item)
    assert behind is not None
    assert behind.accounting_entry_id == update.accounting_entry_id
    assert behind.status is update.status
    assert item_shows_update(item, behind)


@given(IDS, st.sampled_from(["pending", "in_progress", "queued", "something_new"]))
def test_an_item_with_no_final_result_has_no_update_behind_it(entry_id: str, status: str) -> None:
    """Only successful and failed are results; anything else gives None."""
    assert update_behind_result(ExportJobItem(entry_id, JOB_ID, status)) is None


@given(IDS, TEXTS.filter(lambda text: text not in set(ItemFailureReasonType)))
def test_an_unknown_failure_type_counts_as_unexpected_failure(entry_id: str, kind: str) -> None:
    """A failure type this version does not know is taken as unexpected_failure."""
    item = ExportJobItem(entry_id, JOB_ID, "failed", failure_reason="no", failure_reason_type=kind)
    behind = update_behind_result(item)
    assert behind is not None
    assert behind.failure_reason_type is ItemFailureReasonType.UNEXPECTED_FAILURE


def test_a_result_the_library_could_not_have_sent_has_no_update_behind_it() -> None:
    """A failed item with a blank reason is left to Pleo: no update is made up for it."""
    item = ExportJobItem(
        str(uuid.uuid4()), JOB_ID, "failed", failure_reason=" ", failure_reason_type="other"
    )
    assert update_behind_result(item) is None


def test_a_successful_item_with_a_url_this_version_refuses_still_counts_successful() -> None:
    """A successful item whose externalUrl is no http(s) URL (another connector's, or an
    earlier version's) has a successful update behind it, without that URL."""
    entry_id = str(uuid.uuid4())
    item = ExportJobItem(
        entry_id, JOB_ID, "successful", external_id="JE-9", external_url="erp entry 9"
    )
    assert update_behind_result(item) == ItemUpdate.successful(entry_id, external_id="JE-9")


COUNTS = st.integers(min_value=0, max_value=50)


@given(
    st.builds(Tally, COUNTS, COUNTS, st.just(0), st.just({})),
    st.lists(IDS, unique=True, max_size=30),
    st.data(),
)
def test_a_rejection_counts_only_for_an_item_never_acknowledged(
    acknowledged: Tally, rejected_ids: list[str], data: st.DataObject
) -> None:
    """Each rejected item adds one rejection and one validation_failure, unless Pleo
    acknowledged it earlier: then it counts once, as acknowledged."""
    earlier = set(
        data.draw(st.lists(st.sampled_from(rejected_ids), unique=True)) if rejected_ids else []
    )
    rejections = [(entry_id, "EXPORT_ENTRY_STATUS_UPDATE_FAILED") for entry_id in rejected_ids]
    tally = with_rejections(acknowledged, rejections, earlier.__contains__)
    new = len(rejected_ids) - len(earlier)
    assert tally.rejected == new
    assert (tally.successful, tally.failed) == (acknowledged.successful, acknowledged.failed)
    assert tally.total == acknowledged.total + new
    assert tally.failure_types.get("validation_failure", 0) == new


@given(st.builds(Tally, COUNTS, COUNTS, COUNTS, st.just({})))
def test_with_no_override_the_event_is_the_decisions(tally: Tally) -> None:
    """With nothing asked for, the event and reason are `choose_final_event`'s."""
    assert choose_event_for(tally) == choose_final_event(tally)


@given(st.builds(Tally, COUNTS, COUNTS, COUNTS, st.just({})), st.sampled_from(list(JobEvent)))
def test_an_event_asked_for_replaces_the_choice_and_its_reason(
    tally: Tally, event: JobEvent
) -> None:
    """Another event than the choice comes with no reason of ours; the same one keeps it."""
    choice = choose_event_for(tally, event)
    assert choice.event is event
    if event is not choose_final_event(tally).event:
        assert choice == EventChoice(event, None, None)
    else:
        assert choice == choose_final_event(tally)


@given(st.builds(Tally, st.just(0), COUNTS, st.integers(1, 50), st.just({})), TEXTS)
def test_a_reason_asked_for_replaces_ours_and_keeps_our_type(tally: Tally, reason: str) -> None:
    """A failed job's reason is the caller's when given; the failure type stays the choice's
    unless that is given too."""
    ours = choose_final_event(tally)
    choice = choose_event_for(tally, failure_reason=reason)
    assert (choice.event, choice.failure_reason) == (JobEvent.FAILED, reason)
    assert choice.failure_reason_type is ours.failure_reason_type
    typed = choose_event_for(
        tally, failure_reason_type=JobFailureReasonType.ACCOUNTING_SYSTEM_UNREACHABLE
    )
    assert typed.failure_reason == ours.failure_reason
    assert typed.failure_reason_type is JobFailureReasonType.ACCOUNTING_SYSTEM_UNREACHABLE
