"""Pleo's webhook subscriptions (the Webhook Subscriptions API, `/v1/subscriptions`): which
endpoint Pleo POSTs a signed notification to when an export job is created, so a connector need
not poll for new jobs.

The API is on the Export API's host and takes the same credential, so the client's transport
sends these requests too: the same retries, limit on requests in flight and `Retry-After` gate.

A subscription's signing secret (`whsec_...`) is handed to the caller and kept nowhere: not on
a model, in a repr, a log line or an error message.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

import attrs

from . import _codec
from ._auth import _is_loopback
from ._checks import http_url, uuid_string
from ._errors import InvalidInput, UnexpectedResponse
from ._models import DataResponse
from ._pages import checked_page_size, every_item
from ._transport import Response, Transport, raise_for_response

logger = logging.getLogger("pleo_export_async")

SUBSCRIPTIONS_PATH: Final = "/v1/subscriptions"
#: The event of a new pending export job, as Pleo's spec and its notifications spell it.
JOB_CREATED_EVENT: Final = "v1.export-job.created"
SUBSCRIPTION_STATUSES: Final = ("ACTIVE", "INACTIVE")
_SECRET_PREFIX: Final = "whsec_"


def _event_types_from_wire(value: object, _: object) -> tuple[str, ...]:
    """`eventTypes` as Pleo sends it: an array of strings, or one string, as the examples of
    its reference show."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(event, str) for event in value):
        return tuple(value)
    raise ValueError(f"eventTypes: expected an array of strings, got {value!r}")


@attrs.frozen
class WebhookSubscription:
    """A webhook subscription as Pleo holds it (SubscriptionModel): while `status` is ACTIVE,
    Pleo POSTs a notification of each of `event_types` to `endpoint_url`.

    Only these fields are kept of Pleo's answer: the `endpointAuth` credentials and custom
    headers Pleo echoes back (passwords included) are left out, so that no repr or log line
    shows them.
    """

    id: str
    endpoint_url: str
    event_types: tuple[str, ...] = attrs.field(
        metadata={_codec.STRUCTURE_HOOK: _event_types_from_wire}
    )
    status: str
    created_at: datetime
    updated_at: datetime


class WebhookSubscriptions:
    """The webhook subscriptions of the client's company or organisation, from
    `PleoExportClient.webhook_subscriptions`.

    Every argument is checked before any request: a bad one raises `InvalidInput`, nothing sent.
    """

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def __repr__(self) -> str:
        return f"WebhookSubscriptions(base_url={self._transport.base_url!r})"

    async def create(
        self,
        endpoint_url: str,
        *,
        event_types: Iterable[str] = (JOB_CREATED_EVENT,),
        status: str = "ACTIVE",
    ) -> WebhookSubscription:
        """Subscribe `endpoint_url` to `event_types` (`POST /v1/subscriptions`); the new
        subscription, whose secret `secret()` reads.

        `endpoint_url` is an absolute https URL (plain http only to a loopback host, for a
        test) without a user name or password; `event_types` holds each type once; `status` is
        ACTIVE or INACTIVE. Pleo's API takes no key to make a create safe to repeat: when an
        attempt's answer is lost and the request is sent again, Pleo may hold two subscriptions
        to the URL, and a warning says so (`list()` shows them, `delete()` removes one).

        Raises `InvalidInput` for a bad argument, before any request; `AuthenticationError` or
        `PermissionDenied` when Pleo refuses the credential (401, 403); `ApiError` for another
        error status (400 for a body Pleo refuses); `TransportError` when the network fails
        past the retries; `UnexpectedResponse` for a body that is not a subscription.
        """
        body = {
            "endpointUrl": _checked_endpoint_url(endpoint_url),
            "eventTypes": _checked_event_types(event_types, required=True),
            "status": _checked_status(status),
        }
        response = await self._transport.request(
            "POST", SUBSCRIPTIONS_PATH, body=_codec.dumps(body)
        )
        raise_for_response(response, "POST", SUBSCRIPTIONS_PATH)
        subscription = _read_subscription(response, "POST", SUBSCRIPTIONS_PATH)
        if response.attempts > 1:
            logger.warning(
                "POST %s was sent %d times: if an earlier attempt reached Pleo, it holds another "
                "subscription to %s besides %s; list the subscriptions to find it",
                SUBSCRIPTIONS_PATH,
                response.attempts,
                subscription.endpoint_url,
                subscription.id,
            )
        logger.info(
            "created webhook subscription %s: %s to %s",
            subscription.id,
            ", ".join(subscription.event_types),
            subscription.endpoint_url,
        )
        return subscription

    async def list(
        self,
        *,
        status: str | None = None,
        event_types: Iterable[str] = (),
        page_size: int = 100,
    ) -> AsyncIterator[WebhookSubscription]:
        """Every subscription, with this `status` (any when None) and to any of `event_types`
        (any when empty), in Pleo's order: every page of `GET /v1/subscriptions`.

        Raises `InvalidInput` for a bad argument (a status other than ACTIVE or INACTIVE, an
        empty event type, a `page_size` outside 1..1000), before any request;
        `AuthenticationError` or `PermissionDenied` when Pleo refuses the credential;
        `ApiError` for another error status; `TransportError` when the network fails past the
        retries; `UnexpectedResponse` for a body that is not a page of subscriptions.
        """
        params: dict[str, str | list[str]] = {}
        if status is not None:
            params["status"] = _checked_status(status)
        wanted = _checked_event_types(event_types, required=False)
        if wanted:
            params["event_types"] = wanted
        async for subscription in every_item(
            self._transport,
            SUBSCRIPTIONS_PATH,
            WebhookSubscription,
            page_size=checked_page_size(page_size),
            params=params,
        ):
            yield subscription

    async def get(self, subscription_id: str) -> WebhookSubscription:
        """The subscription as Pleo holds it now (`GET /v1/subscriptions/{id}`).

        Raises `InvalidInput` for a `subscription_id` that is not a UUID, before any request;
        `ApiError` with status 404 when Pleo does not know the subscription;
        `AuthenticationError` or `PermissionDenied` when Pleo refuses the credential;
        `ApiError` for another error status; `TransportError` when the network fails past the
        retries; `UnexpectedResponse` for a body that is not a subscription.
        """
        path = _subscription_path(subscription_id)
        response = await self._transport.request("GET", path)
        raise_for_response(response, "GET", path)
        return _read_subscription(response, "GET", path)

    async def secret(self, subscription_id: str) -> str:
        """The subscription's signing secret (`whsec_...`, `GET /v1/subscriptions/{id}/secret`),
        which verifies the notifications Pleo sends for it. It is kept nowhere, and no error or
        log line shows it.

        Raises `InvalidInput` for a `subscription_id` that is not a UUID, before any request;
        `ApiError` with status 404 when Pleo does not know the subscription;
        `AuthenticationError` or `PermissionDenied` when Pleo refuses the credential;
        `ApiError` for another error status; `TransportError` when the network fails past the
        retries; `UnexpectedResponse` for a body that holds no `whsec_` secret.
        """
        path = _subscription_path(subscription_id) + "/secret"
        response = await self._transport.request("GET", path)
        raise_for_response(response, "GET", path)
        return _read_secret(response, path)

    async def delete(self, subscription_id: str) -> None:
        """Remove the subscription (`DELETE /v1/subscriptions/{id}`): Pleo sends it nothing more.

        A 404 after a lost answer was retried counts as done: the earlier attempt deleted it.

        Raises `InvalidInput` for a `subscription_id` that is not a UUID, before any request;
        `ApiError` with status 404 when Pleo does not know the subscription;
        `AuthenticationError` or `PermissionDenied` when Pleo refuses the credential;
        `ApiError` for another error status; `TransportError` when the network fails past the
        retries.
        """
        path = _subscription_path(subscription_id)
        response = await self._transport.request("DELETE", path)
        if response.status == 404 and response.attempts > 1:
            logger.info(
                "DELETE %s: not found on attempt %d, so an earlier attempt deleted it",
                path,
                response.attempts,
            )
            return
        raise_for_response(response, "DELETE", path)
        logger.info("deleted webhook subscription %s", path.rsplit("/", 1)[1])


