"""Errors that read well: the field an error names is the parameter the caller wrote, the
grammar is right, an empty text where one is needed is refused, and every public coroutine
says in its docstring which exceptions it raises."""

from __future__ import annotations

import builtins
import inspect
import re
import uuid
from enum import StrEnum
from typing import Any

import pytest

import pleo_export_async
from pleo_export_async import (
    ApiKeyAuth,
    BearerTokenAuth,
    InvalidInput,
    ItemFailureReasonType,
    ItemStatus,
    ItemUpdate,
    ItemUpdateErrorType,
    JobEvent,
    JobFailureReasonType,
    JobRun,
    JobStatus,
    MemoryLedger,
    OAuth2Auth,
    PleoExportClient,
    PostgresLedger,
    SqliteLedger,
    WebhookSubscriptions,
)
from pleo_export_async._checks import enum_member

ENTRY_ID = "3e4cc8c4-4bf5-4ee2-9a1a-7d1a4bf0ab6c"
JOB_ID = "86ead2ae-55a8-4352-81b4-0eb9868586c9"


def _refused(call: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as raised:
        call()
    return raised.value


# --- the field is the parameter the caller wrote ---------------------------------------------


@pytest.mark.parametrize("bad", ["vendor_missing", "VENDOR_UNKNOWN", "", 7, ItemStatus.FAILED])
def test_failed_names_reason_type_as_the_caller_wrote_it(bad: Any) -> None:
    """`ItemUpdate.failed(reason_type=...)` reports `reason_type`, not the wire field
    `failure_reason_type`, and says what it expected."""
    error = _refused(lambda: ItemUpdate.failed(ENTRY_ID, reason="x", reason_type=bad))
    assert error.field == "reason_type"
    assert error.value == bad
    assert str(error).startswith(f"reason_type={bad!r}: not an ItemFailureReasonType")
    assert "account_unknown" in str(error)


def test_failed_without_a_reason_type_names_reason_type() -> None:
    missing: Any = None
    error = _refused(lambda: ItemUpdate.failed(ENTRY_ID, reason="x", reason_type=missing))
    assert (error.field, error.value) == ("reason_type", None)
    assert str(error) == "reason_type=None: a failed item needs a reason_type"


def test_failed_names_reason_as_the_caller_wrote_it() -> None:
    bad: Any = b"No such VAT code"
    error = _refused(
        lambda: ItemUpdate.failed(ENTRY_ID, reason=bad, reason_type="tax_code_unknown")
    )
    assert (error.field, error.value) == ("reason", bad)
    assert "must be a string, not bytes" in str(error)


def test_the_constructor_names_its_own_fields() -> None:
    """Built directly, the fields are the constructor's: `failure_reason_type`."""
    failed: Any = "failed"
    nope: Any = "nope"
    error = _refused(lambda: ItemUpdate(ENTRY_ID, failed, failure_reason_type=nope))
    assert error.field == "failure_reason_type"
    assert "not an ItemFailureReasonType" in str(error)


# --- grammar ----------------------------------------------------------------------------------


ENUMS: list[type[StrEnum]] = [
    ItemStatus,
    ItemFailureReasonType,
    ItemUpdateErrorType,
    JobEvent,
    JobFailureReasonType,
    JobStatus,
]


@pytest.mark.parametrize("enum", ENUMS, ids=lambda enum: enum.__name__)
def test_the_article_before_an_enum_name_is_right(enum: type[StrEnum]) -> None:
    """ "not an ItemStatus", "not a JobStatus"."""
    error = _refused(lambda: enum_member("field", "nope", enum))
    article = "an" if enum.__name__[0] in "AEIOU" else "a"
    assert error.problem.startswith(f"not {article} {enum.__name__}; expected one of: ")


def test_wrong_articles_appear_in_no_message() -> None:
    """The statuses a client asks for, the status of an update, the event to complete with."""
    messages = [
        str(_refused(lambda: ItemUpdate(ENTRY_ID, "done"))),  # type: ignore[arg-type]
        str(_refused(lambda: ItemUpdate.failed(ENTRY_ID, reason_type="nope"))),
        str(_refused(lambda: enum_member("event", "closed", JobEvent))),
    ]
    assert "not an ItemStatus" in messages[0]
    assert "not an ItemFailureReasonType" in messages[1]
    assert "not a JobEvent" in messages[2]
    for message in messages:
        assert not re.search(r"\ba [AEIOU]", message), message


async def test_a_bad_status_filter_reads_not_a_job_status() -> None:
    async with PleoExportClient("http://127.0.0.1:9", auth=ApiKeyAuth("k")) as client:
        with pytest.raises(InvalidInput) as raised:
            async for _ in client.jobs(statuses=["open"]):
                pass
    assert raised.value.field == "statuses"
    assert "not a JobStatus" in str(raised.value)


# --- empty text is refused ----------------------------------------------------------------------


@pytest.mark.parametrize("empty", ["", "   ", "\n"], ids=repr)
def test_an_empty_reason_is_refused(empty: str) -> None:
    """A failure reason is shown to the bookkeeper: an empty one is refused, naming it as the
    caller wrote it; the reason may be left out instead."""
    error = _refused(
        lambda: ItemUpdate.failed(ENTRY_ID, reason=empty, reason_type="account_unknown")
    )
    assert (error.field, error.value) == ("reason", empty)
    assert "must not be empty" in str(error)
    failed = ItemUpdate(ENTRY_ID, ItemStatus.FAILED, failure_reason_type="account_unknown")  # type: ignore[arg-type]
    assert failed.failure_reason is None
    error = _refused(
        lambda: ItemUpdate(
            ENTRY_ID,
            ItemStatus.FAILED,
            failure_reason=empty,
            failure_reason_type=ItemFailureReasonType.ACCOUNT_UNKNOWN,
        )
    )
    assert error.field == "failure_reason"


async def test_an_empty_job_failure_reason_is_refused_before_any_request() -> None:
    """`complete(failure_reason="")` and `fail("")`: nothing is sent (the client has no server
    to send to)."""
    async with PleoExportClient("http://127.0.0.1:9", auth=ApiKeyAuth("k")) as client:
        run = client.job(JOB_ID)
        with pytest.raises(InvalidInput) as raised:
            await run.complete(failure_reason="")
        assert raised.value.field == "failure_reason"
        with pytest.raises(InvalidInput) as raised:
            await run.fail("  ", "validation_failure")
        assert raised.value.field == "reason"
    assert client.stats().requests == 0


def test_empty_credentials_are_refused_without_showing_them() -> None:
    for build, field in (
        (lambda: ApiKeyAuth(""), "api_key"),
        (lambda: BearerTokenAuth(" "), "access_token"),
        (lambda: OAuth2Auth("id", "", "a", "r"), "client_secret"),
    ):
        error = _refused(build)
        assert error.field == field
        assert "non-empty" in str(error)


def test_a_uuid_of_the_wrong_type_reads_well() -> None:
    error = _refused(lambda: ItemUpdate.successful(uuid.UUID(ENTRY_ID).int))  # type: ignore[arg-type]
    assert str(error).endswith("must be a UUID string, not int")


# --- every public coroutine names what it raises -----------------------------------------------

#: Names a docstring may cite besides the library's own exceptions.
OTHER_EXCEPTIONS = {"CancelledError", "AssertionError", "ExceptionGroup"}


def _public_coroutines(kind: type) -> list[str]:
    return [
        name
        for name, member in inspect.getmembers(kind)
        if (not name.startswith("_") or name == "__aenter__")
        and (inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member))
    ]


