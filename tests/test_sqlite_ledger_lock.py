"""One process per SqliteLedger file: a second opener, in another process or this one, is refused
at once with LedgerError naming the holder, and the file is free again once the holder closes it
or dies, however it dies."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pleo_export_async import LedgerError, SqliteLedger

REPO_ROOT = Path(__file__).resolve().parents[1]
JOB = "11111111-1111-4111-8111-111111111111"

#: A process that opens the ledger, says `open`, and holds it until stdin closes.
HOLDER = """
import asyncio, sys
from pleo_export_async import SqliteLedger

async def main():
    async with SqliteLedger(sys.argv[1]) as ledger:
        await ledger.open_job("11111111-1111-4111-8111-111111111111")
        print("open", flush=True)
        await asyncio.to_thread(sys.stdin.read)

asyncio.run(main())
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding `tmp_path / "ledger.sqlite3"` open."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "ledger.sqlite3")],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != "open":
        process.kill()
        raise AssertionError(f"the holder did not open the ledger: {process.communicate()[1]}")
    yield process
    if process.poll() is None:
        process.kill()
    process.communicate()


async def test_a_second_process_is_refused_naming_the_holders_pid_and_host(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    """While another process has the file open, opening it raises LedgerError at once, naming
    that process's pid and host, and writes nothing."""
    path = tmp_path / "ledger.sqlite3"
    size = path.stat().st_size
    ledger = SqliteLedger(path)
    with pytest.raises(LedgerError) as raised:
        await ledger.open_job(JOB)
    await ledger.close()
    message = str(raised.value)
    assert f"pid {holder.pid}" in message
    assert socket.gethostname() in message
    assert str(path) in message
    assert path.stat().st_size == size


async def test_the_file_is_free_once_its_holder_is_killed(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    """A holder killed with SIGKILL leaves no lock behind: the next opener gets the file."""
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    async with SqliteLedger(tmp_path / "ledger.sqlite3") as ledger:
        await ledger.open_job(JOB)


async def test_a_second_ledger_of_the_same_file_in_this_process_is_refused(
    tmp_path: Path,
) -> None:
    """Two SqliteLedger objects of one file in one process would be two writers too: the second
    is refused naming this process, and gets the file once the first is closed."""
    path = tmp_path / "ledger.sqlite3"
    first = SqliteLedger(path)
    await first.open_job(JOB)
    second = SqliteLedger(path)
    with pytest.raises(LedgerError, match=f"pid {os.getpid()} "):
        await second.open_job(JOB)
    await second.close()
    await first.close()
    async with SqliteLedger(path) as third:
        await third.open_job(JOB)


async def test_closing_lets_the_next_process_open_the_file(tmp_path: Path) -> None:
    """A ledger closed in this process leaves the file to the next opener, in a new process."""
    path = tmp_path / "ledger.sqlite3"
    async with SqliteLedger(path) as ledger:
        await ledger.open_job(JOB)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        str(path),
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(b""), timeout=60)
    assert process.returncode == 0, err
    assert out.decode().strip() == "open"
