"""The fake's job-created notifications (docs/pleo-api.md#webhook): built, signed by the Standard
Webhooks scheme with the `standardwebhooks` package, POSTed in the background on the fake's event
loop, and every attempt journaled.

Pleo documents no retry schedule, timeout or expected answer, so the fake follows Standard
Webhooks: a 2xx answer is success; any other status, a connection error or a timeout is retried
with exponential backoff (the `backoff` package), with the same webhook-id on every attempt and
a new timestamp and signature on each; 410 Gone stops at once. Redirects are not followed (a 3xx
is a failure, as Standard Webhooks says).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import string
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
import attrs
import backoff

from . import _spec
from ._data import seeded_uuid
from ._journal import Journal, WebhookDelivery
from ._subscriptions import JOB_CREATED_EVENT

#: Every delivery task is named so; a test can tell that none outlives the fake.
TASK_NAME_PREFIX: Final = "pleo-fake-webhook"
# Standard Webhooks recommends 15 to 30 s; shorter, so that a test of a receiver that hangs
# ends soon.
_ATTEMPT_TIMEOUT_SECONDS: Final = 10.0
# The longest wait between attempts (unless the first is longer): a fake's retries should end
# within a test's patience, not follow Standard Webhooks' schedule of hours.
_MAX_RETRY_DELAY_SECONDS: Final = 2.0
_GONE: Final = 410
_WEBHOOK_ID_ALPHABET: Final = string.ascii_letters + string.digits
_WEBHOOK_ID_LENGTH: Final = 24


def require_signing() -> None:
    """Raise ImportError, saying what to install, unless `standardwebhooks` can be imported."""
    try:
        import standardwebhooks  # noqa: F401
    except ImportError as missing:
        raise ImportError(
            "the fake signs webhook notifications with the standardwebhooks package: "
            "pip install 'pleo-export-async[testing]'"
        ) from missing


def _signature(secret: str, webhook_id: str, moment: datetime, body: str) -> str:
    from standardwebhooks import Webhook

    signature: str = Webhook(secret).sign(webhook_id, moment, body)
    return signature


@attrs.frozen
class Endpoint:
    """Where a notification goes, and the secret it is signed with there."""

    url: str
    secret: str = attrs.field(repr=False)
    # None for `FakePleo(webhook_url=...)`.
    subscription_id: str | None = None
    # Sent besides the signature headers: a subscription's customHeaders and endpointAuth.
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)


@attrs.frozen
class Notification:
    """One job-created notification: its ids and the exact body every attempt sends and signs."""

    webhook_id: str
    event_id: str
    job_id: str
    body: str = attrs.field(repr=False)


def job_created_notification(ids: random.Random, job_payload: dict[str, Any]) -> Notification:
    """The notification of a job created `pending`: `{data, eventId, eventType}` (no `payload`
    wrapper), `data` being the ExportJobV3 that GET /v3/export-jobs/{jobId} answers with."""
    webhook_id = "msg_" + "".join(ids.choices(_WEBHOOK_ID_ALPHABET, k=_WEBHOOK_ID_LENGTH))
    event_id = seeded_uuid(ids)
    body = json.dumps(
        {"data": job_payload, "eventId": event_id, "eventType": JOB_CREATED_EVENT},
        separators=(",", ":"),
    )
    return Notification(
        webhook_id=webhook_id, event_id=event_id, job_id=job_payload["id"], body=body
    )


class _NotAccepted(Exception):
    """An attempt answered with a status other than 2xx."""

    def __init__(self, status: int) -> None:
        super().__init__(f"answered {status}")
        self.status = status


def _is_gone(failure: Exception) -> bool:
    return isinstance(failure, _NotAccepted) and failure.status == _GONE


def _described(failure: BaseException) -> str:
    detail = str(failure)
    return f"{type(failure).__name__}: {detail}" if detail else type(failure).__name__


@attrs.frozen
class _Delivery:
    notification: Notification
    endpoint: Endpoint
    copy: int


class WebhookSender:
    """Delivers notifications in background tasks on the loop it was started on, over an aiohttp
    session it owns. Notifications handed in before `start` (or after `stop`) wait for the next
    `start`."""

    def __init__(
        self, *, attempts: int, first_delay: float, journal: Callable[[], Journal]
    ) -> None:
        self._attempts = attempts
        self._first_delay = first_delay
        # The journal the fake holds when an attempt ends: a test may assign a new one.
        self._journal = journal
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: list[_Delivery] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"WebhookSender(sending={len(self._tasks)}, waiting={len(self._waiting)})"

    def send(self, notification: Notification, endpoints: Iterable[Endpoint], copies: int) -> None:
        """Deliver `copies` copies of the notification to each endpoint, without waiting."""
        for endpoint in endpoints:
            for copy in range(1, copies + 1):
                delivery = _Delivery(notification, endpoint, copy)
                if self._session is None:
                    self._waiting.append(delivery)
                else:
                    self._spawn(delivery)

    async def start(self) -> None:
        """Open the session and send what waited for it."""
        if self._session is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=_ATTEMPT_TIMEOUT_SECONDS)
        )
        waiting, self._waiting = self._waiting, []
        for delivery in waiting:
            self._spawn(delivery)

    async def stop(self) -> None:
        """Cancel every delivery still under way, wait for each to end, close the session."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        session, self._session = self._session, None
        self._loop = None
        if session is not None:
            await session.close()

    async def wait_idle(self) -> None:
        """Wait until no delivery is under way (each was accepted, stopped by 410, or given up
        after its last attempt)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    def _spawn(self, delivery: _Delivery) -> None:
        assert self._loop is not None
        task = self._loop.create_task(
            self._deliver(delivery),
            name=f"{TASK_NAME_PREFIX}-{delivery.notification.webhook_id}-{delivery.copy}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, delivery: _Delivery) -> None:
        attempts = 0

        @backoff.on_exception(
            backoff.expo,
            (_NotAccepted, aiohttp.ClientError, TimeoutError),
            max_tries=self._attempts,
            giveup=_is_gone,
            # Giving up is journaled, attempt by attempt; nothing to raise into the task.
            raise_on_giveup=False,
            logger=None,
            factor=self._first_delay,
            max_value=max(_MAX_RETRY_DELAY_SECONDS, self._first_delay),
        )
        async def attempt_once() -> None:
            nonlocal attempts
            attempts += 1
            await self._attempt(delivery, attempts)

        await attempt_once()

    async def _attempt(self, delivery: _Delivery, attempt: int) -> None:
        session = self._session
        assert session is not None
        notification, endpoint = delivery.notification, delivery.endpoint
        # The wall clock, not the fake's: a receiver checks the timestamp against its own.
        moment = datetime.now(UTC)
        headers = {
            **endpoint.headers,
            "Content-Type": _spec.JSON_CONTENT_TYPE,
            "webhook-id": notification.webhook_id,
            "webhook-timestamp": str(math.floor(moment.timestamp())),
            "webhook-signature": _signature(
                endpoint.secret, notification.webhook_id, moment, notification.body
            ),
        }
        sent_at = time.monotonic()
        try:
            async with session.post(
                endpoint.url,
                data=notification.body.encode("utf-8"),
                headers=headers,
                allow_redirects=False,
            ) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as failure:
            self._record(delivery, attempt, sent_at, status=None, error=_described(failure))
            raise
        self._record(delivery, attempt, sent_at, status=status, error=None)
        if not 200 <= status <= 299:
            raise _NotAccepted(status)

    def _record(
        self,
        delivery: _Delivery,
        attempt: int,
        sent_at: float,
        *,
        status: int | None,
        error: str | None,
    ) -> None:
        self._journal()._record_webhook_delivery(
            WebhookDelivery(
                webhook_id=delivery.notification.webhook_id,
                event_id=delivery.notification.event_id,
                job_id=delivery.notification.job_id,
                url=delivery.endpoint.url,
                subscription_id=delivery.endpoint.subscription_id,
                attempt=attempt,
                copy=delivery.copy,
                status=status,
                error=error,
                sent_at=sent_at,
                finished_at=time.monotonic(),
            )
        )
