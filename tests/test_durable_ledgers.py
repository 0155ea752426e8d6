"""The durable ledgers, SqliteLedger and PostgresLedger, against one suite: their records survive
the process, one row per batch, what they read back is what the memory ledger holds, and a JobRun
resumes from them without resending anything acknowledged (R2, R4, R11, R13).

Each test runs once per ledger, through the `durable` fixture: `durable.open()` is a new ledger on
the same storage, as a new process would open it. Writes are made with the job's turn held, as a
JobRun holds it (for PostgresLedger, the job's lease: without it, nothing that decides what is
sent may be written)."""

from __future__ import annotations

import abc
import contextlib
import itertools
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batching import ID_A, ID_B, ID_C, new_tracker, planned
from helpers import client_for, mixed_updates, successful_updates
from pleo_export_async import (
    CompletionOutcome,
    ExportItem,
    ItemUpdate,
    JobEvent,
    JobFinished,
    PleoExportClient,
    PostgresLedger,
    RetryPolicy,
    SqliteLedger,
)
from pleo_export_async._codec import encode_item_updates
from pleo_export_async._core._batches import Batch
from pleo_export_async._core._tracker import ItemTracker
from pleo_export_async._enums import ItemStatus
from pleo_export_async._ledger import JobLedger, Ledger, MemoryJobLedger
from pleo_export_async._models import ItemUpdateError, JobEventRequest
from pleo_export_async.testing import FakePleo, Faults, FaultSpec

pytestmark = pytest.mark.usefixtures("instant")

JOB_A = "11111111-1111-4111-8111-111111111111"
JOB_B = "22222222-2222-4222-8222-222222222222"
ENTRY_1 = "aaaaaaaa-0000-4000-8000-000000000001"
ENTRY_2 = "aaaaaaaa-0000-4000-8000-000000000002"
ENTRY_3 = "aaaaaaaa-0000-4000-8000-000000000003"
PERMANENT = "ACCOUNTING_ENTRY_DOES_NOT_EXIST"

#: PostgresLedger's lease must outlast a request with room to spare: with the clients of these
#: tests (`client`, timeout 5 s) a 30 s lease is plenty.
LEASE_TTL = 30.0
REQUEST_TIMEOUT = 5.0

DurableLedger = SqliteLedger | PostgresLedger


# -- the ledgers' storage ------------------------------------------------------------------------


class Durable(abc.ABC):
    """Where one kind of durable ledger keeps its rows for a test, and the ledgers opened on it."""

    def __init__(self) -> None:
        self._open: list[DurableLedger] = []
        self._examples = itertools.count(1)

    @abc.abstractmethod
    def _new_ledger(self) -> DurableLedger: ...

    @abc.abstractmethod
    async def query(self, sql: str, *parameters: object) -> list[tuple[Any, ...]]:
        """Rows read from the storage directly, bypassing the ledger. In `sql`, tables are
        written `{s}batch` and parameters `$1`, `$2`..."""

    @abc.abstractmethod
    def fresh(self) -> contextlib.AbstractAsyncContextManager[Durable]:
        """Storage of the same kind and its own, emptied (its ledgers closed) on exit."""

    def open(self) -> DurableLedger:
        """A new ledger on this storage, as a new process would open it; closed at teardown
        unless `close` or `process` closed it before."""
        ledger = self._new_ledger()
        self._open.append(ledger)
        return ledger

    async def close(self, ledger: DurableLedger) -> None:
        """Close a ledger `open` returned, once."""
        if ledger in self._open:
            self._open.remove(ledger)
            await ledger.close()

    @contextlib.asynccontextmanager
    async def process(self) -> AsyncIterator[DurableLedger]:
        """A new ledger on this storage for the lifetime of one process: closed on exit."""
        ledger = self.open()
        try:
            yield ledger
        finally:
            await self.close(ledger)

    async def close_all(self) -> None:
        while self._open:
            await self.close(self._open[-1])

    async def count_rows(self, table: str, job_id: str | None = None) -> int:
        """How many rows the table has (of `job_id`'s, if given)."""
        if job_id is None:
            ((count,),) = await self.query(f"SELECT count(*) FROM {{s}}{table}")
        else:
            ((count,),) = await self.query(
                f"SELECT count(*) FROM {{s}}{table} WHERE job_id = $1", job_id
            )
        return int(count)