# ---- checks of the arguments (R14) ----------------------------------------------------------


def _checked_endpoint_url(value: object) -> str:
    """An absolute https URL (http only to loopback) with no credentials in it."""
    field = "endpoint_url"
    if isinstance(value, str):
        try:
            parts = urlsplit(value)
        except ValueError:
            parts = None  # http_url below says what is wrong
        if parts is not None and (parts.username is not None or parts.password is not None):
            # Shown without them: the error is for a log.
            shown = parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()
            raise InvalidInput(
                field,
                shown,
                "must not hold a user name or password: Pleo shows the URL to whoever lists "
                "the subscriptions",
            )
    url = http_url(field, value)
    parts = urlsplit(url)
    if parts.scheme != "https" and not _is_loopback(parts.hostname or ""):
        raise InvalidInput(
            field,
            url,
            "must be an https:// URL (Pleo sends notifications over HTTPS); plain http:// is "
            "for a loopback host only, such as http://127.0.0.1:8080/webhooks",
        )
    return url


def _checked_event_types(value: object, *, required: bool) -> list[str]:
    """Event types as Pleo takes them: non-empty strings, each once; at least one if required."""
    field = "event_types"
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidInput(
            field, value, "must be a list of event types, such as ['v1.export-job.created']"
        )
    event_types = [*value]
    if required and not event_types:
        raise InvalidInput(field, event_types, "must name at least one event type")
    for event_type in event_types:
        if not isinstance(event_type, str) or not event_type.strip():
            raise InvalidInput(
                field,
                event_type,
                "an event type is a non-empty string, such as 'v1.export-job.created'",
            )
        if event_types.count(event_type) > 1:
            # `uniqueItems` in Pleo's spec: it would refuse the request.
            raise InvalidInput(field, event_type, "is listed twice")
    return event_types


def _checked_status(value: object) -> str:
    if value not in SUBSCRIPTION_STATUSES:
        raise InvalidInput("status", value, "must be 'ACTIVE' or 'INACTIVE'")
    return str(value)


def _subscription_path(subscription_id: object) -> str:
    return f"{SUBSCRIPTIONS_PATH}/{uuid_string('subscription_id', subscription_id)}"


# ---- reading Pleo's answers -----------------------------------------------------------------


def _read_subscription(response: Response, method: str, path: str) -> WebhookSubscription:
    try:
        return _codec.decode(response.body, DataResponse[WebhookSubscription]).data
    except UnexpectedResponse as error:
        raise UnexpectedResponse(f"{method} {path}: {error}") from None


def _read_secret(response: Response, path: str) -> str:
    """The `data.secretKey` of a SubscriptionSecretResponse; what is refused is never shown."""
    try:
        payload: Any = response.json()
    except ValueError:
        payload = None
    data = payload.get("data") if isinstance(payload, dict) else None
    secret = data.get("secretKey") if isinstance(data, dict) else None
    if not isinstance(secret, str) or not secret.startswith(_SECRET_PREFIX):
        # Whatever came instead may be a secret in another form: it stays out of the message.
        raise UnexpectedResponse(
            f"GET {path}: the answer holds no Standard Webhooks secret (data.secretKey, "
            f"{_SECRET_PREFIX}...); it is not shown"
        )
    return secret
