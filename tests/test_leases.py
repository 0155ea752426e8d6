"""Job leases on a shared PostgresLedger (R18): one worker at a time works a job, the others
wait or are told `JobLeased`; a dead worker's lease expires and another resumes the job; a worker
that lost its lease sends nothing more; every job gets one final event.

Each `PostgresLedger` instance is a worker: it has a holder name of its own, as a process does.
The tests at the end run real worker processes, and SIGKILL them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from crash_child import crash_updates
from helpers import client_for, successful_updates, wait_until
from pleo_export_async import (
    ExportItem,
    ItemUpdate,
    JobFinished,
    JobLeased,
    LeaseLost,
    LedgerError,
    PleoExportClient,
    PostgresLedger,
    TransportError,
)
from pleo_export_async.testing import FakePleo, Faults, FaultSpec

pytestmark = pytest.mark.usefixtures("instant")

WORKER = Path(__file__).with_name("lease_worker.py")
#: Short leases, so that a dead worker's job passes on within seconds; the clients' timeout
#: must leave the lease room to spare (PostgresLedger refuses otherwise).
LEASE_TTL = 3.0
TIMEOUT = 0.5


async def book(item: ExportItem) -> ItemUpdate:
    """A connector's handler that books every item."""
    return ItemUpdate.successful(item.accounting_entry_id)


@contextlib.asynccontextmanager
async def worker(
    fake: FakePleo, dsn: str, schema: str, **client_options: object
) -> AsyncIterator[tuple[PostgresLedger, PleoExportClient]]:
    """One worker: a ledger of its own on the shared schema, and a client."""
    async with (
        PostgresLedger(dsn, schema=schema, lease_ttl=LEASE_TTL) as ledger,
        client_for(fake, timeout=TIMEOUT, **client_options) as client,
    ):
        yield ledger, client


async def expire_lease(dsn: str, schema: str, job_id: str) -> None:
    """Make the job's lease expire now, as the database's clock would after a partition."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            f"UPDATE {schema}.lease SET expires_at = now() WHERE job_id = $1", job_id
        )
    finally:
        await connection.close()


async def lease_holder_pid(dsn: str, schema: str, job_id: str) -> int | None:
    """The process ID of the worker holding the job's lease now, if one does."""
    connection = await asyncpg.connect(dsn)
    try:
        holder = await connection.fetchval(
            f"SELECT holder FROM {schema}.lease WHERE job_id = $1 AND expires_at > now()", job_id
        )
    finally:
        await connection.close()
    return None if holder is None else int(holder.split("/")[1])


def put_ids(fake: FakePleo, job_id: str) -> list[str]:
    return [
        item["accountingEntryId"]
        for entry in fake.journal.puts(job_id)
        if isinstance(entry.body, list)
        for item in entry.body
    ]


async def test_a_second_worker_waits_until_the_first_lets_the_job_go(
    fake: FakePleo, postgres_dsn: str, postgres_schema: str
) -> None:
    """While one worker holds the job, another's update() sends nothing; once it is let go,
    the other takes it, skips what the first got acknowledged, and sends the rest."""
    job = fake.create_job(items=300)
    updates = successful_updates(job.item_ids)
    async with (
        worker(fake, postgres_dsn, postgres_schema) as (ledger_a, client_a),
        worker(fake, postgres_dsn, postgres_schema) as (ledger_b, client_b),
    ):
        first = client_a.job(job.id, ledger=ledger_a)
        second = client_b.job(job.id, ledger=ledger_b)
        async with first.hold():
            await first.update(updates[:200])
            waiting = asyncio.create_task(second.update(updates))
            await asyncio.sleep(LEASE_TTL)  # past a whole lease: the first renews it
            assert not waiting.done()
            assert len(put_ids(fake, job.id)) == 200
        report = await waiting
    assert len(report.skipped) == 200
    assert len(report.acknowledged) == 100
    assert sorted(put_ids(fake, job.id)) == sorted(job.item_ids)
    assert fake.journal.resent_after_ack(job.id) == {}


