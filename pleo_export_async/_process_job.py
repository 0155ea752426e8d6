"""`process_job`: the export workflow of one job in one call (rule R17; the Workflow layer).

Start or resume the job; read which of its items still need a result (the control layer) and
take in the results Pleo already holds; run the connector's handler on each item's accounting
data (the data layer), at most `concurrency` at a time; stream the results into `update()` as
they come, so the first batch goes out long before the last handler call ends; complete the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Protocol

import attrs

from . import _checks
from ._enums import ItemFailureReasonType, ItemStatus, JobStatus
from ._errors import InvalidInput, JobFinished
from ._export_items import ExportItem
from ._job import JobRun, outcome_attributes
from ._ledger import Ledger
from ._models import ExportJob, ItemUpdate
from ._report import CompletionOutcome, ProgressCallback
from ._telemetry import NOTHING, JobOperation

logger = logging.getLogger("pleo_export_async")

#: The connector's work on one item: post it to the ERP, say how it went. An async function
#: (or anything whose call gives an awaitable): a plain function would hold up the event loop,
#: and with it every batch, timer and lease of the client, while it waits for the ERP.
Handler = Callable[[ExportItem], Awaitable[ItemUpdate]]

#: Item statuses that still need a result from the connector (Pleo's control layer guidance).
_NEEDS_RESULT = frozenset({ItemStatus.PENDING.value, ItemStatus.IN_PROGRESS.value})
_REASON_LIMIT = 1000  # characters of an exception's text sent to the bookkeeper


class JobSource(Protocol):
    """What the workflow uses of a client: its jobs, listed and one by one."""

    def job(self, job_id: str, *, ledger: Ledger | None = None, wait: bool = True) -> JobRun: ...

    def jobs(
        self,
        *,
        statuses: Iterable[JobStatus | str] = ...,
        company_id: str | None = None,
    ) -> AsyncIterator[ExportJob]: ...


async def process_job(
    client: JobSource,
    job_id: str,
    handler: Handler,
    *,
    concurrency: int,
    ledger: Ledger | None,
    stop: asyncio.Event | None,
    on_progress: ProgressCallback | None = None,
    wait: bool = True,
) -> CompletionOutcome | None:
    _checks.async_function("handler", handler, of="an ExportItem")
    _checks.whole_number("concurrency", concurrency, low=1)
    run = client.job(job_id, ledger=ledger, wait=wait)
    with job_operation(run) as operation:
        # Held throughout, so that no other worker starts the job, or calls its own handler on
        # an item, while this one works it.
        async with run.hold():
            return await process_held_job(run, handler, concurrency, stop, on_progress, operation)


def job_operation(run: JobRun) -> JobOperation:
    """The `pleo.process_job` span of the run's job, and its `pleo.export.job.duration`."""
    return run._telemetry.operation("pleo.process_job", run.job_id, timed=True)


async def process_held_job(
    run: JobRun,
    handler: Handler,
    concurrency: int,
    stop: asyncio.Event | None,
    on_progress: ProgressCallback | None,
    operation: JobOperation = NOTHING,
) -> CompletionOutcome | None:
    """`process_job` for a run whose caller holds the job (`run.hold()`), arguments checked;
    what it did goes on `operation` (from `job_operation`)."""
    outcome = await _process_held_job(run, handler, concurrency, stop, on_progress, operation)
    if outcome is None:
        operation.outcome("stopped")
        operation.set("pleo.job.stopped", True)
    else:
        operation.outcome(outcome.event.value)
        if operation.recording:
            operation.set_many(outcome_attributes(outcome))
    return outcome


async def _process_held_job(
    run: JobRun,
    handler: Handler,
    concurrency: int,
    stop: asyncio.Event | None,
    on_progress: ProgressCallback | None,
    operation: JobOperation,
) -> CompletionOutcome | None:
    job_id = run.job_id
    recorded = await run.recorded_outcome()
    if recorded is not None:
        return recorded  # this ledger's last run closed it: nothing is sent
    job = await run.fetch()
    operation.set("pleo.company.id", job.company_id)
    status = job.status
    if status == JobStatus.PENDING:
        if stop is not None and stop.is_set():
            return None  # told to stop before the job was taken: it stays pending (R21)
        try:
            await run._send_started()  # start() without reading the job back
        except JobFinished:
            return await run.complete()  # closed meanwhile: its outcome here, or it raises
    elif status != JobStatus.IN_PROGRESS:
        # Closed, as the fetch told the run: by this ledger's last run while its event's answer
        # was lost (complete() finds it delivered), or by someone else (it raises JobFinished,
        # sending nothing).
        return await run.complete()
    # An in_progress job is resumed without sending `started` again
    # (docs/pleo-api.md#documented-flow).
    needed: set[str] = set()
    settled_at_pleo = []
    async for item in run.items():
        if item.status in _NEEDS_RESULT:
            needed.add(item.accounting_entry_id)
        else:
            settled_at_pleo.append(item)
    await run.take_in_what_pleo_holds(settled_at_pleo)
    stopped = stop if stop is not None else asyncio.Event()
    if needed:
        results = _results(run, needed, handler, concurrency, stopped, operation)
        report = await run.update(results, on_progress=on_progress)
        if report.unacknowledged and not stopped.is_set():
            # Their retries ran out in that call: one more round before giving up on them.
            await run.update(run.unacknowledged_updates(), on_progress=on_progress)
    if stopped.is_set():
        logger.info("stopped before completing the job", extra={"job_id": job_id})
        return None
    return await run.complete()


