"""SqliteLedger's own ways: commits in groups on the event loop, closing, a failed or busy commit,
checkpoints off the loop, and files it cannot trust refused and left as they were (R13).

What every durable ledger promises (records read back, one row per batch, resuming a JobRun) is
tested against SqliteLedger and PostgresLedger alike, in test_durable_ledgers.py."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from batching import new_tracker, planned
from helpers import client_for, successful_updates
from pleo_export_async import (
    ApiError,
    ItemUpdate,
    LedgerError,
    RetryPolicy,
    SqliteLedger,
    TransportError,
    _sqlite_ledger,
)
from pleo_export_async._codec import encode_item_updates
from pleo_export_async._core._batches import Batch
from pleo_export_async._core._tracker import ItemTracker
from pleo_export_async._ledger import JobLedger
from pleo_export_async._sqlite_ledger import APPLICATION_ID, SCHEMA_VERSION
from pleo_export_async.testing import FakePleo, Faults, FaultSpec

JOB_A = "11111111-1111-4111-8111-111111111111"
ENTRY_1 = "aaaaaaaa-0000-4000-8000-000000000001"
ENTRY_2 = "aaaaaaaa-0000-4000-8000-000000000002"
ENTRY_3 = "aaaaaaaa-0000-4000-8000-000000000003"


def entry_ids(count: int, start: int = 0) -> list[str]:
    """`count` distinct canonical accountingEntryIds, numbered from `start`."""
    return [f"bbbbbbbb-0000-4000-8000-{n:012d}" for n in range(start, start + count)]


async def send(job: JobLedger, tracker: ItemTracker, updates: Sequence[ItemUpdate]) -> Batch:
    """Plan `updates` in a new call and record the batch in flight with its PUT body, as a
    JobRun does just before sending it."""
    tracker.drop_ready("not sent: the update call stopped")
    tracker.begin_call()
    batch = planned(tracker, updates)
    assert batch.updates, "every update was skipped: a JobRun would send nothing"
    await job.record_in_flight(batch, encode_item_updates(batch.updates))
    return batch


def query(path: Path, sql: str, *parameters: object) -> list[tuple[Any, ...]]:
    """Rows read from the ledger file directly, bypassing the ledger."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return connection.execute(sql, parameters).fetchall()


def count_rows(path: Path, table: str) -> int:
    """How many rows the table has in the ledger file."""
    ((count,),) = query(path, f"SELECT count(*) FROM {table}")
    return int(count)


