"""Pure helpers of the fake: validation messages, date-times, cursors."""

from __future__ import annotations

import pytest

from pleo_export_async.testing._pagination import decode_cursor, encode_cursor
from pleo_export_async.testing._request_checks import (
    RequestInvalid,
    parse_datetime,
    validate_update_items,
)

VALID = "55555555-5555-4555-8555-555555555555"


def test_error_message_names_the_index_and_field() -> None:
    """An unknown enum value is reported as "[index].field: unknown value '...'"."""
    items = [{"accountingEntryId": VALID, "status": "successful"}] * 3 + [
        {"accountingEntryId": VALID, "status": "failed", "failureReasonType": "bogus"}
    ]
    with pytest.raises(RequestInvalid) as caught:
        validate_update_items(items, strict=False)
    assert caught.value.message == "[3].failureReasonType: unknown value 'bogus'"


def test_long_values_are_shortened_in_messages() -> None:
    """A huge bad value is cut short in the message."""
    with pytest.raises(RequestInvalid) as caught:
        validate_update_items([{"accountingEntryId": VALID, "status": "x" * 500}], strict=False)
    assert len(caught.value.message) < 80


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("2024-05-01T12:00:00Z", True),
        ("2024-05-01T12:00:00.530450712Z", True),
        ("2024-05-01T12:00:00+02:00", True),
        ("2024-05-01t12:00:00z", True),
        ("2024-05-01T12:00:00", False),
        ("2024-05-01", False),
        ("2024-02-30T12:00:00Z", False),
        ("2024-05-01T25:00:00Z", False),
        ("2024-05-01 12:00:00Z", False),
    ],
)
def test_rfc3339_datetimes(text: str, valid: bool) -> None:
    """Date-times need a date, a time and an offset; fractions up to nanoseconds are fine."""
    assert (parse_datetime(text) is not None) is valid


def test_cursors_round_trip_and_match_the_documented_alphabet() -> None:
    """A cursor is uppercase base32 and decodes to the ordinal it was made from."""
    for ordinal in (0, 1, 99, 123456):
        cursor = encode_cursor(ordinal)
        assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567=~")
        assert decode_cursor("after", cursor) == ordinal