@attrs.frozen
class _End:
    """The items ran out, or reading them failed with `error`."""

    error: BaseException | None = None


async def _results(
    run: JobRun,
    needed: set[str],
    handler: Handler,
    concurrency: int,
    stop: asyncio.Event,
    operation: JobOperation,
) -> AsyncIterator[ItemUpdate]:
    """The handler's result for each needed item, in the order they are ready.

    A slot is held from the handler call until its result is taken, so at most `concurrency`
    items are being handled or waiting to be sent.

    A call of the handler that gives no awaitable stops the stream with `InvalidInput`, before
    any result is taken after it; the handler is not called again.
    """
    slots = asyncio.Semaphore(concurrency)
    ready: asyncio.Queue[ItemUpdate | _End] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    refused: list[InvalidInput] = []
    telemetry = run._telemetry

    async def handle(item: ExportItem) -> None:
        if refused:
            return  # a plain function may have done its ERP work already: not one call more
        try:
            with telemetry.handler_call(
                operation, run.job_id, item.accounting_entry_id
            ) as recorder:
                result = await _result_of(run.job_id, handler, item, recorder)
        except InvalidInput as refusal:
            refused.append(refusal)
            ready.put_nowait(_End(refusal))
            return
        ready.put_nowait(result)

    async def feed() -> None:
        failure: Exception | None = None
        try:
            async with asyncio.TaskGroup() as handling:
                try:
                    async with contextlib.aclosing(run.export_items()) as items:
                        async for item in items:
                            if item.accounting_entry_id not in needed:
                                continue
                            await slots.acquire()
                            if stop.is_set() or refused:
                                slots.release()
                                break
                            needed.discard(item.accounting_entry_id)
                            handling.create_task(handle(item))
                            # Let the handler begin before the next item is read: reading one
                            # costs a tenth of a millisecond, and several slots free at once.
                            await asyncio.sleep(0)
                except Exception as error:
                    # Reading the items failed (MissingContraAccounts, say): the items being
                    # handled still finish and are sent; then the stream raises this error, as
                    # itself, not wrapped in the task group's ExceptionGroup.
                    failure = error
            if failure is not None:
                ready.put_nowait(_End(failure))
                return
            if not stop.is_set() and not refused:
                for entry_id in sorted(needed):
                    # Pleo listed the item as needing a result but gave no data for it.
                    await slots.acquire()
                    ready.put_nowait(
                        ItemUpdate.failed(
                            entry_id,
                            reason="Pleo gave no export data for this item; export it again",
                            reason_type=ItemFailureReasonType.UNEXPECTED_FAILURE,
                        )
                    )
        except BaseException as error:
            ready.put_nowait(_End(error))
            raise
        ready.put_nowait(_End())

    feeding = loop.create_task(feed())
    try:
        while True:
            result = await ready.get()
            if refused:
                raise refused[0]
            if isinstance(result, _End):
                if result.error is not None:
                    raise result.error
                return
            slots.release()
            yield result
    finally:
        if not feeding.done():
            feeding.cancel()
        await asyncio.gather(feeding, return_exceptions=True)


class _Recorder(Protocol):
    def outcome(self, outcome: str) -> None: ...


async def _result_of(
    job_id: str, handler: Handler, item: ExportItem, recorder: _Recorder
) -> ItemUpdate:
    """The handler's update for the item, or a `failed` one saying what went wrong with it;
    `recorder` is told which (`successful`, `failed`, or `error` when the library failed it).

    Raises `InvalidInput` when the call gives no awaitable: the handler is not an async
    function, and what it returned says nothing of the item that can be trusted."""
    entry_id = item.accounting_entry_id
    extra = {"job_id": job_id, "accounting_entry_id": entry_id}
    try:
        called: object = handler(item)
    except Exception as error:
        return _failed_by(error, extra)
    if not inspect.isawaitable(called):
        raise _not_awaitable(handler, called)
    try:
        result = await called
    except Exception as error:
        return _failed_by(error, extra)
    if not isinstance(result, ItemUpdate):
        kind = type(result).__name__
        logger.error("the handler returned %s, not an ItemUpdate", kind, extra=extra)
        return _failed(entry_id, f"the connector returned {kind}, not a result")
    if result.accounting_entry_id != entry_id:
        logger.error("the handler returned an update for another item", extra=extra)
        return _failed(entry_id, "the connector returned the result of another item")
    recorder.outcome(result.status.value)
    return result


def _not_awaitable(handler: Handler, result: object) -> InvalidInput:
    return InvalidInput(
        "handler",
        handler,
        f"returned {type(result).__name__}, not an awaitable: it must be an async function of an"
        " ExportItem (async def ...); nothing more is sent for the job, which stays open",
    )


def _failed_by(error: Exception, extra: dict[str, str]) -> ItemUpdate:
    """The item failed with the handler's exception; called while it is being handled, so the
    log carries its traceback."""
    logger.exception("the handler failed on an item; it is reported failed", extra=extra)
    reason = f"{type(error).__name__}: {error}" if str(error) else repr(error)
    return _failed(extra["accounting_entry_id"], reason)


def _failed(entry_id: str, reason: str) -> ItemUpdate:
    return ItemUpdate.failed(
        entry_id,
        reason=reason[:_REASON_LIMIT],
        reason_type=ItemFailureReasonType.UNEXPECTED_FAILURE,
    )