async def test_concurrent_writes_are_committed_in_groups_and_all_land(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes queued while a group commits share the next transaction; every one is read back,
    including those still queued when the ledger is closed."""
    path = tmp_path / "ledger.sqlite3"
    updates = successful_updates(entry_ids(120))
    groups: list[int] = []
    async with SqliteLedger(path) as ledger:
        commit_group: Callable[[list[Any]], int] = ledger._commit_group

        def counting(writes: list[Any]) -> int:
            groups.append(len(writes))
            return commit_group(writes)

        monkeypatch.setattr(ledger, "_commit_group", counting)
        job = await ledger.open_job(JOB_A)
        tracker = new_tracker(job.acknowledgements)
        batches = [planned(tracker, updates[n : n + 2]) for n in range(0, 120, 2)]
        await asyncio.gather(
            *(
                job.record_in_flight(batch, encode_item_updates(batch.updates or ()))
                for batch in batches
            )
        )
        for batch in batches:
            tracker.reconcile(batch, list(batch.ids), ())
        writes = [asyncio.create_task(job.record_acknowledged(batch)) for batch in batches]
        await asyncio.sleep(0)  # the writes are queued, none is committed yet
    assert all(write.done() and write.exception() is None for write in writes)
    assert sum(groups) == 120
    assert len(groups) < 120  # they shared transactions
    assert count_rows(path, "batch") == 60
    assert count_rows(path, "acknowledgement") == 60
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        assert job.acknowledgements.tally().successful == 120
        assert job.in_flight_at_open() == {}


async def test_a_write_asked_for_while_closing_is_refused_not_left_waiting(
    tmp_path: Path,
) -> None:
    """Once close() has begun, a new write raises LedgerError at once; earlier ones land."""
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    job = await ledger.open_job(JOB_A)
    tracker = new_tracker(job.acknowledgements)
    batch = planned(tracker, [ItemUpdate.successful(ENTRY_1)])
    assert batch.updates is not None
    landed = asyncio.create_task(job.record_in_flight(batch, encode_item_updates(batch.updates)))
    await asyncio.sleep(0)
    closing = asyncio.create_task(ledger.close())
    await asyncio.sleep(0)
    tracker.reconcile(batch, [ENTRY_1], ())
    with pytest.raises(LedgerError, match="is closed"):
        await asyncio.wait_for(job.record_acknowledged(batch), 5)
    await asyncio.wait_for(asyncio.gather(landed, closing), 5)
    async with SqliteLedger(tmp_path / "ledger.sqlite3") as reopened:
        job = await reopened.open_job(JOB_A)
        assert set(job.in_flight_at_open()) == {ENTRY_1}
        assert job.acknowledgements.acknowledged(ENTRY_1) is None


async def test_a_failed_group_raises_ledger_error_to_each_of_its_writers(tmp_path: Path) -> None:
    """If a group's transaction fails, none of it lands: the batch's writer raises LedgerError,
    and the acknowledgement that did not wait for it is raised by the job's next write and by
    close()."""
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    await ledger.__aenter__()
    job = await ledger.open_job(JOB_A)
    tracker = new_tracker(job.acknowledgements)
    first = await send(job, tracker, [ItemUpdate.successful(ENTRY_1)])
    tracker.reconcile(first, [ENTRY_1], ())
    second = planned(tracker, [ItemUpdate.successful(ENTRY_2)])
    assert second.updates is not None
    second_body = encode_item_updates(second.updates)
    with contextlib.closing(sqlite3.connect(path)) as other:  # a second writer takes the lock
        other.execute("BEGIN IMMEDIATE")
        assert ledger._writer is not None
        ledger._writer.execute("PRAGMA busy_timeout = 0")
        results = await asyncio.gather(
            job.record_acknowledged(first),
            job.record_in_flight(second, second_body),
            return_exceptions=True,
        )
        other.rollback()
    assert [type(result) for result in results] == [type(None), LedgerError]
    assert "cannot write ledger" in str(results[1])
    third = planned(tracker, [ItemUpdate.successful(ENTRY_3)])
    with pytest.raises(LedgerError, match=r"an acknowledgement of job .* was not recorded"):
        await job.record_in_flight(third, b"[]")
    with pytest.raises(LedgerError, match="was not recorded"):
        await ledger.close()
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        assert job.acknowledgements.acknowledged(ENTRY_1) is None
        assert set(job.in_flight_at_open()) == {ENTRY_1}
    assert count_rows(path, "batch") == 1
    assert count_rows(path, "acknowledgement") == 0


async def test_a_corrupt_file_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    """A file that is not SQLite raises LedgerError naming it, and keeps its bytes; beside it
    is only the lock file, empty once the ledger is closed."""
    path = tmp_path / "ledger.sqlite3"
    garbage = bytes(range(256)) * 64
    path.write_bytes(garbage)
    ledger = SqliteLedger(path)
    with pytest.raises(LedgerError) as raised:
        await ledger.open_job(JOB_A)
    await ledger.close()
    assert str(path) in str(raised.value)
    assert path.read_bytes() == garbage
    beside = sorted(p.name for p in tmp_path.iterdir())  # noqa: ASYNC240
    assert beside == ["ledger.sqlite3", "ledger.sqlite3-lock"]
    assert (tmp_path / "ledger.sqlite3-lock").read_bytes() == b""


async def test_a_version_1_file_that_cannot_migrate_is_left_at_version_1(tmp_path: Path) -> None:
    """A file marked version 1 that is not what version 1 wrote (it lacks the final_event table)
    raises LedgerError naming both versions, and keeps every byte and its version 1 rows: the
    migration's transaction is rolled back whole."""
    path = tmp_path / "ledger.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(
            "CREATE TABLE batch_record (id INTEGER PRIMARY KEY, job_id TEXT NOT NULL,"
            " kind TEXT NOT NULL, updates BLOB NOT NULL)"
        )
        connection.execute(
            "INSERT INTO batch_record (job_id, kind, updates) VALUES (?, ?, ?)",
            (JOB_A, "acknowledged", encode_item_updates([ItemUpdate.successful(ENTRY_1)])),
        )
        connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        connection.execute("PRAGMA user_version = 1")
        connection.commit()
    before = path.read_bytes()
    ledger = SqliteLedger(path)
    with pytest.raises(LedgerError) as raised:
        await ledger.open_job(JOB_A)
    await ledger.close()
    message = str(raised.value)
    assert re.search(r"version 1\b", message), message
    assert re.search(rf"\b{SCHEMA_VERSION}\b", message), message
    assert "left at version 1" in message
    assert path.read_bytes() == before
    assert query(path, "SELECT count(*) FROM batch_record") == [(1,)]
    assert query(path, "PRAGMA user_version") == [(1,)]


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


