"""Tests of the tutorial's connector against the fake: run them with `pytest`.

Nothing to configure: the `fake_pleo` fixture comes with the package (its
`testing` extra), and these async tests need no marker and no asyncio_mode.
"""

import pytest

from first_connector import export_pending_jobs
from pleo_export_async import ApiKeyAuth, PleoExportClient
from pleo_export_async.testing import (
    FakePleo,
    Faults,
    FaultSpec,
    instant_retries,
)


def client_for(fake: FakePleo) -> PleoExportClient:
    return PleoExportClient(fake.base_url, auth=ApiKeyAuth(fake.api_key))


async def test_every_item_gets_a_result_and_the_job_is_closed_once(
    fake_pleo: FakePleo,
) -> None:
    job = fake_pleo.create_job(items=250, status="pending")
    async with client_for(fake_pleo) as client:
        await export_pending_jobs(client)
    # Some items are booked on an account the ERP lacks.
    assert fake_pleo.job_status(job.id) == "completed_with_errors"
    results = {item["status"] for item in fake_pleo.items(job.id)}
    assert results == {"successful", "failed"}
    assert len(fake_pleo.journal.final_events_applied(job.id)) == 1


# 503s, a 429 with Retry-After, lost answers and partly acknowledged batches,
# the same on every run (seed 3). The connector must still send nothing twice
# and close the job once.
FLAKY = Faults(
    server_error=FaultSpec(probability=0.1),
    rate_limit=FaultSpec(at={4}),
    retry_after=0.2,
    lost_response=FaultSpec(probability=0.1),
    partial_ack=FaultSpec(probability=0.2),
)


@pytest.mark.fake_pleo(seed=3, faults=FLAKY)
async def test_under_faults_nothing_acknowledged_is_sent_again(
    fake_pleo: FakePleo,
) -> None:
    job = fake_pleo.create_job(items=500, status="pending")
    with instant_retries():  # backoff waits are zero; every retry still happens
        async with client_for(fake_pleo) as client:
            await export_pending_jobs(client)
    assert fake_pleo.journal.resent_after_ack(job.id) == {}
    assert fake_pleo.journal.requests_during_pause() == []  # Retry-After kept
    assert len(fake_pleo.journal.final_events_applied(job.id)) == 1


# The fake is strict by default, as Pleo's guidance is: an update before the
# job is started, or completing it with items pending, fails the test.
async def test_only_pending_jobs_are_exported(fake_pleo: FakePleo) -> None:
    pending = fake_pleo.create_job(items=20, status="pending")
    elsewhere = fake_pleo.create_job(
        items=20, status="in_progress"
    )  # another's
    async with client_for(fake_pleo) as client:
        await export_pending_jobs(client)
    assert fake_pleo.job_status(pending.id) != "pending"
    assert fake_pleo.journal.puts(elsewhere.id) == []
