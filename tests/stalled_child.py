"""A connector whose event loop is blocked once while its PUTs are in flight, as a handler's
blocking call or a CPU starved by other processes would block it: the answers of those PUTs
arrive meanwhile and wait in their sockets.

python stalled_child.py BASE_URL API_KEY JOB_ID IDS_FILE TIMEOUT STALL AT_PUT

It sends one successful update per ID, then prints one JSON line: the client's request counts
and when, on the machine's monotonic clock, the stall began and ended.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from pleo_export_async import ApiKeyAuth, ItemUpdate, PleoExportClient, RetryPolicy
from pleo_export_async._transport import Transport

stall: dict[str, float] = {}


def block_the_loop(seconds: float) -> None:
    stall["began"] = time.monotonic()
    time.sleep(seconds)
    stall["ended"] = time.monotonic()


def stall_once(seconds: float, at_put: int) -> None:
    """Block the loop shortly after PUT number `at_put` starts, before its answer is back."""
    send_once = Transport._send_once
    puts = 0

    async def sending(self: Transport, session: Any, call: Any) -> Any:
        nonlocal puts
        if call.method == "PUT":
            puts += 1
            if puts == at_put:
                asyncio.get_running_loop().call_later(0.02, block_the_loop, seconds)
        return await send_once(self, session, call)

    Transport._send_once = sending  # type: ignore[method-assign]


async def main(
    base_url: str, api_key: str, job_id: str, ids_file: str, limit: str, seconds: str, at: str
) -> None:
    stall_once(float(seconds), int(at))
    ids = json.loads(Path(ids_file).read_text())  # noqa: ASYNC240
    retry = RetryPolicy(max_attempts=5, initial_delay=0.01, max_delay=0.1)
    async with PleoExportClient(
        base_url, auth=ApiKeyAuth(api_key), max_concurrency=4, timeout=float(limit), retry=retry
    ) as client:
        run = client.job(job_id)
        await run.update([ItemUpdate.successful(entry_id) for entry_id in ids])
        stats = client.stats()
    print(json.dumps({"requests": stats.requests, "retries": stats.retries, **stall}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:8]))
