"""Many jobs in a service: resume what was in progress, then the oldest pending.

One client for the whole service (its `max_concurrency` is shared by every
job), one durable ledger, `process_job` per job, and a stop event for a clean
shutdown: set it from a SIGTERM handler, and the batches in flight settle, no
final event is sent, and the job is resumed at the next start.
"""

import asyncio
import contextlib
import tempfile
from pathlib import Path

from pleo_export_async import (
    ApiKeyAuth,
    ExportItem,
    ItemUpdate,
    JobFinished,
    JobStatus,
    PleoExportClient,
    SqliteLedger,
)
from pleo_export_async.testing import FakePleo

POLL_SECONDS = 30


async def post_to_erp(item: ExportItem) -> ItemUpdate:
    await asyncio.sleep(0.001)  # the ERP's round trip
    return ItemUpdate.successful(item.accounting_entry_id, external_id="JE-1")


async def serve(
    client: PleoExportClient,
    ledger: SqliteLedger,
    stop: asyncio.Event,
    *,
    once: bool,
) -> None:
    wanted = [JobStatus.IN_PROGRESS, JobStatus.PENDING]
    while not stop.is_set():
        # Oldest first; a job left in_progress by the last run goes first.
        jobs = [job async for job in client.jobs(statuses=wanted)]
        jobs.sort(key=lambda job: job.status != JobStatus.IN_PROGRESS)
        for job in jobs:
            if stop.is_set():
                break
            try:
                outcome = await client.process_job(
                    job.id, post_to_erp, concurrency=8, ledger=ledger, stop=stop
                )
            except JobFinished:
                continue  # closed by someone else meanwhile
            print(job.id, outcome.event.value if outcome else "stopped")
        if once:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=POLL_SECONDS)


async def main() -> None:
    async with FakePleo() as pleo:
        for _ in range(3):
            pleo.create_job(items=150, status="pending")
        # In a service: loop.add_signal_handler(signal.SIGTERM, stop.set)
        stop = asyncio.Event()
        with tempfile.TemporaryDirectory() as directory:
            async with (
                SqliteLedger(Path(directory) / "exports.sqlite3") as ledger,
                PleoExportClient(
                    pleo.base_url,
                    auth=ApiKeyAuth(pleo.api_key),
                    # Requests in flight, across all the jobs of this client.
                    max_concurrency=8,
                    # A batch that is not full leaves after 5 s (R16).
                    flush_after=5.0,
                ) as client,
            ):
                await serve(client, ledger, stop, once=True)
        statuses = {pleo.job_status(job_id) for job_id in pleo.job_ids()}
        assert statuses == {"completed"}


if __name__ == "__main__":
    asyncio.run(main())