async def test_a_commit_that_fails_unexpectedly_still_tells_its_writers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever goes wrong in a commit, each of its writers gets LedgerError; none waits
    forever."""
    async with SqliteLedger(tmp_path / "ledger.sqlite3") as ledger:
        job = await ledger.open_job(JOB_A)
        tracker = new_tracker(job.acknowledgements)

        def broken(writes: list[Any]) -> int:
            raise RuntimeError("disk gremlin")

        monkeypatch.setattr(ledger, "_commit_group", broken)
        with pytest.raises(LedgerError, match="disk gremlin"):
            await asyncio.wait_for(send(job, tracker, [ItemUpdate.successful(ENTRY_1)]), 5)


async def test_the_log_is_checkpointed_on_the_ledgers_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once enough was appended to the write-ahead log, a checkpoint runs, off the event loop."""
    monkeypatch.setattr(_sqlite_ledger, "CHECKPOINT_BYTES", 1000)
    threads: list[str] = []
    async with SqliteLedger(tmp_path / "ledger.sqlite3") as ledger:
        checkpoint = ledger._checkpoint

        def recorded() -> None:
            threads.append(threading.current_thread().name)
            checkpoint()

        monkeypatch.setattr(ledger, "_checkpoint", recorded)
        job = await ledger.open_job(JOB_A)
        tracker = new_tracker(job.acknowledgements)
        await send(job, tracker, successful_updates(entry_ids(50)))
    # close() waits for a checkpoint under way.
    assert threads
    assert all(name.startswith("pleo-ledger") for name in threads)


async def test_a_commit_that_finds_the_file_busy_for_a_moment_lands_once_it_is_free(
    tmp_path: Path,
) -> None:
    """A commit that finds another connection holding the write lock is tried again, without
    blocking the event loop, and lands once the lock is released."""
    path = tmp_path / "ledger.sqlite3"
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        tracker = new_tracker(job.acknowledgements)
        with contextlib.closing(sqlite3.connect(path)) as other:
            other.execute("BEGIN IMMEDIATE")
            writing = asyncio.create_task(send(job, tracker, [ItemUpdate.successful(ENTRY_1)]))
            await asyncio.sleep(0.05)  # the loop keeps running while the commit waits
            assert not writing.done()
            other.rollback()
            await asyncio.wait_for(writing, 5)
    assert count_rows(path, "batch") == 1


