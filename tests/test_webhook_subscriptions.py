"""`client.webhook_subscriptions` against FakePleo over real TCP: the subscriptions API's round
trip, its pages and filters, the checks made before any request, Pleo's refusals, and a secret
that shows nowhere. What FakePleo cannot do (a lost answer, an odd body) is played by a small
aiohttp server of the test's own."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web

from helpers import client_for, wait_until
from pleo_export_async import (
    ApiError,
    ApiKeyAuth,
    AuthenticationError,
    InvalidInput,
    JobNotFound,
    PleoExportClient,
    RetryPolicy,
    UnexpectedResponse,
    WebhookSubscription,
)
from pleo_export_async._serve._notifications import NotificationCheck
from pleo_export_async.testing import FakePleo

pytestmark = pytest.mark.usefixtures("instant")

ENDPOINT = "https://connector.example.com/pleo/webhooks"
JOB_CREATED = "v1.export-job.created"
VENDOR_CREATED = "v1.vendor.created"
UNKNOWN_ID = str(uuid.UUID(int=99))
#: Pleo's reference example of a SubscriptionResponse, as its docs show it: `eventTypes` one
#: string, `endpointAuth` with the password echoed, fields the model does not keep.
REFERENCE_EXAMPLE = {
    "data": {
        "createdAt": "2022-01-01T00:00:00Z",
        "customHeaders": {"user": "pass"},
        "deletedAt": "2022-01-01T00:00:00Z",
        "deletedBy": "urn:pleo:organisation:12345678-1234-1234-1234-123456789012",
        "endpointAuth": {
            "credentials": {"password": "echoed-password", "token": "echoed-token"},
            "type": "NONE",
        },
        "endpointUrl": "https://example.com/webhook",
        "eventTypes": JOB_CREATED,
        "id": "123e4567-e89b-12d3-a456-426614174000",
        "status": "ACTIVE",
        "updatedAt": "2022-01-10T00:00:00Z",
    }
}

Route = tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]


def basic_authorization(api_key: str) -> str:
    """The Authorization header of an API key: HTTP Basic, the key as the user, no password."""
    return "Basic " + base64.b64encode(f"{api_key}:".encode()).decode("ascii")


def subscription_requests(fake: FakePleo) -> list[tuple[str, str]]:
    """The method and path of each request the fake had of the subscriptions API."""
    return [
        (entry.method, entry.path)
        for entry in fake.journal.requests
        if entry.path.startswith("/v1/subscriptions")
    ]


@contextlib.asynccontextmanager
async def stand_in(*routes: Route) -> AsyncIterator[PleoExportClient]:
    """A client of an aiohttp server on loopback that answers with `routes`, retrying at once."""
    app = web.Application()
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        client = PleoExportClient(
            f"http://127.0.0.1:{runner.addresses[0][1]}",
            auth=ApiKeyAuth("stand-in-key"),
            retry=RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.01),
        )
        async with client:
            yield client
    finally:
        await runner.cleanup()


def answers(*responses: tuple[int, Any]) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler giving these (status, JSON body or None) answers in turn, the last one after."""
    remaining = list(responses)

    async def handle(request: web.Request) -> web.Response:
        status, body = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        if body is None:
            return web.Response(status=status)
        return web.json_response(body, status=status)

    return handle


# -- the round trip --------------------------------------------------------------------------------


async def test_a_subscription_goes_through_create_get_list_secret_and_delete(
    fake: FakePleo,
) -> None:
    """Created, it reads back the same by get and list, has a whsec_ secret, and once deleted
    is gone from the list and a 404 to get."""
    async with client_for(fake) as client:
        subscriptions = client.webhook_subscriptions
        created = await subscriptions.create(ENDPOINT)
        assert isinstance(created, WebhookSubscription)
        assert (created.endpoint_url, created.event_types, created.status) == (
            ENDPOINT,
            (JOB_CREATED,),
            "ACTIVE",
        )
        assert uuid.UUID(created.id)
        assert created.created_at.utcoffset() is not None
        assert created.updated_at >= created.created_at
        assert await subscriptions.get(created.id) == created
        assert [found async for found in subscriptions.list()] == [created]
        secret = await subscriptions.secret(created.id)
        assert secret.startswith("whsec_")
        await subscriptions.delete(created.id)
        assert [found async for found in subscriptions.list()] == []
        with pytest.raises(ApiError) as raised:
            await subscriptions.get(created.id)
    assert raised.value.status == 404
    assert subscription_requests(fake) == [
        ("POST", "/v1/subscriptions"),
        ("GET", f"/v1/subscriptions/{created.id}"),
        ("GET", "/v1/subscriptions"),
        ("GET", f"/v1/subscriptions/{created.id}/secret"),
        ("DELETE", f"/v1/subscriptions/{created.id}"),
        ("GET", "/v1/subscriptions"),
        ("GET", f"/v1/subscriptions/{created.id}"),
    ]


