"""JobRun: one export job as this process reports on it (the Jobs layer).

It takes the job's turn at the ledger for each call, picks up where a crashed or other worker
left off, and hands the work to its pieces: the update engine (`_update_engine`), the final
event (`_final_event`), the reads (`_job_reads`) and the checks against what Pleo holds
(`_pleo_check`). It is built from the transport and a frozen `JobSettings`, never the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager

from ._checks import enum_member, optional_text
from ._core._decision import (
    EventChoice,
    Tally,
    choose_event_for,
    nothing_to_decide,
    with_rejections,
)
from ._core._tracker import ItemTracker
from ._enums import ItemStatus, JobEvent, JobFailureReasonType, JobStatus
from ._errors import IncompleteJob, InvalidInput, JobFinished, JobStateConflict
from ._export_items import ExportItem
from ._final_event import EVENTS_PATH, JobEvents
from ._job_reads import FINAL_STATUSES, JobReads
from ._job_settings import JobSettings
from ._job_state import RunState
from ._ledger import JobLedger, Ledger, commit_kind
from ._models import ExportJob, ExportJobItem, ItemUpdate, JobEventRequest
from ._pleo_check import (
    record_found,
    refusals_to_recheck,
    results_unrecorded,
    updates_pleo_shows,
)
from ._report import CompletionOutcome, ProgressCallback, UpdateReport
from ._telemetry import JobOperation, Telemetry
from ._transport import Transport, raise_for_response
from ._update_engine import UpdateEngine, attach_report, check_updates_argument

logger = logging.getLogger("pleo_export_async")


class JobRun:
    """One export job, as this process reports on it. Get one from `client.job(job_id)`.

    `update()` may be called several times, `complete()` closes the job once and returns the
    same outcome when called again. The calls of every JobRun sharing a ledger take turns at
    the job: one runs at a time, the others wait.
    """

    def __init__(
        self,
        transport: Transport,
        settings: JobSettings,
        job_id: str,
        ledger: Ledger,
        *,
        reconcile_on_resume: bool = True,
        wait: bool = True,
    ) -> None:
        self.job_id = job_id
        self._reconcile_on_resume = reconcile_on_resume
        self._wait = wait
        self._resumed = False
        self._epoch = 0  # of the job ledger's records this run last prepared from
        self._holding = False
        self._held_calls = asyncio.Lock()  # the calls made while the job is held take turns
        self._transport = transport
        self._ledger = ledger
        self._job_ledger: JobLedger | None = None
        self._state = RunState(job_id, settings)
        self._reads = JobReads(transport, self._state)
        self._events = JobEvents(transport, self._state, self._reads)
        self._updates = UpdateEngine(transport, self._state, self._reads.items_path)

    def __repr__(self) -> str:
        outcome = self._state.outcome
        state = outcome.event.value if outcome else "open"
        return f"JobRun(job_id={self.job_id!r}, state={state!r})"

    @property
    def outcome(self) -> CompletionOutcome | None:
        """How the job was closed, once `complete()` or `fail()` has succeeded."""
        return self._state.outcome

    @property
    def _telemetry(self) -> Telemetry:
        return self._transport.telemetry

    def _operation(self, name: str) -> JobOperation:
        return self._transport.telemetry.operation(name, self.job_id, self._state.company_id)

    # -- taking turns and resuming ------------------------------------------------------------

    async def _open(self) -> JobLedger:
        if self._job_ledger is None:
            self._job_ledger = await self._ledger.open_job(self.job_id)
        return self._job_ledger

    def _turn(self, job_ledger: JobLedger) -> AbstractAsyncContextManager[object]:
        """The job's turn for one call: the ledger's, or, while `hold()` keeps it, this run's."""
        if self._holding:
            return self._held_calls
        return self._timed_turn(job_ledger, self._wait)

    def _timed_turn(self, job_ledger: JobLedger, wait: bool) -> AbstractAsyncContextManager[object]:
        """The ledger's turn; taking a `PostgresLedger`'s lease is a `pleo.lease.wait` span."""
        turn = job_ledger.turn(wait=wait)
        kind = commit_kind(job_ledger)
        if kind != "postgres":
            return turn
        return self._transport.telemetry.lease_wait(turn, self.job_id, kind)

    @contextlib.asynccontextmanager
    async def hold(self, *, wait: bool | None = None) -> AsyncIterator[JobRun]:
        """Keep the job's turn (with a shared ledger, its lease) across several calls:

            async with job.hold():
                await job.update(updates)
                await job.complete()

        Other JobRuns and workers of the ledger wait until the block ends; with `wait=False`
        (default: as given to `client.job`), raises `JobLeased` at once if one of them holds the
        job. Without it, each call takes the turn for itself, and another worker may work the job
        between two calls (this run then picks up what that worker did).

        Raises `JobLeased` (with `wait=False`) when another holds the job; `LedgerError` (or its
        `LeaseLost`) when the ledger cannot take or keep the turn.
        """
        job_ledger = await self._open()
        if self._holding:
            yield self  # held already, by an enclosing block
            return
        async with self._timed_turn(job_ledger, self._wait if wait is None else wait):
            self._holding = True
            try:
                yield self
            finally:
                self._holding = False

    async def _prepare(self, job_ledger: JobLedger) -> None:
        """Pick up what the ledger knows and, the first time, where a crashed process left off
        (R13). Callers hold the job's turn, so nothing is in flight while this runs."""
        guard = job_ledger.sending_guard(self._transport.timeout)
        if guard is not None:
            await guard()  # a worker that lost the job's lease does nothing more for it
        if job_ledger.epoch != self._epoch:
            # Another process worked the job since this run last did: resume from its records.
            self._epoch = job_ledger.epoch
            self._resumed = False
            tracker = self._state.open_tracker
            if tracker is not None:
                tracker.catch_up()
        record = job_ledger.final_event()
        if record is not None and record.outcome is not None:
            self._state.found_delivered(record.outcome)
        if self._resumed:
            return
        if record is not None and record.outcome is None:
            await self._events.settle_pending(job_ledger, record.request)
        if self._reconcile_on_resume and not self._state.is_over and job_ledger.in_flight_at_open():
            await self._reconcile(job_ledger)
        # Only now: if Pleo could not be read, the next call tries again before it sends.
        self._resumed = True

    # -- what Pleo holds ----------------------------------------------------------------------

    async def reconcile(self) -> int:
        """Mark as acknowledged the updates Pleo already holds but the ledger has no
        acknowledgement for: batches in flight at a crash, or whose answer was lost.

        Pages through `GET /v3/export-jobs/{jobId}/items` and compares each item's status and
        the fields we sent. Returns how many updates it marked acknowledged.

        Raises `JobFinished` (no request) once the job's final event is recorded; while reading,
        `JobNotFound`, `AuthenticationError`, `PermissionDenied`, `ApiError`, `TransportError` or
        `UnexpectedResponse`; `JobLeased` or `LedgerError` from the ledger.
        """
        job_ledger = await self._open()
        async with self._turn(job_ledger):
            self._state.raise_if_over()
            return await self._reconcile(job_ledger)

    async def _reconcile(self, job_ledger: JobLedger) -> int:
        tracker = self._state.tracker(job_ledger)
        candidates = dict(job_ledger.in_flight_at_open())
        candidates.update(tracker.unacknowledged_updates())
        if not candidates:
            return 0
        landed = await updates_pleo_shows(self.items(), candidates)
        await record_found(job_ledger, tracker, landed, self._telemetry)
        logger.info(
            "reconciled %d of %d unconfirmed updates with Pleo",
            len(landed),
            len(candidates),
            extra={"job_id": self.job_id},
        )
        return len(landed)

    async def take_in_what_pleo_holds(self, items: Iterable[ExportJobItem]) -> int:
        """Record as acknowledged the final results Pleo shows for items this job's ledger knows
        nothing of (sent by a run that kept no durable ledger, say), so that `complete()` counts
        them. Returns how many it recorded.

        Raises `JobFinished` (no request) once the job's final event is recorded; `JobLeased` or
        `LedgerError` from the ledger."""
        job_ledger = await self._open()
        async with self._turn(job_ledger):
            self._state.raise_if_over()
            held = results_unrecorded(job_ledger, items)
            await record_found(job_ledger, self._state.tracker(job_ledger), held, self._telemetry)
            return len(held)

    def unacknowledged_updates(self) -> list[ItemUpdate]:
        """The updates this run sent (or meant to) that Pleo has not acknowledged: what an
        `IncompleteJob` waits for."""
        tracker = self._state.open_tracker
        if tracker is None:
            return []
        return list(tracker.unacknowledged_updates().values())

    async def recorded_outcome(self) -> CompletionOutcome | None:
        """How the job was closed, if this JobRun or its ledger knows: read from the ledger,
        with no request. None while the ledger has no delivered final event for the job.

        Raises `LedgerError` when the ledger cannot be read."""
        job_ledger = await self._open()
        record = job_ledger.final_event()
        if record is not None and record.outcome is not None:
            self._state.found_delivered(record.outcome)
        return self._state.outcome

    # -- item updates -------------------------------------------------------------------------

    async def update(
        self,
        updates: Iterable[ItemUpdate] | AsyncIterable[ItemUpdate],
        *,
        on_progress: ProgressCallback | None = None,
    ) -> UpdateReport:
        """Send these item updates in concurrent batches and report what Pleo acknowledged.

        Input is pulled lazily, so a generator of a million updates is fine. A list or tuple is
        checked whole before the first request; a stream is checked as it is read, and a bad or
        conflicting element stops the call after the batches in flight are settled. On an error
        the exception carries the report of what was settled in its `report` attribute; so does
        an exception raised by the input itself, which is raised as it is.

        Raises, before any request: `InvalidInput` (its `ConflictingUpdates` for two different
        updates of one ID) for bad input, `JobFinished` once the job's final event is recorded.
        While sending: `JobFinished` (Pleo says the job is final), `JobNotFound`,
        `AuthenticationError` (its `ReauthorizationRequired`), `PermissionDenied`, `ApiError` for
        another error status, `UnexpectedResponse` for a 2xx that is not Pleo's 200,
        `TransportError` once the retries ran out; `JobLeased`, `LeaseLost` or `LedgerError`
        from the ledger. Items Pleo left unacknowledged do not raise: the report lists them.
        """
        self._state.raise_if_over()
        check_updates_argument(updates)
        with self._operation("pleo.job.update") as operation:
            report: UpdateReport | None = None
            try:
                job_ledger = await self._open()
                async with self._turn(job_ledger):
                    await self._prepare(job_ledger)
                    self._state.raise_if_over()
                    report = await self._updates.run(job_ledger, updates, on_progress)
            except BaseException as error:
                if report is not None:
                    # The turn's end raised it (an acknowledgement the ledger wrote after the
                    # call did not land): it carries the call's report all the same.
                    attach_report(error, report)
                settled = getattr(error, "report", None)
                if operation.recording and isinstance(settled, UpdateReport):
                    operation.set_many(_report_attributes(settled))
                raise
            if operation.recording:
                operation.set_many(_report_attributes(report))
            return report

    # -- the final event ----------------------------------------------------------------------

    async def complete(
        self,
        *,
        event: JobEvent | str | None = None,
        failure_reason: str | None = None,
        failure_reason_type: JobFailureReasonType | str | None = None,
    ) -> CompletionOutcome:
        """Close the job with its final event, exactly once.

        Waits for a running `update()`; refuses (sending nothing) while any submitted item is
        unacknowledged; picks `completed`, `completed_with_errors` or `failed` from what was
        acknowledged and rejected (rejections of IDs that are not items of the job left out),
        unless `event` says otherwise.

        Raises `InvalidInput` for a bad `event`, `failure_reason` or `failure_reason_type`, and
        `IncompleteJob` while items are unacknowledged, both sending nothing; `JobFinished` when
        the job was closed otherwise; `JobStateConflict` when Pleo refuses the event for the
        job's status; `JobNotFound`, `AuthenticationError`, `PermissionDenied`, `ApiError`,
        `UnexpectedResponse` or `TransportError` from the requests; `JobLeased`, `LeaseLost` or
        `LedgerError` from the ledger.
        """
        chosen_event = None if event is None else enum_member("event", event, JobEvent)
        if chosen_event is JobEvent.STARTED:
            raise InvalidInput("event", event, "not a final event; use start()")
        reason_type = (
            None
            if failure_reason_type is None
            else enum_member("failure_reason_type", failure_reason_type, JobFailureReasonType)
        )
        optional_text("failure_reason", failure_reason)
        with self._operation("pleo.job.complete") as operation:
            outcome = await self._complete(chosen_event, failure_reason, reason_type)
            if operation.recording:
                operation.set_many(outcome_attributes(outcome))
            return outcome

    async def _complete(
        self,
        chosen_event: JobEvent | None,
        failure_reason: str | None,
        reason_type: JobFailureReasonType | None,
    ) -> CompletionOutcome:
        job_ledger = await self._open()
        async with self._turn(job_ledger):
            await self._prepare(job_ledger)
            if self._state.outcome is not None:
                return self._state.outcome
            self._state.raise_if_over()
            tracker = self._state.tracker(job_ledger)
            unsettled = tracker.unsettled()
            if unsettled:
                raise IncompleteJob(self.job_id, unsettled)
            await self._recheck_refusals(job_ledger, tracker)
            tally = self._tally(job_ledger, tracker)
            if tally.total == 0 and chosen_event is None:
                raise IncompleteJob(self.job_id, (), nothing_to_decide(tally))
            choice = choose_event_for(tally, chosen_event, failure_reason, reason_type)
            return await self._events.send(job_ledger, choice, tally)

    async def fail(self, reason: str, reason_type: JobFailureReasonType | str) -> CompletionOutcome:
        """Fail the whole job now (e.g. the accounting system is unreachable), whatever the items.

        Waits for a running `update()` so its acknowledgements are kept, then sends `failed`.

        Raises `InvalidInput` for a bad `reason` or `reason_type` (sending nothing),
        `JobFinished` when the job was closed otherwise, `JobStateConflict` when Pleo refuses
        the event, and as `complete()` for the requests and the ledger.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidInput("reason", reason, "a failed job needs a reason for the bookkeeper")
        job_reason_type = enum_member("reason_type", reason_type, JobFailureReasonType)
        with self._operation("pleo.job.complete") as operation:
            outcome = await self._fail(reason, job_reason_type)
            if operation.recording:
                operation.set_many(outcome_attributes(outcome))
            return outcome

    async def _fail(self, reason: str, job_reason_type: JobFailureReasonType) -> CompletionOutcome:
        job_ledger = await self._open()
        async with self._turn(job_ledger):
            await self._prepare(job_ledger)
            if self._state.outcome is not None:
                return self._state.outcome
            self._state.raise_if_over()
            tracker = self._state.tracker(job_ledger)
            choice = EventChoice(JobEvent.FAILED, reason, job_reason_type)
            return await self._events.send(job_ledger, choice, self._tally(job_ledger, tracker))

    async def _recheck_refusals(self, job_ledger: JobLedger, tracker: ItemTracker) -> None:
        """Before an item counts as rejected, ask Pleo whether it holds our update after all."""
        suspects = refusals_to_recheck(tracker)
        if not suspects:
            return
        landed = await updates_pleo_shows(self.items(), suspects)
        if landed:
            logger.info(
                "%d refused update(s) were found held by Pleo; counted acknowledged",
                len(landed),
                extra={"job_id": self.job_id},
            )
        await record_found(job_ledger, tracker, landed, self._telemetry)

    @staticmethod
    def _tally(job_ledger: JobLedger, tracker: ItemTracker) -> Tally:
        acknowledgements = job_ledger.acknowledgements
        return with_rejections(
            acknowledgements.tally(),
            tracker.rejections(),
            lambda entry_id: acknowledgements.acknowledged(entry_id) is not None,
        )

    # -- reading and starting the job ---------------------------------------------------------

    async def fetch(self) -> ExportJob:
        """The job as Pleo has it now (`GET /v3/export-jobs/{jobId}`).

        A job Pleo shows final while no final event of this ledger's is waiting for its answer
        was closed by someone else: this run is then final too, and `update()` and `complete()`
        raise `JobFinished` with no request.

        Raises `JobNotFound`, `AuthenticationError`, `PermissionDenied`, `ApiError`,
        `TransportError`, or `UnexpectedResponse` for a body that is not a job."""
        job = await self._reads.job()
        if job.status in FINAL_STATUSES and not self._state.is_over:
            # An event of ours whose answer was lost may be the one Pleo shows: the next call
            # settles it (R11). A ledger this run has not opened is settled on its first call.
            pending = self._job_ledger is not None and self._job_ledger.final_event() is not None
            if not pending:
                self._state.closed_by_others(f"it is {job.status}")
        return job

    async def start(self) -> ExportJob:
        """Send the `started` event (the job becomes in_progress), or accept that it already is.

        A job found already `in_progress` is resumed, as Pleo's recovery guidance says. A job
        whose final event this ledger recorded raises `JobFinished` with no request.

        Raises `JobFinished` also when Pleo shows the job final, `JobStateConflict` when it is in
        another status that cannot start; `JobNotFound`, `AuthenticationError`,
        `PermissionDenied`, `ApiError`, `UnexpectedResponse` or `TransportError` from the
        requests; `JobLeased` or `LedgerError` from the ledger.
        """
        return await self._send_started() or await self.fetch()

    async def _send_started(self) -> ExportJob | None:
        """`start()` but for reading the job back: the job as read when Pleo refused the event
        because it was already in progress, else None. `process_job` needs no read-back, and
        leaves it out of the time to its first PUT."""
        job_ledger = await self._open()
        async with self._turn(job_ledger):
            await self._prepare(job_ledger)
            self._state.raise_if_over()
            response = await self._events.post(
                job_ledger, JobEventRequest(JobEvent.STARTED, self.job_id)
            )
        if response.status < 300:
            return None
        if response.status != 422:
            raise_for_response(response, "POST", EVENTS_PATH)
        job = await self.fetch()
        if job.status in FINAL_STATUSES:
            self._state.closed_by_others(f"it is {job.status}")
            raise JobFinished(self.job_id, f"it is {job.status}")
        if job.status != JobStatus.IN_PROGRESS:
            raise JobStateConflict(self.job_id, "started", job.status)
        return job

    async def items(
        self, *, status: ItemStatus | str | None = None, page_size: int = 100
    ) -> AsyncGenerator[ExportJobItem, None]:
        """Every item of the job at Pleo: all pages of `GET /v3/export-jobs/{jobId}/items`, the
        control layer (each item's status), optionally only those in `status`.

        Raises `InvalidInput` for a bad `status` or `page_size` before any request; then
        `JobNotFound`, `AuthenticationError`, `PermissionDenied`, `ApiError`, `TransportError`,
        or `UnexpectedResponse` for a page that is not a page of items."""
        # Closed with this generator, so that the page it read ahead is let go at once.
        async with contextlib.aclosing(self._reads.items(status, page_size)) as items:
            async for item in items:
                yield item

    async def export_items(self, *, page_size: int = 100) -> AsyncGenerator[ExportItem, None]:
        """The job's items with their accounting data: all pages of `GET /v3/export-items`, the
        data layer. Only a pending or in-progress job has them. The next page is asked for as
        soon as one arrives, while its items are taken.

        Raises `MissingContraAccounts` (400) when the company's contra accounts are not mapped,
        and `JobFinished` (422) when the job is no longer running, both with Pleo's message;
        `InvalidInput` for a bad `page_size` before any request; `AuthenticationError`,
        `PermissionDenied`, `ApiError`, `TransportError` or `UnexpectedResponse` otherwise.
        """
        async with contextlib.aclosing(self._reads.export_items(page_size)) as items:
            async for item in items:
                yield item


def _report_attributes(report: UpdateReport) -> dict[str, int]:
    """An update call's counts, for its span."""
    return {
        "pleo.items.acknowledged": len(report.acknowledged),
        "pleo.items.rejected": len(report.rejected),
        "pleo.items.skipped": len(report.skipped),
        "pleo.items.unacknowledged": len(report.unacknowledged),
        "pleo.items.resent": report.items_resent,
        "pleo.requests": report.requests,
        "pleo.retries": report.retries,
    }


def outcome_attributes(outcome: CompletionOutcome) -> dict[str, str | int | bool]:
    """How a job was closed, for the span of the operation that closed it or found it closed."""
    return {
        "pleo.job.final_event": outcome.event.value,
        "pleo.items.successful": outcome.successful,
        "pleo.items.failed": outcome.failed,
        "pleo.items.rejected": outcome.rejected,
        "pleo.job.already_delivered": outcome.already_delivered,
    }
