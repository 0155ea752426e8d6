"""Helpers shared by the tests that drive a client against the fake server."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from pleo_export_async import ApiKeyAuth, ItemUpdate, PleoExportClient, RetryPolicy
from pleo_export_async.testing import FakeJob, FakePleo

#: Requests arriving this soon after a 429 was answered were already sent when the client read
#: it (client and fake share one event loop in these tests); no client can call them back.
IN_FLIGHT_GRACE = 0.05


def client_for(fake: FakePleo, **options: Any) -> PleoExportClient:
    options.setdefault("retry", RetryPolicy(max_attempts=6, initial_delay=0.01, max_delay=0.05))
    return PleoExportClient(fake.base_url, auth=ApiKeyAuth(fake.api_key), **options)


def successful_updates(ids: list[str]) -> list[ItemUpdate]:
    return [
        ItemUpdate.successful(
            entry_id,
            external_id=f"JE-{index}",
            external_url=f"https://erp.example.com/journal/JE-{index}",
        )
        for index, entry_id in enumerate(ids)
    ]


def mixed_updates(job: FakeJob, failed_every: int = 10) -> list[ItemUpdate]:
    """Every `failed_every`-th item failed with a realistic reason, the others successful."""
    updates = []
    for index, entry_id in enumerate(job.item_ids):
        if index % failed_every == failed_every - 1:
            updates.append(
                ItemUpdate.failed(
                    entry_id,
                    reason=f"Vendor V-{index} does not exist in the accounting system",
                    reason_type="vendor_unknown",
                )
            )
        else:
            updates.append(ItemUpdate.successful(entry_id, external_id=f"JE-{index}"))
    return updates


def put_bodies(fake: FakePleo, job_id: str) -> list[list[dict[str, Any]]]:
    return [entry.body for entry in fake.journal.puts(job_id)]


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll `condition` (state of the fake, which has no events to await) until it holds."""
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110  (the fake has no event to await)
            await asyncio.sleep(0.005)


@contextlib.contextmanager
def served_in_a_thread(**options: Any) -> Iterator[FakePleo]:
    """A FakePleo on loopback served by an event loop of its own in a background thread, for
    tests that run a command (which calls asyncio.run) in the test's own thread or a child."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-pleo", daemon=True)
    thread.start()
    server = FakePleo(**options)
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=10)
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
