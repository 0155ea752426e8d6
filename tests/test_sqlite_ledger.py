"""SqliteLedger: its records survive the process, one row per batch, it refuses files it cannot
trust, and a JobRun resumes from it without resending anything acknowledged (R2, R4, R11, R13)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from batching import ID_A, ID_B, ID_C, new_tracker, planned
from helpers import client_for, mixed_updates, successful_updates
from hypothesis import given, settings
from hypothesis import strategies as st

from pleo_export_async import (
    CompletionOutcome,
    ItemUpdate,
    JobEvent,
    JobFinished,
    LedgerError,
    SqliteLedger,
    _sqlite_ledger,
)
from pleo_export_async._codec import encode_item_updates
from pleo_export_async._core._batches import Batch
from pleo_export_async._core._tracker import ItemTracker
from pleo_export_async._enums import ItemStatus
from pleo_export_async._ledger import JobLedger, MemoryJobLedger
from pleo_export_async._models import ItemUpdateError, JobEventRequest
from pleo_export_async._sqlite_ledger import APPLICATION_ID, SCHEMA_VERSION
from pleo_export_async.testing import FakePleo

pytestmark = pytest.mark.usefixtures("instant")

JOB_A = "11111111-1111-4111-8111-111111111111"
JOB_B = "22222222-2222-4222-8222-222222222222"
ENTRY_1 = "aaaaaaaa-0000-4000-8000-000000000001"
ENTRY_2 = "aaaaaaaa-0000-4000-8000-000000000002"
ENTRY_3 = "aaaaaaaa-0000-4000-8000-000000000003"
PERMANENT = "ACCOUNTING_ENTRY_DOES_NOT_EXIST"


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


async def answer(
    job: JobLedger,
    tracker: ItemTracker,
    batch: Batch,
    acknowledged: Sequence[str] | None = None,
    errors: Sequence[ItemUpdateError] = (),
) -> None:
    """Settle a sent batch with Pleo's answer (None: every ID acknowledged) and record it, as a
    JobRun does once the response is read."""
    tracker.reconcile(
        batch, list(batch.ids) if acknowledged is None else list(acknowledged), errors
    )
    if batch.acknowledged_count:
        await job.record_acknowledged(batch)


async def acknowledge(
    job: JobLedger,
    tracker: ItemTracker,
    updates: Sequence[ItemUpdate],
    acknowledged: Sequence[str] | None = None,
    errors: Sequence[ItemUpdateError] = (),
) -> Batch:
    """Send `updates` in one batch and record Pleo's answer to it."""
    batch = await send(job, tracker, updates)
    await answer(job, tracker, batch, acknowledged, errors)
    return batch


