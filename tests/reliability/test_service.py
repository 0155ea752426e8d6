"""A long-running service: one client works hundreds of jobs, one after another and several at
once, under light faults. Every job is checked from the journal; afterwards nothing is left
over (no task, socket or file descriptor) and the library's memory did not grow with the jobs."""

from __future__ import annotations

import asyncio
import gc
import random
import tracemalloc

from helpers import client_for
from pleo_export_async import MemoryLedger, PleoExportClient, RetryPolicy
from pleo_export_async.testing import FakePleo, Faults, FaultSpec, Journal, instant_retries

from .checks import check_job, finish, job_plan, library_tasks, settle_loop
from .figures import Figures
from .leaks import library_bytes, open_fds, sockets_to
from .scale import SCALE

MAX_CONCURRENCY = 8
LIGHT_FAULTS = Faults(
    latency=(0.0, 0.002),
    server_error=FaultSpec(probability=0.01),
    lost_response=FaultSpec(probability=0.01),
    dropped_mid_body=FaultSpec(probability=0.01),
    partial_ack=FaultSpec(probability=0.02),
    item_error=FaultSpec(probability=0.001),
    lost_event_response=FaultSpec(probability=0.1),
)
#: Jobs run before memory is first measured: caches (32 decoders, URLs) fill up in these.
WARM_UP = 40
#: What a closed job may leave in the client's memory ledger: its outcome and its counts. An
#: item's state is about 150 bytes, so a job that kept its items would show at once.
BYTES_PER_CLOSED_JOB = 2048


async def _one_job(
    fake: FakePleo, client: PleoExportClient, rng: random.Random, figures: Figures
) -> None:
    job = fake.create_job(items=rng.choice([1, 7, 60, 100, 250]))
    plan = job_plan(
        job.item_ids, rng.choice([0.0, 0.1, 1.0]), rng.choice([0, 0, 1]), rng.randrange(2**31)
    )
    outcome = await finish(client.job(job.id), lambda: plan.updates)
    check_job(fake, job.id, plan, outcome, figures, max_concurrency=MAX_CONCURRENCY, timeout=30.0)


async def _forget_journal(fake: FakePleo, figures: Figures) -> None:
    """Count the journal's figures, then start a new one: the fake's memory is not measured,
    but the journal's would be found in the library's lines (it keeps every body it got)."""
    await fake.journal.wait_idle()
    figures.take_journal(fake.journal)
    fake.journal = Journal()


async def _service(figures: Figures) -> None:
    rng = random.Random(13)
    fds_before = open_fds()
    ledger = MemoryLedger()
    async with FakePleo(seed=13, strict=True, faults=LIGHT_FAULTS) as fake:
        client = client_for(
            fake,
            max_concurrency=MAX_CONCURRENCY,
            ledger=ledger,
            retry=RetryPolicy(max_attempts=10, initial_delay=0.01, max_delay=0.05),
        )
        warm = 0
        async with client:
            with figures.counting_internal_errors():
                for number in range(SCALE.service_jobs):
                    await _one_job(fake, client, rng, figures)
                    await _forget_journal(fake, figures)
                    if number + 1 == WARM_UP:
                        gc.collect()
                        warm = library_bytes()
                for _ in range(SCALE.service_rounds):
                    await asyncio.gather(
                        *(
                            _one_job(fake, client, rng, figures)
                            for _ in range(SCALE.service_parallel)
                        )
                    )
            connected = sockets_to(fake.port)
            gc.collect()
            grown = library_bytes() - warm
        closed_jobs = SCALE.service_jobs - WARM_UP + SCALE.service_rounds * SCALE.service_parallel
        await settle_loop()
        tasks = library_tasks()
        left_connected = sockets_to(fake.port)
    await settle_loop()
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    leaked_fds = open_fds() - fds_before
    figures.leaked_tasks += len(tasks) + len(others)
    figures.leaked_sockets += left_connected + len(leaked_fds)

    assert connected > 0, "the socket count sees the client's connections while it is open"
    assert tasks == []
    assert others == []
    assert left_connected == 0, "connections to Pleo left open after the client closed"
    assert leaked_fds == set(), f"file descriptors left open: {sorted(leaked_fds)}"
    for job_id in fake.job_ids():
        job_ledger = await ledger.open_job(job_id)
        assert job_ledger.acknowledgements.forgotten
        assert job_ledger.acknowledgements.index == {}
    assert grown <= closed_jobs * BYTES_PER_CLOSED_JOB, (
        f"the library's memory grew by {grown:,} bytes over {closed_jobs} closed jobs"
    )


def test_one_client_runs_hundreds_of_jobs_and_leaves_nothing_behind(figures: Figures) -> None:
    """One client closes hundreds of jobs in turn and in parallel, each rightly and once; then no
    library task, socket or file descriptor is left and its memory did not grow per job."""
    tracemalloc.start(1)
    try:
        with instant_retries():
            asyncio.run(_service(figures))
    finally:
        tracemalloc.stop()
