"""The webhook check of `pleo-export serve` (R20), without I/O: Pleo's documented example is
the Standard Webhooks scheme, and every bad notification is refused with its status."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook

from pleo_export_async._serve._notifications import (
    JOB_CREATED_EVENTS,
    MAX_BODY_BYTES,
    NotificationCheck,
    Refused,
)

SECRET = "whsec_" + base64.b64encode(b"notification-test-secret-0123").decode()
JOB_ID = "b4c4d068-ebbe-45b7-b562-2f16f0deb8b9"


def signed(body: bytes, webhook_id: str = "msg_1", at: datetime | None = None) -> dict[str, str]:
    moment = at or datetime.now(UTC)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(webhook_id, moment, body.decode()),
    }


def body_of(event_type: str = "v1.export-job.created", *, wrapped: bool = False) -> bytes:
    document = {"data": {"id": JOB_ID, "companyId": "c"}, "eventId": "e", "eventType": event_type}
    return json.dumps({"payload": document} if wrapped else document).encode()


def test_pleos_example_signature_is_the_standard_webhooks_scheme() -> None:
    """Pleo's documented header triple is reproduced by standardwebhooks' own signing, with the
    scheme's published test secret: the package verifies what Pleo sends."""
    moment = datetime.fromtimestamp(1614265330, UTC)
    signature = Webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").sign(
        "msg_p5jXN8AQM9LWM0D4loKWxJek", moment, '{"test": 2432232314}'
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize("event_type", sorted(JOB_CREATED_EVENTS))
@pytest.mark.parametrize("wrapped", [False, True], ids=["body", "payload-wrapped"])
def test_every_spelling_of_job_created_announces_the_job(event_type: str, wrapped: bool) -> None:
    """Each spelling Pleo's pages use, in either body shape, is a job-created notice."""
    body = body_of(event_type, wrapped=wrapped)
    notification = NotificationCheck(SECRET).check(signed(body), body)
    assert notification.announces_a_job
    assert notification.job_id == JOB_ID


def _minutes_off(minutes: int) -> dict[str, str]:
    return signed(body_of(), at=datetime.now(UTC) + timedelta(minutes=minutes))


#: Each bad notification, made when the test runs (a timestamp made at collection would age).
BAD_NOTIFICATIONS: dict[str, tuple[Callable[[], tuple[dict[str, str], bytes]], int]] = {
    "no-headers": (lambda: ({}, body_of()), 401),
    "signature-without-comma": (
        lambda: ({**signed(body_of()), "webhook-signature": "v1 no comma"}, body_of()),
        401,
    ),
    "signature-not-base64": (
        lambda: ({**signed(body_of()), "webhook-signature": "v1,not base64!"}, body_of()),
        401,
    ),
    "other-version-only": (
        lambda: ({**signed(body_of()), "webhook-signature": "v2,abc"}, body_of()),
        401,
    ),
    "six-minutes-old": (lambda: (_minutes_off(-6), body_of()), 401),
    "six-minutes-ahead": (lambda: (_minutes_off(6), body_of()), 401),
    "timestamp-not-a-number": (
        lambda: ({**signed(body_of()), "webhook-timestamp": "soon"}, body_of()),
        401,
    ),
    "body-not-utf-8": (lambda: (signed(body_of()), b"\xff\xfe not utf-8"), 401),
    "json-not-an-object": (lambda: (signed(b"[1, 2]"), b"[1, 2]"), 400),
    "no-event-type": (lambda: (signed(b"{}"), b"{}"), 400),
    "over-1-MiB": (lambda: ({}, b"x" * (MAX_BODY_BYTES + 1)), 413),
}


@pytest.mark.parametrize("case", sorted(BAD_NOTIFICATIONS))
def test_a_bad_notification_is_refused_with_its_status(case: str) -> None:
    """Missing or malformed headers, a stale timestamp, a body the signature does not cover,
    or one too big or not a JSON object: `Refused` with 401, 400 or 413, never another error."""
    make, status = BAD_NOTIFICATIONS[case]
    headers, body = make()
    with pytest.raises(Refused) as refused:
        NotificationCheck(SECRET).check(headers, body)
    assert refused.value.status == status
    assert SECRET not in str(refused.value)


def test_a_webhook_id_is_acted_on_once() -> None:
    """The same webhook-id again, newly signed (as a retried delivery is), is refused with 200."""
    check = NotificationCheck(SECRET)
    body = body_of()
    check.check(signed(body, "msg_again"), body)
    with pytest.raises(Refused) as replayed:
        check.check(signed(body, "msg_again"), body)
    assert replayed.value.status == 200
    assert check.check(signed(body, "msg_other"), body).announces_a_job


def test_an_unknown_event_type_is_verified_but_announces_nothing() -> None:
    """A verified notification of another type (a vendor created) is read and ignored."""
    body = body_of("v1.vendor.created")
    assert not NotificationCheck(SECRET).check(signed(body), body).announces_a_job


def test_a_secret_that_is_not_whsec_base64_is_refused_without_showing_it() -> None:
    """A bad secret raises ValueError naming the expected form, never the value."""
    with pytest.raises(ValueError, match="whsec_") as raised:
        NotificationCheck("whsec_!!!not-base64-secret-value")
    assert "not-base64-secret-value" not in str(raised.value)
    assert SECRET.removeprefix("whsec_") not in repr(NotificationCheck(SECRET))
