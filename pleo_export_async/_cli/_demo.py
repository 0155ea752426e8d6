"""`pleo-export demo`: the library's main job, end to end, against the bundled fake server.

A fake Pleo with a job of N items; `process_job` with a stand-in ERP that fails about one item
in ten with the reasons Pleo's integration guide gives; faults on the wire; a live progress
display; a summary of what was sent, read back from the fake's journal.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pleo_export_async._auth import ApiKeyAuth
from pleo_export_async._client import PleoExportClient
from pleo_export_async._enums import ItemFailureReasonType
from pleo_export_async._export_items import ExportItem
from pleo_export_async._models import ItemUpdate
from pleo_export_async._report import CompletionOutcome
from pleo_export_async._report import Progress as JobProgress
from pleo_export_async.testing import FakePleo, Faults, FaultSpec

from ._output import ExitCode, Output

#: ERP failures as Pleo's integration guide words them (docs/pleo-api.md#failure-mappings).
REALISTIC_FAILURES: tuple[tuple[ItemFailureReasonType, str], ...] = (
    (
        ItemFailureReasonType.MISSING_CONFIGURATION,
        "Journal PURCH missing: provide journal PURCH in the configurations",
    ),
    (
        ItemFailureReasonType.TAX_CODE_UNKNOWN,
        "Tax Code VAT25R does not exist in the Accounting System",
    ),
    (
        ItemFailureReasonType.ACCOUNT_UNKNOWN,
        "Account No. 6810 does not exist in the Accounting System. Check Category.",
    ),
    (
        ItemFailureReasonType.VENDOR_UNKNOWN,
        "Selected vendor cannot be processed because it does not exist or is currently blocked. "
        "Please verify the vendor's status in the accounting system and try again.",
    ),
    (
        ItemFailureReasonType.TAG_UNKNOWN,
        "Tag with code PROJ-42 does not exist on the Accounting System. Check the Tag.",
    ),
    (
        ItemFailureReasonType.RECEIPT_FILE_SIZE_LIMIT_EXCEEDED,
        "Receipt is 31 MB; the accounting system accepts at most 30 MB per attachment.",
    ),
)

FAULT_LEVELS = ("none", "light", "heavy")


def faults_for(level: str) -> Faults:
    """The faults the fake injects at each level of the demo."""
    if level == "none":
        return Faults()
    if level == "light":
        return Faults(
            latency=(0.001, 0.01),
            server_error=FaultSpec(probability=0.02),
            rate_limit=FaultSpec(at={12}),
            retry_after=0.5,
            lost_response=FaultSpec(probability=0.02),
            partial_ack=FaultSpec(probability=0.03),
            item_error=FaultSpec(probability=0.002),
            lost_event_response=FaultSpec(probability=0.5),
        )
    return Faults(
        latency=(0.001, 0.03),
        server_error=FaultSpec(probability=0.08),
        rate_limit=FaultSpec(at={12, 60}),
        retry_after=0.5,
        lost_response=FaultSpec(probability=0.06),
        partial_ack=FaultSpec(probability=0.1),
        item_error=FaultSpec(probability=0.01),
        lost_event_response=FaultSpec(probability=0.7),
    )


def stand_in_erp(
    failed_fraction: float, seed: int
) -> Callable[[ExportItem], Awaitable[ItemUpdate]]:
    """A connector's ERP call: books the item, or fails it with a realistic reason. The same
    item gets the same answer on every run of the same seed."""

    async def post_to_erp(item: ExportItem) -> ItemUpdate:
        digest = hashlib.sha256(f"{seed}:{item.accounting_entry_id}".encode()).digest()
        await asyncio.sleep(0.0005 * (digest[0] % 4))  # the ERP takes a moment
        if int.from_bytes(digest[1:3]) / 65536 < failed_fraction:
            reason_type, reason = REALISTIC_FAILURES[digest[3] % len(REALISTIC_FAILURES)]
            return ItemUpdate.failed(
                item.accounting_entry_id, reason=reason, reason_type=reason_type
            )
        number = int.from_bytes(digest[4:7])
        return ItemUpdate.successful(
            item.accounting_entry_id,
            external_id=f"JE-{number}",
            external_url=f"https://erp.example.com/journal/JE-{number}",
        )

    return post_to_erp


async def run_demo(
    output: Output,
    *,
    items: int,
    faults: str,
    seed: int,
    concurrency: int,
    failed_fraction: float,
) -> ExitCode:
    # Retries are the point of the demo: they are counted in the summary, not logged one by one.
    library_logger = logging.getLogger("pleo_export_async")
    level = library_logger.level
    library_logger.setLevel(logging.ERROR)
    try:
        return await _run_demo(
            output,
            items=items,
            faults=faults,
            seed=seed,
            concurrency=concurrency,
            failed_fraction=failed_fraction,
        )
    finally:
        library_logger.setLevel(level)


async def _run_demo(
    output: Output,
    *,
    items: int,
    faults: str,
    seed: int,
    concurrency: int,
    failed_fraction: float,
) -> ExitCode:
    async with FakePleo(seed=seed, faults=faults_for(faults)) as fake:
        job = fake.create_job(items=items, status="pending")
        output.note(f"fake Pleo Export API at {fake.base_url} (seed {seed}, {faults} faults)")
        started = time.perf_counter()
        async with PleoExportClient(
            fake.base_url, auth=ApiKeyAuth(fake.api_key), max_concurrency=concurrency
        ) as client:
            progress = Progress(
                TextColumn("exporting"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("rejected {task.fields[rejected]}"),
                TextColumn("retries {task.fields[retries]}"),
                TextColumn("in flight {task.fields[in_flight]}"),
                TimeElapsedColumn(),
                console=output.progress,
                transient=True,
            )
            task = progress.add_task("export", total=items, rejected=0, retries=0, in_flight=0)

            def on_progress(snapshot: JobProgress) -> None:
                progress.update(task, completed=snapshot.acknowledged, rejected=snapshot.rejected)

            async def follow_the_client() -> None:
                while True:
                    stats = client.stats()
                    progress.update(task, retries=stats.retries, in_flight=stats.in_flight)
                    await asyncio.sleep(0.1)

            with progress:
                following = asyncio.create_task(follow_the_client())
                try:
                    outcome = await client.process_job(
                        job.id,
                        stand_in_erp(failed_fraction, seed),
                        concurrency=concurrency * 4,
                        on_progress=on_progress,
                    )
                finally:
                    following.cancel()
            stats = client.stats()
        elapsed = time.perf_counter() - started
        assert outcome is not None  # no stop event was given
        journal = fake.journal
        resent = sum(journal.resent_after_ack(job.id).values())
        applied = len(journal.final_events_applied(job.id))
        if output.json_mode:
            output.document(
                {
                    "job_id": outcome.job_id,
                    "event": outcome.event.value,
                    "already_delivered": outcome.already_delivered,
                    "failure_reason": outcome.failure_reason,
                    "successful": outcome.successful,
                    "failed": outcome.failed,
                    "rejected": outcome.rejected,
                    "wall_time_seconds": round(elapsed, 3),
                    "requests": stats.requests,
                    "retries": stats.retries,
                    "retries_by_cause": dict(stats.retries_by_cause),
                    "max_in_flight": journal.max_in_flight,
                    "concurrency_limit": concurrency,
                    "resent_after_ack": resent,
                    "final_events_applied": applied,
                    "job_status": fake.job_status(job.id),
                }
            )
        else:
            table = _summary(outcome, elapsed, items)
            table.add_row("requests", f"{stats.requests:,} (every PUT, GET and event)")
            causes = ", ".join(f"{c} {n}" for c, n in sorted(stats.retries_by_cause.items()))
            table.add_row("retries", f"{stats.retries:,}" + (f" ({causes})" if causes else ""))
            table.add_row("highest concurrency", f"{journal.max_in_flight} (limit {concurrency})")
            table.add_row("resent after their acknowledgement", str(resent))
            table.add_row("final events applied at Pleo", str(applied))
            table.add_row("job status at Pleo", fake.job_status(job.id))
            output.show(table)
    return ExitCode.DONE if resent == 0 and applied == 1 else ExitCode.WITH_ERRORS


def _summary(outcome: CompletionOutcome, elapsed: float, items: int) -> Table:
    table = Table(title=f"job {outcome.job_id}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    if outcome.already_delivered:
        table.add_row("final event", f"{outcome.event.value}, found already delivered")
        table.add_row("", "(its answer was lost; the job was read instead of sending it again)")
    else:
        table.add_row("final event sent", outcome.event.value)
    if outcome.failure_reason:
        table.add_row("reason", f"{outcome.failure_reason_type}: {outcome.failure_reason}")
    table.add_row("successful", f"{outcome.successful:,}")
    table.add_row("failed in the ERP", f"{outcome.failed:,}")
    table.add_row("rejected by Pleo", f"{outcome.rejected:,}")
    table.add_row("wall time", f"{elapsed:.2f} s ({items / elapsed:,.0f} items/s)")
    return table
