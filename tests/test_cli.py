"""`pleo-export` driven through click's CliRunner against a fake Pleo served from its own thread.

A command calls `asyncio.run`, so it cannot run inside the test's event loop: the `fake` fixture
of this module serves FakePleo from an event loop in a background thread, and the tests are
plain functions. The interrupted `push` runs the console script in a subprocess to get Ctrl+C.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from helpers import Ran, served_in_a_thread
from pleo_export_async import ItemUpdate
from pleo_export_async._cli import main
from pleo_export_async._cli._app import cli
from pleo_export_async.testing import FakeJob, FakePleo, Faults, instant_retries

#: The fake's API key: no output of any command may show it.
SECRET = "pleo-cli-secret-4b1f9d2e77"
REPO_ROOT = Path(__file__).resolve().parents[1]
#: What the `pleo-export` console script runs.
CONSOLE_SCRIPT = "import sys; from pleo_export_async._cli import main; sys.exit(main())"
#: Settings of the host environment that would change what a command does or shows.
HOST_SETTINGS = (
    "PLEO_API_KEY",
    "PLEO_ACCESS_TOKEN",
    "PLEO_BASE_URL",
    "NO_COLOR",
    "FORCE_COLOR",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
    "COLUMNS",
    "LINES",
)
#: An SGR escape sequence (colours, bold, ...), with its parameters.
SGR = re.compile(r"\x1b\[([0-9;]*)m")
EXPORTED_AT = datetime(2026, 3, 1, 9, 30, 15, tzinfo=timezone(timedelta(hours=1)))


@pytest.fixture
def fake() -> Iterator[FakePleo]:
    """A FakePleo on loopback, served by an event loop of its own in a background thread."""
    with served_in_a_thread(seed=7, api_key=SECRET) as server:
        yield server


# -- running commands ------------------------------------------------------------------------------


def environment(overrides: Mapping[str, str | None] | None) -> dict[str, str | None]:
    """The environment of a run: the fake's API key, none of the host's settings, overrides."""
    env: dict[str, str | None] = dict.fromkeys(HOST_SETTINGS)
    env["PLEO_API_KEY"] = SECRET
    env.update(overrides or {})
    return env


def assert_no_credential(ran: Ran, env: Mapping[str, str | None]) -> None:
    for name in ("PLEO_API_KEY", "PLEO_ACCESS_TOKEN"):
        credential = env.get(name)
        if credential:
            assert credential not in ran.stdout
            assert credential not in ran.stderr
    assert SECRET not in ran.stdout
    assert SECRET not in ran.stderr


def pleo(
    target: FakePleo | str | None, *args: str, env: Mapping[str, str | None] | None = None
) -> Ran:
    """`pleo-export [--base-url URL] ARGS` through CliRunner, with zero backoff waits."""
    base: list[str] = []
    if target is not None:
        base = ["--base-url", target if isinstance(target, str) else target.base_url]
    full_env = environment(env)
    with instant_retries():
        result = CliRunner().invoke(cli, [*base, *args], env=full_env, catch_exceptions=False)
    ran = Ran(result.exit_code, result.stdout, result.stderr)
    assert_no_credential(ran, full_env)
    return ran


def console_script(*args: str, env: Mapping[str, str | None] | None = None) -> Ran:
    """The `pleo-export` console script's main(), in-process with CliRunner's isolation."""
    full_env = environment(env)
    with instant_retries(), CliRunner().isolation(env=full_env) as streams:
        code = main(list(args))
        sys.stdout.flush()
        sys.stderr.flush()
        ran = Ran(code, streams[0].getvalue().decode(), streams[1].getvalue().decode())
    assert_no_credential(ran, full_env)
    return ran


def spawn(fake: FakePleo, *args: str) -> subprocess.Popen[str]:
    """The console script in a child process, pointed at the fake by PLEO_BASE_URL."""
    env = {name: value for name, value in os.environ.items() if name not in HOST_SETTINGS}
    env.update(
        PLEO_API_KEY=SECRET,
        PLEO_BASE_URL=fake.base_url,
        NO_COLOR="1",
        PYTHONPATH=str(REPO_ROOT),
    )
    return subprocess.Popen(
        [sys.executable, "-c", CONSOLE_SCRIPT, *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: str, check: Callable[[], bool], timeout: float = 20) -> None:
    """Poll `check()` (state of the fake in its thread) until it is true."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {condition}")
        time.sleep(0.002)


