"""Traces, metrics and log fields through the OpenTelemetry API (the `otel` extra).

Telemetry is not a layer (docs/architecture.md): the Transport, Jobs and Workflow layers report
through this module, the one place that imports `opentelemetry`. Without the package, or with
no SDK configured (the API's no-op providers), every entry point here returns a shared object
that does nothing, after a global read and an identity check: no span, no attribute, no
measurement is built. The Core imports nothing of it.

The tracer and the meter are named `pleo_export_async`, with the package's version. A client
uses the global providers unless given its own (`PleoExportClient(tracer_provider=...,
meter_provider=...)`); a global provider configured after the client was made is picked up at
its next operation.

Spans (each a name, its kind, where it is made, and its attributes):

* `pleo.process_job`, INTERNAL: `process_job`, and each job of `run_pending`. `pleo.job.id`,
  `pleo.company.id`; at the end `pleo.job.final_event`, `pleo.items.successful`,
  `pleo.items.failed`, `pleo.items.rejected`, `pleo.job.already_delivered`, or
  `pleo.job.stopped`.
* `pleo.job.update`, INTERNAL: `JobRun.update()`. `pleo.job.id`, `pleo.company.id` (once the
  run has read the job); at the end `pleo.items.acknowledged`, `pleo.items.rejected`,
  `pleo.items.skipped`, `pleo.items.unacknowledged`, `pleo.items.resent`, `pleo.requests`,
  `pleo.retries`.
* `pleo.job.complete`, INTERNAL: `JobRun.complete()` and `JobRun.fail()`. `pleo.job.id`,
  `pleo.company.id`; at the end as `pleo.process_job`.
* `{method} {url.template}`, CLIENT (e.g. `PUT /v3/export-jobs/{jobId}/items`): each HTTP
  attempt, a child of the operation's span. `http.request.method`, `server.address`,
  `server.port`, `url.template`, `http.response.status_code`, `error.type` (the status for
  one of 400 or more, else the exception's class name), `http.request.resend_count` (from the
  second attempt on: 1 for the second). PUT items adds `pleo.batch.size` and, for a 200,
  `pleo.items.acknowledged` and `pleo.items.rejected`.
* `pleo.handle_item`, INTERNAL: each handler call of `process_job`, a child of its
  `pleo.process_job` span and current while the handler runs. `pleo.job.id`,
  `pleo.accounting_entry.id`, `pleo.handler.outcome`.
* `pleo.ledger.commit`, INTERNAL: each write of a durable ledger (none for `MemoryLedger`).
  For `acknowledged` it is the handing over: both durable ledgers write an acknowledgement
  without the worker waiting (SQLite at the end of the loop's turn, PostgreSQL in groups).
  `pleo.ledger.kind` (`sqlite`, `postgres`, or a custom ledger's class name),
  `pleo.ledger.operation` (`in_flight`, `acknowledged`, `event_intent`, `event_delivered`).
* `pleo.lease.wait`, INTERNAL: taking a job's lease at a `PostgresLedger`. `pleo.job.id`,
  `pleo.ledger.kind`.

A span that ends with an exception has status ERROR and `error.type` (the exception's class
name). A retry's wait is an event `pleo.retry.wait` on the operation's span
(`pleo.retry.cause`, as in `client.stats().retries_by_cause`: `http_503`, `http_429`,
`timeout`, `connection_error`, `http_401_refresh`, ...; `pleo.retry.attempt`, the attempt that
failed; `pleo.retry.wait_seconds`); a pause of every sender for a `Retry-After` is an event
`pleo.retry_after.wait` (`pleo.retry.wait_seconds`). No attribute holds a credential, a header
or an item's payload: IDs, counts, statuses and names only.

Metrics (name, kind, unit: attributes), of low cardinality only, never a job or item ID. The
counts of the hot path are observable instruments: the client keeps plain integers, which the
reader collects, so a batch makes no measurement call for them.

* `http.client.request.duration`, histogram, `s`: `http.request.method`, `server.address`,
  `server.port`, `http.response.status_code`, `error.type`. One per attempt.
* `pleo.export.items`, observable counter, `{item}`: `outcome`, one of `acknowledged` (Pleo
  acknowledged the update), `rejected` (refused for good), `skipped` (acknowledged before: not
  sent), `resent` (sent again: an answer left it out, or a transient per-item error),
  `unacknowledged` (still unacknowledged when the `update()` call ended). Per call they are the
  counts of its `UpdateReport`.
* `pleo.export.batches`, observable counter, `{batch}`: `outcome`, one of `answered` (200),
  `split` (413: sent again smaller), `refused` (another status), `no_answer` (the retries ran
  out).
* `pleo.export.retries`, observable counter, `{retry}`: `cause`, as
  `client.stats().retries_by_cause`.
* `pleo.export.requests.in_flight`, observable up-down counter, `{request}`: `server.address`,
  `server.port`.
* `pleo.export.jobs`, counter, `{job}`: `final_event` (`completed`, `completed_with_errors`,
  `failed`), `already_delivered` (bool). One per final event this process delivered or found
  delivered at Pleo.
* `pleo.export.job.duration`, histogram, `s`: `outcome` (a final event, `stopped` or `error`),
  `error.type` with `error`. One per `process_job` (and job of `run_pending`).
* `pleo.export.handler.duration`, histogram, `s`: `outcome`, one of `successful`, `failed`
  (the handler's update says so), `error` (it raised, or gave no update of the item).
* `pleo.ledger.commit.duration`, histogram, `s`: `pleo.ledger.kind`, `pleo.ledger.operation`,
  `error.type` when it failed.
* `pleo.lease.lost`, counter, `{lease}`: `pleo.ledger.kind`. One per `LeaseLost` raised.

Log records: while a span is current (the library's or the caller's), the records of the
`pleo_export_async` logger carry its `trace_id` (32 hex digits) and `span_id` (16 hex digits) as
attributes, set by a `logging.Filter` this module installs on that logger.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from ._errors import LeaseLost
from ._version import __version__

try:
    from opentelemetry import context as _otel_context
    from opentelemetry import metrics as _otel_metrics
    from opentelemetry import trace as _otel_trace
    from opentelemetry.metrics import NoOpMeterProvider as _NoOpMeterProvider
    from opentelemetry.metrics import Observation as _Observation
    from opentelemetry.trace import NoOpTracerProvider as _NoOpTracerProvider
    from opentelemetry.trace import ProxyTracerProvider as _ProxyTracerProvider
    from opentelemetry.trace import SpanKind as _SpanKind
    from opentelemetry.trace import Status as _Status
    from opentelemetry.trace import StatusCode as _StatusCode
except ImportError:  # the `otel` extra is not installed: every entry point does nothing
    AVAILABLE = False
else:
    AVAILABLE = True

if TYPE_CHECKING:  # for the annotations of the client's parameters
    from opentelemetry.metrics import MeterProvider as MeterProvider
    from opentelemetry.trace import TracerProvider as TracerProvider

NAME: Final = "pleo_export_async"
Attributes = Mapping[str, str | int | float | bool]

#: Set by `switched_off()`: new measurements are skipped as if opentelemetry were not installed
#: (the benchmarks' baseline).
_off = False


@contextlib.contextmanager
def switched_off() -> Iterator[None]:
    """Within this block the library reports nothing, as without the `otel` extra."""
    global _off
    previous, _off = _off, True
    try:
        yield
    finally:
        _off = previous


def check_provider(name: str, value: object, method: str) -> None:
    """`value` is None or has the provider's `method` (duck-typed: no SDK class is imported)."""
    if value is None or callable(getattr(value, method, None)):
        return
    from ._errors import InvalidInput

    raise InvalidInput(name, value, f"must be an OpenTelemetry provider (with {method}())")


