"""Benchmarks of `PostgresLedger`, the ledger several worker processes share.

* `postgres_ledger_ratio`: `update()` at 50 ms latency and C=16 against the echo server, with a
  `PostgresLedger` and with the default `MemoryLedger`, taking turns in an order that swaps each
  round; the budget is the median of the rounds' throughput ratios.
* `replicas`: 1, 2 and 4 worker processes (`benchmarks.replica_child`) sharing one
  `PostgresLedger` schema through `run_pending`, against the fake Pleo in its own process
  (`benchmarks.replica_fake`) holding 8 companies with 2 jobs each; jobs finished per minute,
  from the moment the workers are told to go to the moment the fake sees its last job closed,
  with the CPU the fake, the workers and PostgreSQL used meanwhile, and what the fake's journal
  says of every job (one final event, nothing sent again after its acknowledgement).

Both need a PostgreSQL database: `PLEO_TEST_POSTGRES_DSN`'s, or a throwaway cluster that
`postgres_dsn()` starts and stops (with `tests/postgres_cluster.py`). Without PostgreSQL's server
programs they are skipped with a note. Each run writes only to schemas it creates, and drops them
at the end.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import IO, Any

from benchmarks.clients import Row, library, make_rows
from benchmarks.echo_server import echo_server
from pleo_export_async import PostgresLedger

ROOT = Path(__file__).resolve().parent.parent
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

#: The sizes of `replicas`: companies, jobs per company, items per job, and the rounds.
REPLICA_SIZES = {"quick": (8, 2, 300, 1), "full": (8, 2, 2000, 2)}
REPLICA_WORKERS = (1, 2, 4)
REPLICA_CONCURRENCY = 32
REPLICA_HANDLER_SECONDS = 0.020
#: How often the CPU of the replica run's processes is read while it runs.
_SAMPLE_EVERY = 0.5
#: The sizes of `postgres_ledger_ratio`: rounds, and batches of 100 per concurrent worker.
RATIO_SIZES = {"quick": (6, 4), "full": (12, 12)}
RATIO_CONCURRENCY = 16
RATIO_LATENCY = 0.05


# -- the database ----------------------------------------------------------------------------------


def _cluster_module() -> ModuleType:
    """`tests/postgres_cluster.py` (standard library only), imported by its path."""
    path = ROOT / "tests" / "postgres_cluster.py"
    spec = importlib.util.spec_from_file_location("benchmarks_postgres_cluster", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def postgres_dsn() -> Iterator[str | None]:
    """A PostgreSQL DSN for the benchmarks: `PLEO_TEST_POSTGRES_DSN` when set, else a throwaway
    cluster started in a temporary directory and stopped (and deleted) on exit. Yields None, after
    printing why, when PostgreSQL's server programs are not installed or the cluster would not
    start."""
    given = os.environ.get("PLEO_TEST_POSTGRES_DSN")
    if given:
        yield given
        return
    cluster = _cluster_module()
    directory = Path(tempfile.mkdtemp(prefix="pleo-bench-postgres-"))
    try:
        dsn = str(cluster.start(directory))
    except cluster.ClusterUnavailable as unavailable:
        print(f"(PostgreSQL benchmarks skipped: {unavailable})", file=sys.stderr)
        cluster.stop(directory)
        shutil.rmtree(directory, ignore_errors=True)
        yield None
        return
    try:
        yield dsn
    finally:
        cluster.stop(directory)


def _new_schema(purpose: str) -> str:
    return f"bench_{purpose}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def _drop_schemas(dsn: str, schemas: list[str]) -> None:
    """Drop the schemas this run created (and nothing else)."""
    if not schemas:
        return

    async def drop() -> None:
        import asyncpg

        connection = await asyncpg.connect(dsn)
        try:
            for schema in schemas:
                await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await connection.close()

    asyncio.run(drop())


_NO_ASYNCPG = "asyncpg is not installed: pip install -e '.[postgres]'"


def _skipped(why: str) -> dict[str, Any]:
    print(f"(PostgreSQL benchmarks skipped: {why})", file=sys.stderr)
    return {"skipped": why, "budgets": []}


def _ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    return [n / d for n, d in zip(numerators, denominators, strict=True)]


def _spread(values: list[float]) -> str:
    return f"[{min(values):.2f} to {max(values):.2f}]"


# -- PostgresLedger against MemoryLedger ----------------------------------------------------------


async def _timed_update(
    url: str, rows: list[Row], dsn: str | None, schema: str
) -> tuple[float, float]:
    """Items per second and client CPU µs per item of one `update()` of `rows`, with a
    PostgresLedger when `dsn` is given (opened before timing), else the default MemoryLedger."""
    if dsn is None:
        cpu, wall = time.process_time(), time.perf_counter()
        acknowledged = await library(url, rows, RATIO_CONCURRENCY)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    else:
        async with PostgresLedger(dsn, schema=schema) as ledger:
            cpu, wall = time.process_time(), time.perf_counter()
            acknowledged = await library(url, rows, RATIO_CONCURRENCY, ledger)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if acknowledged != len(rows):
        raise RuntimeError(f"acknowledged {acknowledged} of {len(rows)}")
    return len(rows) / wall, cpu / len(rows) * 1e6


def postgres_ledger_ratio(quick: bool, *, dsn: str) -> dict[str, Any]:
    """`update()` at 50 ms latency and C=16 with a PostgresLedger, against the MemoryLedger in
    the same run: the median of the rounds' throughput ratios (PostgresLedger / MemoryLedger)."""
    if importlib.util.find_spec("asyncpg") is None:
        return _skipped(_NO_ASYNCPG)
    rounds, batches = RATIO_SIZES["quick" if quick else "full"]
    items = RATIO_CONCURRENCY * 100 * batches
    schema = _new_schema("ratio")
    names = ("MemoryLedger", "PostgresLedger")
    per_second: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    started = time.perf_counter()
    try:
        with echo_server(RATIO_LATENCY) as url:
            for name in names:  # warm up: connections, imports, the schema's creation
                asyncio.run(_timed_update(url, make_rows(1600), _dsn_for(name, dsn), schema))
            for number in range(rounds):
                rows = make_rows(items)
                for name in names if number % 2 == 0 else names[::-1]:
                    run = _timed_update(url, rows, _dsn_for(name, dsn), schema)
                    items_per_second, us_per_item = asyncio.run(run)
                    per_second[name].append(items_per_second)
                    cpu[name].append(us_per_item)
    finally:
        _drop_schemas(dsn, [schema])
    ratios = _ratios(per_second["PostgresLedger"], per_second["MemoryLedger"])
    cpu_ratios = _ratios(cpu["PostgresLedger"], cpu["MemoryLedger"])
    ratio = statistics.median(ratios)
    rate = {name: statistics.median(values) for name, values in per_second.items()}
    budget = (
        f"PostgresLedger / MemoryLedger, update() at {RATIO_LATENCY * 1000:.0f} ms, "
        f"C={RATIO_CONCURRENCY}: throughput"
    )
    return {
        "rounds": rounds,
        "items_per_run": items,
        "items_per_second": rate,
        "runs": per_second,
        "ratios": ratios,
        "ratio": ratio,
        "cpu_us_per_item": {name: statistics.median(values) for name, values in cpu.items()},
        "cpu_runs": cpu,
        "cpu_ratio": statistics.median(cpu_ratios),
        "seconds": time.perf_counter() - started,
        "budgets": [
            {
                "name": budget,
                "measured": ratio,
                "limit": 0.9,
                "at_most": False,
                "shown": f"{ratio:.2f} {_spread(ratios)} ({rate['PostgresLedger']:,.0f} vs "
                f"{rate['MemoryLedger']:,.0f} items/s)",
            }
        ],
    }


