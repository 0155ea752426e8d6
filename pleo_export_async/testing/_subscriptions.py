"""The fake's webhook subscriptions (docs/pleo-api.md#webhook): what `/v1/subscriptions` keeps,
the checks of its `SubscriptionRequest` body, and which subscriptions hear of an event.

No HTTP here: the routes hand in parsed JSON and query values. A bad body raises
`RequestInvalid` (400), an unknown subscription `ApiError` (404).
"""

from __future__ import annotations

import base64
import binascii
import random
import re
import secrets
import urllib.parse
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

import attrs

from . import _spec
from ._data import seeded_uuid

# The generic object walker and field checks of the Export API's bodies: a SubscriptionRequest
# is checked by the same rules (unknown fields and nulls refused in strict mode).
from ._request_checks import (
    FieldCheck,
    RequestInvalid,
    _check_object,
    _enum,
    _Field,
    _json_type,
    _string,
    format_datetime,
)
from ._state import ApiError, Clock

#: The event Pleo sends when a job is created `pending`, as its notifications spell it.
JOB_CREATED_EVENT: Final = "v1.export-job.created"
#: Pleo's pages spell the event both ways (docs/pleo-api.md#webhook): a subscription to either
#: hears it.
JOB_CREATED_EVENT_TYPES: Final = frozenset({JOB_CREATED_EVENT, "v1.export.job-created"})
SUBSCRIPTION_STATUSES: Final = ("INACTIVE", "ACTIVE")
ENDPOINT_AUTH_TYPES: Final = ("NONE", "BASIC")
MESSAGE_SUBSCRIPTION_NOT_FOUND: Final = "The subscription record could not be found."
_SECRET_PREFIX: Final = "whsec_"
# Standard Webhooks asks for at least 24 random bytes; Pleo's example secret has exactly 24.
_SECRET_BYTES: Final = 24
# RFC 9110 field names.
_HEADER_NAME: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers the fake sets itself on every notification: a custom value would break the request
# or its signature.
_RESERVED_HEADERS: Final = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)


def new_webhook_secret() -> str:
    """A Standard Webhooks secret as Pleo hands them out: `whsec_` and 24 random bytes, base64."""
    return _SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode("ascii")


def check_webhook_secret(secret: str) -> None:
    """Raise ValueError unless `secret` is `whsec_` followed by base64 of at least one byte; the
    message never shows the secret."""
    if not isinstance(secret, str) or not secret.startswith(_SECRET_PREFIX):
        raise ValueError("must start with whsec_")
    encoded = secret[len(_SECRET_PREFIX) :]
    try:
        # Unpadded base64 is accepted, as the standardwebhooks library accepts it.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be whsec_ followed by base64") from None
    if not key:
        raise ValueError("needs at least one byte after whsec_")


@attrs.define
class Subscription:
    """One webhook subscription (SubscriptionModel), with its own signing secret."""

    id: str
    # Creation order: the pagination key.
    ordinal: int
    endpoint_url: str
    event_types: tuple[str, ...]
    status: str
    created_at: datetime
    updated_at: datetime
    secret: str = attrs.field(repr=False)
    custom_headers: dict[str, str] | None = attrs.field(default=None, repr=False)
    endpoint_auth: dict[str, Any] | None = attrs.field(default=None, repr=False)

    def payload(self) -> dict[str, Any]:
        """The SubscriptionModel the API answers with (keys without a value left out).

        `endpointAuth` is echoed with its credentials, as Pleo's reference examples show.
        """
        payload: dict[str, Any] = {
            "id": self.id,
            "createdAt": format_datetime(self.created_at),
            "updatedAt": format_datetime(self.updated_at),
            "endpointUrl": self.endpoint_url,
            "eventTypes": list(self.event_types),
            "status": self.status,
        }
        if self.custom_headers is not None:
            payload["customHeaders"] = dict(self.custom_headers)
        if self.endpoint_auth is not None:
            payload["endpointAuth"] = self.endpoint_auth
        return payload

    def hears(self, event_types: Iterable[str]) -> bool:
        """Whether the subscription is active and subscribed to one of `event_types`."""
        return self.status == "ACTIVE" and not set(self.event_types).isdisjoint(event_types)

    def delivery_headers(self) -> dict[str, str]:
        """The headers its notifications carry besides the signature: `customHeaders`, and
        `Authorization: Basic` when `endpointAuth` is BASIC."""
        headers = dict(self.custom_headers or {})
        auth = self.endpoint_auth or {}
        if auth.get("type") == "BASIC":
            credentials = auth.get("credentials") or {}
            pair = f"{credentials.get('username', '')}:{credentials.get('password', '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        return headers