def query(path: Path, sql: str, *parameters: object) -> list[tuple[Any, ...]]:
    """Rows read from the ledger file directly, bypassing the ledger."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return connection.execute(sql, parameters).fetchall()


def count_rows(path: Path, table: str) -> int:
    """How many rows the table has in the ledger file."""
    ((count,),) = query(path, f"SELECT count(*) FROM {table}")
    return int(count)


async def test_records_survive_closing_and_reopening(tmp_path: Path) -> None:
    """Acknowledgements, the tally, in-flight updates and the final event are read back."""
    path = tmp_path / "ledger.sqlite3"
    done = ItemUpdate.successful(ENTRY_1, external_id="JE-1")
    failed = ItemUpdate.failed(ENTRY_2, reason="Vendor V1 unknown", reason_type="vendor_unknown")
    pending = ItemUpdate.successful(
        ENTRY_3,
        external_id="JE-3",
        external_url="https://erp.example.com/journal/JE-3",
        exported_at=datetime(2024, 5, 1, 12, 30, 15, tzinfo=UTC),
    )
    request = JobEventRequest(JobEvent.COMPLETED_WITH_ERRORS, JOB_A)
    outcome = CompletionOutcome(JOB_A, JobEvent.COMPLETED_WITH_ERRORS, None, None, 1, 1, 0)
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        tracker = new_tracker(job.acknowledgements)
        await acknowledge(job, tracker, [done, failed])
        await send(job, tracker, [pending])  # the process stops before Pleo answers
        await job.record_event_intent(request)
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        assert job.acknowledgements.acknowledged(ENTRY_1) is ItemStatus.SUCCESSFUL
        assert job.acknowledgements.acknowledged(ENTRY_2) == failed
        assert job.acknowledgements.acknowledged(ENTRY_3) is None
        assert job.in_flight_at_open() == {ENTRY_3: pending}
        tally = job.acknowledgements.tally()
        assert (tally.successful, tally.failed, dict(tally.failure_types)) == (
            1,
            1,
            {"vendor_unknown": 1},
        )
        record = job.final_event()
        assert record is not None
        assert record.request == request
        assert record.outcome is None
        await job.record_event_delivered(outcome)
    async with SqliteLedger(path) as ledger:
        record = (await ledger.open_job(JOB_A)).final_event()
        assert record is not None
        assert record.request == request
        assert record.outcome == outcome


async def test_a_partly_acknowledged_batch_reads_back_as_that_part(tmp_path: Path) -> None:
    """Of a batch Pleo acknowledged in part, only that part reads back acknowledged; the rest is
    in flight at open, with its updates."""
    path = tmp_path / "ledger.sqlite3"
    updates = successful_updates(entry_ids(10))
    acknowledged = [u.accounting_entry_id for u in updates[::3]]
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        await acknowledge(job, new_tracker(job.acknowledgements), updates, acknowledged)
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        for update in updates:
            entry_id = update.accounting_entry_id
            expected = ItemStatus.SUCCESSFUL if entry_id in acknowledged else None
            assert job.acknowledgements.acknowledged(entry_id) is expected
        assert job.in_flight_at_open() == {
            u.accounting_entry_id: u for u in updates if u.accounting_entry_id not in acknowledged
        }
        assert job.acknowledgements.tally().successful == len(acknowledged)


async def test_an_acknowledgement_after_reopening_takes_the_id_out_of_flight(
    tmp_path: Path,
) -> None:
    """An update in flight at open that a new batch gets acknowledged is no longer in flight,
    neither now nor after the next reopening."""
    path = tmp_path / "ledger.sqlite3"
    updates = successful_updates(entry_ids(3))
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        await send(job, new_tracker(job.acknowledgements), updates)
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        assert set(job.in_flight_at_open()) == {u.accounting_entry_id for u in updates}
        await acknowledge(job, new_tracker(job.acknowledgements), updates[:1])
        assert set(job.in_flight_at_open()) == {u.accounting_entry_id for u in updates[1:]}
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        assert set(job.in_flight_at_open()) == {u.accounting_entry_id for u in updates[1:]}
        assert job.acknowledgements.tally().successful == 1


async def test_the_file_holds_one_row_per_batch_never_one_per_item(tmp_path: Path) -> None:
    """Each batch is one `batch` row holding its PUT body as sent, and each answered batch one
    `acknowledgement` row: '*' when every ID was acknowledged, else the IDs acknowledged."""
    path = tmp_path / "ledger.sqlite3"
    updates = mixed_updates_for(entry_ids(350))
    partly = [u.accounting_entry_id for u in updates[200:240]]
    bodies: list[bytes] = []
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        tracker = new_tracker(job.acknowledgements)
        for chunk, acknowledged in (
            (updates[:100], None),
            (updates[100:200], None),
            (updates[200:300], partly),
        ):
            bodies.append(encode_item_updates(chunk))
            await acknowledge(job, tracker, chunk, acknowledged)
        bodies.append(encode_item_updates(updates[300:]))
        await send(job, tracker, updates[300:])  # never answered
    assert count_rows(path, "batch") == 4
    assert count_rows(path, "acknowledgement") == 3
    rows = query(
        path,
        "SELECT job_id, updates, acknowledged FROM batch"
        " LEFT JOIN acknowledgement ON batch_id = batch.id ORDER BY batch.id",
    )
    assert [(job_id, bytes(body)) for job_id, body, _ in rows] == [(JOB_A, b) for b in bodies]
    assert [acknowledged for _, _, acknowledged in rows[:2]] == ["*", "*"]
    assert sorted(json.loads(rows[2][2])) == sorted(partly)
    assert rows[3][2] is None


def mixed_updates_for(ids: list[str]) -> list[ItemUpdate]:
    """Every tenth update failed with a failure type, the others successful with an external ID."""
    return [
        ItemUpdate.failed(entry_id, reason=f"Vendor V-{n} unknown", reason_type="vendor_unknown")
        if n % 10 == 9
        else ItemUpdate.successful(entry_id, external_id=f"JE-{n}")
        for n, entry_id in enumerate(ids)
    ]


async def play(
    job: JobLedger, calls: Sequence[Sequence[tuple[ItemUpdate, str]]]
) -> dict[str, ItemUpdate]:
    """Drive one tracker over the job through these calls, one batch each, every update
    'acknowledged', 'missing' from the answer or 'rejected' by it; returns what the batches
    carried and Pleo never acknowledged, by ID."""
    tracker = new_tracker(job.acknowledgements)
    in_flight: dict[str, ItemUpdate] = {}
    for call in calls:
        tracker.drop_ready("not sent: the update call stopped")
        tracker.begin_call()
        batch = planned(tracker, [update for update, _ in call])
        if not batch.updates:
            tracker.give_up(batch, "nothing to send")
            continue  # every update skipped or collapsed: a JobRun sends nothing
        await job.record_in_flight(batch, encode_item_updates(batch.updates))
        verdicts = {u.accounting_entry_id: verdict for u, verdict in call}
        acknowledged: list[str] = []
        errors: list[ItemUpdateError] = []
        for update in batch.updates:
            entry_id = update.accounting_entry_id
            if verdicts[entry_id] == "acknowledged":
                acknowledged.append(entry_id)
                in_flight.pop(entry_id, None)
                continue
            in_flight[entry_id] = update
            if verdicts[entry_id] == "rejected":
                errors.append(ItemUpdateError(entry_id, PERMANENT, "no such entry"))
        await answer(job, tracker, batch, acknowledged, errors)
    return in_flight


async def assert_read_back_equals_memory(
    path: Path, calls: Sequence[Sequence[tuple[ItemUpdate, str]]], ids: Sequence[str]
) -> MemoryJobLedger:
    """Play `calls` on a memory ledger and on a file, and check that the file reads back the
    memory ledger's acknowledgement of each of `ids`, its tally, and the updates in flight."""
    memory = MemoryJobLedger(JOB_A)
    in_flight = await play(memory, calls)
    async with SqliteLedger(path) as ledger:
        assert await play(await ledger.open_job(JOB_A), calls) == in_flight
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        for entry_id in ids:
            assert job.acknowledgements.acknowledged(entry_id) == (
                memory.acknowledgements.acknowledged(entry_id)
            ), entry_id
        assert job.acknowledgements.tally() == memory.acknowledgements.tally()
        assert job.in_flight_at_open() == in_flight
    return memory


