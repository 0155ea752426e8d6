"""HTTP for the Export API (the Transport layer, docs/architecture.md): one aiohttp session, the
credential, timeouts, the concurrency limit and the `Retry-After` gate shared by every job and
endpoint of a client, and the retries of transient failures (rule R6) and of a 401 after a refresh
(rule R7).

It answers with the final `Response` whatever its status; `raise_for_response` turns an error
status into the exception hierarchy. Endpoint-specific handling (404, 413, 422) is the JobRun's.

A failure to connect names host:port and its cause. Until the first HTTP answer of any status,
a refused connection or a name that does not resolve is a wrong base URL nearly every time, not
an outage: such a request gives up within `FIRST_CONTACT_ATTEMPTS` and `FIRST_CONTACT_SECONDS`.

Two things keep a stalled event loop from making the client send twice. An attempt's time limit
does not count the time the loop was stalled (`stall_tolerant_timeout`), so an answer that came
in meanwhile is read, not thrown away and asked for again. And a guard with an `at_the_wire`
check (a `PostgresLedger` lease) is asked again right before the body is written, with no
other task able to run in between: a loop stalled after the guard passed cannot send for a
lease that has run out meanwhile.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import attrs
from aiohttp.abc import AbstractStreamWriter

from . import _codec
from ._auth import Credential
from ._core._classify import Disposition, classify_status, retry_after_seconds
from ._deadline import stall_tolerant_timeout
from ._errors import (
    ApiError,
    AuthenticationError,
    JobNotFound,
    PermissionDenied,
    TransportError,
)
from ._retry import RetryPolicy
from ._telemetry import Attempt, Attributes, Telemetry
from ._version import __version__

logger = logging.getLogger("pleo_export_async")

_JSON_HEADERS = {"Content-Type": "application/json;charset=UTF-8", "Accept": "application/json"}
#: Per request: the attempt's limit is `stall_tolerant_timeout`'s, not aiohttp's.
_NO_AIOHTTP_LIMIT = aiohttp.ClientTimeout()

#: Until the client has had an answer, a refused connection or an unresolvable name ends the
#: request after this many attempts, or once this many seconds have passed since it began
#: (an attempt under way is not cut short), whichever comes first; a smaller policy wins.
FIRST_CONTACT_ATTEMPTS: Final = 3
FIRST_CONTACT_SECONDS: Final = 5.0


@attrs.frozen
class Response:
    status: int
    body: bytes
    retry_after: float | None
    credential_generation: int  # of the credential this attempt was sent with
    attempts: int = 1
    retry_causes: Mapping[str, int] = attrs.field(factory=dict)  # failed attempts by cause
    #: The span of the attempt that got this answer, left open for the caller to add what the
    #: answer settled and close (`request(keep_span=True)`, while traced); else None.
    attempt: Attempt | None = attrs.field(default=None, eq=False, repr=False)

    def json(self) -> Any:
        return _codec.loads(self.body) if self.body else None

    def error_type_is(self, expected: str) -> bool:
        """Whether the ExceptionInfo `type` is `expected`, in any case (Pleo spells both)."""
        error_type, _ = self.exception_info()
        return error_type is not None and error_type.upper() == expected

    def exception_info(self) -> tuple[str | None, str | None]:
        """`type` and `message` of an ExceptionInfo body; (None, None) for any other body."""
        try:
            body = self.json()
        except ValueError:
            return None, None
        if not isinstance(body, dict):
            return None, None
        error_type, message = body.get("type"), body.get("message")
        return (
            error_type if isinstance(error_type, str) else None,
            message if isinstance(message, str) else None,
        )


class _Retryable(Exception):
    """A transient failure of one attempt, for `backoff` to retry.

    `cause` is the counter's name (`retries_by_cause`), `detail` the words for a log line.
    `unreachable` marks a refused connection or an unresolvable name, at `peer` ("host:port")
    for the reason `reason`; `first_contact` that no answer had come yet, which shortens the
    request's retries through `give_up` and `wait_at_most`."""

    give_up = False
    wait_at_most: float | None = None
    first_contact = False

    def __init__(
        self,
        cause: str,
        response: Response | None,
        detail: str,
        *,
        unreachable: bool = False,
        peer: str = "",
        reason: str = "",
    ) -> None:
        self.cause = cause
        self.response = response
        self.detail = detail
        self.unreachable = unreachable
        self.peer = peer
        self.reason = reason
        super().__init__(detail)


