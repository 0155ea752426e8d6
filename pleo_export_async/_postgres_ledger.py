"""PostgresLedger: the ledger shared by every worker on one PostgreSQL database, with job leases
(rules R4, R11, R13 across processes and machines, and R18).

The rows are those of `SqliteLedger` (see `_durable_rows`; the tables and statements are in
`_postgres_schema`): a batch row committed before the batch is
sent, an acknowledgement row once Pleo's answer is read, the final event's row before the event
is sent and again once it is delivered. What PostgreSQL adds is who may write them.

A worker works a job only while it holds the job's lease: a row in `lease`, taken when it is free
(released, or expired by the database's clock) with `INSERT ... ON CONFLICT DO UPDATE ... WHERE
expires_at <= now()`, which PostgreSQL serialises on the row. Each taking adds one to the row's
`fence`. The rows that decide what gets sent (a batch about to go out, the final event's intent)
are written only if the lease row still names this worker and this fence, under a share lock on
it (`FOR SHARE`), so no other worker can take the lease while such a write commits. The intent
row is therefore written by one worker at a time, and the JobRun reads the job at Pleo before it
writes another: one final event per job, whichever workers die when.

The lease is renewed in the background every third of its lifetime. A worker measures its lease
on its own clock from before each renewal was sent, which is never later than the database's,
and sends nothing (`sending_guard`) unless the lease outlasts the request with room to spare: a
worker cut off from the database stops sending before its lease can expire, and so before any
other worker can take the job.

A worker that takes a lease whose fence is not one more than the one it last held knows another
worker wrote the job in between: it reads the job's rows again, and the JobRun resumes from them
as after a crash (R13), reconciling with Pleo whatever that worker had in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import random
import re
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from . import _codec
from ._checks import is_int, is_number
from ._company_turns import CompanyBusy
from ._core._acknowledgements import Acknowledgements
from ._core._batches import Batch
from ._durable_rows import (
    UNREADABLE,
    JobRecords,
    acknowledged_text,
    read_final_event,
    read_job,
    settle_in_flight,
)
from ._errors import InvalidInput, JobLeased, LeaseLost, LedgerError
from ._ledger import FinalEventRecord
from ._models import ItemUpdate, JobEventRequest
from ._postgres_schema import APPLICATION, SCHEMA_LOCK, SCHEMA_NAME, SCHEMA_VERSION, SQL, TABLES
from ._report import CompletionOutcome

if TYPE_CHECKING:
    import asyncpg

logger = logging.getLogger("pleo_export_async")

#: Room a lease must have left beyond a request's timeout before the request may go out: for the
#: clocks' rates, and for the answer to be read once the request's time is up (at most a tenth
#: of the lease's lifetime).
GUARD_MARGIN = 2.0
#: Waiting for a lease: the first poll of the lease row, and the longest time between two polls
#: (a release also wakes the waiters at once, through LISTEN/NOTIFY).
_FIRST_POLL = 0.05
_LONGEST_POLL = 1.0


def _asyncpg() -> ModuleType:
    try:
        import asyncpg
    except ImportError as missing:
        raise ImportError(
            "PostgresLedger needs the postgres extra: pip install 'pleo-export-async[postgres]'"
        ) from missing
    return asyncpg


class PostgresJobLedger:
    """One job's records in a `PostgresLedger`: served from memory, written through to the
    database before use, and worked by this worker only while it holds the job's lease."""

    commit_kind: ClassVar[str | None] = "postgres"

    def __init__(self, ledger: PostgresLedger, job_id: str) -> None:
        self._ledger = ledger
        self._job_id = job_id
        self._acknowledgements = Acknowledgements()
        self._final_event: FinalEventRecord | None = None
        self._in_flight_at_open: dict[str, ItemUpdate] = {}
        self._epoch = 0
        self._local_turn = asyncio.Lock()  # the JobRuns of this process take turns first
        #: The fence the records in memory are current with: they were read under it, or this
        #: worker wrote them under it. -1 when they were read while another worker held the job.
        self._known_fence = -1
        self.fence: int | None = None  # of the lease while this worker holds it
        self.valid_until = 0.0  # loop time before which the lease is surely this worker's
        self.lost: str | None = None  # why the lease held now was lost
        self.renewing = asyncio.Lock()
        self.renewal: asyncio.Task[None] | None = None
        #: Writes of acknowledgements that the worker did not wait for (`record_acknowledged`).
        self._acknowledging: set[asyncio.Future[None]] = set()
        #: Why one of them did not land: raised once, by the job's next write or the end of the
        #: turn. This worker's memory still knows what Pleo acknowledged, so it resends nothing;
        #: in the database that batch stays in flight, for a worker resuming the job to
        #: reconcile with Pleo (as after a crash).
        self._unrecorded: LedgerError | None = None

    def __repr__(self) -> str:
        held = "held" if self.fence is not None else "not held"
        return f"PostgresJobLedger({self._job_id!r}, {held}, {self._acknowledgements!r})"

    @property
    def job_id(self) -> str:
        return self._job_id

    @property
    def lease_key(self) -> str:
        return self._job_id

    @property
    def what(self) -> str:
        return f"job {self._job_id}"

    @property
    def acknowledgements(self) -> Acknowledgements:
        return self._acknowledgements

    @property
    def epoch(self) -> int:
        return self._epoch

    def turn(self, *, wait: bool = True) -> _LeaseTurn:
        if not wait and self._local_turn.locked():
            raise JobLeased(self._job_id, "another JobRun of this process")
        return _LeaseTurn(self, wait)

    def final_event(self) -> FinalEventRecord | None:
        return self._final_event

    def in_flight_at_open(self) -> Mapping[str, ItemUpdate]:
        return self._in_flight_at_open

    def sending_guard(self, request_timeout: float) -> Callable[[], Awaitable[None]]:
        ledger = self._ledger
        needed = request_timeout + min(GUARD_MARGIN, ledger.lease_ttl / 10)
        if needed >= ledger.lease_ttl * 2 / 3:
            raise LedgerError(
                f"lease_ttl={ledger.lease_ttl:g}s is too short for requests that may take "
                f"{request_timeout:g}s: give PostgresLedger a lease_ttl above "
                f"{1.5 * needed:g}s, or the client a shorter timeout"
            )

        return _LeaseGuard(self, needed)

    def _replace_records(self, records: JobRecords) -> None:
        self._acknowledgements.clear()
        records.replay_into(self._acknowledgements)
        self._in_flight_at_open = records.in_flight
        self._final_event = records.final_event

    def _lease_lost(self, detail: str) -> LeaseLost:
        self.lost = self.lost or detail
        return LeaseLost(self._job_id, self.lost)

    async def record_in_flight(self, batch: Batch, body: bytes) -> None:
        """Write the batch's row before it is sent, while this worker holds the lease. Raises
        `LeaseLost` if it does not, `LedgerError` if the write fails or an earlier
        acknowledgement of the job did not land."""
        self._raise_if_unrecorded()
        key = await self._ledger._fenced(self, "in_flight", body)
        batch.durable_key = key

    async def record_acknowledged(self, batch: Batch) -> None:
        """Hand the acknowledgement to the ledger's writer, and return without waiting for it:
        the worker sends its next batch meanwhile, a round trip less on each batch's way. The
        event's intent and the end of the turn wait for it; a crash before it lands leaves the
        batch in flight, which the next run reconciles with Pleo (R13). Raises `LedgerError` if
        an earlier acknowledgement of the job did not land."""
        # Not fenced: that Pleo acknowledged the batch is true whoever holds the lease now.
        assert batch.durable_key is not None, "a batch is recorded in flight before its answer"
        self._raise_if_unrecorded()
        written = self._ledger._acknowledgements.write(batch.durable_key, acknowledged_text(batch))
        self._acknowledging.add(written)
        written.add_done_callback(self._acknowledgement_written)
        settle_in_flight(self._in_flight_at_open, batch)

    def _acknowledgement_written(self, written: asyncio.Future[None]) -> None:
        if written in self._acknowledging:  # else already noted by _raise_if_unrecorded
            self._acknowledging.discard(written)
            self._note_unrecorded(written)

    def _note_unrecorded(self, written: asyncio.Future[None]) -> None:
        error = None if written.cancelled() else written.exception()
        if error is not None and self._unrecorded is None:
            self._unrecorded = (
                error
                if isinstance(error, LedgerError)
                else self._ledger._failure("cannot write the ledger (acknowledged)", error)
            )

    def _raise_if_unrecorded(self) -> None:
        # A write that has just failed is done at once, its callback runs a turn later.
        for written in [written for written in self._acknowledging if written.done()]:
            self._acknowledging.discard(written)
            self._note_unrecorded(written)
        unrecorded, self._unrecorded = self._unrecorded, None
        if unrecorded is not None:
            raise LedgerError(
                f"an acknowledgement of job {self._job_id} was not recorded ({unrecorded})"
            )

    async def acknowledgements_written(self) -> None:
        """Wait for the acknowledgements on their way (they go on if the waiter is cancelled).
        Raises `LedgerError` if one of them did not land."""
        if self._acknowledging:
            await asyncio.wait(list(self._acknowledging))
        self._raise_if_unrecorded()

    async def record_event_intent(self, request: JobEventRequest) -> None:
        # The acknowledgements land first (the intent's row may go on another connection), and
        # one that did not is told before the event rather than after.
        await self.acknowledgements_written()
        await self._ledger._fenced(self, "intent", _codec.encode(request))
        self._final_event = FinalEventRecord(request)

    async def record_event_delivered(self, outcome: CompletionOutcome) -> None:
        assert self._final_event is not None, "the intent is recorded before the event is sent"
        self._raise_if_unrecorded()
        await self._ledger._deliver(self._job_id, _codec.encode(outcome))
        self._final_event = FinalEventRecord(self._final_event.request, outcome)
        self._in_flight_at_open = {}
        self._acknowledgements.forget()


