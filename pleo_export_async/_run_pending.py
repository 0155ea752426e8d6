"""`run_pending`: one worker of a connector service. It keeps Pleo's job order (rule R19): per
company one job at a time, the one in progress or else the oldest pending, across every worker
that shares the ledger; different companies run in parallel. Each job is held by one worker at a
time (R18; the Workflow layer)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

from . import _checks
from ._company_turns import CompanyBusy, CompanyTurn, company_turns_of
from ._enums import JobStatus
from ._errors import InvalidInput, JobFinished, JobLeased, PleoExportError
from ._ledger import Ledger
from ._models import ExportJob
from ._process_job import Handler, JobSource, job_operation, process_held_job
from ._report import CompletionOutcome

logger = logging.getLogger("pleo_export_async")

#: A job still to be exported: never started, or started by a worker that may have died.
_OPEN_STATUSES = (JobStatus.PENDING, JobStatus.IN_PROGRESS)


class RunWatch(Protocol):
    """What a service is told of a worker's rounds (readiness, and what a drain left)."""

    def listed(self, ok: bool) -> None:
        """A listing of the open jobs answered (`ok`), or failed past its retries."""

    def job_began(self, job_id: str) -> None: ...

    def job_ended(self, job_id: str, closed: bool) -> None:
        """The worker let the job go: closed (by it or before), or left open."""


def next_job(open_jobs: Iterable[ExportJob]) -> ExportJob | None:
    """The one job of a company Pleo's order lets a worker take: the one in progress (resumed,
    so that no second one starts), or else the oldest pending one by `createdAt`. Pleo gives
    `createdAt` in whole seconds: jobs of the same second keep the listing's order."""
    return min(
        open_jobs,
        key=lambda job: (job.status != JobStatus.IN_PROGRESS, job.created_at),
        default=None,
    )


def companies_in_order(open_jobs: Iterable[ExportJob]) -> list[str]:
    """The companies with open jobs, the one whose oldest job has waited longest first."""
    oldest: dict[str, ExportJob] = {}
    for job in open_jobs:
        known = oldest.get(job.company_id)
        if known is None or job.created_at < known.created_at:
            oldest[job.company_id] = job
    return sorted(oldest, key=lambda company: oldest[company].created_at)