class SqliteStorage(Durable):
    """A ledger file: `SqliteLedger(path)`, read with sqlite3."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def __repr__(self) -> str:
        return f"SqliteStorage({self.path})"

    def _new_ledger(self) -> SqliteLedger:
        return SqliteLedger(self.path)

    async def query(self, sql: str, *parameters: object) -> list[tuple[Any, ...]]:
        # `$1` becomes the named `:p1`: numbered `?1` with a sequence is deprecated from 3.12.
        sqlite_sql = re.sub(r"\$(\d+)", r":p\1", sql.format(s=""))
        named = {f"p{number}": value for number, value in enumerate(parameters, start=1)}
        with contextlib.closing(sqlite3.connect(self.path)) as connection:
            return connection.execute(sqlite_sql, named).fetchall()

    @contextlib.asynccontextmanager
    async def fresh(self) -> AsyncIterator[Durable]:
        storage = SqliteStorage(self.path.with_name(f"example-{next(self._examples)}.sqlite3"))
        try:
            yield storage
        finally:
            await storage.close_all()


class PostgresStorage(Durable):
    """A database schema: `PostgresLedger(dsn, schema=schema)`, read with asyncpg."""

    def __init__(self, dsn: str, schema: str) -> None:
        super().__init__()
        self.dsn = dsn
        self.schema = schema

    def __repr__(self) -> str:
        return f"PostgresStorage({self.schema})"

    def _new_ledger(self) -> PostgresLedger:
        return PostgresLedger(self.dsn, schema=self.schema, lease_ttl=LEASE_TTL)

    async def query(self, sql: str, *parameters: object) -> list[tuple[Any, ...]]:
        import asyncpg

        connection = await asyncpg.connect(self.dsn)
        try:
            rows = await connection.fetch(sql.format(s=f"{self.schema}."), *parameters)
        finally:
            await connection.close()
        return [tuple(row) for row in rows]

    @contextlib.asynccontextmanager
    async def fresh(self) -> AsyncIterator[Durable]:
        import asyncpg

        storage = PostgresStorage(self.dsn, f"{self.schema}_{next(self._examples)}")
        try:
            yield storage
        finally:
            await storage.close_all()
            connection = await asyncpg.connect(self.dsn)
            try:
                await connection.execute(f"DROP SCHEMA IF EXISTS {storage.schema} CASCADE")
            finally:
                await connection.close()


@pytest.fixture
def postgres_storage(request: pytest.FixtureRequest) -> Iterator[PostgresStorage | None]:
    """The database schema of a test's postgres run (None in its sqlite run, which needs no
    server): the conftest's fixtures, asked for here because an async fixture cannot."""
    if request.node.callspec.params.get("durable") != "postgres":
        yield None
        return
    yield PostgresStorage(
        request.getfixturevalue("postgres_dsn"), request.getfixturevalue("postgres_schema")
    )


@pytest.fixture(params=["sqlite", "postgres"])
async def durable(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_storage: PostgresStorage | None
) -> AsyncIterator[Durable]:
    """Storage of one durable ledger; every ledger opened on it is closed at teardown."""
    storage: Durable
    if request.param == "sqlite":
        storage = SqliteStorage(tmp_path / "ledger.sqlite3")
    else:
        assert postgres_storage is not None
        storage = postgres_storage
    try:
        yield storage
    finally:
        await storage.close_all()


# -- driving a job's ledger as a JobRun does -----------------------------------------------------


def client(fake: FakePleo, **options: Any) -> PleoExportClient:
    """A client of the fake whose requests PostgresLedger's lease (LEASE_TTL) can cover."""
    return client_for(fake, timeout=REQUEST_TIMEOUT, **options)


@contextlib.asynccontextmanager
async def working(ledger: Ledger, job_id: str) -> AsyncIterator[JobLedger]:
    """The job's ledger with its turn held, as a JobRun holds it while it works the job."""
    job = await ledger.open_job(job_id)
    async with job.turn():
        yield job


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


def mixed_updates_for(ids: list[str]) -> list[ItemUpdate]:
    """Every tenth update failed with a failure type, the others successful with an external ID."""
    return [
        ItemUpdate.failed(entry_id, reason=f"Vendor V-{n} unknown", reason_type="vendor_unknown")
        if n % 10 == 9
        else ItemUpdate.successful(entry_id, external_id=f"JE-{n}")
        for n, entry_id in enumerate(ids)
    ]


