"""SqliteLedger: its records survive the process, it refuses files it cannot trust, and a
JobRun resumes from it without resending anything acknowledged (R13)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from helpers import client_for, mixed_updates, successful_updates

from pleo_export_async import (
    CompletionOutcome,
    ItemUpdate,
    JobEvent,
    JobFinished,
    LedgerError,
    SqliteLedger,
)
from pleo_export_async._enums import ItemStatus
from pleo_export_async._models import JobEventRequest
from pleo_export_async._sqlite_ledger import APPLICATION_ID, SCHEMA_VERSION
from pleo_export_async.testing import FakePleo

pytestmark = pytest.mark.usefixtures("instant")

JOB_A = "11111111-1111-4111-8111-111111111111"
JOB_B = "22222222-2222-4222-8222-222222222222"
ENTRY_1 = "aaaaaaaa-0000-4000-8000-000000000001"
ENTRY_2 = "aaaaaaaa-0000-4000-8000-000000000002"


async def test_records_survive_closing_and_reopening(tmp_path: Path) -> None:
    """Acknowledgements, tallies, in-flight updates and the final event are read back."""
    path = tmp_path / "ledger.sqlite3"
    done = ItemUpdate.successful(ENTRY_1, external_id="JE-1")
    pending = ItemUpdate.failed(ENTRY_2, reason="Vendor V1 unknown", reason_type="vendor_unknown")
    request = JobEventRequest(JobEvent.COMPLETED, JOB_A)
    outcome = CompletionOutcome(JOB_A, JobEvent.COMPLETED, None, None, 1, 0, 0)
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        await job.record_in_flight([done, pending])
        await job.record_acknowledged([done])
        await job.record_event_intent(request)
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        assert job.acknowledged(ENTRY_1) is ItemStatus.SUCCESSFUL
        assert job.acknowledged(ENTRY_2) is None
        assert job.in_flight_at_open() == {ENTRY_2: pending}
        assert job.tally().successful == 1
        record = job.final_event()
        assert record is not None
        assert record.request == request
        assert record.outcome is None
        await job.record_event_delivered(outcome)
    async with SqliteLedger(path) as ledger:
        record = (await ledger.open_job(JOB_A)).final_event()
        assert record is not None
        assert record.outcome == outcome


async def test_concurrent_writes_are_committed_in_groups_and_all_land(tmp_path: Path) -> None:
    """Writes queued while a group commits share the next transaction; every one is read back,
    including those still queued when the ledger is closed."""
    path = tmp_path / "ledger.sqlite3"
    updates = [ItemUpdate.successful(f"aaaaaaaa-0000-4000-8000-{n:012d}") for n in range(60)]
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        await asyncio.gather(*(job.record_in_flight([update]) for update in updates[:30]))
        writes = [asyncio.create_task(job.record_acknowledged([u])) for u in updates]
        await asyncio.sleep(0)  # the writes are queued, none is committed yet
    assert all(write.done() and write.exception() is None for write in writes)
    with sqlite3.connect(path) as connection:
        (records,) = connection.execute("SELECT count(*) FROM batch_record").fetchone()
    assert records == 90
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        assert job.tally().successful == 60
        assert job.in_flight_at_open() == {}


async def test_a_write_asked_for_while_closing_is_refused_not_left_waiting(
    tmp_path: Path,
) -> None:
    """Once close() has begun, a new write raises LedgerError at once; earlier ones land."""
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    job = await ledger.open_job(JOB_A)
    landed = asyncio.create_task(job.record_in_flight([ItemUpdate.successful(ENTRY_1)]))
    await asyncio.sleep(0)
    closing = asyncio.create_task(ledger.close())
    await asyncio.sleep(0)
    with pytest.raises(LedgerError, match="is closed"):
        await asyncio.wait_for(job.record_acknowledged([ItemUpdate.successful(ENTRY_1)]), 5)
    await asyncio.wait_for(asyncio.gather(landed, closing), 5)
    async with SqliteLedger(tmp_path / "ledger.sqlite3") as reopened:
        assert set((await reopened.open_job(JOB_A)).in_flight_at_open()) == {ENTRY_1}


async def test_a_failed_group_raises_ledger_error_to_each_of_its_writers(tmp_path: Path) -> None:
    """If a group's transaction fails, each write in it raises LedgerError and none lands."""
    path = tmp_path / "ledger.sqlite3"
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        await job.record_in_flight([ItemUpdate.successful(ENTRY_1)])
        with sqlite3.connect(path) as other:  # a second writer takes the write lock
            other.execute("BEGIN IMMEDIATE")
            ledger._connection.execute("PRAGMA busy_timeout = 0")  # type: ignore[union-attr]
            results = await asyncio.gather(
                job.record_in_flight([ItemUpdate.successful(ENTRY_2)]),
                job.record_acknowledged([ItemUpdate.successful(ENTRY_1)]),
                return_exceptions=True,
            )
            other.rollback()
        assert [type(result) for result in results] == [LedgerError, LedgerError]
        assert "cannot write ledger" in str(results[0])
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        assert job.acknowledged(ENTRY_1) is None
        assert set(job.in_flight_at_open()) == {ENTRY_1}


