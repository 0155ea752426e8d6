"""JobRun: drives the tracker and the final-event decision over the transport for one job (layer 6).

Data flows one way: updates -> tracker plans batches -> transport sends -> tracker reconciles ->
ledger records -> decision picks the event -> transport sends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager
from operator import attrgetter
from typing import TYPE_CHECKING

import attrs

from . import _codec
from ._core._batches import Batch
from ._core._decision import EventChoice, Tally, choose_final_event
from ._core._tracker import CallRecord, EntryState, ItemTracker
from ._core._views import AcknowledgedView, IdSetView
from ._enums import (
    FINAL_JOB_STATUS_OF_EVENT,
    ItemFailureReasonType,
    ItemStatus,
    JobEvent,
    JobFailureReasonType,
    JobStatus,
)
from ._errors import (
    ConflictingUpdates,
    IncompleteJob,
    InvalidInput,
    JobFinished,
    JobStateConflict,
    MissingContraAccounts,
    PleoExportError,
    TransportError,
    UnexpectedResponse,
)
from ._export_items import ExportItem
from ._ledger import JobLedger, Ledger
from ._models import ExportJob, ExportJobItem, ItemUpdate, JobEventRequest
from ._pages import checked_page_size, every_item
from ._report import CompletionOutcome, Progress, Rejection, UpdateReport
from ._transport import Response, raise_for_response
from ._validate import enum_member, optional_text

if TYPE_CHECKING:
    from ._client import PleoExportClient

logger = logging.getLogger("pleo_export_async")

ProgressCallback = Callable[[Progress], None]

_FINAL_STATUSES = frozenset(status.value for status in FINAL_JOB_STATUS_OF_EVENT.values())
_EVENTS_PATH = "/v3/export-job-events"
_EXPORT_ITEMS_PATH = "/v3/export-items"
_DOES_NOT_EXIST = "ACCOUNTING_ENTRY_DOES_NOT_EXIST"


class JobRun:
    """One export job, as this process reports on it. Get one from `client.job(job_id)`.

    `update()` may be called several times, `complete()` closes the job once and returns the
    same outcome when called again. The calls of every JobRun sharing a ledger take turns at
    the job: one runs at a time, the others wait.
    """

    def __init__(
        self,
        client: PleoExportClient,
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
        self._client = client
        self._ledger = ledger
        self._job_ledger: JobLedger | None = None
        self._tracker: ItemTracker | None = None
        self._batch_size = client.batch_size
        self._outcome: CompletionOutcome | None = None
        self._finished_detail: str | None = None
        self._items_path = f"/v3/export-jobs/{job_id}/items"

    def __repr__(self) -> str:
        state = self._outcome.event.value if self._outcome else "open"
        return f"JobRun(job_id={self.job_id!r}, state={state!r})"

    @property
    def outcome(self) -> CompletionOutcome | None:
        """How the job was closed, once `complete()` or `fail()` has succeeded."""
        return self._outcome

    async def _open(self) -> JobLedger:
        if self._job_ledger is None:
            self._job_ledger = await self._ledger.open_job(self.job_id)
        return self._job_ledger

    def _turn(self, job_ledger: JobLedger) -> AbstractAsyncContextManager[object]:
        """The job's turn for one call: the ledger's, or, while `hold()` keeps it, this run's."""
        if self._holding:
            return self._held_calls
        return job_ledger.turn(wait=self._wait)

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
        async with job_ledger.turn(wait=self._wait if wait is None else wait):
            self._holding = True
            try:
                yield self
            finally:
                self._holding = False

    def _tracker_for(self, job_ledger: JobLedger) -> ItemTracker:
        """This run's tracker; only asked for while the job is open."""
        if self._tracker is None:
            self._tracker = ItemTracker(
                job_ledger.acknowledgements,
                self._client.classify_item_error,
                self._client.retry.max_attempts,
            )
        return self._tracker

    async def _prepare(self, job_ledger: JobLedger) -> None:
        """Pick up what the ledger knows and, the first time, where a crashed process left off
        (R13). Callers hold the job's turn, so nothing is in flight while this runs."""
        guard = job_ledger.sending_guard(self._client.transport.timeout)
        if guard is not None:
            await guard()  # a worker that lost the job's lease does nothing more for it
        if job_ledger.epoch != self._epoch:
            # Another process worked the job since this run last did: resume from its records.
            self._epoch = job_ledger.epoch
            self._resumed = False
            if self._tracker is not None:
                self._tracker.catch_up()
        record = job_ledger.final_event()
        if record is not None and record.outcome is not None:
            self._closed(record.outcome)
        if self._resumed:
            return
        self._resumed = True
        if record is not None and record.outcome is None:
            await self._settle_pending_event(job_ledger, record.request)
        if (
            self._reconcile_on_resume
            and self._outcome is None
            and self._finished_detail is None
            and job_ledger.in_flight_at_open()
        ):
            await self._reconcile(job_ledger)

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
            self._raise_if_final()
            return await self._reconcile(job_ledger)

    async def _reconcile(self, job_ledger: JobLedger) -> int:
        tracker = self._tracker_for(job_ledger)
        candidates = dict(job_ledger.in_flight_at_open())
        candidates.update(tracker.unacknowledged_updates())
        if not candidates:
            return 0
        landed = [
            update
            async for item in self.items()
            if (update := candidates.get(item.accounting_entry_id)) is not None
            and _pleo_holds(item, update)
        ]
        await self._record_found(job_ledger, landed)
        logger.info(
            "reconciled %d of %d unconfirmed updates with Pleo",
            len(landed),
            len(candidates),
            extra={"job_id": self.job_id},
        )
        return len(landed)

    async def _record_found(self, job_ledger: JobLedger, held: Sequence[ItemUpdate]) -> None:
        """Pleo was found to hold these updates: record them as acknowledged, durably."""
        if not held:
            return
        body = _codec.encode_item_updates(held)
        batch = self._tracker_for(job_ledger).record_landed(held)
        await job_ledger.record_in_flight(batch, body)
        await job_ledger.record_acknowledged(batch)

    async def take_in_what_pleo_holds(self, items: Iterable[ExportJobItem]) -> int:
        """Record as acknowledged the final results Pleo shows for items this job's ledger knows
        nothing of (sent by a run that kept no durable ledger, say), so that `complete()` counts
        them. Returns how many it recorded.

        Raises `JobFinished` (no request) once the job's final event is recorded; `JobLeased` or
        `LedgerError` from the ledger."""
        job_ledger = await self._open()
        async with self._turn(job_ledger):
            self._raise_if_final()
            acknowledgements = job_ledger.acknowledgements
            held = [
                update
                for item in items
                if acknowledgements.acknowledged(item.accounting_entry_id) is None
                and (update := _update_pleo_holds(item)) is not None
            ]
            await self._record_found(job_ledger, held)
            return len(held)

    def unacknowledged_updates(self) -> list[ItemUpdate]:
        """The updates this run sent (or meant to) that Pleo has not acknowledged: what an
        `IncompleteJob` waits for."""
        if self._tracker is None:
            return []
        return list(self._tracker.unacknowledged_updates().values())

    async def _settle_pending_event(
        self, job_ledger: JobLedger, request: JobEventRequest, tally: Tally | None = None
    ) -> str:
        """A final event was sent without its result being recorded (the process stopped, or
        the call was cancelled): if the job is in its status, it landed. Returns the status."""
        # Pleo applies events asynchronously: look a few times before believing it did not land.
        status = await self._job_status(wait_for=FINAL_JOB_STATUS_OF_EVENT[request.event])
        if status == FINAL_JOB_STATUS_OF_EVENT[request.event]:
            counts = tally if tally is not None else job_ledger.acknowledgements.tally()
            await self._delivered(job_ledger, _outcome(self.job_id, request, counts, True))
        elif status in _FINAL_STATUSES:
            self._mark_finished(f"it is already {status}")
        return status

    async def recorded_outcome(self) -> CompletionOutcome | None:
        """How the job was closed, if this JobRun or its ledger knows: read from the ledger,
        with no request. None while the ledger has no delivered final event for the job.

        Raises `LedgerError` when the ledger cannot be read."""
        job_ledger = await self._open()
        record = job_ledger.final_event()
        if record is not None and record.outcome is not None:
            self._closed(record.outcome)
        return self._outcome

    def _raise_if_final(self) -> None:
        if self._outcome is not None:
            raise JobFinished(self.job_id, f"the {self._outcome.event.value} event was sent")
        if self._finished_detail is not None:
            raise JobFinished(self.job_id, self._finished_detail)

    def _closed(self, outcome: CompletionOutcome) -> None:
        """The final event is delivered: keep the outcome, let the per-item state go."""
        self._outcome = outcome
        self._tracker = None

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
        self._raise_if_final()
        if isinstance(updates, str | bytes | bytearray):
            raise InvalidInput("updates", updates, "must be an iterable of ItemUpdate, not text")
        if isinstance(updates, Collection):
            _check_collection(updates)
        elif not isinstance(updates, Iterable | AsyncIterable):
            raise InvalidInput("updates", updates, "must be an iterable of ItemUpdate")
        job_ledger = await self._open()
        async with self._turn(job_ledger):
            await self._prepare(job_ledger)
            self._raise_if_final()
            tracker = self._tracker_for(job_ledger)
            call = _UpdateCall(self, job_ledger, tracker, updates, on_progress)
            return await call.run()

    def _mark_finished(self, detail: str) -> None:
        self._finished_detail = detail

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
        acknowledged and rejected, unless `event` says otherwise.

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
        job_ledger = await self._open()
        async with self._turn(job_ledger):
            await self._prepare(job_ledger)
            if self._outcome is not None:
                return self._outcome
            self._raise_if_final()
            tracker = self._tracker_for(job_ledger)
            unsettled = tracker.unsettled()
            if unsettled:
                raise IncompleteJob(self.job_id, unsettled)
            await self._recheck_refusals(job_ledger, tracker)
            tally = self._tally(job_ledger, tracker)
            if tally.total == 0 and chosen_event is None:
                raise IncompleteJob(
                    self.job_id,
                    (),
                    "no item update was acknowledged or rejected; pass event= to close it anyway",
                )
            choice = choose_final_event(tally)
            if chosen_event is not None and chosen_event is not choice.event:
                choice = EventChoice(chosen_event, None, None)
            if failure_reason is not None or reason_type is not None:
                choice = attrs.evolve(
                    choice,
                    failure_reason=failure_reason or choice.failure_reason,
                    failure_reason_type=reason_type or choice.failure_reason_type,
                )
            return await self._send_final_event(job_ledger, choice, tally)

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
        job_ledger = await self._open()
        async with self._turn(job_ledger):
            await self._prepare(job_ledger)
            if self._outcome is not None:
                return self._outcome
            self._raise_if_final()
            tracker = self._tracker_for(job_ledger)
            choice = EventChoice(JobEvent.FAILED, reason, job_reason_type)
            return await self._send_final_event(
                job_ledger, choice, self._tally(job_ledger, tracker)
            )

    async def _recheck_refusals(self, job_ledger: JobLedger, tracker: ItemTracker) -> None:
        """Before an item counts as rejected, ask Pleo whether it holds our update after all.

        An attempt whose answer was lost, cut off or left the item out may have landed; the
        resend is then refused as a rewrite (Pleo answers EXPORT_ENTRY_STATUS_UPDATE_FAILED for
        an item already successful). Items Pleo does not have are not asked about."""
        suspects = {
            entry_id: entry.update
            for entry_id, entry in tracker.rejected()
            if (entry.error_type or "").upper() != _DOES_NOT_EXIST
        }
        if not suspects:
            return
        landed = [
            update
            async for item in self.items()
            if (update := suspects.get(item.accounting_entry_id)) is not None
            and _pleo_holds(item, update)
        ]
        if landed:
            logger.info(
                "%d refused update(s) were found held by Pleo; counted acknowledged",
                len(landed),
                extra={"job_id": self.job_id},
            )
        await self._record_found(job_ledger, landed)

    def _tally(self, job_ledger: JobLedger, tracker: ItemTracker) -> Tally:
        acknowledgements = job_ledger.acknowledgements
        acknowledged = acknowledgements.tally()
        failure_types = Counter(acknowledged.failure_types)
        rejected = 0
        for entry_id, _ in tracker.rejected():
            # An item rejected now but acknowledged earlier is in whatever state Pleo acknowledged.
            if acknowledgements.acknowledged(entry_id) is None:
                rejected += 1
                failure_types["validation_failure"] += 1
        return attrs.evolve(acknowledged, rejected=rejected, failure_types=dict(failure_types))

    async def _send_final_event(
        self, job_ledger: JobLedger, choice: EventChoice, tally: Tally
    ) -> CompletionOutcome:
        request = JobEventRequest(
            choice.event, self.job_id, choice.failure_reason, choice.failure_reason_type
        )
        previous = job_ledger.final_event()
        if previous is not None:
            # An earlier attempt may have landed (a cancellation while it was in flight): read
            # the job before sending anything (R11).
            status = await self._settle_pending_event(job_ledger, previous.request, tally)
            if self._outcome is not None:
                return self._outcome
            if self._finished_detail is not None:
                raise JobStateConflict(self.job_id, request.event.value, status)
        await job_ledger.record_event_intent(request)
        response = await self._post_event(job_ledger, request)
        if response.status < 300:
            return await self._delivered(job_ledger, _outcome(self.job_id, request, tally, False))
        if response.status == 422 and response.error_type_is("INVALID_EXPORT_JOB_STATUS_CHANGE"):
            status = await self._job_status(wait_for=FINAL_JOB_STATUS_OF_EVENT[request.event])
            if status == FINAL_JOB_STATUS_OF_EVENT[request.event]:
                return await self._delivered(
                    job_ledger, _outcome(self.job_id, request, tally, True)
                )
            if status in _FINAL_STATUSES:
                self._mark_finished(f"it is already {status}")
            raise JobStateConflict(self.job_id, request.event.value, status)
        raise_for_response(response, "POST", _EVENTS_PATH)
        raise AssertionError("unreachable: raise_for_response raises for every error status")

    async def _post_event(self, job_ledger: JobLedger, request: JobEventRequest) -> Response:
        transport = self._client.transport
        return await transport.request(
            "POST",
            _EVENTS_PATH,
            body=_codec.encode(request),
            log_extra={"job_id": self.job_id},
            guard=job_ledger.sending_guard(transport.timeout),
        )

    async def _delivered(
        self, job_ledger: JobLedger, outcome: CompletionOutcome
    ) -> CompletionOutcome:
        await job_ledger.record_event_delivered(outcome)
        self._closed(outcome)
        logger.info(
            "export job closed with %s%s",
            outcome.event.value,
            " (already delivered)" if outcome.already_delivered else "",
            extra={"job_id": self.job_id, "event": outcome.event.value},
        )
        return outcome

    async def _job_status(self, wait_for: str | None = None) -> str:
        """The job's status at Pleo. Events are applied asynchronously (202), so when a status is
        expected, look a few times before believing it is not there."""
        delays = (0.0, 0.25, 0.5, 1.0) if wait_for else (0.0,)
        status = ""
        for delay in delays:
            if delay:
                await asyncio.sleep(delay)
            status = (await self.fetch()).status
            if wait_for is None or status == wait_for or status in _FINAL_STATUSES:
                break
        return status

    # -- reading and starting the job ---------------------------------------------------------

    async def fetch(self) -> ExportJob:
        """The job as Pleo has it now (`GET /v3/export-jobs/{jobId}`).

        Raises `JobNotFound`, `AuthenticationError`, `PermissionDenied`, `ApiError`,
        `TransportError`, or `UnexpectedResponse` for a body that is not a job."""
        return await self._client.get_job(self.job_id)

    async def start(self) -> ExportJob:
        """Send the `started` event (the job becomes in_progress), or accept that it already is.

        A job found already `in_progress` is resumed, as Pleo's recovery guidance says. A job
        whose final event this ledger recorded raises `JobFinished` with no request.

        Raises `JobFinished` also when Pleo shows the job final, `JobStateConflict` when it is in
        another status that cannot start; `JobNotFound`, `AuthenticationError`,
        `PermissionDenied`, `ApiError`, `UnexpectedResponse` or `TransportError` from the
        requests; `JobLeased` or `LedgerError` from the ledger.
        """
        job_ledger = await self._open()
        async with self._turn(job_ledger):
            await self._prepare(job_ledger)
            self._raise_if_final()
            response = await self._post_event(
                job_ledger, JobEventRequest(JobEvent.STARTED, self.job_id)
            )
        if response.status >= 300:
            if response.status != 422:
                raise_for_response(response, "POST", _EVENTS_PATH)
            job = await self.fetch()
            if job.status in _FINAL_STATUSES:
                self._mark_finished(f"it is {job.status}")
                raise JobFinished(self.job_id, f"it is {job.status}")
            if job.status != JobStatus.IN_PROGRESS:
                raise JobStateConflict(self.job_id, "started", job.status)
            return job
        return await self.fetch()

    async def items(
        self, *, status: ItemStatus | str | None = None, page_size: int = 100
    ) -> AsyncGenerator[ExportJobItem, None]:
        """Every item of the job at Pleo: all pages of `GET /v3/export-jobs/{jobId}/items`, the
        control layer (each item's status), optionally only those in `status`.

        Raises `InvalidInput` for a bad `status` or `page_size` before any request; then
        `JobNotFound`, `AuthenticationError`, `PermissionDenied`, `ApiError`, `TransportError`,
        or `UnexpectedResponse` for a page that is not a page of items."""
        params: dict[str, str | list[str]] = {}
        if status is not None:
            params["status"] = enum_member("status", status, ItemStatus).value
        async for item in every_item(
            self._client.transport,
            self._items_path,
            ExportJobItem,
            page_size=checked_page_size(page_size),
            params=params,
        ):
            yield item

    async def export_items(self, *, page_size: int = 100) -> AsyncGenerator[ExportItem, None]:
        """The job's items with their accounting data: all pages of `GET /v3/export-items`, the
        data layer. Only a pending or in-progress job has them.

        Raises `MissingContraAccounts` (400) when the company's contra accounts are not mapped,
        and `JobFinished` (422) when the job is no longer running, both with Pleo's message;
        `InvalidInput` for a bad `page_size` before any request; `AuthenticationError`,
        `PermissionDenied`, `ApiError`, `TransportError` or `UnexpectedResponse` otherwise.
        """
        async for item in every_item(
            self._client.transport,
            _EXPORT_ITEMS_PATH,
            ExportItem,
            page_size=checked_page_size(page_size),
            params={"job_id": self.job_id},
            raise_for=self._raise_for_export_items,
        ):
            yield item

    def _raise_for_export_items(self, response: Response, method: str, path: str) -> None:
        if response.status == 400 and response.error_type_is("MISSING_CONTRA_ACCOUNTS"):
            error_type, message = response.exception_info()
            raise MissingContraAccounts(
                400, error_type, message, method=method, path=path, attempts=response.attempts
            )
        if response.status == 422 and response.error_type_is("EXPORT_JOB_STATUS_UNPROCESSABLE"):
            _, message = response.exception_info()
            detail = message or "Pleo gives export items only for running jobs"
            self._mark_finished(detail)
            raise JobFinished(self.job_id, detail)
        raise_for_response(response, method, path)


