"""Properties of `Batch`, the per-batch record of one PUT (rules R1, R3, R4), and of the
fingerprints and read-back batches built from it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batching import ID_A, ID_B, ID_C, new_tracker, planned, settled
from pleo_export_async._core._batches import (
    Batch,
    BatchState,
    fingerprint,
    offer_fingerprint,
    read_back,
)
from pleo_export_async._enums import ItemFailureReasonType, ItemStatus
from pleo_export_async._models import ItemUpdate

WHEN = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)

SUCCESSFUL_A = ItemUpdate.successful(ID_A, external_id="JE-1")
FAILED_B = ItemUpdate.failed(
    ID_B, reason="Vendor missing", reason_type=ItemFailureReasonType.VENDOR_UNKNOWN
)
IN_PROGRESS_C = ItemUpdate(ID_C, ItemStatus.IN_PROGRESS)
MIXED = [SUCCESSFUL_A, FAILED_B, IN_PROGRESS_C]

# -- strategies ------------------------------------------------------------------------------------

ENTRY_IDS = st.uuids().map(str)
TEXTS = st.none() | st.text(max_size=8)
URLS = st.none() | st.text(alphabet="abc019/?#=-_~%", max_size=8).map(
    "https://erp.example/".__add__
)
#: A failure reason is left out or says something: blank text is refused.
REASONS = st.none() | st.text(max_size=8).filter(str.strip)
DATETIMES = st.none() | st.integers(min_value=0, max_value=10**6).map(
    lambda seconds: WHEN + timedelta(seconds=seconds)
)
FAILURE_TYPES = st.sampled_from(list(ItemFailureReasonType))


SUCCESSFUL_UPDATES = st.builds(
    ItemUpdate.successful,
    st.just(ID_A),
    external_id=TEXTS,
    external_url=URLS,
    exported_at=DATETIMES,
)
FAILED_UPDATES = st.builds(
    ItemUpdate.failed, st.just(ID_A), reason=REASONS, reason_type=FAILURE_TYPES
)
ANY_UPDATES = st.one_of(
    SUCCESSFUL_UPDATES,
    FAILED_UPDATES,
    st.sampled_from([ItemStatus.PENDING, ItemStatus.IN_PROGRESS]).map(
        lambda status: ItemUpdate(ID_A, status)
    ),
)
OPTIONAL_FIELDS = st.sampled_from(["external_id", "external_url", "exported_at"])


def with_id(update: ItemUpdate, entry_id: str) -> ItemUpdate:
    """`update` (drawn for ID_A) for another ID."""
    moved: ItemUpdate = attrs.evolve(update, accounting_entry_id=entry_id)
    return moved


@st.composite
def batch_contents(draw: st.DrawFn) -> tuple[list[ItemUpdate], list[str]]:
    """Updates of distinct IDs and the IDs of them Pleo acknowledged, in any order."""
    ids = draw(st.lists(ENTRY_IDS, min_size=1, max_size=12, unique=True))
    updates = [with_id(draw(ANY_UPDATES), entry_id) for entry_id in ids]
    flags = draw(st.lists(st.booleans(), min_size=len(ids), max_size=len(ids)))
    acknowledged = [entry_id for entry_id, flag in zip(ids, flags, strict=True) if flag]
    return updates, draw(st.permutations(acknowledged))


def other_text(data: st.DataObject, current: str | None) -> str | None:
    """An optional text other than `current`."""
    value = data.draw(TEXTS)
    if value == current:
        return "x" if current is None else current + "x"
    return value


def other_url(data: st.DataObject, current: str | None) -> str | None:
    """An optional URL other than `current`."""
    value = data.draw(URLS)
    if value == current:
        return "https://erp.example/x" if current is None else current + "x"
    return value


def other_successful(data: st.DataObject, update: ItemUpdate) -> ItemUpdate:
    """A successful update of the same ID that differs from `update` in one optional field."""
    field = data.draw(OPTIONAL_FIELDS)
    changed: ItemUpdate
    if field == "exported_at":
        when = data.draw(DATETIMES)
        if when == update.exported_at:
            when = WHEN - timedelta(seconds=1) if when is None else None
        changed = attrs.evolve(update, exported_at=when)
    elif field == "external_id":
        changed = attrs.evolve(update, external_id=other_text(data, update.external_id))
    else:
        changed = attrs.evolve(update, external_url=other_url(data, update.external_url))
    assert changed.status is ItemStatus.SUCCESSFUL
    assert changed != update
    return changed


# -- settling --------------------------------------------------------------------------------------


def test_settled_with_every_id() -> None:
    """A batch Pleo acknowledged whole acknowledges each ID it carried, in send order."""
    batch = settled(new_tracker(), MIXED)
    assert batch.state is BatchState.SETTLED
    assert batch.acknowledged_all
    assert batch.ids == [ID_A, ID_B, ID_C]
    assert list(batch.acknowledged_ids()) == [ID_A, ID_B, ID_C]
    assert batch.acknowledged_count == 3
    assert all(batch.acknowledges(entry_id) for entry_id in (ID_A, ID_B, ID_C))
    assert batch.status_of(ID_A) is ItemStatus.SUCCESSFUL
    assert batch.status_of(ID_B) is ItemStatus.FAILED
    assert batch.status_of(ID_C) is ItemStatus.IN_PROGRESS
    assert batch.acknowledged_update(ID_A) is ItemStatus.SUCCESSFUL
    assert batch.acknowledged_update(ID_B) == FAILED_B
    assert batch.acknowledged_update(ID_C) == IN_PROGRESS_C
    assert batch.others == {ID_B: FAILED_B, ID_C: IN_PROGRESS_C}
    assert batch.updates is None


def test_settle_none_acknowledges_every_id() -> None:
    """`settle(None)` is Pleo acknowledging every ID of the batch."""
    batch = Batch(object(), list(MIXED))
    batch.mark_sent()
    batch.settle(None)
    assert batch.acknowledged_all
    assert list(batch.acknowledged_ids()) == [ID_A, ID_B, ID_C]
    assert batch.acknowledged_count == 3
    assert batch.others == {ID_B: FAILED_B, ID_C: IN_PROGRESS_C}
    assert batch.updates is None


def test_settled_with_a_subset() -> None:
    """A partly acknowledged batch acknowledges only those IDs, listed in send order."""
    batch = settled(new_tracker(), MIXED, [ID_C, ID_A])
    assert batch.state is BatchState.SETTLED
    assert not batch.acknowledged_all
    assert batch.acknowledges(ID_A)
    assert not batch.acknowledges(ID_B)
    assert batch.acknowledges(ID_C)
    assert list(batch.acknowledged_ids()) == [ID_A, ID_C]
    assert batch.acknowledged_count == 2
    assert batch.status_of(ID_A) is ItemStatus.SUCCESSFUL
    assert batch.status_of(ID_C) is ItemStatus.IN_PROGRESS
    assert batch.acknowledged_update(ID_A) is ItemStatus.SUCCESSFUL
    assert batch.acknowledged_update(ID_C) == IN_PROGRESS_C
    assert batch.others == {ID_C: IN_PROGRESS_C}  # the unacknowledged failed update is not kept
    assert batch.ids == [ID_A, ID_B, ID_C]
    assert batch.updates is None


def test_settled_with_nothing_acknowledged() -> None:
    """A batch whose answer acknowledged none of its IDs acknowledges nothing and keeps nothing."""
    batch = settled(new_tracker(), MIXED, [])
    assert batch.state is BatchState.SETTLED
    assert batch.acknowledged_count == 0
    assert list(batch.acknowledged_ids()) == []
    assert not any(batch.acknowledges(entry_id) for entry_id in (ID_A, ID_B, ID_C))
    assert batch.others == {}
    assert batch.updates is None


def test_abandoned_batch_acknowledges_nothing() -> None:
    """A batch given up acknowledges none of its IDs but still knows which it carried."""
    tracker = new_tracker()
    tracker.begin_call()
    batch = planned(tracker, MIXED)
    tracker.give_up(batch, "cancelled")
    assert batch.state is BatchState.ABANDONED
    assert batch.ids == [ID_A, ID_B, ID_C]
    assert batch.acknowledged_count == 0
    assert list(batch.acknowledged_ids()) == []
    assert not any(batch.acknowledges(entry_id) for entry_id in (ID_A, ID_B, ID_C))
    assert batch.others == {}
    assert batch.updates is None


def test_abandoned_before_sending_still_knows_its_ids() -> None:
    """A batch abandoned while planned records the IDs it held and acknowledges none."""
    batch = Batch(object(), list(MIXED))
    batch.abandon()
    assert batch.state is BatchState.ABANDONED
    assert batch.ids == [ID_A, ID_B, ID_C]
    assert batch.acknowledged_count == 0
    assert not batch.acknowledges(ID_A)


def test_planned_update_while_in_flight_only() -> None:
    """A batch in flight finds the update it carries for an ID; once settled it holds none."""
    tracker = new_tracker()
    tracker.begin_call()
    batch = planned(tracker, MIXED)
    assert batch.state is BatchState.IN_FLIGHT
    assert batch.planned_update(ID_B) == FAILED_B
    assert batch.planned_update("00000000-0000-4000-8000-000000000000") is None
    tracker.reconcile(batch, [ID_A, ID_B, ID_C], ())
    assert batch.planned_update(ID_B) is None


def test_batch_repr_is_short() -> None:
    """A batch's repr gives its state and counts, not its IDs."""
    batch = settled(new_tracker(), MIXED, [ID_A])
    text = repr(batch)
    assert text == "<Batch settled, 3 items, 1 acknowledged>"
    assert ID_A not in text