def _global_provider_reader(
    module: Any, provider_name: str, proxy_name: str, variable: str, get: Callable[[], Any]
) -> Callable[[], Any]:
    """`get` (the API's `get_tracer_provider` or `get_meter_provider`), made cheap.

    While no provider is set, the API's function looks `variable` up in `os.environ` on every
    call: 0.8 µs, five times a batch, the whole of what the otel extra cost without an SDK
    (1.037 of the CPU per item). Its module's globals are read instead. When the environment
    names a provider (read here, as a client is made), or the API has other globals, `get`
    itself is used, so that the API loads that provider as it does.
    """
    if variable in os.environ or not hasattr(module, provider_name):
        return get
    proxy = getattr(module, proxy_name, None)
    if proxy is None:
        return get
    names = vars(module)

    def read() -> Any:
        provider = names[provider_name]
        return proxy if provider is None else provider

    return read


def _no_provider() -> None:
    return None


def _is_noop_tracer_provider(provider: object) -> bool:
    return isinstance(provider, _NoOpTracerProvider | _ProxyTracerProvider)


def _is_noop_meter_provider(provider: object) -> bool:
    # The API's proxy, in place until a provider is set globally, is a private class.
    return isinstance(provider, _NoOpMeterProvider) or type(provider).__name__.startswith("_Proxy")


