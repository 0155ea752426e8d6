"""A minimal Export API echo server for benchmarks, run in its own process.

It answers PUT items with every item acknowledged (the items echoed with their job ID), events
with 202, and nothing else: no bookkeeping, so the client's cost is what gets measured.

    python -m benchmarks.echo_server [--latency SECONDS]   # prints "port N", then serves
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

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


async def serve(latency: float) -> None:
    runner = web.AppRunner(build_app(latency), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    print(f"port {port}", flush=True)
    await asyncio.Event().wait()


@contextmanager
def echo_server(latency: float = 0.0) -> Iterator[str]:
    """Start the server in a child process; yields its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.echo_server", "--latency", str(latency)],
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.0)
    asyncio.run(serve(parser.parse_args().latency))