async def test_wait_false_raises_job_leased_at_once_naming_the_holder(
    fake: FakePleo, postgres_dsn: str, postgres_schema: str
) -> None:
    """With wait=False, a job held by another worker raises JobLeased naming that worker, and
    nothing is sent."""
    job = fake.create_job(items=10)
    async with (
        worker(fake, postgres_dsn, postgres_schema) as (ledger_a, client_a),
        worker(fake, postgres_dsn, postgres_schema) as (ledger_b, client_b),
        client_a.job(job.id, ledger=ledger_a).hold(),
    ):
        impatient = client_b.job(job.id, ledger=ledger_b, wait=False)
        with pytest.raises(JobLeased) as leased:
            await impatient.update(successful_updates(job.item_ids))
        with pytest.raises(JobLeased):
            await client_b.process_job(job.id, book, ledger=ledger_b, wait=False)
    assert leased.value.job_id == job.id
    assert leased.value.holder == ledger_a.holder
    assert ledger_a.holder in str(leased.value)
    assert fake.journal.puts(job.id) == []
    assert fake.journal.events(job.id) == []


async def test_a_dead_workers_lease_expires_and_another_resumes_the_job(
    fake: FakePleo, postgres_dsn: str, postgres_schema: str
) -> None:
    """A worker that stops renewing its lease mid-job (it died) loses the job after lease_ttl;
    the next worker resumes from the ledger, reconciles what was in flight, and resends
    nothing acknowledged."""
    job = fake.create_job(items=250)
    updates = successful_updates(job.item_ids)
    release = asyncio.Event()

    async def stalls_after_two_batches() -> AsyncIterator[ItemUpdate]:
        for n, update in enumerate(updates):
            if n == 200:
                await release.wait()
            yield update

    async with worker(fake, postgres_dsn, postgres_schema) as (ledger_a, client_a):
        dying = asyncio.create_task(client_a.job(job.id, ledger=ledger_a).update(
            stalls_after_two_batches()
        ))  # fmt: skip
        await wait_until(lambda: len(fake.journal.puts(job.id)) == 2)
        job_ledger = await ledger_a.open_job(job.id)
        assert job_ledger.renewal is not None
        job_ledger.renewal.cancel()  # the worker dies: nothing renews its lease any more
        async with worker(fake, postgres_dsn, postgres_schema) as (ledger_b, client_b):
            survivor = client_b.job(job.id, ledger=ledger_b)
            report = await asyncio.wait_for(survivor.update(updates), 6 * LEASE_TTL)
            outcome = await survivor.complete()
        dying.cancel()
        with contextlib.suppress(asyncio.CancelledError, LeaseLost, LedgerError):
            await dying
    assert len(report.skipped) == 200
    assert outcome.event.value == "completed"
    assert fake.journal.resent_after_ack(job.id) == {}
    assert len(fake.journal.final_events_applied(job.id)) == 1


async def test_a_worker_that_lost_its_lease_sends_nothing_more(
    fake: FakePleo, postgres_dsn: str, postgres_schema: str
) -> None:
    """When a worker's lease expired and another took the job, the first one's next batch is
    refused by the ledger with LeaseLost before it is sent, and so is its final event."""
    job = fake.create_job(items=200)
    updates = successful_updates(job.item_ids)
    async with (
        worker(fake, postgres_dsn, postgres_schema) as (ledger_a, client_a),
        worker(fake, postgres_dsn, postgres_schema) as (ledger_b, client_b),
    ):
        partitioned = client_a.job(job.id, ledger=ledger_a)
        async with partitioned.hold():
            await partitioned.update(updates[:100])
            await expire_lease(postgres_dsn, postgres_schema, job.id)
            taker = client_b.job(job.id, ledger=ledger_b)
            await taker.update(updates)  # takes the expired lease
            with pytest.raises(LeaseLost) as lost:
                await partitioned.update(updates[100:])
            with pytest.raises(LeaseLost):
                await partitioned.complete()
            puts_after_loss = len(fake.journal.puts(job.id))
        outcome = await taker.complete()
    assert lost.value.job_id == job.id
    assert puts_after_loss == 2  # the first worker's batch and the taker's
    assert outcome.event.value == "completed"
    assert len(fake.journal.events(job.id)) == 1
    assert fake.journal.resent_after_ack(job.id) == {}


