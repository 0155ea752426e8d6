"""Validation of `ItemUpdate` where it is built (rule R14, docs/behaviour.md), and its value
semantics."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pleo_export_async._checks import is_canonical_uuid
from pleo_export_async._codec import to_wire
from pleo_export_async._enums import ItemFailureReasonType, ItemStatus
from pleo_export_async._errors import InvalidInput, PleoExportError
from pleo_export_async._models import ItemUpdate

ENTRY_ID = "47324e87-8d05-4049-871b-f0dbe09ed4e0"


def _raises_invalid(build: Callable[[], object], field: str, value: object) -> InvalidInput:
    """Assert `build()` raises InvalidInput naming `field` and `value`; return the error."""
    with pytest.raises(InvalidInput) as caught:
        build()
    error = caught.value
    assert isinstance(error, ValueError)
    assert isinstance(error, PleoExportError)
    assert error.field == field
    assert error.value == value
    assert str(error).startswith(f"{field}={value!r}: ")
    return error


BAD_ENTRY_IDS: list[Any] = [
    "not-a-uuid",
    123,
    "",
    None,
    "47324e87-8d05-4049-871b-f0dbe09ed4e",  # one digit short
    "47324e87-8d05-4049-871b-f0dbe09ed4e0/../items",
    b"47324e87-8d05-4049-871b-f0dbe09ed4e0",
    # uuid.UUID reads these as other IDs: int() takes a sign, a space and any Unicode digit.
    " 7324e87-8d05-4049-871b-f0dbe09ed4e0",
    "+7324e87-8d05-4049-871b-f0dbe09ed4e0",
    "47324e87-8d05-4049-871b-f0dbe09ed4e\u0663",
]


@pytest.mark.parametrize("bad", BAD_ENTRY_IDS, ids=repr)
def test_bad_accounting_entry_id_is_refused_by_every_builder(bad: Any) -> None:
    """A value that is not a UUID raises InvalidInput naming accounting_entry_id and the value."""
    _raises_invalid(lambda: ItemUpdate.successful(bad), "accounting_entry_id", bad)
    _raises_invalid(
        lambda: ItemUpdate.failed(bad, reason_type="unexpected_failure"),
        "accounting_entry_id",
        bad,
    )
    _raises_invalid(lambda: ItemUpdate(bad, ItemStatus.SUCCESSFUL), "accounting_entry_id", bad)


def test_bad_accounting_entry_id_message_says_what_is_wrong() -> None:
    """The message of a bad ID states the field, the value and the problem."""
    error = _raises_invalid(
        lambda: ItemUpdate.successful("not-a-uuid"), "accounting_entry_id", "not-a-uuid"
    )
    assert str(error) == "accounting_entry_id='not-a-uuid': not a UUID"
    bad: Any = 123
    error = _raises_invalid(lambda: ItemUpdate.successful(bad), "accounting_entry_id", 123)
    assert "int" in str(error)


@pytest.mark.parametrize(
    "given",
    [
        "47324E87-8D05-4049-871B-F0DBE09ED4E0",
        "{47324e87-8d05-4049-871b-f0dbe09ed4e0}",
        "{47324E87-8D05-4049-871B-F0DBE09ED4E0}",
        "47324e878d054049871bf0dbe09ed4e0",
        "urn:uuid:47324e87-8d05-4049-871b-f0dbe09ed4e0",
        "URN:UUID:47324E87-8D05-4049-871B-F0DBE09ED4E0",
        "urn:UUID:{47324e87-8d05-4049-871b-f0dbe09ed4e0}",
    ],
)
def test_other_uuid_spellings_are_normalised_to_canonical_lower_case(given: str) -> None:
    """Upper-case, braced, hex-only and URN spellings are valid and become the canonical form."""
    assert ItemUpdate.successful(given).accounting_entry_id == ENTRY_ID
    failed = ItemUpdate.failed(given, reason_type=ItemFailureReasonType.TAG_UNKNOWN)
    assert failed.accounting_entry_id == ENTRY_ID
    assert ItemUpdate(given, ItemStatus.SUCCESSFUL) == ItemUpdate.successful(ENTRY_ID)


def test_uuid_objects_are_accepted() -> None:
    """A `uuid.UUID` is accepted and stored as its canonical string."""
    entry_id: Any = uuid.UUID(ENTRY_ID)
    update = ItemUpdate.successful(entry_id)
    assert update.accounting_entry_id == ENTRY_ID
    assert type(update.accounting_entry_id) is str
    assert to_wire(update) == {"accountingEntryId": ENTRY_ID, "status": "successful"}


@pytest.mark.parametrize(
    "bad",
    ["vendor_missing", "pleo_rate_limit", "VENDOR_UNKNOWN", "", 7, ItemStatus.FAILED],
    ids=repr,
)
def test_unknown_failure_type_is_refused(bad: Any) -> None:
    """A failure type outside the 18 item-level values raises, naming the argument as the
    caller wrote it: reason_type for failed(), failure_reason_type for the constructor."""
    error = _raises_invalid(
        lambda: ItemUpdate.failed(ENTRY_ID, reason="x", reason_type=bad),
        "reason_type",
        bad,
    )
    assert "accounting_system_validation_failure" in str(error)
    _raises_invalid(
        lambda: ItemUpdate(ENTRY_ID, ItemStatus.FAILED, failure_reason_type=bad),
        "failure_reason_type",
        bad,
    )


def test_failed_without_a_failure_type_is_refused() -> None:
    """A failed update needs a failure type, whichever way it is built."""
    _raises_invalid(
        lambda: ItemUpdate(ENTRY_ID, ItemStatus.FAILED, failure_reason="Vendor not found in ERP"),
        "failure_reason_type",
        None,
    )
    failed_text: Any = "failed"
    _raises_invalid(lambda: ItemUpdate(ENTRY_ID, failed_text), "failure_reason_type", None)
    missing: Any = None
    error = _raises_invalid(
        lambda: ItemUpdate.failed(ENTRY_ID, reason="x", reason_type=missing),
        "reason_type",
        None,
    )
    assert str(error) == "reason_type=None: a failed item needs a reason_type"


@pytest.mark.parametrize(
    "bad",
    [datetime(2025, 2, 21, 10, 5, 43), "2025-02-21T10:05:43Z", 1740132343],
    ids=repr,
)
def test_exported_at_must_be_an_aware_datetime(bad: Any) -> None:
    """A naive datetime, or anything that is not a datetime, raises naming exported_at."""
    error = _raises_invalid(
        lambda: ItemUpdate.successful(ENTRY_ID, exported_at=bad), "exported_at", bad
    )
    if isinstance(bad, datetime):
        assert "timezone-aware" in str(error)


@pytest.mark.parametrize("bad", ["abandoned", ItemStatus.ABANDONED], ids=repr)
def test_abandoned_status_is_refused(bad: Any) -> None:
    """Only Pleo sets an item to abandoned, so the client refuses to send it."""
    error = _raises_invalid(lambda: ItemUpdate(ENTRY_ID, bad), "status", "abandoned")
    assert "abandoned" in error.problem


@pytest.mark.parametrize("bad", ["done", "SUCCESSFUL", "", None, 1], ids=repr)
def test_unknown_status_is_refused(bad: Any) -> None:
    """A status outside ExportJobItemStatus raises naming status and the value."""
    _raises_invalid(lambda: ItemUpdate(ENTRY_ID, bad), "status", bad)


def test_failure_fields_on_a_successful_item_are_refused() -> None:
    """A successful (or pending, or in-progress) update carries no failure reason or type."""
    _raises_invalid(
        lambda: ItemUpdate(ENTRY_ID, ItemStatus.SUCCESSFUL, failure_reason="nothing went wrong"),
        "failure_reason",
        "nothing went wrong",
    )
    _raises_invalid(
        lambda: ItemUpdate(
            ENTRY_ID,
            ItemStatus.SUCCESSFUL,
            failure_reason_type=ItemFailureReasonType.VALIDATION_FAILURE,
        ),
        "failure_reason_type",
        ItemFailureReasonType.VALIDATION_FAILURE,
    )
    in_progress: Any = "in_progress"
    unexpected: Any = "unexpected_failure"
    _raises_invalid(
        lambda: ItemUpdate(ENTRY_ID, in_progress, failure_reason_type=unexpected),
        "failure_reason_type",
        ItemFailureReasonType.UNEXPECTED_FAILURE,
    )


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("external_id", 10452),
        ("external_id", b"JE-10452"),
        ("external_url", ["https://erp.example.com"]),
    ],
    ids=repr,
)
def test_non_string_text_fields_of_a_successful_item_are_refused(field: str, bad: Any) -> None:
    """external_id and external_url must be strings; anything else raises naming the field."""
    kwargs: dict[str, Any] = {field: bad}
    _raises_invalid(lambda: ItemUpdate.successful(ENTRY_ID, **kwargs), field, bad)


def test_non_string_failure_reason_is_refused() -> None:
    """The reason must be a string; failed() names it `reason`, as the caller wrote it."""
    bad: Any = 404
    _raises_invalid(
        lambda: ItemUpdate.failed(ENTRY_ID, reason=bad, reason_type="unexpected_failure"),
        "reason",
        404,
    )


def test_successful_builder_produces_the_documented_fields() -> None:
    """`successful` sets the status and the three optional result fields, nothing else."""
    exported_at = datetime(2023, 11, 7, 6, 31, 56, tzinfo=timezone(timedelta(hours=1)))
    update = ItemUpdate.successful(
        ENTRY_ID,
        external_id="JE-10452",
        external_url="https://erp.example.com/journal/JE-10452",
        exported_at=exported_at,
    )
    assert update.accounting_entry_id == ENTRY_ID
    assert update.status is ItemStatus.SUCCESSFUL
    assert update.external_id == "JE-10452"
    assert update.external_url == "https://erp.example.com/journal/JE-10452"
    assert update.exported_at == exported_at
    assert (update.failure_reason, update.failure_reason_type) == (None, None)
    bare = ItemUpdate.successful(ENTRY_ID)
    assert (bare.exported_at, bare.external_id, bare.external_url) == (None, None, None)


def test_failed_builder_produces_the_documented_fields() -> None:
    """`failed` sets the status, the reason and the failure type as an enum member."""
    update = ItemUpdate.failed(
        ENTRY_ID,
        reason="Vendor not found in ERP",
        reason_type="accounting_system_validation_failure",
    )
    assert update.status is ItemStatus.FAILED
    assert update.failure_reason == "Vendor not found in ERP"
    assert update.failure_reason_type is ItemFailureReasonType.ACCOUNTING_SYSTEM_VALIDATION_FAILURE
    assert (update.exported_at, update.external_id, update.external_url) == (None, None, None)
    no_reason = ItemUpdate.failed(ENTRY_ID, reason_type=ItemFailureReasonType.TAX_CODE_UNKNOWN)
    assert no_reason.failure_reason is None
    assert no_reason.failure_reason_type is ItemFailureReasonType.TAX_CODE_UNKNOWN


@pytest.mark.parametrize("reason_type", list(ItemFailureReasonType), ids=str)
def test_every_item_failure_type_is_accepted(reason_type: ItemFailureReasonType) -> None:
    """Each of the 18 item-level failure types builds a failed update, as member or as string."""
    assert ItemUpdate.failed(ENTRY_ID, reason_type=reason_type).failure_reason_type is reason_type
    from_text = ItemUpdate.failed(ENTRY_ID, reason_type=reason_type.value)
    assert from_text.failure_reason_type is reason_type


@pytest.mark.parametrize("status", ["pending", "in_progress", "successful"])
def test_statuses_the_client_may_set_are_converted_to_members(status: Any) -> None:
    """A status given as a string becomes the ItemStatus member."""
    update = ItemUpdate(ENTRY_ID, status)
    assert update.status is ItemStatus(status)


def test_item_update_is_frozen() -> None:
    """An ItemUpdate cannot be changed after it is built."""
    update = ItemUpdate.successful(ENTRY_ID)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        update.status = ItemStatus.FAILED  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        update.accounting_entry_id = "9cac86ed-c003-4a39-8387-28672a913b50"  # type: ignore[misc]
    assert update.status is ItemStatus.SUCCESSFUL


def test_equal_item_updates_compare_and_hash_equal() -> None:
    """Updates with the same values are equal and hash alike; different ones are not equal."""
    exported_at = datetime(2025, 2, 21, 10, 5, 43, tzinfo=UTC)
    first = ItemUpdate.successful(ENTRY_ID.upper(), external_id="JE-1", exported_at=exported_at)
    second = ItemUpdate.successful(ENTRY_ID, external_id="JE-1", exported_at=exported_at)
    assert first == second
    assert hash(first) == hash(second)
    assert len({first, second}) == 1
    other = ItemUpdate.successful(ENTRY_ID, external_id="JE-2", exported_at=exported_at)
    assert other != first
    failed = ItemUpdate.failed(ENTRY_ID, reason_type="unexpected_failure")
    assert failed != first
    assert len({first, other, failed}) == 3


#: URL paths: the characters of RFC 3986 that need no percent-encoding, and some that do.
URL_PATHS = st.text(alphabet="abcXYZ019/?#=&-._~%:@!$'()*+,;ü", max_size=15).map("/".__add__)
#: External URLs of the plain shape `successful()` takes on its fast path, and of the shapes (a
#: user name, a host or path that is not ASCII) that only the parsing check accepts.
EXTERNAL_URLS = st.builds(
    str.__add__,
    st.sampled_from(
        [
            "https://erp.example.com",
            "http://erp.example.com:8443",
            "https://books@erp.example.com",
            "https://bü.example",
        ]
    ),
    st.just("") | URL_PATHS,
)


@given(
    entry_id=st.uuids().map(str),
    external_id=st.none() | st.text(max_size=20),
    external_url=st.none() | EXTERNAL_URLS,
)
def test_the_successful_builder_equals_the_general_constructor(
    entry_id: str, external_id: str | None, external_url: str | None
) -> None:
    """`successful()` builds, on its fast path, the very value the checked constructor builds."""
    built = ItemUpdate.successful(entry_id, external_id=external_id, external_url=external_url)
    general = ItemUpdate(entry_id, ItemStatus.SUCCESSFUL, None, external_id, external_url)
    assert built == general
    assert hash(built) == hash(general)
    assert repr(built) == repr(general)
    assert attrs.asdict(built) == attrs.asdict(general)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        built.external_id = "changed"  # type: ignore[misc]


#: The canonical form as a regular expression: what `is_canonical_uuid` must agree with.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

_NEAR_UUIDS = [
    ENTRY_ID,
    ENTRY_ID.upper(),
    ENTRY_ID[:-1],
    ENTRY_ID + "0",
    ENTRY_ID.replace("-", "0", 1) + "-",  # a hyphen moved
    ENTRY_ID[:8] + "_" + ENTRY_ID[9:],
    ENTRY_ID[:-1] + "g",
    ENTRY_ID[:-1] + "\u0663",  # ARABIC-INDIC DIGIT THREE: a digit to Python, not to Pleo
    ENTRY_ID[:-1] + "\ud800",  # a lone surrogate, which UTF-8 cannot encode
    ENTRY_ID[:-1] + "\x00",
    " " + ENTRY_ID[1:],
]


@given(
    st.text(alphabet="0123456789abcdefABCDEF-g \u0663", min_size=30, max_size=40)
    | st.sampled_from(_NEAR_UUIDS)
    | st.text()
)
def test_the_canonical_uuid_check_agrees_with_the_canonical_pattern(text: str) -> None:
    """`is_canonical_uuid` is true exactly for the strings the canonical pattern matches whole."""
    assert is_canonical_uuid(text) is (_CANONICAL_UUID.fullmatch(text) is not None)


@pytest.mark.parametrize("near", _NEAR_UUIDS[1:], ids=repr)
def test_a_near_uuid_is_normalised_or_refused_as_the_general_constructor_does(near: str) -> None:
    """Whatever the fast path turns away gets the general constructor's answer: the same value
    or the same error."""
    try:
        general: ItemUpdate | InvalidInput = ItemUpdate(near, ItemStatus.SUCCESSFUL)
    except InvalidInput as refused:
        general = refused
    try:
        built: ItemUpdate | InvalidInput = ItemUpdate.successful(near)
    except InvalidInput as refused:
        built = refused
    if isinstance(general, InvalidInput):
        assert isinstance(built, InvalidInput)
        assert str(built) == str(general)
        assert (built.field, built.value) == ("accounting_entry_id", near)
    else:
        assert built == general
        assert general.accounting_entry_id == ENTRY_ID


def test_a_subclass_builds_its_own_instances_through_its_constructor() -> None:
    """`successful()` and `failed()` of a subclass return the subclass, checked as the
    constructor checks, while ItemUpdate's own return exactly ItemUpdate."""

    @attrs.frozen
    class TaggedUpdate(ItemUpdate):
        pass

    tagged = TaggedUpdate.successful(ENTRY_ID.upper(), external_id="JE-1")
    assert type(tagged) is TaggedUpdate
    assert tagged.accounting_entry_id == ENTRY_ID
    failed = TaggedUpdate.failed(ENTRY_ID, reason_type=ItemFailureReasonType.TAG_UNKNOWN)
    assert type(failed) is TaggedUpdate
    _raises_invalid(
        lambda: TaggedUpdate.successful("not-a-uuid"), "accounting_entry_id", "not-a-uuid"
    )
    assert type(ItemUpdate.successful(ENTRY_ID)) is ItemUpdate


def test_a_subclass_that_writes_its_own_successful_keeps_it_and_passes_it_on() -> None:
    """A `successful()` a subclass defines is neither replaced in it nor in its subclasses."""

    class Stamped(ItemUpdate):
        @classmethod
        def successful(cls, accounting_entry_id: str, **_: Any) -> ItemUpdate:
            return cls(accounting_entry_id, ItemStatus.SUCCESSFUL, external_id="STAMPED")

    class StampedAgain(Stamped):
        pass

    assert Stamped.successful(ENTRY_ID).external_id == "STAMPED"
    again = StampedAgain.successful(ENTRY_ID, external_id="JE-1")
    assert (type(again), again.external_id) == (StampedAgain, "STAMPED")
