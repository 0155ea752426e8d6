"""One client closes JOBS jobs of ITEMS items, one after another, against the echo server at
BASE_URL, and prints its RSS in KiB after each job named in MARKS. Run in a fresh process.

    python -m benchmarks.jobs_child BASE_URL JOBS ITEMS MARK...
"""

from __future__ import annotations

import asyncio
import gc
import sys
import uuid

from benchmarks.clients import API_KEY, make_rows
from pleo_export_async import ApiKeyAuth, ItemUpdate, PleoExportClient


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


async def main(base_url: str, jobs: int, items: int, marks: set[int]) -> None:
    async with PleoExportClient(base_url, auth=ApiKeyAuth(API_KEY)) as client:
        for number in range(1, jobs + 1):
            run = client.job(str(uuid.uuid4()))
            updates = (ItemUpdate.successful(i, external_id=x) for i, x in make_rows(items))
            report = await run.update(updates)
            assert len(report.acknowledged) == items
            await run.complete()
            del run, report
            if number in marks:
                gc.collect()
                print(number, rss_kib(), flush=True)


if __name__ == "__main__":
    base_url, jobs, items, *marks = sys.argv[1:]
    asyncio.run(main(base_url, int(jobs), int(items), {int(mark) for mark in marks}))
