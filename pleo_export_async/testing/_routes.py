"""The fake's HTTP app: the aiohttp.web handlers of every endpoint, and the middleware.

One middleware wraps every request. It journals the request, counts /v3 requests in flight,
injects latency and faults into /v3, checks credentials (of /v3 and of the webhook subscriptions
API, /v1/subscriptions), maps errors to ExceptionInfo bodies, and writes the response itself, so
the journal knows whether the answer really reached an open connection.
The settings it reads are the live ones of the `FakePleo` that serves it: a test may replace
`faults` or switch `strict` on a running fake.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import socket
import time
import urllib.parse
import weakref
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any, Final, Protocol

import attrs
from aiohttp import web

from . import _spec
from ._auth import Authenticator, OAuthError, TokenStore, basic_credentials, client_allowed
from ._faults import FaultDecider, Faults
from ._journal import FAKE_PATH_PREFIX, Journal, JournalEntry, journal_document
from ._pagination import PageRequest, paginate, parse_page_request
from ._request_checks import (
    RequestInvalid,
    check_enum_parameter,
    check_uuid_parameter,
    single_parameter,
    validate_create_job,
    validate_job_event,
    validate_update_items,
)
from ._state import ApiError, Job, State
from ._subscriptions import SUBSCRIPTION_STATUSES, Subscription, Subscriptions
from ._webhook_sender import require_signing

_PAGINATION_PARAMETERS: Final = frozenset(
    {"before", "after", "offset", "limit", "sorting_keys", "sorting_order"}
)
_SECRET_FORM_FIELDS: Final = frozenset({"refresh_token", "client_secret", "code", "code_verifier"})
_REDACTED: Final = "<redacted>"
_MAX_BODY_BYTES: Final = 64 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeSettings(Protocol):
    """What the app reads of its `FakePleo`, on every request."""

    api_key: str
    faults: Faults
    journal: Journal
    page_size_default: int
    page_size_max: int
    oauth_clients: Mapping[str, str] | None
    missing_contra_accounts: bool
    max_items_per_update: int

    @property
    def strict(self) -> bool: ...


def _stdlib_json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


try:
    # The variable the library's codec reads (`_codec.stdlib_json_requested`), read here
    # again: the fake imports nothing from the client it stands in front of.
    if os.environ.get("PLEO_EXPORT_ASYNC_JSON", "").lower() == "stdlib":
        raise ImportError("stdlib JSON requested")
    import orjson
except ImportError:  # without the `speed` extra
    _json_body = _stdlib_json
else:
    # What the stdlib would refuse (a datetime, a dataclass) is not written either.
    _ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS

    def _json_body(payload: Any) -> bytes:
        # orjson when installed: a page of export items took the fake a quarter of its CPU in
        # the stdlib encoder, on the machine its clients share. Whatever orjson refuses (an
        # integer beyond 64 bits, a key that is not a string) goes to the stdlib, which writes
        # it or raises as before.
        try:
            encoded: bytes = orjson.dumps(payload, option=_ORJSON_OPTIONS)
        except TypeError:
            return _stdlib_json(payload)
        return encoded


def _json_response(
    status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=_json_body(payload),
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


def _redacted_subscription_request(body: Any) -> Any:
    """A SubscriptionRequest body with its endpointAuth credentials redacted, for the journal."""
    if not isinstance(body, dict):
        return body
    auth = body.get("endpointAuth")
    if not isinstance(auth, dict) or not isinstance(auth.get("credentials"), dict):
        return body
    credentials = dict.fromkeys(auth["credentials"], _REDACTED)
    return {**body, "endpointAuth": {**auth, "credentials": credentials}}


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


class FakeApi:
    """The endpoints and the middleware, over one `State`."""

    def __init__(
        self,
        settings: FakeSettings,
        state: State,
        tokens: TokenStore,
        decider: FaultDecider,
        subscriptions: Subscriptions,
    ) -> None:
        self._settings = settings
        self._state = state
        self._subscriptions = subscriptions
        self._tokens = tokens
        self._decider = decider
        self._authenticator = Authenticator(settings.api_key, tokens)
        # Numbers for TCP connections, keyed weakly by transport so closed ones are forgotten.
        self._connections: weakref.WeakKeyDictionary[object, int] = weakref.WeakKeyDictionary()
        self._connection_count = 0
        # Per connection, the last answer delivered on it, until the client sends its next
        # request there (then it read the answer): a reset before that means it left it unread.
        self._last_answer: weakref.WeakKeyDictionary[object, tuple[Journal, JournalEntry]] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def _journal(self) -> Journal:
        return self._settings.journal

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
        app.router.add_get("/v1/subscriptions", self.list_subscriptions)
        app.router.add_post("/v1/subscriptions", self.create_subscription)
        app.router.add_get("/v1/subscriptions/{id}", self.get_subscription)
        app.router.add_put("/v1/subscriptions/{id}", self.replace_subscription)
        app.router.add_delete("/v1/subscriptions/{id}", self.delete_subscription)
        app.router.add_get("/v1/subscriptions/{id}/secret", self.get_subscription_secret)
        app.router.add_post("/oauth/token", self.token)
        app.router.add_get(FAKE_PATH_PREFIX + "journal", self.journal)
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
        if request.transport is not None:
            self._last_answer.pop(request.transport, None)
        if entry.is_api:
            journal._enter()
        try:
            raw = await request.read()
            faults = self._settings.faults
            if request.path == "/oauth/token":
                entry.body = _redacted_form(raw)
                _current.set(_RequestContext(entry, journal, faults))
            else:
                json_body = _parse_json(raw)
                entry.body = (
                    _redacted_subscription_request(json_body[1])
                    if entry.is_subscriptions_api
                    else json_body[1]
                )
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

    def connection_lost(self, transport: object, error: BaseException | None) -> None:
        """A connection ended. Reset by the client (an `OSError`) before it sent another
        request, it never read the last answer written to it."""
        last = self._last_answer.pop(transport, None)
        if last is not None and isinstance(error, OSError):
            journal, entry = last
            journal._left_unread(entry)

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
        if (entry.is_api or entry.is_subscriptions_api) and not self._authenticator.allows(
            request.headers.get("Authorization")
        ):
            return _exception_info(
                401,
                _spec.UNAUTHORIZED,
                "Missing, malformed, unknown or expired credentials.",
                {"WWW-Authenticate": 'Basic realm="pleo", Bearer realm="pleo"'},
            )
        if entry.is_api:
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
        # Whether the client hung up is asked before writing: a client that reads the answer
        # and closes at once (urllib does) may have hung up by the time the write returns,
        # and it had read the answer. A reset that comes back for an answer written to a
        # client already gone is seen by connection_lost, which makes it not delivered.
        if transport is not None and not transport.is_closing() and not _peer_gone(transport):
            try:
                await response.prepare(request)
                await response.write_eof()
                # Reset while the answer was being written: connection_lost closed it.
                delivered = not transport.is_closing()
            except ConnectionError:
                delivered = False
        entry.answered_at = time.monotonic()
        entry.delivered = delivered
        if delivered and transport is not None:
            self._last_answer[transport] = (_current.get().journal, entry)
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
        if not self._settings.strict:
            return
        for name in query:
            if name not in allowed:
                raise RequestInvalid(f"{name}: unknown query parameter{hints.get(name, '')}")

    def _page_request(self, query: Mapping[str, list[str]]) -> PageRequest:
        return parse_page_request(
            query,
            default_limit=self._settings.page_size_default,
            max_limit=self._settings.page_size_max,
            strict=self._settings.strict,
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
        company_id = single_parameter(query, "company_id")
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
        validate_create_job(body, strict=self._settings.strict)
        if self._settings.missing_contra_accounts:
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
        validate_job_event(body, strict=self._settings.strict)
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
        status = single_parameter(query, "status")
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
        if isinstance(body, list) and len(body) > self._settings.max_items_per_update:
            raise ApiError(413, _spec.EXPORT_JOB_ITEMS_UPDATE_LIMIT, _spec.MESSAGE_UPDATE_LIMIT)
        validate_update_items(body, strict=self._settings.strict)
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
        company_id = single_parameter(query, "company_id")
        entry_id = single_parameter(query, "accounting_entry_id")
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
        job_id = single_parameter(query, "job_id")
        if job_id is None and self._settings.strict:
            raise ApiError(400, _spec.REQUIRED_PARAMETER_MISSING, "job_id: required parameter")
        if job_id is not None:
            check_uuid_parameter("job_id", job_id)
        page_request = self._page_request(query)
        if self._settings.missing_contra_accounts:
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

    # ---- webhook subscriptions -----------------------------------------------------------

    def _path_subscription(self, request: web.Request) -> Subscription:
        subscription_id = request.match_info["id"]
        check_uuid_parameter("id", subscription_id)
        return self._subscriptions.get(subscription_id)

    async def list_subscriptions(self, request: web.Request) -> web.Response:
        """GET /v1/subscriptions: cursor-paginated, oldest first, filtered by `status` and by
        any of the repeated `event_types`."""
        query = _query(request)
        self._check_known_parameters(query, _PAGINATION_PARAMETERS | {"status", "event_types"}, {})
        status = single_parameter(query, "status")
        # The spec types the filter as a free string; strict mode names a misspelt status,
        # which would otherwise match nothing.
        if status is not None and self._settings.strict:
            check_enum_parameter("status", status, SUBSCRIPTION_STATUSES)
        # Repeated parameters per the spec; comma-separated values are accepted as well.
        event_types = [t for value in query.get("event_types", []) for t in value.split(",") if t]
        page_request = self._page_request(query)
        subscriptions = self._subscriptions.listed(status=status, event_types=event_types)
        page, info = paginate(
            subscriptions, lambda subscription: subscription.ordinal, page_request
        )
        return _json_response(
            200, {"data": [subscription.payload() for subscription in page], "pagination": info}
        )

    async def create_subscription(self, request: web.Request) -> web.Response:
        """POST /v1/subscriptions: 200 (not 201, as the spec says) with the new subscription."""
        body = self._body()
        try:
            require_signing()
        except ImportError as missing:
            raise ApiError(500, _spec.INTERNAL_SERVER_ERROR, str(missing)) from None
        subscription = self._subscriptions.create(body, strict=self._settings.strict)
        return _json_response(200, {"data": subscription.payload()})

    async def get_subscription(self, request: web.Request) -> web.Response:
        subscription = self._path_subscription(request)
        return _json_response(200, {"data": subscription.payload()})

    async def replace_subscription(self, request: web.Request) -> web.Response:
        """PUT /v1/subscriptions/{id}: a whole SubscriptionRequest replaces its settings."""
        subscription = self._path_subscription(request)
        body = self._body()
        self._subscriptions.replace(subscription.id, body, strict=self._settings.strict)
        return _json_response(200, {"data": subscription.payload()})

    async def delete_subscription(self, request: web.Request) -> web.Response:
        subscription = self._path_subscription(request)
        self._subscriptions.delete(subscription.id)
        return web.Response(status=204)

    async def get_subscription_secret(self, request: web.Request) -> web.Response:
        subscription = self._path_subscription(request)
        return _json_response(200, {"data": {"secretKey": subscription.secret}})

    # ---- OAuth ---------------------------------------------------------------------------

    # ---- the fake's own endpoints ----------------------------------------------------------

    async def journal(self, request: web.Request) -> web.Response:
        """GET /_fake/journal: what the fake received and answered, and per job what was resent
        after its acknowledgement, for a person or a script outside the test process."""
        self._state.expire_due_jobs()
        statuses = {job_id: job.status for job_id, job in self._state.jobs.items()}
        return _json_response(200, journal_document(_current.get().journal, statuses))

    async def token(self, request: web.Request) -> web.Response:
        """POST /oauth/token: the refresh-token grant, with rotation and replay protection."""
        form = dict(urllib.parse.parse_qsl((await request.read()).decode("utf-8", "replace")))
        basic = basic_credentials(request.headers.get("Authorization"))
        client_id, client_secret = basic or (form.get("client_id"), form.get("client_secret"))
        if not client_allowed(self._settings.oauth_clients, client_id, client_secret):
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


def _peer_gone(transport: asyncio.BaseTransport) -> bool:
    """Whether the client has hung up or reset the connection, as the kernel knows it now: the
    event loop may not have read that yet. Peeks at the socket, reading nothing."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        # A duplicate of the descriptor: the transport's own socket object may not be read.
        with socket.socket(fileno=os.dup(sock.fileno())) as probe:
            return probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False  # open, with nothing more from the client yet
    except OSError:
        return True  # reset
