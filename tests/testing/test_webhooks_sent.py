"""The fake's webhooks (issue 20): a signed job-created notification for every job created
`pending`, retried as Standard Webhooks suggests, the faults that lose or repeat one, the
subscriptions API (`/v1/subscriptions`), and the shell fake's `--webhook-url`.

Every notification goes to a real aiohttp server on loopback, run by the test.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import aiohttp
import attrs
import pytest
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from pleo_export_async.testing import FakePleo, Faults, FaultSpec, WebhookDelivery

from .helpers import UNKNOWN_ID, call, session_for

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
JOB_CREATED: Final = "v1.export-job.created"
# Long enough for a child process to start and for a delivery on a loaded machine; a test that
# passes never waits for it.
PATIENCE_SECONDS: Final = 30.0
# Retries in these tests wait next to nothing: what is checked is how many, never how long.
QUICK_RETRIES: Final[dict[str, Any]] = {"webhook_retry_delay": 0.001}
# A secret of the Standard Webhooks format, for the tests that pass one in.
GIVEN_SECRET: Final = "whsec_" + base64.b64encode(b"twenty-four bytes of key").decode()
#: Host settings that would change what the shell fake shows.
HOST_SETTINGS: Final = ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")


@attrs.frozen
class Received:
    """One notification as the receiver got it: the raw body, the headers lowercased."""

    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def document(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A webhook endpoint on loopback: it records every POST, answers each path with the statuses
    scripted for it (200 once the script runs out), and holds the answer to a `hang` path until
    the test ends."""

    def __init__(self) -> None:
        self.base_url = ""
        self.received: list[Received] = []
        self._scripts: dict[str, list[int]] = {}
        self._hanging: set[str] = set()
        self._release = asyncio.Event()
        self._arrived = asyncio.Condition()

    def url(self, path: str = "/hooks") -> str:
        return self.base_url + path

    def answer(self, path: str, *statuses: int) -> None:
        """Answer the next POSTs to `path` with these statuses, in order."""
        self._scripts[path] = list(statuses)

    def hang(self, path: str) -> None:
        """Answer no POST to `path` until the test ends."""
        self._hanging.add(path)

    def at(self, path: str = "/hooks") -> list[Received]:
        return [notification for notification in self.received if notification.path == path]

    def release(self) -> None:
        self._release.set()

    async def wait_for(self, count: int) -> None:
        """Wait until `count` notifications have arrived; fail after PATIENCE_SECONDS."""
        async with asyncio.timeout(PATIENCE_SECONDS), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {name.lower(): value for name, value in request.headers.items()}
        async with self._arrived:
            self.received.append(Received(request.path, headers, body))
            self._arrived.notify_all()
        if request.path in self._hanging:
            await self._release.wait()
        script = self._scripts.get(request.path)
        return web.Response(status=script.pop(0) if script else 200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A running `Receiver` on 127.0.0.1 and a free port."""
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/{path:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    receiver.base_url = f"http://{host}:{port}"
    yield receiver
    receiver.release()
    await runner.cleanup()


async def journal_listing(session: aiohttp.ClientSession, deliveries: int) -> Any:
    """`GET /_fake/journal` once it lists this many webhook deliveries (an attempt is listed
    when its answer is in, a moment after the receiver has the notification)."""
    async with asyncio.timeout(PATIENCE_SECONDS):
        while True:
            status, journal = await call(session, "GET", "/_fake/journal")
            assert status == 200
            if len(journal["webhook_deliveries"]) >= deliveries:
                return journal
            await asyncio.sleep(0.01)


async def settled(fake: FakePleo) -> None:
    """Wait until the fake sends nothing more (bounded, so that a hang fails the test)."""
    async with asyncio.timeout(PATIENCE_SECONDS):
        await fake.wait_webhooks_idle()


def verified(secret: str, notification: Received) -> Any:
    """The notification's body, once its signature verifies with `secret`."""
    return Webhook(secret).verify(notification.body, notification.headers)


async def create_through_the_api(fake: FakePleo, company_id: str | None = None) -> dict[str, Any]:
    """POST /v3/export-jobs with two entries; the new job as the 201 answer shows it."""
    body = {
        "companyId": company_id or fake.company_id,
        "accountingEntryIds": [str(uuid.uuid4()), str(uuid.uuid4())],
    }
    async with session_for(fake) as session:
        status, answer = await call(session, "POST", "/v3/export-jobs", json=body)
    assert status == 201, answer
    job: dict[str, Any] = answer["data"]
    return job


def statuses(deliveries: list[WebhookDelivery]) -> list[int | None]:
    return [delivery.status for delivery in deliveries]


# ---- one notification per job created ----------------------------------------------------


async def test_a_job_created_through_the_api_is_announced_once_signed_with_its_payload(
    receiver: Receiver,
) -> None:
    """POST /v3/export-jobs makes one notification, signed with the fake's secret, whose body is
    `{data, eventId, eventType}` with `data` the job as GET /v3/export-jobs/{id} shows it."""
    async with FakePleo(webhook_url=receiver.url()) as fake:
        job = await create_through_the_api(fake)
        await settled(fake)
        assert job == fake.job_payload(job["id"])
    [notification] = receiver.received
    assert verified(fake.webhook_secret, notification) == {
        "data": job,
        "eventId": notification.document["eventId"],
        "eventType": JOB_CREATED,
    }
    assert set(notification.document) == {"data", "eventId", "eventType"}
    assert notification.headers["webhook-id"].startswith("msg_")
    assert notification.headers["webhook-timestamp"].isdigit()
    assert notification.headers["webhook-signature"].startswith("v1,")
    [delivery] = fake.journal.webhook_deliveries(job["id"])
    assert (delivery.webhook_id, delivery.event_id) == (
        notification.headers["webhook-id"],
        notification.document["eventId"],
    )
    assert (delivery.url, delivery.subscription_id, delivery.attempt, delivery.copy) == (
        receiver.url(),
        None,
        1,
        1,
    )
    assert (delivery.status, delivery.error, delivery.accepted) == (200, None, True)
    assert delivery.sent_at <= delivery.finished_at


async def test_create_job_announces_a_pending_job_and_no_other(receiver: Receiver) -> None:
    """`create_job` with status `pending` makes one notification of the job's payload, signed
    with the secret given; a job created `in_progress` makes none."""
    async with FakePleo(webhook_url=receiver.url(), webhook_secret=GIVEN_SECRET) as fake:
        pending = fake.create_job(items=3, status="pending")
        fake.create_job(items=3, status="in_progress")
        await settled(fake)
        payload = fake.job_payload(pending.id)
    assert fake.webhook_secret == GIVEN_SECRET
    [notification] = receiver.received
    assert verified(GIVEN_SECRET, notification)["data"] == payload
    assert payload["status"] == "pending"
    assert [delivery.job_id for delivery in fake.journal.webhook_deliveries()] == [pending.id]


async def test_jobs_created_before_start_are_announced_once_the_fake_runs(
    receiver: Receiver,
) -> None:
    """Jobs created on a fake not yet started are announced when it starts, one notification
    each, each with a webhook-id and an eventId of its own."""
    fake = FakePleo(webhook_url=receiver.url())
    jobs = [fake.create_job(items=1, status="pending") for _ in range(2)]
    async with fake:
        await settled(fake)
    documents = [verified(fake.webhook_secret, notification) for notification in receiver.received]
    assert sorted(document["data"]["id"] for document in documents) == sorted(j.id for j in jobs)
    assert len({n.headers["webhook-id"] for n in receiver.received}) == 2
    assert len({document["eventId"] for document in documents}) == 2


async def test_the_request_that_creates_a_job_does_not_wait_for_its_notification(
    receiver: Receiver,
) -> None:
    """POST /v3/export-jobs is answered while its notification is still unanswered."""
    receiver.hang("/hooks")
    async with FakePleo(webhook_url=receiver.url()) as fake:
        job = await create_through_the_api(fake)
        await receiver.wait_for(1)
        assert fake.journal.webhook_deliveries() == []
        assert receiver.received[0].document["data"]["id"] == job["id"]


async def test_a_secret_the_fake_makes_is_24_random_bytes_and_never_in_its_repr() -> None:
    """Without `webhook_secret` the fake makes a `whsec_` secret of 24 random bytes, a new one
    per fake; neither the fake's repr nor its journal's shows it."""
    first, second = FakePleo(webhook_url="http://127.0.0.1:9/"), FakePleo()
    assert first.webhook_secret.startswith("whsec_")
    assert len(base64.b64decode(first.webhook_secret.removeprefix("whsec_"))) == 24
    assert first.webhook_secret != second.webhook_secret
    assert first.webhook_secret not in repr(first) + repr(first.journal)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"webhook_secret": "not-a-secret"}, "webhook_secret"),
        ({"webhook_secret": "whsec_***"}, "webhook_secret"),
        ({"webhook_url": "ftp://example.com/hooks"}, "webhook_url"),
        ({"webhook_attempts": 0}, "webhook_attempts"),
        ({"webhook_retry_delay": -1.0}, "webhook_retry_delay"),
    ],
)
def test_bad_webhook_options_are_refused_by_name(options: dict[str, Any], named: str) -> None:
    """A malformed secret or URL, no attempt at all or a negative delay is a ValueError that
    names the option and never shows the secret."""
    with pytest.raises(ValueError, match=named) as refused:
        FakePleo(**options)
    assert "***" not in str(refused.value)
    assert "not-a-secret" not in str(refused.value)


