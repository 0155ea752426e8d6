"""Helpers shared by the tests that drive a client against the fake server."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from pleo_export_async import (
    ApiKeyAuth,
    ItemUpdate,
    JobRun,
    PleoExportClient,
    RetryPolicy,
    UpdateReport,
)
from pleo_export_async.testing import FakeJob, FakePleo, Faults, FaultSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
PLEO_EXPORT = Path(sys.executable).with_name("pleo-export")
#: The host's Pleo and terminal settings, kept from the console script: a developer's shell
#: must not change what a test of it sees.
CONSOLE_HOST_SETTINGS = (
    "PLEO_API_KEY",
    "PLEO_ACCESS_TOKEN",
    "PLEO_BASE_URL",
    "PLEO_LEDGER",
    "PLEO_WEBHOOK_SECRET",
    "NO_COLOR",
    "COLUMNS",
)

#: Requests arriving this soon after a 429 was answered were already sent when the client read
#: it (client and fake share one event loop in these tests); no client can call them back.
IN_FLIGHT_GRACE = 0.05


def client_for(fake: FakePleo, **options: Any) -> PleoExportClient:
    options.setdefault("retry", RetryPolicy(max_attempts=6, initial_delay=0.01, max_delay=0.05))
    return PleoExportClient(fake.base_url, auth=ApiKeyAuth(fake.api_key), **options)


def successful_updates(ids: list[str]) -> list[ItemUpdate]:
    return [
        ItemUpdate.successful(
            entry_id,
            external_id=f"JE-{index}",
            external_url=f"https://erp.example.com/journal/JE-{index}",
        )
        for index, entry_id in enumerate(ids)
    ]


def mixed_updates(job: FakeJob, failed_every: int = 10) -> list[ItemUpdate]:
    """Every `failed_every`-th item failed with a realistic reason, the others successful."""
    updates = []
    for index, entry_id in enumerate(job.item_ids):
        if index % failed_every == failed_every - 1:
            updates.append(
                ItemUpdate.failed(
                    entry_id,
                    reason=f"Vendor V-{index} does not exist in the accounting system",
                    reason_type="vendor_unknown",
                )
            )
        else:
            updates.append(ItemUpdate.successful(entry_id, external_id=f"JE-{index}"))
    return updates


def console_script_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The environment of a child running the console script: this one's, without the host's
    `CONSOLE_HOST_SETTINGS`, with the repository importable and `env` added."""
    kept = {name: value for name, value in os.environ.items() if name not in CONSOLE_HOST_SETTINGS}
    return {**kept, "PYTHONPATH": str(REPO_ROOT), **env}


def run_console_script(
    args: Sequence[str], *, env: Mapping[str, str], timeout: float, cwd: Path = REPO_ROOT
) -> subprocess.CompletedProcess[str]:
    """The installed `pleo-export` with `args`, run from `cwd` (the repository) in
    `console_script_environment(env)`; stdout and stderr are pipes."""
    assert PLEO_EXPORT.exists(), f"the console script is not installed at {PLEO_EXPORT}"
    return subprocess.run(
        [str(PLEO_EXPORT), *args],
        cwd=cwd,
        env=console_script_environment(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def update_with_the_last_refused(
    fake: FakePleo, run: JobRun, updates: Sequence[ItemUpdate], error_type: str
) -> UpdateReport:
    """Sends all the updates but the last, then the last in a PUT of its own that Pleo refuses
    item by item with `error_type`; the fake's faults are cleared afterwards."""
    await run.update(updates[:-1])
    fake.faults = Faults(
        item_error=FaultSpec(at={len(fake.journal.requests) + 1}), item_error_type=error_type
    )
    try:
        return await run.update(updates[-1:])
    finally:
        fake.faults = Faults()


def put_bodies(fake: FakePleo, job_id: str) -> list[list[dict[str, Any]]]:
    return [entry.body for entry in fake.journal.puts(job_id)]


async def wait_until(
    condition: Callable[[], bool], seconds: float = 10, what: str = "the condition"
) -> None:
    """Poll `condition` (state of the fake, or of a child, which have no events to await)
    until it holds; an AssertionError naming `what` after `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            while not condition():  # noqa: ASYNC110  (the fake has no event to await)
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"{what} did not come within {seconds:g} s") from None


@attrs.frozen
class Ran:
    """What one run of the command line left behind."""

    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        """The non-blank lines of stderr."""
        return [line for line in self.stderr.splitlines() if line.strip()]

    @property
    def out_lines(self) -> list[str]:
        """The non-blank lines of stdout."""
        return [line for line in self.stdout.splitlines() if line.strip()]

    @property
    def flat(self) -> str:
        """stdout and stderr with every run of whitespace made one space (undoes wrapping)."""
        return " ".join(f"{self.stdout}\n{self.stderr}".split())


@contextlib.contextmanager
def served_in_a_thread(**options: Any) -> Iterator[FakePleo]:
    """A FakePleo on loopback served by an event loop of its own in a background thread, for
    tests that run a command (which calls asyncio.run) in the test's own thread or a child."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-pleo", daemon=True)
    thread.start()
    server = FakePleo(**options)
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=10)
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


# -- Pleo's job order (R19) ---------------------------------------------------------------------


def company(number: int) -> str:
    """A company ID of its own for each number."""
    return f"00000000-0000-4000-8000-{number:012d}"


def created_minutes_ago(
    fake: FakePleo, minutes: int, company_id: str, *, items: int = 60
) -> FakeJob:
    """A pending job of `items` items whose `createdAt` is `minutes` before now."""
    fake.advance_clock(-60 * minutes)
    try:
        return fake.create_job(items=items, status="pending", company_id=company_id)
    finally:
        fake.advance_clock(60 * minutes)


def assert_in_pleos_order(fake: FakePleo, jobs: list[FakeJob]) -> None:
    """Per company, each job (oldest first) was started only after the one before it got
    its final event: never two in progress at once, the oldest first (from the fake's journal)."""
    by_company: dict[str, list[FakeJob]] = {}
    for job in jobs:
        by_company.setdefault(job.company_id, []).append(job)
    for company_jobs in by_company.values():
        for earlier, later in itertools.pairwise(company_jobs):
            (closed,) = fake.journal.final_events_applied(earlier.id)
            assert closed.answered_at is not None
            started = fake.journal.events(later.id)[0]
            assert started.body["event"] == "started"
            assert started.received_at > closed.answered_at, (earlier.id, later.id)
