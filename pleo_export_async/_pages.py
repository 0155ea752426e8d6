"""Every item of a cursor-paginated list endpoint of the Export API
(docs/pleo-api.md#cursor-pagination).

One loop for all three lists (jobs, a job's items, export items): ask for `limit` items, then
for the page after the last `endCursor`, while `hasNextPage` says there is one. Each GET goes
through the transport, so it is retried like any request (R6) and shares the client's limit and
`Retry-After` gate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import TypeVar

from . import _codec
from ._checks import whole_number
from ._errors import UnexpectedResponse
from ._models import CursorPage
from ._transport import Response, Transport, raise_for_response

T = TypeVar("T")

#: Turns an error answer into the exception to raise (it must raise for every error status).
ErrorMapping = Callable[[Response, str, str], None]


async def every_item(
    transport: Transport,
    path: str,
    item_type: type[T],
    *,
    page_size: int,
    params: Mapping[str, str | list[str]] | None = None,
    raise_for: ErrorMapping = raise_for_response,
) -> AsyncIterator[T]:
    """The items of every page, in the order Pleo gives them, read one page at a time."""
    query: dict[str, str | list[str]] = {**(params or {}), "limit": str(page_size)}
    seen_cursors: set[str] = set()
    while True:
        response = await transport.request("GET", path, params=query)
        raise_for(response, "GET", path)
        page = _codec.decode(response.body, CursorPage[item_type])  # type: ignore[valid-type]
        for item in page.data:
            yield item
        cursor = page.pagination.end_cursor
        if not page.pagination.has_next_page or not cursor:
            return
        if cursor in seen_cursors:
            # A cursor that comes back would page forever.
            raise UnexpectedResponse(f"GET {path}: the page cursor {cursor!r} repeats")
        seen_cursors.add(cursor)
        query["after"] = cursor


def checked_page_size(value: object) -> int:
    """A `page_size` argument, refused with InvalidInput unless it is an int in 1..1000."""
    return whole_number("page_size", value, low=1, high=1000)
