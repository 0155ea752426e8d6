"""A minimal Export API echo server for benchmarks, run in its own process.

It answers PUT items with every item acknowledged (the items echoed with their job ID), events
with 202, and nothing else: no bookkeeping, so the client's cost is what gets measured.

With `--jobs` it also serves what `process_job` reads, for the whole-job benchmark
(`benchmarks/whole_job.py`): jobs made on request (`POST /_bench/jobs`), each job
(`GET /v3/export-jobs/{id}`), its items (`GET /v3/export-jobs/{id}/items`, paged) and their
export data (`GET /v3/export-items?job_id=...`, paged), shaped as the fake Pleo answers them but
canned: the export items are a few templates of the fake's data with each item's ID spliced in.
Events move the job's status (`started`, then a final event) and PUT items are echoed as above;
what a job received is read back with `GET /_bench/jobs/{id}`. `--latency` applies to every
Export API request, not to the `/_bench` ones.

    python -m benchmarks.echo_server [--latency SECONDS] [--jobs]  # prints "port N", then serves
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from aiohttp import web


def build_app(latency: float) -> web.Application:
    async def update_items(request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        items = orjson.loads(await request.read())
        if latency:
            await asyncio.sleep(latency)
        for item in items:
            item["exportJobId"] = job_id
        return web.Response(
            body=orjson.dumps({"data": items, "errors": []}), content_type="application/json"
        )

    async def job_event(request: web.Request) -> web.Response:
        await request.read()
        if latency:
            await asyncio.sleep(latency)
        return web.Response(status=202)

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_put("/v3/export-jobs/{job_id}/items", update_items)
    app.router.add_post("/v3/export-job-events", job_event)
    return app


# ---- the whole-job server (--jobs) ---------------------------------------------------------

COMPANY_ID = "6f1c2a4e-8b3d-4c5e-9f70-1a2b3c4d5e6f"
_CREATED_AT = "2025-01-31T12:00:00Z"
_PLACEHOLDER = "00000000-0000-4000-8000-000000000000"
_TEMPLATES = 16  # different export items, cycled through a job
_FINAL_EVENTS = frozenset({"completed", "completed_with_errors", "failed"})  # = the status
_JSON = "application/json"


def _export_item_templates() -> list[list[bytes]]:
    """ExportItemV3 payloads as the fake makes them, each split where its ID goes."""
    from pleo_export_async.testing._data import ExportItemFactory

    factory = ExportItemFactory(random.Random("bench:company"), company_id=COMPANY_ID)
    rng = random.Random("bench:items")
    return [
        orjson.dumps(factory.build(_PLACEHOLDER, rng=rng, vendor_based_bookkeeping=False)).split(
            _PLACEHOLDER.encode()
        )
        for _ in range(_TEMPLATES)
    ]


def entry_id(job_id: str, ordinal: int) -> str:
    """The accountingEntryId of the job's item `ordinal`: the job's ID, ending in the ordinal."""
    return f"{job_id[:24]}{ordinal:012x}"


def _cursor(ordinal: int) -> str:
    return base64.b32encode(f"p:{ordinal}".encode()).decode("ascii")


def _after(cursor: str | None) -> int:
    """The first ordinal of the page after `cursor`."""
    if cursor is None:
        return 0
    return int(base64.b32decode(cursor).decode("ascii")[2:]) + 1


class _Job:
    __slots__ = (
        "acknowledged",
        "events",
        "first_put",
        "id",
        "items",
        "last_event",
        "put_items",
        "puts",
        "started_at",
        "status",
    )

    def __init__(self, job_id: str, items: int, status: str) -> None:
        self.id = job_id
        self.items = items
        self.status = status
        self.started_at: str | None = None
        self.acknowledged: dict[str, str] = {}  # accountingEntryId: status
        self.puts = 0
        self.put_items = 0
        self.first_put: float | None = None  # time.monotonic(), comparable across processes
        self.last_event: float | None = None
        self.events: list[str] = []

    def payload(self) -> dict[str, Any]:
        job: dict[str, Any] = {
            "id": self.id,
            "companyId": COMPANY_ID,
            "createdAt": _CREATED_AT,
            "expiresIn": 3600,
            "isInteractive": True,
            "lastUpdatedAt": _CREATED_AT,
            "numberOfItems": self.items,
            "status": self.status,
            "vendorBasedBookkeeping": False,
        }
        if self.started_at is not None:
            job["startedAt"] = self.started_at
        return job

    def stats(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "events": self.events,
            "puts": self.puts,
            "putItems": self.put_items,
            "acknowledged": len(self.acknowledged),
            "firstPut": self.first_put,
            "lastEvent": self.last_event,
            "cpu": time.process_time(),
        }


def _error(status: int, error_type: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps({"type": error_type, "message": message}),
        content_type=_JSON,
    )


def _page_bounds(request: web.Request, total: int) -> tuple[int, int, dict[str, Any]]:
    limit = min(int(request.query.get("limit", "100")), 1000)
    low = min(_after(request.query.get("after")), total)
    high = min(low + limit, total)
    info: dict[str, Any] = {
        "currentRequestPagination": {"limit": limit},
        "hasNextPage": high < total,
        "hasPreviousPage": low > 0,
        "total": total,
    }
    if high > low:
        info["startCursor"] = _cursor(low)
        info["endCursor"] = _cursor(high - 1)
    return low, high, info


def build_job_app(latency: float) -> web.Application:
    jobs: dict[str, _Job] = {}
    templates = _export_item_templates()

    async def pause() -> None:
        if latency:
            await asyncio.sleep(latency)

    def not_found() -> web.Response:
        return _error(404, "EXPORT_NOT_FOUND", "Export job not found.")

    async def create_job(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        job = _Job(str(uuid.uuid4()), int(body["items"]), body.get("status", "pending"))
        jobs[job.id] = job
        return web.json_response({"id": job.id, "cpu": time.process_time()}, status=201)

    async def job_stats(request: web.Request) -> web.Response:
        job = jobs.get(request.match_info["job_id"])
        return not_found() if job is None else web.json_response(job.stats())

    async def forget_job(request: web.Request) -> web.Response:
        jobs.pop(request.match_info["job_id"], None)
        return web.Response(status=204)

    async def get_job(request: web.Request) -> web.Response:
        await pause()
        job = jobs.get(request.match_info["job_id"])
        if job is None:
            return not_found()
        return web.Response(body=orjson.dumps({"data": job.payload()}), content_type=_JSON)

    async def get_job_items(request: web.Request) -> web.Response:
        await pause()
        job = jobs.get(request.match_info["job_id"])
        if job is None:
            return not_found()
        low, high, info = _page_bounds(request, job.items)
        status = request.query.get("status")
        data = []
        for ordinal in range(low, high):
            item_id = entry_id(job.id, ordinal)
            item_status = job.acknowledged.get(item_id, "pending")
            if status is None or item_status == status:
                data.append(
                    {"accountingEntryId": item_id, "exportJobId": job.id, "status": item_status}
                )
        return web.Response(
            body=orjson.dumps({"data": data, "pagination": info}), content_type=_JSON
        )

    async def get_export_items(request: web.Request) -> web.Response:
        await pause()
        job = jobs.get(request.query.get("job_id", ""))
        if job is None:
            return not_found()
        if job.status not in ("pending", "in_progress"):
            return _error(
                422, "EXPORT_JOB_STATUS_UNPROCESSABLE", "Export items are given for running jobs."
            )
        low, high, info = _page_bounds(request, job.items)
        data = b",".join(
            entry_id(job.id, ordinal).encode().join(templates[ordinal % len(templates)])
            for ordinal in range(low, high)
        )
        body = b'{"data":[' + data + b'],"pagination":' + orjson.dumps(info) + b"}"
        return web.Response(body=body, content_type=_JSON)

    async def update_items(request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        job = jobs.get(job_id)
        if job is not None:
            job.puts += 1
            if job.first_put is None:
                job.first_put = time.monotonic()
        items = orjson.loads(await request.read())
        await pause()
        for item in items:
            item["exportJobId"] = job_id
        if job is not None:
            job.put_items += len(items)
            for item in items:
                job.acknowledged[item["accountingEntryId"]] = item["status"]
        return web.Response(body=orjson.dumps({"data": items, "errors": []}), content_type=_JSON)

    async def job_event(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        await pause()
        job = jobs.get(body.get("jobId", ""))
        if job is None:
            return web.Response(status=202)
        event = body.get("event")
        if event == "started" and job.status == "pending":
            job.status, job.started_at = "in_progress", _CREATED_AT
        elif event in _FINAL_EVENTS and job.status == "in_progress":
            job.status = event
        else:
            return _error(
                422,
                "INVALID_EXPORT_JOB_STATUS_CHANGE",
                f"Cannot apply {event} to a job in status {job.status}.",
            )
        job.events.append(event)
        job.last_event = time.monotonic()
        return web.Response(status=202)

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/_bench/jobs", create_job)
    app.router.add_get("/_bench/jobs/{job_id}", job_stats)
    app.router.add_delete("/_bench/jobs/{job_id}", forget_job)
    app.router.add_get("/v3/export-jobs/{job_id}", get_job)
    app.router.add_get("/v3/export-jobs/{job_id}/items", get_job_items)
    app.router.add_put("/v3/export-jobs/{job_id}/items", update_items)
    app.router.add_post("/v3/export-job-events", job_event)
    app.router.add_get("/v3/export-items", get_export_items)
    return app


async def serve(latency: float, jobs: bool = False) -> None:
    app = build_job_app(latency) if jobs else build_app(latency)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    print(f"port {port}", flush=True)
    await asyncio.Event().wait()


@contextmanager
def _server_process(*arguments: str) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.echo_server", *arguments],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().split()
        if len(line) != 2 or line[0] != "port":
            raise RuntimeError(f"echo server did not start: {line!r}")
        yield f"http://127.0.0.1:{line[1]}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def echo_server(latency: float = 0.0) -> Iterator[str]:
    """Start the server in a child process; yields its base URL."""
    with _server_process("--latency", str(latency)) as url:
        yield url


@contextmanager
def job_server(latency: float = 0.0) -> Iterator[str]:
    """Start the whole-job server (`--jobs`) in a child process; yields its base URL."""
    with _server_process("--latency", str(latency), "--jobs") as url:
        yield url


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--jobs", action="store_true", help="also serve jobs, items, export items")
    arguments = parser.parse_args()
    asyncio.run(serve(arguments.latency, arguments.jobs))
