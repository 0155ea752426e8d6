"""SqliteLedger: a job's acknowledgements and final event in a file, to resume after a crash (R13).

The file holds one row per batch. The row is committed before the batch is sent, holding the PUT
body as sent (the IDs and every field that reconciliation compares); once Pleo's answer is read,
the same row records which of its IDs were acknowledged. Opening a job replays its rows in order:
what was acknowledged is never sent again, and what was sent but never acknowledged is what a
crash may have left committed at Pleo without our knowing (`in_flight_at_open`). Once the job's
final event is delivered, its rows go and only the event and its outcome stay.

Commits run on the event loop, in groups: the writes asked for in one turn of the loop go in one
transaction, at the end of that turn. A batch's row is committed before the batch is sent (its
writer waits for the commit). An acknowledgement is committed at the end of the turn in which the
answer was read, as R13 asks, but its writer does not wait: the worker goes on to record its next
batch, which then shares the transaction (one commit per batch instead of two: a quarter of
SqliteLedger's CPU over the memory ledger). If that commit fails, the job's next write, and
`close()`, raise the `LedgerError`: a final event is never sent past an acknowledgement that did
not land. With WAL journaling and synchronous=NORMAL a commit only appends to the write-ahead
log, which survives the process being killed; nothing on the loop waits for the disk. The work
that does (checkpoints, which sync the log into the file, and reading a job back) runs on a
thread of the ledger's own, on a connection of its own. A power cut may lose the last commits,
which the JobRun's reconciliation with Pleo then recovers.

(The first version committed on that thread. Handing each group over and back cost more CPU
than the commit itself: the ratio to the memory ledger fell from 1.8 to 1.4 with commits on the
loop, in `make bench`.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, ClassVar, TypeVar

import attrs

from . import _codec
from ._core._batches import Batch
from ._durable_rows import (
    UNREADABLE,
    JobRecords,
    acknowledged_text,
    read_final_event,
    read_job,
    settle_in_flight,
)
from ._errors import LedgerError
from ._file_lock import FileLock
from ._ledger import MemoryJobLedger
from ._models import ItemUpdate, JobEventRequest
from ._report import CompletionOutcome
from ._sqlite_migrations import MIGRATIONS

T = TypeVar("T")

logger = logging.getLogger("pleo_export_async")

SCHEMA_VERSION = 2
#: The oldest schema version a file may have and still be opened: it migrates forward.
MIGRATES_FROM = min(MIGRATIONS, default=SCHEMA_VERSION)
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
Statement = tuple[str, tuple[Any, ...]]


def _migrates(version: int) -> bool:
    """Whether a file of this version migrates, step by step, to the current one."""
    return all(step in MIGRATIONS for step in range(version, SCHEMA_VERSION))


@attrs.frozen
class _Write:
    statements: Sequence[Statement]
    committed: asyncio.Future[None]


class SqliteJobLedger(MemoryJobLedger):
    commit_kind: ClassVar[str | None] = "sqlite"
    """One job's records: served from memory, written through to the file before use."""

    def __init__(self, ledger: SqliteLedger, job_id: str) -> None:
        super().__init__(job_id)
        self._ledger = ledger
        self._in_flight_at_open: dict[str, ItemUpdate] = {}
        #: Commits of acknowledgements that nobody waits for (see the module docstring).
        self._acknowledgements_committing: set[asyncio.Future[None]] = set()
        #: Why one of them did not land: raised by every later write of the job, and by the
        #: ledger's close().
        self._unrecorded: LedgerError | None = None

    def _replay(self, records: JobRecords) -> None:
        records.replay_into(self.acknowledgements)
        self._in_flight_at_open = records.in_flight
        self._final_event = records.final_event

    def in_flight_at_open(self) -> Mapping[str, ItemUpdate]:
        return self._in_flight_at_open

    async def record_in_flight(self, batch: Batch, body: bytes) -> None:
        """Commit the batch's row before it is sent. Raises `LedgerError` if the commit fails,
        or if an earlier acknowledgement of the job did not land."""
        self._raise_if_unrecorded()
        key = batch.durable_key = self._ledger._new_key()
        await self._ledger._write(
            ("INSERT INTO batch (id, job_id, updates) VALUES (?, ?, ?)", (key, self.job_id, body))
        )

    async def record_acknowledged(self, batch: Batch) -> None:
        """Ask for the acknowledgement's commit at the end of this turn of the event loop, and
        return without waiting for it (see the module docstring). Raises `LedgerError` if an
        earlier acknowledgement of the job did not land."""
        assert batch.durable_key is not None, "a batch is recorded in flight before its answer"
        self._raise_if_unrecorded()
        committed = self._ledger._write_this_turn(
            (
                "INSERT INTO acknowledgement (batch_id, acknowledged) VALUES (?, ?)",
                (batch.durable_key, acknowledged_text(batch)),
            )
        )
        self._acknowledgements_committing.add(committed)
        committed.add_done_callback(self._acknowledgement_committed)
        settle_in_flight(self._in_flight_at_open, batch)

    def _acknowledgement_committed(self, committed: asyncio.Future[None]) -> None:
        self._acknowledgements_committing.discard(committed)
        self._note_unrecorded(committed)

    def _note_unrecorded(self, committed: asyncio.Future[None]) -> None:
        error = None if committed.cancelled() else committed.exception()
        if error is not None and self._unrecorded is None:
            assert isinstance(error, LedgerError), "a commit tells its writers LedgerError"
            self._unrecorded = error

    def _raise_if_unrecorded(self) -> None:
        # A commit that has just failed tells its future at once, its callbacks a turn later.
        for committed in self._acknowledgements_committing:
            if committed.done():
                self._note_unrecorded(committed)
        if self._unrecorded is not None:
            raise LedgerError(
                f"ledger {self._ledger.path}: an acknowledgement of job {self.job_id} was not"
                f" recorded ({self._unrecorded})"
            )

    async def record_event_intent(self, request: JobEventRequest) -> None:
        self._raise_if_unrecorded()
        await self._ledger._write(
            (
                "INSERT OR REPLACE INTO final_event (job_id, request, outcome) VALUES (?, ?, NULL)",
                (self.job_id, _codec.encode(request)),
            )
        )
        await super().record_event_intent(request)

    async def record_event_delivered(self, outcome: CompletionOutcome) -> None:
        self._raise_if_unrecorded()
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