# ---- retries ------------------------------------------------------------------------------


async def test_an_endpoint_answering_500_twice_then_200_gets_three_attempts_of_one_id(
    receiver: Receiver,
) -> None:
    """A 500 is retried: three attempts in all, each with the same webhook-id and a signature
    that verifies, and the journal shows 500, 500, 200."""
    receiver.answer("/hooks", 500, 500, 200)
    async with FakePleo(webhook_url=receiver.url(), **QUICK_RETRIES) as fake:
        job = fake.create_job(status="pending")
        await settled(fake)
    assert len(receiver.received) == 3
    assert len({notification.headers["webhook-id"] for notification in receiver.received}) == 1
    assert len({notification.body for notification in receiver.received}) == 1
    for notification in receiver.received:
        verified(fake.webhook_secret, notification)
    deliveries = fake.journal.webhook_deliveries(job.id)
    assert statuses(deliveries) == [500, 500, 200]
    assert [delivery.attempt for delivery in deliveries] == [1, 2, 3]
    assert [delivery.accepted for delivery in deliveries] == [False, False, True]


async def test_410_gone_stops_the_retries(receiver: Receiver) -> None:
    """An endpoint that answers 410 Gone gets no second attempt."""
    receiver.answer("/hooks", 410, 200)
    async with FakePleo(webhook_url=receiver.url(), **QUICK_RETRIES) as fake:
        fake.create_job(status="pending")
        await settled(fake)
    assert len(receiver.received) == 1
    assert statuses(fake.journal.webhook_deliveries()) == [410]


