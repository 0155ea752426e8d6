"""SIGKILL of a connector with a SqliteLedger at random moments, also inside the ledger's own
commit, then a restart with the same file, many times (R13, R17): checked from the fake's
journal, nothing acknowledged is sent again and the job gets exactly one right final event."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_crash_resume import _kill_when

from crash_child import crash_updates
from pleo_export_async import ItemUpdate
from pleo_export_async.testing import FakeJob, FakePleo, Faults
from workflow_child import workflow_update

from .checks import JobPlan, committed_as_sent
from .figures import Figures
from .killed_child import POINTS, STATEMENTS
from .scale import SCALE

CHILD = Path(__file__).with_name("killed_child.py")
ITEMS = 1200  # update(): 12 batches of 100
WORKFLOW_ITEMS = 300  # process_job: 12 batches of 25
# Latency keeps requests in flight long enough for kills to land inside them.
FAULTS = Faults(latency=(0.002, 0.02))


@dataclass(frozen=True)
class Kill:
    """How one run is killed: from outside after some PUTs (or while the final event is in
    flight), or by itself inside the ledger's commit."""

    puts: int = 0
    event_in_flight: bool = False
    extra_delay: float = 0.0
    commit: tuple[str, int, str] | None = None

    def args(self) -> list[str]:
        if self.commit is None:
            return []
        statement, ordinal, point = self.commit
        return [statement, str(ordinal), point]


async def _start(
    mode: str, fake: FakePleo, job: FakeJob, file: Path, ledger: Path, kill: Kill | None = None
) -> asyncio.subprocess.Process:
    extra = kill.args() if kill is not None else []
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        mode,
        fake.base_url,
        fake.api_key,
        job.id,
        str(file),
        str(ledger),
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _killed(
    fake: FakePleo, job: FakeJob, child: asyncio.subprocess.Process, kill: Kill
) -> str:
    """Let the child die as the kill says; returns the moment it died at."""
    if kill.commit is not None:
        _, stderr = await asyncio.wait_for(child.communicate(), 60)
        if child.returncode == 0:
            return "finished before the kill"
        assert child.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
        statement, ordinal, point = kill.commit
        return f"inside the ledger's commit: {statement} #{ordinal}, {point}"
    moment = await _kill_when(
        fake,
        job.id,
        child,
        puts=kill.puts,
        event_in_flight=kill.event_in_flight,
        extra_delay=kill.extra_delay,
    )
    if moment.endswith("answered when killed"):
        return "item updates in flight"
    return moment


def _check_finished_once(fake: FakePleo, job: FakeJob, plan: JobPlan, figures: Figures) -> None:
    journal = fake.journal
    lost = [
        update.accounting_entry_id
        for update in plan.known
        if not committed_as_sent(fake.item(job.id, update.accounting_entry_id), update)
    ]
    resent = journal.resent_after_ack(job.id)
    applied = journal.final_events_applied(job.id)
    figures.jobs_run += 1
    figures.take_journal(journal, [job.id])
    figures.lost_items += len(lost)
    figures.resent_after_ack += sum(resent.values())
    figures.extra_final_events += max(0, len(applied) - 1)
    assert lost == []
    assert resent == {}
    assert len(applied) == 1
    assert fake.job_status(job.id) == plan.expected_event().value


def _kills(rng: random.Random, count: int, most_puts: int) -> list[Kill]:
    """Kills from outside: every fourth while the final event is in flight, the others after a
    random number of PUTs and a random moment more."""
    return [
        Kill(event_in_flight=True)
        if n % 4 == 3
        else Kill(puts=rng.randrange(most_puts), extra_delay=rng.uniform(0, 0.01))
        for n in range(count)
    ]


def _commit_kills(rng: random.Random, count: int, batches: int) -> list[Kill]:
    """Kills inside the ledger's commit: of a batch's row, its acknowledgement, the event's
    intent and its delivery, at every point of the transaction."""
    kills = []
    statements = list(STATEMENTS)
    for n in range(count):
        statement = statements[n % len(statements)]
        ordinal = rng.randint(1, batches) if statement in ("batch", "acknowledgement") else 1
        # Every point of the transaction early on, whatever the count: the quick profile too.
        point = POINTS[(n + n // len(statements)) % len(POINTS)]
        kills.append(Kill(commit=(statement, ordinal, point)))
    return kills


@pytest.mark.parametrize("mode", ["update", "workflow"])
async def test_killed_at_random_moments_and_inside_commits_then_restarted(
    mode: str, tmp_path: Path, figures: Figures
) -> None:
    """Killed with SIGKILL while batches are in flight, while the final event is in flight, or
    inside any of the ledger's commits, a restarted connector resends nothing acknowledged,
    commits every item and closes the job exactly once; process_job calls its handler again only
    for items Pleo had no result for."""
    rng = random.Random(f"reliability-crash-{mode}")
    if mode == "update":
        items, batches = ITEMS, ITEMS // 100
        kills = _kills(rng, SCALE.kills, batches + 1) + _commit_kills(
            rng, SCALE.commit_kills, batches
        )
    else:
        items, batches = WORKFLOW_ITEMS, WORKFLOW_ITEMS // 25
        kills = _kills(rng, SCALE.workflow_kills, batches + 1) + _commit_kills(
            rng, SCALE.workflow_kills, batches
        )
    rng.shuffle(kills)
    async with FakePleo(seed=rng.randrange(2**31), strict=True, faults=FAULTS) as fake:
        for number, kill in enumerate(kills):
            # process_job starts a pending job itself; update() is given a started one.
            pending = mode == "workflow" and number % 2 == 0
            job = fake.create_job(items=items, status="pending" if pending else "in_progress")
            ledger = tmp_path / f"ledger-{number}.sqlite3"
            first_file = tmp_path / f"first-{number}.txt"
            again_file = tmp_path / f"again-{number}.txt"
            if mode == "update":
                first_file.write_text(json.dumps(job.item_ids))
                again_file = first_file
                known: list[ItemUpdate] = crash_updates(job.item_ids)
            else:
                known = [workflow_update(entry_id) for entry_id in job.item_ids]
            child = await _start(mode, fake, job, first_file, ledger, kill)
            moment = await _killed(fake, job, child, kill)

            pending_at_restart = {
                item["accountingEntryId"]
                for item in fake.items(job.id)
                if item["status"] not in ("successful", "failed")
            }
            restarted = await _start(mode, fake, job, again_file, ledger)
            stdout, stderr = await asyncio.wait_for(restarted.communicate(), 120)
            assert restarted.returncode == 0, stderr.decode()[-3000:]
            plan = JobPlan(known=known, unknown=[])
            assert stdout.decode().strip() == plan.expected_event().value
            _check_finished_once(fake, job, plan, figures)
            if mode == "workflow":
                called_again = set(again_file.read_text().split())
                assert called_again <= pending_at_restart, (
                    "the handler was called again for items Pleo held a result for"
                )
            figures.crashes_survived += 1
            figures.crash_moments[f"{mode}: {moment}"] += 1