def _outcome(
    job_id: str, request: JobEventRequest, tally: Tally, already_delivered: bool
) -> CompletionOutcome:
    return CompletionOutcome(
        job_id=job_id,
        event=request.event,
        failure_reason=request.failure_reason,
        failure_reason_type=request.failure_reason_type,
        successful=tally.successful,
        failed=tally.failed,
        rejected=tally.rejected,
        already_delivered=already_delivered,
    )


def _pleo_holds(item: ExportJobItem, update: ItemUpdate) -> bool:
    """Whether Pleo's item shows this update: same status, and every field we sent."""
    if item.status != update.status.value:
        return False
    sent = (
        (update.external_id, item.external_id),
        (update.external_url, item.external_url),
        (update.failure_reason, item.failure_reason),
        (update.failure_reason_type, item.failure_reason_type),
    )
    if any(ours is not None and ours != theirs for ours, theirs in sent):
        return False
    if update.exported_at is None:
        return True
    # Sent in whole seconds, so compare in whole seconds.
    return item.exported_at is not None and int(item.exported_at.timestamp()) == int(
        update.exported_at.timestamp()
    )


_entry_id_of = attrgetter("accounting_entry_id")


def _update_pleo_holds(item: ExportJobItem) -> ItemUpdate | None:
    """The update that would give Pleo's item the final result it shows; None if it has none.

    A failure type this version does not know counts as `unexpected_failure`: it only decides
    the job's counts and failure type."""
    try:
        if item.status == ItemStatus.SUCCESSFUL:
            return ItemUpdate.successful(
                item.accounting_entry_id,
                external_id=item.external_id,
                external_url=item.external_url,
                exported_at=item.exported_at,
            )
        if item.status == ItemStatus.FAILED:
            known = item.failure_reason_type in _ITEM_FAILURE_TYPES
            return ItemUpdate.failed(
                item.accounting_entry_id,
                reason=item.failure_reason,
                reason_type=item.failure_reason_type if known else "unexpected_failure",  # type: ignore[arg-type]
            )
    except InvalidInput:
        return None  # not a result this library could have sent: leave it to Pleo
    return None


