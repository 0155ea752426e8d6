"""Pleo's webhook notifications, checked (rule R20): signed by the Standard Webhooks scheme
(docs/pleo-api.md#webhook-signature), verified with the `standardwebhooks` package. A
notification is acted on only once its signature, its timestamp (within 5 minutes) and its id
(never seen before) are verified; even then it is a hint, and the worker takes its work from
the listing.

No I/O here: the service's HTTP route hands in the headers and the raw body.
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

#: Pleo's pages spell the job-created event several ways (docs/pleo-api.md#webhook): each wakes
#: the worker. `v1.export-job.created` is the one Pleo delivers and the one to subscribe to.
JOB_CREATED_EVENTS: Final = frozenset(
    {
        "v1.export-job.created",
        "v1.export.job-created",
        "v2.export-job.created",
        "export-job.created",
        "export.job-created",
    }
)
#: The largest body read; Pleo's notifications are a few hundred bytes.
MAX_BODY_BYTES: Final = 1024 * 1024
#: How long a webhook-id is remembered: past the 5 minutes a timestamp is accepted for, so a
#: replay is refused either as seen or as too old.
_REMEMBERED_SECONDS: Final = 600.0
_REMEMBERED_MOST: Final = 100_000


class Refused(Exception):
    """A notification not acted on: the HTTP status to answer and why (never the secret)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


@attrs.frozen
class Notification:
    """A verified notification."""

    webhook_id: str
    event_type: str
    #: The export job it announces, when it is a job-created event that names one.
    job_id: str | None = None
    company_id: str | None = None

    @property
    def announces_a_job(self) -> bool:
        return self.event_type in JOB_CREATED_EVENTS


class NotificationCheck:
    """Verifies notifications against one subscription's secret (`whsec_...`), and refuses a
    webhook-id it has already acted on."""

    def __init__(self, secret: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        try:
            from standardwebhooks import Webhook
        except ImportError as missing:
            raise ImportError(
                "webhooks need the serve extra: pip install 'pleo-export-async[serve]'"
            ) from missing
        try:
            # standardwebhooks decodes leniently, skipping what is not base64: a mistyped
            # secret would verify nothing, silently. Refuse it here.
            key = secret.removeprefix("whsec_")
            base64.b64decode(key + "=" * (-len(key) % 4), validate=True)
            self._webhook = Webhook(secret)
        except Exception as error:
            # The library raises its own error types, and binascii's for bad base64; none of
            # their messages may carry the secret itself.
            raise ValueError(
                f"the webhook secret is not a Standard Webhooks secret (whsec_ and base64): "
                f"{type(error).__name__}"
            ) from None
        self._clock = clock
        self._seen: collections.OrderedDict[str, float] = collections.OrderedDict()

    def __repr__(self) -> str:
        return f"NotificationCheck(remembered={len(self._seen)})"

    def check(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """The verified notification, or `Refused` with the status to answer: 401 for a
        missing or bad signature or a stale timestamp, 413 for a body over 1 MiB, 400 for a
        verified body that is not a JSON object. A webhook-id already acted on is refused with
        200, so that Pleo does not send it again."""
        from standardwebhooks import WebhookVerificationError

        if len(body) > MAX_BODY_BYTES:
            raise Refused(413, f"body over {MAX_BODY_BYTES} bytes")
        lowered = {name.lower(): value for name, value in headers.items()}
        webhook_id = lowered.get("webhook-id", "")
        missing = [
            name
            for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
            if not lowered.get(name)
        ]
        if missing:
            raise Refused(401, f"missing header {', '.join(missing)}")
        try:
            self._webhook.verify(body, lowered, json_parse=False)
        except WebhookVerificationError as error:
            raise Refused(401, f"not verified: {error}") from None
        except (ValueError, binascii.Error, UnicodeDecodeError):
            # standardwebhooks 1.1 lets these out for a signature entry without a comma, bad
            # base64, or a body that is not UTF-8: each is a notification not signed by Pleo.
            raise Refused(401, "not verified: malformed signature or body") from None
        self._forget_old()
        if webhook_id in self._seen:
            raise Refused(200, f"webhook-id {webhook_id} already acted on")
        self._seen[webhook_id] = self._clock()
        return _read(webhook_id, body)

    def _forget_old(self) -> None:
        oldest_kept = self._clock() - _REMEMBERED_SECONDS
        while self._seen and (
            next(iter(self._seen.values())) < oldest_kept or len(self._seen) >= _REMEMBERED_MOST
        ):
            self._seen.popitem(last=False)


def _read(webhook_id: str, body: bytes) -> Notification:
    try:
        document: Any = json.loads(body)
    except ValueError:
        raise Refused(400, "the body is not JSON") from None
    if not isinstance(document, dict):
        raise Refused(400, "the body is not a JSON object")
    # Pleo's page shows the headers and a `payload` in one object; Pleo's other pages, and
    # Standard Webhooks, put the body at the top. Both are read.
    wrapped = document.get("payload")
    envelope: dict[str, Any] = wrapped if isinstance(wrapped, dict) else document
    event_type = envelope.get("eventType")
    if not isinstance(event_type, str):
        raise Refused(400, "the body has no eventType")
    data = envelope.get("data")
    job_id = company_id = None
    if isinstance(data, dict):
        job_id = data.get("id") if isinstance(data.get("id"), str) else None
        company_id = data.get("companyId") if isinstance(data.get("companyId"), str) else None
    return Notification(webhook_id, event_type, job_id, company_id)
