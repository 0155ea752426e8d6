"""The whole job: `client.process_job(job_id, handler, concurrency=C)` against a plain aiohttp
connector doing the same work, on jobs the server (`echo_server.job_server`, its own process)
makes for each run.

Both connectors read the job (and start it when pending), list its items and their export data
in pages of 100, call the same handler on each item at most C at once, PUT the results in
batches of 100 as they fill, and post the final event. L is the latency of both sides: the
server answers every Export API request after L, and the handler (the ERP call) takes L. The
plain connector makes a task per export item as its page comes, each waiting on the semaphore,
so it reads the pages back to back; `process_job` holds at most C items in hand.

Measured in this process, the clients' (the server is another one), with an aiohttp
`TraceConfig` on each connector's session:

* throughput: the job's items over the wall time from the call of the connector until the
  answer to its final event;
* first PUT: from the call until the headers of its first PUT items request were sent.

The server also notes when the first PUT arrived (`firstPut` of `GET /_bench/jobs/{id}`, on the
machine's monotonic clock), kept in the raw runs as a check of the client's figure. Each run
checks with the server that every item was acknowledged once and the job got `started` and
`completed`, once each.
"""

from __future__ import annotations

import asyncio
import base64
import statistics
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import orjson

from benchmarks.echo_server import job_server
from pleo_export_async import ApiKeyAuth, ExportItem, ItemUpdate, PleoExportClient

API_KEY = "benchmark-key"
CONCURRENCIES = (8, 64, 256)
LATENCIES = (0.010, 0.050)
EVENTS_PATH = "/v3/export-job-events"

PlainItem = dict[str, Any]
PlainHandler = Callable[[PlainItem], Awaitable[PlainItem]]
LibraryHandler = Callable[[ExportItem], Awaitable[ItemUpdate]]


# ---- the same handler for both ---------------------------------------------------------------


def library_handler(latency: float) -> LibraryHandler:
    async def handler(item: ExportItem) -> ItemUpdate:
        await asyncio.sleep(latency)  # the ERP call
        entry_id = item.accounting_entry_id
        return ItemUpdate.successful(entry_id, external_id=f"JE-{entry_id[-12:]}")

    return handler


def plain_handler(latency: float) -> PlainHandler:
    async def handler(item: PlainItem) -> PlainItem:
        await asyncio.sleep(latency)  # the ERP call
        entry_id = item["accountingEntryId"]
        return {
            "accountingEntryId": entry_id,
            "status": "successful",
            "externalId": f"JE-{entry_id[-12:]}",
        }

    return handler


# ---- the two connectors ----------------------------------------------------------------------