@attrs.define(slots=True)
class _Call:
    """One request through its attempts: what backoff's handlers need to count and log."""

    method: str
    path: str
    body: bytes | None
    params: Mapping[str, str | list[str]] | None
    log_extra: Mapping[str, object]
    #: Awaited before each attempt goes on the wire; raises to stop the request (a lost lease).
    guard: Callable[[], Awaitable[None]] | None = None
    #: The guard's `at_the_wire()`: False means "do not write now; await the guard again".
    at_the_wire: Callable[[], bool] | None = None
    attempts: int = 0
    causes: Counter[str] | None = None  # made at the first failure: most calls have none
    #: The failure of the attempt made before backoff took over, for backoff to begin from.
    replay: _Retryable | None = None
    #: Attributes of each attempt's span (`pleo.batch.size`), and whether the last one's span
    #: is left open for the caller (`Response.attempt`).
    span_attributes: Attributes | None = None
    keep_span: bool = False
    open_attempt: Attempt | None = None
    #: The telemetry of the attempt on the wire (None while nothing is reported).
    attempt: Attempt | None = None
    #: `time.monotonic()` at the first attempt, taken only while the client has had no answer
    #: (the only time it is read); unset otherwise, so that most calls pay nothing for it.
    started: float = attrs.field(init=False)

    def count_failure(self, cause: str) -> None:
        if self.causes is None:
            self.causes = Counter()
        self.causes[cause] += 1


@attrs.frozen
class RequestStats:
    """What a client has sent so far, across every job and endpoint: for progress displays and
    monitoring. Each retried attempt counts as a request, and as a retry by its cause."""

    requests: int
    retries: int
    retries_by_cause: Mapping[str, int]
    in_flight: int
    max_in_flight: int


