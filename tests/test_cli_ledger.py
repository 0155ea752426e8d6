"""`pleo-export ledger inspect` and `ledger upgrade` as a user runs them: the installed console
script in a child process, on copies of the schema version 1 test file (tests/data, written by
version 1's own code; the facts in sqlite-ledger-v1.json) and on PostgresLedger schemas.

`inspect` only reads (the file's bytes, and the files beside it, stay as they were, even while a
connector holds it); `upgrade` migrates a version 1 file and keeps its backup; a target that is
not a ledger is one line and exit 2; PostgreSQL out of reach is exit 3; no DSN password is ever
printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click
import pytest

from helpers import REPO_ROOT, run_console_script
from pleo_export_async._cli._app import cli

VERSION_1_FILE = REPO_ROOT / "tests" / "data" / "sqlite-ledger-v1.sqlite3"

# The jobs of the version 1 file (tests/data/make_sqlite_ledger_v1.py).
JOB_A = "0000000a-0000-4000-8000-000000000000"
JOB_B = "0000000b-0000-4000-8000-000000000000"
JOB_C = "0000000c-0000-4000-8000-000000000000"
JOB_D = "0000000d-0000-4000-8000-000000000000"
PASSWORD = "ledger-cli-pw-5e1a"

#: A connector in a child process: it opens the ledger with SqliteLedger (which migrates an
#: older file), records job D's final event intent, says so, and holds the file until its stdin
#: closes.
CONNECTOR = r"""
import asyncio, sys
from pleo_export_async import SqliteLedger
from pleo_export_async._enums import JobEvent
from pleo_export_async._models import JobEventRequest

