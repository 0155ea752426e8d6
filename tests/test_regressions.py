"""Regression tests: one per bug found by trying to break the library, named for what
broke. Each runs against the fake over real TCP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web

from helpers import client_for, successful_updates
from pleo_export_async import (
    ApiKeyAuth,
    ExportItem,
    ItemErrorKind,
    ItemUpdate,
    JobEvent,
    PleoExportClient,
    PleoExportError,
    UnexpectedResponse,
)
from pleo_export_async.testing import FakePleo, Faults, FaultSpec
from reliability.hostile import HostileProxy

_LIBRARY = Path(__file__).resolve().parents[1] / "pleo_export_async"


def _final_event_posts(fake: FakePleo, job_id: str) -> list[dict[str, Any]]:
    return [
        entry.body
        for entry in fake.journal.events(job_id)
        if isinstance(entry.body, dict) and entry.body.get("event") != "started"
    ]


def _library_tasks() -> list[asyncio.Task[Any]]:
    """Unfinished tasks of the running loop whose coroutine is the library's own code."""
    found = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        filename = Path(getattr(code, "co_filename", "") or ".")
        if not task.done() and _LIBRARY in filename.parents and "testing" not in filename.parts:
            found.append(task)
    return found


async def test_two_job_runs_of_one_job_sending_the_same_500_updates_at_once_send_each_once() -> (
    None
):
    """Two JobRuns of one job on one client, updating the same 500 items at once, send each
    update once and one final event, and the second run reports them skipped and the event
    already delivered."""
    async with FakePleo(seed=13, strict=True, faults=Faults(latency=(0.001, 0.004))) as fake:
        job = fake.create_job(items=500)
        updates = successful_updates(job.item_ids)
        async with client_for(fake, max_concurrency=8) as client:
            first, second = client.job(job.id), client.job(job.id)
            reports = await asyncio.gather(first.update(updates), second.update(updates))
            outcomes = await asyncio.gather(first.complete(), second.complete())
        sent = [
            item["accountingEntryId"] for body in fake.journal.puts(job.id) for item in body.body
        ]
        assert sorted(sent) == sorted(job.item_ids)
        assert fake.journal.resent_after_ack(job.id) == {}
        assert sorted(len(report.acknowledged) for report in reports) == [0, 500]
        assert sorted(len(report.skipped) for report in reports) == [0, 500]
        assert _final_event_posts(fake, job.id) == [{"event": "completed", "jobId": job.id}]
        assert sorted(outcome.already_delivered for outcome in outcomes) == [False, True]
        assert len({attrs.evolve(outcome, already_delivered=False) for outcome in outcomes}) == 1
        assert outcomes[0].event is JobEvent.COMPLETED


class ErpConnectionDropped(ConnectionError):
    """What an ERP client raises when its connection drops."""


async def test_async_source_raising_mid_stream_raises_its_own_error_with_the_report() -> None:
    """An async source that raises after 550 of 1,000 updates makes update() raise that very
    exception (no ExceptionGroup), carrying the report of the 500 Pleo acknowledged."""
    async with FakePleo(seed=14, strict=True) as fake:
        job = fake.create_job(items=1000)
        updates = successful_updates(job.item_ids)

        async def erp() -> AsyncIterator[ItemUpdate]:
            for number, update in enumerate(updates):
                if number == 550:
                    raise ErpConnectionDropped("the ERP connection dropped")
                yield update
                await asyncio.sleep(0)

        async with client_for(fake, max_concurrency=4, batch_size=100) as client:
            run = client.job(job.id)
            with pytest.raises(ErpConnectionDropped, match="ERP connection dropped") as raised:
                await run.update(erp())
            report = getattr(raised.value, "report", None)
            assert report is not None
            acknowledged = set(report.acknowledged)
            assert acknowledged == set(job.item_ids[:500])
            assert all(fake.item(job.id, i)["status"] == "successful" for i in acknowledged)
            # The rest is sent by the next call; what was acknowledged is skipped.
            again = await run.update(updates)
            assert set(again.skipped) == acknowledged
            assert (await run.complete()).event is JobEvent.COMPLETED
        assert fake.journal.resent_after_ack(job.id) == {}


async def test_async_source_raising_a_library_error_mid_stream_keeps_the_report() -> None:
    """An async source raising a PleoExportError subclass mid-stream gets it back as itself,
    with the report of what was acknowledged before."""

    class SourceFailed(PleoExportError):
        pass

    async with FakePleo(seed=15, strict=True) as fake:
        job = fake.create_job(items=300)
        updates = successful_updates(job.item_ids)

        async def erp() -> AsyncIterator[ItemUpdate]:
            for update in updates[:200]:
                yield update
            raise SourceFailed("the ERP export was aborted")

        async with client_for(fake, max_concurrency=2, batch_size=100) as client:
            with pytest.raises(SourceFailed) as raised:
                await client.job(job.id).update(erp())
        report = raised.value.report
        assert report is not None
        assert set(report.acknowledged) == set(job.item_ids[:200])


