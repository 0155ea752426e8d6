"""The fake Pleo of the replica benchmark (`benchmarks.shared_ledger.replicas`), in its own
process so that its CPU is its own and not the workers'.

    python -m benchmarks.replica_fake COMPANIES JOBS_PER_COMPANY ITEMS SEED

It creates JOBS_PER_COMPANY pending jobs of ITEMS items for each of COMPANIES companies, draws
their export items, prints one JSON line (`base_url`, `api_key`, `job_ids`), and serves until
SIGTERM. It watches its own jobs every few milliseconds and prints `closed MONOTONIC`
(`time.monotonic()`, a clock every process of the machine shares) the moment none is `pending`
or `in_progress` any more: the end of the measured run, as the fake sees it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import signal
import sys
import time
import uuid

import aiohttp

from pleo_export_async.testing import FakePleo

_OPEN = frozenset({"pending", "in_progress"})
_WATCH_EVERY = 0.005


async def _watch(fake: FakePleo, job_ids: list[str]) -> None:
    # Polled: the fake has no event for a job's closing, and a look at 16 jobs costs little.
    while any(fake.job_status(job_id) in _OPEN for job_id in job_ids):  # noqa: ASYNC110
        await asyncio.sleep(_WATCH_EVERY)
    print(f"closed {time.monotonic()!r}", flush=True)


async def _draw_export_items(fake: FakePleo, job_ids: list[str]) -> None:
    """Have the fake draw each job's export items now, not at the first GET of the timed run:
    the fake's test data is no cost a connector's machine has, and drawing it took half of
    the fake's CPU, on the cores the workers share with it. A page of one item draws them all
    (`FakePleo.export_items` would, but copies them all as well)."""
    token = base64.b64encode(f"{fake.api_key}:".encode()).decode()
    async with aiohttp.ClientSession(headers={"Authorization": f"Basic {token}"}) as session:
        for job_id in job_ids:
            async with session.get(
                f"{fake.base_url}/v3/export-items", params={"job_id": job_id, "limit": "1"}
            ) as response:
                response.raise_for_status()


async def main(companies: int, jobs_per_company: int, items: int, seed: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    rng = random.Random(seed)
    async with FakePleo(seed=seed) as fake:
        job_ids = []
        for _ in range(companies):
            company_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            for _ in range(jobs_per_company):
                job = fake.create_job(items=items, status="pending", company_id=company_id)
                job_ids.append(job.id)
        await _draw_export_items(fake, job_ids)
        print(
            json.dumps({"base_url": fake.base_url, "api_key": fake.api_key, "job_ids": job_ids}),
            flush=True,
        )
        watcher = asyncio.create_task(_watch(fake, job_ids))
        await stop.wait()
        watcher.cancel()


if __name__ == "__main__":
    companies, jobs_per_company, items, seed = map(int, sys.argv[1:5])
    asyncio.run(main(companies, jobs_per_company, items, seed))
