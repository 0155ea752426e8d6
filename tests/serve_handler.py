"""The handler `pleo-export serve serve_handler:handle` runs in tests/test_serve.py: every item
booked, each after SERVE_HANDLER_SLEEP seconds (default 1 ms), as an ERP call would take. With
SERVE_HANDLER_CALLED set to a path, the first call creates that file: a test can tell that
handler calls are under way."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pleo_export_async import ExportItem, ItemUpdate

_SLEEP = float(os.environ.get("SERVE_HANDLER_SLEEP", "0.001"))
_CALLED = os.environ.get("SERVE_HANDLER_CALLED")


async def handle(item: ExportItem) -> ItemUpdate:
    if _CALLED is not None:
        await asyncio.to_thread(Path(_CALLED).touch)
    await asyncio.sleep(_SLEEP)
    return ItemUpdate.successful(item.accounting_entry_id, external_id="JE-1")


def not_async(item: ExportItem) -> ItemUpdate:
    return ItemUpdate.successful(item.accounting_entry_id)