# -- records read back ---------------------------------------------------------------------------


async def test_records_survive_closing_and_reopening(durable: Durable) -> None:
    """Acknowledgements, the tally, in-flight updates and the final event are read back."""
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
    async with durable.process() as ledger, working(ledger, JOB_A) as job:
        tracker = new_tracker(job.acknowledgements)
        await acknowledge(job, tracker, [done, failed])
        await send(job, tracker, [pending])  # the process stops before Pleo answers
        await job.record_event_intent(request)
    async with durable.process() as ledger, working(ledger, JOB_A) as job:
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
    async with durable.process() as ledger:
        record = (await ledger.open_job(JOB_A)).final_event()
        assert record is not None
        assert record.request == request
        assert record.outcome == outcome


async def test_an_update_an_earlier_version_accepted_reads_back_as_it_was_sent(
    durable: Durable,
) -> None:
    """An in-flight update whose external_url this version would refuse (earlier ones took any
    string) reads back, URL and all, so that the resend is the same update."""
    sent = ItemUpdate.successful(ENTRY_1, external_id="JE-1", external_url="https://x.example/1")
    async with durable.process() as ledger, working(ledger, JOB_A) as job:
        tracker = new_tracker(job.acknowledgements)
        tracker.begin_call()
        batch = planned(tracker, [sent])
        body = encode_item_updates(batch.updates or ()).replace(
            b"https://x.example/1", b"erp entry 1"
        )
        await job.record_in_flight(batch, body)
    async with durable.process() as ledger, working(ledger, JOB_A) as job:
        [(entry_id, update)] = job.in_flight_at_open().items()
    assert entry_id == ENTRY_1
    assert (update.external_id, update.external_url) == ("JE-1", "erp entry 1")


async def test_a_partly_acknowledged_batch_reads_back_as_that_part(durable: Durable) -> None:
    """Of a batch Pleo acknowledged in part, only that part reads back acknowledged; the rest is
    in flight at open, with its updates."""
    updates = successful_updates(entry_ids(10))
    acknowledged = [u.accounting_entry_id for u in updates[::3]]
    async with durable.process() as ledger, working(ledger, JOB_A) as job:
        await acknowledge(job, new_tracker(job.acknowledgements), updates, acknowledged)
    async with durable.process() as ledger:
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
    durable: Durable,
) -> None:
    """An update in flight at open that a new batch gets acknowledged is no longer in flight,
    neither now nor after the next reopening."""
    updates = successful_updates(entry_ids(3))
    async with durable.process() as ledger, working(ledger, JOB_A) as job:
        await send(job, new_tracker(job.acknowledgements), updates)
    async with durable.process() as ledger, working(ledger, JOB_A) as job:
        assert set(job.in_flight_at_open()) == {u.accounting_entry_id for u in updates}
        await acknowledge(job, new_tracker(job.acknowledgements), updates[:1])
        assert set(job.in_flight_at_open()) == {u.accounting_entry_id for u in updates[1:]}
    async with durable.process() as ledger:
        job = await ledger.open_job(JOB_A)
        assert set(job.in_flight_at_open()) == {u.accounting_entry_id for u in updates[1:]}
        assert job.acknowledgements.tally().successful == 1


async def test_the_store_holds_one_row_per_batch_never_one_per_item(durable: Durable) -> None:
    """Each batch is one `batch` row holding its PUT body as sent, and each answered batch one
    `acknowledgement` row: '*' when every ID was acknowledged, else the IDs acknowledged."""
    updates = mixed_updates_for(entry_ids(350))
    partly = [u.accounting_entry_id for u in updates[200:240]]
    bodies: list[bytes] = []
    async with durable.process() as ledger, working(ledger, JOB_A) as job:
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
    assert await durable.count_rows("batch") == 4
    assert await durable.count_rows("acknowledgement") == 3
    rows = await durable.query(
        "SELECT job_id, updates, acknowledged FROM {s}batch"
        " LEFT JOIN {s}acknowledgement ON batch_id = batch.id ORDER BY batch.id"
    )
    assert [(job_id, bytes(body)) for job_id, body, _ in rows] == [(JOB_A, b) for b in bodies]
    assert [acknowledged for _, _, acknowledged in rows[:2]] == ["*", "*"]
    assert sorted(json.loads(rows[2][2])) == sorted(partly)
    assert rows[3][2] is None