async def test_cancelled_process_job_leaves_no_task_of_its_item_feed_running() -> None:
    """Cancelling process_job while its batches are in flight ends the task that feeds the
    handler's results: the stream of results is closed, not left to the garbage collector."""
    async with FakePleo(seed=16, strict=True, faults=Faults(latency=0.05)) as fake:
        job = fake.create_job(items=31)

        async def handler(item: ExportItem) -> ItemUpdate:
            return ItemUpdate.successful(item.accounting_entry_id)

        async with client_for(fake, max_concurrency=1, batch_size=10) as client:
            task = asyncio.create_task(client.process_job(job.id, handler, concurrency=2))
            async with asyncio.timeout(30):
                while not fake.journal.puts(job.id):  # noqa: ASYNC110  (the fake has no event)
                    await asyncio.sleep(0.001)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for _ in range(5):
                await asyncio.sleep(0)
            assert _library_tasks() == []
            # And the job can still be finished, once.
            outcome = await client.process_job(job.id, handler, concurrency=2)
        assert outcome is not None
        assert outcome.event is JobEvent.COMPLETED
        assert len(_final_event_posts(fake, job.id)) == 1


async def test_put_answered_with_a_2xx_other_than_200_raises_unexpected_response() -> None:
    """A PUT answered 204 (not Pleo's 200) stops update() with UnexpectedResponse carrying the
    report, instead of an internal AssertionError wrapped in an ExceptionGroup."""
    async with FakePleo(seed=17, strict=True) as fake:
        job = fake.create_job(items=3)
        calls = 0

        async def answer_204(request: web.Request) -> web.Response:
            nonlocal calls
            calls += 1
            return web.Response(status=204)

        app = web.Application()
        app.router.add_put("/v3/export-jobs/{job_id}/items", answer_204)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            port = runner.addresses[0][1]
            async with PleoExportClient(
                f"http://127.0.0.1:{port}", auth=ApiKeyAuth(fake.api_key)
            ) as client:
                with pytest.raises(UnexpectedResponse, match="HTTP 204") as raised:
                    await client.job(job.id).update(successful_updates(job.item_ids))
        finally:
            await runner.cleanup()
        assert calls == 1
        report = raised.value.report
        assert report is not None
        assert len(report.acknowledged) == 0
        assert set(report.unacknowledged) == set(job.item_ids)


async def test_an_error_raised_by_an_item_error_classifier_is_raised_as_itself() -> None:
    """An exception from the caller's item error classifier stops update() with that exception
    and the report, not a bare ExceptionGroup from the library's task group."""

    def classifier(error_type: str) -> ItemErrorKind | None:
        raise LookupError(f"no rule for {error_type}")

    faults = Faults(item_error=FaultSpec(at=frozenset({1})))
    async with FakePleo(seed=18, strict=True, faults=faults) as fake:
        job = fake.create_job(items=10)
        async with client_for(fake, item_error_classifier=classifier) as client:
            with pytest.raises(LookupError, match="no rule for") as raised:
                await client.job(job.id).update(successful_updates(job.item_ids))
        assert getattr(raised.value, "report", None) is not None


async def test_a_resend_refused_as_a_rewrite_after_a_partial_acknowledgement_is_not_rejected() -> (
    None
):
    """An update Pleo committed but left out of its answer, whose resend Pleo then refuses as a
    rewrite of a successful item, counts as acknowledged: the job completes, not
    completed_with_errors."""
    async with FakePleo(seed=0, strict=True) as fake:
        job = fake.create_job(items=2)
        # The second PUT's answer lists nothing; every rewrite of a successful item is refused.
        proxy = HostileProxy(fake, "refused_rewrite", "put", lambda n: n == 2)
        async with (
            proxy,
            PleoExportClient(
                proxy.base_url, auth=ApiKeyAuth(fake.api_key), max_concurrency=1, batch_size=1
            ) as client,
        ):
            run = client.job(job.id)
            report = await run.update(successful_updates(job.item_ids))
            outcome = await run.complete()
        assert list(report.rejected) == [job.item_ids[1]]  # as Pleo answered the resend
        assert (outcome.event, outcome.successful, outcome.rejected) == (JobEvent.COMPLETED, 2, 0)
        assert fake.job_status(job.id) == "completed"