# -- fingerprints ----------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(contents=batch_contents(), data=st.data())
def test_fingerprints_tell_the_sent_update(
    contents: tuple[list[ItemUpdate], list[str]], data: st.DataObject
) -> None:
    """After settling, each position's fingerprint is that of the update sent there, and
    `holds_same` is True for the update sent and False for any other (R1)."""
    updates, acknowledged = contents
    batch = settled(new_tracker(), updates, acknowledged)
    sent_order = [u.accounting_entry_id for u in updates if u.accounting_entry_id in acknowledged]
    assert list(batch.acknowledged_ids()) == sent_order
    assert batch.acknowledged_count == len(acknowledged)
    assert batch.others == {
        u.accounting_entry_id: u
        for u in updates
        if u.accounting_entry_id in acknowledged and u.status is not ItemStatus.SUCCESSFUL
    }
    if acknowledged:
        assert batch.fingerprints is not None
        assert len(batch.fingerprints) == len(updates)
        for position, update in enumerate(updates):
            assert batch.fingerprints[position] == fingerprint(update)
    for update in updates:
        entry_id = update.accounting_entry_id
        if entry_id not in acknowledged:
            continue
        assert batch.holds_same(entry_id, update)
        failed = with_id(data.draw(FAILED_UPDATES), entry_id)
        other = with_id(data.draw(ANY_UPDATES), entry_id)
        if update.status is ItemStatus.SUCCESSFUL:
            assert not batch.holds_same(entry_id, other_successful(data, update))
            assert not batch.holds_same(entry_id, failed)
            assert not batch.holds_same(entry_id, ItemUpdate(entry_id, ItemStatus.IN_PROGRESS))
        else:
            # An acknowledged update that is not successful is compared whole (R4).
            assert batch.holds_same(entry_id, failed) is (failed == update)
            assert batch.holds_same(entry_id, other) is (other == update)