async def test_an_acknowledgement_shares_the_transaction_of_the_next_batchs_row(
    fake: FakePleo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One worker sending five batches commits six transactions, not ten: each answer's
    acknowledgement lands with the next batch's row, and the last one on its own."""
    job = fake.create_job(items=500)
    commits: list[list[str]] = []
    async with SqliteLedger(tmp_path / "ledger.sqlite3") as ledger:
        commit_group: Callable[[list[Any]], int] = ledger._commit_group

        def counting(writes: list[Any]) -> int:
            commits.append([sql.split()[2] for sql, _ in writes])
            return commit_group(writes)

        monkeypatch.setattr(ledger, "_commit_group", counting)
        async with client_for(fake, max_concurrency=1) as client:
            report = await client.job(job.id, ledger=ledger).update(
                successful_updates(job.item_ids)
            )
    assert len(report.acknowledged) == 500
    assert commits == [
        ["batch"],
        *[["acknowledgement", "batch"]] * 4,
        ["acknowledgement"],
    ]


async def test_an_acknowledgement_that_did_not_land_keeps_the_final_event_unsent(
    fake: FakePleo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the commit of the last acknowledgement fails, complete() raises LedgerError and sends
    no event; a process started afterwards learns from Pleo what landed and completes once."""
    job = fake.create_job(items=150)
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    await ledger.__aenter__()
    commit_group: Callable[[list[Any]], int] = ledger._commit_group

    def failing_the_last_acknowledgement(writes: list[Any]) -> int:
        if len(writes) == 1 and writes[0][0].startswith("INSERT INTO acknowledgement"):
            raise sqlite3.OperationalError("disk I/O error")
        return commit_group(writes)

    monkeypatch.setattr(ledger, "_commit_group", failing_the_last_acknowledgement)
    async with client_for(fake, max_concurrency=1) as client:
        run = client.job(job.id, ledger=ledger)
        report = await run.update(successful_updates(job.item_ids))
        with pytest.raises(LedgerError, match="was not recorded"):
            await run.complete()
    with pytest.raises(LedgerError, match="was not recorded"):
        await ledger.close()
    assert len(report.acknowledged) == 150
    assert fake.journal.final_events_applied(job.id) == []
    async with SqliteLedger(path) as ledger, client_for(fake) as client:
        run = client.job(job.id, ledger=ledger)
        again = await run.update(successful_updates(job.item_ids))
        outcome = await run.complete()
    assert len(again.acknowledged) == 0
    assert outcome.successful == 150
    assert len(fake.journal.final_events_applied(job.id)) == 1
    assert fake.journal.resent_after_ack() == {}


async def test_a_failed_acknowledgement_is_raised_by_the_very_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write asked for right after an acknowledgement's commit failed, before the event loop
    has run its callbacks, already raises LedgerError and commits nothing."""
    async with SqliteLedger(tmp_path / "ledger.sqlite3") as ledger:
        job = await ledger.open_job(JOB_A)
        tracker = new_tracker(job.acknowledgements)
        first = await send(job, tracker, [ItemUpdate.successful(ENTRY_1)])
        tracker.reconcile(first, [ENTRY_1], ())
        commit_group: Callable[[list[Any]], int] = ledger._commit_group

        def broken(writes: list[Any]) -> int:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(ledger, "_commit_group", broken)
        await job.record_acknowledged(first)
        ledger._commit_queued()  # the commit at the end of this turn, run now
        monkeypatch.setattr(ledger, "_commit_group", commit_group)
        second = planned(tracker, [ItemUpdate.successful(ENTRY_2)])
        with pytest.raises(LedgerError, match="was not recorded"):
            await job.record_in_flight(second, b"[]")
        with pytest.raises(LedgerError, match="was not recorded"):
            await ledger.close()
    assert count_rows(tmp_path / "ledger.sqlite3", "batch") == 1
    assert count_rows(tmp_path / "ledger.sqlite3", "acknowledgement") == 0


async def test_closing_twice_does_nothing_and_a_closed_ledger_refuses_to_open_a_job(
    tmp_path: Path,
) -> None:
    """close() a second time returns quietly; open_job() on a closed ledger raises LedgerError."""
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    async with ledger:
        await ledger.open_job(JOB_A)
        await ledger.close()
    await ledger.close()
    with pytest.raises(LedgerError, match="is closed"):
        await ledger.open_job(JOB_A)


async def test_a_resume_whose_reconciliation_failed_reconciles_at_the_next_call(
    fake: FakePleo, tmp_path: Path
) -> None:
    """If reading Pleo's items, to learn whether a batch left in flight landed, fails, the
    run's next call reconciles before sending: the update that landed is not sent again."""
    job = fake.create_job(items=100)
    path = tmp_path / "ledger.sqlite3"
    fake.faults = Faults(lost_response=FaultSpec(probability=1.0))
    once = RetryPolicy(max_attempts=1)
    async with SqliteLedger(path) as ledger, client_for(fake, retry=once) as client:
        with pytest.raises(TransportError):
            await client.job(job.id, ledger=ledger).update(successful_updates(job.item_ids))
    fake.faults = Faults(server_error=FaultSpec(probability=1.0))
    async with SqliteLedger(path) as ledger, client_for(fake, retry=once) as client:
        run = client.job(job.id, ledger=ledger)
        with pytest.raises(ApiError):
            await run.update(successful_updates(job.item_ids))
        fake.faults = Faults()
        again = await run.update(successful_updates(job.item_ids))
        outcome = await run.complete()
    assert len(again.skipped) == 100
    assert outcome.successful == 100
    assert fake.journal.resent_after_ack() == {}
    assert len(fake.journal.puts(job.id)) == 1