def _dsn_for(name: str, dsn: str) -> str | None:
    return dsn if name == "PostgresLedger" else None


# -- CPU of processes ------------------------------------------------------------------------------


def _process_cpu(pid: int) -> float:
    """User and system CPU seconds of a process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _machine_busy() -> float:
    """CPU seconds the whole machine spent busy (every core, every process) since boot."""
    with open("/proc/stat") as stat:
        values = [int(value) for value in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / _CLOCK_TICKS


def _server_pids(dsn: str) -> list[int]:
    """The processes of the PostgreSQL server serving `dsn` on this machine: the postmaster
    whose command line names the DSN's port, and its children (the backends). Empty when it
    cannot be found (another machine, or /proc hidden)."""
    port = urllib.parse.urlsplit(dsn).port or 5432
    commands: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                head, tail = stat.read().rsplit(")", 1)
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "postgres" in head:
            commands[int(entry)] = (int(tail.split()[1]), command)
    masters = [pid for pid, (_, command) in commands.items() if f"-p {port} " in f"{command} "]
    return [pid for pid, (parent, _) in commands.items() if pid in masters or parent in masters]


class _CpuMeter:
    """CPU seconds of a group of processes from `start()` to `used()`: a process that started in
    between counts from zero, and a process that ended in between counts as its last reading
    (`sample()` keeps that reading fresh)."""

    def __init__(self) -> None:
        self._start: dict[int, float] = {}
        self._last: dict[int, float] = {}

    def sample(self, pids: list[int]) -> None:
        for pid in pids:
            value = _process_cpu(pid)
            if value or pid not in self._last:
                self._last[pid] = max(value, self._last.get(pid, 0.0))

    def start(self, pids: list[int]) -> None:
        self.sample(pids)
        self._start = dict(self._last)

    def used(self, pids: list[int]) -> float:
        self.sample(pids)
        return sum(self._last.get(pid, 0.0) - self._start.get(pid, 0.0) for pid in pids)


# -- replicas --------------------------------------------------------------------------------------


def _lines(stream: IO[str]) -> queue.Queue[str]:
    """The stream's lines as they come, read by a thread (so that waits can time out)."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))
        lines.put("")  # end of the stream

    threading.Thread(target=read, daemon=True).start()
    return lines


