"""JobRun.fetch(): a job Pleo shows final makes the run final, unless an event of this ledger's
may be the one Pleo shows; then the next call settles it (rules R8, R11)."""

from __future__ import annotations

import aiohttp
import pytest

from helpers import client_for, successful_updates
from pleo_export_async import JobEvent, JobFinished, RetryPolicy, TransportError
from pleo_export_async.testing import FakePleo, Faults, FaultSpec

pytestmark = pytest.mark.usefixtures("instant")


async def test_a_job_closed_by_someone_else_makes_the_run_final_with_no_request(
    fake: FakePleo,
) -> None:
    """After fetch() shows a job another party failed, update() and complete() raise
    JobFinished and send nothing."""
    job = fake.create_job(items=3, status="in_progress")
    async with client_for(fake) as client:
        run = client.job(job.id)
        async with aiohttp.ClientSession(headers=fake.auth_headers()) as other:
            closed = await other.post(
                f"{fake.base_url}/v3/export-job-events",
                json={
                    "event": "failed",
                    "jobId": job.id,
                    "failureReason": "closed by the bookkeeper",
                    "failureReasonType": "accounting_system_unreachable",
                },
            )
            assert closed.status == 202
        assert (await run.fetch()).status == "failed"
        sent = fake.journal.count()
        with pytest.raises(JobFinished, match="it is failed"):
            await run.update(successful_updates(job.item_ids))
        with pytest.raises(JobFinished, match="it is failed"):
            await run.complete()
    assert fake.journal.count() == sent
    assert fake.journal.puts(job.id) == []


async def test_our_own_event_whose_answer_was_lost_is_found_delivered_after_a_fetch(
    fake: FakePleo,
) -> None:
    """complete() whose event landed but whose every answer was lost raises; a fetch() then shows
    the job completed, and the next complete() returns the outcome as already delivered,
    sending no second event."""
    job = fake.create_job(items=5, status="in_progress")
    async with client_for(fake, retry=RetryPolicy(max_attempts=1)) as client:
        run = client.job(job.id)
        await run.update(successful_updates(job.item_ids))
        fake.faults = Faults(lost_event_response=FaultSpec(probability=1.0))
        with pytest.raises(TransportError):
            await run.complete()
        fake.faults = Faults()
        assert (await run.fetch()).status == "completed"
        outcome = await run.complete()
    assert (outcome.event, outcome.already_delivered, outcome.successful) == (
        JobEvent.COMPLETED,
        True,
        5,
    )
    assert len(fake.journal.events(job.id)) == 1
    assert len(fake.journal.final_events_applied(job.id)) == 1
