"""Several replicas of one connector share a company's jobs through PostgreSQL.

Each replica runs `client.run_pending(...)` with a `PostgresLedger` on the same
database: every job is worked by one replica at a time (it holds the job's
lease), the others skip it and take the next one, and a replica that dies
leaves its job to be resumed by another once the lease expires.

In production each replica is a process (a container, a pod) of its own. Here
the three are tasks of one process, each with its own client and ledger, as
three processes would have. Run it with the database in PLEO_POSTGRES_DSN:
    PLEO_POSTGRES_DSN=postgresql://postgres@127.0.0.1/db python replicas.py
"""

import asyncio
import os
from collections import Counter

from pleo_export_async import (
    ApiKeyAuth,
    ExportItem,
    ItemUpdate,
    PleoExportClient,
    PostgresLedger,
)
from pleo_export_async.testing import FakePleo

# The database every replica shares, and the schema its tables live in.
DSN = os.environ["PLEO_POSTGRES_DSN"]
SCHEMA = os.environ.get("PLEO_POSTGRES_SCHEMA", "pleo_export")


async def book(item: ExportItem) -> ItemUpdate:
    await asyncio.sleep(0.002)  # the ERP's round trip
    entry = f"JE-{item.accounting_entry_id[:8]}"
    return ItemUpdate.successful(item.accounting_entry_id, external_id=entry)


# --8<-- [start:replica]
async def replica(
    base_url: str, api_key: str, stop: asyncio.Event
) -> Counter[str]:
    """One replica: what each process of the service runs until told to stop."""
    async with (
        # Each worker holds a job's lease while it works it; a lease
        # not renewed for 60 s (a dead worker) lets another take over.
        # It must outlast a request: above 1.6 times the client's timeout.
        PostgresLedger(DSN, schema=SCHEMA, lease_ttl=60) as ledger,
        PleoExportClient(base_url, auth=ApiKeyAuth(api_key)) as client,
    ):
        outcomes = await client.run_pending(
            book,
            ledger=ledger,
            companies_at_once=2,  # companies this replica works at once
            concurrency=8,  # handler calls per job
            poll_interval=0.5,  # list the jobs again every ... seconds
            stop=stop,  # set by SIGTERM: finish the results, then return
        )
    return Counter(outcome.event.value for outcome in outcomes.values())


# --8<-- [end:replica]
async def main() -> None:
    async with FakePleo(seed=5) as pleo:
        jobs = [pleo.create_job(items=300, status="pending") for _ in range(6)]
        stop = asyncio.Event()

        async def stop_when_done() -> None:
            # In a service: loop.add_signal_handler(signal.SIGTERM, stop.set)
            open_statuses = {"pending", "in_progress"}
            while True:
                statuses = {pleo.job_status(job.id) for job in jobs}
                if not statuses & open_statuses:
                    stop.set()
                    return
                await asyncio.sleep(0.1)

        async with asyncio.TaskGroup() as group:
            replicas = [
                group.create_task(replica(pleo.base_url, pleo.api_key, stop))
                for _ in range(3)
            ]
            group.create_task(stop_when_done())
        for number, task in enumerate(replicas, start=1):
            print(f"replica {number}: {dict(task.result())}")
        journal = pleo.journal
        events = [len(journal.final_events_applied(job.id)) for job in jobs]
        print(f"{len(jobs)} jobs, final events applied per job: {set(events)}")
        assert events == [1] * len(jobs)
        assert all(pleo.journal.resent_after_ack(job.id) == {} for job in jobs)


if __name__ == "__main__":
    asyncio.run(main())