async def test_create_sends_the_subscription_request_pleo_documents(fake: FakePleo) -> None:
    """The POST body is a SubscriptionRequest in camelCase, with the event types and status
    given (the fake in strict mode refuses any field it does not know)."""
    async with client_for(fake) as client:
        created = await client.webhook_subscriptions.create(
            "http://127.0.0.1:8080/hooks",
            event_types=[JOB_CREATED, VENDOR_CREATED],
            status="INACTIVE",
        )
    [entry] = fake.journal.requests
    assert entry.body == {
        "endpointUrl": "http://127.0.0.1:8080/hooks",
        "eventTypes": [JOB_CREATED, VENDOR_CREATED],
        "status": "INACTIVE",
    }
    assert (created.event_types, created.status) == ((JOB_CREATED, VENDOR_CREATED), "INACTIVE")


async def test_the_secret_verifies_the_notifications_pleo_sends(fake: FakePleo) -> None:
    """A job created after subscribing is announced to the endpoint, signed with the secret
    `secret()` reads: the connector's own check verifies it."""
    received: list[tuple[dict[str, str], bytes]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/webhooks", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with client_for(fake) as client:
            subscriptions = client.webhook_subscriptions
            created = await subscriptions.create(
                f"http://127.0.0.1:{runner.addresses[0][1]}/webhooks"
            )
            check = NotificationCheck(await subscriptions.secret(created.id))
        job = fake.create_job(items=1, status="pending")
        await fake.wait_webhooks_idle()
        await wait_until(lambda: len(received) == 1)
    finally:
        await runner.cleanup()
    [(headers, body)] = received
    notification = check.check(headers, body)
    assert notification.announces_a_job
    assert json.loads(body)["data"]["id"] == job.id


# -- pages and filters -----------------------------------------------------------------------------


async def test_list_reads_every_page_in_creation_order(fake: FakePleo) -> None:
    """Seven subscriptions three to a page come back whole, in order, from three GETs."""
    async with client_for(fake) as client:
        subscriptions = client.webhook_subscriptions
        created = [await subscriptions.create(f"{ENDPOINT}/{number}") for number in range(7)]
        listed = [found async for found in subscriptions.list(page_size=3)]
    assert listed == created
    pages = [entry for entry in fake.journal.requests if entry.method == "GET"]
    assert len(pages) == 3
    assert [entry.query["limit"] for entry in pages] == [["3"]] * 3
    assert "after" not in pages[0].query
    assert all("after" in entry.query for entry in pages[1:])


async def test_list_follows_the_pages_when_pleo_gives_fewer_than_asked() -> None:
    """A Pleo that caps the page below the client's 100 is still read to its last page."""
    async with (
        FakePleo(seed=3, page_size_default=4, page_size_max=4) as fake,
        client_for(fake) as client,
    ):
        subscriptions = client.webhook_subscriptions
        created = [await subscriptions.create(f"{ENDPOINT}/{number}") for number in range(9)]
        listed = [found async for found in subscriptions.list()]
    assert listed == created
    assert len([entry for entry in fake.journal.requests if entry.method == "GET"]) == 3


async def test_list_filters_by_status_and_by_event_type(fake: FakePleo) -> None:
    """`status` keeps one status; `event_types` keeps the subscriptions to any of them; both
    are sent as Pleo's query parameters."""
    async with client_for(fake) as client:
        subscriptions = client.webhook_subscriptions
        jobs = await subscriptions.create(f"{ENDPOINT}/jobs")
        paused = await subscriptions.create(f"{ENDPOINT}/paused", status="INACTIVE")
        vendors = await subscriptions.create(f"{ENDPOINT}/vendors", event_types=[VENDOR_CREATED])
        inactive = [found async for found in subscriptions.list(status="INACTIVE")]
        active = [found async for found in subscriptions.list(status="ACTIVE")]
        of_vendors = [found async for found in subscriptions.list(event_types=[VENDOR_CREATED])]
        of_either = [
            found async for found in subscriptions.list(event_types=(JOB_CREATED, VENDOR_CREATED))
        ]
        active_jobs = [
            found async for found in subscriptions.list(status="ACTIVE", event_types=[JOB_CREATED])
        ]
    assert inactive == [paused]
    assert active == [jobs, vendors]
    assert of_vendors == [vendors]
    assert of_either == [jobs, paused, vendors]
    assert active_jobs == [jobs]
    last = fake.journal.requests[-1]
    assert last.query["status"] == ["ACTIVE"]
    assert last.query["event_types"] == [JOB_CREATED]


# -- checks before any request ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "field", "words"),
    [
        ({"endpoint_url": "/pleo/webhooks"}, "endpoint_url", "absolute"),
        ({"endpoint_url": "connector.example.com/hooks"}, "endpoint_url", "absolute"),
        ({"endpoint_url": "ftp://connector.example.com/hooks"}, "endpoint_url", "absolute"),
        ({"endpoint_url": "http://connector.example.com/hooks"}, "endpoint_url", "https://"),
        ({"endpoint_url": "http://10.0.0.5:8080/hooks"}, "endpoint_url", "loopback"),
        ({"endpoint_url": 42}, "endpoint_url", "string"),
        ({"event_types": []}, "event_types", "at least one"),
        ({"event_types": [""]}, "event_types", "non-empty"),
        ({"event_types": [JOB_CREATED, "  "]}, "event_types", "non-empty"),
        ({"event_types": [JOB_CREATED, 7]}, "event_types", "non-empty"),
        ({"event_types": JOB_CREATED}, "event_types", "a list"),
        ({"event_types": [JOB_CREATED, JOB_CREATED]}, "event_types", "twice"),
        ({"status": "active"}, "status", "'ACTIVE' or 'INACTIVE'"),
        ({"status": None}, "status", "'ACTIVE' or 'INACTIVE'"),
    ],
)
async def test_a_bad_create_argument_is_refused_before_any_request(
    fake: FakePleo, arguments: dict[str, Any], field: str, words: str
) -> None:
    """A relative or non-http URL, plain http to a host that is not loopback, a missing or
    empty event type, a bare string of one, a repeated one, or an unknown status raises
    InvalidInput naming the parameter, and nothing is sent."""
    endpoint_url = arguments.pop("endpoint_url", ENDPOINT)
    async with client_for(fake) as client:
        with pytest.raises(InvalidInput) as raised:
            await client.webhook_subscriptions.create(endpoint_url, **arguments)
    assert raised.value.field == field
    assert words in raised.value.problem
    assert fake.journal.requests == []


