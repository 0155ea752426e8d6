"""Run the benchmarks: `make bench` (or `python -m benchmarks [--quick]`).

Every figure compares the library with the plain aiohttp loop measured in the same run, in
turns, because absolute times on shared machines vary by a quarter from run to run. Client CPU
is process time of this process (the echo server runs in another one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from benchmarks.clients import Row, library, make_rows, plain_loop
from benchmarks.echo_server import echo_server
from pleo_export_async import SqliteLedger

RESULTS = Path(__file__).with_name("results")

Runner = Callable[[str, list[Row], int], Coroutine[Any, Any, int]]


def _measure(run: Runner, base_url: str, rows: list[Row], concurrency: int) -> tuple[float, float]:
    """(client CPU seconds, wall seconds) of one run."""
    cpu, wall = time.process_time(), time.perf_counter()
    acknowledged = asyncio.run(run(base_url, rows, concurrency))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if acknowledged != len(rows):
        raise RuntimeError(f"{run.__name__} acknowledged {acknowledged} of {len(rows)}")
    return cpu, wall


async def _library_sqlite(base_url: str, rows: list[Row], concurrency: int) -> int:
    with tempfile.TemporaryDirectory() as directory:
        async with SqliteLedger(Path(directory) / "ledger.sqlite3") as ledger:
            return await library(base_url, rows, concurrency, ledger)


CLIENTS: dict[str, Runner] = {
    "plain": plain_loop,
    "library": library,
    "library+sqlite": _library_sqlite,
}


def cpu_per_item(rounds: int, items: int, concurrency: int = 8) -> dict[str, Any]:
    """Client CPU µs per item at batch 100 and 0 ms latency, each client in turn per round."""
    samples: dict[str, list[float]] = {name: [] for name in CLIENTS}
    with echo_server(0.0) as base_url:
        for run in CLIENTS.values():  # warm-up: imports, connection set-up
            _measure(run, base_url, make_rows(2000), concurrency)
        for _ in range(rounds):
            rows = make_rows(items)
            for name, run in CLIENTS.items():
                cpu, _ = _measure(run, base_url, rows, concurrency)
                samples[name].append(cpu / items * 1e6)
    result = {name: statistics.median(values) for name, values in samples.items()}
    return {
        "us_per_item": result,
        "items_per_client": rounds * items,
        "library_ratio": result["library"] / result["plain"],
        "sqlite_ratio": result["library+sqlite"] / result["library"],
    }


def throughput(latency: float, concurrencies: list[int], batches_per_worker: int) -> dict[str, Any]:
    """Items per second for each client at each concurrency, and the fraction of C·100/L."""
    table: dict[str, dict[int, float]] = {"plain": {}, "library": {}}
    with echo_server(latency) as base_url:
        _measure(plain_loop, base_url, make_rows(1000), 4)
        for concurrency in concurrencies:
            rows = make_rows(concurrency * 100 * batches_per_worker)
            for name in table:
                _, wall = _measure(CLIENTS[name], base_url, rows, concurrency)
                table[name][concurrency] = len(rows) / wall
    fractions = (
        {
            name: {c: per_second / (c * 100 / latency) for c, per_second in values.items()}
            for name, values in table.items()
        }
        if latency
        else {}
    )
    return {"latency": latency, "items_per_second": table, "fraction_of_ideal": fractions}


def peak_rss(counts: list[int]) -> dict[int, float]:
    """Peak RSS in MiB of a fresh process streaming `count` updates through update()."""
    peaks: dict[int, float] = {}
    with echo_server(0.0) as base_url:
        for count in counts:
            output = subprocess.run(
                [sys.executable, "-m", "benchmarks.memory_child", base_url, str(count)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            peaks[count] = int(output.split()[-1]) / 1024
    return peaks


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    arguments = parser.parse_args()
    quick = arguments.quick
    rounds, items = (1, 20_000) if quick else (5, 250_000)
    lines: list[str] = []

    cpu = cpu_per_item(rounds, items)
    per_item = cpu["us_per_item"]
    lines += [
        f"| client CPU per item, batch 100, 0 ms, C=8 ({cpu['items_per_client']:,} items each) "
        "| plain | library | library + SqliteLedger |",
        "|---|---|---|---|",
        f"| µs per item | {per_item['plain']:.2f} | {per_item['library']:.2f} "
        f"| {per_item['library+sqlite']:.2f} |",
        "",
        "| budget | measured | verdict |",
        "|---|---|---|",
        f"| library CPU / plain CPU ≤ 1.30 | {cpu['library_ratio']:.2f} "
        f"| {_verdict(cpu['library_ratio'] <= 1.3)} |",
        f"| SqliteLedger CPU / MemoryLedger CPU ≤ 1.10 | {cpu['sqlite_ratio']:.2f} "
        f"| {_verdict(cpu['sqlite_ratio'] <= 1.1)} |",
    ]
    concurrencies = [1, 4, 16, 64] if quick else [1, 2, 4, 8, 16, 32, 64]
    slow = throughput(0.05, concurrencies, 4 if quick else 12)
    fast = throughput(0.0, concurrencies, 5 if quick else 40)
    for concurrency, floor in ((4, 0.90), (16, 0.90), (64, 0.85)):
        library_fraction = slow["fraction_of_ideal"]["library"][concurrency]
        plain_fraction = slow["fraction_of_ideal"]["plain"][concurrency]
        lines.append(
            f"| 50 ms, C={concurrency}: library at ≥ {floor:.0%} of C·100/L "
            f"(plain {plain_fraction:.0%}) | {library_fraction:.1%} "
            f"| {_verdict(library_fraction >= floor)} |"
        )
    rss = peak_rss([10_000, 100_000] if quick else [10_000, 1_000_000])
    small, large = sorted(rss)
    growth = rss[large] - rss[small]
    lines.append(
        f"| peak RSS, {large:,} streamed updates ≤ {small:,}-update run + 30 MiB "
        f"| {rss[large]:.0f} vs {rss[small]:.0f} MiB (+{growth:.0f}) | {_verdict(growth <= 30)} |"
    )
    lines += ["", "| items/s | " + " | ".join(f"C={c}" for c in concurrencies) + " |"]
    lines.append("|---" * (len(concurrencies) + 1) + "|")
    for label, result in (("0 ms", fast), ("50 ms", slow)):
        for name in ("plain", "library"):
            values = result["items_per_second"][name]
            lines.append(
                f"| {name}, {label} | "
                + " | ".join(f"{values[c]:,.0f}" for c in concurrencies)
                + " |"
            )
    report = "\n".join(lines)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    suffix = "-quick" if quick else ""
    (RESULTS / f"latest{suffix}.md").write_text(report + "\n")
    (RESULTS / f"latest{suffix}.json").write_text(
        json.dumps({"cpu": cpu, "slow": slow, "fast": fast, "rss_mib": rss}, indent=2)
    )
    try:
        from benchmarks.plot import plot_throughput
    except ImportError:
        print("(matplotlib not installed: no plot; `pip install -e .[bench]`)")
    else:
        plot_throughput({"0 ms": fast, "50 ms": slow}, RESULTS / f"throughput{suffix}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