@settings(max_examples=150, deadline=None)
@given(update=SUCCESSFUL_UPDATES, data=st.data())
def test_fingerprint_tells_successful_updates_apart(
    update: ItemUpdate, data: st.DataObject
) -> None:
    """Two successful updates of one ID differing in an optional field fingerprint differently."""
    assert fingerprint(update) == fingerprint(attrs.evolve(update))
    assert fingerprint(update) != fingerprint(other_successful(data, update))


@settings(max_examples=150, deadline=None)
@given(first=ANY_UPDATES, second=ANY_UPDATES)
def test_offer_fingerprint_is_every_field_but_the_id(first: ItemUpdate, second: ItemUpdate) -> None:
    """Offer fingerprints agree exactly when two updates agree in every field but the ID."""
    moved = attrs.evolve(first, accounting_entry_id=ID_B)
    assert offer_fingerprint(moved) == offer_fingerprint(first)
    assert (offer_fingerprint(first) == offer_fingerprint(second)) is (first == second)


# -- read back -------------------------------------------------------------------------------------


def test_read_back_without_an_answer_is_abandoned() -> None:
    """A batch recorded without an answer reads back abandoned, acknowledging nothing."""
    batch = read_back([ID_A, ID_B], None, {})
    assert batch.state is BatchState.ABANDONED
    assert batch.ids == [ID_A, ID_B]
    assert batch.call is None
    assert batch.acknowledged_count == 0
    assert list(batch.acknowledged_ids()) == []
    assert not batch.acknowledges(ID_A)
    assert not batch.acknowledges(ID_B)


