"""Retry classification (rules R5, R6, R7): HTTP statuses, `Retry-After`, per-item error types."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pleo_export_async._core._classify import (
    Disposition,
    ItemErrorKind,
    classify_status,
    make_item_error_classifier,
    retry_after_seconds,
)
from pleo_export_async._enums import ItemUpdateErrorType

NOW = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)
TRANSIENT = ["EXPORT_ENTRY_STATUS_UPDATE_FAILED", "ACCOUNTING_ENTRY_UPDATE_FAILED"]
PERMANENT = "ACCOUNTING_ENTRY_DOES_NOT_EXIST"


def any_case(text: str) -> st.SearchStrategy[str]:
    """`text` with each letter upper- or lower-cased at random."""
    return st.lists(st.booleans(), min_size=len(text), max_size=len(text)).map(
        lambda flags: "".join(
            char.upper() if upper else char.lower() for char, upper in zip(text, flags, strict=True)
        )
    )


def expected_disposition(status: int) -> Disposition:
    if 200 <= status <= 299:
        return Disposition.SUCCESS
    if status in (429, 500, 502, 503, 504):
        return Disposition.RETRY
    if status == 401:
        return Disposition.REFRESH_CREDENTIAL
    return Disposition.FAIL


# -- HTTP statuses ---------------------------------------------------------------------------------


def test_classify_every_status() -> None:
    """2xx succeed; 429, 500, 502, 503, 504 retry; 401 refreshes; every other status fails."""
    wrong = {
        status: classify_status(status)
        for status in range(100, 600)
        if classify_status(status) is not expected_disposition(status)
    }
    assert wrong == {}


@pytest.mark.parametrize("status", [400, 403, 404, 409, 413, 422, 501, 505, 599])
def test_other_errors_are_never_retried(status: int) -> None:
    """Client errors (403 included) and unlisted 5xx are final, not retried (R6, R7)."""
    assert classify_status(status) is Disposition.FAIL


# -- Retry-After -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), ("0", 0.0), ("1.5", 1.5), ("120", 120.0), (" 7 ", 7.0)],
)
def test_retry_after_seconds_form(header: str, seconds: float) -> None:
    """The delay-seconds form is read as a number of seconds."""
    assert retry_after_seconds(header, NOW) == seconds


def test_retry_after_http_date_in_the_future() -> None:
    """An HTTP date is the pause until that instant, measured from `now`."""
    assert retry_after_seconds("Wed, 21 Oct 2026 07:28:30 GMT", NOW) == 30.0
    assert retry_after_seconds("Wed, 21 Oct 2026 08:28:00 GMT", NOW) == 3600.0


def test_retry_after_http_date_uses_now_not_the_clock() -> None:
    """The same header gives a pause that depends only on the `now` passed in."""
    header = "Wed, 21 Oct 2026 07:28:30 GMT"
    earlier = NOW - timedelta(seconds=100)
    assert retry_after_seconds(header, earlier) == 130.0


@pytest.mark.parametrize(
    "header", ["Wed, 21 Oct 2026 07:27:59 GMT", "Thu, 01 Jan 1970 00:00:00 GMT"]
)
def test_retry_after_http_date_in_the_past_is_zero(header: str) -> None:
    """An HTTP date already past asks for no pause at all."""
    assert retry_after_seconds(header, NOW) == 0.0


def test_retry_after_date_without_zone_is_utc() -> None:
    """A date with the `-0000` zone (no zone information) is taken as UTC."""
    assert retry_after_seconds("Wed, 21 Oct 2026 07:28:10 -0000", NOW) == 10.0


@pytest.mark.parametrize(
    "header",
    [None, "", "   ", "soon", "3 seconds", "Wed, 99 Foo 2026 99:99:99 GMT", "1.2.3", "0x10"],
)
def test_retry_after_garbage_is_none(header: str | None) -> None:
    """An absent or unreadable header gives None: no pause beyond the backoff."""
    assert retry_after_seconds(header, NOW) is None


@pytest.mark.parametrize("header", ["inf", "Infinity", "nan"])
def test_retry_after_non_finite_number_is_none(header: str) -> None:
    """A non-finite number is not a Retry-After value: None, not an endless (or NaN) pause."""
    assert retry_after_seconds(header, NOW) is None


# -- per-item error types --------------------------------------------------------------------------


def test_documented_types_are_the_ones_tested() -> None:
    """The three documented per-item error types are exactly those classified here."""
    assert {member.value for member in ItemUpdateErrorType} == {*TRANSIENT, PERMANENT}


@settings(max_examples=100)
@given(error_type=st.sampled_from(TRANSIENT).flatmap(any_case))
def test_default_transient_types_in_any_case(error_type: str) -> None:
    """EXPORT_ENTRY_STATUS_UPDATE_FAILED and ACCOUNTING_ENTRY_UPDATE_FAILED, in any case, retry."""
    assert make_item_error_classifier()(error_type) is ItemErrorKind.TRANSIENT


@settings(max_examples=100)
@given(
    error_type=st.one_of(
        any_case(PERMANENT),
        st.text(alphabet=string.ascii_letters + "_", max_size=40).filter(
            lambda t: t.upper() not in TRANSIENT
        ),
    )
)
def test_default_permanent_and_unknown_types(error_type: str) -> None:
    """ACCOUNTING_ENTRY_DOES_NOT_EXIST and every unknown type are permanent by default."""
    assert make_item_error_classifier()(error_type) is ItemErrorKind.PERMANENT


def test_mapping_override_keys_in_any_case() -> None:
    """A mapping override applies whatever the case of its keys and of the type looked up."""
    classify = make_item_error_classifier(
        {
            "accounting_entry_does_not_exist": ItemErrorKind.TRANSIENT,
            "Export_Entry_Status_Update_Failed": ItemErrorKind.PERMANENT,
            "CUSTOM_BUSY": ItemErrorKind.TRANSIENT,
        }
    )
    assert classify("ACCOUNTING_ENTRY_DOES_NOT_EXIST") is ItemErrorKind.TRANSIENT
    assert classify("accounting_entry_does_not_exist") is ItemErrorKind.TRANSIENT
    assert classify("EXPORT_ENTRY_STATUS_UPDATE_FAILED") is ItemErrorKind.PERMANENT
    assert classify("custom_busy") is ItemErrorKind.TRANSIENT
    # Types the mapping does not name keep their default.
    assert classify("accounting_entry_update_failed") is ItemErrorKind.TRANSIENT
    assert classify("SOMETHING_NEW") is ItemErrorKind.PERMANENT


def test_callable_override_and_fallback() -> None:
    """A callable override decides where it answers; where it returns None the default applies."""
    seen: list[str] = []

    def override(error_type: str) -> ItemErrorKind | None:
        seen.append(error_type)
        if error_type.upper() == "CUSTOM_BUSY":
            return ItemErrorKind.TRANSIENT
        if error_type.upper() == "ACCOUNTING_ENTRY_UPDATE_FAILED":
            return ItemErrorKind.PERMANENT
        return None

    classify = make_item_error_classifier(override)
    assert classify("custom_busy") is ItemErrorKind.TRANSIENT
    assert classify("ACCOUNTING_ENTRY_UPDATE_FAILED") is ItemErrorKind.PERMANENT
    # The override returns None: defaults, case-insensitively.
    assert classify("export_entry_status_update_failed") is ItemErrorKind.TRANSIENT
    assert classify(PERMANENT) is ItemErrorKind.PERMANENT
    assert classify("SOMETHING_NEW") is ItemErrorKind.PERMANENT
    assert len(seen) == 5  # consulted first, every time


@settings(max_examples=100)
@given(error_type=st.text(max_size=40))
def test_override_returning_none_equals_the_default(error_type: str) -> None:
    """An override that never answers classifies every type exactly as the default does."""
    default = make_item_error_classifier()
    assert make_item_error_classifier(lambda _: None)(error_type) is default(error_type)
    assert make_item_error_classifier({})(error_type) is default(error_type)
