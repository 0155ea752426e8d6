"""Cursor pagination as the Export API describes it (docs/pleo-api.md#cursor-pagination), over any
ordered collection.

A cursor names a record's ordinal (its position in the unfiltered collection, which never changes),
not its index in the filtered page, so a walk stays correct while records change status under a
status filter. Cursors are uppercase base32, matching the documented pattern `^[A-Z2-7=~]+$`.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

import attrs

from . import _spec
from ._request_checks import RequestInvalid, single_parameter

_CURSOR_PATTERN: Final = re.compile(r"^[A-Z2-7=~]+$")
_CURSOR_PREFIX: Final = "p:"
# The spec's formats for the two numbers (every paginated endpoint): offset int64, limit int32,
# both `minimum: 0`.
_INT64_MAX: Final = 2**63 - 1
_INT32_MAX: Final = 2**31 - 1

Record = TypeVar("Record")


def encode_cursor(ordinal: int) -> str:
    """The cursor that points at the record with this ordinal."""
    return base64.b32encode(f"{_CURSOR_PREFIX}{ordinal}".encode()).decode("ascii")


def decode_cursor(name: str, cursor: str) -> int:
    """The ordinal a cursor points at; RequestInvalid when the cursor is not one of ours."""
    if not _CURSOR_PATTERN.match(cursor):
        raise RequestInvalid(f"{name}: not a cursor (expected ^[A-Z2-7=~]+$)")
    try:
        text = base64.b32decode(cursor.replace("~", "")).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    digits = text[len(_CURSOR_PREFIX) :]
    # The fake never makes an ordinal beyond int64; a longer one could also exceed what int()
    # converts (4300 digits) and fail as a 500.
    if (
        not text.startswith(_CURSOR_PREFIX)
        or not digits.isdigit()
        or len(digits) > len(str(_INT64_MAX))
    ):
        raise RequestInvalid(f"{name}: unknown cursor")
    return int(digits)


@attrs.frozen
class PageRequest:
    """The pagination parameters of one request, validated."""

    limit: int
    after: int | None = None
    before: int | None = None
    offset: int | None = None
    # The `currentRequestPagination` object echoed back in the response.
    echo: dict[str, Any] = attrs.field(factory=dict)


def _non_negative_int(name: str, text: str, *, maximum: int, format_name: str) -> int:
    """A query parameter of OpenAPI type integer, `minimum: 0`, in `format_name`: a value that
    does not fit gets 400, as Pleo's conversion to a Java int or long would."""
    # isdecimal, not isdigit: "²" is a digit that int() refuses, which would be a 500.
    if not text.isdecimal():
        raise RequestInvalid(f"{name}: expected a non-negative integer, got {text[:20]!r}")
    significant = text.lstrip("0")
    # Compared by length first: int() refuses over 4300 digits, and a URL can hold more.
    if len(significant) > len(str(maximum)) or int(significant or "0") > maximum:
        raise RequestInvalid(
            f"{name}: above the {format_name} maximum {maximum}, got {text[:20]!r}"
        )
    return int(significant or "0")


def parse_page_request(
    query: Mapping[str, list[str]], *, default_limit: int, max_limit: int, strict: bool
) -> PageRequest:
    """Read `before`/`after`/`offset`/`limit`/`sorting_*` from a query string."""
    after_cursor = single_parameter(query, "after")
    before_cursor = single_parameter(query, "before")
    offset_text = single_parameter(query, "offset")
    given = [
        name
        for name, value in (
            ("before", before_cursor),
            ("after", after_cursor),
            ("offset", offset_text),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise RequestInvalid(f"{' and '.join(given)}: cannot be combined")

    limit_text = single_parameter(query, "limit")
    requested_limit = (
        default_limit
        if limit_text is None
        else _non_negative_int("limit", limit_text, maximum=_INT32_MAX, format_name="int32")
    )
    # No maximum is documented (docs/pleo-api.md#open-questions (row 1)): cap quietly, as a server
    # protecting itself would.
    limit = min(requested_limit, max_limit)

    sorting_keys = query.get("sorting_keys", [])
    sorting_order = query.get("sorting_order", [])
    for index, order in enumerate(sorting_order):
        if order not in _spec.PAGE_ORDERS:
            raise RequestInvalid(f"sorting_order[{index}]: unknown value {order[:20]!r}")
    if sorting_order and len(sorting_order) != len(sorting_keys):
        raise RequestInvalid("sorting_order: must have as many values as sorting_keys")
    if strict and sorting_keys:
        raise RequestInvalid("sorting_keys: no sort keys are documented; the fake sorts by age")

    echo: dict[str, Any] = {
        "parameters": {name: list(values) for name, values in query.items()},
        "limit": limit,
    }
    after = before = offset = None
    if after_cursor is not None:
        after = decode_cursor("after", after_cursor)
        echo["after"] = after_cursor
    if before_cursor is not None:
        before = decode_cursor("before", before_cursor)
        echo["before"] = before_cursor
    if offset_text is not None:
        offset = _non_negative_int("offset", offset_text, maximum=_INT64_MAX, format_name="int64")
        echo["offset"] = offset
    if sorting_keys:
        echo["sortingKeys"] = list(sorting_keys)
    if sorting_order:
        echo["sortingOrder"] = list(sorting_order)
    return PageRequest(limit=limit, after=after, before=before, offset=offset, echo=echo)


def paginate(
    records: Sequence[Record],
    ordinal: Callable[[Record], int],
    request: PageRequest,
) -> tuple[list[Record], dict[str, Any]]:
    """One page of `records` (sorted by ordinal) and its `CursorPageInfo`."""
    # Records are sorted by ordinal: a cursor is found by bisection, not by a scan per page.
    if request.after is not None:
        low = bisect.bisect_right(records, request.after, key=ordinal)
        high = min(low + request.limit, len(records))
    elif request.before is not None:
        high = bisect.bisect_left(records, request.before, key=ordinal)
        low = max(high - request.limit, 0)
    else:
        low = min(request.offset or 0, len(records))
        high = min(low + request.limit, len(records))
    page = list(records[low:high])
    info: dict[str, Any] = {
        "currentRequestPagination": request.echo,
        "hasNextPage": high < len(records),
        "hasPreviousPage": low > 0,
        "total": len(records),
    }
    if page:
        info["startCursor"] = encode_cursor(ordinal(records[low]))
        info["endCursor"] = encode_cursor(ordinal(records[high - 1]))
    return page, info
