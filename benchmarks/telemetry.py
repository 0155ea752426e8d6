"""The cost of the OpenTelemetry instrumentation: `python -m benchmarks.telemetry [--quick]`,
and two budgets of `make bench`.

The library's CPU per item (batch 100, 0 ms, C=8, as the first budget of `make bench`) in three
ways, in turns within one process, in an order that rotates each round:

* `off`: the instrumentation switched off inside the library (`_telemetry.switched_off()`),
  as if the `otel` extra were not installed: the baseline;
* `api`: the `otel` extra installed and no SDK configured (the API's default providers);
* `sdk`: the client given an SDK `TracerProvider` with a `BatchSpanProcessor` to an exporter
  that drops the spans, and an SDK `MeterProvider` with a metric reader.

Each budget is the median over the rounds of that round's ratio to `off`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from benchmarks.clients import library, make_rows
from benchmarks.echo_server import echo_server
from pleo_export_async import _telemetry

MODES = ("off", "api", "sdk")
#: Rounds, and items per run. Many short rounds rather than a few long ones: the machine's
#: noise changes over seconds. For the same code, two runs of 12 rounds of 100,000 items gave
#: the SDK 1.27 and 1.46; two of 36 rounds of 20,000 gave 1.275 and 1.267.
SIZES = {"quick": (4, 20_000), "full": (36, 20_000)}


class _Dropping:
    """A span exporter that drops what it is given."""

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _sdk_providers() -> tuple[Any, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(_Dropping()))  # type: ignore[arg-type]
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return tracer_provider, meter_provider


def _cpu_per_item(url: str, items: int, mode: str, providers: tuple[Any, Any]) -> float:
    rows = make_rows(items)
    options: dict[str, Any] = {}
    if mode == "sdk":
        options = {"tracer_provider": providers[0], "meter_provider": providers[1]}
    switch: AbstractContextManager[None] = (
        _telemetry.switched_off() if mode == "off" else nullcontext()
    )
    with switch:
        cpu = time.process_time()
        acknowledged = asyncio.run(library(url, rows, 8, **options))
        cpu = time.process_time() - cpu
    if acknowledged != items:
        raise RuntimeError(f"{mode}: acknowledged {acknowledged} of {items}")
    return cpu / items * 1e6


def telemetry_overhead(rounds: int, items: int) -> dict[str, Any]:
    """µs per item of each mode, and the per-round ratios of `api` and `sdk` to `off`."""
    if not _telemetry.AVAILABLE:
        return {}
    try:
        providers = _sdk_providers()
    except ImportError:
        return {}
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    with echo_server(0.0) as url:
        for mode in MODES:
            _cpu_per_item(url, 2000, mode, providers)
        for number in range(rounds):
            order = MODES[number % 3 :] + MODES[: number % 3]
            for mode in order if number % 2 == 0 else order[::-1]:
                samples[mode].append(_cpu_per_item(url, items, mode, providers))
    providers[0].shutdown()
    providers[1].shutdown()
    ratios = {
        mode: [value / off for value, off in zip(samples[mode], samples["off"], strict=True)]
        for mode in ("api", "sdk")
    }
    return {
        "rounds": rounds,
        "items": items,
        "us_per_item": {mode: statistics.median(values) for mode, values in samples.items()},
        "samples": samples,
        "ratio": {mode: statistics.median(values) for mode, values in ratios.items()},
        "ratios": ratios,
    }


def budgets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The two budgets, as `make bench` takes them (`Budget(**budget)`)."""
    if not result:
        return []
    per_item, ratio, ratios = result["us_per_item"], result["ratio"], result["ratios"]

    def shown(mode: str) -> str:
        spread = f"[{min(ratios[mode]):.2f} to {max(ratios[mode]):.2f}]"
        return f"{ratio[mode]:.3f} {spread} ({per_item[mode]:.2f} vs {per_item['off']:.2f} µs)"

    return [
        {
            "name": "telemetry: CPU per item with the otel extra and no SDK configured / "
            "instrumentation switched off, same run",
            "measured": ratio["api"],
            "limit": 1.03,
            "at_most": True,
            "shown": shown("api"),
        },
        {
            "name": "telemetry: CPU per item with the SDK (BatchSpanProcessor to an exporter "
            "that drops spans, a metric reader) / instrumentation switched off, same run",
            "measured": ratio["sdk"],
            "limit": 1.25,
            "at_most": True,
            "shown": shown("sdk"),
        },
    ]


def main(argv: Callable[[], list[str]] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.telemetry")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    quick = parser.parse_args().quick
    rounds, items = SIZES["quick" if quick else "full"]
    result = telemetry_overhead(rounds, items)
    if not result:
        print("opentelemetry-sdk is not installed: no telemetry budgets")
        return
    print(f"| budget ({items:,} items per run, median of {rounds} rounds) | measured | limit |")
    print("|---|---|---|")
    for budget in budgets(result):
        verdict = "PASS" if budget["measured"] <= budget["limit"] else "FAIL"
        print(f"| {budget['name']} | {budget['shown']} | ≤ {budget['limit']:g} {verdict} |")


if __name__ == "__main__":
    main()