def signalled(
    process: subprocess.Popen[str],
    signum: int,
    condition: str,
    check: Callable[[], bool],
    timeout: float,
) -> Ran:
    """What the child left behind after `signum`, sent once `check()` holds; killed if it
    outlives `timeout` after the signal."""
    try:
        wait_for(condition, check)
        process.send_signal(signum)
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return Ran(process.returncode, out, err)


# -- results files ---------------------------------------------------------------------------------


def api_row(update: ItemUpdate) -> dict[str, str]:
    """The update as a row of a results file, with the API's camelCase field names."""
    fields = {
        "accountingEntryId": update.accounting_entry_id,
        "status": update.status.value,
        "exportedAt": update.exported_at.isoformat() if update.exported_at else None,
        "externalId": update.external_id,
        "externalUrl": update.external_url,
        "failureReason": update.failure_reason,
        "failureReasonType": (
            update.failure_reason_type.value if update.failure_reason_type else None
        ),
    }
    return {name: value for name, value in fields.items() if value is not None}


SNAKE_CASE = {
    "accountingEntryId": "accounting_entry_id",
    "status": "status",
    "exportedAt": "exported_at",
    "externalId": "external_id",
    "externalUrl": "external_url",
    "failureReason": "failure_reason",
    "failureReasonType": "failure_reason_type",
}


def write_json_lines(path: Path, updates: Sequence[ItemUpdate]) -> Path:
    path.write_text("".join(json.dumps(api_row(update)) + "\n" for update in updates))
    return path


def write_csv(path: Path, updates: Sequence[ItemUpdate]) -> Path:
    """A snake_case CSV; a field an update does not have is an empty cell."""
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(SNAKE_CASE.values()))
        writer.writeheader()
        for update in updates:
            writer.writerow({SNAKE_CASE[name]: value for name, value in api_row(update).items()})
    return path


def results_for(job: FakeJob, failed_every: int = 0) -> list[ItemUpdate]:
    """Every item of the job successful, with every field, but every `failed_every`-th failed."""
    updates = []
    for index, entry_id in enumerate(job.item_ids):
        if failed_every and index % failed_every == failed_every - 1:
            updates.append(
                ItemUpdate.failed(
                    entry_id,
                    reason=f"Account No. {6800 + index} does not exist in the Accounting System",
                    reason_type="account_unknown",
                )
            )
        else:
            updates.append(
                ItemUpdate.successful(
                    entry_id,
                    external_id=f"JE-{index}",
                    external_url=f"https://erp.example.com/journal/JE-{index}",
                    exported_at=EXPORTED_AT + timedelta(seconds=index),
                )
            )
    return updates


def assert_landed(fake: FakePleo, job: FakeJob, updates: Sequence[ItemUpdate]) -> None:
    """Pleo holds each update with its status and every field as the file gave it (a field
    without a value is left out of the item)."""
    for update in updates:
        item = fake.item(job.id, update.accounting_entry_id)
        assert item["status"] == update.status.value
        assert item.get("externalId") == update.external_id
        assert item.get("externalUrl") == update.external_url
        assert item.get("failureReason") == update.failure_reason
        expected_type = update.failure_reason_type.value if update.failure_reason_type else None
        assert item.get("failureReasonType") == expected_type
        exported_at = item.get("exportedAt")
        if update.exported_at is None:
            assert exported_at is None
        else:
            assert isinstance(exported_at, str)
            assert datetime.fromisoformat(exported_at) == update.exported_at


def final_events(fake: FakePleo, job_id: str) -> list[str]:
    """The final events sent for the job (whether or not they changed it)."""
    return [
        entry.body["event"]
        for entry in fake.journal.events(job_id)
        if isinstance(entry.body, dict) and entry.body.get("event") != "started"
    ]


def push_results(
    fake: FakePleo, tmp_path: Path, job: FakeJob, updates: Sequence[ItemUpdate], *extra: str
) -> Ran:
    path = write_json_lines(tmp_path / f"{job.id}.jsonl", updates)
    return pleo(fake, "push", job.id, str(path), *extra)


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- jobs and items --------------------------------------------------------------------------------


def test_jobs_prints_a_table_of_the_open_jobs(fake: FakePleo) -> None:
    """`jobs` shows the pending and in-progress jobs in a table on stdout, piped or not, and
    nothing on stderr."""
    pending = fake.create_job(items=3, status="pending")
    running = fake.create_job(items=5, status="in_progress")
    done = fake.create_job(items=2, status="completed")
    ran = pleo(fake, "jobs", env={"COLUMNS": "200"})
    assert ran.code == 0
    assert ran.stderr == ""
    rows = {
        line.split()[1]: line for line in ran.out_lines if pending.id in line or running.id in line
    }
    assert set(rows) == {pending.id, running.id}
    assert "pending" in rows[pending.id]
    assert " 3 " in rows[pending.id]
    assert "in_progress" in rows[running.id]
    assert " 5 " in rows[running.id]
    assert done.id not in ran.stdout


