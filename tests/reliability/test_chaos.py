"""Chaos: random jobs, random fault plans on the fake, random client settings, through update()
and complete() and through process_job; every run checked from the fake's journal."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import client_for
from pleo_export_async import (
    ExportItem,
    ItemFailureReasonType,
    ItemUpdate,
)
from pleo_export_async.testing import FakePleo, instant_retries

from .checks import (
    GIVE_UP_AND_RETRY,
    RETRY,
    FaultPlan,
    JobPlan,
    check_job,
    digest,
    fault_plans,
    finish,
    item_update,
    job_plan,
    library_tasks,
    settle_loop,
    slow_source,
)
from .figures import Figures
from .scale import SCALE, profile


@dataclass(frozen=True)
class ClientSettings:
    max_concurrency: int
    batch_size: int
    flush_after: float | None


@st.composite
def job_sizes(draw: st.DrawFn) -> int:
    """Mostly small jobs, often large ones, up to the largest of the profile."""
    return draw(
        st.one_of(
            st.integers(min_value=1, max_value=40),
            st.integers(min_value=41, max_value=SCALE.max_items),
        )
    )


@st.composite
def client_settings(draw: st.DrawFn, items: int) -> ClientSettings:
    # Batches small enough to be many, not so small that a large job takes thousands of PUTs.
    smallest = max(1, math.ceil(items / 150))
    return ClientSettings(
        max_concurrency=draw(st.integers(min_value=1, max_value=16)),
        batch_size=draw(st.integers(min_value=smallest, max_value=100)),
        flush_after=draw(st.none() | st.sampled_from([0.005, 0.02, 0.1])),
    )


@dataclass(frozen=True)
class UpdateRun:
    items: int
    failed_share: float
    unknown: int
    source: str
    seed: int
    client: ClientSettings
    plan: FaultPlan


@st.composite
def update_runs(draw: st.DrawFn) -> UpdateRun:
    items = draw(job_sizes())
    return UpdateRun(
        items=items,
        failed_share=draw(st.sampled_from([0.0, 0.0, 0.1, 0.5, 1.0])),
        unknown=draw(st.sampled_from([0, 0, 1, 3, 12])),
        source=draw(st.sampled_from(["list", "generator", "async"])),
        seed=draw(st.integers(min_value=0, max_value=2**31)),
        client=draw(client_settings(items)),
        plan=draw(fault_plans()),
    )


def _source(plan: JobPlan, kind: str) -> Iterable[ItemUpdate] | AsyncIterator[ItemUpdate]:
    updates = plan.updates
    if kind == "list":
        return updates
    if kind == "generator":
        return (update for update in updates)
    # An ERP that stops for a moment now and then: batches wait, then flush_after sends them.
    return slow_source(updates, pause_every=max(7, len(updates) // 12), pause=0.015)


async def _run_update_chaos(run: UpdateRun, figures: Figures) -> None:
    async with FakePleo(seed=run.seed, strict=True, faults=run.plan.faults) as fake:
        job = fake.create_job(items=run.items)
        plan = job_plan(job.item_ids, run.failed_share, run.unknown, run.seed)
        async with client_for(
            fake,
            max_concurrency=run.client.max_concurrency,
            batch_size=run.client.batch_size,
            flush_after=run.client.flush_after,
            timeout=run.plan.timeout,
            retry=RETRY,
        ) as client:
            job_run = client.job(job.id)
            with figures.counting_internal_errors():
                outcome = await finish(job_run, lambda: _source(plan, run.source))
            await settle_loop()
            assert library_tasks() == []
        figures.take_journal(fake.journal)
        check_job(
            fake,
            job.id,
            plan,
            outcome,
            figures,
            max_concurrency=run.client.max_concurrency,
            timeout=run.plan.timeout,
        )


@settings(profile("chaos"))
@given(run=update_runs())
def test_chaos_through_update_and_complete(run: UpdateRun, figures: Figures) -> None:
    """Under any fault plan and client settings, update() and complete() commit every item with
    its update, resend nothing acknowledged, keep to the concurrency limit and the Retry-After
    pauses, and send exactly one right final event after the last acknowledgement."""
    with instant_retries():
        asyncio.run(_run_update_chaos(run, figures))


# -- process_job -------------------------------------------------------------------------------

#: What the connector's handler does with an item, by share of items (the rest succeed or fail
#: by the run's failed share).
_MISBEHAVIOURS = (
    (3, "raises"),
    (5, "returns None"),
    (6, "returns another item's update"),
    (12, "returns at once"),
)


def _behaviour(entry_id: str, seed: int) -> str:
    share = digest("behaviour", seed, entry_id) % 100
    for limit, behaviour in _MISBEHAVIOURS:
        if share < limit:
            return behaviour
    return "awaits"


def _expected(entry_id: str, number: int, failed_share: float, seed: int) -> ItemUpdate:
    """The update process_job must have sent for an item, given what its handler did (R17)."""
    behaviour = _behaviour(entry_id, seed)
    reasons = {
        "raises": f"ValueError: the ERP refused line {number}",
        "returns None": "the connector returned NoneType, not a result",
        "returns another item's update": "the connector returned the result of another item",
    }
    if behaviour in reasons:
        return ItemUpdate.failed(
            entry_id,
            reason=reasons[behaviour],
            reason_type=ItemFailureReasonType.UNEXPECTED_FAILURE,
        )
    return item_update(entry_id, number, failed_share, seed)


@dataclass(frozen=True)
class WorkflowRun:
    items: int
    failed_share: float
    pending: bool
    concurrency: int
    seed: int
    client: ClientSettings
    plan: FaultPlan


@st.composite
def workflow_runs(draw: st.DrawFn) -> WorkflowRun:
    items = draw(
        st.one_of(st.integers(min_value=1, max_value=40), st.integers(min_value=41, max_value=1500))
    )
    return WorkflowRun(
        items=items,
        failed_share=draw(st.sampled_from([0.0, 0.1, 1.0])),
        pending=draw(st.booleans()),
        concurrency=draw(st.integers(min_value=1, max_value=32)),
        seed=draw(st.integers(min_value=0, max_value=2**31)),
        client=draw(client_settings(items)),
        plan=draw(fault_plans()),
    )


async def _run_workflow_chaos(run: WorkflowRun, figures: Figures) -> None:
    async with FakePleo(seed=run.seed, strict=True, faults=run.plan.faults) as fake:
        job = fake.create_job(items=run.items, status="pending" if run.pending else "in_progress")
        numbers = {entry_id: n for n, entry_id in enumerate(job.item_ids)}
        expected = {
            entry_id: _expected(entry_id, n, run.failed_share, run.seed)
            for entry_id, n in numbers.items()
        }
        calls: Counter[str] = Counter()
        other = job.item_ids[-1]

        async def handler(item: ExportItem) -> ItemUpdate | None:
            entry_id = item.accounting_entry_id
            calls[entry_id] += 1
            behaviour = _behaviour(entry_id, run.seed)
            if behaviour == "raises":
                raise ValueError(f"the ERP refused line {numbers[entry_id]}")
            if behaviour == "returns None":
                return None
            if behaviour == "returns another item's update":
                return ItemUpdate.successful(other if other != entry_id else job.item_ids[0])
            if behaviour == "awaits":
                await asyncio.sleep(0)
            return item_update(entry_id, numbers[entry_id], run.failed_share, run.seed)

        outcome = None
        async with client_for(
            fake,
            max_concurrency=run.client.max_concurrency,
            batch_size=run.client.batch_size,
            flush_after=run.client.flush_after,
            timeout=run.plan.timeout,
            retry=RETRY,
        ) as client:
            for _ in range(4):
                settled_before = {
                    item["accountingEntryId"]
                    for item in fake.items(job.id)
                    if item["status"] in ("successful", "failed")
                }
                calls.clear()
                try:
                    with figures.counting_internal_errors():
                        # The handler returning None now and then is the point.
                        outcome = await client.process_job(
                            job.id,
                            handler,  # type: ignore[arg-type]
                            concurrency=run.concurrency,
                        )
                    break
                except GIVE_UP_AND_RETRY:
                    continue
                finally:
                    # R17: one handler call per item still needing a result, and none for an
                    # item Pleo already held a result for when the call began.
                    assert max(calls.values(), default=1) == 1
                    assert not set(calls) & settled_before
            await settle_loop()
            assert library_tasks() == []
        figures.take_journal(fake.journal)
        assert outcome is not None
        plan = JobPlan(known=[expected[entry_id] for entry_id in job.item_ids], unknown=[])
        check_job(
            fake,
            job.id,
            plan,
            outcome,
            figures,
            max_concurrency=run.client.max_concurrency,
            timeout=run.plan.timeout,
        )


@settings(profile("workflow"))
@given(run=workflow_runs())
def test_chaos_through_process_job(run: WorkflowRun, figures: Figures) -> None:
    """Under any fault plan, process_job calls the handler once per item still needing a result,
    turns a raising or misbehaving handler into a failed item, commits every result, resends
    nothing acknowledged and sends exactly one right final event."""
    with instant_retries():
        asyncio.run(_run_workflow_chaos(run, figures))
