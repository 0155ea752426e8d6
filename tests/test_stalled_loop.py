"""A stalled event loop (a blocking call in a handler, a CPU starved by other processes) makes
the client send nothing twice (R4) and nothing for a lease it no longer holds (R18).

Two ways it used to: a request whose answer arrived during the stall timed out before it was
read, and was sent again; and a worker stalled between its lease check and the write sent after
its lease had run out and another worker had taken the job.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import client_for, successful_updates
from pleo_export_async import LeaseLost, PostgresLedger
from pleo_export_async._deadline import STALL_SECONDS, stall_tolerant_timeout
from pleo_export_async._transport import Transport
from pleo_export_async.testing import FakePleo, Faults

CHILD = Path(__file__).with_name("stalled_child.py")


def answer_during_a_stall(
    limit: Callable[[float], Any], seconds: float, stall: float
) -> Callable[[], Awaitable[str]]:
    """A wait for an answer that arrives while the loop is blocked past the time limit."""

    async def wait() -> str:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[str] = loop.create_future()
        loop.call_later(0.01, time.sleep, stall)
        loop.call_later(0.02, answer.set_result, "the answer")
        async with limit(seconds):
            return await answer

    return wait


async def test_an_answer_that_arrived_during_a_stall_is_read_not_timed_out() -> None:
    """An answer in by the time the stalled loop runs again is returned, though the stall
    outlasted the time limit."""
    wait = answer_during_a_stall(stall_tolerant_timeout, seconds=0.1, stall=0.5)
    assert await wait() == "the answer"


async def test_a_plain_timeout_throws_that_answer_away() -> None:
    """The reason for stall_tolerant_timeout: asyncio.timeout, in the same stall, cancels the
    wait whose answer is already there."""
    wait = answer_during_a_stall(asyncio.timeout, seconds=0.1, stall=0.5)
    with pytest.raises(TimeoutError):
        await wait()


async def test_no_answer_times_out_at_the_limit_when_the_loop_runs_freely() -> None:
    """Without a stall the limit is the limit: no answer raises TimeoutError, not earlier."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(TimeoutError):
        async with stall_tolerant_timeout(0.2):
            await asyncio.sleep(30)
    assert loop.time() - began >= 0.2


async def test_no_answer_still_times_out_after_a_stall_within_the_limit_once_more() -> None:
    """A stall gives back at most the limit once more: a request with no answer still fails."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    loop.call_later(0.01, time.sleep, 1.0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(30), stall_tolerant_timeout(0.2):
            await asyncio.sleep(30)
    assert loop.time() - began >= 1.0 + STALL_SECONDS / 2
    assert loop.time() - began < 30


async def test_a_client_stalled_past_its_timeout_reads_the_answers_that_came_meanwhile(
    fake: FakePleo, tmp_path: Path
) -> None:
    """A connector process whose loop is blocked for 2.5 s, with a 1 s timeout, while four PUTs
    are in flight, reads their answers when it runs again: no request is retried and no
    acknowledged update is sent twice."""
    fake.faults = Faults(latency=(0.05, 0.1))
    job = fake.create_job(items=800)
    ids_file = tmp_path / "ids.json"
    ids_file.write_text(json.dumps(job.item_ids))
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), fake.base_url, fake.api_key, job.id, str(ids_file),
        "1.0", "2.5", "3",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(child.communicate(), 120)
    assert child.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["ended"] - report["began"] >= 2.5
    answered_in_the_stall = [
        entry
        for entry in fake.journal.puts(job.id)
        if entry.answered_at is not None
        and report["began"] < entry.answered_at < report["ended"]
        and entry.delivered
    ]
    assert answered_in_the_stall, "no answer came during the stall: the test proves nothing"
    assert report["retries"] == 0
    assert report["requests"] == 8
    assert fake.journal.resent_after_ack(job.id) == {}
    [summary] = [summary for summary in fake.job_summaries() if summary.job_id == job.id]
    assert (summary.items_sent, summary.acknowledged) == (800, 800)


async def test_a_worker_stalled_after_its_lease_check_sends_nothing_once_another_took_the_job(
    fake: FakePleo, postgres_dsn: str, postgres_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker whose loop is blocked between its lease check and the write, until its lease
    has run out and another worker has taken the job, holds the batch back and raises
    LeaseLost: the fake never receives it."""
    lease_ttl = 3.0
    job = fake.create_job(items=200)
    updates = successful_updates(job.item_ids)

    async def take_the_lease() -> None:
        async with PostgresLedger(postgres_dsn, schema=postgres_schema, lease_ttl=lease_ttl) as b:
            taker = await b.open_job(job.id)
            async with taker.turn():  # waits for the lease to run out, then takes it
                pass

    def another_worker_takes_the_job() -> None:
        """Blocks the caller's loop (the stall) while a worker of its own takes the lease."""
        taker = threading.Thread(target=asyncio.run, args=(take_the_lease(),))
        taker.start()
        taker.join(60)

    send_once = Transport._send_once
    puts = 0
    puts_received_before_the_stall = -1

    async def stalling(self: Transport, session: Any, call: Any) -> Any:
        nonlocal puts, puts_received_before_the_stall
        if call.method == "PUT":
            puts += 1
            if puts == 2:
                puts_received_before_the_stall = len(fake.journal.puts(job.id))
                another_worker_takes_the_job()
        return await send_once(self, session, call)

    monkeypatch.setattr(Transport, "_send_once", stalling)
    async with (
        PostgresLedger(postgres_dsn, schema=postgres_schema, lease_ttl=lease_ttl) as ledger_a,
        client_for(fake, timeout=0.5, max_concurrency=1) as client_a,
    ):
        with pytest.raises(LeaseLost) as lost:
            await client_a.job(job.id, ledger=ledger_a).update(updates)
    assert lost.value.job_id == job.id
    assert puts_received_before_the_stall == 1
    assert len(fake.journal.puts(job.id)) == 1
    assert fake.journal.resent_after_ack(job.id) == {}
