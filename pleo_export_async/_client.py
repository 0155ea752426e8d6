"""PleoExportClient: the async session manager that owns the transport and hands out JobRuns
(the Jobs layer); its `process_job` and `run_pending` are the Workflow layer's entry points."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import TYPE_CHECKING

from . import _checks
from ._auth import ApiKeyAuth, BearerTokenAuth, Credential, OAuth2Auth, require_safe_url
from ._checks import enum_member, uuid_string
from ._core._classify import ItemErrorClassifier, make_item_error_classifier
from ._enums import JobStatus
from ._errors import InvalidInput
from ._job import JobRun
from ._job_reads import JOBS_PATH, fetch_job
from ._job_settings import JobSettings
from ._ledger import Ledger, MemoryLedger
from ._models import ExportJob
from ._pages import checked_page_size, every_item
from ._process_job import Handler, process_job
from ._report import CompletionOutcome, ProgressCallback
from ._retry import RetryPolicy
from ._run_pending import run_pending
from ._subscriptions import WebhookSubscriptions
from ._telemetry import Telemetry, check_provider

if TYPE_CHECKING:
    from ._telemetry import MeterProvider, TracerProvider
from ._transport import RequestStats, Transport

PRODUCTION_BASE_URL = "https://external.pleo.io"
STAGING_BASE_URL = "https://external.staging.pleo.io"

MAX_BATCH_SIZE = 100  # Pleo's documented limit per PUT items request


class PleoExportClient:
    """A client of Pleo's Export API v3. Use it as an async context manager.

    `max_concurrency` bounds the requests in flight across every job and endpoint of the client;
    a `Retry-After` from Pleo pauses all of them. `batch_size` (1..100) bounds the items per PUT.
    `flush_after` (seconds, or None for never) sends a batch that is not full once its oldest
    update has waited that long, when updates come from an async source: a job expires an hour
    after its last update, and a slow ERP must not cost it (R16).

    Spans and metrics go through the OpenTelemetry API when the `otel` extra is installed: to
    the global providers, or to `tracer_provider` (an OpenTelemetry `TracerProvider`) and
    `meter_provider` (a `MeterProvider`) when given. With neither configured they cost next to
    nothing. Raises `InvalidInput` for a provider that has no `get_tracer()` / `get_meter()`.
    """

    def __init__(
        self,
        base_url: str = PRODUCTION_BASE_URL,
        *,
        auth: ApiKeyAuth | BearerTokenAuth | OAuth2Auth | Credential,
        max_concurrency: int = 8,
        batch_size: int = MAX_BATCH_SIZE,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        item_error_classifier: ItemErrorClassifier = None,
        ledger: Ledger | None = None,
        flush_after: float | None = 5.0,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        if flush_after is not None:
            _checks.positive_seconds("flush_after", flush_after)
        _checks.whole_number("max_concurrency", max_concurrency, low=1, high=256)
        _checks.whole_number("batch_size", batch_size, low=1, high=MAX_BATCH_SIZE)
        _checks.positive_seconds("timeout", timeout)
        _checks.ledger("ledger", ledger)
        check_provider("tracer_provider", tracer_provider, "get_tracer")
        check_provider("meter_provider", meter_provider, "get_meter")
        for method in ("authorization", "refresh"):
            if not callable(getattr(auth, method, None)):
                raise InvalidInput(
                    "auth", auth, "must be ApiKeyAuth, BearerTokenAuth or OAuth2Auth"
                )
        self.base_url = require_safe_url("base_url", base_url)
        self.max_concurrency = max_concurrency
        self.batch_size = batch_size
        self.flush_after = None if flush_after is None else float(flush_after)
        self.retry = retry or RetryPolicy()
        self.classify_item_error = make_item_error_classifier(item_error_classifier)
        self.ledger: Ledger = ledger or MemoryLedger()
        self.transport = Transport(
            self.base_url,
            auth,
            max_concurrency=max_concurrency,
            timeout=float(timeout),
            retry=self.retry,
            telemetry=Telemetry(
                self.base_url, tracer_provider=tracer_provider, meter_provider=meter_provider
            ),
        )
        self._auth = auth

    def __repr__(self) -> str:
        return (
            f"PleoExportClient(base_url={self.base_url!r}, auth={self._auth!r}, "
            f"max_concurrency={self.max_concurrency}, batch_size={self.batch_size})"
        )

    async def __aenter__(self) -> PleoExportClient:
        """Open the HTTP session. Raises nothing of its own; no request is sent yet."""
        await self.transport.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the HTTP session. Raises nothing of its own; an exception leaving the block
        goes on as it is."""
        await self.transport.close()

    def job(
        self,
        job_id: str,
        *,
        ledger: Ledger | None = None,
        reconcile_on_resume: bool = True,
        wait: bool = True,
    ) -> JobRun:
        """A JobRun for this export job. JobRuns that share a ledger never resend each other's
        acknowledged updates; by default they share the client's ledger.

        With a durable ledger that shows batches in flight when the last process stopped, the
        first call asks Pleo which of them landed (`JobRun.reconcile()`), unless
        `reconcile_on_resume=False`.

        The JobRuns of a ledger take turns at the job; with `PostgresLedger` so do the workers
        of every process sharing its database. A call waits for its turn, unless `wait=False`:
        then it raises `JobLeased` at once if another holds the job.

        Raises `InvalidInput` at once for a `job_id` that is not a UUID or a `wait` that is
        not a bool; nothing is sent.
        """
        _checks.flag("wait", wait)
        _checks.flag("reconcile_on_resume", reconcile_on_resume)
        _checks.ledger("ledger", ledger)
        # Read now, as the JobRun's: a setting changed later applies to the jobs made after.
        settings = JobSettings(
            batch_size=self.batch_size,
            flush_after=self.flush_after,
            max_concurrency=self.max_concurrency,
            item_error_attempts=self.retry.max_attempts,
            classify_item_error=self.classify_item_error,
        )
        return JobRun(
            self.transport,
            settings,
            uuid_string("job_id", job_id),
            ledger or self.ledger,
            reconcile_on_resume=reconcile_on_resume,
            wait=wait,
        )

    @property
    def webhook_subscriptions(self) -> WebhookSubscriptions:
        """Pleo's webhook subscriptions (`/v1/subscriptions`) of the credential's company or
        organisation, sent through this client's transport: its retries, its limit on requests
        in flight and its `Retry-After` pauses."""
        return WebhookSubscriptions(self.transport)

    def stats(self) -> RequestStats:
        """What this client has sent so far: requests, retries by cause, requests in flight."""
        return self.transport.stats()

    async def jobs(
        self,
        *,
        statuses: Iterable[JobStatus | str] = (JobStatus.PENDING,),
        company_id: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[ExportJob]:
        """Export jobs in these statuses, oldest first: every page of `GET /v3/export-jobs`.

        Pleo does not document an order and jobs must be processed oldest first, so every page
        is read before the first job is yielded. Pass `company_id` for an organisation with
        several companies.

        Raises `InvalidInput` for a status outside `JobStatus`, a `company_id` that is not a
        UUID or a `page_size` outside 1..100, before any request; `AuthenticationError` or
        `PermissionDenied` when Pleo refuses the credential (401, 403); `ApiError` for another
        error status; `TransportError` when the network fails past the retries;
        `UnexpectedResponse` for a body that is not a page of jobs.
        """
        params: dict[str, str | list[str]] = {
            "statuses": [enum_member("statuses", status, JobStatus).value for status in statuses],
        }
        if company_id is not None:
            params["company_id"] = uuid_string("company_id", company_id)
        found = [
            job
            async for job in every_item(
                self.transport,
                JOBS_PATH,
                ExportJob,
                page_size=checked_page_size(page_size),
                params=params,
            )
        ]
        for job in sorted(found, key=lambda job: job.created_at):
            yield job

    async def get_job(self, job_id: str) -> ExportJob:
        """The job as Pleo has it now (`GET /v3/export-jobs/{jobId}`).

        Raises `InvalidInput` for a `job_id` that is not a UUID, before any request;
        `JobNotFound` when Pleo does not know the job; `AuthenticationError` or
        `PermissionDenied` when Pleo refuses the credential; `ApiError` for another error
        status; `TransportError` when the network fails past the retries; `UnexpectedResponse`
        for a body that is not a job.
        """
        return await fetch_job(self.transport, uuid_string("job_id", job_id))

    async def process_job(
        self,
        job_id: str,
        handler: Handler,
        *,
        concurrency: int = 8,
        ledger: Ledger | None = None,
        stop: asyncio.Event | None = None,
        on_progress: ProgressCallback | None = None,
        wait: bool = True,
    ) -> CompletionOutcome | None:
        """Export one job from start to finish: start or resume it, run `handler` on each item
        that still needs a result, report the results as they come, and complete the job.

        `handler(item)` is an async function: it gets an `ExportItem` (the item's accounting
        data) and returns its `ItemUpdate`. An exception it raises, or a result that is not an
        `ItemUpdate` for that item, fails the item with `unexpected_failure` and the job goes
        on. At most `concurrency` handler calls run at once.

        With a durable `ledger`, a run after a crash calls the handler only for the items Pleo
        has no result for. Setting `stop` stops it taking new items: the results already made
        are sent, nothing is completed, and it returns None; the job can be resumed later. So it
        does when cancelled, sending no final event (R12). `on_progress` gets a `Progress` after
        each settled batch, as for `JobRun.update()`.

        The job is held for the whole call (`JobRun.hold()`): another worker sharing the ledger
        that processes the same job waits until this call ends, then finds the job closed; with
        `wait=False` it raises `JobLeased` at once instead.

        Returns the outcome of the job's final event, or None when stopped. Raises:

        * `InvalidInput` for a bad argument (a `job_id` that is not a UUID, a `concurrency`
          below 1, a `handler` that is not callable), before any request; and for a handler
          whose first call gives no awaitable (a plain function), at that call, with nothing
          more sent and the job left open;
        * `JobFinished` if the job was closed by someone else;
        * `JobNotFound` if Pleo does not know the job;
        * `MissingContraAccounts` if Pleo gives no export data for it (nothing is sent);
        * `JobLeased` with `wait=False` when another worker holds the job; `LeaseLost` when
          this worker lost the job's lease (`PostgresLedger`) and so sent nothing more;
        * `IncompleteJob` if items are still unacknowledged when the retries are spent;
        * `AuthenticationError`, `PermissionDenied`, `ApiError` for Pleo's other refusals,
          `TransportError` when the network fails past the retries, `LedgerError` when the
          ledger cannot be written;
        * `CancelledError` when cancelled, after sending no final event.
        """
        return await process_job(
            self,
            uuid_string("job_id", job_id),
            handler,
            concurrency=concurrency,
            ledger=ledger,
            stop=stop,
            on_progress=on_progress,
            wait=wait,
        )

    async def run_pending(
        self,
        handler: Handler,
        *,
        ledger: Ledger | None = None,
        company_id: str | None = None,
        companies_at_once: int = 1,
        concurrency: int = 8,
        poll_interval: float = 30.0,
        stop: asyncio.Event | None = None,
        once: bool = False,
        jobs_at_once: int | None = None,
    ) -> dict[str, CompletionOutcome]:
        """Work the pending and in_progress export jobs as one of many workers, in Pleo's order:
        per company one job at a time, the one in progress or else the oldest pending (by
        `createdAt`), each through `process_job`; up to `companies_at_once` companies at once.

        Workers that share `ledger` share the companies out. One worker at a time holds a
        company's turn and works its jobs one after another; the others skip that company at
        once and take it up when they find it free on a later round. With `PostgresLedger` the
        turn is a lease in the database, so N replicas keep the order between them; with any
        other ledger the workers of this process that share it do. A job whose worker died is
        taken up once its lease expires, and resumed from the ledger.

        A job that fails with an API or ledger error is logged and tried again on a later
        round; the company's newer jobs wait for it, and the other companies go on. It lists
        the jobs again every `poll_interval` seconds until `stop` is set (the jobs under way
        finish their current results, complete nothing more, and stay resumable); with
        `once=True` it returns after one round, each company's open jobs worked.

        `jobs_at_once` is the old name of `companies_at_once`, deprecated: jobs of one company
        no longer run at once, as Pleo's order asks.

        Returns the outcomes of the jobs this call completed, by job ID.

        Raises `InvalidInput` for a bad argument, before any request, and for a handler whose
        call gives no awaitable, taking no other job. A job's own errors
        (`JobLeased`, `JobFinished`, `LeaseLost`, `ApiError`, `LedgerError`, ...) are logged and
        do not stop the others. With `once=True`, an error listing the jobs
        (`AuthenticationError`, `PermissionDenied`, `ApiError`, `TransportError`) is raised;
        otherwise it is logged and the listing tried again after `poll_interval`. Cancelling
        raises `CancelledError` once the jobs under way have stopped, with no final event sent
        for them.
        """
        if jobs_at_once is not None:
            warnings.warn(
                "run_pending(jobs_at_once=) is deprecated: use companies_at_once=, the number "
                "of companies worked at once (Pleo's order allows one job of a company at a "
                "time)",
                DeprecationWarning,
                stacklevel=2,
            )
            _checks.whole_number("jobs_at_once", jobs_at_once, low=1)
            if companies_at_once != 1 and companies_at_once != jobs_at_once:
                raise InvalidInput(
                    "jobs_at_once",
                    jobs_at_once,
                    f"is the old name of companies_at_once, given as {companies_at_once!r}: "
                    "pass only companies_at_once",
                )
            companies_at_once = jobs_at_once
        return await run_pending(
            self,
            handler,
            ledger=ledger,
            company_id=company_id,
            companies_at_once=companies_at_once,
            concurrency=concurrency,
            poll_interval=poll_interval,
            stop=stop,
            once=once,
        )
