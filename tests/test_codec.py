"""Property tests of the codec: datetimes, the PUT body encoder, and both JSON back ends."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

import attrs
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pleo_export_async import _codec
from pleo_export_async._codec import (
    dumps,
    encode_item_updates,
    format_datetime,
    from_wire,
    loads,
    parse_datetime,
    to_wire,
)
from pleo_export_async._enums import ItemFailureReasonType, ItemStatus
from pleo_export_async._models import ItemUpdate

_WIRE_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_MAX_OFFSET_MINUTES = 23 * 60 + 59

fixed_offsets: st.SearchStrategy[tzinfo] = st.integers(
    -_MAX_OFFSET_MINUTES, _MAX_OFFSET_MINUTES
).map(lambda minutes: timezone(timedelta(minutes=minutes)))
# A day inside each end, so conversion to UTC stays within datetime's range.
aware_datetimes: st.SearchStrategy[datetime] = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.just(UTC) | fixed_offsets | st.timezones(),
)
optional_text: st.SearchStrategy[str | None] = st.none() | st.text()


def _utc_whole_seconds(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(microsecond=0)


@given(aware_datetimes)
def test_datetimes_round_trip_to_the_same_instant_in_whole_seconds(value: datetime) -> None:
    """format then parse gives back the same instant, cut to whole seconds, written `...Z`."""
    text = format_datetime(value)
    assert _WIRE_DATETIME.fullmatch(text)
    parsed = parse_datetime(text)
    assert parsed == _utc_whole_seconds(value)
    assert parsed.utcoffset() == timedelta(0)
    assert parse_datetime(format_datetime(parsed)) == parsed


def test_datetime_before_year_1000_is_sent_padded() -> None:
    """A year below 1000 is written with four digits, so the text parses back."""
    value = datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert format_datetime(value) == "0999-12-31T23:59:59Z"


@given(
    moment=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    fraction=st.text(alphabet="0123456789", min_size=1, max_size=9),
    offset_minutes=st.none() | st.integers(-_MAX_OFFSET_MINUTES, _MAX_OFFSET_MINUTES),
)
@example(moment=datetime(2025, 2, 21, 10, 5, 43), fraction="530450712", offset_minutes=None)
@example(moment=datetime(2023, 11, 7, 7, 31, 56), fraction="5", offset_minutes=120)
def test_parse_accepts_fractional_seconds_and_offsets(
    moment: datetime, fraction: str, offset_minutes: int | None
) -> None:
    """RFC 3339 text with 1 to 9 fractional digits and a `Z` or `±HH:MM` offset parses exactly."""
    if offset_minutes is None:
        suffix, offset = "Z", timedelta(0)
    else:
        sign = "-" if offset_minutes < 0 else "+"
        hours, minutes = divmod(abs(offset_minutes), 60)
        suffix, offset = f"{sign}{hours:02d}:{minutes:02d}", timedelta(minutes=offset_minutes)
    text = f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}.{fraction}{suffix}"
    parsed = parse_datetime(text)
    microsecond = int(fraction[:6].ljust(6, "0"))
    assert parsed == moment.replace(microsecond=microsecond, tzinfo=timezone(offset))
    assert parsed.utcoffset() == offset


def test_parse_reads_the_documented_forms() -> None:
    """Nanoseconds, `+02:00`, a bare date and a naive time parse to the right UTC instant."""
    assert parse_datetime("2025-02-21T10:05:43.530450712Z") == datetime(
        2025, 2, 21, 10, 5, 43, 530450, tzinfo=UTC
    )
    assert parse_datetime("2023-11-07T07:31:56+02:00") == datetime(
        2023, 11, 7, 5, 31, 56, tzinfo=UTC
    )
    assert parse_datetime("2025-02-14") == datetime(2025, 2, 14, tzinfo=UTC)
    assert parse_datetime("2025-02-14").tzinfo is UTC
    assert parse_datetime("2025-02-14T08:00:00") == datetime(2025, 2, 14, 8, tzinfo=UTC)


def test_parse_refuses_what_is_not_a_date_time() -> None:
    """A number or a malformed string raises ValueError."""
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_datetime(1700000000)
    with pytest.raises(ValueError, match="yesterday"):
        parse_datetime("yesterday")


# --- the PUT items body -----------------------------------------------------------------------

entry_ids: st.SearchStrategy[Any] = st.uuids().flatmap(
    lambda value: st.sampled_from(
        [str(value), str(value).upper(), "{" + str(value) + "}", value.hex, value]
    )
)
successful_updates = st.builds(
    ItemUpdate.successful,
    entry_ids,
    external_id=optional_text,
    external_url=st.none()
    | st.text(alphabet="abc019/?#=&-._~%ü", max_size=20).map("https://erp.example.com/".__add__),
    exported_at=st.none() | aware_datetimes,
)
failed_updates = st.builds(
    ItemUpdate.failed,
    entry_ids,
    reason=st.none() | st.text(max_size=40).filter(str.strip),  # blank reasons are refused
    reason_type=st.sampled_from(ItemFailureReasonType)
    | st.sampled_from([member.value for member in ItemFailureReasonType]),
)
item_updates: st.SearchStrategy[ItemUpdate] = successful_updates | failed_updates


def _expected_wire(update: ItemUpdate) -> dict[str, Any]:
    """The documented JSON of an update, built independently of the codec."""
    wire: dict[str, Any] = {
        "accountingEntryId": str(uuid.UUID(update.accounting_entry_id)),
        "status": update.status.value,
    }
    if update.exported_at is not None:
        utc = _utc_whole_seconds(update.exported_at).replace(tzinfo=None)
        wire["exportedAt"] = utc.isoformat() + "Z"
    optional = {
        "externalId": update.external_id,
        "externalUrl": update.external_url,
        "failureReason": update.failure_reason,
        "failureReasonType": update.failure_reason_type,
    }
    wire.update({key: str(value) for key, value in optional.items() if value is not None})
    return wire


@given(st.lists(item_updates, max_size=20))
def test_encoded_item_updates_carry_exactly_their_fields(batch: list[ItemUpdate]) -> None:
    """Every update encodes to a JSON object with exactly its non-None fields, in camelCase."""
    payload = loads(encode_item_updates(batch))
    assert isinstance(payload, list)
    assert len(payload) == len(batch)
    for update, wire in zip(batch, payload, strict=True):
        assert wire == _expected_wire(update)
        assert wire["status"] in {ItemStatus.SUCCESSFUL.value, ItemStatus.FAILED.value}
        assert type(wire["status"]) is str
        sent = update
        if update.exported_at is not None:
            sent = attrs.evolve(update, exported_at=_utc_whole_seconds(update.exported_at))
        assert from_wire(wire, ItemUpdate) == sent


@given(item_updates | st.builds(ItemUpdate, entry_ids, st.sampled_from([ItemStatus.IN_PROGRESS])))
def test_the_written_out_item_update_hook_agrees_with_the_generated_one(update: ItemUpdate) -> None:
    """The hand-written hook on the hot path gives what cattrs' generated hook gives, and the PUT
    body writes the same (though it may leave a UTC datetime for orjson to format)."""
    assert to_wire(update) == _codec.generated_item_update_hook(update)
    assert dumps(to_wire(update)) == dumps(_codec.generated_item_update_hook(update))
    assert dumps([to_wire(update)]) == encode_item_updates([update])


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@given(json_values)
def test_dumps_and_loads_round_trip_any_json_value(value: Any) -> None:
    """dumps writes UTF-8 bytes that loads reads back to an equal value."""
    body = dumps(value)
    assert isinstance(body, bytes)
    body.decode("utf-8")
    assert loads(body) == value
    assert loads(body.decode("utf-8")) == value


# --- the stdlib fallback ------------------------------------------------------------------------

_STDLIB_SCRIPT = """
import sys
from pleo_export_async import _codec
from pleo_export_async._models import ItemUpdate
assert _codec.JSON_LIBRARY == "json", _codec.JSON_LIBRARY
wire = _codec.loads(sys.stdin.buffer.read())
body = _codec.encode_item_updates([_codec.from_wire(item, ItemUpdate) for item in wire])
assert isinstance(body, bytes)
sys.stdout.buffer.write(body)
"""


def test_stdlib_json_fallback_encodes_like_the_default() -> None:
    """With PLEO_EXPORT_ASYNC_JSON=stdlib the codec uses `json` and encodes the same PUT body."""
    batch = [
        ItemUpdate.successful(
            "47324E87-8D05-4049-871B-F0DBE09ED4E0",
            external_id="JE-10452",
            external_url="https://erp.example.com/journal/JE-10452?x=1&y=æøå",
            exported_at=datetime(
                2023, 11, 7, 7, 31, 56, 250000, tzinfo=timezone(timedelta(hours=2))
            ),
        ),
        ItemUpdate.failed(
            "9cac86ed-c003-4a39-8387-28672a913b50",
            reason='Leverandør "ACME" findes ikke \u2028 供应商 🚫\n\t\\',
            reason_type=ItemFailureReasonType.VENDOR_UNKNOWN,
        ),
        ItemUpdate.successful("1090aff0-72ea-4a31-a24f-53955c8b83e3"),
    ]
    expected = encode_item_updates(batch)
    env = {**os.environ, "PLEO_EXPORT_ASYNC_JSON": "stdlib"}
    result = subprocess.run(
        [sys.executable, "-c", _STDLIB_SCRIPT],
        input=expected,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert loads(result.stdout) == loads(expected)
    assert loads(result.stdout)[0]["exportedAt"] == "2023-11-07T05:31:56Z"
