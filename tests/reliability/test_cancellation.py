"""Cancellation at random moments of update(), complete() and process_job (R12): the cancelled
call sends no final event and re-raises CancelledError, the ledger stays consistent, no task of
the library is left running, and a new call finishes the job with the usual guarantees."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import client_for
from pleo_export_async import (
    CompletionOutcome,
    ExportItem,
    ItemUpdate,
    JobEvent,
    JobFinished,
    PleoExportClient,
)
from pleo_export_async.testing import FakePleo, Faults, instant_retries

from .checks import (
    RETRY,
    JobPlan,
    check_job,
    finish,
    item_update,
    job_plan,
    library_tasks,
    phase_of,
    resent_after_known_ack,
    settle_loop,
    slow_source,
    wait_for_requests,
)
from .figures import Figures
from .scale import profile


@dataclass(frozen=True)
class CancelRun:
    items: int
    failed_share: float
    unknown: int
    max_concurrency: int
    batch_size: int
    moment: float  # cancel once the fake has received this share of the requests expected
    extra_delay: float  # and this much later
    new_run: bool  # finish with a new JobRun on the same ledger, or with the cancelled one
    async_source: bool
    seed: int


@st.composite
def cancel_runs(draw: st.DrawFn) -> CancelRun:
    return CancelRun(
        items=draw(st.integers(min_value=1, max_value=1500)),
        failed_share=draw(st.sampled_from([0.0, 0.2, 1.0])),
        unknown=draw(st.sampled_from([0, 0, 2])),
        max_concurrency=draw(st.integers(min_value=1, max_value=8)),
        batch_size=draw(st.integers(min_value=10, max_value=100)),
        moment=draw(st.floats(min_value=0.0, max_value=1.0, exclude_max=True)),
        extra_delay=draw(st.sampled_from([0.0, 0.0, 0.0005, 0.002, 0.006])),
        new_run=draw(st.booleans()),
        async_source=draw(st.booleans()),
        seed=draw(st.integers(min_value=0, max_value=2**31)),
    )


#: Latency that keeps requests in flight long enough for a cancellation to land inside them.
LATENCY = Faults(latency=(0.001, 0.006))


def _client(fake: FakePleo, run: CancelRun) -> PleoExportClient:
    return client_for(
        fake,
        max_concurrency=run.max_concurrency,
        batch_size=run.batch_size,
        flush_after=0.02,
        retry=RETRY,
    )


def _source(plan: JobPlan, run: CancelRun) -> Iterable[ItemUpdate] | AsyncIterator[ItemUpdate]:
    if run.async_source:
        return slow_source(plan.updates, pause_every=97, pause=0.002)
    return plan.updates


async def _cancel(
    client: PleoExportClient,
    fake: FakePleo,
    job_id: str,
    run: CancelRun,
    task: asyncio.Task[Any],
    figures: Figures,
    *,
    requests: int,
) -> str:
    """Cancel `task` once the fake has received `requests` requests about the job (and the run's
    extra delay later); returns the phase it was in."""
    await wait_for_requests(fake, job_id, requests, task)
    if run.extra_delay:
        await asyncio.sleep(run.extra_delay)
    phase = phase_of(fake, job_id) if not task.done() else "finished before the cancellation"
    STARTED_AT_CANCEL[job_id] = client.stats().requests
    task.cancel()
    try:
        with figures.counting_internal_errors():
            await task
    except asyncio.CancelledError:
        pass
    else:
        phase = "finished before the cancellation"
    await settle_loop()
    leftover = library_tasks()
    figures.leaked_tasks += len(leftover)
    assert leftover == [], f"tasks left running after the cancellation: {leftover}"
    return phase


async def _acknowledged_by_ledger(
    client: PleoExportClient, job_id: str, ids: list[str]
) -> set[str]:
    job_ledger = await client.ledger.open_job(job_id)
    acknowledgements = job_ledger.acknowledgements
    return {entry_id for entry_id in ids if acknowledgements.acknowledged(entry_id) is not None}


#: How many requests the job's client had begun when its call was cancelled. A request begun
#: before the cancellation may reach the fake after the fake's journal was looked at: it was
#: sent before the cancellation, not because of it.
STARTED_AT_CANCEL: dict[str, int] = {}


def _no_final_event(fake: FakePleo, job_id: str) -> None:
    """No final event was begun after the cancellation (the fake has one client per test, so
    its journal's order numbers its requests as the client began them)."""
    begun = STARTED_AT_CANCEL[job_id]
    final = [
        ordinal
        for ordinal, entry in enumerate(fake.journal.requests, start=1)
        if entry.job_id == job_id
        and entry.is_job_event
        and isinstance(entry.body, dict)
        and entry.body.get("event") != "started"
        and ordinal > begun
    ]
    assert final == [], "a cancelled call sent a final event"


def _ledger_holds_only_what_pleo_acknowledged(fake: FakePleo, job_id: str, held: set[str]) -> None:
    acknowledged = {
        entry_id for entry in fake.journal.puts(job_id) for entry_id in entry.acknowledged_ids
    }
    assert held <= acknowledged, (
        f"the ledger holds unacknowledged IDs: {sorted(held - acknowledged)[:5]}"
    )


def _check_resumed(
    fake: FakePleo,
    job_id: str,
    plan: JobPlan,
    outcome: CompletionOutcome,
    figures: Figures,
    run: CancelRun,
    held: set[str],
    resumed_at: float,
) -> None:
    """After the cancelled call and the one that finished the job: nothing the ledger held was
    sent again, and the job is whole and closed once (the resumed call's own sends are judged
    by `check_job`)."""
    resent = resent_after_known_ack(fake, job_id, timeout=30.0, cut=resumed_at, known=held)
    figures.resent_after_ack += sum(resent.values())
    assert resent == {}
    figures.take_journal(fake.journal)
    check_job(
        fake,
        job_id,
        plan,
        outcome,
        figures,
        max_concurrency=run.max_concurrency,
        timeout=30,
        resend_checked=False,
        abandoned_at=resumed_at,
    )
    figures.cancellations_survived += 1


async def _cancel_update(run: CancelRun, figures: Figures) -> None:
    async with FakePleo(seed=run.seed, strict=True, faults=LATENCY) as fake:
        job = fake.create_job(items=run.items)
        plan = job_plan(job.item_ids, run.failed_share, run.unknown, run.seed)
        ids = [update.accounting_entry_id for update in plan.updates]
        async with _client(fake, run) as client:
            job_run = client.job(job.id)
            task = asyncio.create_task(job_run.update(_source(plan, run)))
            puts = math.ceil(len(plan.updates) / run.batch_size)
            phase = await _cancel(
                client, fake, job.id, run, task, figures, requests=int(run.moment * puts)
            )
            _no_final_event(fake, job.id)
            held = await _acknowledged_by_ledger(client, job.id, ids)
            _ledger_holds_only_what_pleo_acknowledged(fake, job.id, held)
            finisher = client.job(job.id) if run.new_run else job_run
            # Every request that arrives before this is the cancelled call's.
            resumed_at = time.monotonic()
            with figures.counting_internal_errors():
                outcome = await finish(finisher, lambda: _source(plan, run))
            await settle_loop()
            assert library_tasks() == []
        _check_resumed(fake, job.id, plan, outcome, figures, run, held, resumed_at)
        figures.cancel_moments[f"update(): {phase}"] += 1


@settings(profile("cancel"))
@given(run=cancel_runs())
def test_update_cancelled_at_any_moment_then_finished(run: CancelRun, figures: Figures) -> None:
    """update() cancelled anywhere raises CancelledError and sends no event; what the ledger holds
    was acknowledged, and a new update() skips it and the job completes once, rightly."""
    with instant_retries():
        asyncio.run(_cancel_update(run, figures))


async def _cancel_complete(run: CancelRun, figures: Figures) -> None:
    async with FakePleo(seed=run.seed, strict=True) as fake:
        job = fake.create_job(items=run.items)
        plan = job_plan(job.item_ids, run.failed_share, run.unknown, run.seed)
        async with _client(fake, run) as client:
            job_run = client.job(job.id)
            await job_run.update(plan.updates)
            # Every request of complete() in flight for a while: GET the job, POST the event.
            fake.faults = Faults(latency=0.004)
            before = sum(1 for entry in fake.journal.requests if entry.job_id == job.id)
            task = asyncio.create_task(job_run.complete())
            phase = await _cancel(
                client, fake, job.id, run, task, figures, requests=before + int(run.moment * 2)
            )
            applied = fake.journal.final_events_applied(job.id)
            assert all(entry.body["event"] == plan.expected_event().value for entry in applied)
            resumed_at = time.monotonic()
            if run.new_run:
                # A new JobRun on the ledger, as after a restart: it offers its results again
                # (what was acknowledged is skipped) and completes.
                finisher = client.job(job.id)
                with figures.counting_internal_errors():
                    # JobFinished: the cancelled call's event had landed, and is found delivered.
                    with contextlib.suppress(JobFinished):
                        await finisher.update(plan.updates)
                    outcome = await finisher.complete()
            else:
                finisher = job_run
                with figures.counting_internal_errors():
                    outcome = await finisher.complete()
            again = await finisher.complete()
            assert again == outcome
        assert all(
            entry.body.get("event") != JobEvent.FAILED.value
            or plan.expected_event() is JobEvent.FAILED
            for entry in fake.journal.events(job.id)
            if isinstance(entry.body, dict)
        ), "a cancellation turned into a failed event"
        figures.take_journal(fake.journal)
        check_job(
            fake,
            job.id,
            plan,
            outcome,
            figures,
            max_concurrency=run.max_concurrency,
            timeout=30,
            abandoned_at=resumed_at,
        )
        figures.cancellations_survived += 1
        figures.cancel_moments[f"complete(): {phase}"] += 1


@settings(profile("cancel"))
@given(run=cancel_runs())
def test_complete_cancelled_at_any_moment_then_completed_once(
    run: CancelRun, figures: Figures
) -> None:
    """complete() cancelled before, during or after its event's request never turns into
    `failed`; the next complete() finds a delivered event and the job gets exactly one."""
    with instant_retries():
        asyncio.run(_cancel_complete(run, figures))


async def _cancel_process_job(run: CancelRun, figures: Figures) -> None:
    async with FakePleo(seed=run.seed, strict=True, faults=LATENCY) as fake:
        job = fake.create_job(items=run.items, status="pending" if run.new_run else "in_progress")
        numbers = {entry_id: n for n, entry_id in enumerate(job.item_ids)}

        async def handler(item: ExportItem) -> ItemUpdate:
            entry_id = item.accounting_entry_id
            if numbers[entry_id] % 50 == 0:
                await asyncio.sleep(0.001)  # an ERP call that takes a moment
            return item_update(entry_id, numbers[entry_id], run.failed_share, run.seed)

        async with _client(fake, run) as client:
            task = asyncio.create_task(client.process_job(job.id, handler, concurrency=8))
            pages = math.ceil(run.items / 100)
            # GET the job, POST started, the pages of items and of export items, the PUTs.
            expected = 2 + 2 * pages + math.ceil(run.items / run.batch_size)
            phase = await _cancel(
                client, fake, job.id, run, task, figures, requests=int(run.moment * expected)
            )
            # An event already sent when the cancellation came is not the cancellation's.
            if phase in (
                "before any request",
                "between requests",
                "item updates in flight",
                "reading the job or its items",
            ):
                _no_final_event(fake, job.id)
            held = await _acknowledged_by_ledger(client, job.id, job.item_ids)
            _ledger_holds_only_what_pleo_acknowledged(fake, job.id, held)
            resumed_at = time.monotonic()
            with figures.counting_internal_errors():
                outcome = await client.process_job(job.id, handler, concurrency=8)
            assert outcome is not None
            await settle_loop()
            assert library_tasks() == []
        plan = JobPlan(
            known=[item_update(i, numbers[i], run.failed_share, run.seed) for i in job.item_ids],
            unknown=[],
        )
        _check_resumed(fake, job.id, plan, outcome, figures, run, held, resumed_at)
        figures.cancel_moments[f"process_job(): {phase}"] += 1


@settings(profile("cancel"))
@given(run=cancel_runs())
def test_process_job_cancelled_at_any_moment_then_resumed(run: CancelRun, figures: Figures) -> None:
    """process_job cancelled while reading, handling, sending or completing sends no final event;
    called again, it resends nothing the ledger holds and completes the job once."""
    with instant_retries():
        asyncio.run(_cancel_process_job(run, figures))
