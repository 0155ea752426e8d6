"""A 10,000-update job under mixed faults, checked from the fake's journal alone."""

from __future__ import annotations

import pytest

from helpers import IN_FLIGHT_GRACE, client_for, mixed_updates
from pleo_export_async import JobEvent, RetryPolicy
from pleo_export_async.testing import FakePleo, Faults, FaultSpec

pytestmark = pytest.mark.usefixtures("instant")

MAX_CONCURRENCY = 8


@pytest.mark.parametrize("seed", [11, 12])
async def test_ten_thousand_updates_under_mixed_faults(seed: int) -> None:
    """Every item is committed with its fields, nothing acknowledged is sent again, at most 8
    requests are ever in flight, and one right final event follows the last acknowledgement."""
    faults = Faults(
        latency=(0.0, 0.004),
        server_error=FaultSpec(probability=0.04),
        rate_limit=FaultSpec(at={20}),
        retry_after=0.3,
        lost_response=FaultSpec(probability=0.04),
        partial_ack=FaultSpec(probability=0.05),
        partial_ack_fraction=0.2,
        item_error=FaultSpec(probability=0.005),
        lost_event_response=FaultSpec(probability=0.5),
    )
    async with FakePleo(seed=seed, faults=faults) as fake:
        job = fake.create_job(items=10_000)
        updates = mixed_updates(job, failed_every=10)
        retry = RetryPolicy(max_attempts=10, initial_delay=0.01, max_delay=0.05)
        async with client_for(fake, max_concurrency=MAX_CONCURRENCY, retry=retry) as client:
            run = client.job(job.id)
            report = await run.update(updates)
            outcome = await run.complete()

        journal = fake.journal
        assert len(report.acknowledged) == 10_000
        assert report.retries > 0
        assert report.items_resent > 0
        for update in updates:
            item = fake.item(job.id, update.accounting_entry_id)
            assert item["status"] == update.status.value
            assert item.get("externalId") == update.external_id
            assert item.get("failureReason") == update.failure_reason
        assert journal.resent_after_ack(job.id) == {}
        assert journal.max_in_flight <= MAX_CONCURRENCY
        assert journal.requests_during_pause(epsilon=IN_FLIGHT_GRACE) == []
        assert len(journal.requests_during_pause(epsilon=0.0)) <= MAX_CONCURRENCY - 1

        (event,) = journal.final_events_applied(job.id)
        last_acknowledgement = max(
            entry.answered_at or 0.0 for entry in journal.puts(job.id) if entry.acknowledged_ids
        )
        assert event.received_at > last_acknowledgement
        assert outcome.event is JobEvent.COMPLETED_WITH_ERRORS
        assert event.body["event"] == "completed_with_errors"
        assert (outcome.successful, outcome.failed) == (9_000, 1_000)
        assert fake.job_status(job.id) == "completed_with_errors"