async def test_a_superseded_failure_moves_the_tally(tmp_path: Path) -> None:
    """A failed item later acknowledged successful counts once, as successful, after reopening."""
    path = tmp_path / "ledger.sqlite3"
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        await job.record_acknowledged(
            [ItemUpdate.failed(ENTRY_1, reason="x", reason_type="tag_unknown")]
        )
        await job.record_acknowledged([ItemUpdate.successful(ENTRY_1)])
    async with SqliteLedger(path) as ledger:
        tally = (await ledger.open_job(JOB_A)).tally()
    assert (tally.successful, tally.failed, dict(tally.failure_types)) == (1, 0, {})


async def test_two_jobs_share_one_file_without_mixing(tmp_path: Path) -> None:
    """Records of one job never show up in another's."""
    path = tmp_path / "ledger.sqlite3"
    async with SqliteLedger(path) as ledger:
        await (await ledger.open_job(JOB_A)).record_acknowledged([ItemUpdate.successful(ENTRY_1)])
        await (await ledger.open_job(JOB_B)).record_in_flight([ItemUpdate.successful(ENTRY_2)])
    async with SqliteLedger(path) as ledger:
        job_a, job_b = await ledger.open_job(JOB_A), await ledger.open_job(JOB_B)
        assert job_a.acknowledged(ENTRY_1) is not None
        assert job_b.acknowledged(ENTRY_1) is None
        assert job_a.in_flight_at_open() == {}
        assert set(job_b.in_flight_at_open()) == {ENTRY_2}
        assert await ledger.open_job(JOB_A) is job_a


async def test_a_corrupt_file_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    """A file that is not SQLite raises LedgerError naming it, and keeps its bytes."""
    path = tmp_path / "ledger.sqlite3"
    garbage = bytes(range(256)) * 64
    path.write_bytes(garbage)
    ledger = SqliteLedger(path)
    with pytest.raises(LedgerError) as raised:
        await ledger.open_job(JOB_A)
    await ledger.close()
    assert str(path) in str(raised.value)
    assert path.read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.sqlite3"]  # noqa: ASYNC240


async def test_an_unknown_schema_version_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    """A ledger written by another version raises LedgerError stating both versions."""
    path = tmp_path / "ledger.sqlite3"
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    connection.execute("PRAGMA user_version = 99")
    connection.execute("CREATE TABLE future (x)")
    connection.commit()
    connection.close()
    before = path.read_bytes()
    ledger = SqliteLedger(path)
    with pytest.raises(LedgerError) as raised:
        await ledger.open_job(JOB_A)
    await ledger.close()
    assert "99" in str(raised.value)
    assert str(SCHEMA_VERSION) in str(raised.value)
    assert path.read_bytes() == before


async def test_another_programs_database_is_refused(tmp_path: Path) -> None:
    """An SQLite file without our application id is not taken for a ledger."""
    path = tmp_path / "other.sqlite3"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE notes (text)")
    connection.commit()
    connection.close()
    with pytest.raises(LedgerError, match="not a pleo_export_async ledger"):
        async with SqliteLedger(path) as ledger:
            await ledger.open_job(JOB_A)


async def test_a_new_process_skips_what_was_acknowledged_and_completes_once(
    fake: FakePleo, tmp_path: Path
) -> None:
    """A second client on the same file sends only the rest, and finds the event delivered."""
    path = tmp_path / "ledger.sqlite3"
    job = fake.create_job(items=300)
    updates = mixed_updates(job)
    async with SqliteLedger(path) as ledger, client_for(fake) as client:
        await client.job(job.id, ledger=ledger).update(updates[:200])
    async with SqliteLedger(path) as ledger, client_for(fake) as client:
        run = client.job(job.id, ledger=ledger)
        report = await run.update(updates)
        outcome = await run.complete()
    assert report.skipped == {u.accounting_entry_id for u in updates[:200]}
    assert set(report.acknowledged) == {u.accounting_entry_id for u in updates[200:]}
    assert outcome.event is JobEvent.COMPLETED_WITH_ERRORS
    assert (outcome.successful, outcome.failed) == (270, 30)
    requests = len(fake.journal.requests)
    async with SqliteLedger(path) as ledger, client_for(fake) as client:
        run = client.job(job.id, ledger=ledger)
        assert await run.complete() == outcome
        with pytest.raises(JobFinished):
            await run.update(updates)
    assert len(fake.journal.requests) == requests
    assert fake.journal.resent_after_ack() == {}


