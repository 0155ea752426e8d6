"""The shell fake: `pleo-export fake-server` and `python -m pleo_export_async.testing`, one
program, run through the installed entry points in child processes, and its `GET /_fake/journal`.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The console script pip installed beside this interpreter.
PLEO_EXPORT = Path(sys.executable).with_name("pleo-export")
PROGRAMS = {
    "pleo-export fake-server": [str(PLEO_EXPORT), "fake-server"],
    "python -m pleo_export_async.testing": [sys.executable, "-m", "pleo_export_async.testing"],
}
#: Host settings that would change what the program shows.
HOST_SETTINGS = ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")


def child_environment() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in HOST_SETTINGS}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


@dataclass
class ShellFake:
    """A running shell fake, and what it announced on stdout."""

    process: subprocess.Popen[str]
    announced: dict[str, list[str]]

    @property
    def base_url(self) -> str:
        return self.announced["base_url"][0]

    @property
    def job_ids(self) -> list[str]:
        return self.announced.get("job_id", [])

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request with the announced API key; (status, parsed JSON body or None)."""
        key = self.announced["api_key"][0]
        headers = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                raw = answer.read()
                status = answer.status
        except urllib.error.HTTPError as refused:
            raw, status = refused.read(), refused.code
        return status, json.loads(raw) if raw.strip() else None

    def entry_ids(self, job_id: str) -> list[str]:
        """Every accountingEntryId of the job's export items, page after page."""
        entry_ids: list[str] = []
        while True:
            path = f"/v3/export-items?job_id={job_id}&limit=100&offset={len(entry_ids)}"
            status, page = self.request("GET", path)
            assert status == 200
            entry_ids.extend(item["accountingEntryId"] for item in page["data"])
            if not page["data"]:
                return entry_ids

    def stop(self, stop_signal: signal.Signals = signal.SIGTERM) -> tuple[int, str, str]:
        """Send the signal; (exit code, the rest of stdout, stderr)."""
        self.process.send_signal(stop_signal)
        out, err = self.process.communicate(timeout=20)
        return self.process.returncode, out, err


