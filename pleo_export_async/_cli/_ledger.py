"""`pleo-export ledger`: look into a durable ledger, and take a SqliteLedger file to this
version's schema.

TARGET is a SqliteLedger file, or a `postgresql://` (`postgres://`) DSN of a PostgresLedger
database with `--schema` naming its schema.

`inspect` only reads: it migrates, creates, locks and writes nothing, so it can be run beside a
connector that holds the file, or on a file a newer or older version wrote. `upgrade` opens an
older SqliteLedger file the way a connector would, which migrates it after copying it to
`<path>.v<N>.bak`.

Exit codes: 0 done; 2 the target is not a ledger (missing, not SQLite, another application's
file or schema, unreadable rows, a schema version this library cannot take); 3 the ledger cannot
be had now: PostgreSQL cannot be reached, or SqliteLedger refused to open the file to upgrade it
(a running connector holds it, the backup or the migration failed, leaving the file as it was).
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import os
import re
import sqlite3
import urllib.parse
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any, Final, NoReturn

import attrs
import click
from rich.table import Table
from rich.text import Text

from pleo_export_async import _codec
from pleo_export_async._core._acknowledgements import Acknowledgements
from pleo_export_async._durable_rows import UNREADABLE, JobRecords, read_final_event, read_job
from pleo_export_async._errors import LedgerError
from pleo_export_async._ledger import FinalEventRecord
from pleo_export_async._postgres_ledger import PostgresLedger
from pleo_export_async._postgres_schema import APPLICATION, SCHEMA_NAME
from pleo_export_async._postgres_schema import SCHEMA_VERSION as POSTGRES_VERSION
from pleo_export_async._sqlite_ledger import APPLICATION_ID, MIGRATES_FROM, SqliteLedger
from pleo_export_async._sqlite_ledger import SCHEMA_VERSION as SQLITE_VERSION
from pleo_export_async._sqlite_migrations import MIGRATIONS, same_update

from ._command import run, settings_for
from ._output import ExitCode, Output, outcome_fields

#: The schema PostgresLedger uses when it is given none.
DEFAULT_SCHEMA: Final[str] = inspect.signature(PostgresLedger.__init__).parameters["schema"].default
_DSN_SCHEMES: Final = ("postgresql://", "postgres://")
#: What a DSN shows in place of its password.
HIDDEN: Final = "***"
#: A connection attempt to PostgreSQL gives up after this long (seconds).
CONNECT_TIMEOUT: Final = 10.0

WORKING: Final = "working"
INTENDED: Final = "event_intended"
CLOSED: Final = "closed"
#: The one older SqliteLedger schema whose rows `inspect` can read without migrating them.
_VERSION_1: Final = 1


class _Refused(Exception):
    """The command stops here: one line on stderr, and this exit code."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@attrs.frozen
class Lease:
    holder: str
    fence: int
    expires_at: Any  # a datetime, as PostgreSQL has it
    held: bool


@attrs.frozen
class JobView:
    """A job as its ledger rows show it."""

    job_id: str
    final_event: FinalEventRecord | None
    acknowledged: int
    successful: int
    failed: int
    in_flight: int
    batches: int
    lease: Lease | None = None

    @property
    def state(self) -> str:
        if self.final_event is None:
            return WORKING
        return INTENDED if self.final_event.outcome is None else CLOSED


@attrs.frozen
class LedgerView:
    """A ledger as `inspect` read it: its schema version and, when this library can read rows
    of that version, its jobs."""

    kind: str  # "sqlite" or "postgresql"
    target: str  # the path, or the DSN with its password hidden
    schema: str | None
    version: int
    library_version: int
    jobs: list[JobView] | None

    @property
    def version_status(self) -> str:
        if self.version == self.library_version:
            return "current"
        return "older" if self.version < self.library_version else "newer"

    @property
    def migrates(self) -> bool:
        """Whether opening it with this library takes it to this library's version."""
        if self.kind != "sqlite" or self.version >= self.library_version:
            return False
        return all(step in MIGRATIONS for step in range(self.version, self.library_version))