#: An acknowledgement handed to the writer: its batch's key, what it acknowledged, and the
#: future that says when it is written.
_Queued = tuple[object, str, "asyncio.Future[None]"]


class _AcknowledgementWriter:
    """Writes the acknowledgements of a ledger's jobs in groups, one statement on its way at a
    time: each takes every acknowledgement handed over while the one before was being written.
    When a worker's answers come back together, as they do under load, their acknowledgements
    cost the event loop one round trip instead of one each."""

    def __init__(self, ledger: PostgresLedger) -> None:
        self._ledger = ledger
        self._queued: list[_Queued] = []
        self._writing: asyncio.Task[None] | None = None

    def write(self, batch_key: object, acknowledged: str) -> asyncio.Future[None]:
        """Queue a batch's acknowledgement; the future is done once it is written, or raises
        `LedgerError` if it could not be."""
        loop = asyncio.get_running_loop()
        written: asyncio.Future[None] = loop.create_future()
        self._queued.append((batch_key, acknowledged, written))
        if self._writing is None:
            # In a context of its own: it writes for every job, not for the batch that woke it.
            self._writing = loop.create_task(
                self._write_queued(),
                name=f"acknowledgements of {self._ledger!r}",
                context=contextvars.Context(),
            )
        return written

    async def _write_queued(self) -> None:
        group: list[_Queued] = []
        try:
            while self._queued:
                group, self._queued = self._queued, []
                error = await self._insert(group)
                if error is not None and len(group) > 1:
                    # One bad row fails the statement: write them one by one, so that only
                    # its own job is told.
                    for row in group:
                        self._settle([row], await self._insert([row]))
                else:
                    self._settle(group, error)
                group = []
        finally:
            self._writing = None
            # Cancelled (the loop is closing): what was not written stays in flight, for the
            # next run to reconcile.
            for _, _, written in (*group, *self._queued):
                written.cancel()
            self._queued = []

    async def _insert(self, rows: list[_Queued]) -> LedgerError | None:
        try:
            await self._ledger._execute(
                "acknowledged", [key for key, _, _ in rows], [text for _, text, _ in rows]
            )
        except LedgerError as error:
            return error
        except Exception as error:  # not the driver's database errors: still the ledger's
            return self._ledger._failure("cannot write the ledger (acknowledged)", error)
        return None

    @staticmethod
    def _settle(rows: list[_Queued], error: LedgerError | None) -> None:
        for _, _, written in rows:
            if written.done():
                continue
            if error is None:
                written.set_result(None)
            else:
                written.set_exception(error)