async def play(
    job: JobLedger, calls: Sequence[Sequence[tuple[ItemUpdate, str]]]
) -> dict[str, ItemUpdate]:
    """Drive one tracker over the job through these calls, one batch each, every update
    'acknowledged', 'missing' from the answer or 'rejected' by it, with the job's turn held;
    returns what the batches carried and Pleo never acknowledged, by ID."""
    tracker = new_tracker(job.acknowledgements)
    in_flight: dict[str, ItemUpdate] = {}
    async with job.turn():
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
    durable: Durable, calls: Sequence[Sequence[tuple[ItemUpdate, str]]], ids: Sequence[str]
) -> MemoryJobLedger:
    """Play `calls` on a memory ledger and on the durable one, and check that the durable one
    reads back the memory ledger's acknowledgement of each of `ids`, its tally, and the updates
    in flight."""
    memory = MemoryJobLedger(JOB_A)
    in_flight = await play(memory, calls)
    async with durable.process() as ledger:
        assert await play(await ledger.open_job(JOB_A), calls) == in_flight
    async with durable.process() as ledger:
        job = await ledger.open_job(JOB_A)
        for entry_id in ids:
            assert job.acknowledgements.acknowledged(entry_id) == (
                memory.acknowledgements.acknowledged(entry_id)
            ), entry_id
        assert job.acknowledgements.tally() == memory.acknowledgements.tally()
        assert job.in_flight_at_open() == in_flight
    return memory


async def test_what_is_read_back_equals_what_the_memory_ledger_holds(durable: Durable) -> None:
    """After the same batches, the state read back equals the memory ledger's: per ID and in the
    tally, through supersessions, partial answers, refusals and resends."""
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
        durable, calls, [*ids, *entry_ids(20, start=1000)]
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


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(calls=CALLS)
async def test_any_sequence_of_batches_reads_back_as_the_memory_ledger_holds_it(
    durable: Durable, calls: list[list[tuple[ItemUpdate, str]]]
) -> None:
    """For any sequence of batches and answers, the ledger reads back what the memory ledger
    holds."""
    async with durable.fresh() as storage:  # each example on storage of its own
        await assert_read_back_equals_memory(storage, calls, [ID_A, ID_B, ID_C])


async def test_a_superseded_failure_moves_the_tally(durable: Durable) -> None:
    """A failed item later acknowledged successful counts once, as successful, after reopening."""
    async with durable.process() as ledger, working(ledger, JOB_A) as job:
        tracker = new_tracker(job.acknowledgements)
        await acknowledge(
            job, tracker, [ItemUpdate.failed(ENTRY_1, reason="x", reason_type="tag_unknown")]
        )
        await acknowledge(job, tracker, [ItemUpdate.successful(ENTRY_1)])
    async with durable.process() as ledger:
        job = await ledger.open_job(JOB_A)
        tally = job.acknowledgements.tally()
        assert job.acknowledgements.acknowledged(ENTRY_1) is ItemStatus.SUCCESSFUL
    assert (tally.successful, tally.failed, dict(tally.failure_types)) == (1, 0, {})


