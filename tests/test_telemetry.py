"""OpenTelemetry: the spans, span events, metrics and log fields of a client, read back through
the SDK's in-memory span exporter and metric reader, against the fake over real TCP."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from helpers import client_for, successful_updates
from pleo_export_async import (
    ApiKeyAuth,
    ExportItem,
    InvalidInput,
    ItemUpdate,
    JobEvent,
    PleoExportClient,
    PostgresLedger,
    SqliteLedger,
    _telemetry,
)
from pleo_export_async.testing import FakePleo, Faults, FaultSpec

PUT_ITEMS = "PUT /v3/export-jobs/{jobId}/items"
HEX32 = re.compile(r"[0-9a-f]{32}")
HEX16 = re.compile(r"[0-9a-f]{16}")


@attrs.define
class Otel:
    """An SDK tracer provider and meter provider of the test's own, and what they caught."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def points(self, metric: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                assert scope.scope.name == "pleo_export_async"
                for measured in scope.metrics:
                    if measured.name == metric:
                        found.extend(measured.data.data_points)
        return found

    def total(self, metric: str, **attributes: object) -> float:
        """The sum of a counter's points (a histogram's counts) whose attributes include these."""
        total = 0.0
        for point in self.points(metric):
            if all(point.attributes.get(k) == v for k, v in attributes.items()):
                total += point.count if hasattr(point, "count") else point.value
        return total

    def by(self, metric: str, attribute: str) -> dict[Any, float]:
        found: dict[Any, float] = {}
        for point in self.points(metric):
            key = point.attributes.get(attribute)
            found[key] = found.get(key, 0) + (
                point.count if hasattr(point, "count") else point.value
            )
        return {key: value for key, value in found.items() if value}