async def main():
    async with SqliteLedger(sys.argv[1]) as ledger:
        job = await ledger.open_job(sys.argv[2])
        await job.record_event_intent(JobEventRequest(JobEvent.COMPLETED, sys.argv[2]))
        print("holding", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""
#: A process holding the ledger's lock as a connector does while it has the file open, without
#: opening it (so a version 1 file stays version 1).
LOCK_HOLDER = r"""
import sys
from pleo_export_async._file_lock import FileLock

lock = FileLock(sys.argv[1])
lock.acquire()
print("holding", flush=True)
sys.stdin.read()
lock.release()
"""


def pleo_export(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The installed console script; stdout and stderr are pipes."""
    ran = run_console_script(args, env={}, timeout=timeout)
    assert PASSWORD not in ran.stdout + ran.stderr
    assert "Traceback" not in ran.stderr
    return ran


def document(ran: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert ran.returncode == 0, ran.stderr
    parsed: dict[str, Any] = json.loads(ran.stdout)
    return parsed


def jobs_of(inspected: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["job_id"]: job for job in inspected["jobs"]}


def counts(job: dict[str, Any]) -> tuple[int, int, int, int]:
    return job["acknowledged"], job["successful"], job["failed"], job["in_flight"]


@pytest.fixture
def v1_copy(tmp_path: Path) -> Path:
    """A copy of the version 1 test file, alone in a folder of its own."""
    folder = tmp_path / "ledgers"
    folder.mkdir()
    path = folder / "exports.sqlite3"
    shutil.copyfile(VERSION_1_FILE, path)
    return path


def listing(folder: Path) -> dict[str, bytes]:
    """Each entry of the folder, with a file's bytes."""
    return {
        path.name: path.read_bytes() if path.is_file() else b"(a folder)"
        for path in sorted(folder.iterdir())
    }


@pytest.fixture
def holder() -> Iterator[Any]:
    """Start a child process running a script with arguments; it is told to stop, and waited
    for, at the end of the test."""
    started: list[subprocess.Popen[str]] = []

    def start(script: str, *args: str) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        child = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        started.append(child)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "holding"
        return child

    yield start
    for child in started:
        assert child.stdin is not None
        child.stdin.close()
        assert child.wait(timeout=30) == 0


# -- SQLite ----------------------------------------------------------------------------------------


def test_inspect_of_a_version_1_file_shows_its_jobs_and_changes_nothing(v1_copy: Path) -> None:
    """`inspect` of a version 1 file says it is version 1 and migrates to 2, lists each job with
    its state and counts as version 1 reads them, in a table or as JSON, and leaves the file's
    bytes as they were with no .bak, -lock, -wal or -shm file beside it."""
    before = listing(v1_copy.parent)
    table = pleo_export("ledger", "inspect", str(v1_copy))
    assert table.returncode == 0, table.stderr
    assert "schema version 1" in table.stdout
    assert "migrates to 2 when opened, or with `pleo-export ledger upgrade`" in table.stdout
    for job_id in (JOB_A, JOB_B, JOB_C):
        assert job_id in table.stdout
    [row_a] = [line for line in table.stdout.splitlines() if JOB_A in line]
    assert "working" in row_a
    assert "150" in row_a
    assert "100" in row_a

    inspected = document(pleo_export("ledger", "inspect", str(v1_copy), "--json"))
    assert (inspected["ledger"], inspected["schema_version"]) == ("sqlite", 1)
    assert (inspected["version_status"], inspected["migrates_to"]) == ("older", 2)
    jobs = jobs_of(inspected)
    assert set(jobs) == {JOB_A, JOB_B, JOB_C}
    assert counts(jobs[JOB_A]) == (150, 150, 0, 100)
    assert jobs[JOB_A]["state"] == "working"
    assert jobs[JOB_A]["batches"] == 4  # each recorded in flight once before it was sent
    assert counts(jobs[JOB_B]) == (120, 108, 12, 0)
    assert (jobs[JOB_B]["state"], jobs[JOB_B]["event"]) == (
        "event_intended",
        "completed_with_errors",
    )
    assert jobs[JOB_B]["outcome"] is None
    assert jobs[JOB_C]["state"] == "closed"
    assert jobs[JOB_C]["outcome"]["event"] == "completed"
    assert listing(v1_copy.parent) == before


def test_upgrade_dry_run_says_what_would_happen_and_changes_nothing(v1_copy: Path) -> None:
    """`upgrade --dry-run` of a version 1 file names both versions and the backup it would keep,
    and leaves the folder exactly as it was."""
    before = listing(v1_copy.parent)
    ran = pleo_export("ledger", "upgrade", str(v1_copy), "--dry-run")
    assert ran.returncode == 0, ran.stderr
    assert "from schema version 1 to 2" in ran.stdout
    assert f"{v1_copy}.v1.bak" in ran.stdout
    planned = document(pleo_export("ledger", "upgrade", str(v1_copy), "--dry-run", "--json"))
    assert (planned["from_version"], planned["to_version"], planned["schema_version"]) == (1, 2, 1)
    assert (planned["dry_run"], planned["changed"]) == (True, False)
    assert planned["backup"] == f"{v1_copy}.v1.bak"
    assert listing(v1_copy.parent) == before


def test_upgrade_migrates_to_version_2_and_keeps_a_version_1_backup(v1_copy: Path) -> None:
    """`upgrade` takes a version 1 file to version 2, says so, keeps `<path>.v1.bak` at version
    1, and run again has nothing to do."""
    ran = pleo_export("ledger", "upgrade", str(v1_copy))
    assert ran.returncode == 0, ran.stderr
    assert "version 2 now" in ran.stdout
    backup = Path(f"{v1_copy}.v1.bak")
    assert str(backup) in ran.stdout
    with (
        contextlib.closing(sqlite3.connect(v1_copy)) as upgraded,
        contextlib.closing(sqlite3.connect(backup)) as kept,
    ):
        assert upgraded.execute("PRAGMA user_version").fetchone() == (2,)
        assert kept.execute("PRAGMA user_version").fetchone() == (1,)
    again = pleo_export("ledger", "upgrade", str(v1_copy))
    assert again.returncode == 0, again.stderr
    assert "already at version 2, nothing to do" in again.stdout


def test_inspect_after_upgrade_shows_version_2_and_each_jobs_state(v1_copy: Path) -> None:
    """After `upgrade`, `inspect` shows version 2 as current; job A has 150 updates
    acknowledged and 100 in flight, job B's final event is intended and not delivered, job C
    is closed, completed."""
    assert pleo_export("ledger", "upgrade", str(v1_copy)).returncode == 0
    inspected = document(pleo_export("ledger", "inspect", str(v1_copy), "--json"))
    assert (inspected["schema_version"], inspected["version_status"]) == (2, "current")
    jobs = jobs_of(inspected)
    assert counts(jobs[JOB_A]) == (150, 150, 0, 100)
    assert jobs[JOB_A]["state"] == "working"
    assert counts(jobs[JOB_B]) == (120, 108, 12, 0)
    assert (jobs[JOB_B]["state"], jobs[JOB_B]["outcome"]) == ("event_intended", None)
    assert jobs[JOB_C]["state"] == "closed"
    assert jobs[JOB_C]["outcome"]["event"] == "completed"
    assert jobs[JOB_C]["outcome"]["successful"] == 40
    table = pleo_export("ledger", "inspect", str(v1_copy))
    assert "schema version 2: this library's" in table.stdout
    [row_b] = [line for line in table.stdout.splitlines() if JOB_B in line]
    assert "completed_with_errors intended, not known delivered" in row_b
    [row_c] = [line for line in table.stdout.splitlines() if JOB_C in line]
    assert "closed: completed" in row_c


def test_inspect_works_while_a_connector_holds_the_file(v1_copy: Path, holder: Any) -> None:
    """While another process holds the file with SqliteLedger, `inspect` reads it, the
    connector's latest commit (still in the write-ahead log) included, and leaves the lock
    file as the holder wrote it."""
    holder(CONNECTOR, str(v1_copy), JOB_D)
    lock = Path(f"{v1_copy}-lock")
    held_by = lock.read_bytes()
    inspected = document(pleo_export("ledger", "inspect", str(v1_copy), "--json"))
    assert inspected["schema_version"] == 2  # the connector migrated it on opening it
    jobs = jobs_of(inspected)
    assert (jobs[JOB_D]["state"], jobs[JOB_D]["event"]) == ("event_intended", "completed")
    assert counts(jobs[JOB_A]) == (150, 150, 0, 100)
    assert lock.read_bytes() == held_by


def test_upgrade_of_a_file_another_process_holds_exits_3_naming_it(
    v1_copy: Path, holder: Any
) -> None:
    """`upgrade` of a version 1 file whose lock another process holds exits 3 with one line
    naming that process, and the file stays version 1 with no backup; `inspect` still reads
    it."""
    child = holder(LOCK_HOLDER, str(v1_copy))
    ledger_bytes = v1_copy.read_bytes()
    ran = pleo_export("ledger", "upgrade", str(v1_copy))
    assert ran.returncode == 3
    [line] = ran.stderr.splitlines()
    assert f"pid {child.pid}" in line
    assert ran.stdout == ""
    assert v1_copy.read_bytes() == ledger_bytes
    assert not Path(f"{v1_copy}.v1.bak").exists()
    assert document(pleo_export("ledger", "inspect", str(v1_copy), "--json"))["schema_version"] == 1


def _text(path: Path) -> None:
    path.write_text("accountingEntryId,status\n")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _other_sqlite(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")


def _folder(path: Path) -> None:
    path.mkdir()


@pytest.mark.parametrize("command", ["inspect", "upgrade"])
@pytest.mark.parametrize(
    "make",
    [None, _text, _empty, _other_sqlite, _folder],
    ids=["missing", "text-file", "empty-file", "another-applications-sqlite", "a-folder"],
)
def test_a_target_that_is_not_a_ledger_is_one_line_and_exit_2(
    tmp_path: Path, command: str, make: Any
) -> None:
    """A missing file, a file that is not SQLite, an empty file, another application's SQLite
    file or a folder gets one error line naming it and exit 2, and nothing is created or
    changed."""
    target = tmp_path / "target.sqlite3"
    if make is not None:
        make(target)
    before = listing(tmp_path)
    ran = pleo_export("ledger", command, str(target))
    assert ran.returncode == 2
    [line] = ran.stderr.splitlines()
    assert line.startswith("pleo-export: error: ")
    assert str(target) in line
    assert ran.stdout == ""
    assert listing(tmp_path) == before


def test_a_newer_file_is_shown_without_its_jobs_and_upgrade_refuses_it(v1_copy: Path) -> None:
    """A file of a schema version newer than the library's is shown as newer, without its jobs;
    `upgrade` refuses it with exit 2 naming both versions and leaves it as it was."""
    with contextlib.closing(sqlite3.connect(v1_copy)) as connection:
        connection.execute("PRAGMA user_version = 7")
    before = listing(v1_copy.parent)
    inspected = document(pleo_export("ledger", "inspect", str(v1_copy), "--json"))
    assert (inspected["schema_version"], inspected["version_status"]) == (7, "newer")
    assert inspected["jobs"] is None
    ran = pleo_export("ledger", "upgrade", str(v1_copy))
    assert ran.returncode == 2
    [line] = ran.stderr.splitlines()
    assert "version 7" in line
    assert "library's 2" in line
    assert listing(v1_copy.parent) == before


def test_every_ledger_option_has_help_text() -> None:
    """`ledger` and each of its commands, and every option of theirs, carry help text."""
    group = cli.commands["ledger"]
    assert isinstance(group, click.Group)
    assert group.help
    assert set(group.commands) == {"inspect", "upgrade"}
    for command in group.commands.values():
        assert command.help, command.name
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{command.name} {param.opts}"


# -- PostgreSQL ------------------------------------------------------------------------------------


def with_password(dsn: str) -> tuple[str, str]:
    """The DSN with a password in it (the tests' cluster trusts every local login, so it is not
    checked), and that password; a DSN with one already keeps it."""
    parts = urlsplit(dsn)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if colon and password:
        return dsn, password
    netloc = f"{user or 'postgres'}:{PASSWORD}@{hosts}"
    return urlunsplit(parts._replace(netloc=netloc)), PASSWORD


async def _execute(dsn: str, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _rows_of(dsn: str, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the ledger's tables, and whether the schema exists at all."""
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        rows: dict[str, list[tuple[Any, ...]]] = {
            "schema": [
                tuple(row)
                for row in await connection.fetch(
                    "SELECT nspname FROM pg_namespace WHERE nspname = $1", schema
                )
            ]
        }
        if rows["schema"]:
            for table in ("meta", "batch", "acknowledgement", "final_event", "lease"):
                found = await connection.fetch(f"SELECT * FROM {schema}.{table} ORDER BY 1")
                rows[table] = [tuple(row) for row in found]
        return rows
    finally:
        await connection.close()


async def _record_a_job(dsn: str, schema: str, job_id: str) -> None:
    """With PostgresLedger: one batch of three updates, two of them acknowledged, and the final
    event's intent."""
    from batching import new_tracker, planned
    from pleo_export_async import ItemUpdate, PostgresLedger
    from pleo_export_async._codec import encode_item_updates
    from pleo_export_async._enums import JobEvent
    from pleo_export_async._models import JobEventRequest

    entry_ids = [f"aaaaaaaa-0000-4000-8000-00000000000{n}" for n in range(3)]
    async with PostgresLedger(dsn, schema=schema) as ledger:
        job = await ledger.open_job(job_id)
        async with job.turn():
            tracker = new_tracker(job.acknowledgements)
            batch = planned(tracker, [ItemUpdate.successful(entry_id) for entry_id in entry_ids])
            assert batch.updates is not None
            await job.record_in_flight(batch, encode_item_updates(batch.updates))
            tracker.reconcile(batch, entry_ids[:2], ())
            await job.record_acknowledged(batch)
            await job.record_event_intent(JobEventRequest(JobEvent.COMPLETED, job_id))


@pytest.fixture
def postgres() -> Iterator[tuple[str, str]]:
    """PLEO_TEST_POSTGRES_DSN and a schema name of this test's own, dropped after it."""
    dsn = os.environ.get("PLEO_TEST_POSTGRES_DSN")
    if not dsn:
        pytest.skip("PLEO_TEST_POSTGRES_DSN is not set")
    schema = f"test_cli_{uuid.uuid4().hex[:12]}"
    yield dsn, schema
    asyncio.run(_execute(dsn, f"DROP SCHEMA IF EXISTS {schema} CASCADE"))


def test_postgres_inspect_shows_the_jobs_and_never_the_password(
    postgres: tuple[str, str],
) -> None:
    """`inspect DSN --schema S` of a schema PostgresLedger made shows version 1 and the job it
    recorded with its counts and lease, in a table and as JSON, shows the DSN with its password
    replaced, and writes no row."""
    dsn, schema = postgres
    job_id = str(uuid.uuid4())
    asyncio.run(_record_a_job(dsn, schema, job_id))
    secret_dsn, password = with_password(dsn)
    before = asyncio.run(_rows_of(dsn, schema))
    table = pleo_export("ledger", "inspect", secret_dsn, "--schema", schema)
    assert table.returncode == 0, table.stderr
    assert password not in table.stdout + table.stderr
    assert ":***@" in table.stdout
    assert "schema version 1: this library's" in table.stdout
    [row] = [line for line in table.stdout.splitlines() if job_id in line]
    assert "completed intended, not known delivered" in row
    inspected = document(pleo_export("ledger", "inspect", secret_dsn, "--schema", schema, "--json"))
    assert password not in json.dumps(inspected)
    assert (inspected["ledger"], inspected["schema"], inspected["schema_version"]) == (
        "postgresql",
        schema,
        1,
    )
    [job] = inspected["jobs"]
    assert job["job_id"] == job_id
    assert counts(job) == (2, 2, 0, 1)
    assert (job["state"], job["event"], job["batches"]) == ("event_intended", "completed", 1)
    assert job["lease"]["held"] is False  # let go when the ledger closed
    assert asyncio.run(_rows_of(dsn, schema)) == before


def test_postgres_upgrade_has_nothing_to_do_at_version_1(postgres: tuple[str, str]) -> None:
    """`upgrade` of a PostgresLedger schema, with or without --dry-run, says it is already at
    version 1 and changes nothing."""
    dsn, schema = postgres
    asyncio.run(_record_a_job(dsn, schema, str(uuid.uuid4())))
    before = asyncio.run(_rows_of(dsn, schema))
    for dry_run in ([], ["--dry-run"]):
        ran = pleo_export("ledger", "upgrade", dsn, "--schema", schema, *dry_run)
        assert ran.returncode == 0, ran.stderr
        assert "already at version 1, nothing to do" in ran.stdout
    assert asyncio.run(_rows_of(dsn, schema)) == before


def test_postgres_schema_without_a_ledger_is_exit_2_and_not_created(
    postgres: tuple[str, str],
) -> None:
    """`inspect` and `upgrade` of a schema holding no ledger exit 2 with one line naming it, and
    do not create it (PostgresLedger would)."""
    dsn, schema = postgres
    for command in ("inspect", "upgrade"):
        ran = pleo_export("ledger", command, dsn, "--schema", schema)
        assert ran.returncode == 2
        [line] = ran.stderr.splitlines()
        assert schema in line
    assert asyncio.run(_rows_of(dsn, schema)) == {"schema": []}


def test_unreachable_postgres_exits_3_without_the_password() -> None:
    """A DSN nothing listens on gives exit 3 and one line naming the DSN with its password
    replaced."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dsn = f"postgresql://exports:{PASSWORD}@127.0.0.1:{port}/ledger"
    for command in ("inspect", "upgrade"):
        ran = pleo_export("ledger", command, dsn)
        assert ran.returncode == 3
        [line] = ran.stderr.splitlines()
        assert f"postgresql://exports:***@127.0.0.1:{port}/ledger" in line
