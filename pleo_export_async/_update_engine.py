"""The update engine: one `update()` call's workers, each planning a batch, sending it and
settling Pleo's answer in turn (rules R1 to R3, R8, R16), over the transport and the ledger.

The engine of a job outlives its calls: a 413 from Pleo makes every later batch of the job
smaller, and that is state the engine keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterable, Collection, Iterable, Iterator, Mapping
from operator import attrgetter

from . import _codec
from ._async_source import END, AsyncSourceReader, SourceFailed
from ._core._batches import Batch
from ._core._tracker import CallRecord, EntryState, ItemTracker
from ._core._views import AcknowledgedView, IdSetView
from ._errors import (
    ConflictingUpdates,
    InvalidInput,
    JobFinished,
    PleoExportError,
    TransportError,
    UnexpectedResponse,
)
from ._job_state import RunState
from ._ledger import JobLedger, commit_kind
from ._models import ItemUpdate
from ._report import Progress, ProgressCallback, Rejection, UpdateReport
from ._transport import Response, Transport, raise_for_response

logger = logging.getLogger("pleo_export_async")

_entry_id_of = attrgetter("accounting_entry_id")


class UpdateEngine:
    """Sends the item updates of one job. `run()` is one `update()` call."""

    def __init__(self, transport: Transport, state: RunState, items_path: str) -> None:
        self.transport = transport
        self.state = state
        self.items_path = items_path
        #: Items per PUT: the client's batch size, until Pleo answers 413 (R8).
        self.batch_size = state.settings.batch_size

    async def run(
        self,
        job_ledger: JobLedger,
        updates: Iterable[ItemUpdate] | AsyncIterable[ItemUpdate],
        on_progress: ProgressCallback | None,
    ) -> UpdateReport:
        tracker = self.state.tracker(job_ledger)
        return await _UpdateCall(self, job_ledger, tracker, updates, on_progress).run()

    def shrink_after_413(self, refused: int) -> int:
        """Pleo's limit is lower than our batch size: halve it."""
        self.batch_size = max(1, refused // 2)
        return self.batch_size


def check_updates_argument(updates: object) -> None:
    """The `updates` argument of `update()`, before any request (R1, R14): an iterable or async
    iterable, not text; a list or tuple is checked whole."""
    if isinstance(updates, str | bytes | bytearray):
        raise InvalidInput("updates", updates, "must be an iterable of ItemUpdate, not text")
    if isinstance(updates, Collection):
        _check_collection(updates)
    elif not isinstance(updates, Iterable | AsyncIterable):
        raise InvalidInput("updates", updates, "must be an iterable of ItemUpdate")


def _check_collection(updates: Collection[object]) -> None:
    """Whole-input checks for an in-memory collection: every element an ItemUpdate, and no two
    different updates of one ID."""
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
        engine: UpdateEngine,
        job_ledger: JobLedger,
        tracker: ItemTracker,
        updates: Iterable[ItemUpdate] | AsyncIterable[ItemUpdate],
        on_progress: ProgressCallback | None,
    ) -> None:
        self._engine = engine
        self._job_id = engine.state.job_id
        self._items_path = engine.items_path
        self._job_ledger = job_ledger
        self._tracker = tracker
        self._transport = engine.transport
        self._guard = job_ledger.sending_guard(self._transport.timeout)
        self._telemetry = engine.transport.telemetry
        self._commit_kind = commit_kind(job_ledger)
        # A collection was checked whole before the call (`_check_collection`).
        self._call: CallRecord = tracker.begin_call(checked=isinstance(updates, Collection))
        self._on_progress = on_progress
        self._sync_source: Iterator[ItemUpdate] | None = None
        self._reader: AsyncSourceReader | None = None
        if isinstance(updates, AsyncIterable):
            # Pulled no further ahead than a batch (R2): in flight, plus one being filled.
            self._reader = AsyncSourceReader(aiter(updates), max(1, engine.batch_size - 1))
        else:
            self._sync_source = iter(updates)
        self._flush_after = engine.state.settings.flush_after
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
        workers = self._engine.state.settings.max_concurrency
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
        self._telemetry.items(
            {"skipped": len(report.skipped), "unacknowledged": len(report.unacknowledged)}
        )
        if self._stop is not None:
            attach_report(self._stop, report)
            raise self._stop
        return report

    def _stop_with(self, error: BaseException) -> None:
        if self._stop is None:
            self._stop = error

    async def _next_batch(self) -> Batch | None:
        """The next batch to send: leftovers first, topped up from the input; None when done."""
        tracker = self._tracker
        size = self._engine.batch_size
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
                    if update is END:
                        self._exhausted = True
                        break
                    if isinstance(update, SourceFailed):
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
        tracker = self._tracker
        tracker.mark_sent(batch)
        assert batch.updates is not None
        body = _codec.encode_item_updates(batch.updates)
        telemetry = self._telemetry
        with telemetry.ledger_commit(self._commit_kind, "in_flight"):
            await self._job_ledger.record_in_flight(batch, body)
        size = len(batch.ids)
        extra = {"job_id": self._job_id, "batch_size": size}
        try:
            response = await self._transport.request(
                "PUT",
                self._items_path,
                body=body,
                log_extra=extra,
                guard=self._guard,
                span_attributes={"pleo.batch.size": size},
                keep_span=True,
            )
        except TransportError as error:
            self._count(error.attempts, None)
            telemetry.batch("no_answer")
            raise  # the worker gives the batch up and stops the call, as for any PleoExportError
        self._count(response.attempts, response.retry_causes)
        if response.status == 200:
            telemetry.batch("answered")
            attempt = response.attempt
            if attempt is None:
                await self._settle(batch, response)
            else:
                try:
                    acknowledged, rejected = self._acknowledged, self._rejected
                    await self._settle(batch, response)
                    attempt.add(
                        {
                            "pleo.items.acknowledged": self._acknowledged - acknowledged,
                            "pleo.items.rejected": self._rejected - rejected,
                        }
                    )
                finally:
                    attempt.close()
            return
        if response.attempt is not None:
            response.attempt.close()
        if response.status == 413:
            telemetry.batch("split")
            # Pleo's limit is lower than our batch size: halve it, send these again (R8).
            smaller = self._engine.shrink_after_413(len(batch.ids))
            tracker.send_again_later(batch)
            logger.warning(
                "PUT items: 413 for %d items; batches are now at most %d",
                len(batch.ids),
                smaller,
                extra={**extra, "status": 413},
            )
        else:
            telemetry.batch("refused")
            tracker.give_up(batch, f"HTTP {response.status}")
            self._stop_with(self._error_for(response))

    async def _settle(self, batch: Batch, response: Response) -> None:
        tracker, job_id = self._tracker, self._job_id
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
        self._telemetry.items(
            {
                "acknowledged": outcome.acknowledged,
                "rejected": len(outcome.rejected),
                "resent": outcome.requeued,
            }
        )
        if outcome.acknowledged:
            with self._telemetry.ledger_commit(self._commit_kind, "acknowledged"):
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
            logger.exception("progress callback failed", extra={"job_id": self._job_id})

    def _error_for(self, response: Response) -> PleoExportError:
        if response.status < 300:
            # A 2xx that is not Pleo's 200 (204, say): it acknowledges nothing, and resending
            # into an API that answers like that cannot be known to help.
            return UnexpectedResponse(
                f"PUT {self._items_path}: HTTP {response.status} where Pleo answers 200;"
                " nothing in the batch is taken as acknowledged"
            )
        _, message = response.exception_info()
        if response.status == 422 and response.error_type_is("EXPORT_JOB_STATUS_UNPROCESSABLE"):
            detail = message or "Pleo refuses item updates"
            self._engine.state.closed_by_others(detail)
            return JobFinished(self._job_id, detail)
        try:
            raise_for_response(response, "PUT", self._items_path)
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
            job_id=self._job_id,
            acknowledged=AcknowledgedView(call.batches, call.acknowledged),
            rejected=rejected,
            skipped=IdSetView(call.skipped),
            unacknowledged=unacknowledged,
            requests=self._requests,
            retries=self._retries,
            retries_by_cause=dict(self._causes),
            items_resent=self._items_resent,
        )


def attach_report(error: BaseException, report: UpdateReport) -> None:
    """Hand the call's report to the caller on the exception that stopped it."""
    # An exception type that takes no attributes goes up as it is.
    with contextlib.suppress(AttributeError):
        error.report = report  # type: ignore[attr-defined]