def test_a_piped_table_keeps_every_cell_whole(fake: FakePleo, tmp_path: Path) -> None:
    """Piped with no COLUMNS, the jobs and items tables are as wide as their cells: whole job
    IDs, whole dates and whole failure reasons, nothing cut to 80 columns."""
    job = fake.create_job(items=2, status="in_progress")
    assert push_results(fake, tmp_path, job, results_for(job, failed_every=2)).code == 0
    listed = pleo(fake, "jobs")
    assert listed.code == 0
    [row] = [line for line in listed.out_lines if job.id in line]
    assert re.search(r"\b\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\b", row), row
    assert "…" not in listed.stdout
    items = pleo(fake, "items", job.id)
    assert items.code == 0
    reason = results_for(job, failed_every=2)[1].failure_reason
    assert reason is not None
    assert any(reason in line for line in items.out_lines), items.stdout
    assert max(len(line) for line in items.out_lines) > 80
    assert "…" not in items.stdout


def test_jobs_json_is_one_document_on_stdout(fake: FakePleo) -> None:
    """`jobs --json` prints one JSON document on stdout, and nothing else on stdout."""
    pending = fake.create_job(items=3, status="pending")
    running = fake.create_job(items=5, status="in_progress")
    fake.create_job(items=2, status="failed")
    ran = pleo(fake, "jobs", "--json")
    assert ran.code == 0
    document = json.loads(ran.stdout)
    assert [(job["id"], job["status"], job["number_of_items"]) for job in document] == [
        (pending.id, "pending", 3),
        (running.id, "in_progress", 5),
    ]
    assert document[0]["company_id"] == fake.company_id
    created = document[0]["created_at"]
    assert datetime.fromisoformat(created).utcoffset() == timedelta(0)
    assert "T" in created, "dates are RFC 3339"


def test_jobs_status_and_company_filter(fake: FakePleo) -> None:
    """`--status` (repeatable) and `--company` choose which jobs are listed."""
    other_company = str(uuid.UUID(int=42))
    pending = fake.create_job(items=1, status="pending")
    completed = fake.create_job(items=1, status="completed")
    failed = fake.create_job(items=1, status="failed")
    elsewhere = fake.create_job(items=1, status="completed", company_id=other_company)

    def listed(*options: str) -> list[str]:
        ran = pleo(fake, "jobs", "--json", *options)
        assert ran.code == 0
        return [job["id"] for job in json.loads(ran.stdout)]

    assert listed("--status", "completed") == [completed.id, elsewhere.id]
    assert listed("--status", "completed", "--status", "failed") == [
        completed.id,
        failed.id,
        elsewhere.id,
    ]
    assert listed("--status", "completed", "--company", other_company) == [elsewhere.id]
    assert listed() == [pending.id]


def test_items_prints_a_table_of_the_items_and_their_results(
    fake: FakePleo, tmp_path: Path
) -> None:
    """`items JOB` shows every item with its status, external ID and failure."""
    job = fake.create_job(items=4, status="in_progress")
    assert push_results(fake, tmp_path, job, results_for(job, failed_every=2)).code == 0
    ran = pleo(fake, "items", job.id, env={"COLUMNS": "200"})
    assert ran.code == 0
    assert ran.stderr == ""
    rows = {
        entry_id: [line for line in ran.out_lines if entry_id in line] for entry_id in job.item_ids
    }
    for index, entry_id in enumerate(job.item_ids):
        [row] = rows[entry_id]
        if index % 2:
            assert "failed" in row
            assert "account_unknown" in row
        else:
            assert "successful" in row
            assert f"JE-{index}" in row


def test_items_json_and_status_filter(fake: FakePleo, tmp_path: Path) -> None:
    """`items JOB --json` is one JSON document of the items; `--status` keeps only that status."""
    job = fake.create_job(items=6, status="in_progress")
    updates = results_for(job, failed_every=3)
    assert push_results(fake, tmp_path, job, updates).code == 0

    everything = pleo(fake, "items", job.id, "--json")
    assert everything.code == 0
    document = json.loads(everything.stdout)
    assert [item["accounting_entry_id"] for item in document] == job.item_ids
    assert [item["status"] for item in document] == [update.status.value for update in updates]
    assert document[0]["external_id"] == "JE-0"

    failed = pleo(fake, "items", job.id, "--status", "failed", "--json")
    assert failed.code == 0
    assert [item["accounting_entry_id"] for item in json.loads(failed.stdout)] == [
        job.item_ids[2],
        job.item_ids[5],
    ]


