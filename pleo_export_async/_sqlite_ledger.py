"""SqliteLedger: a job's acknowledgements and final event in a file, to resume after a crash (R13).

The file holds one row per batch. The row is committed before the batch is sent, holding the PUT
body as sent (the IDs and every field that reconciliation compares); once Pleo's answer is read,
the same row records which of its IDs were acknowledged. Opening a job replays its rows in order:
what was acknowledged is never sent again, and what was sent but never acknowledged is what a
crash may have left committed at Pleo without our knowing (`in_flight_at_open`). Once the job's
final event is delivered, its rows go and only the event and its outcome stay.

sqlite3 runs on one thread of the ledger's own, so the event loop never waits on the disk. WAL
journaling with synchronous=NORMAL makes every commit survive the process being killed; a power
cut may lose the last commits, which the JobRun's reconciliation with Pleo then recovers.

Writes are committed in groups: the writes queued while one transaction commits go together in
the next, and each waits until its own is committed. A commit and the thread hop around it cost
more than the insert itself, so concurrent batches share them instead of queueing for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

import attrs
import cattrs

from . import _codec
from ._core._batches import Batch, read_back
from ._errors import LedgerError, UnexpectedResponse
from ._ledger import FinalEventRecord, MemoryJobLedger
from ._models import ItemUpdate, JobEventRequest
from ._report import CompletionOutcome

T = TypeVar("T")

SCHEMA_VERSION = 2
#: `PRAGMA application_id`: marks the file as a pleo_export_async ledger ("PLEO").
APPLICATION_ID = 0x504C454F

_SCHEMA = """
CREATE TABLE batch (
    id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    updates BLOB NOT NULL
);
CREATE INDEX batch_by_job ON batch (job_id, id);
CREATE TABLE acknowledgement (
    batch_id INTEGER PRIMARY KEY,
    acknowledged TEXT NOT NULL
);
CREATE TABLE final_event (
    job_id TEXT PRIMARY KEY,
    request BLOB NOT NULL,
    outcome BLOB
);
"""
#: `acknowledgement.acknowledged` when Pleo acknowledged every ID of the batch; otherwise a JSON
#: array of the IDs it acknowledged. A batch without a row was never answered. The row is apart
#: from the batch's so that recording it writes a few bytes, not the batch's updates again.
_EVERY_ID = "*"

Statement = tuple[str, tuple[Any, ...]]


@attrs.frozen
class _Write:
    statements: Sequence[Statement]
    committed: asyncio.Future[None]


@attrs.frozen
class _JobRecords:
    """A job as read back from the file."""

    batches: list[Batch]
    in_flight: dict[str, ItemUpdate]
    final_event: FinalEventRecord | None


class SqliteJobLedger(MemoryJobLedger):
    """One job's records: served from memory, written through to the file before use."""

    def __init__(self, ledger: SqliteLedger, job_id: str) -> None:
        super().__init__(job_id)
        self._ledger = ledger
        self._in_flight_at_open: dict[str, ItemUpdate] = {}

    def _replay(self, records: _JobRecords) -> None:
        restore = self.acknowledgements.restore
        for batch in records.batches:
            restore(batch)
        self._in_flight_at_open = records.in_flight
        self._final_event = records.final_event
        if records.final_event is not None and records.final_event.outcome is not None:
            self.acknowledgements.forget()

    def in_flight_at_open(self) -> Mapping[str, ItemUpdate]:
        return self._in_flight_at_open

    async def record_in_flight(self, batch: Batch, body: bytes) -> None:
        key = batch.durable_key = self._ledger._new_key()
        await self._ledger._write(
            ("INSERT INTO batch (id, job_id, updates) VALUES (?, ?, ?)", (key, self.job_id, body))
        )

    async def record_acknowledged(self, batch: Batch) -> None:
        assert batch.durable_key is not None, "a batch is recorded in flight before its answer"
        acknowledged = (
            _EVERY_ID
            if batch.acknowledged_all
            else _codec.dumps(sorted(batch.acknowledged_some)).decode()
        )
        await self._ledger._write(
            (
                "INSERT INTO acknowledgement (batch_id, acknowledged) VALUES (?, ?)",
                (batch.durable_key, acknowledged),
            )
        )
        if self._in_flight_at_open:
            for entry_id in batch.acknowledged_ids():
                self._in_flight_at_open.pop(entry_id, None)

    async def record_event_intent(self, request: JobEventRequest) -> None:
        await self._ledger._write(
            (
                "INSERT OR REPLACE INTO final_event (job_id, request, outcome) VALUES (?, ?, NULL)",
                (self.job_id, _codec.encode(request)),
            )
        )
        await super().record_event_intent(request)

    async def record_event_delivered(self, outcome: CompletionOutcome) -> None:
        record = self._delivered_record(outcome)
        await self._ledger._write(
            (
                "UPDATE final_event SET outcome = ? WHERE job_id = ?",
                (_codec.encode(outcome), self.job_id),
            ),
            (
                "DELETE FROM acknowledgement"
                " WHERE batch_id IN (SELECT id FROM batch WHERE job_id = ?)",
                (self.job_id,),
            ),
            ("DELETE FROM batch WHERE job_id = ?", (self.job_id,)),
        )
        self._final_event = record
        self._in_flight_at_open = {}
        self.acknowledgements.forget()