def _journal(base_url: str, api_key: str) -> dict[str, Any]:
    token = base64.b64encode(f"{api_key}:".encode()).decode()
    request = urllib.request.Request(
        f"{base_url}/_fake/journal", headers={"Authorization": f"Basic {token}"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        document: dict[str, Any] = json.loads(answer.read())
    return document


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _replica_run(
    dsn: str,
    workers: int,
    companies: int,
    per_company: int,
    items: int,
    seed: int,
    timeout: float,
    handler_seconds: float = REPLICA_HANDLER_SECONDS,
) -> dict[str, Any]:
    """One run: a fresh fake and schema, `workers` worker processes, until every job is closed.

    CPU is counted from the workers' go to the fake's last job closed: of the fake, of the
    workers, of PostgreSQL's server processes, of this process (which only waits and samples),
    and of the whole machine (`machine_busy_cores`, other users' processes included)."""
    schema = _new_schema("replicas")
    jobs = companies * per_company
    with contextlib.ExitStack() as stack:
        stack.callback(_drop_schemas_quietly, dsn, schema)
        fake = _started(
            stack, [str(companies), str(per_company), str(items), str(seed)], "replica_fake"
        )
        assert fake.stdout is not None
        fake_lines = _lines(fake.stdout)
        info = json.loads(fake_lines.get(timeout=60))
        environment = {**os.environ, "PLEO_BENCH_DSN": dsn}
        arguments = [info["base_url"], info["api_key"], schema, str(REPLICA_CONCURRENCY)]
        logs = [stack.enter_context(tempfile.TemporaryFile("w+")) for _ in range(workers)]
        processes = [
            _started(stack, [*arguments, str(handler_seconds)], "replica_child", log, environment)
            for log in logs
        ]
        worker_lines = []
        for process, log in zip(processes, logs, strict=True):
            assert process.stdout is not None
            worker_lines.append(_lines(process.stdout))
            if worker_lines[-1].get(timeout=60) != "ready":
                raise RuntimeError(f"a worker did not start: {_log_text(log)}")

        pids = {
            "fake": [fake.pid],
            "workers": [process.pid for process in processes],
            "postgres": _server_pids(dsn),
        }
        meters = {group: _CpuMeter() for group in pids}
        for group, meter in meters.items():
            meter.start(pids[group])
        busy, own = _machine_busy(), time.process_time()
        began = time.monotonic()
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        closed_at = None
        while closed_at is None:
            with contextlib.suppress(queue.Empty):
                line = fake_lines.get(timeout=_SAMPLE_EVERY)
                if not line.startswith("closed "):
                    raise RuntimeError(f"the fake said {line!r} before every job was closed")
                closed_at = float(line.split()[1])
                break
            # A backend that ends before the run does (none should) keeps its last reading.
            pids["postgres"] += [pid for pid in _server_pids(dsn) if pid not in pids["postgres"]]
            for group, meter in meters.items():
                meter.sample(pids[group])
            if time.monotonic() > began + timeout:
                raise RuntimeError(f"{workers} worker(s) did not close {jobs} jobs in {timeout}s")
        cpu = {group: meter.used(pids[group]) for group, meter in meters.items()}
        cpu["benchmark"] = time.process_time() - own
        busy = _machine_busy() - busy
        wall = closed_at - began

        summaries = []
        for process, lines in zip(processes, worker_lines, strict=True):
            line = lines.get(timeout=60)
            process.wait(timeout=60)
            summaries.append(json.loads(line) if line else {})
        journal = _journal(info["base_url"], info["api_key"])
        errors = [text for text in map(_log_text, logs) if text]
    problems = _journal_problems(journal, info["job_ids"], items)
    completed = sum(summary.get("completed", 0) for summary in summaries)
    if completed != jobs:
        problems.append(f"the workers completed {completed} jobs, not {jobs}")
    return {
        "workers": workers,
        "jobs": jobs,
        "items_per_job": items,
        "handler_seconds": handler_seconds,
        "seconds": wall,
        "jobs_per_minute": jobs / wall * 60,
        "items_per_second": jobs * items / wall,
        "completed_by_worker": [summary.get("completed") for summary in summaries],
        "rounds_by_worker": [summary.get("rounds") for summary in summaries],
        "cpu_seconds": cpu,
        "cpu_cores": {group: seconds / wall for group, seconds in cpu.items()},
        "cpu_us_per_item": {
            group: seconds / (jobs * items) * 1e6 for group, seconds in cpu.items()
        },
        "machine_busy_cores": busy / wall,
        "other_processes_cores": max(0.0, busy - sum(cpu.values())) / wall,
        "cores": os.cpu_count(),
        "problems": problems,
        "worker_errors": [text[-2000:] for text in errors],
    }


def _started(
    stack: contextlib.ExitStack,
    arguments: list[str],
    module: str,
    log: IO[str] | None = None,
    environment: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """`python -m benchmarks.MODULE ARGUMENTS...`, stopped when `stack` closes; a worker (with
    a `log` for its stderr) also gets a pipe on its stdin."""
    process = subprocess.Popen(
        [sys.executable, "-m", f"benchmarks.{module}", *arguments],
        stdin=subprocess.PIPE if log is not None else None,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        cwd=ROOT,
        env=environment,
    )
    stack.callback(_stop, process)
    return process


def _drop_schemas_quietly(dsn: str, schema: str) -> None:
    try:
        _drop_schemas(dsn, [schema])
    except Exception as error:  # the run's own error matters more
        print(f"(could not drop schema {schema}: {error})", file=sys.stderr)


def _log_text(log: IO[str]) -> str:
    log.flush()
    log.seek(0)
    return log.read().strip()


def _journal_problems(journal: dict[str, Any], job_ids: list[str], items: int) -> list[str]:
    """What the fake's journal says went wrong: a job not completed, not exactly one final event,
    an update sent again after its acknowledgement, an item not acknowledged."""
    problems = []
    jobs = journal["jobs"]
    for job_id in job_ids:
        job = jobs.get(job_id)
        if job is None:
            problems.append(f"job {job_id}: not in the journal")
            continue
        if job["status"] != "completed":
            problems.append(f"job {job_id}: {job['status']}")
        if len(job["final_events"]) != 1:
            problems.append(f"job {job_id}: final events {job['final_events']}")
        resent = sum(job["resent_after_ack"].values())
        if resent:
            problems.append(f"job {job_id}: {resent} update(s) sent again after their ack")
        if job["acknowledged"] != items:
            problems.append(f"job {job_id}: {job['acknowledged']} of {items} acknowledged")
    return problems


def replicas(quick: bool, *, dsn: str) -> dict[str, Any]:
    """Jobs finished per minute by 1, 2 and 4 workers sharing one PostgresLedger schema; the
    budget for N workers is N times one worker's rate (the same round), less a fifth."""
    if importlib.util.find_spec("asyncpg") is None:
        return _skipped(_NO_ASYNCPG)
    companies, per_company, items, rounds = REPLICA_SIZES["quick" if quick else "full"]
    jobs = companies * per_company
    timeout = 120.0 if quick else 600.0
    started = time.perf_counter()
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in REPLICA_WORKERS}
    for number in range(rounds):
        order = REPLICA_WORKERS if number % 2 == 0 else REPLICA_WORKERS[::-1]
        for workers in order:
            run = _replica_run(dsn, workers, companies, per_company, items, number, timeout)
            runs[workers].append(run)
    scaling = {
        n: [
            runs[n][r]["jobs_per_minute"] / (n * runs[1][r]["jobs_per_minute"])
            for r in range(rounds)
        ]
        for n in REPLICA_WORKERS
        if n > 1
    }
    rate = {
        n: statistics.median(run["jobs_per_minute"] for run in runs[n]) for n in REPLICA_WORKERS
    }
    cpu = {
        n: {
            group: statistics.median(run["cpu_cores"][group] for run in runs[n])
            for group in ("fake", "workers", "postgres")
        }
        | {
            "machine": statistics.median(run["machine_busy_cores"] for run in runs[n]),
            "other": statistics.median(run["other_processes_cores"] for run in runs[n]),
        }
        for n in REPLICA_WORKERS
    }
    problems = [
        f"N={n}: {problem}"
        for n in REPLICA_WORKERS
        for run in runs[n]
        for problem in run["problems"]
    ]
    shape = (
        f"{jobs} jobs of {items:,} items, handler {REPLICA_HANDLER_SECONDS * 1000:.0f} ms, "
        f"C={REPLICA_CONCURRENCY} per worker"
    )
    budgets: list[dict[str, Any]] = []
    for n, values in scaling.items():
        measured = statistics.median(values)
        spread = f" {_spread(values)}" if len(values) > 1 else ""
        budgets.append(
            {
                "name": f"{n} workers sharing a PostgresLedger, {shape}: jobs/min / "
                f"({n} times one worker's)",
                "measured": measured,
                "limit": 0.8,
                "at_most": False,
                "shown": f"{measured:.2f}{spread} ({rate[n]:,.0f} vs {rate[1]:,.0f} jobs/min; "
                f"CPU cores: fake {cpu[n]['fake']:.2f}, workers {cpu[n]['workers']:.2f}, "
                f"PostgreSQL {cpu[n]['postgres']:.2f}, other processes {cpu[n]['other']:.2f}; "
                f"machine {cpu[n]['machine']:.2f} of {os.cpu_count()})",
            }
        )
    budgets.append(
        {
            "name": "replicas, every run: jobs not closed by exactly one final event, "
            "updates sent again after their acknowledgement, items not acknowledged",
            "measured": float(len(problems)),
            "limit": 0.0,
            "at_most": True,
            "shown": "none" if not problems else f"{len(problems)}: {problems[0]}",
        }
    )
    return {
        "rounds": rounds,
        "jobs": jobs,
        "items_per_job": items,
        "concurrency": REPLICA_CONCURRENCY,
        "jobs_per_minute": rate,
        "scaling": scaling,
        "cpu_cores": cpu,
        "runs": runs,
        "problems": problems,
        # Errors the workers logged (a job tried again later, say): not failures by themselves.
        "worker_errors": [
            f"N={n}: {error}"
            for n in REPLICA_WORKERS
            for run in runs[n]
            for error in run["worker_errors"]
        ],
        "seconds": time.perf_counter() - started,
        "budgets": budgets,
    }