# -- push ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("file_format", ["json-lines", "csv"])
def test_push_starts_a_pending_job_and_sends_every_result(
    fake: FakePleo, tmp_path: Path, file_format: str
) -> None:
    """`push` on a pending job sends `started` first, then every result with its fields; exit 0."""
    job = fake.create_job(items=230, status="pending")
    updates = results_for(job, failed_every=10)
    if file_format == "csv":
        path = write_csv(tmp_path / "results.csv", updates)
    else:
        path = write_json_lines(tmp_path / "results.jsonl", updates)
    ran = pleo(fake, "push", job.id, str(path))
    assert ran.code == 0, ran.stderr
    [started] = fake.journal.events(job.id)
    assert started.body == {"event": "started", "jobId": job.id}
    puts = fake.journal.puts(job.id)
    assert puts
    assert started.seq < min(put.seq for put in puts)
    assert_landed(fake, job, updates)
    assert fake.job_status(job.id) == "in_progress"
    assert re.search(r"acknowledged\W+230\b", ran.flat)


def test_push_to_a_job_in_progress_sends_no_started_event(fake: FakePleo, tmp_path: Path) -> None:
    """A job already in progress is not started again; its results are sent."""
    job = fake.create_job(items=20, status="in_progress")
    updates = results_for(job)
    ran = push_results(fake, tmp_path, job, updates)
    assert ran.code == 0, ran.stderr
    assert fake.journal.events(job.id) == []
    assert_landed(fake, job, updates)


def test_push_with_results_pleo_refuses_exits_1(fake: FakePleo, tmp_path: Path) -> None:
    """Results for IDs that are not in the job are refused by Pleo: reported, and exit 1."""
    job = fake.create_job(items=30, status="pending")
    strangers = [str(uuid.UUID(int=1000 + n)) for n in range(2)]
    updates = [*results_for(job), *(ItemUpdate.successful(entry_id) for entry_id in strangers)]
    ran = push_results(fake, tmp_path, job, updates)
    assert ran.code == 1
    assert_landed(fake, job, updates[:30])
    assert re.search(r"rejected by Pleo\W+2\b", ran.flat)
    for entry_id in strangers:
        assert f"rejected {entry_id}" in ran.flat
    assert "ACCOUNTING_ENTRY_DOES_NOT_EXIST" in ran.flat
    assert final_events(fake, job.id) == []


@pytest.mark.parametrize(
    ("failed_every", "event", "code"),
    [(0, "completed", 0), (5, "completed_with_errors", 1)],
    ids=["all-successful", "some-failed"],
)
def test_push_complete_sends_the_right_final_event_once(
    fake: FakePleo, tmp_path: Path, failed_every: int, event: str, code: int
) -> None:
    """`push --complete` closes the job with the event its results call for, sent once."""
    job = fake.create_job(items=120, status="pending")
    updates = results_for(job, failed_every=failed_every)
    ran = push_results(fake, tmp_path, job, updates, "--complete")
    assert ran.code == code, ran.stderr
    assert_landed(fake, job, updates)
    assert final_events(fake, job.id) == [event]
    [applied] = fake.journal.final_events_applied(job.id)
    assert applied.body["event"] == event
    assert fake.job_status(job.id) == event
    assert f"sent {event}" in ran.flat


