"""Public means public: every class users import from `pleo_export_async` calls itself
`pleo_export_async.Name` in reprs, tracebacks and pickles, never the private module that
defines it (`pleo_export_async._errors.InvalidInput`)."""

from __future__ import annotations

import enum
import pickle
import traceback
import uuid
from datetime import UTC, datetime

import attrs
import pytest

import pleo_export_async
from pleo_export_async import (
    ApiError,
    InvalidInput,
    ItemStatus,
    ItemUpdate,
    JobFinished,
    PleoExportError,
    WebhookSubscription,
)

PUBLIC_CLASSES = sorted(
    name for name in pleo_export_async.__all__ if isinstance(getattr(pleo_export_async, name), type)
)


def test_the_public_api_has_classes_of_every_kind() -> None:
    """The test below covers the exceptions, the enums and the attrs classes."""
    kinds = [getattr(pleo_export_async, name) for name in PUBLIC_CLASSES]
    assert any(issubclass(kind, PleoExportError) for kind in kinds)
    assert any(issubclass(kind, enum.Enum) for kind in kinds)
    assert any(attrs.has(kind) for kind in kinds)
    assert len(PUBLIC_CLASSES) >= 40


@pytest.mark.parametrize("name", PUBLIC_CLASSES)
def test_every_public_class_names_the_public_module(name: str) -> None:
    """`pleo_export_async.Name`, as users import it: in `repr(cls)` and the qualified name."""
    kind = getattr(pleo_export_async, name)
    assert kind.__module__ == "pleo_export_async"
    assert f"{kind.__module__}.{kind.__qualname__}" == f"pleo_export_async.{name}"
    assert repr(kind) in {f"<class 'pleo_export_async.{name}'>", f"<enum '{name}'>"}


def test_the_webhook_subscription_classes_are_public() -> None:
    """The webhook subscriptions API's classes are public names, and a subscription pickles
    under its public name."""
    assert {"WebhookSubscription", "WebhookSubscriptions"} <= set(PUBLIC_CLASSES)
    moment = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    subscription = WebhookSubscription(
        id=str(uuid.UUID(int=1)),
        endpoint_url="https://connector.example.com/pleo/webhooks",
        event_types=("v1.export-job.created",),
        status="ACTIVE",
        created_at=moment,
        updated_at=moment,
    )
    data = pickle.dumps(subscription)
    assert b"pleo_export_async._" not in data
    assert pickle.loads(data) == subscription


def test_a_traceback_shows_the_public_name_of_the_exception() -> None:
    """What a log line or a crash shows: `pleo_export_async.InvalidInput: ...`."""
    with pytest.raises(InvalidInput) as raised:
        ItemUpdate.successful("not-a-uuid")
    (last_line,) = traceback.format_exception_only(raised.value)
    assert last_line.startswith("pleo_export_async.InvalidInput: accounting_entry_id=")
    assert "_errors" not in "".join(traceback.format_exception(raised.value))
    assert "pleo_export_async.JobFinished" in "".join(
        traceback.format_exception_only(JobFinished("86ead2ae-55a8-4352-81b4-0eb9868586c9"))
    )


def test_public_values_still_pickle_under_their_public_names() -> None:
    """Pickles name the public module and load back: updates, enum members, exceptions (with
    their attributes, though their constructors take fields rather than the message)."""
    update = ItemUpdate.failed(
        str(uuid.uuid4()), reason="No such VAT code", reason_type="tax_code_unknown"
    )
    for value in (update, ItemStatus.FAILED):
        data = pickle.dumps(value)
        assert b"pleo_export_async._" not in data
        assert pickle.loads(data) == value
    errors: list[PleoExportError] = [
        InvalidInput("reason", "", "must not be empty"),
        JobFinished("86ead2ae-55a8-4352-81b4-0eb9868586c9", "it is completed"),
        ApiError(503, "SERVICE_UNAVAILABLE", "try later", method="PUT", path="/v3/x", attempts=8),
    ]
    for error in errors:
        loaded = pickle.loads(pickle.dumps(error))
        assert type(loaded) is type(error)
        assert str(loaded) == str(error)
        assert vars(loaded) == vars(error)


def test_the_attrs_classes_keep_their_resolved_field_types() -> None:
    """Naming the public module does not break what reads the fields' types (the codec): they
    were resolved where the classes are defined."""
    for name in PUBLIC_CLASSES:
        kind = getattr(pleo_export_async, name)
        if attrs.has(kind):
            unresolved = [field.name for field in attrs.fields(kind) if isinstance(field.type, str)]
            assert unresolved == [], name