async def _nothing_more_to_reset(connection: asyncpg.Connection) -> None:
    """The pool's reset, after asyncpg has rolled back any open transaction.

    Its default sends a reset query (unlock advisory locks, close cursors, UNLISTEN, RESET ALL)
    on every release: a round trip more per statement, a third of the ledger's. The pooled
    connections leave nothing for it to undo: LISTEN has a connection of its own, the advisory
    lock is a transaction's, and nothing SETs or opens a cursor."""


class _CompanyLease:
    """A company's turn (R19) as a lease row, `company:<id>`, beside the jobs' leases: taken,
    renewed and let go as a job's is, so it holds across every worker of the database."""

    def __init__(self, company_id: str) -> None:
        self.lease_key = f"company:{company_id}"
        self.what = f"company {company_id}"
        self.fence: int | None = None
        self.valid_until = 0.0
        self.lost: str | None = None
        self.renewing = asyncio.Lock()
        self.renewal: asyncio.Task[None] | None = None

    @property
    def held(self) -> bool:
        return (
            self.lost is None
            and self.fence is not None
            and asyncio.get_running_loop().time() < self.valid_until
        )


_Lease = PostgresJobLedger | _CompanyLease


class _LeaseGuard:
    """Awaited before each attempt of a request that sends for the job: raises `LeaseLost`
    unless the lease surely outlasts the request, renewing it first if it runs short.

    `at_the_wire()` asks again, synchronously, right before the request's body is written. A
    loop stalled after the guard passed (a blocking call, a starved CPU) may have let the lease
    run short, and another worker take the job: then the body is held back, and the guard,
    awaited again, renews the lease or raises."""

    def __init__(self, job: PostgresJobLedger, needed: float) -> None:
        self._job = job
        self._needed = needed

    async def __call__(self) -> None:
        await self._job._ledger._ensure_held(self._job, self._needed)

    def at_the_wire(self) -> bool:
        job = self._job
        return (
            job.lost is None
            and job.fence is not None
            and asyncio.get_running_loop().time() + self._needed <= job.valid_until
        )