def test_a_bad_results_file_reports_every_bad_line_and_sends_nothing(
    fake: FakePleo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every bad line is reported with its line number and field, nothing is sent, exit 2."""
    job = fake.create_job(items=3, status="pending")
    good, other, third = job.item_ids
    lines = [
        {"accountingEntryId": good, "status": "successful"},
        {"accountingEntryId": "not-a-uuid", "status": "successful"},
        {"accountingEntryId": other, "status": "done"},
        {"accountingEntryId": third, "status": "failed"},
        {"accountingEntryId": third, "status": "successful", "exportedAt": "2026-03-01T10:15"},
        {"accountingEntryId": good, "status": "successful", "colour": "red"},
    ]
    monkeypatch.chdir(tmp_path)
    Path("results.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines) + "{not json\n"
    )
    ran = pleo(fake, "push", job.id, "results.jsonl", "--complete")
    assert ran.code == 2
    assert fake.journal.puts() == []
    assert fake.journal.events() == []
    assert fake.job_status(job.id) == "pending"
    for number, field in [
        (2, "accounting_entry_id"),
        (3, "status"),
        (4, "failure_reason_type"),
        (5, "exported_at"),
        (6, "colour"),
        (7, "not JSON"),
    ]:
        assert f"results.jsonl: line {number}: {field}" in ran.flat
    assert "line 1:" not in ran.flat
    assert "6 bad line(s); nothing was sent" in ran.flat
    assert "Traceback" not in ran.stderr


def test_an_interrupted_push_resumed_with_its_ledger_sends_nothing_twice(
    fake: FakePleo, tmp_path: Path
) -> None:
    """Ctrl+C stops `push` with exit 130; run again with the ledger, nothing is sent twice."""
    job = fake.create_job(items=2000, status="pending")
    updates = results_for(job, failed_every=10)
    path = write_json_lines(tmp_path / "results.jsonl", updates)
    ledger = tmp_path / "push.ledger"
    fake.faults = Faults(latency=0.25)
    process = spawn(fake, "push", job.id, str(path), "--ledger", str(ledger))

    def second_wave_on_its_way() -> bool:
        # The first batches were acknowledged and a full set of later ones is in the fake's
        # latency, not yet committed: the child has read every answer it was sent.
        puts = fake.journal.puts(job.id)
        answered = [put for put in puts if put.delivered]
        waiting = [put for put in puts if put.answered_at is None]
        return len(answered) >= 8 and len(waiting) >= 8

    interrupted = signalled(
        process, signal.SIGINT, "a second wave of PUTs", second_wave_on_its_way, timeout=20
    )
    assert_no_credential(interrupted, {"PLEO_API_KEY": SECRET})
    assert "Traceback" not in interrupted.stderr
    assert "interrupted" in interrupted.stderr
    successful_at_pleo = sum(item["status"] != "pending" for item in fake.items(job.id))
    assert 0 < successful_at_pleo < len(updates)

    fake.faults = Faults()
    resumed = pleo(fake, "push", job.id, str(path), "--ledger", str(ledger))
    assert resumed.code == 0, resumed.stderr
    assert fake.journal.resent_after_ack(job.id) == {}
    assert_landed(fake, job, updates)
    [started] = fake.journal.events(job.id)
    assert started.body["event"] == "started"
    skipped = re.search(r"already acknowledged, not sent\W+([\d,]+)", resumed.flat)
    assert skipped is not None
    assert int(skipped.group(1).replace(",", "")) >= 800
    # Last, so that the resume above is checked whatever the first run's exit code was.
    assert interrupted.code == 130, interrupted.stderr


def test_sigterm_stops_push_once_the_batches_in_flight_settle(
    fake: FakePleo, tmp_path: Path
) -> None:
    """SIGTERM during `push` sends no more batches, lets those in flight be answered, sends no
    final event and exits 143 with one line; run again with the ledger, it sends only the rest."""
    job = fake.create_job(items=2000, status="pending")
    updates = results_for(job, failed_every=10)
    path = write_json_lines(tmp_path / "results.jsonl", updates)
    ledger = tmp_path / "push.ledger"
    fake.faults = Faults(latency=0.25)
    process = spawn(fake, "push", job.id, str(path), "--ledger", str(ledger), "--complete")
    stopped = signalled(
        process,
        signal.SIGTERM,
        "a few batches answered",
        lambda: len(fake.journal.puts(job.id)) >= 8,
        timeout=30,
    )
    assert stopped.code == 143, stopped.stderr
    assert "terminated (SIGTERM)" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    puts = fake.journal.puts(job.id)
    assert all(put.delivered for put in puts), "every batch sent was answered and read"
    assert len(puts) < 20, "no batch was sent after SIGTERM beyond those in flight"
    assert fake.journal.final_events_applied(job.id) == []
    fake.faults = Faults()
    resumed = pleo(fake, "push", job.id, str(path), "--ledger", str(ledger))
    assert resumed.code == 0, resumed.stderr
    assert fake.journal.resent_after_ack(job.id) == {}
    assert_landed(fake, job, updates)


# -- complete and fail -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failed_every", "event", "code"),
    [(0, "completed", 0), (4, "completed_with_errors", 1)],
    ids=["all-successful", "some-failed"],
)
def test_complete_without_a_ledger_follows_the_results_at_pleo(
    fake: FakePleo, tmp_path: Path, failed_every: int, event: str, code: int
) -> None:
    """`complete JOB` after a push picks its event from the items' results at Pleo, sent once."""
    job = fake.create_job(items=40, status="pending")
    assert push_results(fake, tmp_path, job, results_for(job, failed_every)).code == 0
    ran = pleo(fake, "complete", job.id)
    assert ran.code == code, ran.stderr
    assert final_events(fake, job.id) == [event]
    assert len(fake.journal.final_events_applied(job.id)) == 1
    assert fake.job_status(job.id) == event
    assert f"sent {event}" in ran.flat
    successful = 40 - (40 // failed_every if failed_every else 0)
    assert f"{successful} successful" in ran.flat


def test_complete_again_with_the_push_ledger_says_nothing_was_sent(
    fake: FakePleo, tmp_path: Path
) -> None:
    """`complete --ledger` run a second time sends nothing and says the job was already closed,
    not that it sent the event; --json says sent false."""
    job = fake.create_job(items=30, status="pending")
    ledger = str(tmp_path / "push.ledger")
    assert push_results(fake, tmp_path, job, results_for(job, 0), "--ledger", ledger).code == 0
    first = pleo(fake, "complete", job.id, "--ledger", ledger)
    assert first.code == 0, first.stderr
    assert "sent completed" in first.flat
    requests = len(fake.journal.requests)
    again = pleo(fake, "complete", job.id, "--ledger", ledger, "--json")
    assert again.code == 0, again.stderr
    document = json.loads(again.stdout)
    assert (document["sent"], document["already_delivered"]) == (False, True)
    assert [e.method for e in fake.journal.requests[requests:]] == ["GET"]
    assert len(fake.journal.final_events_applied(job.id)) == 1


def test_complete_with_an_event_sends_that_event(fake: FakePleo, tmp_path: Path) -> None:
    """`complete --event completed` sends `completed` even though some items failed; exit 0."""
    # Overriding the event against the results is what this checks; a strict fake would refuse.
    fake.strict = False
    job = fake.create_job(items=10, status="pending")
    assert push_results(fake, tmp_path, job, results_for(job, failed_every=2)).code == 0
    ran = pleo(fake, "complete", job.id, "--event", "completed")
    assert ran.code == 0, ran.stderr
    assert final_events(fake, job.id) == ["completed"]
    assert fake.job_status(job.id) == "completed"


def test_fail_fails_the_job_with_its_reason(fake: FakePleo) -> None:
    """`fail JOB --reason --type` sends `failed` with the reason and its type; exit 0."""
    job = fake.create_job(items=5, status="in_progress")
    reason = "The ERP is down for maintenance until Monday"
    ran = pleo(fake, "fail", job.id, "--reason", reason, "--type", "accounting_system_unreachable")
    assert ran.code == 0, ran.stderr
    [event] = fake.journal.events(job.id)
    assert event.body == {
        "event": "failed",
        "jobId": job.id,
        "failureReason": reason,
        "failureReasonType": "accounting_system_unreachable",
    }
    assert fake.job_status(job.id) == "failed"
    assert fake.job_payload(job.id)["failureReason"] == reason
    assert "sent failed" in ran.flat


def test_fail_needs_a_known_failure_type(fake: FakePleo) -> None:
    """`fail` with a failure type Pleo does not have is bad input, and nothing is sent."""
    job = fake.create_job(items=5, status="in_progress")
    ran = pleo(fake, "fail", job.id, "--reason", "broken", "--type", "vendor_unknown")
    assert ran.code == 2
    assert fake.journal.requests == []


# -- credentials and the base URL ------------------------------------------------------------------


def test_no_credentials_is_one_line_naming_pleo_api_key_and_exit_2(fake: FakePleo) -> None:
    """Without PLEO_API_KEY or PLEO_ACCESS_TOKEN a command says so in one line, exit 2."""
    ran = pleo(fake, "jobs", env={"PLEO_API_KEY": None})
    assert ran.code == 2
    [line] = ran.lines
    assert "PLEO_API_KEY" in line
    assert ran.stdout == ""
    assert fake.journal.requests == []


def test_an_access_token_authenticates(fake: FakePleo) -> None:
    """PLEO_ACCESS_TOKEN is used as a bearer token when PLEO_API_KEY is not set."""
    job = fake.create_job(items=1, status="pending")
    access_token, _refresh = fake.issue_token()
    env = {"PLEO_API_KEY": None, "PLEO_ACCESS_TOKEN": access_token}
    ran = pleo(fake, "jobs", "--json", env=env)
    assert ran.code == 0, ran.stderr
    assert [found["id"] for found in json.loads(ran.stdout)] == [job.id]


def test_the_base_url_comes_from_pleo_base_url(fake: FakePleo) -> None:
    """Without --base-url, PLEO_BASE_URL says where the API is."""
    job = fake.create_job(items=1, status="pending")
    ran = pleo(None, "jobs", "--json", env={"PLEO_BASE_URL": fake.base_url})
    assert ran.code == 0, ran.stderr
    assert [found["id"] for found in json.loads(ran.stdout)] == [job.id]


def test_base_url_with_staging_is_bad_input() -> None:
    """--base-url and --staging together are refused with exit 2, in one line from the script."""
    ran = pleo("http://127.0.0.1:9", "--staging", "jobs")
    assert ran.code == 2
    assert "not both" in ran.stderr
    script = console_script("--base-url", "http://127.0.0.1:9", "--staging", "jobs")
    assert script.code == 2
    assert script.lines == ["pleo-export: error: give --base-url or --staging, not both"]


# -- failures --------------------------------------------------------------------------------------


def test_an_unknown_job_is_one_line_without_traceback_and_exit_3(fake: FakePleo) -> None:
    """A job Pleo does not know is exit 3 with one line on stderr and no traceback."""
    unknown = str(uuid.UUID(int=7))
    ran = pleo(fake, "items", unknown)
    assert ran.code == 3
    assert "Traceback" not in ran.stderr
    assert ran.stdout == ""
    assert unknown in ran.flat
    assert "404" in ran.flat
    assert len(ran.lines) == 1, ran.stderr


def test_debug_shows_the_traceback_of_an_error(fake: FakePleo) -> None:
    """With --debug the error's traceback is shown as well, and the exit code stays 3."""
    ran = pleo(fake, "--debug", "complete", str(uuid.UUID(int=8)))
    assert ran.code == 3
    assert "Traceback (most recent call last)" in ran.stderr
    assert "JobNotFound" in ran.stderr


def test_a_network_failure_is_exit_3() -> None:
    """A base URL nothing listens on gives exit 3 after the retries, without a traceback,
    naming host:port and the cause."""
    port = closed_port()
    ran = pleo(f"http://127.0.0.1:{port}", "jobs")
    assert ran.code == 3
    assert "Traceback" not in ran.stderr
    assert f"never reached 127.0.0.1:{port}: connection refused" in ran.flat


def test_retry_warnings_in_a_log_file_are_one_unwrapped_line_each() -> None:
    """With stderr not a terminal, each retry warning is one plain line naming its logger."""
    env = {name: value for name, value in os.environ.items() if name not in HOST_SETTINGS}
    env.update(PLEO_API_KEY=SECRET, PYTHONPATH=str(REPO_ROOT), COLUMNS="60")
    script = (
        "import sys\n"
        "from pleo_export_async.testing import instant_retries\n"
        "from pleo_export_async._cli import main\n"
        "with instant_retries():\n"
        "    sys.exit(main())\n"
    )
    base_url = f"http://127.0.0.1:{closed_port()}/some/long/path/so/that/lines/run/past/sixty"
    ran = subprocess.run(
        [sys.executable, "-c", script, "--base-url", base_url, "jobs"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 3
    lines = ran.stderr.splitlines()
    warnings = [line for line in lines if "retrying" in line]
    assert warnings, ran.stderr
    assert all(line.startswith("WARNING pleo_export_async: GET ") for line in warnings), lines
    assert lines[-1].startswith("pleo-export: error: ")
    assert len(lines) == len(warnings) + 1, lines
    assert SECRET not in ran.stderr


def test_python_dash_m_runs_the_command_line() -> None:
    """`python -m pleo_export_async` is the same command line as `pleo-export`."""
    ran = subprocess.run(
        [sys.executable, "-m", "pleo_export_async", "--version"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("pleo-export, version ")


@pytest.mark.parametrize(
    ("args", "env", "code"),
    [
        (["jobs"], {"PLEO_API_KEY": None}, 2),
        (["items", str(uuid.UUID(int=9))], {}, 3),
    ],
    ids=["no-credentials", "unknown-job"],
)
def test_the_console_script_returns_the_exit_code_of_a_failed_command(
    fake: FakePleo, args: list[str], env: dict[str, str | None], code: int
) -> None:
    """`pleo-export` itself exits with the command's code (2 bad input, 3 API failure), not 0."""
    ran = console_script("--base-url", fake.base_url, *args, env=env)
    assert "Traceback" not in ran.stderr
    assert ran.lines
    assert ran.code == code


# -- the demo and help -----------------------------------------------------------------------------


def test_demo_exports_a_job_and_summarises_it() -> None:
    """`demo` exits 0 and names the event, counts, requests, retries, concurrency and speed."""
    ran = pleo(None, "demo", "--items", "300", "--faults", "none")
    assert ran.code == 0, ran.stderr
    assert "Traceback" not in ran.stderr
    text = ran.flat
    event = re.search(r"final event sent\W+(completed_with_errors|completed|failed)\b", text)
    assert event is not None
    numbers = {}
    for label in ("successful", "failed in the ERP", "rejected by Pleo", "requests", "retries"):
        found = re.search(rf"{label}\W+([\d,]+)", text)
        assert found is not None, label
        numbers[label] = int(found.group(1).replace(",", ""))
    assert numbers["successful"] + numbers["failed in the ERP"] + numbers["rejected by Pleo"] == 300
    assert numbers["requests"] > 0
    assert re.search(r"highest concurrency\W+\d+", text)
    assert re.search(r"resent after their acknowledgement\W+0\b", text)
    assert re.search(r"wall time\W+[\d.]+ s \([\d,]+ items/s\)", text)
    for line in ran.stderr.splitlines():
        assert not ("sent" in line and "already delivered" in line), line


@pytest.mark.parametrize(
    ("args", "option"),
    [(["--items", "0"], "--items"), (["--failed-fraction", "1.5"], "--failed-fraction")],
    ids=["no-items", "fraction-above-1"],
)
def test_bad_demo_options_are_one_clear_line_and_exit_2(args: list[str], option: str) -> None:
    """A bad demo option gets one line naming it, exit 2, and no traceback."""
    ran = console_script("demo", *args)
    assert ran.code == 2
    [line] = ran.lines
    assert option in line
    assert "Traceback" not in ran.stderr
    assert pleo(None, "demo", *args).code == 2


def test_every_option_of_every_command_has_help_text() -> None:
    """Every option of the group and of each command carries help text."""
    commands: list[click.Command] = [cli, *cli.commands.values()]
    assert {"jobs", "items", "push", "complete", "fail", "fake-server", "demo"} <= set(cli.commands)
    for command in commands:
        assert command.help, command.name
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{command.name} {param.opts}"


# -- colour ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("no_color", [None, "1"], ids=["not-a-terminal", "no-color"])
def test_output_that_is_not_a_terminal_has_no_escape_codes(
    fake: FakePleo, tmp_path: Path, no_color: str | None
) -> None:
    """Tables, progress and summaries written to a non-terminal carry no ANSI escape codes."""
    job = fake.create_job(items=150, status="pending")
    env = {"NO_COLOR": no_color}
    path = write_json_lines(tmp_path / "results.jsonl", results_for(job, failed_every=3))
    runs = [
        pleo(fake, "push", job.id, str(path), env=env),
        pleo(fake, "items", job.id, env=env),
        pleo(fake, "jobs", env=env),
        pleo(fake, "complete", job.id, env=env),
        pleo(fake, "items", str(uuid.UUID(int=10)), env=env),
    ]
    for ran in runs:
        assert "\x1b" not in ran.stdout
        assert "\x1b" not in ran.stderr


def colour_codes(text: str) -> list[str]:
    """The SGR sequences of `text` that set a foreground or background colour."""
    found = []
    for parameters in SGR.findall(text):
        codes = [int(code) for code in parameters.split(";") if code]
        if any(
            30 <= code <= 38 or 40 <= code <= 48 or 90 <= code <= 97 or 100 <= code <= 107
            for code in codes
        ):
            found.append(parameters)
    return found


def test_no_color_leaves_colour_out_on_a_terminal(fake: FakePleo, tmp_path: Path) -> None:
    """On a terminal the progress bar is coloured, but with NO_COLOR set it has no colour."""
    job = fake.create_job(items=150, status="pending")
    path = write_json_lines(tmp_path / "results.jsonl", results_for(job))
    coloured = pleo(fake, "push", job.id, str(path), env={"FORCE_COLOR": "1"})
    assert coloured.code == 0
    assert colour_codes(coloured.stderr)
    other = fake.create_job(items=150, status="pending")
    path = write_json_lines(tmp_path / "other.jsonl", results_for(other))
    plain = pleo(fake, "push", other.id, str(path), env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert plain.code == 0
    assert colour_codes(plain.stderr) == []
    assert colour_codes(plain.stdout) == []
