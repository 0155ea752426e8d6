"""`client.run_pending`: workers that share a ledger share the companies' open jobs out in
Pleo's order, one job of a company at a time, oldest first (R19), each job worked by one of them
at a time and closed by exactly one final event (R11, R17, R18)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from helpers import (
    assert_in_pleos_order,
    client_for,
    company,
    created_minutes_ago,
    wait_until,
)
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
    of a company once and one after another, call the handler once per item, and resend
    nothing acknowledged, under faults."""
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
        assert_in_pleos_order(fake, jobs)


async def test_replicas_keep_pleos_order_per_company_and_work_companies_in_parallel(
    postgres_dsn: str, postgres_schema: str
) -> None:
    """Three workers on one PostgresLedger, two companies at once each, over 4 companies with 3
    jobs each: per company no two jobs in progress at once, oldest first; all 12 close once,
    nothing resent, and jobs of different companies were in progress at the same time."""
    async with FakePleo(seed=19, strict=True, faults=Faults(latency=(0.001, 0.004))) as fake:
        # Listed in creation order, which is not createdAt's: the oldest is the second made.
        made = [
            (minutes, created_minutes_ago(fake, minutes, company(number)))
            for minutes in (2, 3, 1)
            for number in range(4)
        ]
        jobs = [job for _, job in sorted(made, key=lambda made: -made[0])]
        calls: Counter[str] = Counter()
        async with postgres_workers(fake, postgres_dsn, postgres_schema, 3) as workers:
            stop = asyncio.Event()
            runs = [
                asyncio.create_task(
                    client.run_pending(
                        counting_handler(calls),  # type: ignore[arg-type]
                        ledger=ledger,
                        companies_at_once=2,
                        poll_interval=0.05,
                        stop=stop,
                    )
                )
                for client, ledger in workers
            ]
            try:
                await wait_until(
                    lambda: (
                        len(fake.journal.final_events_applied()) >= len(jobs)
                        or any(run.done() for run in runs)
                    ),
                    seconds=120,
                )
            finally:
                stop.set()
            outcomes = list(await asyncio.gather(*runs))
        assert_each_job_closed_once(fake, [job.id for job in jobs], outcomes)
        assert calls == Counter(entry_id for job in jobs for entry_id in job.item_ids)
        assert_in_pleos_order(fake, jobs)
        starts = sorted(fake.journal.events(job.id)[0].received_at for job in jobs[:4])
        first_closed = min(
            fake.journal.final_events_applied(job.id)[0].answered_at or starts[-1]
            for job in jobs[:4]
        )
        assert starts[1] < first_closed, "two companies' first jobs were in progress at once"


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
                companies_at_once=2,
                once=True,
            )
        assert set(outcomes) == {pending.id, running.id}
        assert outcomes[pending.id].successful + outcomes[pending.id].failed == 30
        assert fake.job_status(other.id) == "pending"
        # The job in progress first, though newer: starting the pending one would make two.
        assert [entry.job_id for entry in fake.journal.final_events_applied()] == [
            running.id,
            pending.id,
        ]
        assert fake.journal.events(pending.id)[0].received_at > (
            fake.journal.final_events_applied(running.id)[0].answered_at or 0
        )


async def test_a_held_oldest_job_holds_its_company_back_and_the_others_go_on() -> None:
    """While another worker holds a company's oldest job, the company's newer job is not
    started and other companies' jobs are closed; once it is let go, both are closed in order."""
    async with FakePleo(seed=14, strict=True) as fake:
        held = fake.create_job(items=40, status="pending")
        newer = fake.create_job(items=40, status="pending")
        elsewhere = fake.create_job(items=40, status="pending", company_id=OTHER_COMPANY)
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
                    companies_at_once=2,
                    poll_interval=0.05,
                    stop=stop,
                )
            )
            await wait_until(
                lambda: fake.job_status(elsewhere.id) == "completed_with_errors", seconds=60
            )
            await asyncio.sleep(0.2)  # rounds go by while the oldest job is held
            assert fake.job_status(held.id) == "pending", "the held job was not touched"
            assert fake.job_status(newer.id) == "pending", "the newer job waits for the held one"
            assert not any(entry_id in calls for entry_id in [*held.item_ids, *newer.item_ids])
            release.set()
            await holding
            await wait_until(
                lambda: fake.job_status(newer.id) == "completed_with_errors", seconds=60
            )
            stop.set()
            outcomes = await running
        assert set(outcomes) == {held.id, newer.id, elsewhere.id}
        assert_in_pleos_order(fake, [held, newer])