# -- the shared do-nothing objects ---------------------------------------------------------------


class _Nothing:
    """What every entry point returns while telemetry is off: a context manager and recorder
    whose every method does nothing."""

    __slots__ = ()
    recording = False
    context = None

    def __enter__(self) -> _Nothing:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def set(self, key: str, value: str | int | float | bool | None) -> None:
        return None

    def set_many(self, attributes: Mapping[str, str | int | float | bool | None]) -> None:
        return None

    def outcome(self, outcome: str) -> None:
        return None


NOTHING: Final = _Nothing()


# -- the instruments -----------------------------------------------------------------------------


class _Instruments:
    """The meter's instruments, made once per meter provider and shared by its clients."""

    def __init__(self, provider: Any) -> None:
        #: The clients whose requests in flight are observed (`pleo.export.requests.in_flight`:
        #: read when the reader collects, so that a request costs no measurement for it).
        self.clients: weakref.WeakSet[Telemetry] = weakref.WeakSet()
        meter = provider.get_meter(NAME, __version__)
        self.request_duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests.",
            # The semantic conventions' advised boundaries.
            explicit_bucket_boundaries_advisory=[
                0.005,
                0.01,
                0.025,
                0.05,
                0.075,
                0.1,
                0.25,
                0.5,
                0.75,
                1.0,
                2.5,
                5.0,
                7.5,
                10.0,
            ],
        )
        # The counts of the hot path are plain integers of each client, observed when the
        # reader collects: a batch costs no measurement call for them.
        meter.create_observable_counter(
            "pleo.export.items",
            callbacks=[self._observer("items_by_outcome", "outcome")],
            unit="{item}",
            description="Item updates, by outcome.",
        )
        meter.create_observable_counter(
            "pleo.export.batches",
            callbacks=[self._observer("batches_by_outcome", "outcome")],
            unit="{batch}",
            description="PUT items batches, by outcome.",
        )
        meter.create_observable_counter(
            "pleo.export.retries",
            callbacks=[self._observer("retries_by_cause", "cause")],
            unit="{retry}",
            description="Requests sent again, by cause.",
        )
        meter.create_observable_up_down_counter(
            "pleo.export.requests.in_flight",
            callbacks=[self._observe_in_flight],
            unit="{request}",
            description="HTTP requests on the wire.",
        )
        self.jobs = meter.create_counter(
            "pleo.export.jobs", unit="{job}", description="Jobs closed, by final event."
        )
        self.job_duration = meter.create_histogram(
            "pleo.export.job.duration", unit="s", description="Duration of process_job calls."
        )
        self.handler_duration = meter.create_histogram(
            "pleo.export.handler.duration",
            unit="s",
            description="Duration of handler calls, by outcome.",
        )
        self.commit_duration = meter.create_histogram(
            "pleo.ledger.commit.duration", unit="s", description="Duration of ledger writes."
        )
        self.lease_lost = meter.create_counter(
            "pleo.lease.lost", unit="{lease}", description="Job leases lost."
        )

    def _observer(self, counts: str, attribute: str) -> Callable[[object], Iterable[_Observation]]:
        def observe(options: object) -> Iterable[_Observation]:
            total: Counter[str] = Counter()
            for client in list(self.clients):
                total.update(getattr(client, counts))
            return [_Observation(count, {attribute: key}) for key, count in total.items()]

        return observe

    def _observe_in_flight(self, options: object) -> Iterable[_Observation]:
        by_server: dict[tuple[str, int], int] = {}
        for client in list(self.clients):
            key = (client.server_address, client.server_port)
            by_server[key] = by_server.get(key, 0) + client.in_flight()
        return [
            _Observation(count, {"server.address": address, "server.port": port})
            for (address, port), count in by_server.items()
        ]