async def run_pending(
    client: JobSource,
    handler: Handler,
    *,
    ledger: Ledger | None,
    company_id: str | None,
    companies_at_once: int,
    concurrency: int,
    poll_interval: float,
    stop: asyncio.Event | None,
    once: bool,
    company_ids: Sequence[str] = (),
    wake: asyncio.Event | None = None,
    watch: RunWatch | None = None,
) -> dict[str, CompletionOutcome]:
    """The worker loop. `company_ids` lists several companies (one listing each per round);
    `wake`, when set, ends the wait between rounds at once (a webhook's hint); `watch` is told
    of the listings and of each job taken and let go."""
    _checks.async_function("handler", handler, of="an ExportItem")
    _checks.whole_number("companies_at_once", companies_at_once, low=1)
    _checks.whole_number("concurrency", concurrency, low=1)
    _checks.positive_seconds("poll_interval", poll_interval, "must be a number of seconds above 0")
    _checks.flag("once", once)
    if company_id is not None:
        company_id = _checks.uuid_string("company_id", company_id)
    listed_companies: list[str | None] = [
        _checks.uuid_string("company_ids", company) for company in company_ids
    ] or [company_id]
    woken = wake if wake is not None else asyncio.Event()
    stopped = stop if stop is not None else asyncio.Event()
    completed: dict[str, CompletionOutcome] = {}
    slots = asyncio.Semaphore(companies_at_once)
    turns = company_turns_of(ledger if ledger is not None else client)
    # A handler that gave no awaitable is the caller's mistake, and every job would meet it: no
    # job is taken after it, and it is raised once the jobs under way have ended.
    refused: list[InvalidInput] = []
    halted = asyncio.Event()  # set with the first refusal, to end the wait between rounds

    working: set[str] = set()  # this worker's companies under way: not offered to it again
    # A round passed a company over (its turn was still here, or every slot was busy): the end
    # of a turn then starts the next round at once, not at the next poll.
    passed_over = False

    async def work_job(job_id: str) -> bool:
        """Work the job; True once it is closed, so the company's next job may start."""
        if watch is not None:
            watch.job_began(job_id)
        closed = False
        try:
            closed = await work_job_watched(job_id)
        finally:
            if watch is not None:
                watch.job_ended(job_id, closed)
        return closed

    async def work_job_watched(job_id: str) -> bool:
        run = client.job(job_id, ledger=ledger, wait=False)
        try:
            with job_operation(run) as operation:
                async with run.hold():
                    if await run.recorded_outcome() is not None:
                        return True  # closed by another worker between its listing and our turn
                    outcome = await process_held_job(
                        run, handler, concurrency, stopped, None, operation
                    )
        except InvalidInput as error:
            # The arguments were checked up front: what is left is the handler's first call.
            refused.append(error)
            halted.set()
            return False
        except JobLeased:
            # Someone works it outside the company's turn (a direct process_job): the company's
            # newer jobs wait for it.
            logger.debug("job held by another worker; skipped", extra={"job_id": job_id})
            return False
        except JobFinished:
            logger.debug("job closed by someone else; skipped", extra={"job_id": job_id})
            return True
        except PleoExportError:
            # One job's trouble (an API refusal, a lost lease, a ledger error) is that job's:
            # the other companies go on, and this one is tried again on the next round. Its
            # newer jobs wait: Pleo's order lets none of them start before it.
            logger.exception("job not finished; it is tried again later", extra={"job_id": job_id})
            return False
        if outcome is None:
            return False  # stopped
        completed[job_id] = outcome
        return True

    async def work_company(company: str) -> None:
        nonlocal passed_over
        try:
            async with turns.company_turn(company) as turn:
                await work_jobs_in_turn(company, turn)
        except CompanyBusy as busy:
            logger.debug("company %s is worked by %s; skipped", company, busy.holder)
        except PleoExportError:
            logger.exception("company %s: its jobs are tried again later", company)
        finally:
            working.discard(company)
            slots.release()
            if passed_over:
                passed_over = False
                woken.set()

    async def work_jobs_in_turn(company: str, turn: CompanyTurn) -> None:
        # Listed again now that the turn is ours: the round's listing may be older than the
        # last job another worker closed.
        closed_in_turn: set[str] = set()
        while turn.held and not stopped.is_set() and not halted.is_set():
            job = next_job(
                [job async for job in client.jobs(statuses=_OPEN_STATUSES, company_id=company)]
            )
            if job is None or job.id in closed_in_turn:
                # Nothing open, or a listing that lags behind the job's close: not worked again
                # in a loop; the next round lists it afresh.
                return
            if not await work_job(job.id):
                return
            closed_in_turn.add(job.id)

    async def one_round(group: asyncio.TaskGroup) -> None:
        try:
            listed = [
                job
                for company in listed_companies
                async for job in client.jobs(statuses=_OPEN_STATUSES, company_id=company)
            ]
        except PleoExportError:
            if watch is not None:
                watch.listed(ok=False)
            raise
        if watch is not None:
            watch.listed(ok=True)
        nonlocal passed_over
        for company in companies_in_order(listed):
            if company in working:
                # A job created as its turn ends (after the turn's last listing) is taken up by
                # the round that turn's end starts.
                passed_over = True
                continue
            if slots.locked() and not once:
                # Every slot is busy: the round ends, so that the listings (and a service's
                # readiness) go on; the next turn to end starts the next round.
                passed_over = True
                return
            await slots.acquire()
            if stopped.is_set() or halted.is_set():
                slots.release()
                return
            working.add(company)
            group.create_task(work_company(company))

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
                await asyncio.wait_for(_any_of(stopped, halted, woken), timeout=poll_interval)
            woken.clear()
    if refused:
        raise refused[0]
    if listing_failed is not None:
        raise listing_failed
    return completed


async def _any_of(*events: asyncio.Event) -> None:
    """Wait until one of the events is set."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