@click.group(short_help="Inspect a ledger, or upgrade its schema.")
def ledger() -> None:
    """Look into a ledger (a SqliteLedger file or a PostgresLedger schema), and upgrade it."""


_SCHEMA = click.option(
    "--schema",
    help=f"The PostgresLedger's database schema, for a DSN (default {DEFAULT_SCHEMA}).",
)
_TARGET = click.argument("target", metavar="PATH|DSN")


@ledger.command("inspect", short_help="Show a ledger's schema version and jobs; reads only.")
@_TARGET
@_SCHEMA
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.pass_context
def inspect_ledger(ctx: click.Context, target: str, schema: str | None, as_json: bool) -> None:
    """Show a ledger's schema version and each job's state and counts, reading only.

    PATH is a SqliteLedger file (it may be held by a running connector); DSN a postgresql://
    connection string. Nothing is migrated, created, locked or written.
    """
    settings = settings_for(ctx, as_json)

    async def work() -> ExitCode:
        if _is_dsn(target):
            view = await _read_postgres(target, _schema_of(schema), with_jobs=True)
        else:
            _no_schema_for_a_file(schema)
            view = _read_sqlite(target)
        _show_view(settings.output, view)
        return ExitCode.DONE

    run(settings, _refusals_told(settings.output, work()))


