"""A ledger file of every schema version that was on main opens with today's code: it migrates
forward, keeps a copy of itself as it was, and its jobs finish against the fake with nothing
resent and one final event each (tests/data, made by tests/data/make_sqlite_ledger_v1.py)."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from helpers import client_for
from pleo_export_async import (
    CompletionOutcome,
    ItemUpdate,
    JobEvent,
    SqliteLedger,
)
from pleo_export_async._codec import from_wire
from pleo_export_async.testing import FakePleo

DATA = Path(__file__).resolve().parent / "data"
FACTS: dict[str, Any] = json.loads((DATA / "sqlite-ledger-v1.json").read_text())
JOB_A, JOB_B, JOB_C = FACTS["jobs"]


def version_of(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        (version,) = connection.execute("PRAGMA user_version").fetchone()
    return int(version)


@pytest.fixture
def v1_ledger(tmp_path: Path) -> Path:
    """A copy of the version 1 file, as a connector killed mid-job left it."""
    path = tmp_path / "exports.sqlite3"
    shutil.copyfile(DATA / "sqlite-ledger-v1.sqlite3", path)
    assert version_of(path) == 1
    return path


async def fake_holding_what_pleo_held(fake: FakePleo) -> None:
    """The fake's jobs in the state Pleo had them in when the version 1 connector stopped: the
    updates that reached Pleo, put through the API (so the journal knows them acknowledged)."""
    for job_id, job in FACTS["jobs"].items():
        fake.create_job(item_ids=job["items"], status="in_progress", job_id=job_id)
    async with client_for(fake) as client:
        for job_id, held in FACTS["held_by_pleo"].items():
            run = client.job(job_id)
            await run.update([from_wire(item, ItemUpdate) for item in held])
            if FACTS["jobs"][job_id]["status"] == "completed":
                await run.complete()
    assert fake.job_status(JOB_C) == "completed"


async def test_a_version_1_file_migrates_and_its_jobs_finish_once(
    v1_ledger: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Opened by today's code, the version 1 file is migrated; the job with batches in flight
    finishes sending none of what Pleo acknowledged, the job whose final event was intended gets
    it once, and the delivered job's outcome is returned with nothing sent."""
    async with FakePleo(seed=31) as fake:
        await fake_holding_what_pleo_held(fake)
        before = len(fake.journal.requests)
        caplog.set_level(logging.WARNING, logger="pleo_export_async")
        async with SqliteLedger(v1_ledger) as ledger, client_for(fake, ledger=ledger) as client:
            job_a = client.job(JOB_A)
            sent = [from_wire(item, ItemUpdate) for item in FACTS["sent_by_the_connector"][JOB_A]]
            await job_a.update(sent)
            outcome_a = await job_a.complete()
            outcome_b = await client.job(JOB_B).complete()
            outcome_c = await client.job(JOB_C).complete()
        after = fake.journal.requests[before:]
        journal = fake.journal
    assert version_of(v1_ledger) == 2
    assert outcome_a.event is JobEvent.COMPLETED
    assert (outcome_a.successful, outcome_a.failed) == (300, 0)
    assert outcome_b.event is JobEvent.COMPLETED_WITH_ERRORS
    assert (outcome_b.successful, outcome_b.failed) == (108, 12)
    assert outcome_c == CompletionOutcome(
        JOB_C, JobEvent.COMPLETED, None, None, 40, 0, 0, already_delivered=True
    )
    for job_id in (JOB_A, JOB_B, JOB_C):
        assert journal.resent_after_ack(job_id) == {}
        assert len(journal.final_events_applied(job_id)) == 1
    # Job C sent nothing at all; job A sent only what Pleo never had: the 50 recorded in flight
    # but never sent, and the 50 not begun.
    assert [entry for entry in after if entry.job_id == JOB_C] == []
    sent_ids = [
        item["accountingEntryId"]
        for entry in after
        if entry.is_item_update and entry.job_id == JOB_A
        for item in entry.body
    ]
    assert sorted(sent_ids) == sorted(FACTS["jobs"][JOB_A]["items"][200:])
    [migrated] = [r for r in caplog.records if "migrated" in r.getMessage()]
    assert "schema version 1 migrated to 2" in migrated.getMessage()
    assert f"{v1_ledger}.v1.bak" in migrated.getMessage()


async def test_the_migration_keeps_the_file_as_it_was_beside_it(v1_ledger: Path) -> None:
    """Before migrating, the file is copied whole to <name>.v1.bak, which version 1 reads."""
    with contextlib.closing(sqlite3.connect(v1_ledger)) as connection:
        rows_before = connection.execute("SELECT * FROM batch_record ORDER BY seq").fetchall()
    async with SqliteLedger(v1_ledger) as ledger:
        await ledger.open_job(JOB_A)
    backup = v1_ledger.with_name(v1_ledger.name + ".v1.bak")
    assert version_of(backup) == 1
    with contextlib.closing(sqlite3.connect(backup)) as connection:
        assert connection.execute("SELECT * FROM batch_record ORDER BY seq").fetchall() == (
            rows_before
        )
        assert connection.execute("PRAGMA quick_check").fetchone() == ("ok",)
    assert not v1_ledger.with_name(v1_ledger.name + ".v1.bak.partial").exists()


async def test_a_migrated_file_reads_back_what_version_1_held(v1_ledger: Path) -> None:
    """After the migration each job holds what version 1 read: job A's 150 acknowledgements
    and its 100 updates in flight, job B's 120 and its intended event, job C's delivered
    outcome."""
    async with SqliteLedger(v1_ledger) as ledger:
        job_a = await ledger.open_job(JOB_A)
        job_b = await ledger.open_job(JOB_B)
        job_c = await ledger.open_job(JOB_C)
        items_a = FACTS["jobs"][JOB_A]["items"]
        assert sorted(job_a.in_flight_at_open()) == sorted(items_a[150:250])
        assert all(job_a.acknowledgements.acknowledged(i) for i in items_a[:150])
        assert not any(job_a.acknowledgements.acknowledged(i) for i in items_a[150:])
        tally = job_b.acknowledgements.tally()
        assert (tally.successful, tally.failed) == (108, 12)
        record_b = job_b.final_event()
        assert record_b is not None
        assert (record_b.request.event, record_b.outcome) == (JobEvent.COMPLETED_WITH_ERRORS, None)
        record_c = job_c.final_event()
        assert record_c is not None
        assert record_c.outcome is not None
        assert record_c.outcome.successful == 40
