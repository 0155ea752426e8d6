"""Hostile and broken answers: non-JSON bodies, the wrong shape, unknown statuses, a
huge body, a slow trickle, a connection reset, from a proxy in front of the fake. The client never
raises an internal error, counts an ID acknowledged only when an answer rightly lists it, gives up
with a PleoExportError subclass, and keeps what was acknowledged."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from pleo_export_async import (
    ApiKeyAuth,
    CompletionOutcome,
    ExportItem,
    ItemUpdate,
    JobRun,
    PleoExportClient,
    PleoExportError,
    RetryPolicy,
    UpdateReport,
)
from pleo_export_async.testing import FakePleo, instant_retries

from .checks import JobPlan, committed_as_sent, item_update, job_plan
from .figures import INTERNAL_ERRORS, Figures
from .hostile import OTHER_MODES, PUT_MODES, HostileProxy

RETRY = RetryPolicy(max_attempts=4, initial_delay=0.01, max_delay=0.02)
ITEMS = 240
#: Answers that are broken only in form: the client must finish the job through them.
HARMLESS = frozenset({"uppercase_ids", "huge_body", "slow_trickle"})


def _client(proxy: HostileProxy, fake: FakePleo) -> PleoExportClient:
    return PleoExportClient(
        proxy.base_url,
        auth=ApiKeyAuth(fake.api_key),
        max_concurrency=3,
        batch_size=40,
        timeout=10.0,
        retry=RETRY,
    )


async def _acknowledged_in_ledger(
    client: PleoExportClient, job_id: str, ids: list[str]
) -> set[str]:
    acknowledgements = (await client.ledger.open_job(job_id)).acknowledgements
    return {entry_id for entry_id in ids if acknowledgements.acknowledged(entry_id) is not None}


def _check_closed_once(
    fake: FakePleo, job_id: str, plan: JobPlan, outcome: CompletionOutcome
) -> None:
    applied = fake.journal.final_events_applied(job_id)
    assert len(applied) == 1, f"{len(applied)} final events applied"
    assert outcome.event is plan.expected_event()
    assert fake.job_status(job_id) == plan.expected_event().value
    lost = [
        u.accounting_entry_id
        for u in plan.known
        if not committed_as_sent(fake.item(job_id, u.accounting_entry_id), u)
    ]
    assert lost == []


async def _rounds(
    attempt: Callable[[], object], figures: Figures, rounds: int
) -> tuple[object | None, list[PleoExportError]]:
    """Call `attempt` up to `rounds` times while it raises a PleoExportError, as a connector's
    retry loop would; an internal error fails the test at once."""
    errors: list[PleoExportError] = []
    for _ in range(rounds):
        try:
            with figures.counting_internal_errors():
                result = await attempt()  # type: ignore[misc]
        except PleoExportError as error:
            errors.append(error)
            continue
        return result, errors
    return None, errors


async def _hostile_update(mode: str, always: bool, figures: Figures) -> None:
    async with FakePleo(seed=len(mode), strict=True) as fake:
        job = fake.create_job(items=ITEMS)
        plan = job_plan(job.item_ids, 0.1, 2, len(mode))
        aim: Callable[[int], bool] = (lambda n: True) if always else (lambda n: n in (1, 3))
        async with HostileProxy(fake, mode, "put", aim) as proxy, _client(proxy, fake) as client:
            run: JobRun = client.job(job.id)
            reports: list[UpdateReport] = []
            stopped: list[PleoExportError] = []

            async def attempt() -> CompletionOutcome:
                try:
                    reports.append(await run.update(plan.updates))
                except PleoExportError as error:
                    # A stop hands over the report of what was settled (checked below).
                    stopped.append(error)
                    raise
                return await run.complete()

            outcome, errors = await _rounds(attempt, figures, rounds=4)
            ids = [u.accounting_entry_id for u in plan.updates]
            held = await _acknowledged_in_ledger(client, job.id, ids)
        figures.hostile_answers[f"PUT items: {mode}"] += proxy.mangled
        figures.take_journal(fake.journal)
        figures.jobs_run += 1
        rightful = proxy.rightful(job.id)
        resent = proxy.resent_after_rightful_ack(job.id)
        figures.resent_after_ack += sum(resent.values())
        assert proxy.mangled > 0
        assert not any(isinstance(e, INTERNAL_ERRORS) for e in errors)
        for error in stopped:
            assert error.report is not None, f"{type(error).__name__} without its report"
            reports.append(error.report)
        if outcome is None:
            # It gave up, with a clear error; nothing final was sent, what was kept holds.
            assert errors, "gave up without an error"
            assert fake.journal.final_events_applied(job.id) == []
            assert held <= rightful, f"counted acknowledged: {sorted(held - rightful)[:5]}"
        for report in reports:
            counted = set(report.acknowledged)
            assert counted <= rightful, f"acknowledged wrongly: {sorted(counted - rightful)[:5]}"
        assert resent == {}, f"resent after a rightful acknowledgement: {resent}"
        if always and mode not in HARMLESS:
            return
        assert isinstance(outcome, CompletionOutcome), f"did not finish: {errors}"
        _check_closed_once(fake, job.id, plan, outcome)


@pytest.mark.parametrize("always", [False, True], ids=["twice", "always"])
@pytest.mark.parametrize("mode", PUT_MODES)
def test_broken_answers_to_item_updates(mode: str, always: bool, figures: Figures) -> None:
    """Whatever a PUT is answered with, the client raises no internal error, counts only IDs an
    answer rightly lists, gives up with a PleoExportError carrying its report, and finishes the
    job rightly once the answers are sound again."""
    with instant_retries():
        asyncio.run(_hostile_update(mode, always, figures))


async def _hostile_workflow(mode: str, route: str, figures: Figures) -> None:
    seed = len(mode) * 7 + len(route)
    async with FakePleo(seed=seed, strict=True) as fake:
        job = fake.create_job(items=ITEMS, status="pending")
        numbers = {entry_id: n for n, entry_id in enumerate(job.item_ids)}

        async def handler(item: ExportItem) -> ItemUpdate:
            entry_id = item.accounting_entry_id
            return item_update(entry_id, numbers[entry_id], 0.1, seed)

        # The started event and the final one; the first read of each other kind.
        aim: Callable[[int], bool] = (lambda n: n <= 2) if route == "event" else (lambda n: n == 1)
        async with HostileProxy(fake, mode, route, aim) as proxy, _client(proxy, fake) as client:
            outcome, errors = await _rounds(
                lambda: client.process_job(job.id, handler, concurrency=8), figures, rounds=5
            )
        figures.hostile_answers[f"reads and events: {mode}"] += proxy.mangled
        figures.take_journal(fake.journal)
        figures.jobs_run += 1
        resent = proxy.resent_after_rightful_ack(job.id)
        figures.resent_after_ack += sum(resent.values())
        assert proxy.mangled > 0
        assert resent == {}
        assert isinstance(outcome, CompletionOutcome), f"did not finish: {errors}"
        plan = JobPlan(
            known=[item_update(i, numbers[i], 0.1, seed) for i in job.item_ids], unknown=[]
        )
        _check_closed_once(fake, job.id, plan, outcome)


@pytest.mark.parametrize("route", ["job", "items", "export_items", "event"])
@pytest.mark.parametrize("mode", OTHER_MODES)
def test_broken_answers_to_reads_and_events_of_process_job(
    mode: str, route: str, figures: Figures
) -> None:
    """A broken answer to reading the job, its items, its export data, or to an event makes
    process_job raise a PleoExportError (never an internal error), and a later call finishes
    the job rightly, with one final event."""
    with instant_retries():
        asyncio.run(_hostile_workflow(mode, route, figures))
