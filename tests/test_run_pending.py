"""`client.run_pending`: workers that share a ledger share a company's open jobs out, each job
worked by one of them at a time and closed by exactly one final event (R11, R17, R18)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest

from helpers import client_for
from pleo_export_async import (
    CompletionOutcome,
    ExportItem,
    InvalidInput,
    ItemFailureReasonType,
    ItemUpdate,
    JobEvent,
    Ledger,
    MemoryLedger,
    PermissionDenied,
    PleoExportClient,
    PostgresLedger,
)
from pleo_export_async.testing import FakePleo, Faults, FaultSpec

pytestmark = pytest.mark.usefixtures("instant")

OTHER_COMPANY = "0b5f3a2e-7c1d-4e8f-9a6b-2d4c6e8f0a1b"


async def wait_until(condition: Callable[[], bool], seconds: float = 60) -> None:
    """Poll the fake's state (it has no events to await) until `condition` holds."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def counting_handler(calls: Counter[str]) -> object:
    async def handler(item: ExportItem) -> ItemUpdate:
        calls[item.accounting_entry_id] += 1
        await asyncio.sleep(0)
        if item.accounting_entry_id.endswith(("0", "5")):
            return ItemUpdate.failed(
                item.accounting_entry_id,
                reason="Account No. 6310 does not exist in the Accounting System.",
                reason_type=ItemFailureReasonType.ACCOUNT_UNKNOWN,
            )
        return ItemUpdate.successful(item.accounting_entry_id, external_id="JE-1")

    return handler


async def run_until_closed(
    fake: FakePleo, workers: list[tuple[PleoExportClient, Ledger]], handler: object, jobs: int
) -> list[dict[str, CompletionOutcome]]:
    """Run every worker's run_pending until the fake shows every job closed, then stop them."""
    stop = asyncio.Event()
    runs = [
        asyncio.create_task(
            client.run_pending(
                handler,  # type: ignore[arg-type]
                ledger=ledger,
                poll_interval=0.05,
                stop=stop,
            )
        )
        for client, ledger in workers
    ]

    def all_closed() -> bool:
        return len(fake.journal.final_events_applied()) >= jobs or any(run.done() for run in runs)

    try:
        await wait_until(all_closed, seconds=120)
    finally:
        stop.set()
    return list(await asyncio.gather(*runs))


def assert_each_job_closed_once(
    fake: FakePleo, job_ids: list[str], outcomes: list[dict[str, CompletionOutcome]]
) -> None:
    by_job = Counter(entry.job_id for entry in fake.journal.final_events_applied())
    assert by_job == Counter(job_ids), "every job gets exactly one final event"
    assert fake.journal.resent_after_ack() == {}
    finished = [job_id for outcome in outcomes for job_id in outcome]
    assert Counter(finished) == Counter(job_ids), "each job is reported by the worker closing it"
    for outcome in outcomes:
        for result in outcome.values():
            assert result.event is JobEvent.COMPLETED_WITH_ERRORS


@contextlib.asynccontextmanager
async def postgres_workers(
    fake: FakePleo, dsn: str, schema: str, count: int
) -> AsyncIterator[list[tuple[PleoExportClient, Ledger]]]:
    async with contextlib.AsyncExitStack() as stack:
        workers: list[tuple[PleoExportClient, Ledger]] = []
        for _ in range(count):
            ledger = await stack.enter_async_context(
                PostgresLedger(dsn, schema=schema, lease_ttl=3.0)
            )
            client = await stack.enter_async_context(client_for(fake, timeout=0.5))
            workers.append((client, ledger))
        yield workers


async def test_three_postgres_workers_share_the_jobs_and_close_each_once(
    postgres_dsn: str, postgres_schema: str
) -> None:
    """Three workers, each with its own PostgresLedger on one database, close every pending job
    once, call the handler once per item, and resend nothing acknowledged, under faults."""
    faults = Faults(
        server_error=FaultSpec(probability=0.05),
        lost_response=FaultSpec(probability=0.05),
        lost_event_response=FaultSpec(probability=0.3),
    )
    async with FakePleo(seed=11, strict=True, faults=faults) as fake:
        jobs = [fake.create_job(items=120 + 10 * n, status="pending") for n in range(6)]
        calls: Counter[str] = Counter()
        async with postgres_workers(fake, postgres_dsn, postgres_schema, 3) as workers:
            outcomes = await run_until_closed(fake, workers, counting_handler(calls), len(jobs))
        assert_each_job_closed_once(fake, [job.id for job in jobs], outcomes)
        every_item = [entry_id for job in jobs for entry_id in job.item_ids]
        assert calls == Counter(every_item), "no item went to the ERP twice"
        assert all(fake.job_status(job.id) == "completed_with_errors" for job in jobs)


async def test_workers_sharing_a_memory_ledger_share_the_jobs_in_one_process() -> None:
    """Two clients of one process that share a MemoryLedger close each job once between them."""
    async with FakePleo(seed=12, strict=True) as fake:
        jobs = [fake.create_job(items=150, status="pending") for _ in range(4)]
        ledger = MemoryLedger()
        calls: Counter[str] = Counter()
        async with client_for(fake) as first, client_for(fake) as second:
            outcomes = await run_until_closed(
                fake, [(first, ledger), (second, ledger)], counting_handler(calls), len(jobs)
            )
        assert_each_job_closed_once(fake, [job.id for job in jobs], outcomes)
        assert max(calls.values()) == 1


