"""`pleo-export` as a user runs it: the installed console script in a child process, against a
fake Pleo served from a thread of the test. What goes to stdout and stderr, `--json` on every
command, what `fail` and `complete` say, and `--timeout` and `--retries`."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import run_console_script, served_in_a_thread
from pleo_export_async.testing import FakeJob, FakePleo, Faults

SECRET = "entry-point-secret-93c1"


@pytest.fixture
def fake() -> Iterator[FakePleo]:
    with served_in_a_thread(seed=21, api_key=SECRET) as server:
        yield server


def pleo_export(
    base_url: str, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The console script with the fake's key and base URL; stdout and stderr are pipes."""
    ran = run_console_script(
        ["--base-url", base_url, *args], env={"PLEO_API_KEY": SECRET}, timeout=timeout
    )
    assert SECRET not in ran.stdout + ran.stderr
    return ran


def results_file(tmp_path: Path, job: FakeJob) -> str:
    """Every item of the job successful, as JSON Lines."""
    path = tmp_path / f"{job.id}.jsonl"
    path.write_text(
        "".join(
            json.dumps({"accountingEntryId": entry_id, "status": "successful"}) + "\n"
            for entry_id in job.item_ids
        )
    )
    return str(path)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_every_command_prints_one_json_document_with_json(fake: FakePleo, tmp_path: Path) -> None:
    """`--json` is accepted by every command that talks to Pleo, and stdout then holds exactly
    one JSON document."""
    pushed = fake.create_job(items=3, status="pending")
    completed = fake.create_job(items=2, status="in_progress")
    failed = fake.create_job(items=2, status="in_progress")
    pushed_before = pleo_export(
        fake.base_url, "push", completed.id, results_file(tmp_path, completed)
    )
    assert pushed_before.returncode == 0, pushed_before.stderr
    documents = {
        "jobs": pleo_export(fake.base_url, "jobs", "--json"),
        "items": pleo_export(fake.base_url, "items", pushed.id, "--json"),
        "push": pleo_export(
            fake.base_url, "push", pushed.id, results_file(tmp_path, pushed), "--complete", "--json"
        ),
        "complete": pleo_export(fake.base_url, "complete", completed.id, "--json"),
        "fail": pleo_export(
            fake.base_url,
            "fail",
            failed.id,
            "--reason",
            "ERP down",
            "--type",
            "accounting_system_unreachable",
            "--json",
        ),
    }
    parsed = {}
    for command, ran in documents.items():
        assert ran.returncode == 0, (command, ran.stderr)
        parsed[command] = json.loads(ran.stdout)
    assert {job["id"] for job in parsed["jobs"]} >= {pushed.id, completed.id, failed.id}
    assert len(parsed["items"]) == 3
    assert sorted(parsed["push"]["report"]["acknowledged"]) == sorted(pushed.item_ids)
    assert parsed["push"]["outcome"]["event"] == "completed"
    assert (parsed["complete"]["event"], parsed["complete"]["sent"]) == ("completed", True)
    assert (parsed["fail"]["event"], parsed["fail"]["failure_reason"]) == ("failed", "ERP down")


def test_demo_prints_one_json_document_with_json() -> None:
    """`demo --json` prints its summary as one JSON document, and no table."""
    ran = pleo_export("http://127.0.0.1:1", "demo", "--items", "60", "--faults", "none", "--json")
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    assert summary["resent_after_ack"] == 0
    assert summary["final_events_applied"] == 1
    assert summary["successful"] + summary["failed"] == 60


def test_tables_go_to_stdout_whole_when_piped(fake: FakePleo) -> None:
    """Piped, `jobs` prints its table on stdout with whole IDs and dates, and nothing on
    stderr."""
    job = fake.create_job(items=4, status="pending")
    ran = pleo_export(fake.base_url, "jobs")
    assert ran.returncode == 0
    assert ran.stderr == ""
    [row] = [line for line in ran.stdout.splitlines() if job.id in line]
    assert "pending" in row
    assert fake.job_payload(job.id)["createdAt"][:10] in row
    assert "…" not in ran.stdout


def test_fail_run_twice_prints_what_pleo_holds(fake: FakePleo) -> None:
    """A second `fail` sends nothing and prints the reason Pleo holds, not the new one."""
    job = fake.create_job(items=2, status="in_progress")
    first = pleo_export(
        fake.base_url, "fail", job.id, "--reason", "ERP down", "--type", "service_unreachable"
    )
    assert first.returncode == 0, first.stderr
    second = pleo_export(
        fake.base_url, "fail", job.id, "--reason", "Tax codes", "--type", "validation_failure"
    )
    assert second.returncode == 0, second.stderr
    assert "already failed at Pleo; nothing was sent" in second.stdout
    assert "service_unreachable: ERP down" in second.stdout
    assert "Tax codes" not in second.stdout
    assert len(fake.journal.final_events_applied(job.id)) == 1
    assert fake.job_payload(job.id)["failureReason"] == "ERP down"


def test_complete_of_a_job_with_no_results_names_the_event_flag(fake: FakePleo) -> None:
    """`complete` on a job with no item results sends nothing, exits 1 and points to
    `--event`, the flag, not the library's `event=`."""
    job = fake.create_job(items=2, status="in_progress")
    ran = pleo_export(fake.base_url, "complete", job.id)
    assert ran.returncode == 1
    assert "--event" in ran.stderr
    assert "event=" not in ran.stderr
    assert fake.journal.events(job.id) == []


def test_retries_sets_how_often_a_failed_request_is_tried_again() -> None:
    """`--retries 1` against a fake that answers too slowly for `--timeout 0.2` makes two
    attempts, then exits 3 saying no answer came within 0.2 s."""
    with served_in_a_thread(api_key=SECRET, faults=Faults(latency=1.0)) as slow:
        started = time.monotonic()
        ran = pleo_export(slow.base_url, "--timeout", "0.2", "--retries", "1", "jobs")
        elapsed = time.monotonic() - started
        attempts = slow.journal.count("GET", "/v3/export-jobs")
    assert ran.returncode == 3
    assert attempts == 2
    assert "0.2" in ran.stderr
    assert elapsed < 30


def test_an_unreachable_url_gives_up_soon_naming_host_and_cause() -> None:
    """A base URL nothing listens on ends in a few seconds with exit 3, one error naming the
    host:port and the refused connection, not 36 s of retries."""
    port = closed_port()
    started = time.monotonic()
    ran = pleo_export(f"http://127.0.0.1:{port}", "jobs")
    elapsed = time.monotonic() - started
    assert ran.returncode == 3
    assert f"127.0.0.1:{port}" in ran.stderr
    assert "refused" in ran.stderr
    assert elapsed < 20
