"""Properties of the lazy, read-only views a report gives of one call (`AcknowledgedView`,
`IdSetView`): they equal the eager collections they stand for, and never change."""

from __future__ import annotations

from collections.abc import Mapping, Set
from itertools import islice

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batching import ID_A, ID_B, ID_C, new_tracker, planned, settled
from pleo_export_async._core._batches import Batch
from pleo_export_async._core._views import AcknowledgedView, IdSetView
from pleo_export_async._enums import ItemFailureReasonType, ItemStatus
from pleo_export_async._models import ItemUpdate

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"

STATUSES = st.sampled_from(
    [ItemStatus.SUCCESSFUL, ItemStatus.FAILED, ItemStatus.IN_PROGRESS, ItemStatus.PENDING]
)


def update_of(entry_id: str, status: ItemStatus) -> ItemUpdate:
    """An update of `entry_id` with `status`."""
    if status is ItemStatus.FAILED:
        return ItemUpdate.failed(entry_id, reason_type=ItemFailureReasonType.TAG_UNKNOWN)
    return ItemUpdate(entry_id, status)


@st.composite
def one_call(draw: st.DrawFn) -> tuple[list[Batch], dict[str, ItemStatus], list[str]]:
    """The settled batches of one call (leftovers re-sent first, answers acknowledging some IDs
    in any order), the eager {id: status} they stand for, and IDs the view must not hold."""
    tracker = new_tracker()
    tracker.begin_call()
    fresh_ids = iter(draw(st.lists(st.uuids().map(str), min_size=2, max_size=40, unique=True)))
    absent = [next(fresh_ids)]
    batches: list[Batch] = []
    expected: dict[str, ItemStatus] = {}
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        size = draw(st.integers(min_value=0, max_value=8))
        updates = [update_of(i, draw(STATUSES)) for i in islice(fresh_ids, size)]
        batch = planned(tracker, updates)
        assert batch.updates is not None
        sent = list(batch.updates)  # what the batch carries: leftovers first, then the new ones
        if draw(st.booleans()):
            answer = [u.accounting_entry_id for u in sent]  # every ID, in order
        else:
            answer = [u.accounting_entry_id for u in sent if draw(st.booleans())]
            answer = draw(st.permutations(answer))
        tracker.reconcile(batch, answer, ())
        batches.append(batch)
        for update in sent:
            if update.accounting_entry_id in answer:
                expected[update.accounting_entry_id] = update.status
    absent.extend(i for i in tracker.acknowledgements.index if i not in expected)
    count = sum(batch.acknowledged_count for batch in batches)
    assert count == tracker.call.acknowledged
    return batches, expected, absent


@settings(max_examples=150, deadline=None)
@given(call=one_call())
def test_acknowledged_view_is_the_eager_mapping(
    call: tuple[list[Batch], dict[str, ItemStatus], list[str]],
) -> None:
    """The view over a call's settled batches equals the eager {id: status} mapping: same items,
    length and order, and unknown IDs are not in it."""
    batches, expected, absent = call
    count = len(expected)
    view = AcknowledgedView(batches, count)
    assert len(view) == count
    assert list(view) == list(expected)  # lazily, in batch order then send order
    assert view == expected
    assert expected == view
    assert dict(view) == expected
    assert list(view) == list(expected)  # and once it is a mapping
    for entry_id, status in expected.items():
        assert entry_id in view
        assert view[entry_id] is status
    for entry_id in absent:
        assert entry_id not in view
        assert view.get(entry_id) is None
        with pytest.raises(KeyError):
            view[entry_id]


@settings(max_examples=150, deadline=None)
@given(call=one_call(), data=st.data())
def test_iteration_is_the_same_before_and_after_a_lookup(
    call: tuple[list[Batch], dict[str, ItemStatus], list[str]], data: st.DataObject
) -> None:
    """Iterating a view gives the same IDs before and after a lookup makes it a mapping."""
    batches, expected, absent = call
    view = AcknowledgedView(batches, len(expected))
    before = list(view)
    probe = data.draw(st.sampled_from([*expected, *absent]))
    assert (probe in view) is (probe in expected)
    assert list(view) == before
    assert len(view) == len(before)


