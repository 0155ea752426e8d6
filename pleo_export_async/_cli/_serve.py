"""`pleo-export serve MODULE:FUNCTION`: the connector as a service (rules R19 to R21).

The handler is imported as uvicorn imports `module:attr`, from the working directory first. The
webhook secret comes from `PLEO_WEBHOOK_SECRET` only, and a ledger DSN is never printed.

Signals: the first SIGTERM or SIGINT drains (no new job, no webhook; the batches in flight
settle within `--grace` seconds; no final event for an unfinished job) and exits 0 with one line
saying what was left. A second one exits at once: 143 after SIGTERM, 130 after SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import click

from pleo_export_async._auth import TokenStore
from pleo_export_async._checks import async_function
from pleo_export_async._errors import InvalidInput
from pleo_export_async._ledger import Ledger
from pleo_export_async._postgres_ledger import PostgresLedger
from pleo_export_async._process_job import Handler
from pleo_export_async._sqlite_ledger import SqliteLedger
from pleo_export_async._token_store import FileTokenStore, PostgresTokenStore

from ._command import base_url_options, chosen_base_url, client_for, run, settings_for
from ._output import ExitCode

if TYPE_CHECKING:
    from pleo_export_async._serve._metrics import PrometheusMetrics
    from pleo_export_async._serve._service import ConnectorService

_DSN_SCHEMES = ("postgresql://", "postgres://")


def import_handler(spec: str) -> Handler:
    """The object `module:attr` (or `module:attr.inner`) names; a clear error otherwise."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise click.BadParameter(
            f"{spec!r}: give MODULE:FUNCTION, e.g. my_connector:handle", param_hint="HANDLER"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise click.BadParameter(
            f"cannot import module {module_name!r}: {error}", param_hint="HANDLER"
        ) from None
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise click.BadParameter(
                f"module {module_name!r} has no attribute {attribute!r}", param_hint="HANDLER"
            ) from None
    try:
        async_function("handler", found, of="an ExportItem")
    except InvalidInput as error:
        raise click.BadParameter(f"{spec}: {error}", param_hint="HANDLER") from None
    handler: Handler = found
    return handler


