"""The two clients being compared, doing the same work against the echo server.

* The plain loop is what a careful integrator writes in twenty lines: aiohttp and orjson, a
  fixed set of workers taking 100 rows at a time, a dict per item, counting the IDs each response
  acknowledges, and no other state.
* The library does the same through `ItemUpdate` and `JobRun.update()`.

Two workloads:
* `Row`: an ID and the ERP's external ID, every item successful. The library builds its
  `ItemUpdate`s from the rows inside the timed work, as the plain loop builds its dicts.
* `FullRow`: every optional field set, one item in ten failed with a reason. The library's
  updates are built before timing (`full_updates`); the plain loop still builds its dicts.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson

from pleo_export_async import ApiKeyAuth, ItemUpdate, Ledger, PleoExportClient

API_KEY = "benchmark-key"
Row = tuple[str, str]  # accountingEntryId, the ERP's external ID
#: accountingEntryId, failed, external ID, external URL, exported at, failure reason and type.
FullRow = tuple[str, bool, str, str, datetime, str, str]

_ORJSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_OMIT_MICROSECONDS


def make_rows(count: int) -> list[Row]:
    return [(str(uuid.uuid4()), f"JE-{number}") for number in range(count)]


def make_full_rows(count: int) -> list[FullRow]:
    start = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    return [
        (
            str(uuid.uuid4()),
            number % 10 == 9,
            f"JE-{number}",
            f"https://erp.example.com/journal/JE-{number}",
            start + timedelta(seconds=number),
            f"Vendor V-{number} does not exist in the accounting system",
            "vendor_unknown",
        )
        for number in range(count)
    ]


def full_updates(rows: Iterable[FullRow]) -> list[ItemUpdate]:
    return [
        ItemUpdate.failed(entry_id, reason=reason, reason_type=reason_type)
        if failed
        else ItemUpdate.successful(
            entry_id, external_id=external_id, external_url=external_url, exported_at=exported_at
        )
        for entry_id, failed, external_id, external_url, exported_at, reason, reason_type in rows
    ]


def _plain_item(row: Row) -> dict[str, Any]:
    entry_id, external = row
    return {"accountingEntryId": entry_id, "status": "successful", "externalId": external}


def _plain_full_item(row: FullRow) -> dict[str, Any]:
    entry_id, failed, external_id, external_url, exported_at, reason, reason_type = row
    if failed:
        return {
            "accountingEntryId": entry_id,
            "status": "failed",
            "failureReason": reason,
            "failureReasonType": reason_type,
        }
    return {
        "accountingEntryId": entry_id,
        "status": "successful",
        "externalId": external_id,
        "externalUrl": external_url,
        "exportedAt": exported_at,
    }


async def _plain(
    base_url: str, rows: Sequence[Any], concurrency: int, item: Callable[[Any], dict[str, Any]]
) -> int:
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
            body = orjson.dumps([item(row) for row in chunk], option=_ORJSON_OPTIONS)
            async with session.put(url, data=body, headers=headers) as response:
                payload = orjson.loads(await response.read())
            returned = {entry["accountingEntryId"] for entry in payload["data"]}
            acknowledged += sum(1 for row in chunk if row[0] in returned)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return acknowledged


async def plain_loop(base_url: str, rows: Sequence[Row], concurrency: int) -> int:
    return await _plain(base_url, rows, concurrency, _plain_item)


def _validated_item(row: Row) -> dict[str, Any]:
    entry_id, external = row
    update = ItemUpdate.successful(entry_id, external_id=external)
    return {
        "accountingEntryId": update.accounting_entry_id,
        "status": "successful",
        "externalId": update.external_id,
    }


async def plain_loop_validated(base_url: str, rows: Sequence[Row], concurrency: int) -> int:
    """The plain loop, building a validated `ItemUpdate` per item as the library's input does:
    not a budget, the floor under the library's figure (what the per-item input costs)."""
    return await _plain(base_url, rows, concurrency, _validated_item)


async def plain_loop_full(base_url: str, rows: Sequence[FullRow], concurrency: int) -> int:
    return await _plain(base_url, rows, concurrency, _plain_full_item)


async def send_updates(
    base_url: str,
    updates: Iterable[ItemUpdate],
    concurrency: int,
    ledger: Ledger | None = None,
    **options: Any,
) -> int:
    """Returns how many items were acknowledged. `options` go to the client."""
    async with PleoExportClient(
        base_url, auth=ApiKeyAuth(API_KEY), max_concurrency=concurrency, **options
    ) as client:
        report = await client.job(str(uuid.uuid4()), ledger=ledger).update(updates)
    return len(report.acknowledged)


async def library(
    base_url: str,
    rows: Sequence[Row],
    concurrency: int,
    ledger: Ledger | None = None,
    **options: Any,
) -> int:
    """Rows are turned into updates as they are pulled, the way the plain loop turns them into
    dicts. `options` go to the client."""
    updates = (ItemUpdate.successful(entry_id, external_id=external) for entry_id, external in rows)
    return await send_updates(base_url, updates, concurrency, ledger, **options)


async def streamed_updates(count: int) -> AsyncIterator[ItemUpdate]:
    """Updates made one at a time, as a connector posting to its ERP would yield them."""
    for number in range(count):
        yield ItemUpdate.successful(str(uuid.uuid4()), external_id=f"JE-{number}")