class _LeaseTurn:
    """`async with job_ledger.turn():` this process's turn, then the job's lease."""

    def __init__(self, job: PostgresJobLedger, wait: bool) -> None:
        self._job = job
        self._wait = wait

    async def __aenter__(self) -> PostgresJobLedger:
        job = self._job
        await job._local_turn.acquire()
        try:
            await job._ledger._take(job, self._wait)
        except BaseException:
            job._local_turn.release()
            raise
        return job

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        job = self._job
        try:
            # The acknowledgements land before the lease goes: the next holder reads them.
            try:
                await job.acknowledgements_written()
            except LedgerError:
                if exc is None:
                    raise
            finally:
                await job._ledger._give_back(job)
        finally:
            job._local_turn.release()


class PostgresLedger:
    """A durable ledger on PostgreSQL (asyncpg), shared by every worker that uses the database.

        async with PostgresLedger("postgresql://exports@db/connector") as ledger:
            outcome = await client.process_job(job_id, handler, ledger=ledger)

    It keeps SqliteLedger's promises across processes and machines: no worker resends an update
    another got acknowledged, and a job gets one final event. A worker works a job only while it
    holds the job's lease; the others wait for it (or, with `wait=False`, raise `JobLeased`).
    The lease is renewed in the background and expires `lease_ttl` seconds after the worker
    stops renewing it (killed, or cut off from the database); another worker then resumes the
    job from the ledger. A worker that lost its lease sends nothing more for the job: the call
    raises `LeaseLost`.

    The tables live in the database schema `schema` (default `pleo_export`), created on first
    use. A schema holding other tables, or the tables of another version, raises `LedgerError`
    and is left as it was. `dsn` is anything asyncpg accepts; its password never appears in a
    repr, log or error. Needs the `postgres` extra.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "pleo_export",
        lease_ttl: float = 60.0,
        max_connections: int = 10,
    ) -> None:
        self._asyncpg = _asyncpg()
        if not isinstance(dsn, str) or not dsn:
            raise InvalidInput("dsn", "<redacted>", "must be a PostgreSQL connection string")
        if not isinstance(schema, str) or not SCHEMA_NAME.fullmatch(schema):
            raise InvalidInput(
                "schema", schema, "must be a lower-case SQL name (letters, digits, underscores)"
            )
        if not is_number(lease_ttl) or not 3 <= lease_ttl <= 3600:
            raise InvalidInput("lease_ttl", lease_ttl, "must be between 3 and 3600 seconds")
        if not is_int(max_connections):
            raise InvalidInput("max_connections", max_connections, "must be an int")
        if max_connections < 2:
            raise InvalidInput("max_connections", max_connections, "must be at least 2")
        self._dsn = dsn
        self.schema = schema
        self.lease_ttl = float(lease_ttl)
        self._max_connections = max_connections
        #: Names this worker in the lease rows, and to the workers that wait for it.
        self.holder = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self._sql = {name: sql.format(s=schema) for name, sql in SQL.items()}
        self._database_errors: tuple[type[BaseException], ...] = (
            self._asyncpg.PostgresError,
            self._asyncpg.InterfaceError,
            OSError,
            TimeoutError,
        )
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._released: dict[str, asyncio.Event] = {}  # job ID -> set when its lease is let go
        self._jobs: dict[str, PostgresJobLedger] = {}
        self._acknowledgements = _AcknowledgementWriter(self)
        self._open_lock = asyncio.Lock()
        self._connect_lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresLedger(schema={self.schema!r}, holder={self.holder!r})"

    async def __aenter__(self) -> PostgresLedger:
        """Connect, and create the schema's tables on first use.

        Raises `LedgerError` when the database cannot be reached (the message never shows the
        DSN's password), or its schema holds other tables or another version's.
        """
        await self._connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def open_job(self, job_id: str) -> PostgresJobLedger:
        """The job's records, read from the database the first time (JobRuns call this); the
        lease is taken later, by the job's turn.

        Raises `LedgerError` when the database cannot be reached or the ledger is closed.
        """
        async with self._open_lock:
            job = self._jobs.get(job_id)
            if job is None:
                await self._connect()
                job = PostgresJobLedger(self, job_id)
                fence, held, records = await self._read_job(job_id)
                job._replace_records(records)
                # Read while another worker held the job: it may write more before this one
                # takes the lease, so the next taking reads the job again.
                job._known_fence = -1 if held else fence
                self._jobs[job_id] = job
            return job

    async def ping(self) -> None:
        """Ask the database for an answer (a service's readiness probe).

        Raises `LedgerError` when it gives none within 5 s."""
        try:
            await self._connect()
            await self._pool_or_raise().fetchval("SELECT 1", timeout=5)
        except self._database_errors as error:
            raise self._failure("the database does not answer", error) from None

    async def close(self) -> None:
        """Let go of the leases this worker holds, and close the connections. Raises nothing:
        a lease it cannot give back expires by itself."""
        self._closed = True
        for job in list(self._jobs.values()):
            try:
                await job.acknowledgements_written()
            except LedgerError as error:
                logger.warning("ledger: closed with %s; reconciled with Pleo on resuming", error)
            if job.fence is not None:
                await self._give_back(job)
        if self._listener is not None:
            with contextlib.suppress(*self._database_errors):
                await self._listener.close(timeout=5)
            self._listener = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except self._database_errors:  # TimeoutError among them
                pool.terminate()

    # -- connecting and the schema ------------------------------------------------------------

    async def _connect(self) -> None:
        async with self._connect_lock:
            if self._pool is None:
                await self._open_pool()

    async def _open_pool(self) -> None:
        if self._closed:
            raise LedgerError(f"{self!r} is closed")
        try:
            pool = await self._asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._max_connections,
                command_timeout=30,
                reset=_nothing_more_to_reset,
            )
        except self._database_errors as error:
            raise self._failure("cannot connect to the ledger's database", error) from None
        except ValueError:
            # asyncpg's parse errors quote the piece of the DSN they choke on, which may be part
            # of the password: say what to check, never what it read.
            raise LedgerError(
                "cannot parse the ledger's DSN; percent-encode characters such as '?', '/', '@'"
                " and ':' in the user name and password"
            ) from None
        try:
            async with pool.acquire() as connection, connection.transaction():
                await self._check_schema(connection)
        except BaseException:
            pool.terminate()
            raise
        self._pool = pool
        await self._listen()

    async def _check_schema(self, connection: asyncpg.Connection) -> None:
        """Create the tables, or make sure they are this version's, under an advisory lock so
        that workers starting at once do it one at a time."""
        schema = self.schema
        try:
            await connection.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))", SCHEMA_LOCK, schema
            )
            tables = {
                row["tablename"]
                for row in await connection.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = $1", schema
                )
            }
            if not tables:
                await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                await connection.execute(TABLES.format(s=schema))
                await connection.execute(
                    f"INSERT INTO {schema}.meta (application, schema_version) VALUES ($1, $2)",
                    APPLICATION,
                    SCHEMA_VERSION,
                )
                return
            if "meta" not in tables:
                raise LedgerError(
                    f"database schema {schema} holds tables that are not a pleo_export_async "
                    "ledger; give PostgresLedger another schema="
                )
            row = await connection.fetchrow(
                f"SELECT application, schema_version FROM {schema}.meta"
            )
        except LedgerError:
            raise
        except self._database_errors as error:
            raise self._failure(f"cannot set up ledger schema {schema}", error) from None
        if row is None or row["application"] != APPLICATION:
            raise LedgerError(f"database schema {schema} is not a pleo_export_async ledger")
        if row["schema_version"] != SCHEMA_VERSION:
            raise LedgerError(
                f"ledger schema {schema} has version {row['schema_version']}; this version of "
                f"pleo_export_async reads version {SCHEMA_VERSION} and leaves it untouched"
            )

    async def _listen(self) -> None:
        """Be told at once when a lease is let go; without it, waiters still poll."""
        try:
            self._listener = await self._asyncpg.connect(self._dsn)
            await self._listener.add_listener(self._channel, self._on_released)
        except self._database_errors as error:
            logger.warning("ledger: cannot listen for released leases: %s", self._say(error))
            self._listener = None

    @property
    def _channel(self) -> str:
        return f"{self.schema}.lease_released"

    def _on_released(self, connection: object, pid: int, channel: str, job_id: object) -> None:
        event = self._released.get(str(job_id))
        if event is not None:
            event.set()

    # -- leases --------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def company_turn(self, company_id: str) -> AsyncIterator[_CompanyLease]:
        """The company's turn at its jobs (R19), held by one worker of the database at a time;
        raises `CompanyBusy` at once if another holds it. Renewed in the background; `held`
        turns False once it may have run out."""
        await self._connect()
        lease = _CompanyLease(company_id)
        loop = asyncio.get_running_loop()
        asked_at = loop.time()
        fence = await self._value("take", lease.lease_key, self.holder, self.lease_ttl)
        if fence is None:
            row = await self._holder_row(lease.lease_key, lease.what)
            raise CompanyBusy(company_id, "another worker" if row is None else row["holder"])
        try:
            lease.fence, lease.valid_until = fence, asked_at + self.lease_ttl
            lease.renewal = loop.create_task(self._keep_renewed(lease), name=f"lease {lease.what}")
            yield lease
        finally:
            await self._give_back(lease)

    async def _take(self, job: PostgresJobLedger, wait: bool) -> None:
        """Take the job's lease, waiting for it unless `wait` is false; read the job again if
        another worker held it since this one last did."""
        loop = asyncio.get_running_loop()
        job_id = job.job_id
        delay = _FIRST_POLL
        while True:
            asked_at = loop.time()
            fence = await self._value("take", job_id, self.holder, self.lease_ttl)
            if fence is not None:
                break
            if not wait:
                raise await self._leased(job_id)
            released = self._released.setdefault(job_id, asyncio.Event())
            released.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(released.wait(), delay * (0.5 + random.random()))
            delay = min(delay * 2, _LONGEST_POLL)
        job.fence, job.valid_until, job.lost = fence, asked_at + self.lease_ttl, None
        try:
            if fence != job._known_fence + 1:
                _, _, records = await self._read_job(job_id)
                job._replace_records(records)
                job._epoch += 1
            job._known_fence = fence
        except BaseException:
            await self._give_back(job)
            raise
        job.renewal = loop.create_task(self._keep_renewed(job), name=f"lease {job_id}")

    async def _holder_row(self, lease_key: str, what: str) -> asyncpg.Record | None:
        """Who holds the lease and until when; None if it was let go since it was asked for."""
        try:
            row: asyncpg.Record | None = await self._pool_or_raise().fetchrow(
                self._sql["holder"], lease_key
            )
        except self._database_errors as error:
            raise self._failure(f"cannot read the lease of {what}", error) from None
        return row

    async def _leased(self, job_id: str) -> JobLeased:
        row = await self._holder_row(job_id, f"job {job_id}")
        if row is None:  # let go between the two statements
            return JobLeased(job_id, "another worker")
        expires: datetime = row["expires_at"]
        return JobLeased(
            job_id, row["holder"], f"(its lease runs until {expires:%Y-%m-%dT%H:%M:%SZ})"
        )

    async def _keep_renewed(self, job: _Lease) -> None:
        interval = self.lease_ttl / 3
        loop = asyncio.get_running_loop()
        while job.lost is None:
            # After a failed renewal, try again soon: the lease still runs until valid_until.
            next_renewal = job.valid_until - 2 * interval
            await asyncio.sleep(max(min(1.0, interval), next_renewal - loop.time()))
            await self._renew(job)

    async def _renew(self, job: _Lease) -> None:
        """Push the lease's expiry out; mark it lost if it was taken, or once it may have
        expired without a renewal getting through."""
        async with job.renewing:
            fence = job.fence
            if fence is None or job.lost is not None:
                return
            loop = asyncio.get_running_loop()
            asked_at = loop.time()
            try:
                renewed = await self._value(
                    "renew",
                    job.lease_key,
                    self.holder,
                    fence,
                    self.lease_ttl,
                    within=self.lease_ttl / 6,
                )
            except LedgerError as error:
                if loop.time() >= job.valid_until:
                    job.lost = f"it could not be renewed: {error}"
                else:
                    logger.warning("ledger: lease renewal failed, retrying: %s", error)
                return
            if renewed is None:
                job.lost = "it expired and another worker may have taken the job"
            else:
                job.valid_until = asked_at + self.lease_ttl

    async def _ensure_held(self, job: PostgresJobLedger, seconds: float) -> None:
        """Raise LeaseLost unless the lease surely lasts `seconds` more (renewing it if needed)."""
        if job.lost is not None:
            raise job._lease_lost(job.lost)
        if job.fence is None:
            raise job._lease_lost("this worker does not hold the job's lease")
        loop = asyncio.get_running_loop()
        if loop.time() + seconds <= job.valid_until:
            return
        await self._renew(job)
        if job.lost is not None:
            raise job._lease_lost(job.lost)
        if loop.time() + seconds > job.valid_until:
            raise job._lease_lost("it could not be renewed in time")

    async def _give_back(self, job: _Lease) -> None:
        """Let the lease go (its row stays, so the fence keeps counting); if the database cannot
        be told, the lease expires by itself."""
        renewal, job.renewal = job.renewal, None
        if renewal is not None:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
        fence, job.fence = job.fence, None
        if fence is None or job.lost is not None or self._pool is None:
            return
        try:
            async with self._pool.acquire(timeout=5) as connection:
                await connection.execute(
                    self._sql["release"], job.lease_key, self.holder, fence, self._channel
                )
        except self._database_errors as error:
            logger.warning(
                "ledger: could not let go of the lease of %s (it expires by itself): %s",
                job.what,
                self._say(error),
            )

    # -- reads and writes ----------------------------------------------------------------------

    async def _read_job(self, job_id: str) -> tuple[int, bool, JobRecords]:
        """The job's records, with its lease's fence and whether the lease was held, as of one
        snapshot of the database."""
        pool = self._pool_or_raise()
        try:
            async with (
                pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                lease = await connection.fetchrow(self._sql["read_lease"], job_id)
                event = await connection.fetchrow(self._sql["read_event"], job_id)
                rows = await connection.fetch(self._sql["read_batches"], job_id)
        except self._database_errors as error:
            raise self._failure(f"job {job_id} cannot be read", error) from None
        try:
            final_event = None if event is None else read_final_event(*event)
            # Rebuilding a big job's batches is CPU work: off the event loop.
            records = await asyncio.to_thread(read_job, [tuple(row) for row in rows], final_event)
        except UNREADABLE as error:
            raise LedgerError(f"ledger: job {job_id} cannot be read: {error}") from None
        if lease is None:
            return 0, False, records
        return lease["fence"], lease["held"], records

    async def _fenced(self, job: PostgresJobLedger, statement: str, value: bytes) -> Any:
        """Write a row that decides what gets sent, only while this worker holds the lease."""
        if job.lost is not None or job.fence is None:
            raise job._lease_lost(job.lost or "this worker does not hold the job's lease")
        written = await self._value(statement, job.job_id, value, self.holder, job.fence)
        if written is None:
            raise job._lease_lost("it expired and another worker may have taken the job")
        return written

    async def _deliver(self, job_id: str, outcome: bytes) -> None:
        pool = self._pool_or_raise()
        try:
            async with pool.acquire() as connection, connection.transaction():
                await connection.execute(self._sql["delivered"], job_id, outcome)
                await connection.execute(self._sql["forget"], job_id)
        except self._database_errors as error:
            raise self._failure(
                f"cannot record the delivered event of job {job_id}", error
            ) from None

    async def _value(self, statement: str, *args: Any, within: float | None = None) -> Any:
        try:
            return await self._pool_or_raise().fetchval(self._sql[statement], *args, timeout=within)
        except self._database_errors as error:
            raise self._failure(f"cannot write the ledger ({statement})", error) from None

    async def _execute(self, statement: str, *args: Any) -> None:
        try:
            await self._pool_or_raise().execute(self._sql[statement], *args)
        except self._database_errors as error:
            raise self._failure(f"cannot write the ledger ({statement})", error) from None

    def _pool_or_raise(self) -> asyncpg.Pool:
        if self._pool is None:
            raise LedgerError(f"{self!r} is {'closed' if self._closed else 'not open'}")
        return self._pool

    def _failure(self, what: str, error: BaseException) -> LedgerError:
        return LedgerError(f"{what}: {self._say(error)}")

    def _say(self, error: BaseException) -> str:
        """An error's text, without the connection string's password should it appear."""
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        password = _password_of(self._dsn)
        return text.replace(password, "<redacted>") if password else text


def _password_of(dsn: str) -> str | None:
    url = re.match(r"[a-z]+://[^:/@]*:([^@/]*)@", dsn)
    if url:
        return url.group(1) or None
    keyword = re.search(r"(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", dsn)
    if keyword:
        return keyword.group(1).strip("'") or None
    return None
