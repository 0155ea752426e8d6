"""What `pleo_export_async.testing` shows its users: its names, its reprs and its help()."""

from __future__ import annotations

import inspect
import pydoc
import re

import pytest

import pleo_export_async.testing
from pleo_export_async.testing import (
    FakeJob,
    FakePleo,
    Faults,
    FaultSpec,
    ItemSend,
    JobSummary,
    Journal,
    JournalEntry,
    PauseWindow,
    WebhookDelivery,
    _spec,
)

PUBLIC_TESTING_API = {
    "FakePleo",
    "FakeJob",
    "Faults",
    "FaultSpec",
    "Journal",
    "JournalEntry",
    "ItemSend",
    "PauseWindow",
    "JobSummary",
    "WebhookDelivery",
    "instant_retries",
}

PUBLIC_CLASSES = [
    FakePleo,
    FakeJob,
    Faults,
    FaultSpec,
    Journal,
    JournalEntry,
    ItemSend,
    PauseWindow,
    JobSummary,
    WebhookDelivery,
]

# What the server calls to record into a journal: not for users to call.
JOURNAL_INTERNALS = ("record", "enter", "leave", "open_pause", "note_event_applied")

# What a test reads from a journal (the reliability suite relies on every one of these).
JOURNAL_READING_API = {
    "requests",
    "in_flight",
    "max_in_flight",
    "pause_windows",
    "entries",
    "count",
    "puts",
    "events",
    "item_history",
    "resent_after_ack",
    "final_events_applied",
    "requests_during_pause",
    "wait_idle",
    "webhook_deliveries",
}


def test_the_public_names_are_pinned() -> None:
    """`pleo_export_async.testing` exports exactly these names, and no other public attribute."""
    assert set(pleo_export_async.testing.__all__) == PUBLIC_TESTING_API
    for name in PUBLIC_TESTING_API:
        assert getattr(pleo_export_async.testing, name) is not None
    # Submodules: `pytest_plugin` (imported by pytest through its entry point) is public too.
    public_attributes = {
        name for name in vars(pleo_export_async.testing) if not name.startswith(("_", "@"))
    }
    assert public_attributes <= PUBLIC_TESTING_API | {"pytest_plugin"}


@pytest.mark.parametrize("cls", PUBLIC_CLASSES, ids=lambda cls: cls.__name__)
def test_public_classes_name_their_public_module(cls: type) -> None:
    """Each public class's module is `pleo_export_async.testing`, as its repr shows."""
    assert cls.__module__ == "pleo_export_async.testing"
    assert repr(cls) == f"<class 'pleo_export_async.testing.{cls.__name__}'>"
    assert getattr(pleo_export_async.testing, cls.__name__) is cls


def test_instant_retries_names_its_public_module() -> None:
    """`instant_retries`, public only from `pleo_export_async.testing`, says so in help()."""
    assert pleo_export_async.testing.instant_retries.__module__ == "pleo_export_async.testing"


@pytest.mark.parametrize("cls", [FakePleo, Journal], ids=lambda cls: cls.__name__)
def test_help_shows_no_internals(cls: type) -> None:
    """help() of FakePleo and Journal lists no method of the server's own bookkeeping."""
    text = pydoc.plain(pydoc.render_doc(cls))
    for name in JOURNAL_INTERNALS:
        assert not re.search(rf"^[\s|]*{name}\(", text, flags=re.MULTILINE), name
    shown = {name for name in dir(cls) if not name.startswith("_")}
    assert not shown & set(JOURNAL_INTERNALS)


def test_the_journal_reading_api_is_public() -> None:
    """Every way a test reads a journal is a public, documented member of `Journal`."""
    members = {name for name in dir(Journal) if not name.startswith("_")}
    assert members == JOURNAL_READING_API
    for name in JOURNAL_READING_API:
        assert getattr(Journal, name).__doc__, name


def test_fake_pleo_is_strict_by_default() -> None:
    """A FakePleo made with no arguments is strict; leniency is asked for by name."""
    assert FakePleo().strict is True
    assert FakePleo(strict=False).strict is False


def test_the_fake_pleo_signature_shows_values_not_private_names() -> None:
    """FakePleo's signature (what help() and the reference show) names no private module, and
    its limits are the ones the fake's spec module holds."""
    signature = inspect.signature(FakePleo)
    assert "_spec" not in str(signature)
    assert signature.parameters["max_items_per_update"].default == _spec.MAX_ITEMS_PER_UPDATE
    assert (
        signature.parameters["access_token_lifetime"].default == _spec.ACCESS_TOKEN_LIFETIME_SECONDS
    )