#: The instruments of each meter provider, made at its first client's first use.
_instruments_of: weakref.WeakKeyDictionary[object, _Instruments] = weakref.WeakKeyDictionary()


def _instruments_for(provider: object) -> _Instruments:
    try:
        instruments = _instruments_of.get(provider)
    except TypeError:  # a provider that takes no weak reference: instruments of its own
        return _Instruments(provider)
    if instruments is None:
        instruments = _instruments_of[provider] = _Instruments(provider)
    return instruments


# -- the client's telemetry ----------------------------------------------------------------------


class Telemetry:
    """One client's tracer and instruments, from its providers or the global ones."""

    def __init__(
        self,
        base_url: str,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._seen_tracer_provider: object = _UNSEEN
        self._tracer: Any = None
        self._seen_meter_provider: object = _UNSEEN
        self._instruments: _Instruments | None = None
        readers: tuple[Callable[[], Any], Callable[[], Any]] = (
            _global_provider_readers() if AVAILABLE else (_no_provider, _no_provider)
        )
        self._global_tracer_provider, self._global_meter_provider = readers
        parts = urlsplit(base_url)
        self.server_address = parts.hostname or ""
        self.server_port = parts.port or (443 if parts.scheme == "https" else 80)
        self._server: dict[str, str | int] = {
            "server.address": self.server_address,
            "server.port": self.server_port,
        }
        self._last_path = self._last_template = ""
        #: The requests on the wire now, for `pleo.export.requests.in_flight` (the transport's).
        self.in_flight: Callable[[], int] = lambda: 0
        #: What `pleo.export.items`, `pleo.export.batches` and `pleo.export.retries` report.
        self.items_by_outcome: Counter[str] = Counter()
        self.batches_by_outcome: Counter[str] = Counter()
        self.retries_by_cause: Counter[str] = Counter()

    def url_template(self, path: str) -> str:
        """`url_template(path)`, remembered for the last path (the batches of a job share it)."""
        if path != self._last_path:
            self._last_path, self._last_template = path, url_template(path)
        return self._last_template

    def tracer(self) -> Any:
        """The tracer, or None while no tracer provider is configured."""
        if _off or not AVAILABLE:
            return None
        provider = self._tracer_provider
        if provider is None:
            provider = self._global_tracer_provider()
        if provider is not self._seen_tracer_provider:
            self._seen_tracer_provider = provider
            self._tracer = (
                None
                if _is_noop_tracer_provider(provider)
                else provider.get_tracer(NAME, __version__)
            )
        return self._tracer

    def instruments(self) -> _Instruments | None:
        """The instruments, or None while no meter provider is configured."""
        if _off or not AVAILABLE:
            return None
        provider = self._meter_provider
        if provider is None:
            provider = self._global_meter_provider()
        if provider is not self._seen_meter_provider:
            self._seen_meter_provider = provider
            if _is_noop_meter_provider(provider):
                self._instruments = None
            else:
                self._instruments = _instruments_for(provider)
                self._instruments.clients.add(self)
        return self._instruments

    # -- job operations ---------------------------------------------------------------------------

    def operation(
        self, name: str, job_id: str, company_id: str | None = None, *, timed: bool = False
    ) -> Operation | _Nothing:
        """A span for a job operation (`pleo.job.update`, ...), current while it runs. With
        `timed`, its duration is `pleo.export.job.duration`."""
        tracer = self.tracer()
        instruments = self.instruments()
        if tracer is None and (instruments is None or not timed):
            return NOTHING if instruments is None else _LeaseWatch(instruments)
        return Operation(tracer, instruments, name, job_id, company_id, timed)

    def handler_call(self, parent: Operation | _Nothing, job_id: str, entry_id: str) -> Any:
        """A span and a duration for one handler call, a child of `parent`'s span."""
        tracer = self.tracer()
        instruments = self.instruments()
        if tracer is None and instruments is None:
            return NOTHING
        return _HandlerCall(tracer, instruments, parent.context, job_id, entry_id)

    def ledger_commit(self, kind: str | None, operation: str) -> Any:
        """A span and a duration for one write of a durable ledger (`kind` None: no write)."""
        if kind is None:
            return NOTHING
        tracer = self.tracer()
        instruments = self.instruments()
        if tracer is None and instruments is None:
            return NOTHING
        return _Commit(tracer, instruments, kind, operation)

    def lease_wait(
        self, turn: AbstractAsyncContextManager[object], job_id: str, kind: str
    ) -> AbstractAsyncContextManager[object]:
        """`turn`, with a span for the time taken to get it."""
        tracer = self.tracer()
        if tracer is None:
            return turn
        return _LeaseWait(tracer, turn, job_id, kind)

    # -- HTTP ---------------------------------------------------------------------------------

    def attempt(
        self, method: str, path: str, resend_count: int, attributes: Attributes | None
    ) -> Attempt | None:
        """A span, a duration and the in-flight count of one HTTP attempt; None while off."""
        tracer = self.tracer()
        instruments = self.instruments()
        if tracer is None and instruments is None:
            return None
        return Attempt(self, tracer, instruments, method, path, resend_count, attributes)

    def retry(self, cause: str, attempt: int, wait: float) -> None:
        """A retry's wait: counted by cause, and an event on the current span."""
        if self.instruments() is not None:
            self.retries_by_cause[cause] += 1
        if self.tracer() is not None:
            span = _otel_trace.get_current_span()
            if span.is_recording():
                span.add_event(
                    "pleo.retry.wait",
                    {
                        "pleo.retry.cause": cause,
                        "pleo.retry.attempt": attempt,
                        "pleo.retry.wait_seconds": float(wait),
                    },
                )

    def retry_after_wait(self, seconds: float) -> None:
        """A pause of every sender for a `Retry-After`: an event on the current span."""
        if self.tracer() is not None:
            span = _otel_trace.get_current_span()
            if span.is_recording():
                span.add_event("pleo.retry_after.wait", {"pleo.retry.wait_seconds": seconds})

    # -- counts -------------------------------------------------------------------------------

    def items(self, counts: Mapping[str, int]) -> None:
        """`pleo.export.items`: counts by outcome, zeros left out."""
        if self.instruments() is None:
            return
        items = self.items_by_outcome
        for outcome, count in counts.items():
            if count:
                items[outcome] += count

    def batch(self, outcome: str) -> None:
        if self.instruments() is not None:
            self.batches_by_outcome[outcome] += 1

    def job_closed(self, final_event: str, already_delivered: bool) -> None:
        instruments = self.instruments()
        if instruments is not None:
            instruments.jobs.add(
                1, {"final_event": final_event, "already_delivered": already_delivered}
            )


_UNSEEN: Final = object()


def _error_type(exc: BaseException) -> str:
    return type(exc).__name__


def _count_lease_lost(instruments: _Instruments | None, exc: BaseException | None) -> None:
    """`pleo.lease.lost`, once per LeaseLost however many operations it leaves."""
    if instruments is None or not isinstance(exc, LeaseLost):
        return
    if getattr(exc, "_pleo_counted", False):
        return
    exc._pleo_counted = True  # type: ignore[attr-defined]
    instruments.lease_lost.add(1, {"pleo.ledger.kind": "postgres"})


class _LeaseWatch(_Nothing):
    """A job operation while only metrics are on: it counts a lost lease, nothing else."""

    __slots__ = ("_instruments",)

    def __init__(self, instruments: _Instruments) -> None:
        self._instruments = instruments

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        _count_lease_lost(self._instruments, exc)


class Operation:
    """A job operation's span, made current on entry; its attributes are set as they become
    known (`set`, `set_many`)."""

    def __init__(
        self,
        tracer: Any,
        instruments: _Instruments | None,
        name: str,
        job_id: str,
        company_id: str | None,
        timed: bool,
    ) -> None:
        self._instruments = instruments
        self._span: Any = None
        self._token: Any = None
        self._timed = timed
        self._started = 0.0
        self._outcome: str | None = None
        self.context: Any = None
        if tracer is not None:
            attributes: dict[str, str] = {"pleo.job.id": job_id}
            if company_id is not None:
                attributes["pleo.company.id"] = company_id
            self._span = tracer.start_span(name, kind=_SpanKind.INTERNAL, attributes=attributes)
            self.context = _otel_trace.set_span_in_context(self._span)

    @property
    def recording(self) -> bool:
        return self._span is not None and bool(self._span.is_recording())

    def __enter__(self) -> Operation:
        if self.context is not None:
            self._token = _otel_context.attach(self.context)
        if self._timed:
            self._started = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        instruments = self._instruments
        _count_lease_lost(instruments, exc)
        if self._timed and instruments is not None:
            attributes: dict[str, str] = {}
            if exc is not None:
                attributes["outcome"] = "error"
                attributes["error.type"] = _error_type(exc)
            else:
                attributes["outcome"] = self._outcome or "stopped"
            instruments.job_duration.record(time.perf_counter() - self._started, attributes)
        if self._token is not None:
            _otel_context.detach(self._token)
        span = self._span
        if span is not None:
            if exc is not None:
                span.set_attribute("error.type", _error_type(exc))
                span.record_exception(exc)
                span.set_status(_Status(_StatusCode.ERROR, _error_type(exc)))
            span.end()

    def outcome(self, outcome: str) -> None:
        """The operation's result, for `pleo.export.job.duration`: a final event, `stopped`."""
        self._outcome = outcome

    def set(self, key: str, value: str | int | float | bool | None) -> None:
        if self._span is not None and value is not None:
            self._span.set_attribute(key, value)

    def set_many(self, attributes: Mapping[str, str | int | float | bool | None]) -> None:
        span = self._span
        if span is not None and span.is_recording():
            span.set_attributes({k: v for k, v in attributes.items() if v is not None})


class _HandlerCall:
    """One handler call: a span (current, so the handler's own spans are its children) and a
    duration by outcome."""

    def __init__(
        self,
        tracer: Any,
        instruments: _Instruments | None,
        parent: Any,
        job_id: str,
        entry_id: str,
    ) -> None:
        self._instruments = instruments
        self._span: Any = None
        self._token: Any = None
        self._outcome = "error"
        if tracer is not None:
            self._span = tracer.start_span(
                "pleo.handle_item",
                context=parent,
                kind=_SpanKind.INTERNAL,
                attributes={"pleo.job.id": job_id, "pleo.accounting_entry.id": entry_id},
            )
        self._started = 0.0

    def __enter__(self) -> _HandlerCall:
        if self._span is not None:
            self._token = _otel_context.attach(_otel_trace.set_span_in_context(self._span))
        self._started = time.perf_counter()
        return self

    def outcome(self, outcome: str) -> None:
        self._outcome = outcome

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self._started
        if self._instruments is not None and exc is None:
            self._instruments.handler_duration.record(elapsed, {"outcome": self._outcome})
        if self._token is not None:
            _otel_context.detach(self._token)
        span = self._span
        if span is not None:
            span.set_attribute("pleo.handler.outcome", self._outcome)
            if exc is not None:
                span.set_attribute("error.type", _error_type(exc))
                span.set_status(_Status(_StatusCode.ERROR, _error_type(exc)))
            elif self._outcome == "error":
                span.set_status(_Status(_StatusCode.ERROR, "the handler failed"))
            span.end()


class _Commit:
    """One ledger write: a span and a duration."""

    def __init__(
        self, tracer: Any, instruments: _Instruments | None, kind: str, operation: str
    ) -> None:
        self._instruments = instruments
        self._attributes = {"pleo.ledger.kind": kind, "pleo.ledger.operation": operation}
        self._span: Any = None
        if tracer is not None:
            self._span = tracer.start_span(
                "pleo.ledger.commit", kind=_SpanKind.INTERNAL, attributes=self._attributes
            )
        self._started = time.perf_counter()

    def __enter__(self) -> _Commit:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        attributes: dict[str, str] = self._attributes
        if exc is not None:
            attributes = {**attributes, "error.type": _error_type(exc)}
        if self._instruments is not None:
            self._instruments.commit_duration.record(
                time.perf_counter() - self._started, attributes
            )
        span = self._span
        if span is not None:
            if exc is not None:
                span.set_attribute("error.type", _error_type(exc))
                span.set_status(_Status(_StatusCode.ERROR, _error_type(exc)))
            span.end()


class _LeaseWait:
    """A job's turn whose taking is a `pleo.lease.wait` span."""

    def __init__(
        self, tracer: Any, turn: AbstractAsyncContextManager[object], job_id: str, kind: str
    ) -> None:
        self._tracer = tracer
        self._turn = turn
        self._attributes = {"pleo.job.id": job_id, "pleo.ledger.kind": kind}

    async def __aenter__(self) -> object:
        span = self._tracer.start_span(
            "pleo.lease.wait", kind=_SpanKind.INTERNAL, attributes=self._attributes
        )
        try:
            return await self._turn.__aenter__()
        except BaseException as exc:
            span.set_attribute("error.type", _error_type(exc))
            span.set_status(_Status(_StatusCode.ERROR, _error_type(exc)))
            raise
        finally:
            span.end()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        return await self._turn.__aexit__(exc_type, exc, traceback)


#: What `Telemetry.operation` gives: a span, or nothing while traces are off.
JobOperation = Operation | _Nothing


# -- HTTP attempts -------------------------------------------------------------------------------

#: Path segments that are IDs, named by the segment before them (the API reference's names).
_ID_NAMES: Final = {"export-jobs": "{jobId}", "subscriptions": "{subscriptionId}"}


def url_template(path: str) -> str:
    """The path with its IDs as the API reference's placeholders:
    `/v3/export-jobs/{jobId}/items`."""
    parts = path.split("/")
    for index in range(1, len(parts)):
        part = parts[index]
        if len(part) == 36 and part.count("-") == 4:
            parts[index] = _ID_NAMES.get(parts[index - 1], "{id}")
    return "/".join(parts)


class Attempt:
    """One HTTP attempt: its CLIENT span, its duration and its place in the in-flight count.

    `answered(status)` or `failed(exc)` says how it went; `end()` ends it, now, or `keep_open()`
    leaves the span to the caller, who adds what the answer settled and calls `end()`."""

    __slots__ = (
        "_attributes",
        "_ended_at",
        "_error_type",
        "_instruments",
        "_metric_attributes",
        "_pending",
        "_span",
        "_started",
        "_status",
        "_telemetry",
    )

    def __init__(
        self,
        telemetry: Telemetry,
        tracer: Any,
        instruments: _Instruments | None,
        method: str,
        path: str,
        resend_count: int,
        attributes: Attributes | None,
    ) -> None:
        self._telemetry = telemetry
        self._instruments = instruments
        self._status: int | None = None
        self._error_type: str | None = None
        self._ended_at: int | None = None
        self._span: Any = None
        self._pending: dict[str, Any] | None = None
        server = telemetry._server
        if tracer is not None:
            template = telemetry.url_template(path)
            span_attributes: dict[str, Any] = {
                "http.request.method": method,
                **server,
                "url.template": template,
            }
            if resend_count > 0:
                span_attributes["http.request.resend_count"] = resend_count
            if attributes:
                span_attributes.update(attributes)
            self._span = tracer.start_span(
                f"{method} {template}", kind=_SpanKind.CLIENT, attributes=span_attributes
            )
        self._metric_attributes: dict[str, Any] = {"http.request.method": method, **server}
        self._started = time.perf_counter()

    def answered(self, status: int) -> None:
        self._status = status
        if status >= 400:
            self._error_type = str(status)

    def failed(self, exc: BaseException | str) -> None:
        self._error_type = exc if isinstance(exc, str) else _error_type(exc)

    def held_back(self) -> None:
        """Nothing was sent (the body was held back at the wire): the span says so, and the
        attempt is not measured as a request."""
        self._error_type = "held_back"
        self._instruments = None

    def keep_open(self) -> Attempt | None:
        """Take the span over, ended in time but not yet closed; None when nothing is traced."""
        self._finish(keep_open=True)
        return self if self._span is not None and self._span.is_recording() else None

    def end(self) -> None:
        if self._ended_at is None:
            self._finish()
        self.close()

    def add(self, attributes: Attributes) -> None:
        """Attributes of what the answer settled, set with those of the answer in one call."""
        if self._span is not None:
            pending, self._pending = self._pending, None
            self._span.set_attributes({**pending, **attributes} if pending else attributes)

    def close(self) -> None:
        span = self._span
        if span is not None:
            self._span = None
            if self._pending:
                span.set_attributes(self._pending)
            span.end(end_time=self._ended_at)

    def _finish(self, *, keep_open: bool = False) -> None:
        """Measure the attempt and settle the span's attributes: the attempt is over."""
        elapsed = time.perf_counter() - self._started
        self._ended_at = time.time_ns()
        instruments = self._instruments
        attributes = self._metric_attributes
        if self._status is not None:
            attributes["http.response.status_code"] = self._status
        if self._error_type is not None:
            attributes["error.type"] = self._error_type
        if instruments is not None:
            instruments.request_duration.record(elapsed, attributes)
        span = self._span
        if span is not None:
            answer: dict[str, Any] = {}
            if self._status is not None:
                answer["http.response.status_code"] = self._status
            if self._error_type is not None:
                answer["error.type"] = self._error_type
                span.set_status(_Status(_StatusCode.ERROR, self._error_type))
            if keep_open:
                self._pending = answer
            elif answer:
                span.set_attributes(answer)


# -- log records ---------------------------------------------------------------------------------


class TraceIdFilter(logging.Filter):
    """Puts the current span's `trace_id` and `span_id` (hex) on each record, when there is one;
    a record that brings its own keeps them."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _otel_trace.get_current_span().get_span_context()
        if context.is_valid and not hasattr(record, "trace_id"):
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return True


def _install_log_filter() -> None:
    logger = logging.getLogger(NAME)
    if not any(isinstance(f, TraceIdFilter) for f in logger.filters):
        logger.addFilter(TraceIdFilter())


def _global_provider_readers() -> tuple[Callable[[], Any], Callable[[], Any]]:
    """The readers of the global tracer and meter providers, for a client made now."""
    from opentelemetry.metrics import _internal as _otel_metrics_internal

    return (
        _global_provider_reader(
            _otel_trace,
            "_TRACER_PROVIDER",
            "_PROXY_TRACER_PROVIDER",
            "OTEL_PYTHON_TRACER_PROVIDER",
            _otel_trace.get_tracer_provider,
        ),
        _global_provider_reader(
            _otel_metrics_internal,
            "_METER_PROVIDER",
            "_PROXY_METER_PROVIDER",
            "OTEL_PYTHON_METER_PROVIDER",
            _otel_metrics.get_meter_provider,
        ),
    )


if AVAILABLE:
    _install_log_filter()