async def test_a_url_holding_a_password_is_refused_without_showing_it(fake: FakePleo) -> None:
    """Credentials in the URL would be shown to whoever lists the subscriptions: refused, and
    the error leaves the password out."""
    async with client_for(fake) as client:
        with pytest.raises(InvalidInput) as raised:
            await client.webhook_subscriptions.create("https://pleo:hunter2@example.com/hooks")
    assert raised.value.field == "endpoint_url"
    assert "hunter2" not in str(raised.value)
    assert "hunter2" not in repr(raised.value.value)
    assert fake.journal.requests == []


@pytest.mark.parametrize("http_loopback", ["http://127.0.0.1:9/h", "http://localhost/h"])
async def test_plain_http_to_a_loopback_host_is_accepted(
    fake: FakePleo, http_loopback: str
) -> None:
    """A test's own receiver on loopback may be plain http."""
    async with client_for(fake) as client:
        created = await client.webhook_subscriptions.create(http_loopback)
    assert created.endpoint_url == http_loopback


@pytest.mark.parametrize("method", ["get", "secret", "delete"])
@pytest.mark.parametrize("subscription_id", ["not-a-uuid", "../export-jobs", "", "1234"])
async def test_a_subscription_id_that_is_not_a_uuid_is_refused_before_any_request(
    fake: FakePleo, method: str, subscription_id: str
) -> None:
    """get, secret and delete refuse an ID that is not a UUID: it can never change the path."""
    async with client_for(fake) as client:
        call = getattr(client.webhook_subscriptions, method)
        with pytest.raises(InvalidInput) as raised:
            await call(subscription_id)
    assert raised.value.field == "subscription_id"
    assert fake.journal.requests == []


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"status": "PAUSED"}, "status"),
        ({"event_types": [""]}, "event_types"),
        ({"event_types": JOB_CREATED}, "event_types"),
        ({"page_size": 0}, "page_size"),
    ],
)
async def test_a_bad_list_filter_is_refused_before_any_request(
    fake: FakePleo, arguments: dict[str, Any], field: str
) -> None:
    """An unknown status, an empty event type, a bare string or a page size of 0 raises
    InvalidInput naming it, before the first page is asked for."""
    async with client_for(fake) as client:
        with pytest.raises(InvalidInput) as raised:
            [found async for found in client.webhook_subscriptions.list(**arguments)]
    assert raised.value.field == field
    assert fake.journal.requests == []