async def test_an_endpoint_that_keeps_failing_gets_webhook_attempts_attempts(
    receiver: Receiver,
) -> None:
    """An endpoint that answers 503 (or redirects, which counts as a failure) every time gets
    `webhook_attempts` attempts, then the fake gives up."""
    receiver.answer("/hooks", 503, 503, 302, 503)
    async with FakePleo(webhook_url=receiver.url(), webhook_attempts=3, **QUICK_RETRIES) as fake:
        fake.create_job(status="pending")
        await settled(fake)
    assert statuses(fake.journal.webhook_deliveries()) == [503, 503, 302]
    assert len(receiver.received) == 3


async def test_a_connection_error_is_retried_and_journaled() -> None:
    """An endpoint nobody listens on gets every attempt, each journaled with its error and no
    status."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{closed_port}/hooks"
    async with FakePleo(webhook_url=url, webhook_attempts=2, **QUICK_RETRIES) as fake:
        fake.create_job(status="pending")
        await settled(fake)
    deliveries = fake.journal.webhook_deliveries()
    assert statuses(deliveries) == [None, None]
    assert all(delivery.error for delivery in deliveries)
    assert [delivery.accepted for delivery in deliveries] == [False, False]


# ---- faults -------------------------------------------------------------------------------


async def test_webhook_dropped_sends_nothing_for_that_notification(receiver: Receiver) -> None:
    """`webhook_dropped` at notification 1 loses the first job's notification, not the
    second's."""
    faults = Faults(webhook_dropped=FaultSpec(at={1}))
    async with FakePleo(webhook_url=receiver.url(), faults=faults) as fake:
        dropped = fake.create_job(status="pending")
        sent = fake.create_job(status="pending")
        await settled(fake)
    assert [n.document["data"]["id"] for n in receiver.received] == [sent.id]
    assert fake.journal.webhook_deliveries(dropped.id) == []


