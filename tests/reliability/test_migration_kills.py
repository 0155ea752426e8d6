"""SIGKILL while a SqliteLedger migrates a version 1 file, at random moments of the backup and
of the migration's transaction: the file is then a sound ledger of version 1 (which migrates
on the next open) or of the current version, never between, and it reads back what version 1
held."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import signal
import sqlite3
import sys
from pathlib import Path

from pleo_export_async import SqliteLedger
from pleo_export_async._sqlite_ledger import SCHEMA_VERSION

from .figures import Figures
from .scale import SCALE

DATA = Path(__file__).resolve().parents[1] / "data"
FACTS = json.loads((DATA / "sqlite-ledger-v1.json").read_text())
JOB_A = next(iter(FACTS["jobs"]))
ITEMS_A = FACTS["jobs"][JOB_A]["items"]

#: Migrates fresh copies of the version 1 file, one after another, saying when each opens.
CHILD = """
import asyncio, os, shutil, sys
from pleo_export_async import SqliteLedger

source, work = sys.argv[1], sys.argv[2]

async def main():
    n = 0
    while True:
        for suffix in ("", "-wal", "-shm", ".v1.bak", ".v1.bak.partial"):
            if os.path.exists(work + suffix):
                os.remove(work + suffix)
        shutil.copyfile(source, work)
        n += 1
        print(f"open {n}", flush=True)
        async with SqliteLedger(work) as ledger:
            await ledger.open_job("00000000-0000-4000-8000-000000000000")
        print(f"closed {n}", flush=True)

asyncio.run(main())
"""


def state_of(path: Path) -> tuple[int, str]:
    """The file's schema version and SQLite's own check of it."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        (check,) = connection.execute("PRAGMA quick_check").fetchone()
    return int(version), str(check)


async def killed_while_migrating(work: Path) -> str | None:
    """Start the child, kill it at a random moment; the moment's name, or None when the kill
    landed outside an open (copying the next file, say)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(DATA / "sqlite-ledger-v1.sqlite3"),
        str(work),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    first = await asyncio.wait_for(process.stdout.readline(), timeout=60)
    assert first.startswith(b"open"), first
    await asyncio.sleep(random.uniform(0, 0.08))
    process.send_signal(signal.SIGKILL)
    rest, _ = await process.communicate()
    lines = (first + rest).decode().split()
    if lines[-2] != "open":
        return None
    backup = work.with_name(work.name + ".v1.bak")
    version, check = state_of(work)
    assert check == "ok", f"killed mid-migration, the file fails its check: {check}"
    assert version in (1, SCHEMA_VERSION), version
    if version == SCHEMA_VERSION:
        return "migrated"
    return "version 1, backup made" if backup.exists() else "version 1, no backup yet"


async def test_a_migration_killed_at_any_moment_leaves_a_sound_ledger(
    tmp_path: Path, figures: Figures
) -> None:
    """Each kill leaves version 1 or the current version, and the file then opens and reads
    back job A's 150 acknowledgements and 100 updates in flight."""
    survived = 0
    attempts = 0
    while survived < SCALE.migration_kills:
        attempts += 1
        assert attempts <= SCALE.migration_kills * 10, "too few kills landed inside an open"
        work = tmp_path / f"kill-{attempts}" / "exports.sqlite3"
        work.parent.mkdir()
        moment = await killed_while_migrating(work)
        if moment is None:
            continue
        async with SqliteLedger(work) as ledger:
            job = await ledger.open_job(JOB_A)
            assert sorted(job.in_flight_at_open()) == sorted(ITEMS_A[150:250])
            assert all(job.acknowledgements.acknowledged(i) for i in ITEMS_A[:150])
        assert state_of(work) == (SCHEMA_VERSION, "ok")
        survived += 1
        figures.crashes_survived += 1
        figures.crash_moments[f"migration: {moment}"] += 1
        shutil.rmtree(work.parent)
