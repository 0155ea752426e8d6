"""`run_pending`: one worker of a connector service, sharing a company's export jobs out with
the other workers of its ledger, job by job, each held by one worker at a time (rule R18; the
Workflow layer)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from . import _checks
from ._enums import JobStatus
from ._errors import InvalidInput, JobFinished, JobLeased, PleoExportError
from ._ledger import Ledger
from ._process_job import Handler, JobSource, process_held_job
from ._report import CompletionOutcome

logger = logging.getLogger("pleo_export_async")

#: A job still to be exported: never started, or started by a worker that may have died.
_OPEN_STATUSES = (JobStatus.PENDING, JobStatus.IN_PROGRESS)


async def run_pending(
    client: JobSource,
    handler: Handler,
    *,
    ledger: Ledger | None,
    company_id: str | None,
    jobs_at_once: int,
    concurrency: int,
    poll_interval: float,
    stop: asyncio.Event | None,
    once: bool,
) -> dict[str, CompletionOutcome]:
    _checks.async_function("handler", handler, of="an ExportItem")
    _checks.whole_number("jobs_at_once", jobs_at_once, low=1)
    _checks.whole_number("concurrency", concurrency, low=1)
    _checks.positive_seconds("poll_interval", poll_interval, "must be a number of seconds above 0")
    _checks.flag("once", once)
    if company_id is not None:
        company_id = _checks.uuid_string("company_id", company_id)
    stopped = stop if stop is not None else asyncio.Event()
    completed: dict[str, CompletionOutcome] = {}
    slots = asyncio.Semaphore(jobs_at_once)
    # A handler that gave no awaitable is the caller's mistake, and every job would meet it: no
    # job is taken after it, and it is raised once the jobs under way have ended.
    refused: list[InvalidInput] = []
    halted = asyncio.Event()  # set with the first refusal, to end the wait between rounds

    working: set[str] = set()  # this worker's jobs under way: not offered to it again

    async def work(job_id: str) -> None:
        run = client.job(job_id, ledger=ledger, wait=False)
        try:
            async with run.hold():
                if await run.recorded_outcome() is not None:
                    # Closed by another worker between our listing and our turn.
                    return
                outcome = await process_held_job(run, handler, concurrency, stopped, None)
        except InvalidInput as error:
            # The arguments were checked up front: what is left is the handler's first call.
            refused.append(error)
            halted.set()
        except JobLeased:
            logger.debug("job held by another worker; skipped", extra={"job_id": job_id})
        except JobFinished:
            logger.debug("job closed by someone else; skipped", extra={"job_id": job_id})
        except PleoExportError:
            # One job's trouble (an API refusal, a lost lease, a ledger error) is that job's:
            # the others go on, and this one is listed again on the next round.
            logger.exception("job not finished; it is tried again later", extra={"job_id": job_id})
        else:
            if outcome is not None:
                completed[job_id] = outcome
        finally:
            working.discard(job_id)
            slots.release()

    async def one_round(group: asyncio.TaskGroup) -> None:
        async for job in client.jobs(statuses=_OPEN_STATUSES, company_id=company_id):
            if job.id in working:
                continue
            await slots.acquire()
            if stopped.is_set() or halted.is_set():
                slots.release()
                return
            working.add(job.id)
            group.create_task(work(job.id))

    listing_failed: PleoExportError | None = None
    async with asyncio.TaskGroup() as group:
        while not stopped.is_set() and not halted.is_set():
            try:
                await one_round(group)
            except PleoExportError as error:
                if once:
                    # Raised once the jobs already under way have ended, as it is: raised in
                    # here, the group would cancel them and wrap it in an ExceptionGroup.
                    listing_failed = error
                    break
                # Pleo unreachable past the retries: a service waits for the next round.
                logger.exception("could not list the export jobs; trying again later")
            if once:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_either(stopped, halted), timeout=poll_interval)
    if refused:
        raise refused[0]
    if listing_failed is not None:
        raise listing_failed
    return completed


async def _either(first: asyncio.Event, second: asyncio.Event) -> None:
    """Wait until one of the two events is set."""
    waits = [asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
