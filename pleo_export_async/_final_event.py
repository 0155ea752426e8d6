"""Sending a job's final event exactly once (rule R11): the intent recorded before the event is
sent, the result after; an event whose answer was lost is looked for at Pleo, never sent blind."""

from __future__ import annotations

import asyncio
import logging

from . import _codec
from ._core._decision import EventChoice, Tally
from ._enums import FINAL_JOB_STATUS_OF_EVENT
from ._errors import JobStateConflict
from ._job_reads import FINAL_STATUSES, JobReads
from ._job_state import RunState
from ._ledger import JobLedger, commit_kind
from ._models import JobEventRequest
from ._report import CompletionOutcome
from ._transport import Response, Transport, raise_for_response

logger = logging.getLogger("pleo_export_async")

EVENTS_PATH = "/v3/export-job-events"
#: Pleo applies events asynchronously (202): how long to look before believing one did not land.
_STATUS_LOOKS = (0.0, 0.25, 0.5, 1.0)


class JobEvents:
    """The job events of one run: `started`, and the final event with its ledger records."""

    def __init__(self, transport: Transport, state: RunState, reads: JobReads) -> None:
        self._transport = transport
        self._state = state
        self._reads = reads

    async def post(self, job_ledger: JobLedger, request: JobEventRequest) -> Response:
        return await self._transport.request(
            "POST",
            EVENTS_PATH,
            body=_codec.encode(request),
            log_extra={"job_id": self._state.job_id},
            guard=job_ledger.sending_guard(self._transport.timeout),
        )

    async def send(
        self, job_ledger: JobLedger, choice: EventChoice, tally: Tally
    ) -> CompletionOutcome:
        state = self._state
        request = JobEventRequest(
            choice.event, state.job_id, choice.failure_reason, choice.failure_reason_type
        )
        previous = job_ledger.final_event()
        if previous is not None:
            # An earlier attempt may have landed (a cancellation while it was in flight): read
            # the job before sending anything.
            status = await self.settle_pending(job_ledger, previous.request, tally)
            if state.outcome is not None:
                return state.outcome
            if state.closed_otherwise is not None:
                raise JobStateConflict(state.job_id, request.event.value, status)
        with self._transport.telemetry.ledger_commit(commit_kind(job_ledger), "event_intent"):
            await job_ledger.record_event_intent(request)
        response = await self.post(job_ledger, request)
        if response.status < 300:
            return await self._delivered(job_ledger, request, tally, already_delivered=False)
        if response.status == 422 and response.error_type_is("INVALID_EXPORT_JOB_STATUS_CHANGE"):
            status = await self._job_status(wait_for=FINAL_JOB_STATUS_OF_EVENT[request.event])
            if status == FINAL_JOB_STATUS_OF_EVENT[request.event]:
                return await self._delivered(job_ledger, request, tally, already_delivered=True)
            if status in FINAL_STATUSES:
                state.closed_by_others(f"it is already {status}")
            raise JobStateConflict(state.job_id, request.event.value, status)
        raise_for_response(response, "POST", EVENTS_PATH)
        raise AssertionError("unreachable: raise_for_response raises for every error status")

    async def settle_pending(
        self, job_ledger: JobLedger, request: JobEventRequest, tally: Tally | None = None
    ) -> str:
        """A final event was sent without its result being recorded (the process stopped, or
        the call was cancelled): if the job is in its status, it landed. Returns the status."""
        status = await self._job_status(wait_for=FINAL_JOB_STATUS_OF_EVENT[request.event])
        if status == FINAL_JOB_STATUS_OF_EVENT[request.event]:
            counts = tally if tally is not None else job_ledger.acknowledgements.tally()
            await self._delivered(job_ledger, request, counts, already_delivered=True)
        elif status in FINAL_STATUSES:
            self._state.closed_by_others(f"it is already {status}")
        return status

    async def _delivered(
        self,
        job_ledger: JobLedger,
        request: JobEventRequest,
        tally: Tally,
        *,
        already_delivered: bool,
    ) -> CompletionOutcome:
        outcome = CompletionOutcome(
            job_id=self._state.job_id,
            event=request.event,
            failure_reason=request.failure_reason,
            failure_reason_type=request.failure_reason_type,
            successful=tally.successful,
            failed=tally.failed,
            rejected=tally.rejected,
            already_delivered=already_delivered,
        )
        telemetry = self._transport.telemetry
        with telemetry.ledger_commit(commit_kind(job_ledger), "event_delivered"):
            await job_ledger.record_event_delivered(outcome)
        self._state.delivered(outcome)
        telemetry.job_closed(outcome.event.value, already_delivered)
        logger.info(
            "export job closed with %s%s",
            outcome.event.value,
            " (already delivered)" if already_delivered else "",
            extra={"job_id": self._state.job_id, "event": outcome.event.value},
        )
        return outcome

    async def _job_status(self, wait_for: str) -> str:
        """The job's status at Pleo, looked at a few times while it is not yet `wait_for`."""
        status = ""
        for delay in _STATUS_LOOKS:
            if delay:
                await asyncio.sleep(delay)
            status = (await self._reads.job()).status
            if status == wait_for or status in FINAL_STATUSES:
                break
        return status