async def plain_connector(
    base_url: str,
    api_key: str,
    job_id: str,
    handler: PlainHandler,
    concurrency: int,
    *,
    trace_configs: Sequence[aiohttp.TraceConfig] = (),
) -> int:
    """The job written the obvious way with aiohttp; returns how many IDs Pleo acknowledged."""
    token = base64.b64encode(f"{api_key}:".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(
        base_url, headers=headers, trace_configs=list(trace_configs)
    ) as session:

        async def call(method: str, path: str, body: Any = None, **params: str) -> Any:
            data = None if body is None else orjson.dumps(body)
            async with session.request(method, path, data=data, params=params) as response:
                response.raise_for_status()
                raw = await response.read()
            return orjson.loads(raw) if raw else None

        async def every_item(path: str, **params: str) -> Any:
            while True:
                page = await call("GET", path, limit="100", **params)
                for item in page["data"]:
                    yield item
                if not page["pagination"]["hasNextPage"]:
                    return
                params["after"] = page["pagination"]["endCursor"]

        job = (await call("GET", f"/v3/export-jobs/{job_id}"))["data"]
        if job["status"] == "pending":
            await call("POST", EVENTS_PATH, {"event": "started", "jobId": job_id})
        needed = {
            item["accountingEntryId"]
            async for item in every_item(f"/v3/export-jobs/{job_id}/items")
            if item["status"] in ("pending", "in_progress")
        }
        slots = asyncio.Semaphore(concurrency)
        batch: list[PlainItem] = []
        acknowledged = 0

        async def put(updates: list[PlainItem]) -> None:
            nonlocal acknowledged
            answer = await call("PUT", f"/v3/export-jobs/{job_id}/items", updates)
            sent = {update["accountingEntryId"] for update in updates}
            acknowledged += len(sent & {item["accountingEntryId"] for item in answer["data"]})

        async def handle(item: PlainItem, tasks: asyncio.TaskGroup) -> None:
            nonlocal batch
            async with slots:
                update = await handler(item)
            batch.append(update)
            if len(batch) >= 100:
                tasks.create_task(put(batch))
                batch = []

        async with asyncio.TaskGroup() as tasks:
            async for item in every_item("/v3/export-items", job_id=job_id):
                if item["accountingEntryId"] in needed:
                    tasks.create_task(handle(item, tasks))
        if batch:
            await put(batch)
        if acknowledged != len(needed):
            raise RuntimeError(f"only {acknowledged} of {len(needed)} items acknowledged")
        await call("POST", EVENTS_PATH, {"event": "completed", "jobId": job_id})
    return acknowledged


async def library_connector(
    base_url: str,
    api_key: str,
    job_id: str,
    handler: LibraryHandler,
    concurrency: int,
    *,
    trace_configs: Sequence[aiohttp.TraceConfig] = (),
) -> int:
    """The same through `process_job`; returns how many IDs Pleo acknowledged."""
    async with PleoExportClient(base_url, auth=ApiKeyAuth(api_key)) as client:
        # The client takes no trace config: add it to the session it opened (aiohttp's list).
        for config in trace_configs:
            config.freeze()
            client.transport.session.trace_configs.append(config)
        outcome = await client.process_job(job_id, handler, concurrency=concurrency)
    if outcome is None:
        raise RuntimeError("process_job stopped before completing the job")
    return outcome.successful + outcome.failed


# ---- one run ---------------------------------------------------------------------------------


class _Clock:
    """When the first PUT's headers were sent and the last event was answered, on
    `time.monotonic()`: an aiohttp trace config, added to the connector's session."""

    def __init__(self) -> None:
        self.first_put: float | None = None
        self.last_event: float | None = None
        self.config = aiohttp.TraceConfig()
        self.config.on_request_headers_sent.append(self._headers_sent)
        self.config.on_request_end.append(self._answered)

    async def _headers_sent(
        self,
        session: aiohttp.ClientSession,
        context: Any,
        params: aiohttp.TraceRequestHeadersSentParams,
    ) -> None:
        if params.method == "PUT" and self.first_put is None:
            self.first_put = time.monotonic()

    async def _answered(
        self, session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestEndParams
    ) -> None:
        if params.method == "POST" and params.url.path == EVENTS_PATH:
            self.last_event = time.monotonic()


def _bench_request(base_url: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(base_url + path, data=data, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
    return orjson.loads(raw) if raw else None


def run_once(
    name: str, base_url: str, items: int, concurrency: int, latency: float
) -> dict[str, Any]:
    """One connector on a fresh job of `items` items; raises unless the server saw it all."""
    made = _bench_request(base_url, "POST", "/_bench/jobs", {"items": items})
    job_id = made["id"]
    clock = _Clock()

    async def timed() -> tuple[float, int]:
        start = time.monotonic()
        if name == "library":
            count = await library_connector(
                base_url,
                API_KEY,
                job_id,
                library_handler(latency),
                concurrency,
                trace_configs=[clock.config],
            )
        else:
            count = await plain_connector(
                base_url,
                API_KEY,
                job_id,
                plain_handler(latency),
                concurrency,
                trace_configs=[clock.config],
            )
        return start, count

    cpu = time.process_time()
    start, acknowledged = asyncio.run(timed())
    cpu = time.process_time() - cpu
    seen = _bench_request(base_url, "GET", f"/_bench/jobs/{job_id}")
    _bench_request(base_url, "DELETE", f"/_bench/jobs/{job_id}")
    problems = []
    if acknowledged != items:
        problems.append(f"acknowledged {acknowledged} of {items}")
    if seen["acknowledged"] != items or seen["putItems"] != items:
        problems.append(f"server got {seen['putItems']} updates of {seen['acknowledged']} items")
    if seen["events"] != ["started", "completed"] or seen["status"] != "completed":
        problems.append(f"events {seen['events']}, status {seen['status']}")
    first_put, last_event = clock.first_put, clock.last_event
    if first_put is None or last_event is None:
        problems.append("no PUT or no final event traced")
    if problems or first_put is None or last_event is None:
        raise RuntimeError(f"{name}, C={concurrency}, L={latency}: " + "; ".join(problems))
    wall = last_event - start
    return {
        "connector": name,
        "items": items,
        "concurrency": concurrency,
        "latency": latency,
        "wall": wall,
        "items_per_second": items / wall,
        "first_put": first_put - start,
        "first_put_at_server": seen["firstPut"] - start,
        "puts": seen["puts"],
        "client_cpu": cpu,
        "server_cpu": seen["cpu"] - made["cpu"],
    }


# ---- the benchmark ---------------------------------------------------------------------------


def _medians(by: dict[str, list[dict[str, Any]]], key: str) -> dict[str, float]:
    return {name: float(statistics.median(r[key] for r in runs)) for name, runs in by.items()}


def _cell_name(items: int, concurrency: int, latency: float) -> str:
    return f"whole job, {items:,} items, C={concurrency}, L={latency * 1000:.0f} ms"


def whole_job(quick: bool) -> dict[str, Any]:
    """Both connectors in every cell (C, L), on fresh jobs, taking turns; medians and budgets.

    Full: jobs of 10,000 items, 3 rounds (about ten minutes, most of it C=8 at 50 ms); quick:
    2,000 items, 1 round (about a minute). A budget is judged by the median over the rounds of
    that round's ratio (or difference), as in `benchmarks/__main__.py`."""
    items, rounds = (2_000, 1) if quick else (10_000, 3)
    began = time.monotonic()
    runs: list[dict[str, Any]] = []
    for latency in LATENCIES:
        with job_server(latency) as url:
            for name in ("plain", "library"):  # warm up: imports, cattrs' generated code, pools
                run_once(name, url, 300, 64, latency)
            for number in range(rounds):
                for index, concurrency in enumerate(CONCURRENCIES):
                    order = ["plain", "library"]
                    if (number + index + LATENCIES.index(latency)) % 2:
                        order.reverse()
                    for position, name in enumerate(order):
                        run = run_once(name, url, items, concurrency, latency)
                        runs.append({**run, "round": number, "position": position})

    cells: list[dict[str, Any]] = []
    budgets: list[dict[str, Any]] = []
    for latency in LATENCIES:
        for concurrency in CONCURRENCIES:
            mine = [r for r in runs if (r["concurrency"], r["latency"]) == (concurrency, latency)]
            by = {
                name: sorted((r for r in mine if r["connector"] == name), key=lambda r: r["round"])
                for name in ("plain", "library")
            }
            ratios = [
                lib["items_per_second"] / plain["items_per_second"]
                for lib, plain in zip(by["library"], by["plain"], strict=True)
            ]
            gaps = [
                lib["first_put"] - plain["first_put"]
                for lib, plain in zip(by["library"], by["plain"], strict=True)
            ]

            cell = {
                "concurrency": concurrency,
                "latency": latency,
                "items_per_second": _medians(by, "items_per_second"),
                "first_put": _medians(by, "first_put"),
                "first_put_at_server": _medians(by, "first_put_at_server"),
                "client_cpu": _medians(by, "client_cpu"),
                "server_cpu": _medians(by, "server_cpu"),
                "throughput_ratio": statistics.median(ratios),
                "first_put_difference": statistics.median(gaps),
            }
            cells.append(cell)
            name = _cell_name(items, concurrency, latency)
            rate, first = cell["items_per_second"], cell["first_put"]
            budgets.append(
                {
                    "name": f"{name}: process_job throughput / plain connector's",
                    "measured": cell["throughput_ratio"],
                    "limit": 0.95,
                    "at_most": False,
                    "shown": f"{cell['throughput_ratio']:.2f} ({rate['library']:,.0f} vs "
                    f"{rate['plain']:,.0f} items/s)",
                }
            )
            budgets.append(
                {
                    "name": f"{name}: process_job first PUT minus plain connector's",
                    "measured": cell["first_put_difference"],
                    "limit": 0.050,
                    "at_most": True,
                    "shown": f"{cell['first_put_difference'] * 1000:+.0f} ms "
                    f"({first['library'] * 1000:.0f} vs {first['plain'] * 1000:.0f} ms)",
                }
            )
    return {
        "items": items,
        "rounds": rounds,
        "seconds": time.monotonic() - began,
        "runs": runs,
        "cells": cells,
        "budgets": budgets,
    }