async def test_jobs_at_once_is_the_deprecated_name_of_companies_at_once() -> None:
    """jobs_at_once= still works, as companies_at_once=, with a DeprecationWarning; given with
    a different companies_at_once it is bad input, before any request."""
    async with FakePleo(seed=20, strict=True) as fake:
        first = fake.create_job(items=10, status="pending")
        second = fake.create_job(items=10, status="pending", company_id=OTHER_COMPANY)
        async with client_for(fake) as client:
            with (
                pytest.raises(InvalidInput) as raised,
                pytest.warns(DeprecationWarning, match="jobs_at_once"),
            ):
                await client.run_pending(
                    counting_handler(Counter()),  # type: ignore[arg-type]
                    companies_at_once=3,
                    jobs_at_once=2,
                    once=True,
                )
            assert raised.value.field == "jobs_at_once"
            assert fake.journal.entries() == []
            with pytest.warns(DeprecationWarning, match="companies_at_once"):
                outcomes = await client.run_pending(
                    counting_handler(Counter()),  # type: ignore[arg-type]
                    jobs_at_once=2,
                    once=True,
                )
        assert set(outcomes) == {first.id, second.id}


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
        ({"companies_at_once": 0}, "companies_at_once"),
        ({"companies_at_once": True}, "companies_at_once"),
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
            await wait_until(lambda: fake.job_status(job.id) == "completed_with_errors", seconds=60)
            stop.set()
            outcomes = await running
        assert set(outcomes) == {job.id}


async def test_with_every_company_slot_busy_the_rounds_go_on_and_the_next_company_waits() -> None:
    """One company at a time, two companies: while the first's job runs, the worker keeps
    listing (a service stays ready), the second's job is not started, and it is taken as soon
    as the first's turn ends."""
    async with FakePleo(seed=21, strict=True) as fake:
        first = fake.create_job(items=60, status="pending")
        second = fake.create_job(items=20, status="pending", company_id=OTHER_COMPANY)
        release = asyncio.Event()

        async def slow_first(item: ExportItem) -> ItemUpdate:
            if item.accounting_entry_id in first.item_ids:
                await release.wait()
            return ItemUpdate.successful(item.accounting_entry_id, external_id="JE-3")

        def rounds() -> int:
            return len(
                [
                    entry
                    for entry in fake.journal.entries("GET")
                    if entry.path == "/v3/export-jobs" and "company_id" not in entry.query
                ]
            )

        stop = asyncio.Event()
        async with client_for(fake) as client:
            running = asyncio.create_task(
                client.run_pending(slow_first, ledger=MemoryLedger(), poll_interval=0.05, stop=stop)
            )
            await wait_until(lambda: bool(fake.journal.events(first.id)), seconds=60)
            listed = rounds()
            await wait_until(lambda: rounds() >= listed + 3, seconds=60)
            assert fake.journal.events(second.id) == [], "one company at a time"
            release.set()
            await wait_until(lambda: fake.job_status(second.id) == "completed", seconds=60)
            stop.set()
            outcomes = await running
        assert set(outcomes) == {first.id, second.id}
        (closed,) = fake.journal.final_events_applied(first.id)
        assert closed.answered_at is not None
        assert fake.journal.events(second.id)[0].received_at > closed.answered_at


async def test_a_postgres_ledger_never_opened_with_async_with_still_keeps_the_turns(
    postgres_dsn: str, postgres_schema: str
) -> None:
    """run_pending with a PostgresLedger that was only constructed connects it on first use,
    for the company's turn as for the job."""
    async with FakePleo(seed=22, strict=True) as fake:
        job = fake.create_job(items=20, status="pending")
        ledger = PostgresLedger(postgres_dsn, schema=postgres_schema, lease_ttl=3.0)
        try:
            async with client_for(fake, timeout=0.5) as client:
                outcomes = await client.run_pending(
                    counting_handler(Counter()),  # type: ignore[arg-type]
                    ledger=ledger,
                    once=True,
                )
        finally:
            await ledger.close()
        assert set(outcomes) == {job.id}
