"""Tuning concurrency: 2,000 items, 50 ms a request, three `max_concurrency`."""

import asyncio
import time

from pleo_export_async import ApiKeyAuth, ItemUpdate, PleoExportClient
from pleo_export_async.testing import FakePleo, Faults


async def export(pleo: FakePleo, max_concurrency: int) -> None:
    job = pleo.create_job(items=2_000)
    # A generator: the client pulls updates lazily, as batches go out.
    updates = (ItemUpdate.successful(entry_id) for entry_id in job.item_ids)
    async with PleoExportClient(
        pleo.base_url,
        auth=ApiKeyAuth(pleo.api_key),
        # Requests in flight, across every job of the client.
        max_concurrency=max_concurrency,
        # Items per PUT: Pleo's maximum, and the default.
        batch_size=100,
    ) as client:
        started = time.perf_counter()
        await client.job(job.id).update(updates)
        elapsed = time.perf_counter() - started
        stats = client.stats()
    print(
        f"max_concurrency={max_concurrency:2}: "
        f"{2_000 / elapsed:6,.0f} items/s, "
        f"{stats.requests} requests, at most {stats.max_in_flight} in flight"
    )


async def main() -> None:
    # Every answer 50 ms away.
    async with FakePleo(faults=Faults(latency=0.05)) as pleo:
        for max_concurrency in (1, 4, 16):
            await export(pleo, max_concurrency)


if __name__ == "__main__":
    asyncio.run(main())