@pytest.fixture
def otel() -> Iterator[Otel]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Otel(exporter, reader, tracer_provider, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


def attr(span: ReadableSpan | Event, key: str) -> Any:
    """An attribute of the span or event, None if it has none of that name."""
    return (span.attributes or {}).get(key)


def traced_client(fake: FakePleo, otel: Otel, **options: Any) -> PleoExportClient:
    return client_for(
        fake,
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
        **options,
    )


def _faulty() -> Faults:
    """A 503 at the first PUT, a 429 with Retry-After at the third, a lost answer at the
    fifth and every item of the seventh failed with a transient per-item error."""
    return Faults(
        server_error=FaultSpec(at={1}),
        rate_limit=FaultSpec(at={3}),
        retry_after=0.05,
        lost_response=FaultSpec(at={5}),
        item_error=FaultSpec(at={7}),
    )


async def test_a_job_with_faults_has_a_span_per_attempt_under_its_update_span(
    otel: Otel, instant: None
) -> None:
    """Each HTTP attempt of a faulty update is a CLIENT span under the `pleo.job.update` span,
    named `{method} {url.template}` with the semantic conventions' attributes, and each retry
    wait is an event of the update span with its cause."""
    async with FakePleo(seed=3, faults=_faulty()) as fake:
        job = fake.create_job(items=400)
        updates = [*successful_updates(job.item_ids), ItemUpdate.successful(str(uuid.uuid4()))]
        async with traced_client(fake, otel, max_concurrency=1) as client:
            report = await client.job(job.id).update(updates)
            outcome = await client.job(job.id).complete()
            stats = client.stats()

    [update] = otel.spans("pleo.job.update")
    puts = otel.spans(PUT_ITEMS)
    assert len(puts) == report.requests == len(fake.journal.puts(job.id))
    for span in puts:
        assert span.kind is trace.SpanKind.CLIENT
        assert span.parent is not None
        assert span.parent.span_id == update.context.span_id
        attributes: Mapping[str, Any] = span.attributes or {}
        assert attributes["http.request.method"] == "PUT"
        assert attributes["server.address"] == "127.0.0.1"
        assert attributes["server.port"] == fake.port
        assert attributes["url.template"] == "/v3/export-jobs/{jobId}/items"
        assert attributes["pleo.batch.size"] >= 1
    statuses = [attr(s, "http.response.status_code") for s in puts]
    errors = [attr(s, "error.type") for s in puts]
    assert statuses[:4] == [503, 200, 429, 200]
    assert errors[:4] == ["503", None, "429", None]
    assert statuses[4] is None
    assert errors[4] == "ServerDisconnectedError"
    assert [attr(s, "http.request.resend_count") for s in puts[:6]] == [
        None,
        1,
        None,
        1,
        None,
        1,
    ]
    answered = [s for s in puts if attr(s, "http.response.status_code") == 200]
    assert sum(int(attr(s, "pleo.items.acknowledged")) for s in answered) == len(
        report.acknowledged
    )
    assert sum(int(attr(s, "pleo.items.rejected")) for s in answered) == len(report.rejected)
    waits = [event for event in update.events if event.name == "pleo.retry.wait"]
    causes = [attr(event, "pleo.retry.cause") for event in waits]
    assert causes == ["http_503", "http_429", "connection_error"]
    assert all(attr(event, "pleo.retry.wait_seconds") == 0.0 for event in waits)
    assert any(event.name == "pleo.retry_after.wait" for event in update.events)
    attributes = update.attributes or {}
    assert attributes["pleo.job.id"] == job.id
    assert attributes["pleo.items.acknowledged"] == len(report.acknowledged) == 400
    assert attributes["pleo.items.rejected"] == len(report.rejected) == 1
    assert attributes["pleo.items.resent"] == report.items_resent == 100
    assert attributes["pleo.retries"] == report.retries == sum(stats.retries_by_cause.values())

    [complete] = otel.spans("pleo.job.complete")
    [event_post] = otel.spans("POST /v3/export-job-events")
    assert event_post.parent is not None
    assert event_post.parent.span_id == complete.context.span_id
    assert attr(complete, "pleo.job.final_event") == outcome.event.value
    assert attr(complete, "pleo.items.successful") == outcome.successful == 400


async def test_the_metrics_of_a_job_with_faults_equal_its_report_and_the_client_stats(
    otel: Otel, instant: None
) -> None:
    """`pleo.export.items` by outcome equals the update's report, `pleo.export.retries` by cause
    the client's stats, one duration per request, nothing left in flight, and the job counted
    by its final event."""
    async with FakePleo(seed=3, faults=_faulty()) as fake:
        job = fake.create_job(items=400)
        updates = [*successful_updates(job.item_ids), ItemUpdate.successful(str(uuid.uuid4()))]
        async with traced_client(fake, otel, max_concurrency=1) as client:
            report = await client.job(job.id).update(updates)
            again = await client.job(job.id).update(updates[:50])
            outcome = await client.job(job.id).complete()
            stats = client.stats()

    assert otel.by("pleo.export.items", "outcome") == {
        "acknowledged": len(report.acknowledged) + len(again.acknowledged),
        "rejected": len(report.rejected) + len(again.rejected),
        "skipped": len(report.skipped) + len(again.skipped),
        "resent": report.items_resent + again.items_resent,
    }
    assert len(again.skipped) == 50
    assert otel.by("pleo.export.retries", "cause") == dict(stats.retries_by_cause)
    assert otel.total("http.client.request.duration") == stats.requests
    assert otel.total("http.client.request.duration", **{"http.response.status_code": 503}) == 1
    assert otel.total("http.client.request.duration", **{"error.type": "429"}) == 1
    for point in otel.points("http.client.request.duration"):
        assert set(point.attributes) <= {
            "http.request.method",
            "server.address",
            "server.port",
            "http.response.status_code",
            "error.type",
        }
    assert otel.total("pleo.export.requests.in_flight") == 0
    assert otel.by("pleo.export.batches", "outcome") == {
        "answered": report.requests - report.retries
    }
    assert otel.by("pleo.export.jobs", "final_event") == {outcome.event.value: 1}


async def test_process_job_has_a_handler_span_per_item_and_metrics_by_outcome(
    otel: Otel, instant: None
) -> None:
    """Under `pleo.process_job` come its update and complete spans and a `pleo.handle_item` span
    per handler call; handler durations are counted by outcome and the job by final event."""

    async def handler(item: ExportItem) -> ItemUpdate:
        number = int(item.accounting_entry_id[-2:], 16)
        if number % 5 == 0:
            raise ConnectionError("the ERP is down")
        if number % 5 == 1:
            return ItemUpdate.failed(
                item.accounting_entry_id, reason="no", reason_type="vendor_unknown"
            )
        return ItemUpdate.successful(item.accounting_entry_id, external_id="JE-1")

    async with FakePleo(seed=5) as fake:
        job = fake.create_job(items=60, status="pending")
        async with traced_client(fake, otel) as client:
            outcome = await client.process_job(job.id, handler, concurrency=4)
    assert outcome is not None

    [process] = otel.spans("pleo.process_job")
    attributes = dict(process.attributes or {})
    assert attributes["pleo.job.id"] == job.id
    assert attributes["pleo.company.id"] == fake.company_id
    assert attributes["pleo.job.final_event"] == outcome.event.value
    assert attributes["pleo.items.successful"] == outcome.successful
    assert attributes["pleo.items.failed"] == outcome.failed
    handled = otel.spans("pleo.handle_item")
    assert len(handled) == 60
    assert {s.parent.span_id for s in handled if s.parent} == {process.context.span_id}
    assert {attr(s, "pleo.accounting_entry.id") for s in handled} == set(job.item_ids)
    children = {
        s.name for s in otel.spans() if s.parent and s.parent.span_id == process.context.span_id
    }
    assert {"pleo.job.update", "pleo.job.complete", "POST /v3/export-job-events"} <= children
    [update] = otel.spans("pleo.job.update")
    assert all(
        s.parent and s.parent.span_id == update.context.span_id for s in otel.spans(PUT_ITEMS)
    )
    assert all(s.context.trace_id == process.context.trace_id for s in otel.spans())

    outcomes = otel.by("pleo.export.handler.duration", "outcome")
    assert sum(outcomes.values()) == 60
    assert outcomes["error"] + outcomes["failed"] == outcome.failed
    assert outcomes["successful"] == outcome.successful
    assert otel.by("pleo.export.job.duration", "outcome") == {outcome.event.value: 1}
    assert otel.total("pleo.export.items", outcome="acknowledged") == 60
    assert otel.by("pleo.export.jobs", "final_event") == {outcome.event.value: 1}


async def test_no_span_or_event_attribute_holds_a_secret_or_an_item_payload(
    otel: Otel, instant: None
) -> None:
    """Over every span and span event of a job with retries, no attribute names a header or
    holds the API key, the Authorization value, or anything of an item's update."""
    secret_reason = "Vendor Secretive Ltd does not exist"
    async with FakePleo(seed=9, faults=_faulty()) as fake:
        job = fake.create_job(items=250)

        async def handler(item: ExportItem) -> ItemUpdate:
            if item.accounting_entry_id == job.item_ids[0]:
                return ItemUpdate.failed(
                    item.accounting_entry_id, reason=secret_reason, reason_type="vendor_unknown"
                )
            return ItemUpdate.successful(
                item.accounting_entry_id,
                external_id="JE-PAYLOAD-7",
                external_url="https://erp.example.com/journal/JE-PAYLOAD-7",
            )

        async with traced_client(fake, otel, max_concurrency=2) as client:
            await client.process_job(job.id, handler)
        api_key = fake.api_key

    forbidden = [api_key, "Basic ", "Bearer ", "JE-PAYLOAD", "erp.example.com", "Secretive"]
    seen = 0
    for span in otel.spans():
        attribute_sets: list[Mapping[str, Any]] = [span.attributes or {}]
        attribute_sets.extend(event.attributes or {} for event in span.events)
        for attributes in attribute_sets:
            for key, value in attributes.items():
                seen += 1
                assert "authorization" not in key.lower()
                assert "header" not in key.lower()
                text = str(value)
                for word in forbidden:
                    assert word not in text, (span.name, key)
    assert seen > 100


async def test_durable_ledger_writes_are_commit_spans_and_measured(
    otel: Otel, instant: None, tmp_path: Path
) -> None:
    """With a SqliteLedger each write is a `pleo.ledger.commit` span under the operation that
    made it, and a `pleo.ledger.commit.duration` point by operation."""
    async with FakePleo(seed=1) as fake, SqliteLedger(tmp_path / "ledger.sqlite3") as ledger:
        job = fake.create_job(items=250)
        async with traced_client(fake, otel, ledger=ledger) as client:
            await client.job(job.id).update(successful_updates(job.item_ids))
            await client.job(job.id).complete()
    commits = otel.spans("pleo.ledger.commit")
    operations = [attr(s, "pleo.ledger.operation") for s in commits]
    assert sorted(operations) == sorted(
        ["in_flight"] * 3 + ["acknowledged"] * 3 + ["event_intent", "event_delivered"]
    )
    assert {attr(s, "pleo.ledger.kind") for s in commits} == {"sqlite"}
    [update] = otel.spans("pleo.job.update")
    assert sum(1 for s in commits if s.parent and s.parent.span_id == update.context.span_id) == 6
    assert otel.by("pleo.ledger.commit.duration", "pleo.ledger.operation") == {
        "in_flight": 3,
        "acknowledged": 3,
        "event_intent": 1,
        "event_delivered": 1,
    }


async def test_a_postgres_lease_wait_is_a_span_of_process_job(
    otel: Otel, instant: None, postgres_dsn: str, postgres_schema: str
) -> None:
    """With a PostgresLedger, taking the job's lease is a `pleo.lease.wait` span under
    `pleo.process_job`, and the ledger's writes are `postgres` commits."""

    async def handler(item: ExportItem) -> ItemUpdate:
        return ItemUpdate.successful(item.accounting_entry_id)

    async with (
        FakePleo(seed=2) as fake,
        PostgresLedger(postgres_dsn, schema=postgres_schema) as ledger,
    ):
        job = fake.create_job(items=20)
        async with traced_client(fake, otel) as client:
            await client.process_job(job.id, handler, ledger=ledger)
    [process] = otel.spans("pleo.process_job")
    [wait] = otel.spans("pleo.lease.wait")
    assert wait.parent is not None
    assert wait.parent.span_id == process.context.span_id
    assert (wait.attributes or {}) == {"pleo.job.id": job.id, "pleo.ledger.kind": "postgres"}
    kinds = {attr(s, "pleo.ledger.kind") for s in otel.spans("pleo.ledger.commit")}
    assert kinds == {"postgres"}
    assert otel.total("pleo.lease.lost") == 0


async def test_without_a_configured_provider_a_job_runs_and_nothing_is_made(
    fake: FakePleo, instant: None
) -> None:
    """With the API's default (proxy, no SDK) providers the client reports nothing and works
    as without the extra."""
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    job = fake.create_job(items=150)
    async with client_for(fake) as client:
        assert client.transport.telemetry.tracer() is None
        assert client.transport.telemetry.instruments() is None
        report = await client.job(job.id).update(successful_updates(job.item_ids))
        outcome = await client.job(job.id).complete()
    assert len(report.acknowledged) == 150
    assert outcome.event is JobEvent.COMPLETED


async def test_switched_off_the_client_reports_nothing_even_to_its_providers(
    otel: Otel, fake: FakePleo, instant: None
) -> None:
    """Inside `switched_off()` (the benchmarks' baseline) a client given providers makes no
    span and no measurement."""
    job = fake.create_job(items=10)
    with _telemetry.switched_off():
        async with traced_client(fake, otel) as client:
            await client.job(job.id).update(successful_updates(job.item_ids))
    assert otel.spans() == []
    assert otel.points("pleo.export.items") == []


def test_a_provider_without_its_method_is_refused_naming_the_field() -> None:
    """A `tracer_provider` without `get_tracer()` or a `meter_provider` without `get_meter()`
    raises `InvalidInput` naming the parameter."""
    options: dict[str, Any]
    for field, options in (
        ("tracer_provider", {"tracer_provider": object()}),
        ("meter_provider", {"meter_provider": "prometheus"}),
    ):
        with pytest.raises(InvalidInput) as refused:
            PleoExportClient("http://127.0.0.1:1", auth=ApiKeyAuth("k"), **options)
        assert refused.value.field == field


async def test_log_records_inside_a_span_carry_its_trace_and_span_ids(
    otel: Otel, instant: None, caplog: pytest.LogCaptureFixture
) -> None:
    """The library's log records written while its span is current carry `trace_id` (32 hex
    digits) and `span_id` (16) of that span; records outside any span carry neither."""
    async with FakePleo(seed=3, faults=Faults(server_error=FaultSpec(at={1}))) as fake:
        job = fake.create_job(items=10)
        async with traced_client(fake, otel) as client:
            with caplog.at_level(logging.WARNING, logger="pleo_export_async"):
                await client.job(job.id).update(successful_updates(job.item_ids))
    [update] = otel.spans("pleo.job.update")
    [retrying] = [r for r in caplog.records if "retrying" in r.getMessage()]
    trace_id = getattr(retrying, "trace_id", "")
    assert HEX32.fullmatch(trace_id)
    assert int(trace_id, 16) == update.context.trace_id
    span_id = getattr(retrying, "span_id", "")
    assert HEX16.fullmatch(span_id)
    assert int(span_id, 16) == update.context.span_id

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pleo_export_async"):
        logging.getLogger("pleo_export_async").info("outside any span")
    [outside] = caplog.records
    assert not hasattr(outside, "trace_id")


def test_url_templates_name_the_ids_as_the_api_reference_does() -> None:
    """Job and subscription IDs in a path become `{jobId}` and `{subscriptionId}`."""
    job_id = str(uuid.uuid4())
    assert _telemetry.url_template(f"/v3/export-jobs/{job_id}/items") == (
        "/v3/export-jobs/{jobId}/items"
    )
    assert _telemetry.url_template("/v3/export-job-events") == "/v3/export-job-events"
    assert _telemetry.url_template(f"/v1/subscriptions/{job_id}/secret") == (
        "/v1/subscriptions/{subscriptionId}/secret"
    )


_GLOBAL_PROVIDERS_LATER = """
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from pleo_export_async._telemetry import Telemetry

telemetry = Telemetry("https://external.pleo.io")
assert telemetry.tracer() is None and telemetry.instruments() is None
trace.set_tracer_provider(TracerProvider())
metrics.set_meter_provider(MeterProvider())
assert telemetry.tracer() is not None and telemetry.instruments() is not None
print("seen")
"""

_PROVIDER_FROM_THE_ENVIRONMENT = """
import os

from pleo_export_async._telemetry import Telemetry

# Named after the library was imported, before the client is made.
os.environ.setdefault("OTEL_PYTHON_TRACER_PROVIDER", "sdk_tracer_provider")
os.environ.setdefault("OTEL_PYTHON_METER_PROVIDER", "sdk_meter_provider")
telemetry = Telemetry("https://external.pleo.io")
assert telemetry.tracer() is not None and telemetry.instruments() is not None
print("seen")
"""


@pytest.mark.parametrize(
    ("script", "environment"),
    [
        (_GLOBAL_PROVIDERS_LATER, {}),
        (
            _PROVIDER_FROM_THE_ENVIRONMENT,
            {
                "OTEL_PYTHON_TRACER_PROVIDER": "sdk_tracer_provider",
                "OTEL_PYTHON_METER_PROVIDER": "sdk_meter_provider",
            },
        ),
        (_PROVIDER_FROM_THE_ENVIRONMENT, {}),
    ],
    ids=["set-after-the-client", "named-by-the-environment", "named-after-the-import"],
)
def test_global_providers_are_seen_when_set_later_or_named_by_the_environment(
    script: str, environment: dict[str, str]
) -> None:
    """A client reports to global providers set after it was made, and to the ones the
    OTEL_PYTHON_*_PROVIDER variables name when it is made, though it does not ask the API
    each time."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_PYTHON_")}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "seen"