async def test_a_worker_picks_up_what_another_did_between_its_calls(
    fake: FakePleo, postgres_dsn: str, postgres_schema: str
) -> None:
    """A JobRun whose updates another worker got acknowledged meanwhile completes with the
    counts of both, without raising IncompleteJob for what the other settled."""
    job = fake.create_job(items=200)
    updates = [
        ItemUpdate.failed(i, reason="Tag unknown", reason_type="tag_unknown")
        if n % 4 == 0
        else ItemUpdate.successful(i)
        for n, i in enumerate(job.item_ids)
    ]
    async with (
        worker(fake, postgres_dsn, postgres_schema) as (ledger_a, client_a),
        worker(fake, postgres_dsn, postgres_schema) as (ledger_b, client_b),
    ):
        first = client_a.job(job.id, ledger=ledger_a)
        fake.faults = Faults(lost_response=FaultSpec(1.0))
        with pytest.raises(TransportError) as lost:  # every answer lost: nothing acknowledged
            await first.update(updates[:100])
        assert lost.value.report is not None
        assert len(lost.value.report.unacknowledged) == 100
        fake.faults = Faults()
        other = client_b.job(job.id, ledger=ledger_b)
        await other.update(updates)
        outcome = await first.complete()
    assert outcome.event.value == "completed_with_errors"
    assert (outcome.successful, outcome.failed) == (150, 50)
    assert len(fake.journal.events(job.id)) == 1
    assert fake.journal.resent_after_ack(job.id) == {}


async def test_workers_completing_at_once_send_one_final_event(
    fake: FakePleo, postgres_dsn: str, postgres_schema: str
) -> None:
    """Three workers that update and complete the same job at the same moment send one final
    event between them, and each returns its outcome."""
    job = fake.create_job(items=500)
    updates = successful_updates(job.item_ids)

    async def work() -> str:
        async with worker(fake, postgres_dsn, postgres_schema) as (ledger, client):
            run = client.job(job.id, ledger=ledger)
            with contextlib.suppress(JobFinished):  # another worker closed it first
                await run.update(updates)
            return (await run.complete()).event.value

    events = await asyncio.gather(work(), work(), work())
    assert list(events) == ["completed"] * 3
    assert len(fake.journal.events(job.id)) == 1
    assert fake.journal.resent_after_ack(job.id) == {}


async def test_a_lease_too_short_for_the_clients_timeout_is_refused_before_any_request(
    fake: FakePleo, postgres_dsn: str, postgres_schema: str
) -> None:
    """A client whose requests may outlast the lease gets a LedgerError naming lease_ttl, and
    nothing is sent."""
    job = fake.create_job(items=5)
    async with (
        PostgresLedger(postgres_dsn, schema=postgres_schema, lease_ttl=LEASE_TTL) as ledger,
        client_for(fake, timeout=30) as client,
    ):
        with pytest.raises(LedgerError, match="lease_ttl"):
            await client.job(job.id, ledger=ledger).update(successful_updates(job.item_ids))
    assert fake.journal.puts(job.id) == []


# -- a database connection cut mid-job ----------------------------------------------------------