def test_an_upper_case_id_is_sent_in_canonical_form() -> None:
    """IDs are UUIDs in any case or as `uuid.UUID`; the path holds the canonical lower case."""
    from pleo_export_async._subscriptions import _subscription_path

    upper = "6F1C0B8E-1D2A-4C3B-9E4F-5A6B7C8D9E0F"
    assert _subscription_path(upper) == f"/v1/subscriptions/{upper.lower()}"
    assert _subscription_path(uuid.UUID(upper)) == f"/v1/subscriptions/{upper.lower()}"


# -- Pleo's refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "secret", "delete"])
async def test_an_unknown_subscription_is_an_api_error_with_status_404(
    fake: FakePleo, method: str
) -> None:
    """Pleo's 404 for a subscription it does not know is an ApiError with status 404 and
    Pleo's message, sent once; not JobNotFound, which is about export jobs."""
    async with client_for(fake) as client:
        with pytest.raises(ApiError) as raised:
            await getattr(client.webhook_subscriptions, method)(UNKNOWN_ID)
    assert raised.value.status == 404
    assert not isinstance(raised.value, JobNotFound)
    assert UNKNOWN_ID in str(raised.value)
    assert "could not be found" in str(raised.value)
    assert len(fake.journal.requests) == 1


async def test_a_refused_credential_is_an_authentication_error(fake: FakePleo) -> None:
    """The subscriptions API takes the Export API's credential: a wrong key is a 401."""
    async with PleoExportClient(fake.base_url, auth=ApiKeyAuth("wrong-key")) as client:
        with pytest.raises(AuthenticationError):
            await client.webhook_subscriptions.create(ENDPOINT)


# -- what is kept, and what never shows ------------------------------------------------------------


async def test_the_secret_is_in_no_repr_log_record_or_error(
    fake: FakePleo, caplog: pytest.LogCaptureFixture
) -> None:
    """Through a whole round trip logged at DEBUG, the secret shows in no log record and in no
    repr of the client, the subscriptions or a subscription."""
    caplog.set_level(logging.DEBUG)
    async with client_for(fake) as client:
        subscriptions = client.webhook_subscriptions
        created = await subscriptions.create(ENDPOINT)
        secret = await subscriptions.secret(created.id)
        listed = [found async for found in subscriptions.list()]
        fetched = await subscriptions.get(created.id)
        texts = [repr(client), repr(subscriptions), str(subscriptions), repr(listed)]
        texts += [repr(created), repr(fetched), str(vars(subscriptions))]
        await subscriptions.delete(created.id)
        with pytest.raises(ApiError) as raised:
            await subscriptions.secret(created.id)
    texts.append(str(raised.value))
    texts += [record.getMessage() for record in caplog.records]
    texts += [repr(record.__dict__) for record in caplog.records]
    assert caplog.records, "the calls logged nothing to check"
    assert [text for text in texts if secret in text or secret[6:] in text] == []
    assert repr(subscriptions) == f"WebhookSubscriptions(base_url={fake.base_url!r})"


