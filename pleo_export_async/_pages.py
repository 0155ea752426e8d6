"""Every item of a cursor-paginated list endpoint of the Export API
(docs/pleo-api.md#cursor-pagination).

One loop for all three lists (jobs, a job's items, export items): ask for `limit` items, then
for the page after the last `endCursor`, while `hasNextPage` says there is one. Each GET goes
through the transport, so it is retried like any request (R6) and shares the client's limit and
`Retry-After` gate.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any, TypeVar

from . import _codec
from ._checks import whole_number
from ._errors import UnexpectedResponse
from ._models import CursorPageInfo
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
    read_ahead: bool = False,
) -> AsyncGenerator[T, None]:
    """The items of every page, in the order Pleo gives them.

    With `read_ahead`, the next page is asked for as soon as a page has arrived, while its
    items are taken: a consumer that works on each item (a handler waiting on an ERP) never
    waits for a page it could have had. At most one page is read beyond the one being taken;
    closing the iterator early cancels that request."""
    query: dict[str, str | list[str]] = {**(params or {}), "limit": str(page_size)}
    seen_cursors: set[str] = set()
    structure = _codec.page_item_reader(item_type)

    async def read(after: str | None) -> tuple[CursorPageInfo, list[Any]]:
        if after is not None:
            query["after"] = after
        response = await transport.request("GET", path, params=dict(query))
        raise_for(response, "GET", path)
        return _codec.read_page(response.body)

    def cursor_after(pagination: CursorPageInfo) -> str | None:
        cursor = pagination.end_cursor
        if not pagination.has_next_page or not cursor:
            return None
        if cursor in seen_cursors:
            # A cursor that comes back would page forever.
            raise UnexpectedResponse(f"GET {path}: the page cursor {cursor!r} repeats")
        seen_cursors.add(cursor)
        return cursor

    pagination, data = await read(None)
    following: asyncio.Task[tuple[CursorPageInfo, list[Any]]] | None = None
    try:
        while True:
            refusal: UnexpectedResponse | None = None
            try:
                cursor = cursor_after(pagination)
            except UnexpectedResponse as repeated:
                cursor, refusal = None, repeated  # raised once this page's items are taken
            if cursor is not None and read_ahead:
                # On its way before this page's items are structured: that CPU work overlaps
                # the wait for the next page.
                following = asyncio.get_running_loop().create_task(read(cursor))
                await asyncio.sleep(0)
            for element in data:
                yield structure(element)
            if refusal is not None:
                raise refusal
            if cursor is None:
                return
            if following is None:
                pagination, data = await read(cursor)
            else:
                pagination, data = await following
                following = None
    finally:
        if following is not None:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)


def checked_page_size(value: object) -> int:
    """A `page_size` argument, refused with InvalidInput unless it is an int in 1..1000."""
    return whole_number("page_size", value, low=1, high=1000)