async def test_delivering_the_final_event_deletes_the_jobs_batches(durable: Durable) -> None:
    """Once the final event is delivered the job's batch and acknowledgement rows go, its
    final_event row keeps the outcome, and another job's rows stay (R2, R11)."""
    updates = successful_updates(entry_ids(150))
    other_update = ItemUpdate.successful(ENTRY_1)
    request = JobEventRequest(JobEvent.COMPLETED, JOB_A)
    outcome = CompletionOutcome(JOB_A, JobEvent.COMPLETED, None, None, 100, 0, 0)
    async with (
        durable.process() as ledger,
        working(ledger, JOB_A) as job,
        working(ledger, JOB_B) as other,
    ):
        tracker = new_tracker(job.acknowledgements)
        await acknowledge(job, tracker, updates[:100])
        await send(job, tracker, updates[100:])  # never answered
        await acknowledge(other, new_tracker(other.acknowledgements), [other_update])
        await job.record_event_intent(request)
        await job.record_event_delivered(outcome)
        assert job.acknowledgements.forgotten
        assert job.acknowledgements.index == {}
        assert job.acknowledgements.tally().successful == 100
        assert job.in_flight_at_open() == {}
    assert await durable.count_rows("batch", JOB_A) == 0
    assert await durable.query("SELECT job_id FROM {s}batch") == [(JOB_B,)]
    assert await durable.count_rows("acknowledgement") == 1
    ((outcome_blob,),) = await durable.query(
        "SELECT outcome FROM {s}final_event WHERE job_id = $1", JOB_A
    )
    assert outcome_blob is not None
    async with durable.process() as ledger:
        job = await ledger.open_job(JOB_A)
        record = job.final_event()
        assert record is not None
        assert record.outcome == outcome
        assert job.acknowledgements.forgotten
        assert job.acknowledgements.index == {}
        assert job.in_flight_at_open() == {}
        other = await ledger.open_job(JOB_B)
        assert other.acknowledgements.acknowledged(ENTRY_1) is ItemStatus.SUCCESSFUL


async def test_two_jobs_share_one_store_without_mixing(durable: Durable) -> None:
    """Records of one job never show up in another's."""
    async with (
        durable.process() as ledger,
        working(ledger, JOB_A) as job_a,
        working(ledger, JOB_B) as job_b,
    ):
        await acknowledge(
            job_a, new_tracker(job_a.acknowledgements), [ItemUpdate.successful(ENTRY_1)]
        )
        await send(job_b, new_tracker(job_b.acknowledgements), [ItemUpdate.successful(ENTRY_2)])
    async with durable.process() as ledger:
        job_a, job_b = await ledger.open_job(JOB_A), await ledger.open_job(JOB_B)
        assert job_a.acknowledgements.acknowledged(ENTRY_1) is ItemStatus.SUCCESSFUL
        assert job_b.acknowledgements.acknowledged(ENTRY_1) is None
        assert job_a.acknowledgements.tally().successful == 1
        assert job_b.acknowledgements.tally().successful == 0
        assert job_a.in_flight_at_open() == {}
        assert set(job_b.in_flight_at_open()) == {ENTRY_2}
        assert await ledger.open_job(JOB_A) is job_a


# -- a JobRun resuming from the ledger -----------------------------------------------------------


async def test_a_new_process_skips_what_was_acknowledged_and_completes_once(
    fake: FakePleo, durable: Durable
) -> None:
    """A second client on the same storage sends only the rest; a third finds the event
    delivered and says so (already_delivered), sending nothing."""
    job = fake.create_job(items=300)
    updates = mixed_updates(job)
    async with durable.process() as ledger, client(fake) as pleo:
        await pleo.job(job.id, ledger=ledger).update(updates[:200])
    async with durable.process() as ledger, client(fake) as pleo:
        run = pleo.job(job.id, ledger=ledger)
        report = await run.update(updates)
        outcome = await run.complete()
    assert report.skipped == {u.accounting_entry_id for u in updates[:200]}
    assert set(report.acknowledged) == {u.accounting_entry_id for u in updates[200:]}
    assert outcome.event is JobEvent.COMPLETED_WITH_ERRORS
    assert (outcome.successful, outcome.failed) == (270, 30)
    assert not outcome.already_delivered
    requests = len(fake.journal.requests)
    async with durable.process() as ledger, client(fake) as pleo:
        run = pleo.job(job.id, ledger=ledger)
        assert await run.complete() == attrs.evolve(outcome, already_delivered=True)
        with pytest.raises(JobFinished):
            await run.update(updates)
    assert len(fake.journal.requests) == requests
    assert fake.journal.resent_after_ack() == {}


async def test_process_job_on_a_job_another_run_closed_says_it_sent_nothing(
    fake: FakePleo, durable: Durable
) -> None:
    """A replica that takes up a job another replica closed meanwhile gets the recorded outcome
    marked already_delivered, with no request, so it does not report the close as its own."""
    job = fake.create_job(items=20, status="pending")
    results = {update.accounting_entry_id: update for update in mixed_updates(job)}

    async def handler(item: ExportItem) -> ItemUpdate:
        return results[item.accounting_entry_id]

    async with durable.process() as ledger, client(fake) as pleo:
        closing = await pleo.process_job(job.id, handler, ledger=ledger)
    assert closing is not None
    assert not closing.already_delivered
    requests = len(fake.journal.requests)
    async with durable.process() as ledger, client(fake) as pleo:
        again = await pleo.process_job(job.id, handler, ledger=ledger)
    assert again == attrs.evolve(closing, already_delivered=True)
    assert len(fake.journal.requests) == requests
    assert len(fake.journal.final_events_applied(job.id)) == 1