async def test_what_is_read_back_equals_what_the_memory_ledger_holds(tmp_path: Path) -> None:
    """After the same batches, the state read back from the file equals the memory ledger's: per
    ID and in the tally, through supersessions, partial answers, refusals and resends."""
    ids = entry_ids(250)
    first = mixed_updates_for(ids)
    superseding = [ItemUpdate.successful(i, external_id="JE-again") for i in ids[9:250:10]]
    in_progress = [ItemUpdate(i, ItemStatus.IN_PROGRESS) for i in entry_ids(20, start=1000)]
    calls: list[list[tuple[ItemUpdate, str]]] = [
        [(u, "acknowledged") for u in first[:100]],
        [(u, "missing" if n % 4 == 0 else "acknowledged") for n, u in enumerate(first[100:200])],
        [(u, "rejected" if n % 5 == 0 else "acknowledged") for n, u in enumerate(first[200:])],
        [(u, "acknowledged") for u in first[100:200]],  # resend: the acknowledged ones skipped
        [(u, "acknowledged" if n % 2 else "missing") for n, u in enumerate(superseding)],
        [(u, "acknowledged") for u in in_progress],
        [(ItemUpdate.successful(u.accounting_entry_id), "acknowledged") for u in in_progress[:10]],
        [(u, "missing") for u in first[200:210]],  # left in flight, never answered
    ]
    memory = await assert_read_back_equals_memory(
        tmp_path / "ledger.sqlite3", calls, [*ids, *entry_ids(20, start=1000)]
    )
    tally = memory.acknowledgements.tally()
    assert (tally.successful, tally.failed) == (237, 13)  # 12 of the 25 failures superseded


UPDATES = st.sampled_from([ID_A, ID_B, ID_C]).flatmap(
    lambda entry_id: st.sampled_from(
        [
            ItemUpdate.successful(entry_id),
            ItemUpdate.successful(entry_id, external_id="JE-7"),
            ItemUpdate.failed(entry_id, reason_type="vendor_unknown"),
            ItemUpdate.failed(entry_id, reason="Tag T1 unknown", reason_type="tag_unknown"),
            ItemUpdate(entry_id, ItemStatus.IN_PROGRESS),
        ]
    )
)
VERDICTS = st.sampled_from(["acknowledged", "acknowledged", "missing", "rejected"])
CALLS = st.lists(
    st.lists(
        st.tuples(UPDATES, VERDICTS), max_size=3, unique_by=lambda pair: pair[0].accounting_entry_id
    ),
    max_size=7,
)