class RetryAfterGate:
    """Holds every sender of the client until a `Retry-After` pause is over."""

    def __init__(self) -> None:
        self._resume_at = 0.0

    def pause(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self._resume_at = max(self._resume_at, loop.time() + seconds)

    def remaining(self) -> float:
        """Seconds until the pause is over (0 or less once it is)."""
        return self._resume_at - asyncio.get_running_loop().time()

    @property
    def paused(self) -> bool:
        """Whether a pause was asked for that `wait` has not yet seen end."""
        return self._resume_at > 0.0

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        # A loop, not an Event: another 429 may push the deadline back while we sleep.
        while (remaining := self._resume_at - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(remaining)
        self._resume_at = 0.0


class Transport:
    def __init__(
        self,
        base_url: str,
        credential: Credential,
        *,
        max_concurrency: int,
        timeout: float,
        retry: RetryPolicy,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.base_url = base_url
        self.telemetry = telemetry if telemetry is not None else Telemetry(base_url)
        self.telemetry.in_flight = self._in_flight_now
        self.credential = credential
        self.retry = retry
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._gate = RetryAfterGate()
        self._session: aiohttp.ClientSession | None = None
        self._requests = 0
        self._retries_by_cause: Counter[str] = Counter()
        self._in_flight = 0
        self._max_in_flight = 0
        #: Whether any HTTP answer (of any status) has come: from then on an unreachable
        #: address is an outage, to be retried by the policy, not a wrong base URL.
        self._answered = False
        self._peer = _peer_of(base_url)
        # Built once: backoff keeps each call's state in the call, passed as the argument.
        self._send_with_retries = retry.retrying(
            _Retryable,
            self._on_backoff,
            give_up=_gives_up,
            wait_at_most=_wait_at_most,
        )(self._attempt_call)

    def _in_flight_now(self) -> int:
        return self._in_flight

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=self.max_concurrency),
                headers={"User-Agent": f"pleo-export-async/{__version__}"},
                raise_for_status=False,
            )
            # aiohttp silently re-sends an idempotent request (our PUT) once when a pooled
            # connection drops; that bypasses the retry policy and the counts users rely on.
            # aiohttp's own test client switches it off the same way.
            if hasattr(self._session, "_retry_connection"):
                self._session._retry_connection = False

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the client is not open: use `async with PleoExportClient(...)`")
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: Mapping[str, str | list[str]] | None = None,
        log_extra: Mapping[str, object] | None = None,
        guard: Callable[[], Awaitable[None]] | None = None,
        span_attributes: Attributes | None = None,
        keep_span: bool = False,
    ) -> Response:
        """Send until the answer is not transient, the retry budget is spent, or a 401 persists
        after one refresh of the credential. Raises `TransportError` when no answer came at all.

        `guard` is awaited right before each attempt is sent; what it raises ends the request.
        `span_attributes` go on each attempt's span; with `keep_span`, the span of the attempt
        that answered is left open in `Response.attempt` (while traced), for the caller to close."""
        call = _Call(
            method,
            path,
            body,
            params,
            log_extra or {},
            guard,
            getattr(guard, "at_the_wire", None),
            span_attributes=span_attributes,
            keep_span=keep_span,
        )
        refreshed = False
        while True:
            try:
                response = await self._send(call)
            except _Retryable as exhausted:
                if exhausted.response is None:
                    raise TransportError(
                        _gave_up_message(method, path, exhausted, call.attempts),
                        attempts=call.attempts,
                    ) from None
                response = exhausted.response
            if response.status == 401 and not refreshed and self.credential.refreshable:
                refreshed = True
                if call.open_attempt is not None:
                    call.open_attempt.close()
                    call.open_attempt = None
                call.count_failure("http_401_refresh")
                self._retries_by_cause["http_401_refresh"] += 1
                self.telemetry.retry("http_401_refresh", call.attempts, 0.0)
                await self.credential.refresh(self.session, response.credential_generation)
                continue
            if call.causes is None:
                return response  # the first attempt answered: what it says is all there is
            return attrs.evolve(response, attempts=call.attempts, retry_causes=dict(call.causes))

    async def _send(self, call: _Call) -> Response:
        """The call's attempts: the first one directly, since nearly every request needs no
        other, and the rest under backoff. Raises `_Retryable` once the policy gives up."""
        call.attempts += 1
        if not self._answered:
            call.started = time.monotonic()
        try:
            return await self._attempt(call)
        except _Retryable as failure:
            if self.retry.max_attempts == 1:
                raise
            call.replay = failure
        return await self._send_with_retries(call)

    async def _attempt_call(self, call: _Call) -> Response:
        """What backoff retries. Its first try replays the failure of the attempt `_send`
        already made, so backoff counts it, logs it and waits before the real second attempt;
        its time limit runs from there."""
        if call.replay is not None:
            failure, call.replay = call.replay, None
            raise failure
        call.attempts += 1
        return await self._attempt(call)

    def stats(self) -> RequestStats:
        return RequestStats(
            requests=self._requests,
            retries=sum(self._retries_by_cause.values()),
            retries_by_cause=dict(self._retries_by_cause),
            in_flight=self._in_flight,
            max_in_flight=self._max_in_flight,
        )

    def _on_backoff(self, details: dict[str, Any]) -> None:
        call: _Call = details["args"][0]
        failure: _Retryable = details["exception"]
        call.count_failure(failure.cause)
        self._retries_by_cause[failure.cause] += 1
        self.telemetry.retry(failure.cause, details["tries"], details["wait"])
        logger.warning(
            "%s %s: %s; retrying in %.2fs",
            call.method,
            call.path,
            failure.detail,
            details["wait"],
            extra={
                **call.log_extra,
                "attempt": details["tries"],
                "status": failure.cause,
                "wait": details["wait"],
            },
        )

    async def _attempt(self, call: _Call) -> Response:
        session = self.session
        credential = self.credential
        if credential.needs_refresh:
            # About to expire: refresh first (once, whoever else is waiting) than meet a 401.
            await credential.refresh(session, credential.generation)
        async with self._semaphore:
            if self._gate.paused:
                self.telemetry.retry_after_wait(self._gate.remaining())
                await self._gate.wait()
            while True:
                if call.guard is not None:
                    await call.guard()
                self._requests += 1
                self._in_flight += 1
                if self._in_flight > self._max_in_flight:
                    self._max_in_flight = self._in_flight
                call.attempt = attempt = self.telemetry.attempt(
                    call.method, call.path, call.attempts - 1, call.span_attributes
                )
                try:
                    response = await self._send_once(session, call)
                except _StoppedAtTheWire:
                    self._requests -= 1  # nothing left: the guard decides again
                    if attempt is not None:
                        attempt.held_back()
                except _Retryable as failure:
                    if failure.unreachable and not self._answered:
                        _limit_first_contact(call, failure)
                    raise
                except BaseException as error:
                    if attempt is not None:
                        attempt.failed(error)
                    raise
                else:
                    if attempt is not None and call.keep_span:
                        # The answer carries the attempt (`_send_once`): its span stays open.
                        call.open_attempt = attempt.keep_open()
                        attempt = None
                    return response
                finally:
                    self._in_flight -= 1
                    if attempt is not None:
                        attempt.end()

    async def _send_once(self, session: aiohttp.ClientSession, call: _Call) -> Response:
        """One attempt on the wire: the answer, or `_Retryable` for a transient failure, or
        `_StoppedAtTheWire` when the call's `at_the_wire` check held the body back."""
        attempt = call.attempt
        generation = self.credential.generation
        headers = {"Authorization": self.credential.authorization()}
        data: bytes | _CheckedBody | None = call.body
        if call.body is not None:
            headers.update(_JSON_HEADERS)
            if call.at_the_wire is not None:
                data = _CheckedBody(call.body, call.at_the_wire)
        try:
            async with (
                stall_tolerant_timeout(self.timeout),
                session.request(
                    call.method,
                    self.base_url + call.path,
                    data=data,
                    params=_query(call.params),
                    headers=headers,
                    timeout=_NO_AIOHTTP_LIMIT,
                ) as http_response,
            ):
                status = http_response.status
                if attempt is not None:
                    attempt.answered(status)
                self._answered = True
                content = await http_response.read()
                retry_after = retry_after_seconds(http_response.headers.get("Retry-After"))
        except TimeoutError as error:
            if attempt is not None:
                attempt.failed(error)
            raise _Retryable(
                "timeout", None, f"{self._peer}: no answer within {self.timeout:g}s"
            ) from None
        except aiohttp.ClientError as error:
            if isinstance(data, _CheckedBody) and data.held_back:
                raise _StoppedAtTheWire from None
            if attempt is not None:
                attempt.failed(error)
            raise _connection_failure(error, self._peer) from None
        response = Response(
            status,
            content,
            retry_after,
            generation,
            attempt=attempt if call.keep_span else None,
        )
        if classify_status(status) is Disposition.RETRY:
            if retry_after is not None:
                self._gate.pause(min(retry_after, self.retry.max_elapsed))
            raise _Retryable(f"http_{status}", response, f"HTTP {status}")
        return response