class _WithFields(logging.Formatter):
    """A record's message, then the fields a service's operator searches by (`job_id=...`)."""

    FIELDS = ("job_id", "event", "webhook_id", "status")

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self._inner = inner or logging.Formatter("%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = self._inner.format(record)
        fields = [
            f"{name}={value}"
            for name in self.FIELDS
            if (value := record.__dict__.get(name)) is not None
        ]
        return f"{text} {' '.join(fields)}" if fields else text


def _log_fields() -> None:
    for handler in logging.getLogger().handlers:
        if not isinstance(handler.formatter, _WithFields):
            handler.setFormatter(_WithFields(handler.formatter))


def _listen_address(value: str) -> tuple[str, int]:
    host, colon, port = value.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{value!r}: give HOST:PORT, e.g. 0.0.0.0:8000")
    return host.strip("[]"), int(port)


def _open_ledger(value: str | None, schema: str) -> tuple[Ledger | None, str]:
    """The ledger `--ledger` names, and how to describe it (never with the DSN)."""
    if value is None:
        return None, "in memory (a restart works the jobs again from what Pleo holds)"
    if value.lower().startswith(_DSN_SCHEMES) or re.search(r"(^|\s)(host|dbname)\s*=", value):
        return PostgresLedger(value, schema=schema), f"PostgreSQL, schema {schema}"
    if "://" in value or "password" in value.lower():
        # Not a file name; and it may hold a password, so it is not shown.
        raise click.BadParameter(
            "give a SQLite file path or a postgresql:// DSN (the value is not shown: it may "
            "hold a password)",
            param_hint="--ledger",
        )
    return SqliteLedger(Path(value)), f"SQLite file {value}"


def _token_store_of(ledger: Ledger | None) -> TokenStore | None:
    """Where OAuth2's rotated tokens are kept: beside the ledger, which every replica shares."""
    if isinstance(ledger, SqliteLedger):
        return FileTokenStore(f"{ledger.path}-oauth.json")
    if isinstance(ledger, PostgresLedger):
        return PostgresTokenStore(ledger, os.environ.get("PLEO_TOKEN_NAME") or "default")
    return None


@click.command()
@click.argument("handler_spec", metavar="MODULE:FUNCTION")
@base_url_options
@click.option(
    "--ledger",
    "ledger_spec",
    envvar="PLEO_LEDGER",
    metavar="PATH|postgresql://…",
    help="A SQLite ledger file, or a PostgreSQL DSN shared by every replica (env PLEO_LEDGER).",
)
@click.option(
    "--ledger-schema",
    envvar="PLEO_LEDGER_SCHEMA",
    default="pleo_export",
    show_default=True,
    help="The database schema of a PostgreSQL ledger (env PLEO_LEDGER_SCHEMA).",
)
@click.option(
    "--company",
    "companies",
    multiple=True,
    metavar="ID",
    help="Work only this company's jobs (repeatable; default: every job the key sees).",
)
@click.option(
    "--companies-at-once",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Companies worked at the same time (each one job at a time, oldest first).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Handler calls at once, per job.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds between listings of the jobs (a webhook wakes the worker sooner).",
)
@click.option(
    "--listen",
    default="127.0.0.1:8000",
    show_default=True,
    metavar="HOST:PORT",
    help="Where to serve POST /webhooks/pleo, GET /healthz and GET /readyz (port 0: any).",
)
@click.option(
    "--metrics",
    is_flag=True,
    help="Serve GET /metrics for Prometheus on the --listen address (OpenTelemetry's metrics).",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=25.0,
    show_default=True,
    help="Seconds the batches in flight get to settle after SIGTERM.",
)
@click.pass_context
def serve(
    ctx: click.Context,
    handler_spec: str,
    base_url: str | None,
    staging: bool,
    ledger_spec: str | None,
    ledger_schema: str,
    companies: tuple[str, ...],
    companies_at_once: int,
    concurrency: int,
    poll_interval: float,
    listen: str,
    metrics: bool,
    grace: float,
) -> None:
    """Run the connector as a service: work every open export job with the handler
    MODULE:FUNCTION, in Pleo's order, woken by Pleo's webhooks, until SIGTERM.

    Webhooks are verified with the secret in PLEO_WEBHOOK_SECRET (whsec_...); without it only
    polling finds new jobs. Authenticate with PLEO_API_KEY, PLEO_ACCESS_TOKEN, or OAuth2:
    PLEO_CLIENT_ID, PLEO_CLIENT_SECRET and, the first time, PLEO_REFRESH_TOKEN (PLEO_TOKEN_URL
    for another token endpoint); the rotated tokens are kept beside --ledger, shared by every
    replica, which refresh one at a time.
    """
    settings = settings_for(ctx)
    chosen = chosen_base_url(base_url, staging)
    if chosen is not None:
        settings = attrs.evolve(settings, base_url=chosen)
    handler = import_handler(handler_spec)
    host, port = _listen_address(listen)
    secret = os.environ.get("PLEO_WEBHOOK_SECRET") or None
    output = settings.output
    ledger, ledger_text = _open_ledger(ledger_spec, ledger_schema)
    token_store = _token_store_of(ledger)
    prometheus = _prometheus_metrics() if metrics else None

    async def work() -> ExitCode:
        from pleo_export_async._serve._service import WEBHOOK_PATH, ConnectorService

        # From the start: a SIGTERM while the ledger and the client open must not kill it.
        signals = _Signals(output.note)
        logging.getLogger("pleo_export_async").setLevel(
            logging.DEBUG if settings.debug else logging.INFO
        )
        _log_fields()
        async with contextlib.AsyncExitStack() as stack:
            if ledger is not None:
                stack.push_async_callback(ledger.close)
                if hasattr(ledger, "__aenter__"):
                    await ledger.__aenter__()
            client = await stack.enter_async_context(client_for(settings, token_store))
            try:
                service = ConnectorService(
                    client,
                    handler,
                    ledger=ledger,
                    company_ids=companies,
                    companies_at_once=companies_at_once,
                    concurrency=concurrency,
                    poll_interval=poll_interval,
                    grace=grace,
                    webhook_secret=secret,
                    metrics=prometheus,
                )
            except ValueError as error:
                output.error(f"PLEO_WEBHOOK_SECRET: {error}")
                return ExitCode.BAD_INPUT
            signals.drain(service)

            if prometheus is not None:
                stack.callback(prometheus.shutdown)

            def listening(bound_host: str, bound_port: int) -> None:
                webhooks = f"webhooks at {WEBHOOK_PATH}" if secret else "no webhooks (polling)"
                probes = "/healthz, /readyz" + (", /metrics" if prometheus else "")
                output.note(
                    f"serving on http://{bound_host}:{bound_port} ({webhooks}; {probes}); "
                    f"ledger: {ledger_text}; SIGTERM drains"
                )

            report = await service.serve(host, port, on_listening=listening)
            output.note(report.line())
        return ExitCode.DONE

    run(settings, work())


def _prometheus_metrics() -> PrometheusMetrics:
    from pleo_export_async._serve._metrics import PrometheusMetrics

    try:
        return PrometheusMetrics()
    except ImportError as missing:
        raise click.UsageError(str(missing)) from None


class _Signals:
    """The first SIGTERM or SIGINT drains the service (or, before there is one, ends the start
    at once with nothing taken); a second exits at once with 128 + the signal's number."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say
        self._received: list[int] = []
        self._service: ConnectorService | None = None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def drain(self, service: ConnectorService) -> None:
        self._service = service
        if self._received:
            service.request_drain()

    def _on_signal(self, signum: int) -> None:
        self._received.append(signum)
        name = signal.Signals(signum).name
        if len(self._received) == 1:
            self._say(f"{name}: draining, taking no new job (send it again to exit at once)")
            if self._service is not None:
                self._service.request_drain()
            return
        self._say(f"{name} again: exiting now; unfinished jobs resume later")
        sys.stderr.flush()
        os._exit(128 + signum)
