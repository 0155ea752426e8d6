"""The HTTP side of the fake: aiohttp.web handlers, the middleware, and `FakePleo`.

One middleware wraps every request. It journals the request, counts /v3 requests in flight,
injects latency and faults, checks credentials, maps errors to ExceptionInfo bodies, and writes
the response itself, so the journal knows whether the answer really reached an open connection.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import math
import time
import urllib.parse
import weakref
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Self

import attrs
from aiohttp import web

from . import _spec
from ._auth import Authenticator, OAuthError, TokenStore, basic_credentials, client_allowed
from ._faults import FaultDecider, Faults
from ._journal import Journal, JournalEntry
from ._pagination import PageRequest, paginate, parse_page_request
from ._request_checks import (
    RequestInvalid,
    check_enum_parameter,
    check_uuid_parameter,
    validate_create_job,
    validate_job_event,
    validate_update_items,
)
from ._state import ApiError, Clock, Job, LifecycleRules, State

_PAGINATION_PARAMETERS: Final = frozenset(
    {"before", "after", "offset", "limit", "sorting_keys", "sorting_order"}
)
_SECRET_FORM_FIELDS: Final = frozenset({"refresh_token", "client_secret", "code", "code_verifier"})
_REDACTED: Final = "<redacted>"
_MAX_BODY_BYTES: Final = 64 * 1024 * 1024
# How long close() lets a request that is still being handled finish before cancelling it.
_SHUTDOWN_GRACE_SECONDS: Final = 0.5

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json_response(
    status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload, separators=(",", ":")).encode("utf-8"),
        headers={"Content-Type": _spec.JSON_CONTENT_TYPE, **(headers or {})},
    )


def _exception_info(
    status: int, error_type: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return _json_response(status, {"type": error_type, "message": message}, headers)


def _query(request: web.Request) -> dict[str, list[str]]:
    query: dict[str, list[str]] = {}
    for name, value in request.query.items():
        query.setdefault(name, []).append(value)
    return query


def _single(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise RequestInvalid(f"{name}: given more than once")
    return values[0]


def _parse_json(raw: bytes) -> tuple[bool, Any]:
    """(parsed, value): parsed is False for an empty or malformed body."""
    if not raw.strip():
        return False, None
    try:
        return True, json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False, None


def _redacted_form(raw: bytes) -> dict[str, str]:
    form = dict(urllib.parse.parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    return {
        name: (_REDACTED if name in _SECRET_FORM_FIELDS else value) for name, value in form.items()
    }


def _job_id_of(entry: JournalEntry, query: Mapping[str, list[str]]) -> str | None:
    """The job a request concerns, from its path, its event body or its job_id query."""
    if entry.path.startswith("/v3/export-jobs/"):
        return entry.path.split("/")[3].lower()
    if entry.path == "/v3/export-job-events" and isinstance(entry.body, dict):
        job_id = entry.body.get("jobId")
        return job_id.lower() if isinstance(job_id, str) else None
    job_ids = query.get("job_id")
    return job_ids[0].lower() if job_ids else None


@attrs.frozen
class _RequestContext:
    """What the middleware learnt about the request being handled, for its handler."""

    entry: JournalEntry
    # The journal the request is recorded in.
    journal: Journal
    # The fault configuration when the request arrived: one request sees one configuration,
    # even if a test assigns another meanwhile.
    faults: Faults
    # (parsed, value): parsed is False when the body was empty or not JSON.
    json_body: tuple[bool, Any] = (False, None)


# Set by the middleware in the request's task; handlers run in the same task, so they see it.
_current: ContextVar[_RequestContext] = ContextVar("pleo_fake_request")


@attrs.frozen
class FakeJob:
    """A job created with `FakePleo.create_job`."""

    id: str
    company_id: str
    item_ids: list[str]


class _Api:
    """The endpoints and the middleware, over one `State`."""

    def __init__(self, owner: FakePleo) -> None:
        self._owner = owner
        self._state = owner._state
        self._tokens = owner._tokens
        self._decider = owner._decider
        self._authenticator = Authenticator(owner.api_key, owner._tokens)
        # Numbers for TCP connections, keyed weakly by transport so closed ones are forgotten.
        self._connections: weakref.WeakKeyDictionary[object, int] = weakref.WeakKeyDictionary()
        self._connection_count = 0

    @property
    def _journal(self) -> Journal:
        return self._owner.journal

    def build_app(self) -> web.Application:
        # Large enough that an oversized PUT reaches the handler and gets the documented 413
        # EXPORT_JOB_ITEMS_UPDATE_LIMIT rather than aiohttp's own body-size refusal.
        app = web.Application(middlewares=[self._middleware], client_max_size=_MAX_BODY_BYTES)
        app.router.add_get("/v3/export-jobs", self.list_jobs)
        app.router.add_post("/v3/export-jobs", self.create_job)
        app.router.add_get("/v3/export-jobs/{jobId}", self.get_job)
        app.router.add_get("/v3/export-jobs/{jobId}/items", self.get_job_items)
        app.router.add_put("/v3/export-jobs/{jobId}/items", self.update_job_items)
        app.router.add_post("/v3/export-job-events", self.create_job_event)
        app.router.add_get("/v3/export-items", self.get_export_items)
        app.router.add_get("/v3/export-job-items", self.get_export_job_item)
        app.router.add_post("/oauth/token", self.token)
        return app

    # ---- middleware ----------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # One request is recorded in one journal, even if a test assigns a new one meanwhile.
        journal = self._journal
        entry = journal._record(
            method=request.method,
            path=request.path,
            query=_query(request),
            body=None,
            received_at=time.monotonic(),
        )
        entry.connection = self._connection_number(request)
        if entry.is_api:
            journal._enter()
        try:
            raw = await request.read()
            faults = self._owner.faults
            if request.path == "/oauth/token":
                entry.body = _redacted_form(raw)
                _current.set(_RequestContext(entry, journal, faults))
            else:
                json_body = _parse_json(raw)
                entry.body = json_body[1]
                _current.set(_RequestContext(entry, journal, faults, json_body))
            entry.job_id = _job_id_of(entry, entry.query)
            response = await self._respond(request, handler, entry)
            await self._deliver(request, response, entry)
            return response
        finally:
            if entry.answered_at is None:
                entry.answered_at = time.monotonic()
            if entry.is_api:
                journal._leave()

    def _connection_number(self, request: web.Request) -> int | None:
        transport = request.transport
        if transport is None:
            return None
        try:
            number = self._connections.get(transport)
            if number is None:
                self._connection_count += 1
                number = self._connections[transport] = self._connection_count
        except TypeError:  # a transport that cannot be weakly referenced (other event loops)
            return None
        return number

    async def _respond(
        self, request: web.Request, handler: Handler, entry: JournalEntry
    ) -> web.StreamResponse:
        faults = _current.get().faults
        seq = entry.seq
        if entry.is_api:
            delay = self._decider.latency(faults.latency, seq)
            if delay > 0:
                await asyncio.sleep(delay)
            if self._decider.fires("rate_limit", faults.rate_limit, seq):
                entry.faults.append("rate_limit")
                return self._too_many_requests(faults)
            if self._decider.fires("server_error", faults.server_error, seq):
                entry.faults.append("server_error")
                return _exception_info(
                    faults.server_error_status,
                    _spec.SERVICE_UNAVAILABLE
                    if faults.server_error_status == 503
                    else _spec.INTERNAL_SERVER_ERROR,
                    "Injected server error; nothing was changed.",
                )
            if not self._authenticator.allows(request.headers.get("Authorization")):
                return _exception_info(
                    401,
                    _spec.UNAUTHORIZED,
                    "Missing, malformed, unknown or expired credentials.",
                    {"WWW-Authenticate": 'Basic realm="pleo", Bearer realm="pleo"'},
                )
            if self._decider.fires("forbidden", faults.forbidden, seq):
                entry.faults.append("forbidden")
                return _exception_info(
                    403, _spec.FORBIDDEN, "The credential lacks the scope for this request."
                )
            self._state.expire_due_jobs()
        response = await self._call(request, handler)
        if entry.is_api and self._decider.fires("slow_response", faults.slow_response, seq):
            entry.faults.append("slow_response")
            await asyncio.sleep(faults.slow_response_delay)
        drop = (
            entry.is_item_update and self._decider.fires("lost_response", faults.lost_response, seq)
        ) or (
            entry.is_job_event
            and self._decider.fires("lost_event_response", faults.lost_event_response, seq)
        )
        if drop:
            entry.faults.append("lost_response" if entry.is_item_update else "lost_event_response")
            if request.transport is not None:
                request.transport.close()
        elif entry.is_item_update and self._decider.fires(
            "dropped_mid_body", faults.dropped_mid_body, seq
        ):
            entry.faults.append("dropped_mid_body")
        return response

    async def _call(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as error:
            return _exception_info(error.status, error.error_type, error.message)
        except RequestInvalid as error:
            return _exception_info(400, _spec.BAD_REQUEST, error.message)
        except OAuthError as error:
            return _json_response(
                error.status,
                {"error": error.error, "error_description": error.description},
                {"Cache-Control": "no-store"},
            )
        except web.HTTPException as error:
            # Unknown paths and methods: still an ExceptionInfo body, as clients expect JSON.
            error_type = {404: _spec.NOT_FOUND, 405: _spec.METHOD_NOT_ALLOWED}.get(
                error.status, _spec.BAD_REQUEST
            )
            headers = {k: v for k, v in error.headers.items() if k.lower() == "allow"}
            return _exception_info(error.status, error_type, error.reason, headers)

    def _too_many_requests(self, faults: Faults) -> web.Response:
        if faults.retry_after_http_date:
            # HTTP dates have whole seconds: round up so the date is never earlier than asked.
            until = math.ceil(time.time() + faults.retry_after)
            header = email.utils.formatdate(until, usegmt=True)
        else:
            header = str(math.ceil(faults.retry_after))
        return _exception_info(
            429,
            _spec.TOO_MANY_REQUESTS,
            "Rate limit exceeded; retry after the time in the Retry-After header.",
            {"Retry-After": header},
        )

    async def _deliver(
        self, request: web.Request, response: web.StreamResponse, entry: JournalEntry
    ) -> None:
        """Write the response now, to learn whether it reached an open connection."""
        if "lost_response" in entry.faults or "lost_event_response" in entry.faults:
            entry.status = None
            entry.delivered = False
            entry.answered_at = time.monotonic()
            return
        entry.status = response.status
        if "dropped_mid_body" in entry.faults:
            await self._deliver_half(request, response)
            entry.delivered = False
            entry.answered_at = time.monotonic()
            return
        transport = request.transport
        delivered = False
        if transport is not None and not transport.is_closing():
            try:
                await response.prepare(request)
                await response.write_eof()
                delivered = True
            except ConnectionError:
                delivered = False
        entry.answered_at = time.monotonic()
        entry.delivered = delivered
        if delivered and response.status == 429:
            _current.get().journal._open_pause(
                opened_by=entry.seq,
                start=entry.answered_at,
                end=entry.answered_at + self._pause_seconds(response.headers["Retry-After"]),
                connection=entry.connection,
            )

    @staticmethod
    async def _deliver_half(request: web.Request, response: web.StreamResponse) -> None:
        """The status line, the headers (with the whole body's Content-Length) and the first half
        of the body, then the connection is closed: the answer never arrives whole."""
        body = response.body if isinstance(response, web.Response) else None
        raw = body if isinstance(body, bytes) else b""
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        partial = web.StreamResponse(status=response.status, headers=response.headers)
        partial.content_length = len(raw)
        try:
            await partial.prepare(request)
            await partial.write(raw[: len(raw) // 2])
        except ConnectionError:
            pass
        transport.close()

    @staticmethod
    def _pause_seconds(retry_after: str) -> float:
        if retry_after.isdigit():
            return float(retry_after)
        until = email.utils.parsedate_to_datetime(retry_after).timestamp()
        return max(0.0, until - time.time())

    # ---- helpers -------------------------------------------------------------------------

    def _body(self) -> Any:
        parsed, value = _current.get().json_body
        if not parsed:
            raise RequestInvalid("body: missing or malformed JSON")
        return value

    def _path_job_id(self, request: web.Request) -> str:
        job_id = request.match_info["jobId"]
        check_uuid_parameter("jobId", job_id)
        return job_id.lower()

    def _check_known_parameters(
        self, query: Mapping[str, list[str]], allowed: frozenset[str], hints: Mapping[str, str]
    ) -> None:
        # A lenient server ignores unknown parameters, which hides a misspelt filter; strict
        # mode names it instead (e.g. `status` on the job list, which v3 does not have).
        if not self._owner.strict:
            return
        for name in query:
            if name not in allowed:
                raise RequestInvalid(f"{name}: unknown query parameter{hints.get(name, '')}")

    def _page_request(self, query: Mapping[str, list[str]]) -> PageRequest:
        return parse_page_request(
            query,
            default_limit=self._owner.page_size_default,
            max_limit=self._owner.page_size_max,
            strict=self._owner.strict,
        )

    def _job_payload(self, job: Job) -> dict[str, Any]:
        return job.payload(self._state.rules.expiry_seconds)

    # ---- export jobs ---------------------------------------------------------------------

    async def list_jobs(self, request: web.Request) -> web.Response:
        query = _query(request)
        self._check_known_parameters(
            query,
            _PAGINATION_PARAMETERS | {"company_id", "statuses"},
            {"status": " (v3 filters jobs with repeated `statuses`)"},
        )
        company_id = _single(query, "company_id")
        if company_id is not None:
            check_uuid_parameter("company_id", company_id)
        # Repeated parameters per the spec; comma-separated values are accepted as well,
        # as Spring's list conversion does.
        statuses = [s for value in query.get("statuses", []) for s in value.split(",") if s]
        for index, status in enumerate(statuses):
            check_enum_parameter(f"statuses[{index}]", status, _spec.JOB_STATUSES)
        page_request = self._page_request(query)
        jobs = self._state.list_jobs(company_id=company_id, statuses=statuses)
        page, info = paginate(jobs, lambda job: job.ordinal, page_request)
        return _json_response(
            200, {"data": [self._job_payload(job) for job in page], "pagination": info}
        )

    async def create_job(self, request: web.Request) -> web.Response:
        body = self._body()
        validate_create_job(body, strict=self._owner.strict)
        if self._owner.missing_contra_accounts:
            raise ApiError(
                400, _spec.MISSING_CONTRA_ACCOUNTS, _spec.MESSAGE_MISSING_CONTRA_ACCOUNTS
            )
        job = self._state.create_job_from_request(body)
        return _json_response(201, {"data": self._job_payload(job)})

    async def get_job(self, request: web.Request) -> web.Response:
        job = self._state.get_job(self._path_job_id(request))
        return _json_response(200, {"data": self._job_payload(job)})

    async def create_job_event(self, request: web.Request) -> web.Response:
        body = self._body()
        validate_job_event(body, strict=self._owner.strict)
        applied = self._state.apply_event(
            body["jobId"],
            body["event"],
            failure_reason=body.get("failureReason"),
            failure_reason_type=body.get("failureReasonType"),
        )
        if applied:
            _current.get().journal._note_event_applied(_current.get().entry)
        # docs/pleo-api.md#job-events: 202 with no body at all.
        return web.Response(status=202)

    # ---- export job items (control layer) ------------------------------------------------

    async def get_job_items(self, request: web.Request) -> web.Response:
        job_id = self._path_job_id(request)
        query = _query(request)
        self._check_known_parameters(query, _PAGINATION_PARAMETERS | {"status"}, {})
        status = _single(query, "status")
        if status is not None:
            check_enum_parameter("status", status, _spec.ITEM_STATUSES)
        page_request = self._page_request(query)
        job = self._state.get_job(job_id)
        items = [item for item in job.items.values() if status is None or item.status == status]
        page, info = paginate(items, lambda item: item.ordinal, page_request)
        return _json_response(
            200, {"data": [item.payload(job.id) for item in page], "pagination": info}
        )

    async def update_job_items(self, request: web.Request) -> web.Response:
        job_id = self._path_job_id(request)
        body = self._body()
        if isinstance(body, list) and len(body) > self._owner.max_items_per_update:
            raise ApiError(413, _spec.EXPORT_JOB_ITEMS_UPDATE_LIMIT, _spec.MESSAGE_UPDATE_LIMIT)
        validate_update_items(body, strict=self._owner.strict)
        entry = _current.get().entry
        faults = _current.get().faults
        injected: list[int] = []

        def inject_item_error(index: int) -> bool:
            if self._decider.item_error(faults.item_error, entry.seq, index):
                injected.append(index)
                return True
            return False

        outcome = self._state.update_items(
            job_id,
            body,
            inject_item_error=inject_item_error,
            injected_error_type=faults.item_error_type,
        )
        if injected:
            entry.faults.append("item_error")
        data = outcome.data
        if outcome.data and self._decider.fires("partial_ack", faults.partial_ack, entry.seq):
            entry.faults.append("partial_ack")
            omitted = self._decider.omitted_from_ack(
                faults.partial_ack_fraction,
                entry.seq,
                list(dict.fromkeys(item["accountingEntryId"] for item in outcome.data)),
            )
            data = [item for item in outcome.data if item["accountingEntryId"] not in omitted]
        entry.committed_indexes = frozenset(outcome.committed_indexes)
        entry.acknowledged_ids = frozenset(item["accountingEntryId"] for item in data)
        entry.rejected = {error["accountingEntryId"]: error["type"] for error in outcome.errors}
        return _json_response(200, {"data": data, "errors": outcome.errors})

    async def get_export_job_item(self, request: web.Request) -> web.Response:
        """The hidden GET /v3/export-job-items (docs/pleo-api.md#hidden-endpoints): one job item by
        accounting entry."""
        query = _query(request)
        company_id = _single(query, "company_id")
        entry_id = _single(query, "accounting_entry_id")
        for name, value in (("company_id", company_id), ("accounting_entry_id", entry_id)):
            if value is not None:
                check_uuid_parameter(name, value)
        found = self._state.find_job_item(company_id=company_id, accounting_entry_id=entry_id)
        if found is None:
            raise ApiError(404, _spec.EXPORT_ENTRY_NOT_FOUND, _spec.MESSAGE_EXPORT_ENTRY_NOT_FOUND)
        job, item = found
        return _json_response(200, {"data": item.payload(job.id)})

    # ---- export items (data layer) -------------------------------------------------------

    async def get_export_items(self, request: web.Request) -> web.Response:
        query = _query(request)
        self._check_known_parameters(
            query, _PAGINATION_PARAMETERS | {"job_id"}, {"jobId": " (the parameter is job_id)"}
        )
        job_id = _single(query, "job_id")
        if job_id is None and self._owner.strict:
            raise ApiError(400, _spec.REQUIRED_PARAMETER_MISSING, "job_id: required parameter")
        if job_id is not None:
            check_uuid_parameter("job_id", job_id)
        page_request = self._page_request(query)
        if self._owner.missing_contra_accounts:
            raise ApiError(
                400, _spec.MISSING_CONTRA_ACCOUNTS, _spec.MESSAGE_MISSING_CONTRA_ACCOUNTS
            )
        records = (
            self._state.export_items(job_id)
            if job_id is not None
            else self._state.running_export_items()
        )
        page, info = paginate(records, lambda record: record[0], page_request)
        return _json_response(200, {"data": [item for _, item in page], "pagination": info})

    # ---- OAuth ---------------------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        """POST /oauth/token: the refresh-token grant, with rotation and replay protection."""
        form = dict(urllib.parse.parse_qsl((await request.read()).decode("utf-8", "replace")))
        basic = basic_credentials(request.headers.get("Authorization"))
        client_id, client_secret = basic or (form.get("client_id"), form.get("client_secret"))
        if not client_allowed(self._owner.oauth_clients, client_id, client_secret):
            raise OAuthError(401, "invalid_client", "client authentication failed")
        grant_type = form.get("grant_type")
        if grant_type != "refresh_token":
            raise OAuthError(
                400, "unsupported_grant_type", "the fake supports grant_type=refresh_token only"
            )
        refresh_token = form.get("refresh_token")
        if not refresh_token:
            raise OAuthError(400, "invalid_request", "refresh_token is required")
        pair = self._tokens.refresh(refresh_token)
        return _json_response(
            200,
            {
                "access_token": pair.access_token,
                "refresh_token": pair.refresh_token,
                "expires_in": pair.expires_in,
                "token_type": "bearer",
            },
            {"Cache-Control": "no-store"},
        )


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
    * a misspelt request: unknown body fields, unknown query parameters and `sorting_keys`
      give 400 `BAD_REQUEST`; GET /v3/export-items without `job_id` gives 400
      `REQUIRED_PARAMETER_MISSING`.

    `strict=False` is the lenient opt-in, for a test that means to exercise what a connector
    should not do: it accepts all of these, items are overwritten (last write wins) while the
    job is in progress, unknown fields and parameters are ignored, and GET /v3/export-items
    without `job_id` lists the items of every running job. In both modes, items still
    `pending` or `in_progress` when a job is completed, failed or expired become
    `abandoned`, as Pleo does. `strict` can also be switched on a running fake.

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
        max_items_per_update: int = _spec.MAX_ITEMS_PER_UPDATE,
        access_token_lifetime: int = _spec.ACCESS_TOKEN_LIFETIME_SECONDS,
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
        runner = web.AppRunner(
            _Api(self).build_app(),
            access_log=None,
            shutdown_timeout=_SHUTDOWN_GRACE_SECONDS,
        )
        await runner.setup()
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
    ) -> FakeJob:
        """Create a job with `items` seeded items (or the given `item_ids`) in `status`.

        No company lock applies here, unlike POST /v3/export-jobs.
        """
        if item_ids is None:
            item_ids = [self._state.new_id() for _ in range(items)]
        job = self._state.add_job(
            company_id=company_id or self.company_id,
            item_ids=item_ids,
            status=status,
            vendor_based_bookkeeping=vendor_based_bookkeeping,
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
