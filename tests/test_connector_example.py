"""The example connector (examples/connector.py) run as a process against the fake: stopped by
SIGTERM it sends no final event, and started again it finishes where it stopped (R12, R13, R17)."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import assert_in_pleos_order, company, created_minutes_ago
from pleo_export_async import ApiKeyAuth, ExportItem, ItemStatus, ItemUpdate, PleoExportClient
from pleo_export_async.testing import FakePleo, Faults

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "connector.py"
API_KEY = "connector-example-key-7c41e9"  # distinctive, so the output can be searched for it


def _erp_result() -> Callable[[ExportItem], ItemUpdate]:
    """The example's stand-in ERP, loaded from its file (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("connector_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    erp_result: Callable[[ExportItem], ItemUpdate] = module.erp_result
    return erp_result


async def _erp_answers(fake: FakePleo, job_id: str) -> dict[str, ItemUpdate]:
    """What the stand-in ERP answers for each item of the job, read while the job is open."""
    erp_result = _erp_result()
    async with PleoExportClient(fake.base_url, auth=ApiKeyAuth(fake.api_key)) as client:
        return {
            item.accounting_entry_id: erp_result(item)
            async for item in client.job(job_id).export_items()
        }


def _final_event(answers: dict[str, ItemUpdate]) -> str:
    successful = sum(update.status is ItemStatus.SUCCESSFUL for update in answers.values())
    if successful == len(answers):
        return "completed"
    return "completed_with_errors" if successful else "failed"


async def _start(fake: FakePleo, ledger: Path, *extra: str) -> asyncio.subprocess.Process:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PLEO_")}
    env["PLEO_API_KEY"] = fake.api_key
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "--base-url",
        fake.base_url,
        "--ledger",
        str(ledger),
        "--poll-seconds",
        "0.2",
        *extra,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def _job_lines(stdout: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.decode().splitlines()]


async def test_the_connector_stops_on_sigterm_and_finishes_the_job_when_started_again(
    tmp_path: Path,
) -> None:
    """SIGTERM mid-job: exit 0, no final event, job in_progress; the next run resumes that job
    before a newer one, resends nothing acknowledged, and closes each with its one right event."""
    ledger = tmp_path / "connector.sqlite3"
    async with FakePleo(seed=41, api_key=API_KEY, faults=Faults(latency=(0.002, 0.01))) as fake:
        first = fake.create_job(items=1500, status="pending")
        answers = {first.id: await _erp_answers(fake, first.id)}

        child = await _start(fake, ledger)
        output = asyncio.create_task(child.communicate())
        async with asyncio.timeout(20):
            while len(fake.journal.puts(first.id)) < 3:
                if output.done():
                    pytest.fail(f"the connector exited early: {output.result()[1].decode()}")
                await asyncio.sleep(0.005)
        child.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(output, 20)
        assert child.returncode == 0, stderr.decode()[-2000:]
        assert fake.journal.final_events_applied(first.id) == []
        assert fake.job_status(first.id) == "in_progress"
        (stopped,) = _job_lines(stdout)
        assert stopped["job_id"] == first.id
        assert stopped["event"] == "stopped"
        outputs = [stdout, stderr]

        second = fake.create_job(items=100, status="pending")
        answers[second.id] = await _erp_answers(fake, second.id)
        rerun = await _start(fake, ledger, "--once")
        stdout, stderr = await asyncio.wait_for(rerun.communicate(), 30)
        assert rerun.returncode == 0, stderr.decode()[-2000:]
        outputs += [stdout, stderr]

        lines = _job_lines(stdout)
        assert [(line["job_id"], line["event"], line["resumed"]) for line in lines] == [
            (first.id, _final_event(answers[first.id]), True),
            (second.id, _final_event(answers[second.id]), False),
        ]
        # Each item went to the ERP once: the rerun called it only for what the first run left.
        handled = [line["handled_successful"] + line["handled_failed"] for line in lines]
        assert stopped["handled_successful"] + stopped["handled_failed"] + handled[0] == 1500
        assert handled[1] == 100
        journal = fake.journal
        for job in (first, second):
            (final,) = journal.final_events_applied(job.id)
            assert final.body["event"] == _final_event(answers[job.id])
            assert fake.job_status(job.id) == final.body["event"]
            assert journal.resent_after_ack(job.id) == {}
            for item in fake.items(job.id):
                answer = answers[job.id][item["accountingEntryId"]]
                assert item["status"] == answer.status.value
                assert item.get("externalId") == answer.external_id
                assert item.get("failureReasonType") == answer.failure_reason_type
        # One job at a time: the second was started only once the first was closed.
        closed_at = journal.final_events_applied(first.id)[0].answered_at
        assert closed_at is not None
        assert journal.events(second.id)[0].received_at > closed_at

    basic = base64.b64encode(f"{API_KEY}:".encode())
    for text in outputs:
        assert API_KEY.encode() not in text
        assert basic not in text


async def test_replicas_sharing_a_postgres_ledger_close_every_job_once(
    postgres_dsn: str, postgres_schema: str
) -> None:
    """Two connector processes with --postgres and two workers each share six jobs of three
    companies out: each job is closed by one of them with its one right event, per company one
    at a time and oldest first, and nothing acknowledged is resent."""
    async with FakePleo(
        seed=43, api_key=API_KEY, strict=True, faults=Faults(latency=(0.001, 0.004))
    ) as fake:
        made = [
            (minutes, created_minutes_ago(fake, minutes, company(number), items=150))
            for minutes in (2, 1)
            for number in range(3)
        ]
        jobs = [job for _, job in sorted(made, key=lambda made: -made[0])]
        answers = {job.id: await _erp_answers(fake, job.id) for job in jobs}
        env = {name: value for name, value in os.environ.items() if not name.startswith("PLEO_")}
        env["PLEO_API_KEY"] = fake.api_key
        env["PLEO_LEDGER_DSN"] = postgres_dsn
        replicas = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(EXAMPLE),
                "--base-url",
                fake.base_url,
                "--postgres",
                "--postgres-schema",
                postgres_schema,
                "--workers",
                "2",
                "--poll-seconds",
                "0.2",
                "--once",
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for _ in range(2)
        ]
        results = await asyncio.wait_for(
            asyncio.gather(*(replica.communicate() for replica in replicas)), 90
        )
        for replica, (_, stderr) in zip(replicas, results, strict=True):
            assert replica.returncode == 0, stderr.decode()[-2000:]
        lines = [line for stdout, _ in results for line in _job_lines(stdout)]
        expected = {job.id: _final_event(answers[job.id]) for job in jobs}
        # A replica may take up a job the other closed after it listed the jobs: it says the
        # job was already closed, and sends nothing.
        closed = sorted(
            (line["job_id"], line["event"]) for line in lines if not line.get("already_delivered")
        )
        assert closed == sorted(expected.items())
        assert {(line["job_id"], line["event"]) for line in lines} <= set(expected.items())
        for job in jobs:
            (final,) = fake.journal.final_events_applied(job.id)
            assert final.body["event"] == _final_event(answers[job.id])
            assert fake.journal.resent_after_ack(job.id) == {}
        assert_in_pleos_order(fake, jobs)
        assert API_KEY.encode() not in b"".join(out + err for out, err in results)
