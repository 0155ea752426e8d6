"""The process the workflow crash test kills: runs `process_job` on one job with a SqliteLedger.

python workflow_child.py BASE_URL API_KEY JOB_ID CALLS_FILE LEDGER_FILE

The handler appends the ID of each item it is called for to CALLS_FILE (flushed after each
write, so a SIGKILL loses none), then prints the job's final event when the job is closed.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from pleo_export_async import (
    ApiKeyAuth,
    ExportItem,
    ItemUpdate,
    PleoExportClient,
    RetryPolicy,
    SqliteLedger,
)

BATCH_SIZE = 25  # small batches, so that a 600-item job gives many moments to be killed at
HANDLER_PAUSE = 0.002  # seconds each handler call takes, as a call to an ERP would


def workflow_update(entry_id: str) -> ItemUpdate:
    """The same result for an item on every run: about one in seven failed, the rest successful."""
    number = int(entry_id.replace("-", ""), 16)
    if number % 7 == 0:
        return ItemUpdate.failed(
            entry_id, reason=f"Account 68{number % 10} unknown", reason_type="account_unknown"
        )
    return ItemUpdate.successful(entry_id, external_id=f"JE-{entry_id[:8]}")


async def main(base_url: str, api_key: str, job_id: str, calls: TextIO, ledger_file: str) -> None:
    async def handler(item: ExportItem) -> ItemUpdate:
        calls.write(item.accounting_entry_id + "\n")
        calls.flush()
        await asyncio.sleep(HANDLER_PAUSE)
        return workflow_update(item.accounting_entry_id)

    retry = RetryPolicy(max_attempts=10, initial_delay=0.01, max_delay=0.1)
    async with (
        SqliteLedger(ledger_file) as ledger,
        PleoExportClient(
            base_url,
            auth=ApiKeyAuth(api_key),
            max_concurrency=4,
            batch_size=BATCH_SIZE,
            retry=retry,
        ) as client,
    ):
        outcome = await client.process_job(job_id, handler, concurrency=4, ledger=ledger)
    assert outcome is not None
    print(outcome.event.value, flush=True)


if __name__ == "__main__":
    base_url, api_key, job_id, calls_file, ledger_file = sys.argv[1:6]
    with open(calls_file, "a", encoding="utf-8") as calls:
        asyncio.run(main(base_url, api_key, job_id, calls, ledger_file))