@ledger.command("upgrade", short_help="Take a ledger to this version's schema.")
@_TARGET
@_SCHEMA
@click.option("--dry-run", is_flag=True, help="Say what would be done, and change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.pass_context
def upgrade_ledger(
    ctx: click.Context, target: str, schema: str | None, dry_run: bool, as_json: bool
) -> None:
    """Take a ledger to this version's schema.

    A SqliteLedger file of an older version is migrated as a connector would on opening it,
    after a copy of it is kept beside it as PATH.v<N>.bak. Stop the connectors that use the
    file first: one that holds it makes the upgrade fail (exit 3), and nothing changes.
    """
    settings = settings_for(ctx, as_json)

    async def work() -> ExitCode:
        if _is_dsn(target):
            result = await _upgrade_postgres(target, _schema_of(schema), dry_run)
        else:
            _no_schema_for_a_file(schema)
            result = await _upgrade_sqlite(target, dry_run)
        _show_upgrade(settings.output, result)
        return ExitCode.DONE

    run(settings, _refusals_told(settings.output, work()))


async def _refusals_told(output: Output, work: Coroutine[Any, Any, ExitCode]) -> ExitCode:
    try:
        code = await work
    except _Refused as refused:
        output.error(str(refused))
        return refused.code
    return code


def _is_dsn(target: str) -> bool:
    return target.lower().startswith(_DSN_SCHEMES)


def _schema_of(schema: str | None) -> str:
    name = DEFAULT_SCHEMA if schema is None else schema
    # The name goes into SQL text: only the names PostgresLedger itself accepts.
    if not SCHEMA_NAME.fullmatch(name):
        _refuse(
            ExitCode.BAD_INPUT,
            f"--schema {name!r}: must be a lower-case SQL name (letters, digits, underscores)",
        )
    return name


def _no_schema_for_a_file(schema: str | None) -> None:
    if schema is not None:
        _refuse(ExitCode.BAD_INPUT, "--schema is for a postgresql:// DSN, not a ledger file")


def _refuse(code: ExitCode, message: str) -> NoReturn:
    raise _Refused(code, message)


# -- SQLite ----------------------------------------------------------------------------------------


def _read_sqlite(path: str, *, with_jobs: bool = True) -> LedgerView:
    """The file read as it is, without SqliteLedger: that would take the file's lock (refused
    while a connector holds it) and migrate an older file."""
    _check_is_a_file(path)
    for _ in range(3):
        before = _file_state(path)
        # No write-ahead log beside the file: nobody has it open, and everything committed is
        # in the file itself. Read it as immutable, which creates no -wal and -shm files (a
        # read-only connection to a WAL-mode file otherwise leaves them behind). A log beside
        # it holds commits the file lacks: read through it, with SQLite's own read locks.
        live = before.has_log
        view = _read_sqlite_once(path, live=live, with_jobs=with_jobs)
        # Immutable, the read trusts that nothing changes; a connector that opened the file
        # meanwhile would only append to a new log, unless it checkpointed: then read again.
        if live or _file_state(path) == before:
            return view
    return _read_sqlite_once(path, live=True, with_jobs=with_jobs)


def _check_is_a_file(path: str) -> None:
    if not os.path.exists(path):
        _refuse(ExitCode.BAD_INPUT, f"{path}: no such file")
    if not os.path.isfile(path):
        _refuse(ExitCode.BAD_INPUT, f"{path} is not a file")
    if os.path.getsize(path) == 0:
        _refuse(ExitCode.BAD_INPUT, f"{path} is empty: not a ledger (yet)")


@attrs.frozen
class _FileState:
    inode: int
    size: int
    modified_ns: int
    has_log: bool  # a write-ahead log (`<path>-wal`) is beside it


def _file_state(path: str) -> _FileState:
    stat = os.stat(path)
    return _FileState(stat.st_ino, stat.st_size, stat.st_mtime_ns, os.path.exists(path + "-wal"))


def _read_sqlite_once(path: str, *, live: bool, with_jobs: bool) -> LedgerView:
    uri = Path(path).resolve().as_uri() + ("?mode=ro" if live else "?mode=ro&immutable=1")
    try:
        connection = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as error:
        _refuse(ExitCode.BAD_INPUT, f"cannot open {path}: {error}")
    with contextlib.closing(connection):
        try:
            # One read transaction: every row as of one commit, whatever a connector writes.
            connection.execute("BEGIN")
            (application_id,) = connection.execute("PRAGMA application_id").fetchone()
            (version,) = connection.execute("PRAGMA user_version").fetchone()
        except sqlite3.Error as error:
            _refuse(ExitCode.BAD_INPUT, f"{path} is not a ledger: {error}")
        if application_id != APPLICATION_ID:
            _refuse(ExitCode.BAD_INPUT, f"{path} is an SQLite file, not a pleo_export_async ledger")
        jobs = None
        if with_jobs:
            try:
                if version == SQLITE_VERSION:
                    jobs = _current_jobs(_sqlite_rows(connection))
                elif version == _VERSION_1:
                    jobs = _version_1_jobs(connection)
            except (sqlite3.Error, *UNREADABLE) as error:
                _refuse(ExitCode.BAD_INPUT, f"ledger {path} cannot be read: {error}")
    return LedgerView("sqlite", path, None, int(version), SQLITE_VERSION, jobs)


def _sqlite_rows(
    connection: sqlite3.Connection,
) -> tuple[Iterable[tuple[Any, ...]], Iterable[tuple[Any, ...]]]:
    events = connection.execute("SELECT job_id, request, outcome FROM final_event").fetchall()
    batches = connection.execute(
        "SELECT job_id, id, updates, acknowledged FROM batch"
        " LEFT JOIN acknowledgement ON batch_id = id ORDER BY job_id, id"
    )
    return events, batches


def _version_1_jobs(connection: sqlite3.Connection) -> list[JobView]:
    """Each job of a version 1 file as version 1 read it back (and as its migration to version 2
    does): an acknowledged record's updates are Pleo's; an update recorded in flight stays in
    doubt unless the very same update was acknowledged after it. Every batch was recorded in
    flight once before it was sent."""
    events = {
        job_id: read_final_event(request, outcome)
        for job_id, request, outcome in connection.execute(
            "SELECT job_id, request, outcome FROM final_event"
        )
    }
    jobs: dict[str, JobView] = {}
    records = connection.execute(
        "SELECT job_id, kind, updates FROM batch_record ORDER BY job_id, seq"
    )
    for job_id, rows in itertools.groupby(records, key=lambda row: str(row[0])):
        acknowledged: dict[str, str] = {}  # ID -> the status Pleo last acknowledged
        in_doubt: dict[str, dict[str, Any]] = {}
        batches = 0
        for _, kind, updates in rows:
            items: list[dict[str, Any]] = _codec.loads(updates)
            if kind == "in_flight":
                batches += 1
                in_doubt.update((item["accountingEntryId"], item) for item in items)
                continue
            for item in items:
                entry_id = item["accountingEntryId"]
                acknowledged[entry_id] = item["status"]
                if entry_id in in_doubt and same_update(in_doubt[entry_id], item):
                    del in_doubt[entry_id]
        statuses = list(acknowledged.values())
        jobs[job_id] = JobView(
            job_id,
            events.get(job_id),
            acknowledged=len(statuses),
            successful=statuses.count("successful"),
            failed=statuses.count("failed"),
            in_flight=len(in_doubt),
            batches=batches,
        )
    return _with_rowless_jobs(jobs, events)


def _current_jobs(
    rows: tuple[Iterable[tuple[Any, ...]], Iterable[tuple[Any, ...]]],
    leases: dict[str, Lease] | None = None,
) -> list[JobView]:
    """Each job of a ledger of the current rows (SqliteLedger's or PostgresLedger's): its final
    event `(job_id, request, outcome)` and its batches `(job_id, key, PUT body, acknowledgement)`
    by job, oldest first, read back as a connector reads them."""
    event_rows, batch_rows = rows
    events = {
        str(job_id): read_final_event(request, outcome) for job_id, request, outcome in event_rows
    }
    leases = leases or {}
    jobs: dict[str, JobView] = {}
    for job_id, group in itertools.groupby(batch_rows, key=lambda row: str(row[0])):
        records = read_job(
            ((key, body, acknowledged) for _, key, body, acknowledged in group),
            events.get(job_id),
        )
        jobs[job_id] = _job_view(job_id, records, leases.get(job_id))
    return _with_rowless_jobs(jobs, events, leases)


def _with_rowless_jobs(
    jobs: dict[str, JobView],
    events: dict[str, FinalEventRecord | None],
    leases: dict[str, Lease] | None = None,
) -> list[JobView]:
    """The jobs by job ID, with those that have no batch rows: a closed job (its batches are
    deleted once its event is delivered), or one whose lease was taken before any batch."""
    leases = leases or {}
    for job_id in events.keys() | leases.keys():
        if job_id not in jobs:
            records = JobRecords([], {}, events.get(job_id))
            jobs[job_id] = _job_view(job_id, records, leases.get(job_id))
    return [jobs[job_id] for job_id in sorted(jobs)]


def _job_view(job_id: str, records: JobRecords, lease: Lease | None = None) -> JobView:
    acknowledgements = Acknowledgements()
    # Batch by batch, as `JobRecords.replay_into` does, but without forgetting a closed job's
    # IDs: should its rows still be there, they are counted.
    for batch in records.batches:
        acknowledgements.restore(batch)
    tally = acknowledgements.tally()
    acknowledged = sum(
        1 for entry_id, batch in acknowledgements.index.items() if batch.acknowledges(entry_id)
    )
    return JobView(
        job_id,
        records.final_event,
        acknowledged=acknowledged,
        successful=tally.successful,
        failed=tally.failed,
        in_flight=len(records.in_flight),
        batches=len(records.batches),
        lease=lease,
    )


@attrs.frozen
class Upgrade:
    kind: str
    target: str
    schema: str | None
    from_version: int
    to_version: int
    version: int  # the version it has now
    backup: str | None  # the copy of the file as it was (to be) kept
    backup_replaced: bool  # a backup of that name was there already
    dry_run: bool

    @property
    def changed(self) -> bool:
        return self.from_version != self.version


async def _upgrade_sqlite(path: str, dry_run: bool) -> Upgrade:
    plan = _sqlite_upgrade_plan(path, dry_run)
    if dry_run or plan.from_version == plan.to_version:
        return plan
    try:
        # Opening it is what migrates it (after the backup), exactly as a connector's would.
        async with SqliteLedger(path):
            pass
    except LedgerError as error:
        _refuse(ExitCode.API_FAILURE, str(error))
    return attrs.evolve(plan, version=_read_sqlite(path, with_jobs=False).version)


def _sqlite_upgrade_plan(path: str, dry_run: bool) -> Upgrade:
    """What upgrading the file would do, read without changing it; refused when it cannot."""
    found = _read_sqlite(path, with_jobs=False)
    version = found.version
    if version > SQLITE_VERSION:
        _refuse(
            ExitCode.BAD_INPUT,
            f"ledger {path} has schema version {version}, newer than this library's "
            f"{SQLITE_VERSION} (a newer pleo_export_async wrote it): upgrade pleo-export-async "
            "instead; the file is left as it was",
        )
    if version < SQLITE_VERSION and not found.migrates:
        _refuse(
            ExitCode.BAD_INPUT,
            f"ledger {path} has schema version {version}; this library reads versions "
            f"{MIGRATES_FROM} to {SQLITE_VERSION} and cannot migrate it; the file is left as "
            "it was",
        )
    if version == SQLITE_VERSION:
        return Upgrade("sqlite", path, None, version, version, version, None, False, dry_run)
    backup = f"{path}.v{version}.bak"
    replaced = os.path.exists(backup)
    return Upgrade(
        "sqlite", path, None, version, SQLITE_VERSION, version, backup, replaced, dry_run
    )


# -- PostgreSQL ------------------------------------------------------------------------------------


async def _read_postgres(dsn: str, schema: str, *, with_jobs: bool) -> LedgerView:
    """The schema read with plain SELECTs in one read-only transaction: PostgresLedger would
    create the schema were it missing."""
    try:
        import asyncpg
    except ImportError:
        _refuse(
            ExitCode.BAD_INPUT,
            "a PostgreSQL ledger needs the postgres extra: "
            "pip install 'pleo-export-async[postgres]'",
        )
    shown = shown_dsn(dsn)
    failures = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
    try:
        connection = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
    except ValueError:
        # asyncpg's parse errors quote the piece they choke on, which may be the password.
        _refuse(
            ExitCode.BAD_INPUT,
            f"cannot parse the DSN {shown}; percent-encode characters such as '?', '/', '@' and "
            "':' in the user name and password",
        )
    except failures as error:
        _refuse(ExitCode.API_FAILURE, f"cannot connect to {shown}: {_said(error, dsn)}")
    try:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            tables = {
                row["tablename"]
                for row in await connection.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = $1", schema
                )
            }
            if not tables:
                _refuse(
                    ExitCode.BAD_INPUT,
                    f"database schema {schema} at {shown} holds no ledger (PostgresLedger creates "
                    "its tables on first use; give --schema for another schema)",
                )
            if "meta" not in tables:
                _refuse(
                    ExitCode.BAD_INPUT,
                    f"database schema {schema} at {shown} holds tables that are not a "
                    "pleo_export_async ledger",
                )
            meta = await connection.fetchrow(
                f"SELECT application, schema_version FROM {schema}.meta"
            )
            if meta is None or meta["application"] != APPLICATION:
                _refuse(
                    ExitCode.BAD_INPUT,
                    f"database schema {schema} at {shown} is not a pleo_export_async ledger",
                )
            version = int(meta["schema_version"])
            jobs = None
            if with_jobs and version == POSTGRES_VERSION:
                events = await connection.fetch(
                    f"SELECT job_id, request, outcome FROM {schema}.final_event"
                )
                batches = await connection.fetch(
                    f"SELECT job_id, id, updates, acknowledged FROM {schema}.batch"
                    f" LEFT JOIN {schema}.acknowledgement ON batch_id = id ORDER BY job_id, id"
                )
                lease_rows = await connection.fetch(
                    f"SELECT job_id, holder, fence, expires_at, expires_at > now() AS held"
                    f" FROM {schema}.lease WHERE job_id NOT LIKE 'company:%'"
                )
                leases = {
                    row["job_id"]: Lease(
                        row["holder"], row["fence"], row["expires_at"], row["held"]
                    )
                    for row in lease_rows
                }
                try:
                    jobs = _current_jobs(
                        ([tuple(row) for row in events], [tuple(row) for row in batches]), leases
                    )
                except UNREADABLE as error:
                    _refuse(
                        ExitCode.BAD_INPUT,
                        f"ledger schema {schema} at {shown} cannot be read: {error}",
                    )
    except failures as error:
        _refuse(ExitCode.API_FAILURE, f"cannot read {schema} at {shown}: {_said(error, dsn)}")
    finally:
        with contextlib.suppress(*failures):
            await connection.close(timeout=5)
    return LedgerView("postgresql", shown, schema, version, POSTGRES_VERSION, jobs)


