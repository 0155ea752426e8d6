"""A request's time limit that a stalled event loop does not use up.

When the event loop is blocked (a handler's blocking call, a CPU starved by other processes)
while requests are in flight, their answers keep arriving and wait, unread, in the socket. When
the loop runs again, asyncio runs the reads and the expired timers in the same pass, before any
task resumes: a plain timeout cancels the request that already has its answer, and the retry
sends again what Pleo acknowledged (R4).

`stall_tolerant_timeout` notices that its timer ran late, which only a stalled loop makes it do,
and moves itself on by as long as the loop was stalled, so an answer that is already in gets
read first. The stalled time it gives back is at most the limit once more: a request with no
answer still fails, within twice its limit however the loop is starved.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

#: A timer that runs this much later than it was due means the loop was stalled; an idle or
#: merely busy loop runs its timers within milliseconds.
STALL_SECONDS: Final = 0.25


@contextlib.asynccontextmanager
async def stall_tolerant_timeout(seconds: float) -> AsyncIterator[None]:
    """Like `asyncio.timeout(seconds)` (it raises `TimeoutError`), except that time the event
    loop spent stalled, up to `seconds` more, does not count."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(None) as timeout:
        deadline = _Deadline(loop, timeout, seconds)
        try:
            yield
        finally:
            deadline.cancel()


class _Deadline:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, timeout: asyncio.Timeout, seconds: float
    ) -> None:
        self._loop = loop
        self._timeout = timeout
        self._spare = seconds
        self._due = loop.time() + seconds
        self._timer = loop.call_at(self._due, self._check)

    def _check(self) -> None:
        now = self._loop.time()
        stalled = now - self._due
        if stalled > STALL_SECONDS and self._spare > 0:
            given_back = min(stalled, self._spare)
            self._spare -= given_back
            self._due = now + given_back
            self._timer = self._loop.call_at(self._due, self._check)
        else:
            self._timeout.reschedule(now)

    def cancel(self) -> None:
        self._timer.cancel()