async def test_webhook_duplicated_sends_the_notification_twice_with_one_id(
    receiver: Receiver,
) -> None:
    """`webhook_duplicated` sends the notification twice: the same webhook-id and body, each
    signed, journaled as copies 1 and 2."""
    faults = Faults(webhook_duplicated=FaultSpec(probability=1.0))
    async with FakePleo(webhook_url=receiver.url(), faults=faults) as fake:
        job = fake.create_job(status="pending")
        await settled(fake)
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert verified(fake.webhook_secret, first) == verified(fake.webhook_secret, second)
    deliveries = fake.journal.webhook_deliveries(job.id)
    assert sorted(delivery.copy for delivery in deliveries) == [1, 2]
    assert {delivery.webhook_id for delivery in deliveries} == {first.headers["webhook-id"]}


# ---- the subscriptions API ----------------------------------------------------------------


async def test_a_subscription_is_created_read_listed_and_deleted(fake_pleo: FakePleo) -> None:
    """POST answers 200 with the SubscriptionModel; GET by ID returns it; the list shows it;
    its secret is `whsec_` and 24 bytes; DELETE answers 204, and then GET is 404."""
    request = {"endpointUrl": "https://example.com/webhook", "eventTypes": [JOB_CREATED]}
    async with session_for(fake_pleo) as session:
        status, created = await call(session, "POST", "/v1/subscriptions", json=request)
        assert status == 200, created
        subscription = created["data"]
        assert set(subscription) == {
            "id",
            "createdAt",
            "updatedAt",
            "endpointUrl",
            "eventTypes",
            "status",
        }
        assert subscription["endpointUrl"] == "https://example.com/webhook"
        assert (subscription["eventTypes"], subscription["status"]) == ([JOB_CREATED], "ACTIVE")
        path = f"/v1/subscriptions/{subscription['id']}"
        assert await call(session, "GET", path) == (200, created)
        status, listing = await call(session, "GET", "/v1/subscriptions")
        assert status == 200
        assert listing["data"] == [subscription]
        assert listing["pagination"]["hasNextPage"] is False
        status, secret = await call(session, "GET", f"{path}/secret")
        assert status == 200
        secret_key = secret["data"]["secretKey"]
        assert len(base64.b64decode(secret_key.removeprefix("whsec_"))) == 24
        assert secret_key.startswith("whsec_")
        assert secret_key != fake_pleo.webhook_secret
        assert await call(session, "DELETE", path) == (204, None)
        for gone in (path, f"{path}/secret"):
            status, body = await call(session, "GET", gone)
            assert (status, body["type"]) == (404, "NOT_FOUND")
        assert (await call(session, "DELETE", path))[0] == 404
        assert (await call(session, "GET", "/v1/subscriptions"))[1]["data"] == []


async def test_a_subscription_is_replaced_with_put(fake_pleo: FakePleo) -> None:
    """PUT replaces every setting with the body's (status INACTIVE here) and keeps the ID and
    the secret; an unknown ID is 404."""
    request = {"endpointUrl": "https://example.com/a", "eventTypes": [JOB_CREATED]}
    async with session_for(fake_pleo) as session:
        _, created = await call(session, "POST", "/v1/subscriptions", json=request)
        path = f"/v1/subscriptions/{created['data']['id']}"
        _, secret_before = await call(session, "GET", f"{path}/secret")
        replacement = {**request, "endpointUrl": "https://example.com/b", "status": "INACTIVE"}
        status, replaced = await call(session, "PUT", path, json=replacement)
        assert status == 200, replaced
        assert replaced["data"]["id"] == created["data"]["id"]
        assert (replaced["data"]["endpointUrl"], replaced["data"]["status"]) == (
            "https://example.com/b",
            "INACTIVE",
        )
        assert await call(session, "GET", f"{path}/secret") == (200, secret_before)
        status, _ = await call(session, "PUT", f"/v1/subscriptions/{UNKNOWN_ID}", json=request)
        assert status == 404