async def _upgrade_postgres(dsn: str, schema: str, dry_run: bool) -> Upgrade:
    found = await _read_postgres(dsn, schema, with_jobs=False)
    version = found.version
    if version > POSTGRES_VERSION:
        _refuse(
            ExitCode.BAD_INPUT,
            f"ledger schema {schema} at {found.target} has schema version {version}, newer than "
            f"this library's {POSTGRES_VERSION} (a newer pleo_export_async wrote it): upgrade "
            "pleo-export-async instead; the schema is left as it was",
        )
    if version < POSTGRES_VERSION:
        _refuse(
            ExitCode.BAD_INPUT,
            f"ledger schema {schema} at {found.target} has schema version {version}; this library "
            f"has no migration to {POSTGRES_VERSION} for it; the schema is left as it was",
        )
    return Upgrade(
        "postgresql", found.target, schema, version, version, version, None, False, dry_run
    )


def shown_dsn(dsn: str) -> str:
    """The DSN as it may be shown: its password, in the user part or a `password=` parameter,
    replaced by ***."""
    try:
        parts = urllib.parse.urlsplit(dsn)
    except ValueError:
        return dsn.split("://", 1)[0] + "://" + HIDDEN
    userinfo, at, hosts = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:{HIDDEN}@{hosts}"
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", rf"\1\2{HIDDEN}", parts.query)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def _secrets_of(dsn: str) -> set[str]:
    """The DSN's password as written and percent-decoded, wherever it stands."""
    found: set[str] = set()
    with contextlib.suppress(ValueError):
        parts = urllib.parse.urlsplit(dsn)
        userinfo, at, _ = parts.netloc.rpartition("@")
        if at and ":" in userinfo:
            found.add(userinfo.partition(":")[2])
        for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
            if name.lower() == "password":
                found.add(value)
        found.update(re.findall(r"(?i)(?:^|&)password=([^&]*)", parts.query))
    found.update({urllib.parse.unquote(secret) for secret in found})
    return {secret for secret in found if secret}