async def test_resume_reconciles_batches_in_flight_at_the_crash(
    fake: FakePleo, durable: Durable
) -> None:
    """Updates Pleo committed while the ledger still shows them in flight are not sent again."""
    job = fake.create_job(items=150)
    updates = successful_updates(job.item_ids)
    async with durable.process() as ledger, working(ledger, job.id) as job_ledger:
        await send(job_ledger, new_tracker(job_ledger.acknowledgements), updates[:100])
    # The crashed process's batch landed: Pleo acknowledged it, the ledger never heard.
    async with client(fake) as pleo:
        await pleo.job(job.id).update(updates[:100])
    async with durable.process() as ledger, client(fake) as pleo:
        report = await pleo.job(job.id, ledger=ledger).update(updates)
    assert report.skipped == {u.accounting_entry_id for u in updates[:100]}
    assert len(report.acknowledged) == 50
    assert fake.journal.resent_after_ack() == {}


async def test_without_reconciliation_in_flight_updates_are_sent_again(
    fake: FakePleo, durable: Durable
) -> None:
    """reconcile_on_resume=False skips the read: in-flight updates are simply sent again."""
    job = fake.create_job(items=10)
    updates = successful_updates(job.item_ids)
    async with durable.process() as ledger, working(ledger, job.id) as job_ledger:
        await send(job_ledger, new_tracker(job_ledger.acknowledgements), updates)
    async with durable.process() as ledger, client(fake) as pleo:
        report = await pleo.job(job.id, ledger=ledger, reconcile_on_resume=False).update(updates)
    assert len(report.acknowledged) == 10
    assert fake.journal.count(method="GET") == 0


async def test_a_final_event_in_flight_at_the_crash_is_checked_before_anything_is_sent(
    fake: FakePleo, durable: Durable
) -> None:
    """If the ledger holds only the intent of the final event, the job is read first: when the
    event landed, update() raises JobFinished and complete() returns, both sending nothing."""
    job = fake.create_job(items=5)
    updates = successful_updates(job.item_ids)
    async with durable.process() as ledger, client(fake) as pleo:
        await pleo.job(job.id, ledger=ledger).update(updates)
        async with working(ledger, job.id) as job_ledger:
            await job_ledger.record_event_intent(JobEventRequest(JobEvent.COMPLETED, job.id))
    async with client(fake) as pleo:  # the event lands, as if sent just before the crash
        await pleo.job(job.id).complete(event=JobEvent.COMPLETED)
    sent = len(fake.journal.requests)
    async with durable.process() as ledger, client(fake) as pleo:
        run = pleo.job(job.id, ledger=ledger)
        with pytest.raises(JobFinished):
            await run.update(updates)
        outcome = await run.complete()
    assert outcome.already_delivered
    assert outcome.successful == 5
    assert [entry.method for entry in fake.journal.requests[sent:]] == ["GET"]
    assert len(fake.journal.final_events_applied(job.id)) == 1


async def test_reconcile_recovers_an_answer_lost_in_this_process(
    fake: FakePleo, durable: Durable
) -> None:
    """reconcile() marks as acknowledged what landed although its answer never arrived."""
    fake.faults = Faults(lost_response=FaultSpec(probability=1.0))
    job = fake.create_job(items=20)
    updates = successful_updates(job.item_ids)
    retry = RetryPolicy(max_attempts=2, initial_delay=0.01)
    async with durable.process() as ledger, client(fake, retry=retry) as pleo:
        run = pleo.job(job.id, ledger=ledger)
        with pytest.raises(Exception):  # noqa: B017, PT011  (TransportError, checked below)
            await run.update(updates)
        fake.faults = Faults()
        assert await run.reconcile() == 20
        outcome = await run.complete()
    assert outcome.successful == 20
    assert fake.journal.count(method="PUT") == 2
