"""The process the crash test kills: exports one job with a SqliteLedger, then completes it.

python crash_child.py BASE_URL API_KEY JOB_ID IDS_FILE LEDGER_FILE
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path

from pleo_export_async import (
    ApiKeyAuth,
    CompletionOutcome,
    ItemUpdate,
    JobFinished,
    JobRun,
    PleoExportClient,
    RetryPolicy,
    SqliteLedger,
)


def crash_updates(entry_ids: list[str]) -> list[ItemUpdate]:
    """The same updates on every run: every seventh item failed, the others successful."""
    return [
        ItemUpdate.failed(
            entry_id, reason=f"Account 68{n % 10} unknown", reason_type="account_unknown"
        )
        if n % 7 == 6
        else ItemUpdate.successful(entry_id, external_id=f"JE-{n}")
        for n, entry_id in enumerate(entry_ids)
    ]


async def update_then_complete(run: JobRun, updates: list[ItemUpdate]) -> CompletionOutcome:
    """Send the updates, then complete. A job already closed (by this process's last run before
    it died, or by another worker) raises JobFinished in update(); complete() then returns the
    recorded outcome."""
    with contextlib.suppress(JobFinished):
        await run.update(updates)
    return await run.complete()


async def main(base_url: str, api_key: str, job_id: str, ids_file: str, ledger_file: str) -> None:
    updates = crash_updates(json.loads(Path(ids_file).read_text()))  # noqa: ASYNC240
    retry = RetryPolicy(max_attempts=10, initial_delay=0.01, max_delay=0.1)
    async with (
        SqliteLedger(ledger_file) as ledger,
        PleoExportClient(
            base_url, auth=ApiKeyAuth(api_key), max_concurrency=4, retry=retry
        ) as client,
    ):
        outcome = await update_then_complete(client.job(job_id, ledger=ledger), updates)
    print(outcome.event.value, flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