def _said(error: BaseException, dsn: str) -> str:
    """An error's text, without the DSN's password should it appear."""
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    for secret in sorted(_secrets_of(dsn), key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    return text


# -- showing ---------------------------------------------------------------------------------------


def _version_line(view: LedgerView) -> str:
    version, library = view.version, view.library_version
    if view.version_status == "current":
        return f"schema version {version}: this library's"
    if view.version_status == "newer":
        return (
            f"schema version {version}: newer than this library's {library} (a newer "
            "pleo_export_async wrote it); its jobs are not shown"
        )
    if view.migrates:
        return (
            f"schema version {version}: older than this library's {library}; migrates to "
            f"{library} when opened, or with `pleo-export ledger upgrade`"
        )
    return (
        f"schema version {version}: older than this library's {library}, and this library "
        "cannot migrate it; its jobs are not shown"
    )


def _state_text(job: JobView) -> str:
    record = job.final_event
    if record is None:
        return "working"
    if record.outcome is None:
        return f"final event {record.request.event.value} intended, not known delivered"
    outcome = record.outcome
    text = (
        f"closed: {outcome.event.value}, delivered ({outcome.successful:,} successful, "
        f"{outcome.failed:,} failed, {outcome.rejected:,} rejected)"
    )
    if outcome.failure_reason:
        text += f"; {outcome.failure_reason_type}: {outcome.failure_reason}"
    return text


def _lease_text(lease: Lease | None) -> str:
    if lease is None:
        return ""
    if not lease.held:
        return "free"
    return f"{lease.holder} until {lease.expires_at:%Y-%m-%dT%H:%M:%SZ}"


def _show_view(output: Output, view: LedgerView) -> None:
    if output.json_mode:
        output.document(_view_document(view))
        return
    where = view.target if view.schema is None else f"{view.target}, schema {view.schema}"
    kind = "SQLite" if view.kind == "sqlite" else "PostgreSQL"
    output.show(f"ledger {where} ({kind})", _version_line(view))
    if view.jobs is None:
        return
    if not view.jobs:
        output.show("no jobs")
        return
    headers = ["job", "state", "acknowledged", "successful", "failed", "in flight", "batches"]
    with_leases = view.kind == "postgresql"
    table = Table(*headers, *(["lease"] if with_leases else []))
    table.columns[0].no_wrap = True  # an ID is copied from here: never cut it
    for column in table.columns[2:7]:
        column.justify = "right"
    for job in view.jobs:
        counts = (job.acknowledged, job.successful, job.failed, job.in_flight, job.batches)
        # Text, not markup: a failure reason or a holder's name may hold brackets.
        table.add_row(
            Text(job.job_id),
            Text(_state_text(job)),
            *(f"{count:,}" for count in counts),
            *([Text(_lease_text(job.lease))] if with_leases else []),
        )
    output.show(table)


def _view_document(view: LedgerView) -> dict[str, Any]:
    return {
        "ledger": view.kind,
        "target": view.target,
        "schema": view.schema,
        "schema_version": view.version,
        "library_schema_version": view.library_version,
        "version_status": view.version_status,
        "migrates_to": view.library_version if view.migrates else None,
        "jobs": None if view.jobs is None else [_job_document(job) for job in view.jobs],
    }


def _job_document(job: JobView) -> dict[str, Any]:
    record = job.final_event
    outcome = None if record is None else record.outcome
    return {
        "job_id": job.job_id,
        "state": job.state,
        "event": None if record is None else record.request.event.value,
        "acknowledged": job.acknowledged,
        "successful": job.successful,
        "failed": job.failed,
        "in_flight": job.in_flight,
        "batches": job.batches,
        "outcome": None if outcome is None else outcome_fields(outcome),
        "lease": None
        if job.lease is None
        else {
            "holder": job.lease.holder,
            "fence": job.lease.fence,
            "expires_at": job.lease.expires_at,
            "held": job.lease.held,
        },
    }


def _show_upgrade(output: Output, result: Upgrade) -> None:
    if output.json_mode:
        output.document(
            {
                "ledger": result.kind,
                "target": result.target,
                "schema": result.schema,
                "from_version": result.from_version,
                "to_version": result.to_version,
                "schema_version": result.version,
                "changed": result.changed,
                "dry_run": result.dry_run,
                "backup": result.backup,
            }
        )
        return
    where = result.target if result.schema is None else f"schema {result.schema} at {result.target}"
    if result.from_version == result.to_version:
        output.show(f"ledger {where} is already at version {result.version}, nothing to do")
        return
    replacing = " (replacing the one there)" if result.backup_replaced else ""
    if result.dry_run:
        output.show(
            f"would migrate ledger {where} from schema version {result.from_version} to "
            f"{result.to_version}, keeping the file as it is as {result.backup}{replacing}; "
            "nothing was changed"
        )
        return
    output.show(
        f"migrated ledger {where} from schema version {result.from_version} to "
        f"{result.to_version}: it is at version {result.version} now; the file as it was is "
        f"kept as {result.backup}{replacing}"
    )