class CuttableProxy:
    """A TCP proxy to PostgreSQL on loopback whose connections can all be cut at once; once cut,
    it refuses new ones."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.cut = False
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut_all(self) -> None:
        self.cut = True
        for writer in self._writers:
            writer.transport.abort()

    async def close(self) -> None:
        self.cut_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_a_worker_cut_off_from_the_database_sends_nothing_more_and_another_finishes(
    fake: FakePleo, postgres_dsn: str, postgres_schema: str
) -> None:
    """A worker whose database connections are cut mid-job sends no further batch and no final
    event; another worker takes the job once the lease expires and finishes it, resending
    nothing acknowledged."""
    job = fake.create_job(items=400)
    updates = successful_updates(job.item_ids)
    host_port = postgres_dsn.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    proxy = CuttableProxy(host, int(port))
    await proxy.start()
    proxied_dsn = postgres_dsn.replace(host_port, f"127.0.0.1:{proxy.port}")
    cut = asyncio.Event()

    async def cut_after_two_batches() -> AsyncIterator[ItemUpdate]:
        for n, update in enumerate(updates):
            if n == 200:
                await cut.wait()
            yield update

    try:
        async with worker(fake, proxied_dsn, postgres_schema) as (ledger_a, client_a):
            cut_off = asyncio.create_task(client_a.job(job.id, ledger=ledger_a).update(
                cut_after_two_batches()
            ))  # fmt: skip
            await wait_until(
                lambda: sum(e.answered_at is not None for e in fake.journal.puts(job.id)) == 2
            )
            await asyncio.sleep(0.1)  # their acknowledgements are written
            proxy.cut_all()
            cut.set()
            with pytest.raises(LedgerError) as stopped:
                await asyncio.wait_for(cut_off, 4 * LEASE_TTL)
            puts_of_the_cut_worker = len(fake.journal.puts(job.id))
            async with worker(fake, postgres_dsn, postgres_schema) as (ledger_b, client_b):
                survivor = client_b.job(job.id, ledger=ledger_b)
                report = await asyncio.wait_for(survivor.update(updates), 6 * LEASE_TTL)
                outcome = await survivor.complete()
    finally:
        await proxy.close()
    assert stopped.value.report is not None
    assert len(stopped.value.report.acknowledged) == 200
    assert puts_of_the_cut_worker == 2
    assert len(report.skipped) == 200
    assert outcome.event.value == "completed"
    assert len(fake.journal.events(job.id)) == 1
    assert fake.journal.resent_after_ack(job.id) == {}


# -- worker processes ---------------------------------------------------------------------------


@pytest.fixture
async def spawned() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """The worker processes a test starts; any still running at its end are killed."""
    processes: list[asyncio.subprocess.Process] = []
    yield processes
    for process in processes:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def start_worker(
    spawned: list[asyncio.subprocess.Process],
    fake: FakePleo,
    job_id: str,
    ids_file: Path,
    dsn: str,
    schema: str,
    start_file: Path,
) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        fake.base_url,
        fake.api_key,
        job_id,
        str(ids_file),
        dsn,
        schema,
        str(start_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    spawned.append(process)
    return process


async def create_tables(dsn: str, schema: str) -> None:
    async with PostgresLedger(dsn, schema=schema):
        pass


def still_at(fake: FakePleo, job_id: str, puts: int) -> bool:
    """The job is open and has had no PUT beyond the first `puts`."""
    return len(fake.journal.puts(job_id)) == puts and fake.job_status(job_id) == "in_progress"


async def working_holder(
    dsn: str, schema: str, fake: FakePleo, job_id: str, alive: set[int]
) -> int | None:
    """The process ID of the live worker holding the job once one does (a killed holder's lease
    outlives it until it expires); None if the job closed first."""
    async with asyncio.timeout(30):
        while fake.job_status(job_id) == "in_progress":
            holder = await lease_holder_pid(dsn, schema, job_id)
            if holder in alive:
                return holder
            await asyncio.sleep(0.02)
    return None


def assert_closed_once_with_every_update(fake: FakePleo, job_id: str, ids: list[str]) -> None:
    journal = fake.journal
    assert journal.resent_after_ack(job_id) == {}
    assert len(journal.final_events_applied(job_id)) == 1
    assert fake.job_status(job_id) == "completed_with_errors"
    for update in crash_updates(ids):
        item = fake.item(job_id, update.accounting_entry_id)
        assert item["status"] == update.status.value
        assert item.get("externalId") == update.external_id


FAULTS = Faults(
    latency=(0.001, 0.01), server_error=FaultSpec(0.05), rate_limit=FaultSpec(0.02),
    retry_after=0.05, lost_response=FaultSpec(0.05), partial_ack=FaultSpec(0.05),
)  # fmt: skip


def write_ids(path: Path, ids: list[str]) -> Path:
    path.write_text(json.dumps(ids))
    return path


async def test_three_worker_processes_at_once_close_the_job_once(
    postgres_dsn: str,
    postgres_schema: str,
    tmp_path: Path,
    spawned: list[asyncio.subprocess.Process],
) -> None:
    """Three worker processes that update and complete one 3,000-item job at the same moment,
    each with its own PostgresLedger on one database, under faults: nothing is resent after its
    acknowledgement, and exactly one final event is applied."""
    async with FakePleo(seed=15, faults=FAULTS) as fake:
        job = fake.create_job(items=3000)
        ids_file = write_ids(tmp_path / "ids.json", job.item_ids)
        start = tmp_path / "go"
        workers = [
            await start_worker(
                spawned, fake, job.id, ids_file, postgres_dsn, postgres_schema, start
            )
            for _ in range(3)
        ]
        start.touch()
        results = await asyncio.wait_for(
            asyncio.gather(*(process.communicate() for process in workers)), 120
        )
        for process, (stdout, stderr) in zip(workers, results, strict=True):
            assert process.returncode == 0, stderr.decode()[-3000:]
            assert stdout.decode().strip() == "completed_with_errors"
        assert_closed_once_with_every_update(fake, job.id, job.item_ids)


KILLS = 20


async def test_worker_processes_killed_at_random_close_the_job_once(
    postgres_dsn: str,
    postgres_schema: str,
    tmp_path: Path,
    spawned: list[asyncio.subprocess.Process],
) -> None:
    """Three worker processes per job, SIGKILLed at random moments and started again until the
    job is closed, over as many jobs as it takes to make 20 kills: each job gets every update
    once, nothing resent after its acknowledgement, and exactly one final event."""
    rng = random.Random(20261201)
    start = tmp_path / "go"
    start.touch()
    kills = holders_killed = jobs = 0
    failures: list[str] = []
    # Enough latency that a kill lands mid-job, not so much that a job outlasts many kills.
    faults = Faults(
        latency=(0.005, 0.03), server_error=FaultSpec(0.03), lost_response=FaultSpec(0.03)
    )
    await create_tables(postgres_dsn, postgres_schema)
    async with FakePleo(seed=16, faults=faults) as fake, asyncio.timeout(300):
        while kills < KILLS:
            job = fake.create_job(items=3000)
            jobs += 1
            ids_file = write_ids(tmp_path / f"ids-{jobs}.json", job.item_ids)
            running: list[asyncio.subprocess.Process] = []
            while fake.job_status(job.id) == "in_progress":
                for process in [p for p in running if p.returncode is not None]:
                    running.remove(process)
                    _, stderr = await process.communicate()
                    if process.returncode != 0:
                        failures.append(stderr.decode()[-2000:])
                while len(running) < 3:
                    running.append(await start_worker(
                        spawned, fake, job.id, ids_file, postgres_dsn, postgres_schema, start
                    ))  # fmt: skip
                # Kill while a worker holds the job, at a random moment of its work.
                holder = await working_holder(
                    postgres_dsn, postgres_schema, fake, job.id, {p.pid for p in running}
                )
                if holder is None:
                    continue  # closed meanwhile
                # Once it has sent something: a holder killed before its first request every
                # time (resuming takes it a moment) would leave the job where it is for ever.
                sent = len(fake.journal.puts(job.id))
                async with asyncio.timeout(30):
                    while still_at(fake, job.id, sent):  # noqa: ASYNC110  (the fake has no event)
                        await asyncio.sleep(0.01)
                await asyncio.sleep(rng.uniform(0.0, 0.4))
                alive = {p.pid: p for p in running if p.returncode is None}
                if alive and fake.job_status(job.id) == "in_progress":
                    # Two kills in three hit the holder, the one sending or writing the ledger;
                    # the third a waiter.
                    if holder in alive and kills % 3 != 2:
                        victim = alive[holder]
                        holders_killed += 1
                    else:
                        victim = rng.choice(list(alive.values()))
                    victim.send_signal(signal.SIGKILL)
                    await victim.wait()
                    running.remove(victim)
                    kills += 1
            for process in running:
                _, stderr = await process.communicate()
                if process.returncode != 0:
                    failures.append(stderr.decode()[-2000:])
            assert_closed_once_with_every_update(fake, job.id, job.item_ids)
    assert kills >= KILLS
    assert holders_killed >= KILLS // 2
    assert failures == [], f"{len(failures)} workers failed (jobs: {jobs})"
