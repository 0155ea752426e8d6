"""Draw the trace of docs/how-to/observe.md: a real `process_job` run against the bundled fake,
with a 503 and a 429 among its requests, its spans caught by the OpenTelemetry SDK's in-memory
exporter and drawn as a waterfall with matplotlib into docs/images/trace-waterfall.png.

    .venv/bin/python docs/make_trace_picture.py

It needs the `otel` and `bench` extras (the SDK is in `dev`). Run it again after a change to the
spans, and commit the picture.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pleo_export_async import ApiKeyAuth, ExportItem, ItemUpdate, PleoExportClient
from pleo_export_async.testing import FakePleo, Faults, FaultSpec

PICTURE = Path(__file__).resolve().parent / "images" / "trace-waterfall.png"
ITEMS = 240
COLOURS = {
    "pleo.process_job": "#3949ab",
    "pleo.job.update": "#5c6bc0",
    "pleo.job.complete": "#5c6bc0",
    "pleo.handle_item": "#9fa8da",
    "http": "#f06292",
    "http error": "#c62828",
}


async def book(item: ExportItem) -> ItemUpdate:
    await asyncio.sleep(0.004)  # the ERP's answer
    return ItemUpdate.successful(item.accounting_entry_id, external_id="JE-1")


async def traced_job() -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    faults = Faults(latency=(0.004, 0.008))
    async with FakePleo(seed=2026, faults=faults) as pleo:
        job = pleo.create_job(items=ITEMS, status="pending")
        # The first PUT gets a 503, the second a 429 with Retry-After: each is retried.
        first_put = 1 + 4  # the job read, two pages of items and of export items come first
        pleo.faults = Faults(
            latency=(0.004, 0.008),
            server_error=FaultSpec(at={first_put + 4}),
            rate_limit=FaultSpec(at={first_put + 6}),
        )
        async with PleoExportClient(
            pleo.base_url, auth=ApiKeyAuth(pleo.api_key), tracer_provider=provider
        ) as client:
            await client.process_job(job.id, book, concurrency=16)
    provider.shutdown()
    return list(exporter.get_finished_spans())


def shown(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    """The spans worth a row: every one but the handler calls, of which the first few."""
    handler_calls = [span for span in spans if span.name == "pleo.handle_item"]
    keep = {id(span) for span in handler_calls[:6]}
    return [span for span in spans if span.name != "pleo.handle_item" or id(span) in keep]


def bars(spans: list[ReadableSpan]) -> list[tuple[int, float, str, str, bool]]:
    """A row per span shown, and one per retry wait (an event of its span): where it starts
    (ns), how long (ms), its label, its colour, and whether it is a wait."""
    rows: list[tuple[int, float, str, str, bool]] = []
    for span in shown(spans):
        begin, end = span.start_time or 0, span.end_time or 0
        attributes = span.attributes or {}
        status = attributes.get("http.response.status_code")
        label = span.name
        if span.kind.name == "CLIENT":
            failed = isinstance(status, int) and status >= 400
            colour = COLOURS["http error"] if failed else COLOURS["http"]
            label += f"  {status}"
            resend = attributes.get("http.request.resend_count")
            if isinstance(resend, int) and resend:
                label += f"  (resend {resend})"
        else:
            colour = COLOURS.get(span.name, "#90a4ae")
        rows.append((begin, max((end - begin) / 1e6, 0.3), label, colour, False))
        for event in span.events:
            if event.name not in ("pleo.retry.wait", "pleo.retry_after.wait"):
                continue
            event_attributes = event.attributes or {}
            seconds = event_attributes.get("pleo.retry.wait_seconds", 0)
            waited = float(seconds) if isinstance(seconds, int | float) else 0.0
            cause = event_attributes.get("pleo.retry.cause", "Retry-After, every sender")
            label = f"{event.name}: {cause}, {waited:.2f} s"
            rows.append((event.timestamp, waited * 1000, label, COLOURS["http error"], True))
    return sorted(rows)


def draw(spans: list[ReadableSpan]) -> None:
    rows = bars(spans)
    start = rows[0][0]
    figure, axes = plt.subplots(figsize=(11, 0.28 * len(rows) + 1.2), dpi=110)
    for row, (begin_ns, length, label, colour, waiting) in enumerate(rows):
        begin = (begin_ns - start) / 1e6
        if waiting:
            axes.barh(
                row,
                length,
                left=begin,
                height=0.5,
                color="none",
                hatch="///",
                edgecolor=colour,
                linewidth=0.6,
            )
        else:
            axes.barh(row, length, left=begin, height=0.7, color=colour)
        axes.text(begin + length + 1, row, label, va="center", fontsize=7)
    axes.invert_yaxis()
    axes.set_yticks([])
    axes.set_xlabel("milliseconds since the job began")
    handler_calls = sum(span.name == "pleo.handle_item" for span in spans)
    axes.set_title(
        f"process_job, {ITEMS} items against the fake: {len(spans)} spans "
        f"({handler_calls} handler calls, 6 shown); a 503 and a 429 retried",
        fontsize=9,
    )
    right = max((begin - start) / 1e6 + length for begin, length, *_ in rows)
    axes.set_xlim(0, right * 1.35)
    figure.tight_layout()
    PICTURE.parent.mkdir(exist_ok=True)
    figure.savefig(PICTURE)
    print(f"wrote {PICTURE} ({len(rows)} rows)")


def main() -> None:
    spans = asyncio.run(traced_job())  # real retry waits: they show in the picture
    draw(spans)


if __name__ == "__main__":
    main()
