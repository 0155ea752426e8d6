"""The request journal: what the fake received, what it answered, and helpers for assertions.

Times are `time.monotonic()` seconds. "Delivered" means the client could have read the whole
answer: it was written to an open connection, the client had not hung up by then, and the client
did not reset the connection with the answer unread (what its kernel does when a client that gave
up, at its timeout say, closes a socket holding data it never read). A dropped connection, a
client that hung up before the answer and one that left it unread are not delivered, so the
retry that follows is no resend.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any, Final

import attrs

from . import _spec

_ITEMS_PATH: Final = re.compile(r"^/v3/export-jobs/([^/]+)/items$")
_EVENTS_PATH: Final = "/v3/export-job-events"
SUBSCRIPTIONS_PATH: Final = "/v1/subscriptions"
# The fake's own endpoints (the journal), outside the API's /v3 paths.
FAKE_PATH_PREFIX: Final = "/_fake/"
# Requests within this many seconds of a pause window's edges are not counted as inside it,
# so that scheduling jitter around an exactly honoured Retry-After is not a false positive.
DEFAULT_PAUSE_EPSILON: Final = 0.005


@attrs.define
class JournalEntry:
    """One request the fake received, and how it was answered."""

    seq: int
    method: str
    path: str
    query: dict[str, list[str]]
    # The parsed JSON body (secrets of token requests redacted); None when empty or not JSON.
    body: Any
    received_at: float
    answered_at: float | None = None
    # None when no response was sent (the connection was dropped on purpose).
    status: int | None = None
    delivered: bool = False
    # The fake's number for the TCP connection that carried the request (1, 2, ...).
    connection: int | None = None
    # Names of the faults that fired on this request, in the order they acted.
    faults: list[str] = attrs.field(factory=list)
    # The export job the request concerns (path, body or query), lowercase; None if none.
    job_id: str | None = None
    # PUT items: which body positions were committed, and which IDs the answer listed in `data`.
    committed_indexes: frozenset[int] = frozenset()
    acknowledged_ids: frozenset[str] = frozenset()
    # PUT items: accountingEntryId -> errors[].type, for the IDs listed in `errors`.
    rejected: dict[str, str] = attrs.field(factory=dict)
    # POST events: whether the event changed the job's status.
    event_applied: bool = False

    @property
    def fault(self) -> str | None:
        """The first fault that fired on this request, if any."""
        return self.faults[0] if self.faults else None

    @property
    def is_api(self) -> bool:
        """Whether this is a /v3 request (the ones latency, faults and in-flight counting see)."""
        return self.path.startswith("/v3/")

    @property
    def is_subscriptions_api(self) -> bool:
        """Whether this is a request of the webhook subscriptions API (/v1/subscriptions...),
        which needs a credential as /v3 does but sees no injected fault."""
        return self.path == SUBSCRIPTIONS_PATH or self.path.startswith(f"{SUBSCRIPTIONS_PATH}/")

    @property
    def is_item_update(self) -> bool:
        """Whether this is PUT /v3/export-jobs/{jobId}/items."""
        return self.method == "PUT" and _ITEMS_PATH.match(self.path) is not None

    @property
    def is_job_event(self) -> bool:
        """Whether this is POST /v3/export-job-events."""
        return self.method == "POST" and self.path == _EVENTS_PATH


@attrs.frozen
class ItemSend:
    """One occurrence of an accountingEntryId in a PUT items request."""

    seq: int
    job_id: str | None
    # The item object as the client sent it.
    body: dict[str, Any]
    committed: bool
    # Whether the response (delivered or not) listed the ID in `data`.
    acknowledged_in_data: bool
    delivered: bool
    status: int | None
    received_at: float
    answered_at: float | None


@attrs.frozen
class WebhookDelivery:
    """One attempt to deliver a job-created notification to one endpoint.

    Every attempt of one notification carries the same `webhook_id` (and `event_id`), to every
    endpoint; each attempt is signed anew, with its own `webhook-timestamp`.
    """

    # The `webhook-id` header (`msg_...`) and the body's `eventId`.
    webhook_id: str
    event_id: str
    job_id: str
    url: str
    # The subscription the endpoint belongs to; None for `FakePleo(webhook_url=...)`.
    subscription_id: str | None
    # 1 for the first attempt of this copy, 2 for its first retry, ...
    attempt: int
    # 1; 2 for the second copy the `webhook_duplicated` fault sends.
    copy: int
    # The status the endpoint answered; None when the attempt got no answer (see `error`).
    status: int | None
    # Why the attempt got no answer (a connection error or the timeout); None when it got one.
    error: str | None
    # `time.monotonic()` seconds when the request was sent and when its answer (or error) came.
    sent_at: float
    finished_at: float

    @property
    def accepted(self) -> bool:
        """Whether the endpoint answered 2xx, which ends the delivery."""
        return self.status is not None and 200 <= self.status <= 299


@attrs.frozen
class PauseWindow:
    """A Retry-After pause: no request should arrive strictly between `start` and `end`."""

    opened_by: int
    start: float
    end: float
    # The fake's number for the connection the 429 went out on.
    connection: int | None = None


def _comparable(item: dict[str, Any]) -> dict[str, Any]:
    """An item body with null fields dropped and the ID lowercased: equal means same update."""
    normalised = {key: value for key, value in item.items() if value is not None}
    entry_id = normalised.get("accountingEntryId")
    if isinstance(entry_id, str):
        normalised["accountingEntryId"] = entry_id.lower()
    return normalised


class Journal:
    """Every request the fake received, in arrival order, with helpers for assertions.

    `FakePleo` records into it; tests read it. A new `Journal()` assigned to
    `FakePleo.journal` starts an empty one (the fake records into whichever it holds).
    """

    def __init__(self) -> None:
        self._requests: list[JournalEntry] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._pause_windows: list[PauseWindow] = []
        self._applied_events: list[JournalEntry] = []
        self._webhook_deliveries: list[WebhookDelivery] = []

    def __repr__(self) -> str:
        return f"Journal(requests={len(self._requests)}, in_flight={self._in_flight})"

    @property
    def requests(self) -> list[JournalEntry]:
        """Every request received, in arrival order: `requests[n - 1].seq == n`."""
        return self._requests

    @property
    def in_flight(self) -> int:
        """How many /v3 requests are being handled now."""
        return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The most /v3 requests that were ever being handled at once."""
        return self._max_in_flight

    @property
    def pause_windows(self) -> list[PauseWindow]:
        """The Retry-After pauses asked for by delivered 429 answers, in order."""
        return self._pause_windows

    # ---- recording (by the server only) --------------------------------------------------

    def _record(
        self,
        *,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: Any,
        received_at: float,
    ) -> JournalEntry:
        """Record a new request and give it the next sequence number."""
        entry = JournalEntry(
            seq=len(self._requests) + 1,
            method=method,
            path=path,
            query=query,
            body=body,
            received_at=received_at,
        )
        self._requests.append(entry)
        return entry

    def _enter(self) -> None:
        """A /v3 request started being handled."""
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        self._idle.clear()

    def _leave(self) -> None:
        """A /v3 request finished (answered, or its connection dropped)."""
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    def _note_event_applied(self, entry: JournalEntry) -> None:
        """An event changed a job's status (kept in the order the changes happened)."""
        entry.event_applied = True
        self._applied_events.append(entry)

    def _open_pause(
        self, *, opened_by: int, start: float, end: float, connection: int | None
    ) -> None:
        """A delivered 429 asked the client to wait until `end`."""
        self._pause_windows.append(
            PauseWindow(opened_by=opened_by, start=start, end=end, connection=connection)
        )

    def _record_webhook_delivery(self, delivery: WebhookDelivery) -> None:
        """An attempt to deliver a notification ended."""
        self._webhook_deliveries.append(delivery)

    def _left_unread(self, entry: JournalEntry) -> None:
        """The client reset the connection with this answer unread: it was not delivered, and
        a pause it asked for was never seen."""
        entry.delivered = False
        self._pause_windows = [
            window for window in self._pause_windows if window.opened_by != entry.seq
        ]

    # ---- queries --------------------------------------------------------------------------

    async def wait_idle(self) -> None:
        """Wait until no /v3 request is being handled, e.g. a slow one the client gave up on."""
        await self._idle.wait()

    def entries(
        self, method: str | None = None, path_prefix: str | None = None
    ) -> list[JournalEntry]:
        """Requests with this method and path prefix (each filter optional)."""
        return [
            entry
            for entry in self._requests
            if (method is None or entry.method == method.upper())
            and (path_prefix is None or entry.path.startswith(path_prefix))
        ]

    def count(self, method: str | None = None, path_prefix: str | None = None) -> int:
        """How many requests match the method and path prefix (each filter optional)."""
        return len(self.entries(method, path_prefix))

    def puts(self, job_id: str | None = None) -> list[JournalEntry]:
        """PUT items requests, of one job or of all."""
        return [
            entry
            for entry in self._requests
            if entry.is_item_update and (job_id is None or entry.job_id == job_id.lower())
        ]

    def events(self, job_id: str | None = None) -> list[JournalEntry]:
        """POST export-job-events requests, of one job or of all."""
        return [
            entry
            for entry in self._requests
            if entry.is_job_event and (job_id is None or entry.job_id == job_id.lower())
        ]

    def _sends_by_id(self, job_id: str | None) -> dict[str, list[ItemSend]]:
        """Every PUT occurrence of every accountingEntryId, grouped by lowercase ID, in one pass."""
        sends: dict[str, list[ItemSend]] = {}
        for entry in self.puts(job_id):
            if not isinstance(entry.body, list):
                continue
            for index, item in enumerate(entry.body):
                sent_id = item.get("accountingEntryId") if isinstance(item, dict) else None
                if not isinstance(sent_id, str):
                    continue
                entry_id = sent_id.lower()
                committed = index in entry.committed_indexes
                sends.setdefault(entry_id, []).append(
                    ItemSend(
                        seq=entry.seq,
                        job_id=entry.job_id,
                        body=item,
                        committed=committed,
                        acknowledged_in_data=committed and entry_id in entry.acknowledged_ids,
                        delivered=entry.delivered,
                        status=entry.status,
                        received_at=entry.received_at,
                        answered_at=entry.answered_at,
                    )
                )
        return sends

    def item_history(self, entry_id: str, job_id: str | None = None) -> list[ItemSend]:
        """Every PUT occurrence of `entry_id`, in arrival order, whatever its answer was."""
        return self._sends_by_id(job_id).get(entry_id.lower(), [])

    def resent_after_ack(self, job_id: str | None = None) -> dict[str, int]:
        """Per accountingEntryId, how many times it was PUT again after it was acknowledged.

        A send counts when it was received after a delivered response listed the ID in `data`
        for either an identical item body, or any body with status "successful" (a successful
        item is final, so any later send of it is a duplicate). Sends that reached the fake
        before that response was written do not count: the client could not know yet. IDs never
        resent are absent, so an empty dict means no acknowledged update was sent again.
        """
        resent: dict[str, int] = {}
        for entry_id, history in self._sends_by_id(job_id).items():
            acks = [
                (send.answered_at, send.body)
                for send in history
                if send.acknowledged_in_data and send.delivered and send.answered_at is not None
            ]
            count = sum(
                1
                for send in history
                if any(
                    acked_at < send.received_at
                    and (
                        acked_body.get("status") == "successful"
                        or _comparable(acked_body) == _comparable(send.body)
                    )
                    for acked_at, acked_body in acks
                )
            )
            if count:
                resent[entry_id] = count
        return resent

    def final_events_applied(self, job_id: str | None = None) -> list[JournalEntry]:
        """Final events (completed, completed_with_errors, failed) that changed a job, in order."""
        return [
            entry
            for entry in self._applied_events
            if isinstance(entry.body, dict)
            and entry.body.get("event") in _spec.FINAL_JOB_EVENTS
            and (job_id is None or entry.job_id == job_id.lower())
        ]

    def webhook_deliveries(self, job_id: str | None = None) -> list[WebhookDelivery]:
        """Every attempt to deliver a job-created notification, of one job or of all, in the
        order the attempts ended."""
        return [
            delivery
            for delivery in self._webhook_deliveries
            if job_id is None or delivery.job_id == job_id.lower()
        ]

    def requests_during_pause(self, epsilon: float = DEFAULT_PAUSE_EPSILON) -> list[JournalEntry]:
        """/v3 requests received strictly inside a Retry-After window opened by an earlier 429.

        The window runs from the moment the 429 was written to the end of its Retry-After.
        Requests received within `epsilon` of either edge are not counted: near the start
        they may have been on their way before the client had read the 429 (a concurrent
        client cannot stop those, even on the same connection), and near the end it is clock
        and scheduling jitter. So a retry sent within `epsilon` of the 429 goes unnoticed;
        pass a smaller `epsilon` for a stricter check of a client that sends one at a time.
        """
        inside: dict[int, JournalEntry] = {}
        for window in self._pause_windows:
            for entry in self._requests:
                if (
                    entry.is_api
                    and entry.seq != window.opened_by
                    and window.start + epsilon < entry.received_at < window.end - epsilon
                ):
                    inside[entry.seq] = entry
        return [inside[seq] for seq in sorted(inside)]


