"""A connector in thirty lines: book every pending export job into an ERP."""

import asyncio

# --8<-- [start:imports]
from pleo_export_async import (
    ApiKeyAuth,
    ExportItem,
    ItemUpdate,
    PleoExportClient,
)

# --8<-- [end:imports]
from pleo_export_async.testing import FakePleo

# --8<-- [start:export]
# The ERP's chart of accounts.
ERP_ACCOUNTS = {"6540", "6800", "7010", "7130", "7140", "7780"}


async def book(item: ExportItem) -> ItemUpdate:
    """Post one item to the ERP (here: check its accounts); say how it went."""
    for line in item.accounting_entry_lines:
        code = line.account.code if line.account else None
        if code not in ERP_ACCOUNTS:
            return ItemUpdate.failed(
                item.accounting_entry_id,
                reason=f"Account No. {code} does not exist in the ERP.",
                reason_type="account_unknown",
            )
    journal_entry = f"JE-{item.accounting_entry_id[:8]}"  # the ERP's own ID
    return ItemUpdate.successful(
        item.accounting_entry_id, external_id=journal_entry
    )


async def export_pending_jobs(client: PleoExportClient) -> None:
    """Every pending job, oldest first: start, book, report, close it once."""
    async for job in client.jobs(statuses=["pending"]):
        outcome = await client.process_job(job.id, book)
        if outcome is not None:
            counts = f"{outcome.successful} booked, {outcome.failed} failed"
            print(job.id, outcome.event.value, counts)


# --8<-- [end:export]
async def main() -> None:
    # Against Pleo: no fake, and Pleo's URL (the default) with your API key.
    async with FakePleo(seed=1) as pleo:
        pleo.create_job(items=200, status="pending")
        auth = ApiKeyAuth(pleo.api_key)
        async with PleoExportClient(pleo.base_url, auth=auth) as client:
            await export_pending_jobs(client)


if __name__ == "__main__":
    asyncio.run(main())
