"""A throwaway Prometheus server for the tests: Debian's `prometheus` program, storing into a
temporary directory, served on a loopback port, and scraping every second the targets a test
writes into `DIR/targets.json` (file-based discovery, re-read every second). Standard library
only, so that `.ci/run` can start it with the system's Python, as it starts PostgreSQL:

    python3 tests/prometheus_server.py start DIR   # prints the two export lines below
    python3 tests/prometheus_server.py stop DIR

It prints `export PLEO_TEST_PROMETHEUS_URL=http://127.0.0.1:PORT` and
`export PLEO_TEST_PROMETHEUS_TARGETS=DIR/targets.json`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

#: Job name of the scrape, the `job` label of every series it gives.
SCRAPE_JOB = "pleo-export"

CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: {job}
    file_sd_configs:
      - files: [{targets}]
        refresh_interval: 1s
"""


class PrometheusUnavailable(RuntimeError):
    """Prometheus is not installed, or it would not start."""


def program() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise PrometheusUnavailable(
            "Prometheus is not installed: apt-get install prometheus "
            "(or set PLEO_TEST_PROMETHEUS_URL and PLEO_TEST_PROMETHEUS_TARGETS)"
        )
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def write_targets(targets_file: Path, addresses: list[str]) -> None:
    """Scrape these `host:port` addresses from now on (written whole, then renamed, so that
    Prometheus never reads half a file)."""
    staged = targets_file.with_suffix(".staged")
    staged.write_text(json.dumps([{"targets": addresses, "labels": {}}]))
    os.replace(staged, targets_file)


def start(directory: Path) -> tuple[str, Path]:
    """Start the server; its URL and the targets file. Waits until it answers `/-/ready`."""
    directory.mkdir(parents=True, exist_ok=True)
    targets = directory / "targets.json"
    write_targets(targets, [])
    config = directory / "prometheus.yml"
    config.write_text(CONFIG.format(job=SCRAPE_JOB, targets=json.dumps(str(targets))))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (directory / "prometheus.log").open("ab")
    process = subprocess.Popen(
        [
            program(),
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (directory / "pid").write_text(str(process.pid))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PrometheusUnavailable(
                f"Prometheus exited with {process.returncode}; see {directory}/prometheus.log"
            )
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as answer:
                if answer.status == 200:
                    return url, targets
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    stop(directory)
    raise PrometheusUnavailable(f"Prometheus did not get ready in 60 s; see {directory}")


def stop(directory: Path) -> None:
    pid_file = directory / "pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink()
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child (started by another process): poll it
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
        else:
            if finished == pid:
                break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink()


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print(f"usage: {argv[0]} start|stop DIR", file=sys.stderr)
        return 2
    directory = Path(argv[2])
    if argv[1] == "stop":
        stop(directory)
        return 0
    url, targets = start(directory)
    print(f"export PLEO_TEST_PROMETHEUS_URL={url}")
    print(f"export PLEO_TEST_PROMETHEUS_TARGETS={targets}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