@attrs.frozen
class JobSummary:
    """What the journal holds about one job: the figures `GET /_fake/journal` and the shell
    fake's closing table show."""

    job_id: str
    status: str
    requests: int
    items_sent: int
    acknowledged: int
    resent_after_ack: dict[str, int]
    final_events: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The figures as JSON, keyed as `GET /_fake/journal` shows them (the job ID apart)."""
        return {
            "status": self.status,
            "requests": self.requests,
            "items_sent": self.items_sent,
            "acknowledged": self.acknowledged,
            "resent_after_ack": self.resent_after_ack,
            "final_events": list(self.final_events),
        }


def summarise(journal: Journal, statuses: Mapping[str, str]) -> list[JobSummary]:
    """One summary per job of `statuses` (job ID to the job's status now), in that order."""
    requests: dict[str, int] = {}
    items_sent: dict[str, int] = {}
    acknowledged: dict[str, set[str]] = {}
    for entry in journal.requests:
        if entry.job_id is None:
            continue
        requests[entry.job_id] = requests.get(entry.job_id, 0) + 1
        if entry.is_item_update and isinstance(entry.body, list):
            items_sent[entry.job_id] = items_sent.get(entry.job_id, 0) + len(entry.body)
            if entry.delivered:
                acknowledged.setdefault(entry.job_id, set()).update(entry.acknowledged_ids)
    return [
        JobSummary(
            job_id=job_id,
            status=status,
            requests=requests.get(job_id, 0),
            items_sent=items_sent.get(job_id, 0),
            acknowledged=len(acknowledged.get(job_id, ())),
            resent_after_ack=journal.resent_after_ack(job_id),
            final_events=tuple(
                str(entry.body["event"]) for entry in journal.final_events_applied(job_id)
            ),
        )
        for job_id, status in statuses.items()
    ]


def journal_document(journal: Journal, statuses: Mapping[str, str]) -> dict[str, Any]:
    """The journal as the JSON document of `GET /_fake/journal`: every request the fake
    received (its own `/_fake/` requests left out), a summary per job, then every attempt to
    deliver a notification."""
    return {
        "requests": [
            _request_document(entry)
            for entry in journal.requests
            if not entry.path.startswith(FAKE_PATH_PREFIX)
        ],
        "jobs": {summary.job_id: summary.to_json() for summary in summarise(journal, statuses)},
        "webhook_deliveries": [
            _webhook_delivery_document(delivery) for delivery in journal.webhook_deliveries()
        ],
    }


def _webhook_delivery_document(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "webhook_id": delivery.webhook_id,
        "event_id": delivery.event_id,
        "job_id": delivery.job_id,
        "url": delivery.url,
        "subscription_id": delivery.subscription_id,
        "attempt": delivery.attempt,
        "copy": delivery.copy,
        "status": delivery.status,
        "error": delivery.error,
    }


def _request_document(entry: JournalEntry) -> dict[str, Any]:
    document: dict[str, Any] = {
        "seq": entry.seq,
        "method": entry.method,
        "path": entry.path,
        "job_id": entry.job_id,
        "status": entry.status,
        "delivered": entry.delivered,
        "faults": list(entry.faults),
    }
    if entry.is_item_update:
        sent = entry.body if isinstance(entry.body, list) else []
        document["items_sent"] = [
            item.get("accountingEntryId") for item in sent if isinstance(item, dict)
        ]
        document["acknowledged"] = sorted(entry.acknowledged_ids)
        document["rejected"] = dict(entry.rejected)
    elif entry.is_job_event and isinstance(entry.body, dict):
        document["event"] = entry.body.get("event")
        document["event_applied"] = entry.event_applied
    return document
