"""A connector service: the worker loop of `run_pending` (Pleo's job order, R19), woken by
Pleo's webhooks (R20), with health probes, and drained on request (R21).

    service = ConnectorService(client, handler, ledger=ledger, webhook_secret=secret)
    report = await service.serve("127.0.0.1", 8000)   # until request_drain()

HTTP, on the service's address:

* `POST /webhooks/pleo` (only with a webhook secret): a verified job-created notification wakes
  the worker at once and gets 202 before any work starts; anything else changes nothing and
  gets its status (`_notifications`). While draining: 503, so Pleo delivers it again later.
* `GET /healthz`: 200 while the worker loop runs.
* `GET /readyz`: 200 once a listing of the jobs succeeded, while the last one did and was
  recent, and while the ledger answers; 503 before that and while draining.
* `GET /metrics` (only with `metrics=`): the metrics for a Prometheus scrape (`_metrics`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from aiohttp import web

from pleo_export_async._ledger import Ledger
from pleo_export_async._process_job import Handler, JobSource
from pleo_export_async._report import CompletionOutcome
from pleo_export_async._run_pending import run_pending

from ._metrics import METRICS_PATH, PrometheusMetrics
from ._notifications import MAX_BODY_BYTES, NotificationCheck, Refused

logger = logging.getLogger("pleo_export_async")

WEBHOOK_PATH = "/webhooks/pleo"
#: How long a ledger's ping may take before /readyz says it does not answer: under the 1 s a
#: Kubernetes probe waits by default.
_PING_SECONDS = 0.8
#: How long the cancelled worker gets to let its leases go once the grace period ran out; a
#: lease it cannot give back expires by itself.
_AFTER_GRACE_SECONDS = 10.0


@attrs.frozen
class DrainReport:
    """What a drain left: the jobs still in progress (they resume on the next start, or on
    another replica), how long it took, and whether the grace period ran out."""

    left_in_progress: tuple[str, ...]
    seconds: float
    grace_ran_out: bool
    completed: int

    def line(self) -> str:
        took = f"drained in {self.seconds:.1f} s"
        closed = f"{self.completed} job(s) closed"
        if not self.left_in_progress:
            return f"{took}: {closed}, none left in progress"
        cut = "; the grace period ran out" if self.grace_ran_out else ""
        jobs = ", ".join(self.left_in_progress)
        return (
            f"{took}: {closed}; left in progress, to resume on the next start: {jobs}{cut}"
            " (what Pleo acknowledged is kept, no final event was sent for them)"
        )


class ConnectorService:
    def __init__(
        self,
        client: JobSource,
        handler: Handler,
        *,
        ledger: Ledger | None,
        company_ids: Sequence[str] = (),
        companies_at_once: int = 1,
        concurrency: int = 8,
        poll_interval: float = 30.0,
        grace: float = 25.0,
        webhook_secret: str | None = None,
        metrics: PrometheusMetrics | None = None,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._handler = handler
        self._ledger = ledger
        self._company_ids = tuple(company_ids)
        self._companies_at_once = companies_at_once
        self._concurrency = concurrency
        self._poll_interval = poll_interval
        self._grace = grace
        self._check = None if webhook_secret is None else NotificationCheck(webhook_secret)
        self.wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._drain_requested = asyncio.Event()
        self._draining = False
        self._worker: asyncio.Task[dict[str, CompletionOutcome]] | None = None
        self._listed_at: float | None = None  # monotonic time of the last listing that answered
        self._last_listing_ok = False
        self._in_hand: set[str] = set()
        self._left_open: set[str] = set()
        self.webhooks_acted_on = 0

    def __repr__(self) -> str:
        state = "draining" if self._draining else "running" if self._worker else "not started"
        return f"ConnectorService({state}, jobs in hand={len(self._in_hand)})"

    # -- what run_pending tells it (RunWatch) ------------------------------------------------

    def listed(self, ok: bool) -> None:
        self._last_listing_ok = ok
        if ok:
            self._listed_at = time.monotonic()

    def job_began(self, job_id: str) -> None:
        self._in_hand.add(job_id)
        self._left_open.discard(job_id)

    def job_ended(self, job_id: str, closed: bool) -> None:
        self._in_hand.discard(job_id)
        if not closed:
            self._left_open.add(job_id)

    # -- the web app ------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        if self._check is not None:
            app.router.add_post(WEBHOOK_PATH, self._webhook)
        if self._metrics is not None:
            app.router.add_get(METRICS_PATH, self._metrics.handle)
        return app

    async def _healthz(self, request: web.Request) -> web.Response:
        running = self._worker is not None and not self._worker.done()
        return _answer(200 if running else 503, {"worker": "running" if running else "stopped"})

    async def _readyz(self, request: web.Request) -> web.Response:
        reasons = await self._not_ready()
        if reasons:
            return _answer(503, {"ready": False, "why": reasons})
        return _answer(200, {"ready": True})

    async def _not_ready(self) -> list[str]:
        if self._draining:
            return ["draining"]
        reasons = []
        if self._worker is None or self._worker.done():
            reasons.append("the worker loop is not running")
        if self._listed_at is None:
            reasons.append("no listing of the jobs has succeeded yet")
        elif not self._last_listing_ok:
            reasons.append("the last listing of the jobs failed")
        elif time.monotonic() - self._listed_at > 3 * self._poll_interval + 30:
            reasons.append("Pleo has not answered a listing recently")
        ping = getattr(self._ledger, "ping", None)
        if callable(ping):
            try:
                await asyncio.wait_for(ping(), _PING_SECONDS)
            except Exception as error:  # any failure to answer means not ready
                reasons.append(f"the ledger does not answer: {type(error).__name__}")
        return reasons

    async def _webhook(self, request: web.Request) -> web.Response:
        assert self._check is not None
        if self._draining:
            return _answer(503, {"error": "draining; deliver it again later"})
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _answer(413, {"error": f"body over {MAX_BODY_BYTES} bytes"})
        try:
            notification = self._check.check(request.headers, body)
        except Refused as refused:
            level = logging.INFO if refused.status < 300 else logging.WARNING
            logger.log(level, "webhook notification not acted on: %s", refused.reason)
            return _answer(refused.status, {"error": refused.reason})
        if not notification.announces_a_job:
            logger.info("webhook notification of type %s ignored", notification.event_type)
            return _answer(202, {"status": "ignored", "eventType": notification.event_type})
        # A hint only: the worker lists the jobs and keeps Pleo's order (R20).
        self.webhooks_acted_on += 1
        self.wake.set()
        logger.info(
            "webhook: export job created; the worker lists the jobs now",
            extra={"job_id": notification.job_id, "webhook_id": notification.webhook_id},
        )
        return _answer(202, {"status": "accepted"})

    # -- running and draining ---------------------------------------------------------------

    async def run_worker(self) -> dict[str, CompletionOutcome]:
        return await run_pending(
            self._client,
            self._handler,
            ledger=self._ledger,
            company_id=None,
            company_ids=self._company_ids,
            companies_at_once=self._companies_at_once,
            concurrency=self._concurrency,
            poll_interval=self._poll_interval,
            stop=self._stop,
            once=False,
            wake=self.wake,
            watch=self,
        )

    def request_drain(self) -> None:
        """Stop taking jobs and webhooks, and drain (a first SIGTERM or SIGINT)."""
        self._draining = True
        self._drain_requested.set()

    async def serve(
        self, host: str, port: int, *, on_listening: Callable[[str, int], None] | None = None
    ) -> DrainReport:
        """Serve the probes (and the webhook) on host:port and run the worker until
        `request_drain()`, then drain. Raises what ended the worker loop, if it ended on its
        own (a handler that gives no awaitable: `InvalidInput`)."""
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            if on_listening is not None:
                on_listening(*_bound_address(runner, host, port))
            self._worker = worker = asyncio.create_task(self.run_worker(), name="worker loop")
            drain = asyncio.create_task(self._drain_requested.wait())
            try:
                await asyncio.wait({worker, drain}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                drain.cancel()
            if worker.done() and not self._draining:
                worker.result()  # raises what ended it
            return await self._drain(worker)
        finally:
            await runner.cleanup()

    async def _drain(self, worker: asyncio.Task[dict[str, CompletionOutcome]]) -> DrainReport:
        self._draining = True
        # What the drain leaves: the jobs in hand now, and those let go open from now on (a job
        # let go open earlier may have been closed by another replica since).
        self._left_open = set()
        started = time.monotonic()
        self._stop.set()  # no new job; the batches in flight settle, no final event is sent
        done, _ = await asyncio.wait({worker}, timeout=self._grace)
        grace_ran_out = not done
        if grace_ran_out:
            # Cancelling sends no final event either (R12); what was in flight stays
            # unacknowledged in the ledger, and is checked against Pleo on the next start.
            worker.cancel()
        completed: dict[str, CompletionOutcome] = {}
        if grace_ran_out:
            await asyncio.wait({worker}, timeout=_AFTER_GRACE_SECONDS)
        elif worker.exception() is not None:
            logger.error("the worker loop failed while draining", exc_info=worker.exception())
        else:
            completed = worker.result()
        left = sorted(self._in_hand | self._left_open)
        return DrainReport(tuple(left), time.monotonic() - started, grace_ran_out, len(completed))


def _answer(status: int, document: dict[str, Any]) -> web.Response:
    return web.Response(status=status, text=json.dumps(document), content_type="application/json")


def _bound_address(runner: web.AppRunner, host: str, port: int) -> tuple[str, int]:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return str(address[0]), int(address[1])
    return host, port