#: Checkpoint the write-ahead log (on the ledger's thread) once this much was appended to it.
CHECKPOINT_BYTES = 4 * 1024 * 1024
#: A commit that finds the file busy is tried again this often, for at most this long.
BUSY_RETRY_DELAY = 0.01
BUSY_PATIENCE = 2.0
_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


class _Busy(Exception):
    """The file was locked by another connection for the moment; the group may be retried."""


class SqliteLedger:
    """A durable ledger in one SQLite file (stdlib sqlite3). One file can hold many jobs.

        ledger = SqliteLedger("exports.sqlite3")
        job = client.job(job_id, ledger=ledger)

    One file is open in one process at a time: opening it holds an operating-system lock on
    `<path>-lock` until `close()` (or the process's end, however it ends), and a second
    `SqliteLedger` of the same file, in this process or another, gets `LedgerError` naming the
    holder's pid and host instead of becoming a second writer. Close it (`await
    ledger.close()`, or `async with SqliteLedger(path) as ledger:`) when done. A file that is
    not a ledger, is corrupt, or has another schema version raises `LedgerError` and is left
    as it was.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pleo-ledger")
        self._writer: sqlite3.Connection | None = None  # used on the event loop only
        self._reader: sqlite3.Connection | None = None  # used on the ledger's thread only
        self._jobs: dict[str, SqliteJobLedger] = {}
        self._open_lock = asyncio.Lock()
        self._queued: list[_Write] = []  # asked for in this turn of the loop
        self._commit_scheduled = False
        self._closing = False
        self._closed = False
        self._last_key = 0  # of the batch rows: set when the file is opened, then counted up
        self._unchecked_bytes = 0  # appended to the log since the last checkpoint
        self._checkpointing: asyncio.Future[None] | None = None
        self._lock = FileLock(self.path)

    def __repr__(self) -> str:
        return f"SqliteLedger({self.path!r})"

    async def __aenter__(self) -> SqliteLedger:
        """Open the file, creating it and its tables if it is new.

        Raises `LedgerError` for a file of another application or schema version, a corrupt
        file, or one that cannot be opened or written.
        """
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
        """The job's records, read from the file the first time (JobRuns call this).

        Raises `LedgerError` when the ledger is closed, the file cannot be read, or it holds
        rows this version cannot decode.
        """
        if self._closing:
            raise LedgerError(f"ledger {self.path} is closed")
        async with self._open_lock:
            job = self._jobs.get(job_id)
            if job is None:
                job = SqliteJobLedger(self, job_id)
                job._replay(await self._run(self._load_job, job_id))
                self._jobs[job_id] = job
            return job

    async def close(self) -> None:
        """Let the writes already asked for land, refuse new ones, and close the file.

        Raises `LedgerError` when the last writes cannot be committed, or an acknowledgement
        written earlier did not land. Closing it again does nothing.
        """
        if self._closed:
            return
        self._closing = True
        if self._queued:
            self._commit_queued()
        if self._checkpointing is not None:
            await asyncio.wait([self._checkpointing])
        await self._run(self._close_connections)
        self._executor.shutdown(wait=True)
        self._closed = True
        for job in self._jobs.values():
            job._raise_if_unrecorded()

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise LedgerError(f"ledger {self.path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    def _new_key(self) -> int:
        self._last_key += 1
        return self._last_key

    async def _write(self, *statements: Statement) -> None:
        """Commit these statements, together, in this turn's group; raises LedgerError if that
        group fails."""
        await self._write_this_turn(*statements)

    def _write_this_turn(self, *statements: Statement) -> asyncio.Future[None]:
        """Queue these statements for this turn's group; the future says how its commit went.
        Raises LedgerError once the ledger is closing."""
        if self._closing:
            raise LedgerError(f"ledger {self.path} is closed")
        loop = asyncio.get_running_loop()
        committed: asyncio.Future[None] = loop.create_future()
        self._queued.append(_Write(statements, committed))
        if not self._commit_scheduled:
            self._commit_scheduled = True
            loop.call_soon(self._commit_queued)
        return committed

    def _commit_queued(self, busy_since: float | None = None) -> None:
        """Commit every write asked for so far in one transaction, and tell each writer.

        If the file is busy (another connection holds a lock for a moment), the group is
        tried again a little later rather than waited for: the event loop never blocks."""
        self._commit_scheduled = False
        group, self._queued = self._queued, []
        if not group:
            return
        loop = asyncio.get_running_loop()
        error: BaseException | None = None
        try:
            self._unchecked_bytes += self._commit_group(
                [statement for write in group for statement in write.statements]
            )
        except _Busy as busy:
            started = loop.time() if busy_since is None else busy_since
            if loop.time() - started < BUSY_PATIENCE and not self._closing:
                self._queued[:0] = group
                self._commit_scheduled = True
                loop.call_later(BUSY_RETRY_DELAY, self._commit_queued, started)
                return
            error = LedgerError(f"cannot write ledger {self.path}: {busy.__cause__}")
        except Exception as failure:  # every writer is told, whatever went wrong
            error = (
                failure
                if isinstance(failure, LedgerError)
                else LedgerError(f"cannot write ledger {self.path}: {failure!r}")
            )
        for write in group:
            if write.committed.done():
                continue  # its waiter was cancelled; the write landed all the same
            if error is None:
                write.committed.set_result(None)
            else:
                write.committed.set_exception(error)
        if self._unchecked_bytes >= CHECKPOINT_BYTES and self._checkpointing is None:
            self._unchecked_bytes = 0
            self._checkpointing = asyncio.get_running_loop().run_in_executor(
                self._executor, self._checkpoint
            )
            self._checkpointing.add_done_callback(self._checkpointed)

    def _commit_group(self, writes: list[Statement]) -> int:
        """One transaction for all these writes: every one of them lands, or none does.
        Returns about how many bytes it appended to the log."""
        connection = self._writer
        if connection is None:
            raise LedgerError(f"ledger {self.path} is not open")
        try:
            connection.execute("BEGIN")
            for sql, parameters in writes:
                connection.execute(sql, parameters)
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # the write's error is the one to tell
                    connection.execute("ROLLBACK")
            # The primary code is the low byte of the extended one (SQLITE_BUSY_RECOVERY...).
            if getattr(error, "sqlite_errorcode", 0) & 0xFF in _BUSY_CODES:
                raise _Busy() from error
            raise LedgerError(f"cannot write ledger {self.path}: {error}") from None
        return sum(len(v) for _, parameters in writes for v in parameters if type(v) is bytes)

    def _checkpointed(self, done: asyncio.Future[None]) -> None:
        self._checkpointing = None
        if not done.cancelled() and done.exception() is not None:
            # The log just grows until the next checkpoint succeeds; every commit still holds.
            logger.warning("ledger %s: checkpoint failed: %s", self.path, done.exception())

    # -- on the ledger's thread ---------------------------------------------------------------

    def _connect(self) -> None:
        if self._writer is not None:
            return
        self._lock.acquire()
        try:
            self._open_connections()
        except BaseException:
            self._lock.release()
            raise

    def _open_connections(self) -> None:
        path = self.path
        is_new = not os.path.exists(path) or os.path.getsize(path) == 0
        try:
            # Autocommit: transactions are begun and committed by hand. The writer never waits
            # for a lock (timeout 0): this process is the file's only writer, and the event
            # loop must not stall.
            writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
        except sqlite3.Error as error:
            raise LedgerError(f"cannot open ledger {path}: {error}") from None
        try:
            version = SCHEMA_VERSION if is_new else self._check_existing(writer)
            if version != SCHEMA_VERSION:
                self._migrate(writer, version)
            writer.execute("PRAGMA journal_mode=WAL")
            writer.execute("PRAGMA synchronous=NORMAL")
            writer.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run on this thread
            if is_new:
                writer.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        writer.execute(statement)
                writer.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                writer.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                writer.execute("COMMIT")
            (self._last_key,) = writer.execute("SELECT coalesce(max(id), 0) FROM batch").fetchone()
            reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except LedgerError:
            writer.close()
            raise
        except sqlite3.Error as error:
            writer.close()
            raise LedgerError(f"ledger {path} is corrupt or not a ledger: {error}") from None
        self._writer, self._reader = writer, reader

    def _check_existing(self, connection: sqlite3.Connection) -> int:
        """Read-only checks, so a file that is refused is left exactly as it was; the file's
        schema version, this one's or an older one that migrates to it."""
        path = self.path
        try:
            (application_id,) = connection.execute("PRAGMA application_id").fetchone()
            (version,) = connection.execute("PRAGMA user_version").fetchone()
        except sqlite3.DatabaseError as error:
            raise LedgerError(f"{path} is not a ledger: {error}") from None
        if application_id != APPLICATION_ID:
            raise LedgerError(f"{path} is not a pleo_export_async ledger")
        if version > SCHEMA_VERSION or not _migrates(version):
            newer = " (written by a newer pleo_export_async)" if version > SCHEMA_VERSION else ""
            raise LedgerError(
                f"{path} has ledger schema version {version}{newer}; this version of "
                f"pleo_export_async reads versions {MIGRATES_FROM} to {SCHEMA_VERSION} and "
                "leaves the file untouched"
            )
        (check,) = connection.execute("PRAGMA quick_check").fetchone()
        if check != "ok":
            raise LedgerError(f"ledger {path} is corrupt: {check}")
        return int(version)

    def _migrate(self, writer: sqlite3.Connection, version: int) -> None:
        """Take the file from `version` to this one's, in one transaction, once a copy of it as
        it was is beside it (`<path>.v<version>.bak`): to roll back, open that copy with the
        version that wrote it."""
        path = self.path
        backup = f"{path}.v{version}.bak"
        partial = backup + ".partial"
        try:
            # The backup API copies what is committed, the write-ahead log's part included;
            # the rename makes a copy cut short by a kill never pass for the backup, and such
            # a copy is removed first: the backup API will not write over a broken file.
            with contextlib.suppress(FileNotFoundError):
                os.remove(partial)
            with contextlib.closing(sqlite3.connect(partial)) as copy:
                writer.backup(copy)
            os.replace(partial, backup)
        except (sqlite3.Error, OSError) as error:
            raise LedgerError(
                f"cannot back up ledger {path} before migrating it: {error}"
            ) from None
        try:
            writer.execute("BEGIN IMMEDIATE")
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](writer)
            writer.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            writer.execute("COMMIT")
        except (sqlite3.Error, *UNREADABLE) as error:
            if writer.in_transaction:
                writer.execute("ROLLBACK")
            raise LedgerError(
                f"cannot migrate ledger {path} from schema version {version} to "
                f"{SCHEMA_VERSION}: {error}; it is left at version {version}"
            ) from None
        logger.warning(
            "ledger %s: schema version %d migrated to %d; the file as it was is kept as %s",
            path,
            version,
            SCHEMA_VERSION,
            backup,
            extra={"ledger": path, "from_version": version, "to_version": SCHEMA_VERSION},
        )

    def _checkpoint(self) -> None:
        assert self._reader is not None
        self._reader.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _load_job(self, job_id: str) -> JobRecords:
        self._connect()
        connection = self._reader
        assert connection is not None
        try:
            event_row = connection.execute(
                "SELECT request, outcome FROM final_event WHERE job_id = ?", (job_id,)
            ).fetchone()
            rows = connection.execute(
                "SELECT id, updates, acknowledged FROM batch"
                " LEFT JOIN acknowledgement ON batch_id = id WHERE job_id = ? ORDER BY id",
                (job_id,),
            ).fetchall()
            return read_job(rows, read_final_event(*event_row) if event_row else None)
        except (sqlite3.Error, *UNREADABLE) as error:
            raise LedgerError(f"ledger {self.path}: job {job_id} cannot be read: {error}") from None

    def _close_connections(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(sqlite3.Error):
                self._reader.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._reader.close()
            self._reader = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._lock.release()
