"""Kill a connector with SIGKILL at many moments, start it again, and check from the fake's
journal that nothing acknowledged was sent twice and the job was closed exactly once (R13)."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
from pathlib import Path

from crash_child import crash_updates
from pleo_export_async.testing import FakePleo, Faults

CHILD = Path(__file__).with_name("crash_child.py")
ITEMS = 2500
MOMENTS = 32  # every fourth while the final event is in flight, the others at chosen PUTs
DISTINCT = 20  # moments that must differ: a busy machine sends PUTs in bursts, so kills go on
MOST_MOMENTS = 80  # until that many were seen, or this many kills


async def _start_child(
    fake: FakePleo, job_id: str, ids_file: Path, ledger: Path
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        fake.base_url,
        fake.api_key,
        job_id,
        str(ids_file),
        str(ledger),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _kill_when(
    fake: FakePleo,
    job_id: str,
    child: asyncio.subprocess.Process,
    *,
    puts: int,
    event_in_flight: bool,
    extra_delay: float,
) -> str:
    """Wait for the chosen moment, then SIGKILL the child; says which moment it was."""
    journal = fake.journal
    async with asyncio.timeout(60):
        while True:
            if child.returncode is not None:
                return "finished before the kill"
            if event_in_flight:
                if any(entry.answered_at is None for entry in journal.events(job_id)):
                    break
            elif len(journal.puts(job_id)) >= puts:
                break
            await asyncio.sleep(0.0005)
    if extra_delay:
        await asyncio.sleep(extra_delay)
    puts_sent = journal.puts(job_id)
    answered = sum(1 for entry in puts_sent if entry.answered_at is not None)
    child.send_signal(signal.SIGKILL)
    await child.wait()
    if event_in_flight:
        return "final event in flight"
    return f"{len(puts_sent)} PUTs received, {answered} answered when killed"


async def test_a_connector_killed_at_any_moment_finishes_the_job_once_after_a_restart(
    tmp_path: Path,
) -> None:
    """For each of many kill moments: the restarted process resends no acknowledged update,
    commits every item, and exactly one final event is applied."""
    rng = random.Random(20261120)
    moments: set[str] = set()
    # Latency keeps requests in flight long enough for kills to land inside them.
    async with FakePleo(seed=99, faults=Faults(latency=(0.002, 0.02))) as fake:
        for moment in range(MOST_MOMENTS):
            if moment >= MOMENTS and len(moments) >= DISTINCT:
                break
            job = fake.create_job(items=ITEMS)
            ids_file = tmp_path / f"ids-{moment}.json"
            ids_file.write_text(json.dumps(job.item_ids))
            ledger = tmp_path / f"ledger-{moment}.sqlite3"

            child = await _start_child(fake, job.id, ids_file, ledger)
            event_in_flight = moment % 4 == 3
            moments.add(
                await _kill_when(
                    fake,
                    job.id,
                    child,
                    puts=0 if event_in_flight else rng.randrange(ITEMS // 100 + 1),
                    event_in_flight=event_in_flight,
                    extra_delay=0.0 if event_in_flight else rng.uniform(0, 0.005),
                )
            )

            restarted = await _start_child(fake, job.id, ids_file, ledger)
            stdout, stderr = await asyncio.wait_for(restarted.communicate(), 60)
            assert restarted.returncode == 0, stderr.decode()[-2000:]
            assert stdout.decode().strip() == "completed_with_errors"

            journal = fake.journal
            assert journal.resent_after_ack(job.id) == {}
            assert len(journal.final_events_applied(job.id)) == 1
            assert fake.job_status(job.id) == "completed_with_errors"
            for update in crash_updates(job.item_ids):
                item = fake.item(job.id, update.accounting_entry_id)
                assert item["status"] == update.status.value
                assert item.get("externalId") == update.external_id
    assert "final event in flight" in moments
    assert len(moments) >= DISTINCT, "; ".join(sorted(moments))