@settings(max_examples=60, deadline=None)
@given(calls=CALLS)
def test_any_sequence_of_batches_reads_back_as_the_memory_ledger_holds_it(
    calls: list[list[tuple[ItemUpdate, str]]],
) -> None:
    """For any sequence of batches and answers, the file reads back what the memory ledger holds."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "ledger.sqlite3"
        asyncio.run(assert_read_back_equals_memory(path, calls, [ID_A, ID_B, ID_C]))


async def test_a_superseded_failure_moves_the_tally(tmp_path: Path) -> None:
    """A failed item later acknowledged successful counts once, as successful, after reopening."""
    path = tmp_path / "ledger.sqlite3"
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        tracker = new_tracker(job.acknowledgements)
        await acknowledge(
            job, tracker, [ItemUpdate.failed(ENTRY_1, reason="x", reason_type="tag_unknown")]
        )
        await acknowledge(job, tracker, [ItemUpdate.successful(ENTRY_1)])
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        tally = job.acknowledgements.tally()
        assert job.acknowledgements.acknowledged(ENTRY_1) is ItemStatus.SUCCESSFUL
    assert (tally.successful, tally.failed, dict(tally.failure_types)) == (1, 0, {})


async def test_delivering_the_final_event_deletes_the_jobs_batches(tmp_path: Path) -> None:
    """Once the final event is delivered the job's batch and acknowledgement rows go, its
    final_event row keeps the outcome, and another job's rows stay (R2, R11)."""
    path = tmp_path / "ledger.sqlite3"
    updates = successful_updates(entry_ids(150))
    other_update = ItemUpdate.successful(ENTRY_1)
    request = JobEventRequest(JobEvent.COMPLETED, JOB_A)
    outcome = CompletionOutcome(JOB_A, JobEvent.COMPLETED, None, None, 100, 0, 0)
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        tracker = new_tracker(job.acknowledgements)
        await acknowledge(job, tracker, updates[:100])
        await send(job, tracker, updates[100:])  # never answered
        other = await ledger.open_job(JOB_B)
        await acknowledge(other, new_tracker(other.acknowledgements), [other_update])
        await job.record_event_intent(request)
        await job.record_event_delivered(outcome)
        assert job.acknowledgements.forgotten
        assert job.acknowledgements.index == {}
        assert job.acknowledgements.tally().successful == 100
        assert job.in_flight_at_open() == {}
    assert query(path, "SELECT count(*) FROM batch WHERE job_id = ?", JOB_A) == [(0,)]
    assert query(path, "SELECT job_id FROM batch") == [(JOB_B,)]
    assert count_rows(path, "acknowledgement") == 1
    ((outcome_blob,),) = query(path, "SELECT outcome FROM final_event WHERE job_id = ?", JOB_A)
    assert outcome_blob is not None
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        record = job.final_event()
        assert record is not None
        assert record.outcome == outcome
        assert job.acknowledgements.forgotten
        assert job.acknowledgements.index == {}
        assert job.in_flight_at_open() == {}
        other = await ledger.open_job(JOB_B)
        assert other.acknowledgements.acknowledged(ENTRY_1) is ItemStatus.SUCCESSFUL


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
    """If a group's transaction fails, each write in it raises LedgerError and none lands."""
    path = tmp_path / "ledger.sqlite3"
    async with SqliteLedger(path) as ledger:
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
                job.record_in_flight(second, second_body),
                job.record_acknowledged(first),
                return_exceptions=True,
            )
            other.rollback()
        assert [type(result) for result in results] == [LedgerError, LedgerError]
        assert "cannot write ledger" in str(results[0])
    async with SqliteLedger(path) as ledger:
        job = await ledger.open_job(JOB_A)
        assert job.acknowledgements.acknowledged(ENTRY_1) is None
        assert set(job.in_flight_at_open()) == {ENTRY_1}
    assert count_rows(path, "batch") == 1
    assert count_rows(path, "acknowledgement") == 0


async def test_two_jobs_share_one_file_without_mixing(tmp_path: Path) -> None:
    """Records of one job never show up in another's."""
    path = tmp_path / "ledger.sqlite3"
    async with SqliteLedger(path) as ledger:
        job_a, job_b = await ledger.open_job(JOB_A), await ledger.open_job(JOB_B)
        await acknowledge(
            job_a, new_tracker(job_a.acknowledgements), [ItemUpdate.successful(ENTRY_1)]
        )
        await send(job_b, new_tracker(job_b.acknowledgements), [ItemUpdate.successful(ENTRY_2)])
    async with SqliteLedger(path) as ledger:
        job_a, job_b = await ledger.open_job(JOB_A), await ledger.open_job(JOB_B)
        assert job_a.acknowledgements.acknowledged(ENTRY_1) is ItemStatus.SUCCESSFUL
        assert job_b.acknowledgements.acknowledged(ENTRY_1) is None
        assert job_a.acknowledgements.tally().successful == 1
        assert job_b.acknowledgements.tally().successful == 0
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


async def test_a_schema_version_1_file_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    """A ledger of the per-item schema (version 1) raises LedgerError naming both versions, and
    keeps every byte."""
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
    assert re.search(rf"version {SCHEMA_VERSION}\b", message), message
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
        job_ledger = await ledger.open_job(job.id)
        await send(job_ledger, new_tracker(job_ledger.acknowledgements), updates[:100])
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
        job_ledger = await ledger.open_job(job.id)
        await send(job_ledger, new_tracker(job_ledger.acknowledgements), updates)
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
