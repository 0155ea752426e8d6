"""Surviving a crash: a second run on the same SqliteLedger sends nothing twice.

The first run reports half of a job's items and stops without completing it,
as a process killed mid-job would. The second run, with a new client and the
same ledger file, is given every item again: what Pleo acknowledged is
skipped, the rest is sent, and the job is closed once.
"""

import asyncio
import contextlib
import tempfile
from pathlib import Path

from pleo_export_async import (
    ApiKeyAuth,
    ItemUpdate,
    JobFinished,
    PleoExportClient,
    SqliteLedger,
)
from pleo_export_async.testing import FakePleo


async def run(
    pleo: FakePleo,
    ledger_path: Path,
    job_id: str,
    updates: list[ItemUpdate],
    *,
    finish: bool,
) -> None:
    auth = ApiKeyAuth(pleo.api_key)
    async with (
        SqliteLedger(ledger_path) as ledger,
        PleoExportClient(pleo.base_url, auth=auth) as client,
    ):
        job = client.job(job_id, ledger=ledger)
        # The last run may have closed the job already.
        with contextlib.suppress(JobFinished):
            # Acknowledged updates are skipped, not resent.
            report = await job.update(updates)
            sent, skipped = len(report.acknowledged), len(report.skipped)
            print(sent, "sent and acknowledged,", skipped, "skipped")
        if finish:
            # Sent at most once; or the outcome the ledger recorded.
            outcome = await job.complete()
            how = "already delivered" if outcome.already_delivered else "sent"
            print(outcome.event.value, how)


async def main() -> None:
    async with FakePleo() as pleo:
        job = pleo.create_job(items=300)
        updates = [ItemUpdate.successful(entry_id) for entry_id in job.item_ids]
        with tempfile.TemporaryDirectory() as directory:
            ledger_path = Path(directory) / "exports.sqlite3"
            await run(pleo, ledger_path, job.id, updates[:150], finish=False)
            # ... the process dies here; a new one starts with the same file ...
            await run(pleo, ledger_path, job.id, updates, finish=True)
        assert pleo.journal.resent_after_ack(job.id) == {}


if __name__ == "__main__":
    asyncio.run(main())