async def test_the_subscription_list_pages_and_filters(fake_pleo: FakePleo) -> None:
    """GET /v1/subscriptions pages with cursors, oldest first, and filters by `status` and by
    any of the repeated `event_types`."""
    requests = [
        {"endpointUrl": "https://example.com/1", "eventTypes": [JOB_CREATED]},
        {"endpointUrl": "https://example.com/2", "eventTypes": ["v1.vendor.created"]},
        {"endpointUrl": "https://example.com/3", "eventTypes": [JOB_CREATED], "status": "INACTIVE"},
    ]
    async with session_for(fake_pleo) as session:
        ids = []
        for request in requests:
            _, created = await call(session, "POST", "/v1/subscriptions", json=request)
            ids.append(created["data"]["id"])
        _, first = await call(session, "GET", "/v1/subscriptions", params={"limit": "2"})
        assert [s["id"] for s in first["data"]] == ids[:2]
        assert first["pagination"]["hasNextPage"] is True
        after = {"limit": "2", "after": first["pagination"]["endCursor"]}
        _, second = await call(session, "GET", "/v1/subscriptions", params=after)
        assert [s["id"] for s in second["data"]] == ids[2:]
        assert second["pagination"]["hasNextPage"] is False

        async def listed(params: list[tuple[str, str]]) -> list[str]:
            status, page = await call(session, "GET", "/v1/subscriptions", params=params)
            assert status == 200, page
            return [subscription["id"] for subscription in page["data"]]

        assert await listed([("status", "INACTIVE")]) == [ids[2]]
        assert await listed([("event_types", JOB_CREATED)]) == [ids[0], ids[2]]
        both = [("event_types", JOB_CREATED), ("event_types", "v1.vendor.created")]
        assert await listed(both) == ids
        assert await listed([("status", "ACTIVE"), ("event_types", JOB_CREATED)]) == [ids[0]]
        status, refused = await call(session, "GET", "/v1/subscriptions", params={"status": "on"})
        assert (status, refused["type"]) == (400, "BAD_REQUEST")


@pytest.mark.parametrize(
    ("request_body", "named"),
    [
        ({"eventTypes": [JOB_CREATED]}, "endpointUrl"),
        ({"endpointUrl": "https://example.com/webhook"}, "eventTypes"),
        ({"endpointUrl": "example.com/webhook", "eventTypes": [JOB_CREATED]}, "endpointUrl"),
        ({"endpointUrl": "https://example.com/webhook", "eventTypes": []}, "eventTypes"),
        (
            {"endpointUrl": "https://example.com/webhook", "eventTypes": [JOB_CREATED] * 2},
            "eventTypes",
        ),
        (
            {
                "endpointUrl": "https://example.com/webhook",
                "eventTypes": [JOB_CREATED],
                "status": "ON",
            },
            "status",
        ),
        (
            {
                "endpointUrl": "https://example.com/webhook",
                "eventTypes": [JOB_CREATED],
                "endpointAuth": {"type": "BASIC"},
            },
            "endpointAuth.credentials.username",
        ),
        (
            {
                "endpointUrl": "https://example.com/webhook",
                "eventTypes": [JOB_CREATED],
                "customHeaders": {"webhook-signature": "v1,forged"},
            },
            "customHeaders",
        ),
        ({"endpointUrl": "https://example.com/webhook", "eventType": [JOB_CREATED]}, "eventType"),
        ("not an object", "body"),
    ],
)
async def test_a_bad_subscription_request_is_400_naming_the_field(
    fake_pleo: FakePleo, request_body: Any, named: str
) -> None:
    """A SubscriptionRequest that breaks the spec gets 400 BAD_REQUEST naming the field, and
    creates nothing."""
    async with session_for(fake_pleo) as session:
        status, body = await call(session, "POST", "/v1/subscriptions", json=request_body)
        assert status == 400
        assert body["type"] == "BAD_REQUEST"
        assert body["message"].startswith(named), body
        assert (await call(session, "GET", "/v1/subscriptions"))[1]["data"] == []


