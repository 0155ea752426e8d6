"""Pulling an async input of `update()` a little ahead of the workers that fill batches from it
(rules R2, R16)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import attrs

logger = logging.getLogger("pleo_export_async")

#: What the reader hands out once the input is exhausted.
END = object()


@attrs.frozen
class SourceFailed:
    """The async input raised this: the call stops, and the caller gets it."""

    error: Exception


class AsyncSourceReader:
    """Pulls an async input in a task of its own, a little ahead of the workers.

    A worker filling a batch can then stop waiting when the batch must go out (R16) without
    cancelling the input in the middle of producing an update. Each update keeps the time it
    was pulled: the batch's clock starts with its oldest update.
    """

    def __init__(self, source: AsyncIterator[object], ahead: int) -> None:
        self._source = source
        self._queue: asyncio.Queue[tuple[float, object]] = asyncio.Queue(maxsize=ahead)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._pull())

    async def _pull(self) -> None:
        loop = asyncio.get_running_loop()
        put = self._queue.put
        try:
            async for update in self._source:
                await put((loop.time(), update))
        except Exception as error:
            await put((loop.time(), SourceFailed(error)))
            return
        await put((loop.time(), END))

    async def next(self, deadline: float | None) -> tuple[float, object] | None:
        """The next update and when it was pulled; None if `deadline` (loop time) passed first."""
        if deadline is None:
            return await self._queue.get()
        try:
            async with asyncio.timeout_at(deadline):
                return await self._queue.get()
        except TimeoutError:
            return None

    async def close(self) -> None:
        """Stop pulling: the input is let go (an async generator is closed, so that what it
        holds, such as tasks of its own, ends now rather than when it is garbage collected)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        aclose = getattr(self._source, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:
                # The input failed while being closed: the call's own outcome matters more.
                logger.exception("closing the update source failed")
