"""Small helpers shared by the fake server's tests: plain aiohttp calls, no client library."""

from __future__ import annotations

import re
from typing import Any, Final

import aiohttp

from pleo_export_async.testing import FakePleo

DATETIME_PATTERN: Final = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
CURSOR_PATTERN: Final = re.compile(r"^[A-Z2-7=~]+$")
UNKNOWN_ID: Final = "00000000-0000-4000-8000-000000000000"


def session_for(fake: FakePleo, *, force_close: bool = False) -> aiohttp.ClientSession:
    """A session to `fake` with its API key; `force_close` uses one connection per request."""
    return aiohttp.ClientSession(
        fake.base_url,
        headers=fake.auth_headers(),
        connector=aiohttp.TCPConnector(force_close=force_close),
    )


async def call(
    session: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    """(status, parsed JSON body or None) of one request."""
    async with session.request(method, path, **kwargs) as response:
        text = await response.text()
        if not text:
            return response.status, None
        assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
        return response.status, await response.json(content_type=None)


async def put_items(
    session: aiohttp.ClientSession, job_id: str, items: Any, **kwargs: Any
) -> tuple[int, Any]:
    """PUT /v3/export-jobs/{job_id}/items with `items` as the JSON body."""
    return await call(session, "PUT", f"/v3/export-jobs/{job_id}/items", json=items, **kwargs)


async def post_event(
    session: aiohttp.ClientSession, job_id: str, event: str, **extra: Any
) -> tuple[int, Any]:
    """POST /v3/export-job-events for `job_id`."""
    return await call(
        session, "POST", "/v3/export-job-events", json={"event": event, "jobId": job_id, **extra}
    )


def successful(entry_id: str, **extra: Any) -> dict[str, Any]:
    """An UpdateExportJobItemV3 reporting success."""
    return {"accountingEntryId": entry_id, "status": "successful", **extra}


def failed(entry_id: str, **extra: Any) -> dict[str, Any]:
    """An UpdateExportJobItemV3 reporting failure."""
    return {
        "accountingEntryId": entry_id,
        "status": "failed",
        "failureReason": "Vendor not found in ERP",
        "failureReasonType": "vendor_unknown",
        **extra,
    }


async def finish(
    session: aiohttp.ClientSession, job_id: str, item_ids: list[str], event: str
) -> tuple[int, Any]:
    """Send a final `event` as a connector should: first a result for every item the event
    needs (all successful for `completed`, the first failed for `completed_with_errors`)."""
    if event in ("completed", "completed_with_errors") and item_ids:
        updates = [successful(entry_id) for entry_id in item_ids]
        if event == "completed_with_errors":
            updates[0] = failed(item_ids[0])
        status, body = await put_items(session, job_id, updates)
        assert (status, body["errors"]) == (200, []), body
    return await post_event(session, job_id, event)