async def test_the_subscriptions_api_needs_the_fakes_credentials(fake_pleo: FakePleo) -> None:
    """Without a credential every subscriptions route answers 401 UNAUTHORIZED; a malformed ID
    is 400."""
    async with aiohttp.ClientSession(fake_pleo.base_url) as anonymous:
        for method, path in [
            ("GET", "/v1/subscriptions"),
            ("POST", "/v1/subscriptions"),
            ("GET", f"/v1/subscriptions/{UNKNOWN_ID}"),
            ("DELETE", f"/v1/subscriptions/{UNKNOWN_ID}"),
            ("GET", f"/v1/subscriptions/{UNKNOWN_ID}/secret"),
        ]:
            status, body = await call(anonymous, method, path)
            assert (status, body["type"]) == (401, "UNAUTHORIZED"), path
    async with session_for(fake_pleo) as session:
        status, body = await call(session, "GET", "/v1/subscriptions/not-a-uuid")
        assert (status, body["type"]) == (400, "BAD_REQUEST")


async def test_the_journal_keeps_no_endpoint_credentials(fake_pleo: FakePleo) -> None:
    """The journal records a subscription request with its endpointAuth credentials redacted."""
    request = {
        "endpointUrl": "https://example.com/webhook",
        "eventTypes": [JOB_CREATED],
        "endpointAuth": {"type": "BASIC", "credentials": {"username": "u", "password": "hunter2"}},
    }
    async with session_for(fake_pleo) as session:
        status, _ = await call(session, "POST", "/v1/subscriptions", json=request)
    assert status == 200
    [entry] = fake_pleo.journal.entries("POST", "/v1/subscriptions")
    assert "hunter2" not in json.dumps(entry.body)
    assert entry.body["endpointAuth"]["credentials"] == {
        "username": "<redacted>",
        "password": "<redacted>",
    }


async def test_subscribed_endpoints_get_notifications_signed_with_their_own_secret(
    receiver: Receiver,
) -> None:
    """Each active subscription to the job-created event (either spelling) gets the notification,
    signed with its own secret, with its customHeaders and Basic credentials; the constructor's
    URL gets it with the fake's secret; an inactive subscription, one to another event, and a
    deleted one get nothing."""

    def subscription(path: str, **extra: Any) -> dict[str, Any]:
        return {"endpointUrl": receiver.url(path), "eventTypes": [JOB_CREATED], **extra}

    requests = {
        "/subscribed": subscription(
            "/subscribed",
            customHeaders={"X-Api-Key": "shared-value"},
            endpointAuth={"type": "BASIC", "credentials": {"username": "u", "password": "p"}},
        ),
        "/alias": subscription("/alias", eventTypes=["v1.export.job-created"]),
        "/inactive": subscription("/inactive", status="INACTIVE"),
        "/vendors": subscription("/vendors", eventTypes=["v1.vendor.created"]),
        "/deleted": subscription("/deleted"),
    }
    async with FakePleo(webhook_url=receiver.url()) as fake, session_for(fake) as session:
        secrets = {}
        for path, request in requests.items():
            status, created = await call(session, "POST", "/v1/subscriptions", json=request)
            assert status == 200, created
            subscription_path = f"/v1/subscriptions/{created['data']['id']}"
            _, secret = await call(session, "GET", f"{subscription_path}/secret")
            secrets[path] = (created["data"]["id"], secret["data"]["secretKey"])
            if path == "/deleted":
                assert (await call(session, "DELETE", subscription_path))[0] == 204
        job = await create_through_the_api(fake)
        await settled(fake)
    assert sorted(n.path for n in receiver.received) == ["/alias", "/hooks", "/subscribed"]
    [own] = receiver.at("/hooks")
    assert verified(fake.webhook_secret, own)["data"] == job
    for path in ("/subscribed", "/alias"):
        [notification] = receiver.at(path)
        assert verified(secrets[path][1], notification)["data"] == job
        assert notification.headers["webhook-id"] == own.headers["webhook-id"]
        with pytest.raises(WebhookVerificationError):
            verified(fake.webhook_secret, notification)
    [subscribed] = receiver.at("/subscribed")
    assert subscribed.headers["x-api-key"] == "shared-value"
    assert subscribed.headers["authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
    by_url = {delivery.url: delivery for delivery in fake.journal.webhook_deliveries(job["id"])}
    assert by_url[receiver.url("/subscribed")].subscription_id == secrets["/subscribed"][0]
    assert by_url[receiver.url("/hooks")].subscription_id is None


# ---- stopping -----------------------------------------------------------------------------


def delivery_tasks() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task.get_name().startswith("pleo-fake-webhook")]