def _exception_names() -> set[str]:
    library = {
        name
        for name in pleo_export_async.__all__
        if isinstance(getattr(pleo_export_async, name), type)
        and issubclass(getattr(pleo_export_async, name), BaseException)
    }
    return library | OTHER_EXCEPTIONS | {name for name in dir(builtins) if name.endswith("Error")}


CLASSES = [
    PleoExportClient,
    JobRun,
    ApiKeyAuth,
    BearerTokenAuth,
    OAuth2Auth,
    MemoryLedger,
    SqliteLedger,
    PostgresLedger,
    WebhookSubscriptions,
]


@pytest.mark.parametrize("kind", CLASSES, ids=lambda kind: kind.__name__)
def test_every_public_coroutine_names_the_exceptions_it_raises(kind: type) -> None:
    """Its docstring has a sentence saying what it raises, and every exception it names in
    backquotes that looks like one exists."""
    known = _exception_names()
    coroutines = _public_coroutines(kind)
    assert coroutines
    silent = []
    unknown = []
    for name in coroutines:
        doc = inspect.getdoc(getattr(kind, name)) or ""
        if not re.search(r"\bRaises\b", doc):
            silent.append(name)
        for cited in re.findall(
            r"`([A-Z]\w+(?:Error|Required|Denied|Found|Finished|Leased|Lost))`", doc
        ):
            if cited not in known:
                unknown.append(f"{name}: {cited}")
    assert silent == [], f"{kind.__name__}: these say nothing of what they raise"
    assert unknown == []