class _StoppedAtTheWire(Exception):
    """The body was held back at the last moment: nothing of it reached the socket."""


class _CheckedBody(aiohttp.BytesPayload):
    """A request body written only if `at_the_wire()` still says so when aiohttp comes to write
    it. The check and the write run in one step of one task: no other task, and so no blocking
    call of one, can run between them."""

    def __init__(self, value: bytes, at_the_wire: Callable[[], bool]) -> None:
        super().__init__(value)
        self._at_the_wire = at_the_wire
        self.held_back = False

    def _check(self) -> None:
        if not self._at_the_wire():
            self.held_back = True
            raise _StoppedAtTheWire

    async def write(self, writer: AbstractStreamWriter) -> None:
        self._check()
        await super().write(writer)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        self._check()
        await super().write_with_length(writer, content_length)


def _connection_failure(error: aiohttp.ClientError, peer: str) -> _Retryable:
    """The failure, in plain words that name host:port.

    Built from the error's parts, never from its repr(): that shows aiohttp's connection key,
    proxy credentials included."""
    unreachable = False
    if isinstance(error, aiohttp.ClientConnectorError):
        peer = _host_port(error.host, error.port)
        if isinstance(error, aiohttp.ClientConnectorDNSError):
            reason, unreachable = "name not resolved", True
        elif isinstance(error, aiohttp.ClientConnectorCertificateError):
            reason = f"TLS failure: {_tls_reason(error.certificate_error)}"
        elif isinstance(error, aiohttp.ClientSSLError):
            reason = f"TLS failure: {_tls_reason(error.os_error)}"
        elif error.os_error.errno == errno.ECONNREFUSED:
            reason, unreachable = "connection refused", True
        else:
            reason = _os_reason(error.os_error)
    elif isinstance(error, aiohttp.ServerDisconnectedError):
        reason = "server closed the connection"
    elif isinstance(error, aiohttp.ServerFingerprintMismatch):
        reason = "TLS failure: certificate fingerprint mismatch"
    elif isinstance(error, aiohttp.ClientPayloadError):
        reason = "the answer was cut short"
    elif isinstance(error, OSError):
        reason = _os_reason(error)
    else:
        reason = type(error).__name__
    return _Retryable(
        "connection_error",
        None,
        f"{peer}: {reason}",
        unreachable=unreachable,
        peer=peer,
        reason=reason,
    )