class SqliteLedger:
    """A durable ledger in one SQLite file (stdlib sqlite3). One file can hold many jobs.

        ledger = SqliteLedger("exports.sqlite3")
        job = client.job(job_id, ledger=ledger)

    Use one file from one process at a time. Close it (`await ledger.close()`, or
    `async with SqliteLedger(path) as ledger:`) when done. A file that is not a ledger, is
    corrupt, or has another schema version raises `LedgerError` and is left as it was.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pleo-ledger")
        self._connection: sqlite3.Connection | None = None
        self._jobs: dict[str, SqliteJobLedger] = {}
        self._open_lock = asyncio.Lock()
        self._queued: list[_Write] = []  # waiting for the group being committed to finish
        self._committing: asyncio.Future[None] | None = None
        self._closing = False
        self._last_key = 0  # of the batch rows: set when the file is opened, then counted up

    def __repr__(self) -> str:
        return f"SqliteLedger({self.path!r})"

    async def __aenter__(self) -> SqliteLedger:
        await self._run(self._connect)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def open_job(self, job_id: str) -> SqliteJobLedger:
        async with self._open_lock:
            job = self._jobs.get(job_id)
            if job is None:
                job = SqliteJobLedger(self, job_id)
                job._replay(await self._run(self._load_job, job_id))
                self._jobs[job_id] = job
            return job

    async def close(self) -> None:
        """Wait for the writes already asked for to land, refuse new ones, and close the file."""
        self._closing = True
        while self._committing is not None:
            await asyncio.wait([self._committing])
        if self._connection is not None:
            await self._run(self._close_connection)
        self._executor.shutdown(wait=True)

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    def _new_key(self) -> int:
        self._last_key += 1
        return self._last_key

    async def _write(self, *statements: Statement) -> None:
        """Commit these statements, together, in the next group; raises LedgerError if that
        group fails."""
        if self._closing:
            raise LedgerError(f"ledger {self.path} is closed")
        loop = asyncio.get_running_loop()
        committed: asyncio.Future[None] = loop.create_future()
        self._queued.append(_Write(statements, committed))
        if self._committing is None:
            self._commit_queued()
        await committed

    def _commit_queued(self) -> None:
        group, self._queued = self._queued, []
        self._committing = asyncio.get_running_loop().run_in_executor(
            self._executor, self._commit_group, [s for write in group for s in write.statements]
        )
        self._committing.add_done_callback(lambda done: self._group_done(group, done))

    def _group_done(self, group: list[_Write], done: asyncio.Future[None]) -> None:
        self._committing = None
        error = (
            LedgerError(f"ledger {self.path}: the write was cancelled")
            if done.cancelled()
            else done.exception()
        )
        for write in group:
            if write.committed.done():
                continue  # its waiter was cancelled; the write landed all the same
            if error is None:
                write.committed.set_result(None)
            else:
                write.committed.set_exception(error)
        if self._queued:
            self._commit_queued()

    # -- on the ledger's thread ---------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._connection is not None:
            return self._connection
        path = self.path
        is_new = not os.path.exists(path) or os.path.getsize(path) == 0
        try:
            # Autocommit: each statement is its own durable transaction.
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            raise LedgerError(f"cannot open ledger {path}: {error}") from None
        try:
            if not is_new:
                self._check_existing(connection)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            if is_new:
                connection.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                connection.execute("COMMIT")
            (self._last_key,) = connection.execute(
                "SELECT coalesce(max(id), 0) FROM batch"
            ).fetchone()
        except LedgerError:
            connection.close()
            raise
        except sqlite3.Error as error:
            connection.close()
            raise LedgerError(f"ledger {path} is corrupt or not a ledger: {error}") from None
        self._connection = connection
        return connection

    def _check_existing(self, connection: sqlite3.Connection) -> None:
        """Read-only checks, so a file that is refused is left exactly as it was."""
        path = self.path
        try:
            (application_id,) = connection.execute("PRAGMA application_id").fetchone()
            (version,) = connection.execute("PRAGMA user_version").fetchone()
        except sqlite3.DatabaseError as error:
            raise LedgerError(f"{path} is not a ledger: {error}") from None
        if application_id != APPLICATION_ID:
            raise LedgerError(f"{path} is not a pleo_export_async ledger")
        if version != SCHEMA_VERSION:
            raise LedgerError(
                f"{path} has ledger schema version {version}; this version of "
                f"pleo_export_async reads version {SCHEMA_VERSION} and leaves the file untouched"
            )
        (check,) = connection.execute("PRAGMA quick_check").fetchone()
        if check != "ok":
            raise LedgerError(f"ledger {path} is corrupt: {check}")

    def _commit_group(self, writes: list[Statement]) -> None:
        """One transaction for all these writes: every one of them lands, or none does."""
        connection = self._connect()
        try:
            connection.execute("BEGIN")
            for sql, parameters in writes:
                connection.execute(sql, parameters)
            connection.execute("COMMIT")
        except BaseException as error:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # the write's error is the one to tell
                    connection.execute("ROLLBACK")
            if isinstance(error, sqlite3.Error):
                raise LedgerError(f"cannot write ledger {self.path}: {error}") from None
            raise

    def _load_job(self, job_id: str) -> _JobRecords:
        connection = self._connect()
        try:
            event_row = connection.execute(
                "SELECT request, outcome FROM final_event WHERE job_id = ?", (job_id,)
            ).fetchone()
            final_event = None
            if event_row is not None:
                request_blob, outcome_blob = event_row
                final_event = FinalEventRecord(
                    _codec.decode(request_blob, JobEventRequest),
                    None
                    if outcome_blob is None
                    else _codec.decode(outcome_blob, CompletionOutcome),
                )
            rows = connection.execute(
                "SELECT id, updates, acknowledged FROM batch"
                " LEFT JOIN acknowledgement ON batch_id = id WHERE job_id = ? ORDER BY id",
                (job_id,),
            ).fetchall()
            batches: list[Batch] = []
            in_flight: dict[str, ItemUpdate] = {}
            for key, body, acknowledged in rows:
                batch = _read_batch(body, acknowledged, in_flight)
                batch.durable_key = key
                batches.append(batch)
        except (
            sqlite3.Error,
            ValueError,
            TypeError,
            KeyError,
            cattrs.BaseValidationError,
            UnexpectedResponse,
        ) as error:
            raise LedgerError(f"ledger {self.path}: job {job_id} cannot be read: {error}") from None
        return _JobRecords(batches, in_flight, final_event)

    def _close_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _read_batch(body: bytes, acknowledged: str | None, in_flight: dict[str, ItemUpdate]) -> Batch:
    """Rebuild a batch row; its updates that were sent and never acknowledged go to `in_flight`.

    Only the updates still needed become ItemUpdates: a successful acknowledged item needs no
    more than its ID (R4 makes it terminal).
    """
    items = _codec.loads(body)
    ids = [item["accountingEntryId"] for item in items]
    if acknowledged is None:
        acknowledged_ids: Collection[str] | None = None
    elif acknowledged == _EVERY_ID:
        acknowledged_ids = ids
    else:
        acknowledged_ids = frozenset(_codec.loads(acknowledged))
    others: dict[str, ItemUpdate] = {}
    for entry_id, item in zip(ids, items, strict=True):
        if acknowledged_ids is not None and entry_id in acknowledged_ids:
            in_flight.pop(entry_id, None)
            if item["status"] != "successful":
                others[entry_id] = _codec.from_wire(item, ItemUpdate)
        else:
            in_flight[entry_id] = _codec.from_wire(item, ItemUpdate)
    return read_back(ids, acknowledged_ids, others)