async def test_stopping_the_fake_cancels_deliveries_and_leaves_no_task(
    receiver: Receiver,
) -> None:
    """Closing the fake while a notification is still unanswered ends its delivery: no delivery
    task is left, and nothing more is sent."""
    receiver.hang("/hooks")
    async with FakePleo(webhook_url=receiver.url()) as fake:
        fake.create_job(status="pending")
        await receiver.wait_for(1)
        assert len(delivery_tasks()) == 1
    assert delivery_tasks() == []
    await fake.wait_webhooks_idle()
    assert len(receiver.received) == 1
    assert fake.journal.webhook_deliveries() == []


# ---- the shell fake -----------------------------------------------------------------------


def child_environment(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in HOST_SETTINGS}
    env.pop("PLEO_WEBHOOK_SECRET", None)
    return {**env, "PYTHONPATH": str(REPO_ROOT), **extra}


@pytest.mark.parametrize("secret_from", ["flag", "environment"])
async def test_the_shell_fake_with_webhook_url_delivers_signed_notifications(
    receiver: Receiver, secret_from: str
) -> None:
    """`python -m pleo_export_async.testing --webhook-url URL` announces `webhook_url=URL`,
    sends a notification for the job it creates and for one created through POST
    /v3/export-jobs, signed with the secret of `--webhook-secret` or PLEO_WEBHOOK_SECRET, which
    it never prints; `GET /_fake/journal` lists the deliveries."""
    flags = ["--port", "0", "--jobs", "1", "--items", "2", "--webhook-url", receiver.url()]
    env = child_environment()
    if secret_from == "flag":
        flags += ["--webhook-secret", GIVEN_SECRET]
    else:
        env["PLEO_WEBHOOK_SECRET"] = GIVEN_SECRET
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pleo_export_async.testing",
        *flags,
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        announced: dict[str, list[str]] = {}
        async with asyncio.timeout(PATIENCE_SECONDS):
            while (line := (await process.stdout.readline()).decode().rstrip("\n")) != "ready":
                assert line, "the shell fake ended before `ready`"
                key, _, value = line.partition("=")
                announced.setdefault(key, []).append(value)
        assert announced["webhook_url"] == [receiver.url()]
        [base_url], [api_key], [job_id] = (announced[k] for k in ("base_url", "api_key", "job_id"))
        credential = base64.b64encode(f"{api_key}:".encode()).decode()
        async with aiohttp.ClientSession(
            base_url, headers={"Authorization": f"Basic {credential}"}
        ) as session:
            body = {"companyId": UNKNOWN_ID, "accountingEntryIds": [UNKNOWN_ID]}
            status, created = await call(session, "POST", "/v3/export-jobs", json=body)
            assert status == 201, created
            await receiver.wait_for(2)
            journal = await journal_listing(session, deliveries=2)
        announced_jobs = sorted(verified(GIVEN_SECRET, n)["data"]["id"] for n in receiver.received)
        assert announced_jobs == sorted([job_id, created["data"]["id"]])
        deliveries = journal["webhook_deliveries"]
        assert sorted((d["job_id"], d["status"], d["url"]) for d in deliveries) == sorted(
            (job, 200, receiver.url()) for job in announced_jobs
        )
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(PATIENCE_SECONDS):
            out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        assert GIVEN_SECRET not in out.decode() + err.decode()
        assert GIVEN_SECRET.removeprefix("whsec_") not in out.decode() + err.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