_ITEM_FAILURE_TYPES = frozenset(member.value for member in ItemFailureReasonType)


def _check_collection(updates: Collection[object]) -> None:
    """Whole-input checks for an in-memory collection, before any request (R1, R14)."""
    distinct = len({_entry_id_of(u) for u in updates if type(u) is ItemUpdate})
    if distinct == len(updates):
        return  # every element an ItemUpdate, and no ID twice: nothing to look at closer
    seen: dict[str, ItemUpdate] = {}
    for index, update in enumerate(updates):
        if not isinstance(update, ItemUpdate):
            raise InvalidInput(f"updates[{index}]", update, "not an ItemUpdate")
        entry_id = update.accounting_entry_id
        first = seen.setdefault(entry_id, update)
        if first is not update and first != update:
            raise ConflictingUpdates(entry_id, first, update)


class _UpdateCall:
    """One `update()` call: a fixed set of workers, each planning a batch, sending it and
    settling it in turn (R2)."""

    def __init__(
        self,
        run: JobRun,
        job_ledger: JobLedger,
        tracker: ItemTracker,
        updates: Iterable[ItemUpdate] | AsyncIterable[ItemUpdate],
        on_progress: ProgressCallback | None,
    ) -> None:
        self._run = run
        self._job_ledger = job_ledger
        self._tracker = tracker
        self._transport = run._client.transport
        self._guard = job_ledger.sending_guard(self._transport.timeout)
        # A collection was checked whole before the call (`_check_collection`).
        self._call: CallRecord = tracker.begin_call(checked=isinstance(updates, Collection))
        self._on_progress = on_progress
        self._sync_source: Iterator[ItemUpdate] | None = None
        self._reader: _AsyncSourceReader | None = None
        if isinstance(updates, AsyncIterable):
            # Pulled no further ahead than a batch (R2): in flight, plus one being filled.
            self._reader = _AsyncSourceReader(aiter(updates), max(1, run._batch_size - 1))
        else:
            self._sync_source = iter(updates)
        self._flush_after = run._client.flush_after
        self._exhausted = False
        self._pull_lock = asyncio.Lock()  # one worker at a time fills a batch from the reader
        self._stop: BaseException | None = None
        self._requests = 0
        self._retries = 0
        self._causes: Counter[str] = Counter()
        self._items_resent = 0
        self._acknowledged = 0
        self._rejected = 0
        self._given_up = 0

    async def run(self) -> UpdateReport:
        workers = self._run._client.max_concurrency
        try:
            if self._reader is not None:
                self._reader.start()
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(self._worker())
        finally:
            if self._reader is not None:
                await self._reader.close()
            self._tracker.drop_ready(
                "not sent: the update call stopped" if self._stop else "not sent: cancelled"
            )
        report = self._report()
        if self._stop is not None:
            _attach_report(self._stop, report)
            raise self._stop
        return report

    def _stop_with(self, error: BaseException) -> None:
        if self._stop is None:
            self._stop = error

    async def _next_batch(self) -> Batch | None:
        """The next batch to send: leftovers first, topped up from the input; None when done."""
        tracker = self._tracker
        size = self._run._batch_size
        reader = self._reader
        if reader is None:
            assert self._sync_source is not None
            batch = tracker.plan(size)  # no await until it is sent: atomic on the event loop
            if not self._exhausted:
                try:
                    self._exhausted = not tracker.fill(batch, self._sync_source, size)
                except BaseException:
                    self._exhausted = True
                    tracker.give_up(batch, "not sent: the update call stopped")
                    raise
            return batch if batch.updates else None
        async with self._pull_lock:
            batch = tracker.plan(size)
            assert batch.updates is not None
            # A batch that is not full goes out once its oldest update has waited flush_after
            # (R16): a slow source never lets the job expire.
            flush_after = self._flush_after
            loop = asyncio.get_running_loop()
            deadline = None
            if batch.updates and flush_after is not None:
                deadline = loop.time() + flush_after  # leftovers, answered just now
            try:
                while not self._exhausted and len(batch.updates) < size:
                    pulled = await reader.next(deadline)
                    if pulled is None:
                        break  # time to send what there is
                    pulled_at, update = pulled
                    if update is _END:
                        self._exhausted = True
                        break
                    if isinstance(update, _SourceFailed):
                        self._exhausted = True
                        raise update.error
                    tracker.offer_pulled(batch, update)
                    if deadline is None and batch.updates and flush_after is not None:
                        deadline = pulled_at + flush_after
            except BaseException:
                self._exhausted = True
                tracker.give_up(batch, "not sent: the update call stopped")
                raise
            return batch if batch.updates else None

    async def _worker(self) -> None:
        tracker = self._tracker
        while self._stop is None:
            try:
                batch = await self._next_batch()
            except Exception as error:
                # A bad or conflicting update, or the input itself failed (e.g. the ERP
                # connection dropped): stop pulling; the other workers settle theirs.
                self._stop_with(error)
                return
            if batch is None:
                return
            try:
                await self._send(batch)
            except PleoExportError as error:
                # e.g. a token refresh refused: stop pulling; the other workers settle theirs.
                tracker.give_up(batch, str(error))
                self._stop_with(error)
                return
            except asyncio.CancelledError:
                tracker.give_up(batch, "cancelled while in flight")
                raise
            except Exception as error:
                # Not the library's own error (a ledger's driver failing, say): the call stops
                # the same way, and the caller gets it as itself, with the report, not wrapped
                # in the task group's ExceptionGroup.
                tracker.give_up(batch, f"stopped by {type(error).__name__}")
                self._stop_with(error)
                return
            except BaseException as error:
                tracker.give_up(batch, f"stopped by {type(error).__name__}")
                raise

    async def _send(self, batch: Batch) -> None:
        run, tracker = self._run, self._tracker
        tracker.mark_sent(batch)
        assert batch.updates is not None
        body = _codec.encode_item_updates(batch.updates)
        await self._job_ledger.record_in_flight(batch, body)
        extra = {"job_id": run.job_id, "batch_size": len(batch.ids)}
        try:
            response = await self._transport.request(
                "PUT", run._items_path, body=body, log_extra=extra, guard=self._guard
            )
        except TransportError as error:
            self._count(error.attempts, None)
            raise  # the worker gives the batch up and stops the call, as for any PleoExportError
        self._count(response.attempts, response.retry_causes)
        if response.status == 200:
            await self._settle(batch, response)
        elif response.status == 413:
            # Pleo's limit is lower than our batch size: halve it, send these again (R8).
            run._batch_size = max(1, len(batch.ids) // 2)
            tracker.send_again_later(batch)
            logger.warning(
                "PUT items: 413 for %d items; batches are now at most %d",
                len(batch.ids),
                run._batch_size,
                extra={**extra, "status": 413},
            )
        else:
            tracker.give_up(batch, f"HTTP {response.status}")
            self._stop_with(self._error_for(response))

    async def _settle(self, batch: Batch, response: Response) -> None:
        tracker, job_id = self._tracker, self._run.job_id
        try:
            answer = _codec.read_item_update_response(response.body, job_id)
        except ValueError:
            # Unreadable 200 body: nothing is known to be acknowledged, so it all goes again.
            logger.warning("PUT items: unreadable 200 response", extra={"job_id": job_id})
            answer = _codec.ItemUpdateAnswer([], [], 0)
        if answer.other_jobs:
            logger.warning(
                "PUT items: response lists %d item(s) of another job; ignored",
                answer.other_jobs,
                extra={"job_id": job_id},
            )
        outcome = tracker.reconcile(batch, answer.acknowledged_ids, answer.errors)
        if outcome.acknowledged:
            await self._job_ledger.record_acknowledged(batch)
        if outcome.unexpected_ids:
            logger.warning(
                "PUT items: response names %d ID(s) that were not in the request; ignored: %s",
                len(outcome.unexpected_ids),
                ", ".join(outcome.unexpected_ids[:5]),
                extra={"job_id": job_id},
            )
        self._acknowledged += outcome.acknowledged
        self._rejected += len(outcome.rejected)
        self._items_resent += outcome.requeued
        self._given_up += outcome.given_up
        if self._on_progress is not None:
            self._report_progress(
                Progress(
                    job_id=job_id,
                    acknowledged=self._acknowledged,
                    rejected=self._rejected,
                    skipped=len(self._call.skipped),
                    unacknowledged=self._given_up,
                    in_flight=tracker.in_flight,
                    requests=self._requests,
                    retries=self._retries,
                )
            )

    def _report_progress(self, progress: Progress) -> None:
        assert self._on_progress is not None
        try:
            self._on_progress(progress)
        except Exception:
            # A broken progress display must not abandon batches that are in flight.
            logger.exception("progress callback failed", extra={"job_id": self._run.job_id})

    def _error_for(self, response: Response) -> PleoExportError:
        if response.status < 300:
            # A 2xx that is not Pleo's 200 (204, say): it acknowledges nothing, and resending
            # into an API that answers like that cannot be known to help.
            return UnexpectedResponse(
                f"PUT {self._run._items_path}: HTTP {response.status} where Pleo answers 200;"
                " nothing in the batch is taken as acknowledged"
            )
        _, message = response.exception_info()
        if response.status == 422 and response.error_type_is("EXPORT_JOB_STATUS_UNPROCESSABLE"):
            detail = message or "Pleo refuses item updates"
            self._run._mark_finished(detail)
            return JobFinished(self._run.job_id, detail)
        try:
            raise_for_response(response, "PUT", self._run._items_path)
        except PleoExportError as error:
            return error
        raise AssertionError(f"no error for HTTP {response.status}")

    def _count(self, attempts: int, causes: Mapping[str, int] | None) -> None:
        self._requests += attempts
        if attempts > 1:
            self._retries += attempts - 1
        if causes:
            self._causes.update(causes)

    def _report(self) -> UpdateReport:
        call = self._call
        rejected: dict[str, Rejection] = {}
        unacknowledged: dict[str, str] = {}
        for entry_id, entry in self._tracker.entries_of(call):
            if entry.state is EntryState.ACKNOWLEDGED:
                continue  # acknowledged with a status that is not final, or skipped as such
            if entry.state is EntryState.REJECTED:
                rejected[entry_id] = Rejection(entry.error_type or "", entry.error_message)
            else:
                unacknowledged[entry_id] = entry.error_message or entry.state.value
        return UpdateReport(
            job_id=self._run.job_id,
            acknowledged=AcknowledgedView(call.batches, call.acknowledged),
            rejected=rejected,
            skipped=IdSetView(call.skipped),
            unacknowledged=unacknowledged,
            requests=self._requests,
            retries=self._retries,
            retries_by_cause=dict(self._causes),
            items_resent=self._items_resent,
        )


def _attach_report(error: BaseException, report: UpdateReport) -> None:
    """Hand the call's report to the caller on the exception that stopped it."""
    # An exception type that takes no attributes goes up as it is.
    with contextlib.suppress(AttributeError):
        error.report = report  # type: ignore[attr-defined]


_END = object()


@attrs.frozen
class _SourceFailed:
    """The async input raised this: the call stops, and the caller gets it."""

    error: Exception


class _AsyncSourceReader:
    """Pulls an async input in a task of its own, a little ahead of the workers.

    A worker filling a batch can then stop waiting when the batch must go out (R16) without
    cancelling the input in the middle of producing an update. Each update keeps the time it
    was pulled: the batch's clock starts with its oldest update.
    """

    def __init__(self, source: AsyncIterator[object], ahead: int) -> None:
        self._source = source
        self._queue: asyncio.Queue[tuple[float, object]] = asyncio.Queue(maxsize=ahead)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._pull())

    async def _pull(self) -> None:
        loop = asyncio.get_running_loop()
        put = self._queue.put
        try:
            async for update in self._source:
                await put((loop.time(), update))
        except Exception as error:
            await put((loop.time(), _SourceFailed(error)))
            return
        await put((loop.time(), _END))

    async def next(self, deadline: float | None) -> tuple[float, object] | None:
        """The next update and when it was pulled; None if `deadline` (loop time) passed first."""
        if deadline is None:
            return await self._queue.get()
        try:
            async with asyncio.timeout_at(deadline):
                return await self._queue.get()
        except TimeoutError:
            return None

    async def close(self) -> None:
        """Stop pulling: the input is let go (an async generator is closed, so that what it
        holds, such as tasks of its own, ends now rather than when it is garbage collected)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        aclose = getattr(self._source, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:
                # The input failed while being closed: the call's own outcome matters more.
                logger.exception("closing the update source failed")
