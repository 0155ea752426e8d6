"""`FakePleo`: the fake Pleo server a test or a demo starts, and what a test asks of it: jobs to
create, their state, the journal, the clock. Its HTTP app is in `_routes`."""

from __future__ import annotations

import base64
import copy
import random
from collections.abc import Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Self

import attrs
from aiohttp import web

from ._auth import TokenStore
from ._faults import FaultDecider, Faults
from ._journal import JobSummary, Journal, summarise
from ._request_checks import RequestInvalid
from ._routes import FakeApi
from ._state import ApiError, Clock, Job, LifecycleRules, State
from ._subscriptions import (
    JOB_CREATED_EVENT_TYPES,
    Subscriptions,
    check_webhook_secret,
    new_webhook_secret,
    validate_endpoint_url,
)
from ._webhook_sender import Endpoint, WebhookSender, job_created_notification, require_signing

# How long close() lets a request that is still being handled finish before cancelling it.
_SHUTDOWN_GRACE_SECONDS: Final = 0.5


@attrs.frozen
class FakeJob:
    """A job created with `FakePleo.create_job`."""

    id: str
    company_id: str
    item_ids: list[str]


class FakePleo:
    """A fake Pleo Export API v3 server on loopback, over real TCP, for tests and demos.

    Whatever Pleo refuses, the fake refuses, with Pleo's status and error type: PUT items on a
    finished job (422 `EXPORT_JOB_STATUS_UNPROCESSABLE`), an event the job's status does not
    allow, such as `started` twice or anything after a final event (422
    `INVALID_EXPORT_JOB_STATUS_CHANGE`), an unknown job (404 `EXPORT_NOT_FOUND`), more than
    100 items in one PUT (413 `EXPORT_JOB_ITEMS_UPDATE_LIMIT`), a body that breaks the schema
    (400 `BAD_REQUEST`), a bad credential (401 `UNAUTHORIZED`), a second open job for a
    company (409 `EXPORT_ALREADY_IN_PROGRESS`); and, per item in the PUT answer's `errors`,
    an unknown accountingEntryId (`ACCOUNTING_ENTRY_DOES_NOT_EXIST`) or the status
    `abandoned` (`EXPORT_ENTRY_STATUS_UPDATE_FAILED`).

    `strict=True`, the default, also refuses what Pleo's documentation leaves open but its
    guidance tells a connector not to do (docs/pleo-api.md#job-transitions,
    docs/pleo-api.md#item-transitions, docs/pleo-api.md#open-questions), so that a connector's bug
    fails its tests:

    * PUT items on a job not yet started (`pending`): 422 `EXPORT_JOB_STATUS_UNPROCESSABLE`;
    * `completed` or `completed_with_errors` on a `pending` job, or while items are still
      `pending` or `in_progress`, and `completed` when some items `failed`: 422
      `INVALID_EXPORT_JOB_STATUS_CHANGE`;
    * changing an item already `successful`, such as turning it into a failed one: an
      `errors` entry `EXPORT_ENTRY_STATUS_UPDATE_FAILED` in the 200 answer (the very same
      update again, as a retry after a lost answer sends it, is acknowledged and changes
      nothing; the journal's `resent_after_ack` still counts it);
    * a misspelt request: unknown body fields, `null` in a body field the spec does not
      declare nullable (leave the field out instead), unknown query parameters and
      `sorting_keys` give 400 `BAD_REQUEST`; GET /v3/export-items without `job_id` gives 400
      `REQUIRED_PARAMETER_MISSING`.

    `strict=False` is the lenient opt-in, for a test that means to exercise what a connector
    should not do: it accepts all of these, items are overwritten (last write wins) while the
    job is in progress, unknown fields and parameters are ignored, `null` in an optional body
    field counts as the field left out, and GET /v3/export-items without `job_id` lists the
    items of every running job. In both modes, items still
    `pending` or `in_progress` when a job is completed, failed or expired become
    `abandoned`, as Pleo does. `strict` can also be switched on a running fake.

    In both modes, `offset` and `limit` are whole numbers of at least 0 within the spec's
    formats (`offset` int64, `limit` int32); anything else gets 400 `BAD_REQUEST` naming the
    parameter. A `limit` above `page_size_max` is capped at it.

    Answers leave out the optional keys that have no value (`failureReasonType`,
    `startedAt`, `externalId`, `subType`, ...) rather than sending `null`
    (docs/pleo-api.md#schema-check): a client must accept both.

    Other options: `seed` makes IDs, export item data and probabilistic `faults` (a
    `Faults`) reproducible; `clock` and `advance_clock` drive expiry and token lifetimes;
    `accept_repeated_started` accepts `started` on an in-progress job as a no-op
    (docs/pleo-api.md#open-questions (row 3)); `pending_blocks_create` makes a pending job, not
    only one in progress, block creating another. Every request and its answer are in `journal` (a
    `Journal`).

    Webhooks (docs/pleo-api.md#webhook). Every job created `pending`, through POST
    /v3/export-jobs or `create_job`, makes one job-created notification: `{"data": ExportJobV3,
    "eventId": uuid, "eventType": "v1.export-job.created"}` as the HTTP body, signed by the
    Standard Webhooks scheme (headers `webhook-id`, `webhook-timestamp`, `webhook-signature`;
    it needs the `standardwebhooks` package, in the `testing` extra). It is POSTed to
    `webhook_url`, when given, signed with `webhook_secret` (`whsec_...`; when None the fake
    makes one, readable as `fake.webhook_secret`), and to every ACTIVE subscription of the
    fake's subscriptions API (`/v1/subscriptions`, same credentials as /v3) to
    `v1.export-job.created` (or its alias `v1.export.job-created`), signed with that
    subscription's own secret. Sending happens in the background: the request that created
    the job does not wait for it, and a job created before `start` is announced once the fake
    runs. An attempt that gets no 2xx answer (another status, a connection error, or no answer
    within 10 s) is retried with exponential backoff from `webhook_retry_delay` seconds, up to
    `webhook_attempts` attempts in all, with the same `webhook-id` and a new timestamp and
    signature each time; 410 Gone stops at once. `close` cancels what is still being sent;
    `wait_webhooks_idle` waits for it instead. Each attempt is in
    `journal.webhook_deliveries()`, and the faults `webhook_dropped` and `webhook_duplicated`
    lose or repeat a notification.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = "test-api-key",
        seed: int = 0,
        faults: Faults | None = None,
        strict: bool = True,
        clock: Callable[[], datetime] | None = None,
        page_size_default: int = 50,
        page_size_max: int = 100,
        oauth_clients: Mapping[str, str] | None = None,
        accept_repeated_started: bool = False,
        pending_blocks_create: bool = True,
        missing_contra_accounts: bool = False,
        # Literals, not the _spec constants, so the reference shows the values (a test pins
        # them to _spec).
        max_items_per_update: int = 100,
        access_token_lifetime: int = 3600,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        webhook_attempts: int = 5,
        webhook_retry_delay: float = 0.1,
    ) -> None:
        if not 0 <= page_size_default <= page_size_max:
            raise ValueError("page sizes need 0 <= page_size_default <= page_size_max")
        if webhook_attempts < 1:
            raise ValueError(f"webhook_attempts must be at least 1, got {webhook_attempts}")
        if not webhook_retry_delay >= 0:  # also refuses NaN
            raise ValueError(f"webhook_retry_delay must not be negative, got {webhook_retry_delay}")
        if webhook_secret is None:
            webhook_secret = new_webhook_secret()
        else:
            try:
                check_webhook_secret(webhook_secret)
            except ValueError as invalid:
                raise ValueError(f"webhook_secret: {invalid}") from None
        if webhook_url is not None:
            try:
                validate_endpoint_url("webhook_url", webhook_url)
            except RequestInvalid as invalid:
                raise ValueError(invalid.message) from None
            require_signing()
        self.host = host
        self.api_key = api_key
        self.seed = seed
        self.faults = faults if faults is not None else Faults()
        self.page_size_default = page_size_default
        self.page_size_max = page_size_max
        self.oauth_clients = oauth_clients
        # When true, POST /v3/export-jobs and GET /v3/export-items answer 400
        # MISSING_CONTRA_ACCOUNTS, as for a company whose contra accounts are not mapped.
        self.missing_contra_accounts = missing_contra_accounts
        # Pleo documents 100; a lower limit lets tests see how a client handles the 413.
        self.max_items_per_update = max_items_per_update
        self.journal = Journal()
        self._port = port
        self._clock = Clock(clock)
        self._webhook_url = webhook_url
        self._webhook_secret = webhook_secret
        self._subscriptions = Subscriptions(seed=seed, clock=self._clock)
        self._notification_ids = random.Random(f"{seed}:webhooks")
        self._notifications_made = 0
        self._webhooks = WebhookSender(
            attempts=webhook_attempts, first_delay=webhook_retry_delay, journal=lambda: self.journal
        )
        self._state = State(
            seed=seed,
            clock=self._clock,
            rules=LifecycleRules(
                strict=strict,
                accept_repeated_started=accept_repeated_started,
                pending_blocks_create=pending_blocks_create,
            ),
            on_pending_job=self._announce,
        )
        # Access tokens expire after this many seconds of the fake's clock; refresh tokens live
        # until they are used (once) or their authorisation is revoked.
        self._tokens = TokenStore(self._clock, access_lifetime=access_token_lifetime)
        self._decider = FaultDecider(seed)
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    def __repr__(self) -> str:
        # Never show the API key.
        return f"FakePleo(base_url={self._base_url!r}, seed={self.seed}, strict={self.strict})"

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the port and start serving."""
        if self._runner is not None:
            raise RuntimeError("FakePleo is already started")
        api = FakeApi(self, self._state, self._tokens, self._decider, self._subscriptions)
        runner = web.AppRunner(
            api.build_app(), access_log=None, shutdown_timeout=_SHUTDOWN_GRACE_SECONDS
        )
        await runner.setup()
        _tell_when_connections_end(runner, api)
        try:
            site = web.TCPSite(runner, self.host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        host, port = runner.addresses[0][:2]
        self._runner = runner
        shown_host = f"[{host}]" if ":" in host else host
        self._base_url = f"http://{shown_host}:{port}"
        await self._webhooks.start()

    async def close(self) -> None:
        """Stop serving; requests still being handled get a short grace period. Notifications
        still being sent are cancelled, and their tasks awaited."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        # After the server: a request finishing in its grace period may still create a job.
        await self._webhooks.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT` once started."""
        if self._base_url is None:
            raise RuntimeError("FakePleo is not started")
        return self._base_url

    @property
    def port(self) -> int:
        """The bound port once started."""
        return int(self.base_url.rsplit(":", 1)[1])

    # ---- configuration -------------------------------------------------------------------

    @property
    def strict(self) -> bool:
        """Whether the fake refuses what Pleo's guidance tells a connector not to do (the
        default); False is lenient. Assign to switch it for the requests that follow."""
        return self._state.rules.strict

    @strict.setter
    def strict(self, value: bool) -> None:
        self._state.rules = attrs.evolve(self._state.rules, strict=value)

    @property
    def company_id(self) -> str:
        """The company `create_job` uses when none is given (seeded)."""
        return self._state.default_company_id

    @property
    def webhook_url(self) -> str | None:
        """Where every job-created notification goes (besides the subscriptions), if anywhere."""
        return self._webhook_url

    @property
    def webhook_secret(self) -> str:
        """The `whsec_...` secret the notifications to `webhook_url` are signed with."""
        return self._webhook_secret

    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate with the API key (HTTP Basic, key as user, no password)."""
        token = base64.b64encode(f"{self.api_key}:".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}

    # ---- clock ---------------------------------------------------------------------------

    def now(self) -> datetime:
        """The fake's current time (the injected clock plus any `advance_clock`)."""
        return self._clock.now()

    def advance_clock(self, seconds: float) -> None:
        """Move the fake's time forward, e.g. past a job's expiry or a token's lifetime."""
        self._clock.advance(seconds)

    # ---- jobs ----------------------------------------------------------------------------

    def create_job(
        self,
        items: int = 10,
        status: str = "in_progress",
        company_id: str | None = None,
        *,
        item_ids: list[str] | None = None,
        vendor_based_bookkeeping: bool = False,
        job_id: str | None = None,
    ) -> FakeJob:
        """Create a job with `items` seeded items (or the given `item_ids`) in `status`, with a
        new ID unless `job_id` gives one (to bring back a job a stored ledger knows, say).

        No company lock applies here, unlike POST /v3/export-jobs. A job created `pending` is
        announced to the webhook endpoints, as one created through the API is.
        """
        if item_ids is None:
            item_ids = [self._state.new_id() for _ in range(items)]
        job = self._state.add_job(
            company_id=company_id or self.company_id,
            item_ids=item_ids,
            status=status,
            vendor_based_bookkeeping=vendor_based_bookkeeping,
            job_id=job_id,
        )
        return FakeJob(id=job.id, company_id=job.company_id, item_ids=list(job.items))

    def _announce(self, job: Job) -> None:
        """Send the job-created notification of a job just created `pending`."""
        self._notifications_made += 1
        number = self._notifications_made
        # Made before the faults are asked, so that a dropped notification does not change the
        # ids of the ones after it.
        notification = job_created_notification(
            self._notification_ids, job.payload(self._state.rules.expiry_seconds)
        )
        faults = self.faults
        if self._decider.fires("webhook_dropped", faults.webhook_dropped, number):
            return
        copies = (
            2 if self._decider.fires("webhook_duplicated", faults.webhook_duplicated, number) else 1
        )
        endpoints = [
            Endpoint(
                url=subscription.endpoint_url,
                secret=subscription.secret,
                subscription_id=subscription.id,
                headers=subscription.delivery_headers(),
            )
            for subscription in self._subscriptions.hearing(JOB_CREATED_EVENT_TYPES)
        ]
        if self._webhook_url is not None:
            endpoints.insert(0, Endpoint(url=self._webhook_url, secret=self._webhook_secret))
        self._webhooks.send(notification, endpoints, copies)

    async def wait_webhooks_idle(self) -> None:
        """Wait until no notification is being sent: each was accepted (2xx), refused with 410,
        or given up after its last attempt. Those of jobs created before `start` count only
        once the fake runs."""
        await self._webhooks.wait_idle()

    def _job(self, job_id: str) -> Job:
        self._state.expire_due_jobs()
        try:
            return self._state.get_job(job_id)
        except ApiError:
            raise KeyError(f"no job {job_id}") from None

    def job_status(self, job_id: str) -> str:
        """The job's status now (expiry applied)."""
        return self._job(job_id).status

    def job_payload(self, job_id: str) -> dict[str, Any]:
        """The ExportJobV3 that GET /v3/export-jobs/{jobId} would return."""
        return self._job(job_id).payload(self._state.rules.expiry_seconds)

    def item(self, job_id: str, entry_id: str) -> dict[str, Any]:
        """The committed ExportJobItemV3 of one accounting entry."""
        job = self._job(job_id)
        item = job.items.get(entry_id.lower())
        if item is None:
            raise KeyError(f"job {job_id} has no item {entry_id}")
        return item.payload(job.id)

    def items(self, job_id: str) -> list[dict[str, Any]]:
        """Every ExportJobItemV3 of the job, in job order."""
        job = self._job(job_id)
        return [item.payload(job.id) for item in job.items.values()]

    def export_items(self, job_id: str) -> list[dict[str, Any]]:
        """The ExportItemV3 of each of the job's items, in job order, as `GET
        /v3/export-items` serves them while the job runs (drawn from the fake's seed the
        first time they are asked for, here or there). A copy: changing it changes nothing
        the fake serves."""
        return copy.deepcopy(
            [item for _, item in self._state.drawn_export_items(self._job(job_id))]
        )

    def job_summaries(self) -> list[JobSummary]:
        """Per job, oldest first: its status now, the requests and items the fake received for
        it, the IDs sent again after their acknowledgement and the final events applied (what
        `GET /_fake/journal` and the shell fake's closing table show)."""
        self._state.expire_due_jobs()
        statuses = {job_id: job.status for job_id, job in self._state.jobs.items()}
        return summarise(self.journal, statuses)

    def job_ids(self) -> list[str]:
        """Every job's ID, oldest first."""
        return list(self._state.jobs)

    # ---- tokens --------------------------------------------------------------------------

    def issue_token(self) -> tuple[str, str]:
        """(access_token, refresh_token) of a new authorisation, for Bearer auth and refresh."""
        pair = self._tokens.issue()
        return pair.access_token, pair.refresh_token

    def expire_access_tokens(self) -> None:
        """Every access token issued so far gets 401 from now on (refresh tokens still work)."""
        self._tokens.expire_access_tokens()


def _tell_when_connections_end(runner: web.AppRunner, api: FakeApi) -> None:
    """Have the runner's server tell the app how each connection ended (reset or not), which
    aiohttp.web offers no hook for: its `connection_lost`, which every request handler calls
    with the transport's error, is wrapped."""
    server = runner.server
    assert server is not None
    original = server.connection_lost

    def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
        api.connection_lost(handler.transport, exc)
        original(handler, exc)

    server.connection_lost = connection_lost  # type: ignore[method-assign]
