"""The command line server: python -m pleo_export_async.testing."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


async def _read_announcement(process: asyncio.subprocess.Process) -> dict[str, list[str]]:
    """The key=value lines the server prints before `ready`."""
    assert process.stdout is not None
    announced: dict[str, list[str]] = {}
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=10)).decode().strip()
        if not line:
            raise AssertionError("the server exited before printing `ready`")
        if line == "ready":
            return announced
        key, _, value = line.partition("=")
        announced.setdefault(key, []).append(value)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_cli_prints_url_key_and_jobs_then_serves_until_stopped(
    stop_signal: signal.Signals,
) -> None:
    """The CLI prints base_url, api_key and one job_id per job, serves them, and exits 0."""
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pleo_export_async.testing",
        "--port",
        "0",
        "--jobs",
        "2",
        "--items",
        "7",
        "--api-key",
        "cli-key",
        "--seed",
        "4",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=REPO_ROOT,
        env=environment,
    )
    try:
        announced = await _read_announcement(process)
        [base_url] = announced["base_url"]
        assert base_url.startswith("http://127.0.0.1:")
        assert announced["api_key"] == ["cli-key"]
        assert len(announced["job_id"]) == 2
        headers = {"Authorization": "Basic " + base64.b64encode(b"cli-key:").decode()}
        async with aiohttp.ClientSession(base_url, headers=headers) as session:
            for job_id in announced["job_id"]:
                async with session.get(f"/v3/export-jobs/{job_id}") as response:
                    assert response.status == 200
                    job = (await response.json(content_type=None))["data"]
                assert (job["status"], job["numberOfItems"]) == ("pending", 7)
                assert job["companyId"] == announced["company_id"][0]
    finally:
        if process.returncode is None:
            process.send_signal(stop_signal)
        return_code = await asyncio.wait_for(process.wait(), timeout=10)
    assert return_code == 0


@pytest.mark.parametrize(
    ("arguments", "strict"), [([], True), (["--lenient"], False), (["--strict"], True)]
)
def test_cli_server_is_strict_unless_told_lenient(arguments: list[str], strict: bool) -> None:
    """The command line server is strict like FakePleo; `--lenient` opts out, `--strict` is kept."""
    from pleo_export_async.testing.__main__ import _parser

    assert _parser().parse_args(arguments).strict is strict
