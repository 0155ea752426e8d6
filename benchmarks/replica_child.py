"""One worker of the replica benchmark (`benchmarks.shared_ledger.replicas`): a connector
replica sharing a `PostgresLedger` schema with the other workers.

    PLEO_BENCH_DSN=... python -m benchmarks.replica_child BASE_URL API_KEY SCHEMA C [SECONDS]

The DSN comes from the environment, so that it never shows in the process list. The worker
opens its ledger and its client, prints `ready`, and waits for a line on stdin, so that the
workers start together and their start-up (imports, connections, the schema) is not timed.
Then it runs `run_pending(once=True)` rounds at concurrency C, the handler taking SECONDS per
item (20 ms unless given), until the fake lists no open job, and prints one JSON line: the jobs
it completed and the rounds it ran.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable

from pleo_export_async import (
    ApiKeyAuth,
    ExportItem,
    ItemUpdate,
    JobStatus,
    PleoExportClient,
    PostgresLedger,
)

#: The connector's work on one item, by default: a call to the ERP taking 20 ms.
HANDLER_SECONDS = 0.020
#: How long a worker that found every open job held by others waits before it looks again.
IDLE_POLL = 0.05
_OPEN = (JobStatus.PENDING, JobStatus.IN_PROGRESS)


def make_handler(seconds: float) -> Callable[[ExportItem], Awaitable[ItemUpdate]]:
    async def handler(item: ExportItem) -> ItemUpdate:
        await asyncio.sleep(seconds)
        entry_id = item.accounting_entry_id
        return ItemUpdate.successful(entry_id, external_id=f"ERP-{entry_id[:8]}")

    return handler


async def main(
    base_url: str, api_key: str, dsn: str, schema: str, concurrency: int, seconds: float
) -> None:
    handler = make_handler(seconds)
    async with (
        PostgresLedger(dsn, schema=schema) as ledger,
        PleoExportClient(base_url, auth=ApiKeyAuth(api_key)) as client,
    ):
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        completed = 0
        rounds = 0
        while True:
            outcomes = await client.run_pending(
                handler, ledger=ledger, concurrency=concurrency, once=True
            )
            completed += len(outcomes)
            rounds += 1
            if not [job async for job in client.jobs(statuses=_OPEN)]:
                break
            if not outcomes:
                # Every open job is another worker's: look again shortly.
                await asyncio.sleep(IDLE_POLL)
    print(json.dumps({"completed": completed, "rounds": rounds}), flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    base_url, api_key, schema, concurrency = sys.argv[1:5]
    seconds = float(sys.argv[5]) if len(sys.argv) > 5 else HANDLER_SECONDS
    dsn = os.environ["PLEO_BENCH_DSN"]
    asyncio.run(main(base_url, api_key, dsn, schema, int(concurrency), seconds))
