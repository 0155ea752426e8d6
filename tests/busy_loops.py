"""A pytest plugin that starves the tests of CPU: with PLEO_BUSY_LOOPS set, processes that do
nothing but spin run at normal priority beside the whole session, one per core by default.

A test that passes only on an idle machine is a bug: under load lease renewals come late, kills
land at other moments, answers come nearer their timeouts. `make loaded` runs the lease, crash
and chaos tests this way.

    PLEO_BUSY_LOOPS=cores   (or 0) one loop per core, os.cpu_count()
    PLEO_BUSY_LOOPS=3       three loops

The terminal summary says how many loops ran, for how long, and how much CPU they took.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

ENVIRONMENT = "PLEO_BUSY_LOOPS"

# As `while True: pass`, but it asks every few milliseconds whether pytest is still its parent:
# a pytest killed with SIGKILL runs none of the cleanup below, and its loops must not outlive it.
_LOOP = (
    "import os, sys\n"
    "parent = int(sys.argv[1])\n"
    "while os.getppid() == parent:\n"
    "    for _ in range(200_000):\n"
    "        pass\n"
)


def wanted() -> int:
    """How many loops the environment asks for; 0 when PLEO_BUSY_LOOPS is unset or empty."""
    value = os.environ.get(ENVIRONMENT, "").strip().lower()
    if not value:
        return 0
    if value in ("cores", "0"):
        return os.cpu_count() or 1
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise pytest.UsageError(
            f"{ENVIRONMENT} must be a number of loops, or 'cores' (or 0) for one per core; "
            f"got {value!r}"
        )
    return count


@dataclass(repr=False)
class BusyLoops:
    """The loops of this session; `stop()` may be called any number of times."""

    count: int = 0
    nice: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    died_early: int = 0
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _group: int | None = None
    _started: float | None = None

    def __repr__(self) -> str:
        return f"<BusyLoops: {len(self._processes)} running of {self.count}>"

    @property
    def ran(self) -> bool:
        return self._started is not None

    def start(self, count: int) -> None:
        self.count = count
        # Registered before the first loop starts, so that none can be left behind.
        atexit.register(self.stop)
        self._started = time.monotonic()
        for _ in range(count):
            # One process group for all of them: one signal ends them, and a Ctrl-C in the
            # terminal goes to pytest alone, whose cleanup then ends them.
            process = subprocess.Popen(
                [sys.executable, "-c", _LOOP, str(os.getpid())],
                stdin=subprocess.DEVNULL,
                process_group=0 if self._group is None else self._group,
            )
            if self._group is None:
                self._group = process.pid
            self._processes.append(process)
        self.nice = os.getpriority(os.PRIO_PROCESS, self._processes[0].pid) if count else 0

    def stop(self) -> None:
        if not self._processes:
            return
        assert self._started is not None
        self.seconds = time.monotonic() - self._started
        self.died_early = sum(process.poll() is not None for process in self._processes)
        if self._group is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._group, signal.SIGKILL)
        for process in self._processes:
            # Also one by one: a loop whose group could not be joined would escape killpg.
            if process.returncode is None:
                # os.kill, not process.kill(): that polls first, and may reap the loop before
                # wait4 could read its CPU time.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                # wait4 rather than wait(): the CPU time a loop got is the proof it competed.
                _, status, usage = os.wait4(process.pid, 0)
                process.returncode = os.waitstatus_to_exitcode(status)
                self.cpu_seconds += usage.ru_utime + usage.ru_stime
        self._processes.clear()

    def summary(self) -> str:
        cores = self.cpu_seconds / self.seconds if self.seconds else 0.0
        line = (
            f"{self.count} busy loop{'s' if self.count != 1 else ''} at nice {self.nice} beside "
            f"the tests for {self.seconds:,.0f} s on {os.cpu_count()} cores; they took "
            f"{self.cpu_seconds:,.0f} CPU-seconds, {cores:.1f} cores' worth"
        )
        if self.died_early:
            line += f"; {self.died_early} of them had stopped before the end"
        return line


#: This session's loops: module-level so that the terminal summary and the figures find them.
LOOPS = BusyLoops()


def pytest_configure(config: pytest.Config) -> None:
    wanted()  # a bad value stops the session before anything runs


@pytest.fixture(scope="session", autouse=True)
def busy_loops() -> Iterator[BusyLoops]:
    """With PLEO_BUSY_LOOPS set, the loops spinning from before the first test to after the
    last one."""
    count = wanted()
    if count:
        LOOPS.start(count)
    try:
        yield LOOPS
    finally:
        LOOPS.stop()


def pytest_unconfigure(config: pytest.Config) -> None:
    # The fixture's teardown does not run when the session ends abnormally (an internal error, a
    # second Ctrl-C); this does, and atexit after it.
    LOOPS.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if LOOPS.ran:
        terminalreporter.write_sep("=", "busy loops")
        terminalreporter.write_line(LOOPS.summary())
