"""The two clients being compared, doing the same work against the echo server.

* `plain_loop`: what a careful integrator writes in twenty lines: aiohttp and orjson, a fixed set
  of workers taking 100 rows at a time, counting the IDs each response acknowledges.
* `library`: the same rows through `ItemUpdate.successful` and `JobRun.update()`.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import uuid
from collections.abc import AsyncIterator, Sequence

import aiohttp
import orjson

from pleo_export_async import ApiKeyAuth, ItemUpdate, Ledger, PleoExportClient

API_KEY = "benchmark-key"
Row = tuple[str, str]  # accountingEntryId, the ERP's external ID


def make_rows(count: int) -> list[Row]:
    return [(str(uuid.uuid4()), f"JE-{number}") for number in range(count)]


async def plain_loop(base_url: str, rows: Sequence[Row], concurrency: int) -> int:
    """Returns how many items were acknowledged."""
    url = f"{base_url}/v3/export-jobs/{uuid.uuid4()}/items"
    headers = {
        "Authorization": "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode(),
        "Content-Type": "application/json",
    }
    source = iter(rows)
    acknowledged = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal acknowledged
        while chunk := list(itertools.islice(source, 100)):
            body = orjson.dumps(
                [
                    {"accountingEntryId": entry_id, "status": "successful", "externalId": external}
                    for entry_id, external in chunk
                ]
            )
            async with session.put(url, data=body, headers=headers) as response:
                payload = orjson.loads(await response.read())
            returned = {item["accountingEntryId"] for item in payload["data"]}
            acknowledged += sum(1 for entry_id, _ in chunk if entry_id in returned)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return acknowledged


async def library(
    base_url: str, rows: Sequence[Row], concurrency: int, ledger: Ledger | None = None
) -> int:
    """Returns how many items were acknowledged. Rows are turned into updates as they are
    pulled, the way the plain loop turns them into dicts."""
    updates = (ItemUpdate.successful(entry_id, external_id=external) for entry_id, external in rows)
    async with PleoExportClient(
        base_url, auth=ApiKeyAuth(API_KEY), max_concurrency=concurrency
    ) as client:
        report = await client.job(str(uuid.uuid4()), ledger=ledger).update(updates)
    return len(report.acknowledged)


async def streamed_updates(count: int) -> AsyncIterator[ItemUpdate]:
    """Updates made one at a time, as a connector posting to its ERP would yield them."""
    for number in range(count):
        yield ItemUpdate.successful(str(uuid.uuid4()), external_id=f"JE-{number}")