def test_view_of_a_call_record() -> None:
    """The view a report builds from a call's record lists every ID the call got acknowledged."""
    tracker = new_tracker()
    settled(tracker, [ItemUpdate.successful(ID_A), update_of(ID_B, ItemStatus.FAILED)], [ID_B])
    record = tracker.call
    view = AcknowledgedView(record.batches, record.acknowledged)
    assert dict(view) == {ID_B: ItemStatus.FAILED}
    assert len(view) == 1


def test_view_survives_forget_and_later_calls() -> None:
    """A view keeps showing the same IDs and statuses after later calls supersede a failed ID
    and after the record it came from is forgotten."""
    tracker = new_tracker()
    failed = update_of(ID_B, ItemStatus.FAILED)
    settled(tracker, [ItemUpdate.successful(ID_A), failed, update_of(ID_C, ItemStatus.IN_PROGRESS)])
    record = tracker.call
    lazy = AcknowledgedView(record.batches, record.acknowledged)
    looked_up = AcknowledgedView(record.batches, record.acknowledged)
    expected = {ID_A: ItemStatus.SUCCESSFUL, ID_B: ItemStatus.FAILED, ID_C: ItemStatus.IN_PROGRESS}
    assert dict(looked_up) == expected
    settled(tracker, [ItemUpdate.successful(ID_B), ItemUpdate.successful(ID_C)])
    tracker.acknowledgements.forget()
    assert tracker.acknowledgements.index == {}
    for view in (lazy, looked_up):
        assert list(view) == [ID_A, ID_B, ID_C]
        assert dict(view) == expected
        assert len(view) == 3
        assert view[ID_B] is ItemStatus.FAILED


def test_acknowledged_view_repr_is_short() -> None:
    """An AcknowledgedView's repr gives its size, not its IDs."""
    batch = settled(new_tracker(), [ItemUpdate.successful(ID_A), ItemUpdate.successful(ID_B)])
    view = AcknowledgedView([batch], 2)
    assert repr(view) == "AcknowledgedView(2 IDs)"
    dict(view)
    assert repr(view) == "AcknowledgedView(2 IDs)"
    assert ID_A not in repr(view)


# -- IdSetView -------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    ids=st.lists(st.uuids().map(str), max_size=20, unique=True),
    other=st.lists(st.uuids().map(str), max_size=5, unique=True),
)
def test_id_set_view_is_the_set_of_its_keys(ids: list[str], other: list[str]) -> None:
    """An IdSetView equals the frozenset and set of its mapping's keys, both ways round, and
    supports `in`, `len`, iteration and `<=` like them."""
    keys: Mapping[str, object] = dict.fromkeys(ids, ItemStatus.SUCCESSFUL)
    view: Set[str] = IdSetView(keys)
    as_frozen, as_set = frozenset(ids), set(ids)
    assert view == as_frozen
    assert as_frozen == view
    assert view == as_set
    assert as_set == view
    assert len(view) == len(ids)
    assert list(view) == ids
    assert all(entry_id in view for entry_id in ids)
    assert view <= as_frozen
    assert as_set <= view
    bigger = as_set | set(other)
    assert view <= bigger
    assert (bigger <= view) is (bigger == as_set)
    extra = set(other) - as_set
    for entry_id in extra:
        assert entry_id not in view
    assert (view == bigger) is not bool(extra)
    assert (view != bigger) is bool(extra)


def test_id_set_view_over_an_acknowledged_view() -> None:
    """An IdSetView over an AcknowledgedView is the set of the IDs the call got acknowledged."""
    batch = settled(
        new_tracker(),
        [ItemUpdate.successful(ID_A), ItemUpdate.successful(ID_B), ItemUpdate.successful(ID_C)],
        [ID_C, ID_A],
    )
    view: Set[str] = IdSetView(AcknowledgedView([batch], 2))
    assert view == {ID_A, ID_C}
    assert {ID_A, ID_C} == view
    assert ID_B not in view
    assert view <= {ID_A, ID_B, ID_C}
    assert not view <= {ID_A}


def test_id_set_view_repr_is_short() -> None:
    """An IdSetView's repr gives its size, not its IDs."""
    view = IdSetView(dict.fromkeys([ID_A, ID_B], None))
    assert repr(view) == "IdSetView(2 IDs)"
    assert ID_A not in repr(view)