async def test_once_works_the_open_jobs_of_the_company_then_returns_their_outcomes() -> None:
    """With once=True it closes the company's pending and in_progress jobs, oldest first, leaves
    other companies' and closed jobs alone, and returns the outcomes by job ID."""
    async with FakePleo(seed=13, strict=True) as fake:
        pending = fake.create_job(items=30, status="pending")
        running = fake.create_job(items=20, status="in_progress")
        other = fake.create_job(items=10, status="pending", company_id=OTHER_COMPANY)
        fake.create_job(items=5, status="completed")
        calls: Counter[str] = Counter()
        async with client_for(fake) as client:
            outcomes = await client.run_pending(
                counting_handler(calls),  # type: ignore[arg-type]
                ledger=MemoryLedger(),
                company_id=fake.company_id,
                jobs_at_once=2,
                once=True,
            )
        assert set(outcomes) == {pending.id, running.id}
        assert outcomes[pending.id].successful + outcomes[pending.id].failed == 30
        assert fake.job_status(other.id) == "pending"
        assert [entry.job_id for entry in fake.journal.final_events_applied()] in (
            [pending.id, running.id],
            [running.id, pending.id],
        )


async def test_a_job_held_by_another_worker_is_skipped_and_taken_up_once_it_is_free() -> None:
    """A job another worker holds is passed over without waiting, the other jobs go on, and a
    later round takes it up once its holder lets go."""
    async with FakePleo(seed=14, strict=True) as fake:
        held = fake.create_job(items=40, status="pending")
        free = fake.create_job(items=40, status="pending")
        ledger = MemoryLedger()
        calls: Counter[str] = Counter()
        async with client_for(fake) as holder, client_for(fake) as worker:
            stop = asyncio.Event()
            release = asyncio.Event()

            async def hold_it() -> None:
                async with holder.job(held.id, ledger=ledger).hold():
                    await release.wait()

            holding = asyncio.create_task(hold_it())
            await asyncio.sleep(0)
            running = asyncio.create_task(
                worker.run_pending(
                    counting_handler(calls),  # type: ignore[arg-type]
                    ledger=ledger,
                    poll_interval=0.05,
                    stop=stop,
                )
            )
            await wait_until(lambda: fake.job_status(free.id) == "completed_with_errors")
            assert fake.job_status(held.id) == "pending", "the held job was not touched"
            assert not any(entry_id in calls for entry_id in held.item_ids)
            release.set()
            await holding
            await wait_until(lambda: fake.job_status(held.id) == "completed_with_errors")
            stop.set()
            outcomes = await running
        assert set(outcomes) == {held.id, free.id}
        assert len(fake.journal.final_events_applied()) == 2


async def test_stop_leaves_the_unfinished_job_in_progress_with_no_final_event() -> None:
    """Setting stop ends the call: the job under way sends what it made, no final event, and
    stays in_progress for the next worker."""
    async with FakePleo(seed=15, strict=True) as fake:
        job = fake.create_job(items=400, status="pending")
        stop = asyncio.Event()
        handled = 0

        async def slow_handler(item: ExportItem) -> ItemUpdate:
            nonlocal handled
            handled += 1
            if handled == 150:
                stop.set()
            await asyncio.sleep(0.001)
            return ItemUpdate.successful(item.accounting_entry_id, external_id="JE-2")

        async with client_for(fake) as client:
            outcomes = await client.run_pending(
                slow_handler, ledger=MemoryLedger(), poll_interval=0.05, stop=stop
            )
        assert outcomes == {}
        assert fake.job_status(job.id) == "in_progress"
        assert fake.journal.final_events_applied() == []
        assert fake.journal.resent_after_ack() == {}


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"jobs_at_once": 0}, "jobs_at_once"),
        ({"jobs_at_once": True}, "jobs_at_once"),
        ({"concurrency": -1}, "concurrency"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"poll_interval": float("nan")}, "poll_interval"),
        ({"once": "yes"}, "once"),
        ({"company_id": "acme"}, "company_id"),
    ],
)
async def test_bad_arguments_raise_invalid_input_naming_the_field_before_any_request(
    options: dict[str, object], field: str
) -> None:
    """A bad argument raises InvalidInput that names it, and nothing is sent."""
    async with FakePleo(seed=16, strict=True) as fake:
        fake.create_job(items=3, status="pending")
        async with client_for(fake) as client:
            with pytest.raises(InvalidInput) as raised:
                await client.run_pending(counting_handler(Counter()), **options)  # type: ignore[arg-type]
        assert raised.value.field == field
        assert fake.journal.entries() == []


async def test_once_raises_the_listings_own_error_when_pleo_refuses_the_credential() -> None:
    """With once=True, a listing Pleo refuses raises PermissionDenied itself, not an
    ExceptionGroup, and nothing else is sent."""
    async with FakePleo(seed=17, strict=True, faults=Faults(forbidden=FaultSpec(at={1}))) as fake:
        fake.create_job(items=3, status="pending")
        async with client_for(fake) as client:
            with pytest.raises(PermissionDenied):
                await client.run_pending(
                    counting_handler(Counter()),  # type: ignore[arg-type]
                    ledger=MemoryLedger(),
                    once=True,
                )
        assert [entry.method for entry in fake.journal.entries()] == ["GET"]


async def test_a_service_keeps_polling_when_a_listing_fails_past_the_retries() -> None:
    """Without once, a listing that fails past the retries is logged and the next round goes
    on to close the job."""
    async with FakePleo(seed=18, strict=True, faults=Faults(forbidden=FaultSpec(at={1}))) as fake:
        job = fake.create_job(items=20, status="pending")
        stop = asyncio.Event()
        async with client_for(fake) as client:
            running = asyncio.create_task(
                client.run_pending(
                    counting_handler(Counter()),  # type: ignore[arg-type]
                    ledger=MemoryLedger(),
                    poll_interval=0.05,
                    stop=stop,
                )
            )
            await wait_until(lambda: fake.job_status(job.id) == "completed_with_errors")
            stop.set()
            outcomes = await running
        assert set(outcomes) == {job.id}
