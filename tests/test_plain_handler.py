"""`process_job` and `run_pending` take an async handler (issue 23, R17): what cannot be called, or
gives async iterators, is refused before any request; any other callable must give an awaitable
when called, and the first call that does not stops the workflow with `InvalidInput`, nothing
sent for the items and the job left open."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from helpers import client_for
from pleo_export_async import ExportItem, InvalidInput, ItemUpdate, JobEvent
from pleo_export_async.testing import FakePleo

pytestmark = pytest.mark.usefixtures("instant")

OTHER_COMPANY = "0b5f3a2e-7c1d-4e8f-9a6b-2d4c6e8f0a1b"


def booked(item: ExportItem, prefix: str = "JE") -> ItemUpdate:
    entry_id = item.accounting_entry_id
    return ItemUpdate.successful(entry_id, external_id=f"{prefix}-{entry_id[:8]}")


async def book(item: ExportItem, prefix: str = "JE") -> ItemUpdate:
    await asyncio.sleep(0)
    return booked(item, prefix)


class Connector:
    """A connector object whose handler is a method, or the object itself."""

    async def __call__(self, item: ExportItem) -> ItemUpdate:
        return await book(item)

    async def book(self, item: ExportItem) -> ItemUpdate:
        return await book(item)


def started_events(fake: FakePleo, job_id: str) -> list[Any]:
    return [e for e in fake.journal.events(job_id) if e.body.get("event") == "started"]


@pytest.mark.parametrize(
    "handler",
    [
        book,
        functools.partial(book, prefix="INV"),
        Connector(),
        Connector().book,
        functools.partial(Connector()),
        lambda item: book(item),
    ],
    ids=["async def", "partial", "async __call__", "async method", "partial of object", "lambda"],
)
async def test_every_kind_of_async_callable_is_taken(
    fake: FakePleo, handler: Callable[[ExportItem], Awaitable[ItemUpdate]]
) -> None:
    """An async function, a partial of one, an object or method whose call is async, or a lambda
    that returns a coroutine: each has every item's result sent and the job completed once."""
    job = fake.create_job(items=12, status="pending")
    async with client_for(fake) as client:
        outcome = await client.process_job(job.id, handler)
    assert outcome is not None
    assert (outcome.event, outcome.successful) == (JobEvent.COMPLETED, 12)
    sent = [item["accountingEntryId"] for entry in fake.journal.puts(job.id) for item in entry.body]
    assert sorted(sent) == sorted(job.item_ids)
    assert len(fake.journal.final_events_applied(job.id)) == 1


async def test_a_plain_function_is_refused_at_its_first_call_and_the_job_stays_open(
    fake: FakePleo,
) -> None:
    """A plain function that returns an ItemUpdate is called once, then process_job raises
    InvalidInput naming the handler: no item update and no final event are sent, and an
    async handler finishes the job afterwards without a second `started`."""
    job = fake.create_job(items=30, status="pending")
    calls: list[str] = []

    def plain(item: ExportItem) -> ItemUpdate:
        calls.append(item.accounting_entry_id)
        return booked(item)

    async with client_for(fake) as client:
        with pytest.raises(InvalidInput) as raised:
            await client.process_job(job.id, plain, concurrency=8)  # type: ignore[arg-type]
        assert len(calls) == 1
        assert fake.journal.puts(job.id) == []
        assert fake.journal.final_events_applied(job.id) == []
        assert fake.job_status(job.id) == "in_progress"
        outcome = await client.process_job(job.id, book)
    error = raised.value
    assert (error.field, error.value) == ("handler", plain)
    assert "returned ItemUpdate, not an awaitable" in error.problem
    assert "async function of an ExportItem" in error.problem
    assert outcome is not None
    assert (outcome.event, outcome.successful) == (JobEvent.COMPLETED, 30)
    assert len(started_events(fake, job.id)) == 1
    assert len(fake.journal.final_events_applied(job.id)) == 1


async def test_a_call_that_raises_fails_its_item_whatever_the_handler_is(fake: FakePleo) -> None:
    """A plain function that raises tells nothing of what it would return: the item fails with
    unexpected_failure, as for an async handler that raises (R17)."""
    job = fake.create_job(items=3, status="pending")

    def refuses(item: ExportItem) -> ItemUpdate:
        raise ConnectionError("ERP unreachable")

    async with client_for(fake) as client:
        outcome = await client.process_job(job.id, refuses)  # type: ignore[arg-type]
    assert outcome is not None
    assert (outcome.event, outcome.failed) == (JobEvent.FAILED, 3)
    for entry_id in job.item_ids:
        item = fake.item(job.id, entry_id)
        assert item["failureReasonType"] == "unexpected_failure"
        assert item["failureReason"] == "ConnectionError: ERP unreachable"


async def yields(item: ExportItem) -> AsyncIterator[ItemUpdate]:
    yield booked(item)


class Yielder:
    async def __call__(self, item: ExportItem) -> AsyncIterator[ItemUpdate]:
        yield booked(item)


NOT_HANDLERS = [
    ("book", "must be an async function of an ExportItem"),
    (None, "must be an async function of an ExportItem"),
    (ItemUpdate.successful("3f2c1d4e-5b6a-4c7d-8e9f-0a1b2c3d4e5f"), "must be an async function"),
    (yields, "an async generator function"),
    (functools.partial(yields), "an async generator function"),
    (Yielder(), "an async generator function"),
]


@pytest.mark.parametrize(("handler", "problem"), NOT_HANDLERS, ids=repr)
@pytest.mark.parametrize("call", ["process_job", "run_pending"])
async def test_what_can_never_be_a_handler_is_refused_before_any_request(
    handler: object, problem: str, call: str
) -> None:
    """Something that cannot be called, or an async generator function, raises InvalidInput
    naming `handler` and the value, and nothing is sent."""
    async with FakePleo(seed=3, strict=True) as fake:
        job = fake.create_job(items=3, status="pending")
        async with client_for(fake) as client:
            calls: dict[str, Callable[[], Awaitable[object]]] = {
                "process_job": lambda: client.process_job(job.id, handler),  # type: ignore[arg-type]
                "run_pending": lambda: client.run_pending(handler, once=True),  # type: ignore[arg-type]
            }
            with pytest.raises(InvalidInput) as raised:
                await calls[call]()
        assert fake.journal.entries() == []
    assert (raised.value.field, raised.value.value) == ("handler", handler)
    assert problem in raised.value.problem


async def test_run_pending_raises_for_a_plain_handler_and_takes_no_other_job() -> None:
    """A worker whose handler is a plain function raises InvalidInput at once, not after the
    poll interval: the first job was started and its handler called once, the second job of the
    listing was not touched, and nothing else was sent."""
    async with FakePleo(seed=4, strict=True) as fake:
        first = fake.create_job(items=5, status="pending")
        second = fake.create_job(items=5, status="pending", company_id=OTHER_COMPANY)
        calls: list[str] = []

        def plain(item: ExportItem) -> ItemUpdate:
            calls.append(item.accounting_entry_id)
            return booked(item)

        async with client_for(fake) as client, asyncio.timeout(10):
            with pytest.raises(InvalidInput) as raised:
                await client.run_pending(plain, poll_interval=600)  # type: ignore[arg-type]
        assert (raised.value.field, raised.value.value) == ("handler", plain)
        assert len(calls) == 1
        assert calls[0] in first.item_ids
        assert len(started_events(fake, first.id)) == 1
        assert fake.journal.events(second.id) == []
        assert fake.journal.puts() == []
        assert fake.job_status(first.id) == "in_progress"
        assert fake.job_status(second.id) == "pending"
