"""Streams N updates from an async generator through JobRun.update() against the echo server
at BASE_URL, keeps the report, then prints the process's peak RSS in KiB. Run in a fresh
process per size.

    python -m benchmarks.memory_child BASE_URL N
"""

from __future__ import annotations

import asyncio
import resource
import sys
import uuid

from benchmarks.clients import API_KEY, streamed_updates
from pleo_export_async import ApiKeyAuth, PleoExportClient


def peak_rss_kib() -> int:
    """This process's peak RSS. On Linux, VmHWM: ru_maxrss keeps the peak of the parent that
    forked us (the benchmark runner, holding millions of rows) across exec."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def main(base_url: str, count: int) -> None:
    async with PleoExportClient(base_url, auth=ApiKeyAuth(API_KEY)) as client:
        run = client.job(str(uuid.uuid4()))
        report = await run.update(streamed_updates(count))
        # The job is still open: its ledger holds every ID, and the report is kept too.
        assert len(report.acknowledged) == count
        print(peak_rss_kib(), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