class Subscriptions:
    """Every subscription of the fake, in creation order, with what the endpoints do to them."""

    def __init__(self, *, seed: int, clock: Clock) -> None:
        self._clock = clock
        self._ids = random.Random(f"{seed}:subscriptions")
        self._by_id: dict[str, Subscription] = {}
        self._created = 0

    def __repr__(self) -> str:
        return f"Subscriptions(count={len(self._by_id)})"

    def create(self, body: Any, *, strict: bool) -> Subscription:
        """POST /v1/subscriptions with a SubscriptionRequest body; a new secret of its own."""
        validate_subscription_request(body, strict=strict)
        now = self._clock.now()
        subscription = Subscription(
            id=seeded_uuid(self._ids),
            ordinal=self._created,
            created_at=now,
            updated_at=now,
            secret=new_webhook_secret(),
            **_settings_of(body),
        )
        self._created += 1
        self._by_id[subscription.id] = subscription
        return subscription

    def get(self, subscription_id: str) -> Subscription:
        """The subscription, or a 404."""
        subscription = self._by_id.get(subscription_id.lower())
        if subscription is None:
            raise ApiError(404, _spec.NOT_FOUND, MESSAGE_SUBSCRIPTION_NOT_FOUND)
        return subscription

    def replace(self, subscription_id: str, body: Any, *, strict: bool) -> Subscription:
        """PUT /v1/subscriptions/{id}: every setting from the body (the spec requires the whole
        SubscriptionRequest); its ID, creation time and secret stay."""
        subscription = self.get(subscription_id)
        validate_subscription_request(body, strict=strict)
        for name, value in _settings_of(body).items():
            setattr(subscription, name, value)
        subscription.updated_at = self._clock.now()
        return subscription

    def delete(self, subscription_id: str) -> None:
        """DELETE /v1/subscriptions/{id}: gone, from the listing and from the notifications."""
        del self._by_id[self.get(subscription_id).id]

    def listed(self, *, status: str | None, event_types: Iterable[str]) -> list[Subscription]:
        """Subscriptions oldest first, with this status (any when None) and subscribed to one
        of `event_types` (any when empty)."""
        wanted = frozenset(event_types)
        return [
            subscription
            for subscription in self._by_id.values()
            if (status is None or subscription.status == status)
            and (not wanted or not wanted.isdisjoint(subscription.event_types))
        ]

    def hearing(self, event_types: Iterable[str]) -> list[Subscription]:
        """The active subscriptions to one of `event_types`, oldest first."""
        wanted = frozenset(event_types)
        return [s for s in self._by_id.values() if s.hears(wanted)]


def _settings_of(body: Mapping[str, Any]) -> dict[str, Any]:
    """The Subscription fields a validated SubscriptionRequest sets (nulls read as absent)."""
    custom_headers = body.get("customHeaders")
    endpoint_auth = body.get("endpointAuth")
    return {
        "endpoint_url": body["endpointUrl"],
        "event_types": tuple(body["eventTypes"]),
        "status": body.get("status") or "ACTIVE",
        "custom_headers": None if custom_headers is None else dict(custom_headers),
        "endpoint_auth": None if endpoint_auth is None else _copied(endpoint_auth),
    }


def _copied(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items() if item is not None}
    return value


# ---- SubscriptionRequest checks --------------------------------------------------------------


def validate_endpoint_url(path: str, value: Any) -> None:
    """Check a URL notifications are sent to: absolute, http or https."""
    _string(path, value)
    try:
        parts = urllib.parse.urlsplit(value)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a bad port or IPv6 literal
        usable = False
    if not usable:
        raise RequestInvalid(f"{path}: not an absolute http(s) URL")


def _event_types(path: str, value: Any) -> None:
    if not isinstance(value, list):
        raise RequestInvalid(f"{path}: expected an array, got {_json_type(value)}")
    if not value:
        raise RequestInvalid(f"{path}: subscribe to at least one event type")
    for index, element in enumerate(value):
        _string(f"{path}[{index}]", element)
        if not element:
            raise RequestInvalid(f"{path}[{index}]: empty event type")
    # `uniqueItems: true` in the spec.
    if len(set(value)) != len(value):
        raise RequestInvalid(f"{path}: an event type is listed twice")


def _custom_headers(path: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise RequestInvalid(f"{path}: expected an object, got {_json_type(value)}")
    for name, header_value in value.items():
        if not _HEADER_NAME.match(name):
            raise RequestInvalid(f"{path}: not a header name: {name[:40]!r}")
        if name.lower() in _RESERVED_HEADERS:
            raise RequestInvalid(f"{path}.{name}: set by Pleo on every notification")
        _string(f"{path}.{name}", header_value)
        if "\r" in header_value or "\n" in header_value:
            raise RequestInvalid(f"{path}.{name}: a header value has no line break")


_CREDENTIAL_FIELDS: Final[Mapping[str, _Field]] = {
    "username": _Field(_string),
    "password": _Field(_string),
    "token": _Field(_string),
}


def _endpoint_auth(strict: bool) -> FieldCheck:
    def credentials(path: str, value: Any) -> None:
        _check_object(value, path, _CREDENTIAL_FIELDS, strict=strict)

    fields: Mapping[str, _Field] = {
        "type": _Field(_enum(ENDPOINT_AUTH_TYPES)),
        "credentials": _Field(credentials),
    }

    def check(path: str, value: Any) -> None:
        _check_object(value, path, fields, strict=strict)
        given = value.get("credentials") or {}
        if value.get("type") == "BASIC" and not given.get("username"):
            raise RequestInvalid(f"{path}.credentials.username: required for BASIC")

    return check


def validate_subscription_request(body: Any, *, strict: bool) -> None:
    """Check a POST or PUT /v1/subscriptions body (SubscriptionRequest)."""
    fields: Mapping[str, _Field] = {
        "endpointUrl": _Field(validate_endpoint_url, required=True),
        "eventTypes": _Field(_event_types, required=True),
        "customHeaders": _Field(_custom_headers),
        "endpointAuth": _Field(_endpoint_auth(strict)),
        "status": _Field(_enum(SUBSCRIPTION_STATUSES)),
    }
    _check_object(body, "", fields, strict=strict)