def _tls_reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_message:
        return str(error.verify_message)
    if isinstance(error, ssl.SSLError) and error.reason:
        return str(error.reason).lower().replace("_", " ")  # WRONG_VERSION_NUMBER
    # Not _os_reason: an SSLError's errno is OpenSSL's code, not the operating system's.
    return str(error) or type(error).__name__


def _os_reason(error: OSError) -> str:
    if isinstance(error.errno, int) and error.errno > 0:
        text = os.strerror(error.errno)
        return text[:1].lower() + text[1:]  # "no route to host"
    return str(error) or type(error).__name__


def _limit_first_contact(call: _Call, failure: _Retryable) -> None:
    """Shorten the retries of a request that may never have reached Pleo (see the module)."""
    failure.first_contact = True
    remaining = FIRST_CONTACT_SECONDS - (time.monotonic() - call.started)
    if call.attempts >= FIRST_CONTACT_ATTEMPTS or remaining <= 0:
        failure.give_up = True
    else:
        failure.wait_at_most = remaining


def _gives_up(failure: _Retryable) -> bool:
    return failure.give_up


def _wait_at_most(failure: _Retryable) -> float | None:
    return failure.wait_at_most


def _gave_up_message(method: str, path: str, failure: _Retryable, attempts: int) -> str:
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    if failure.first_contact:
        return (
            f"{method} {path}: never reached {failure.peer}: {failure.reason} ({tries}); "
            "check the base URL"
        )
    return f"{method} {path}: {failure.detail} (gave up after {tries})"


def _peer_of(base_url: str) -> str:
    parts = urlsplit(base_url)
    return _host_port(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))


def _host_port(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


def _query(params: Mapping[str, str | list[str]] | None) -> list[tuple[str, str]] | None:
    if not params:
        return None
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        if isinstance(value, list):
            pairs.extend((name, item) for item in value)
        else:
            pairs.append((name, value))
    return pairs


def raise_for_response(response: Response, method: str, path: str) -> None:
    """Raise the exception for an error status; do nothing for 2xx."""
    if response.status < 300:
        return
    error_type, message = response.exception_info()
    kwargs: dict[str, Any] = {"method": method, "path": path, "attempts": response.attempts}
    if response.status == 401:
        raise AuthenticationError(response.status, error_type, message, **kwargs)
    if response.status == 403:
        raise PermissionDenied(response.status, error_type, message, **kwargs)
    if response.status == 404 and (error_type or "").upper() == "EXPORT_NOT_FOUND":
        raise JobNotFound(response.status, error_type, message, **kwargs)
    raise ApiError(response.status, error_type, message, **kwargs)