def start(program: str, *flags: str) -> ShellFake:
    """Start the program on a free port and read its announcement up to `ready`."""
    assert PLEO_EXPORT.exists(), f"the console script is not installed at {PLEO_EXPORT}"
    process = subprocess.Popen(
        [*PROGRAMS[program], "--port", "0", *flags],
        cwd=REPO_ROOT,
        env=child_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    announced: dict[str, list[str]] = {}
    while True:
        line = process.stdout.readline()
        if not line:
            process.kill()
            _, err = process.communicate()
            raise AssertionError(f"the shell fake ended before `ready`: {err}")
        line = line.rstrip("\n")
        if line == "ready":
            return ShellFake(process, announced)
        key, separator, value = line.partition("=")
        assert separator, f"not a key=value line before `ready`: {line!r}"
        announced.setdefault(key, []).append(value)


@pytest.fixture
def stopped_afterwards() -> Iterator[list[ShellFake]]:
    """Shell fakes a test starts; any still running afterwards is killed."""
    started: list[ShellFake] = []
    yield started
    for fake in started:
        if fake.process.poll() is None:
            fake.process.kill()
            fake.process.communicate()


def push_and_complete(fake: ShellFake, job_id: str) -> subprocess.CompletedProcess[str]:
    """`pleo-export push --complete` of every item of the job as successful, in a child."""
    return pleo_export(
        fake, "push", job_id, write_results(job_id, fake.entry_ids(job_id)), "--complete"
    )


def write_results(job_id: str, entry_ids: list[str]) -> str:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"shell-fake-{job_id}.jsonl"
    path.write_text(
        "".join(
            json.dumps({"accountingEntryId": entry_id, "status": "successful"}) + "\n"
            for entry_id in entry_ids
        )
    )
    return str(path)


def pleo_export(fake: ShellFake, *args: str) -> subprocess.CompletedProcess[str]:
    env = child_environment()
    env.update(PLEO_API_KEY=fake.announced["api_key"][0], PLEO_BASE_URL=fake.base_url)
    return subprocess.run(
        [str(PLEO_EXPORT), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("program", list(PROGRAMS))
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_shell_fake_announces_serves_and_exits_0_on_a_signal(
    program: str, stop_signal: signal.Signals, stopped_afterwards: list[ShellFake]
) -> None:
    """Both programs print base_url, api_key, company_id and one job_id per job, then `ready`,
    serve those jobs, and exit 0 on SIGTERM or SIGINT with no traceback."""
    fake = start(program, "--jobs", "2", "--items", "7", "--api-key", "shell-key", "--seed", "4")
    stopped_afterwards.append(fake)
    assert set(fake.announced) == {"base_url", "api_key", "company_id", "job_id"}
    assert fake.base_url.startswith("http://127.0.0.1:")
    assert fake.announced["api_key"] == ["shell-key"]
    assert len(fake.job_ids) == 2
    for job_id in fake.job_ids:
        status, body = fake.request("GET", f"/v3/export-jobs/{job_id}")
        assert status == 200
        job = body["data"]
        assert (job["status"], job["numberOfItems"]) == ("pending", 7)
        assert job["companyId"] == fake.announced["company_id"][0]
    code, _out, err = fake.stop(stop_signal)
    assert code == 0, err
    assert "Traceback" not in err
    assert "error" not in err


def test_both_programs_take_the_same_flags() -> None:
    """`python -m pleo_export_async.testing --help` is the help of `pleo-export fake-server`."""
    helps = [
        subprocess.run(
            [*command, "--help"],
            cwd=REPO_ROOT,
            env={**child_environment(), "COLUMNS": "100"},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        for command in PROGRAMS.values()
    ]
    assert helps[0] == helps[1]
    for flag in ("--host", "--port", "--jobs", "--items", "--status", "--seed", "--api-key"):
        assert flag in helps[0]
    for flag in ("--faults", "--lenient", "--json"):
        assert flag in helps[0]


@pytest.mark.parametrize(("flags", "expected"), [((), 422), (("--lenient",), 200)])
def test_the_shell_fake_is_strict_unless_told_lenient(
    flags: tuple[str, ...], expected: int, stopped_afterwards: list[ShellFake]
) -> None:
    """An item update on a job not yet started is refused with 422, and accepted with
    --lenient."""
    fake = start("python -m pleo_export_async.testing", "--items", "1", *flags)
    stopped_afterwards.append(fake)
    [job_id] = fake.job_ids
    _, listing = fake.request("GET", f"/v3/export-items?job_id={job_id}")
    entry_id = listing["data"][0]["accountingEntryId"]
    update = [{"accountingEntryId": entry_id, "status": "successful"}]
    status, _ = fake.request("PUT", f"/v3/export-jobs/{job_id}/items", update)
    assert status == expected


def test_the_journal_shows_every_request_and_what_was_acknowledged(
    stopped_afterwards: list[ShellFake],
) -> None:
    """`GET /_fake/journal` lists each request with its job, the items sent and the IDs
    acknowledged, and per job its status, final events and nothing resent."""
    fake = start("pleo-export fake-server", "--jobs", "2", "--items", "150")
    stopped_afterwards.append(fake)
    pushed, untouched = fake.job_ids
    ran = push_and_complete(fake, pushed)
    assert ran.returncode == 0, ran.stderr
    status, journal = fake.request("GET", "/_fake/journal")
    assert status == 200
    puts = [r for r in journal["requests"] if r["method"] == "PUT"]
    assert sorted(len(r["items_sent"]) for r in puts) == [50, 100]
    assert all(r["job_id"] == pushed and r["status"] == 200 and r["delivered"] for r in puts)
    sent = [entry_id for r in puts for entry_id in r["items_sent"]]
    assert len(sent) == len(set(sent)) == 150
    assert sorted(entry_id for r in puts for entry_id in r["acknowledged"]) == sorted(sent)
    events = [r["event"] for r in journal["requests"] if r["method"] == "POST"]
    assert events == ["started", "completed"]
    assert not any(r["path"].startswith("/_fake/") for r in journal["requests"])
    assert journal["jobs"][pushed] == {
        "status": "completed",
        "requests": sum(1 for r in journal["requests"] if r["job_id"] == pushed),
        "items_sent": 150,
        "acknowledged": 150,
        "resent_after_ack": {},
        "final_events": ["completed"],
    }
    assert journal["jobs"][untouched]["status"] == "pending"
    assert journal["jobs"][untouched]["requests"] == 0


def test_the_journal_and_the_closing_table_show_an_update_resent_after_its_ack(
    stopped_afterwards: list[ShellFake],
) -> None:
    """An update sent again after Pleo acknowledged it is counted, in the journal and in the
    table the fake prints on SIGTERM, with the job's requests, items and final events."""
    fake = start("pleo-export fake-server", "--items", "3", "--status", "in_progress")
    stopped_afterwards.append(fake)
    [job_id] = fake.job_ids
    entry_ids = fake.entry_ids(job_id)
    update = [{"accountingEntryId": entry_id, "status": "successful"} for entry_id in entry_ids]
    for _ in range(2):  # the second PUT sends all three again, after their acknowledgement
        status, _ = fake.request("PUT", f"/v3/export-jobs/{job_id}/items", update)
        assert status == 200
    status, _ = fake.request(
        "POST", "/v3/export-job-events", {"jobId": job_id, "event": "completed"}
    )
    assert status == 202
    _, journal = fake.request("GET", "/_fake/journal")
    assert journal["jobs"][job_id]["resent_after_ack"] == dict.fromkeys(entry_ids, 1)
    code, out, err = fake.stop()
    assert code == 0, err
    [row] = [line for line in out.splitlines() if job_id in line]
    cells = [cell.strip() for cell in row.strip("│ \n").split("│")]
    # job, status, requests (2 GET items, 2 PUTs, the event), items sent, acknowledged,
    # resent, final events
    assert cells == [job_id, "completed", "5", "6", "3", "3", "completed"]
    assert "3 update(s) were sent again after Pleo had acknowledged them" in out


def test_the_json_mode_prints_json_lines(stopped_afterwards: list[ShellFake]) -> None:
    """With --json, the announcement is one JSON line with `ready`, and SIGTERM prints the
    per-job summary as one more."""
    command = [*PROGRAMS["pleo-export fake-server"], "--port", "0", "--json", "--jobs", "1"]
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=child_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stopped_afterwards.append(ShellFake(process, {}))
    assert process.stdout is not None
    announced = json.loads(process.stdout.readline())
    assert announced["ready"] is True
    [job_id] = announced["job_ids"]
    fake = ShellFake(process, {"base_url": [announced["base_url"]], "api_key": ["test-api-key"]})
    assert fake.request("GET", f"/v3/export-jobs/{job_id}")[0] == 200
    code, out, err = fake.stop()
    assert code == 0, err
    [summary] = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert summary["jobs"][job_id]["requests"] == 1
    assert summary["jobs"][job_id]["resent_after_ack"] == {}
