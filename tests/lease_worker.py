"""A worker process of the lease tests: `update()` then `complete()` on one job, with a
PostgresLedger shared with the other workers. Prints the outcome's event on success.

python lease_worker.py BASE_URL API_KEY JOB_ID IDS_FILE DSN SCHEMA [START_FILE]

With START_FILE it waits for that file to exist before its first request, so that several
workers can be started at the same moment.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from crash_child import crash_updates, update_then_complete
from pleo_export_async import (
    ApiKeyAuth,
    PleoExportClient,
    PostgresLedger,
    RetryPolicy,
)

#: Short, so that a killed worker's job passes to another within seconds.
LEASE_TTL = 3.0
REQUEST_TIMEOUT = 0.5


async def main(
    base_url: str,
    api_key: str,
    job_id: str,
    ids_file: str,
    dsn: str,
    schema: str,
    start_file: str | None = None,
) -> None:
    updates = crash_updates(json.loads(Path(ids_file).read_text()))  # noqa: ASYNC240
    retry = RetryPolicy(max_attempts=12, initial_delay=0.01, max_delay=0.2)
    async with (
        PostgresLedger(dsn, schema=schema, lease_ttl=LEASE_TTL) as ledger,
        PleoExportClient(
            base_url,
            auth=ApiKeyAuth(api_key),
            max_concurrency=4,
            retry=retry,
            timeout=REQUEST_TIMEOUT,
        ) as client,
    ):
        if start_file is not None:
            while not os.path.exists(start_file):  # noqa: ASYNC110, ASYNC240
                await asyncio.sleep(0.005)
        outcome = await update_then_complete(client.job(job_id, ledger=ledger), updates)
    print(outcome.event.value, flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:8]))