async def test_credentials_pleo_echoes_are_not_kept(fake: FakePleo) -> None:
    """A subscription made with BASIC endpoint credentials (here by another tool) is read
    without them: Pleo echoes the password, the model has no field for it."""
    body = {
        "endpointUrl": ENDPOINT,
        "eventTypes": [JOB_CREATED],
        "endpointAuth": {"type": "BASIC", "credentials": {"username": "u", "password": "pw-77"}},
        "customHeaders": {"X-Api-Key": "header-secret-88"},
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{fake.base_url}/v1/subscriptions",
            json=body,
            headers={"Authorization": basic_authorization(fake.api_key)},
        ) as answer,
    ):
        assert answer.status == 200
        echoed = await answer.json()
    assert echoed["data"]["endpointAuth"]["credentials"]["password"] == "pw-77"
    async with client_for(fake) as client:
        subscriptions = client.webhook_subscriptions
        fetched = await subscriptions.get(echoed["data"]["id"])
        listed = [found async for found in subscriptions.list()]
    assert listed == [fetched]
    for kept in (repr(fetched), repr(attrs.asdict(fetched))):
        assert "pw-77" not in kept
        assert "header-secret-88" not in kept
    assert [field.name for field in attrs.fields(WebhookSubscription)] == [
        "id",
        "endpoint_url",
        "event_types",
        "status",
        "created_at",
        "updated_at",
    ]


async def test_pleos_reference_example_is_read_with_event_types_as_one_string() -> None:
    """Pleo's own example answer, `eventTypes` a string and fields the model lacks, reads as a
    subscription to that one event type."""
    async with stand_in(
        ("GET", "/v1/subscriptions/{id}", answers((200, REFERENCE_EXAMPLE)))
    ) as client:
        found = await client.webhook_subscriptions.get("123e4567-e89b-12d3-a456-426614174000")
    assert found.event_types == (JOB_CREATED,)
    assert found.endpoint_url == "https://example.com/webhook"
    assert found.updated_at.isoformat() == "2022-01-10T00:00:00+00:00"
    assert "echoed-password" not in repr(found)


@pytest.mark.parametrize(
    "body",
    [
        {"data": {"secretKey": "sk_live_not-a-standard-webhooks-secret"}},
        {"data": {"secret": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"}},
        {"secretKey": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"},
        ["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"],
    ],
)
async def test_an_answer_without_a_whsec_secret_is_refused_without_showing_it(
    body: Any,
) -> None:
    """A secret answer of another shape is UnexpectedResponse, and its message shows nothing
    of what came: it may be a secret all the same."""
    async with stand_in(("GET", "/v1/subscriptions/{id}/secret", answers((200, body)))) as client:
        with pytest.raises(UnexpectedResponse) as raised:
            await client.webhook_subscriptions.secret(UNKNOWN_ID)
    message = str(raised.value)
    assert "not-a-standard" not in message
    assert "C2FVsBQIhrsc" not in message
    assert "secretKey" in message


async def test_a_subscription_body_of_another_shape_is_an_unexpected_response() -> None:
    """An answer whose eventTypes is neither an array of strings nor a string is refused,
    naming the request."""
    bad = {"data": {**REFERENCE_EXAMPLE["data"], "eventTypes": [1, 2]}}
    async with stand_in(("POST", "/v1/subscriptions", answers((200, bad)))) as client:
        with pytest.raises(UnexpectedResponse, match=r"POST /v1/subscriptions"):
            await client.webhook_subscriptions.create(ENDPOINT)


# -- answers lost on the way -----------------------------------------------------------------------


async def test_a_delete_found_gone_on_its_retry_counts_as_done(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When a DELETE is sent again (the first answer, here a 503, stands for one lost on the
    way) and Pleo then answers 404, the earlier attempt deleted it: no error."""
    caplog.set_level(logging.INFO, logger="pleo_export_async")
    handler = answers((503, None), (404, {"type": "NOT_FOUND", "message": "gone"}))
    async with stand_in(("DELETE", "/v1/subscriptions/{id}", handler)) as client:
        await client.webhook_subscriptions.delete(UNKNOWN_ID)
        assert client.stats().requests == 2
    assert any("earlier attempt deleted it" in record.getMessage() for record in caplog.records)


async def test_a_create_sent_twice_warns_of_a_second_subscription(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A POST that had to be sent again may have made a subscription already: a warning names
    the URL and the subscription returned, so the operator can look for the other."""
    caplog.set_level(logging.WARNING, logger="pleo_export_async")
    created = {"data": {**REFERENCE_EXAMPLE["data"], "endpointUrl": ENDPOINT}}
    handler = answers((503, None), (200, created))
    async with stand_in(("POST", "/v1/subscriptions", handler)) as client:
        subscription = await client.webhook_subscriptions.create(ENDPOINT)
    warnings = [
        record.getMessage() for record in caplog.records if "sent 2 times" in record.getMessage()
    ]
    assert len(warnings) == 1
    assert ENDPOINT in warnings[0]
    assert subscription.id in warnings[0]