@pytest.mark.parametrize("acknowledged", [[ID_A, ID_B, ID_C], {ID_C, ID_B, ID_A}])
def test_read_back_with_every_id(acknowledged: list[str] | set[str]) -> None:
    """A batch recorded with every ID acknowledged reads back acknowledging all, in order."""
    batch = read_back([ID_A, ID_B, ID_C], acknowledged, {ID_B: FAILED_B})
    assert batch.state is BatchState.SETTLED
    assert batch.acknowledged_all
    assert list(batch.acknowledged_ids()) == [ID_A, ID_B, ID_C]
    assert batch.acknowledged_count == 3
    assert batch.acknowledged_update(ID_A) is ItemStatus.SUCCESSFUL
    assert batch.acknowledged_update(ID_B) == FAILED_B
    assert batch.status_of(ID_B) is ItemStatus.FAILED
    assert batch.others == {ID_B: FAILED_B}


def test_read_back_with_a_subset() -> None:
    """A batch recorded with some IDs acknowledged reads back acknowledging only those."""
    batch = read_back([ID_A, ID_B, ID_C], [ID_C, ID_B], {ID_B: FAILED_B})
    assert batch.state is BatchState.SETTLED
    assert not batch.acknowledged_all
    assert not batch.acknowledges(ID_A)
    assert batch.acknowledges(ID_B)
    assert batch.acknowledges(ID_C)
    assert list(batch.acknowledged_ids()) == [ID_B, ID_C]
    assert batch.acknowledged_count == 2
    assert batch.acknowledged_update(ID_B) == FAILED_B
    assert batch.acknowledged_update(ID_C) is ItemStatus.SUCCESSFUL


@settings(max_examples=100, deadline=None)
@given(contents=batch_contents())
def test_read_back_says_what_the_live_batch_said(
    contents: tuple[list[ItemUpdate], list[str]],
) -> None:
    """A batch read back from its IDs, acknowledged IDs and others answers like the live one."""
    updates, acknowledged = contents
    live = settled(new_tracker(), updates, acknowledged)
    back = read_back(list(live.ids), list(live.acknowledged_ids()), dict(live.others))
    assert back.state is BatchState.SETTLED
    assert list(back.acknowledged_ids()) == list(live.acknowledged_ids())
    assert back.acknowledged_count == live.acknowledged_count
    for entry_id in live.ids:
        assert back.acknowledges(entry_id) is live.acknowledges(entry_id)
        if live.acknowledges(entry_id):
            assert back.acknowledged_update(entry_id) == live.acknowledged_update(entry_id)
            assert back.status_of(entry_id) is live.status_of(entry_id)