async def test_resume_reconciles_batches_in_flight_at_the_crash(
    fake: FakePleo, tmp_path: Path
) -> None:
    """Updates Pleo committed while the ledger still shows them in flight are not sent again."""
    path = tmp_path / "ledger.sqlite3"
    job = fake.create_job(items=150)
    updates = successful_updates(job.item_ids)
    async with SqliteLedger(path) as ledger:
        await (await ledger.open_job(job.id)).record_in_flight(updates[:100])
    # The crashed process's batch landed: Pleo acknowledged it, the ledger never heard.
    async with client_for(fake) as client:
        await client.job(job.id).update(updates[:100])
    async with SqliteLedger(path) as ledger, client_for(fake) as client:
        report = await client.job(job.id, ledger=ledger).update(updates)
    assert report.skipped == {u.accounting_entry_id for u in updates[:100]}
    assert len(report.acknowledged) == 50
    assert fake.journal.resent_after_ack() == {}


async def test_without_reconciliation_in_flight_updates_are_sent_again(
    fake: FakePleo, tmp_path: Path
) -> None:
    """reconcile_on_resume=False skips the read: in-flight updates are simply sent again."""
    path = tmp_path / "ledger.sqlite3"
    job = fake.create_job(items=10)
    updates = successful_updates(job.item_ids)
    async with SqliteLedger(path) as ledger:
        await (await ledger.open_job(job.id)).record_in_flight(updates)
    async with SqliteLedger(path) as ledger, client_for(fake) as client:
        report = await client.job(job.id, ledger=ledger, reconcile_on_resume=False).update(updates)
    assert len(report.acknowledged) == 10
    assert fake.journal.count(method="GET") == 0


async def test_a_final_event_in_flight_at_the_crash_is_checked_before_anything_is_sent(
    fake: FakePleo, tmp_path: Path
) -> None:
    """If the ledger holds only the intent of the final event, the job is read first: when the
    event landed, update() raises JobFinished and complete() returns, both sending nothing."""
    path = tmp_path / "ledger.sqlite3"
    job = fake.create_job(items=5)
    updates = successful_updates(job.item_ids)
    async with SqliteLedger(path) as ledger, client_for(fake) as client:
        run = client.job(job.id, ledger=ledger)
        await run.update(updates)
        job_ledger = await ledger.open_job(job.id)
        await job_ledger.record_event_intent(JobEventRequest(JobEvent.COMPLETED, job.id))
    async with client_for(fake) as client:  # the event lands, as if sent just before the crash
        await client.job(job.id).complete(event=JobEvent.COMPLETED)
    sent = len(fake.journal.requests)
    async with SqliteLedger(path) as ledger, client_for(fake) as client:
        run = client.job(job.id, ledger=ledger)
        with pytest.raises(JobFinished):
            await run.update(updates)
        outcome = await run.complete()
    assert outcome.already_delivered
    assert outcome.successful == 5
    assert [entry.method for entry in fake.journal.requests[sent:]] == ["GET"]
    assert len(fake.journal.final_events_applied(job.id)) == 1


async def test_reconcile_recovers_an_answer_lost_in_this_process(fake: FakePleo) -> None:
    """reconcile() marks as acknowledged what landed although its answer never arrived."""
    from pleo_export_async import RetryPolicy
    from pleo_export_async.testing import Faults, FaultSpec

    fake.faults = Faults(lost_response=FaultSpec(probability=1.0))
    job = fake.create_job(items=20)
    updates = successful_updates(job.item_ids)
    async with client_for(fake, retry=RetryPolicy(max_attempts=2, initial_delay=0.01)) as client:
        run = client.job(job.id)
        with pytest.raises(Exception):  # noqa: B017, PT011  (TransportError, checked below)
            await run.update(updates)
        fake.faults = Faults()
        assert await run.reconcile() == 20
        outcome = await run.complete()
    assert outcome.successful == 20
    assert fake.journal.count(method="PUT") == 2
