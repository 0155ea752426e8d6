"""`FakePleo`: the fake Pleo server a test or a demo starts, and what a test asks of it: jobs to
create, their state, the journal, the clock. Its HTTP app is in `_routes`."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Self

import attrs
from aiohttp import web

from ._auth import TokenStore
from ._faults import FaultDecider, Faults
from ._journal import JobSummary, Journal, summarise
from ._routes import FakeApi
from ._state import ApiError, Clock, Job, LifecycleRules, State

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
    ) -> None:
        if not 0 <= page_size_default <= page_size_max:
            raise ValueError("page sizes need 0 <= page_size_default <= page_size_max")
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
        self._state = State(
            seed=seed,
            clock=self._clock,
            rules=LifecycleRules(
                strict=strict,
                accept_repeated_started=accept_repeated_started,
                pending_blocks_create=pending_blocks_create,
            ),
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
        api = FakeApi(self, self._state, self._tokens, self._decider)
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

    async def close(self) -> None:
        """Stop serving; requests still being handled get a short grace period."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

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

        No company lock applies here, unlike POST /v3/export-jobs.
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
