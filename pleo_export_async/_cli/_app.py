"""The commands of `pleo-export` (click), each a thin layer over the library.

Credentials come from `PLEO_API_KEY` or `PLEO_ACCESS_TOKEN`, never from an argument (it would
show in the process list). The base URL comes from `--base-url`, `--staging` or `PLEO_BASE_URL`.
Exit codes: 0 done; 1 the job completed with errors or items were rejected or left over; 2 bad
input; 3 Pleo refused or the network failed; 130 interrupted; 143 terminated (SIGTERM). An
error is one line; `--debug` shows its traceback.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC
from pathlib import Path
from typing import Any

import attrs
import click
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from pleo_export_async._client import PRODUCTION_BASE_URL
from pleo_export_async._enums import ItemStatus, JobEvent, JobFailureReasonType, JobStatus
from pleo_export_async._errors import IncompleteJob
from pleo_export_async._ledger import Ledger
from pleo_export_async._models import ExportJob, ExportJobItem
from pleo_export_async._report import CompletionOutcome, UpdateReport
from pleo_export_async._report import Progress as JobProgress
from pleo_export_async._sqlite_ledger import SqliteLedger
from pleo_export_async._version import __version__

from ._command import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    Settings,
    base_url_options,
    chosen_base_url,
    client_for,
    leave,
    run,
    settings_for,
)
from ._fake_server import fake_server
from ._ledger import ledger
from ._output import ExitCode, Output, outcome_fields
from ._results import read_results
from ._serve import serve
from ._webhooks import webhooks


def _ledger(path: Path | None) -> Ledger | None:
    return None if path is None else SqliteLedger(path)


_JSON = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@base_url_options
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for each answer before trying again.",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 20),
    default=DEFAULT_RETRIES,
    show_default=True,
    help="How many times a request that failed on the way (a timeout, a 5xx, a 429) is tried "
    "again. A URL that refuses connections or does not resolve, on the first request, is given "
    "up after at most 3 attempts.",
)
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@click.version_option(__version__, prog_name="pleo-export")
@click.pass_context
def cli(
    ctx: click.Context,
    base_url: str | None,
    staging: bool,
    timeout: float,
    retries: int,
    debug: bool,
) -> None:
    """Look at Pleo export jobs, push results, close jobs, and run the demo.

    Authenticate with PLEO_API_KEY (or PLEO_ACCESS_TOKEN) in the environment.
    """
    url = chosen_base_url(base_url, staging) or PRODUCTION_BASE_URL
    # A caller may hand its own Output in `obj` (the docs' pictures record the consoles).
    output = ctx.obj if isinstance(ctx.obj, Output) else Output()
    # The library's warnings (retries, odd answers) on stderr: styled for a person at a terminal,
    # one unwrapped line each when stderr goes to a file or a log collector.
    handler: logging.Handler
    if output.stderr.is_terminal:
        handler = RichHandler(console=output.stderr, show_time=False, show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, handlers=[handler])
    ctx.obj = Settings(url, debug, output, timeout, retries)


# -- looking ---------------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([status.value for status in JobStatus]),
    help="Only jobs in this status (repeat for several; default: pending and in_progress).",
)
@click.option("--company", "company_id", help="Only jobs of this company (a UUID).")
@_JSON
@click.pass_context
def jobs(
    ctx: click.Context, statuses: tuple[str, ...], company_id: str | None, as_json: bool
) -> None:
    """List export jobs, oldest first."""
    settings = settings_for(ctx, as_json)

    async def work() -> ExitCode:
        wanted = statuses or (JobStatus.PENDING.value, JobStatus.IN_PROGRESS.value)
        async with client_for(settings) as client:
            found = [job async for job in client.jobs(statuses=wanted, company_id=company_id)]
        _show_jobs(settings.output, found, as_json)
        return ExitCode.DONE

    run(settings, work())


def _show_jobs(output: Output, found: list[ExportJob], as_json: bool) -> None:
    if as_json:
        output.document([attrs.asdict(job) for job in found])
        return
    table = Table("job", "status", "items", "created (UTC)")
    for column in table.columns[:2]:
        column.no_wrap = True  # an ID is copied from here: never cut it
    for job in found:
        created = job.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(job.id, job.status, f"{job.number_of_items:,}", created)
    output.show(table)


@cli.command()
@click.argument("job_id", metavar="JOB")
@click.option(
    "--status",
    type=click.Choice([status.value for status in ItemStatus]),
    help="Only items in this status.",
)
@_JSON
@click.pass_context
def items(ctx: click.Context, job_id: str, status: str | None, as_json: bool) -> None:
    """List a job's items and their results."""
    settings = settings_for(ctx, as_json)

    async def work() -> ExitCode:
        async with client_for(settings) as client:
            found = [item async for item in client.job(job_id).items(status=status)]
        _show_items(settings.output, found, as_json)
        return ExitCode.DONE

    run(settings, work())


def _show_items(output: Output, found: list[ExportJobItem], as_json: bool) -> None:
    if as_json:
        output.document([attrs.asdict(item) for item in found])
        return
    table = Table("item", "status", "external ID", "failure")
    table.columns[0].no_wrap = True
    for item in found:
        failure = (
            f"{item.failure_reason_type}: {item.failure_reason}" if item.failure_reason_type else ""
        )
        table.add_row(item.accounting_entry_id, item.status, item.external_id or "", failure)
    output.show(table)


# -- pushing and closing ---------------------------------------------------------------------------


@cli.command()
@click.argument("job_id", metavar="JOB")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--ledger",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A ledger file: run again with it after an interruption, and nothing is sent twice.",
)
@click.option("--complete", "then_complete", is_flag=True, help="Complete the job afterwards.")
@_JSON
@click.pass_context
def push(
    ctx: click.Context,
    job_id: str,
    file: Path,
    ledger: Path | None,
    then_complete: bool,
    as_json: bool,
) -> None:
    """Send the item results in FILE (JSON Lines or CSV) to the job.

    Columns are the API's fields, in camelCase or snake_case: accountingEntryId, status,
    externalId, externalUrl, exportedAt, failureReason, failureReasonType. Every line is checked
    before anything is sent. A pending job is started first.
    """
    settings = settings_for(ctx, as_json)
    results = read_results(file)
    if results.errors:
        for error in results.errors:
            settings.output.error(f"{file}: {error}")
        settings.output.error(f"{len(results.errors)} bad line(s); nothing was sent")
        leave(ExitCode.BAD_INPUT)

    async def work() -> ExitCode:
        output = settings.output
        store = _ledger(ledger)
        terminated = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminated.set)
        try:
            async with client_for(settings) as client:
                run = client.job(job_id, ledger=store)
                if (await run.fetch()).status == JobStatus.PENDING:
                    await run.start()
                report = await _update_with_progress(
                    output,
                    run.update,
                    _until_set(terminated, results.updates),
                    total=len(results.updates),
                )
                _show_report(output, report)
                if terminated.is_set():
                    # As a service drains (R21): the batches in flight settled, nothing else
                    # is sent, and the job gets no final event.
                    unsent = (
                        len(results.updates)
                        - len(report.acknowledged)
                        - len(report.skipped)
                        - len(report.rejected)
                    )
                    output.error(
                        f"terminated (SIGTERM): the batches in flight settled; {unsent:,} "
                        "result(s) not acknowledged and no final event sent; run push again "
                        "(with the same --ledger, nothing acknowledged is sent twice)"
                    )
                    return ExitCode.TERMINATED
                code = _code_of(report)
                outcome = held = None
                if then_complete:
                    outcome = await run.complete()
                    held = await _held_if_delivered_before(run, outcome)
                    _show_outcome(output, outcome, held)
                    code = max(code, _code_of_outcome(outcome))
                if output.json_mode:
                    output.document(
                        {
                            "report": _report_document(report),
                            "outcome": None
                            if outcome is None
                            else _outcome_document(outcome, held),
                        }
                    )
                return code
        finally:
            if store is not None:
                await store.close()

    run(settings, work())


async def _until_set(stop: asyncio.Event, updates: list[Any]) -> AsyncIterator[Any]:
    """The updates, one at a time as `update()` takes them, until `stop` is set."""
    for update in updates:
        if stop.is_set():
            return
        yield update


async def _update_with_progress(
    output: Output, update: Any, updates: Any, *, total: int
) -> UpdateReport:
    progress = Progress(
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rejected {task.fields[rejected]}"),
        console=output.progress,
        transient=True,
    )
    task = progress.add_task("push", total=total, rejected=0)

    def on_progress(snapshot: JobProgress) -> None:
        done = snapshot.acknowledged + snapshot.rejected + snapshot.skipped
        progress.update(task, completed=done, rejected=snapshot.rejected)

    with progress:
        report: UpdateReport = await update(updates, on_progress=on_progress)
    return report


def _show_report(output: Output, report: UpdateReport) -> None:
    table = Table(title=f"job {report.job_id}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("acknowledged", f"{len(report.acknowledged):,}")
    table.add_row("already acknowledged, not sent", f"{len(report.skipped):,}")
    table.add_row("rejected by Pleo", f"{len(report.rejected):,}")
    table.add_row("not acknowledged", f"{len(report.unacknowledged):,}")
    table.add_row("requests", f"{report.requests:,} ({report.retries:,} retries)")
    output.show(table)
    for entry_id, rejection in list(report.rejected.items())[:20]:
        output.show(f"  rejected {entry_id}: {rejection.error_type} {rejection.message}")


def _report_document(report: UpdateReport) -> dict[str, Any]:
    return {
        "job_id": report.job_id,
        "acknowledged": {entry_id: str(status) for entry_id, status in report.acknowledged.items()},
        "skipped": sorted(report.skipped),
        "rejected": {
            entry_id: {"error_type": rejection.error_type, "message": rejection.message}
            for entry_id, rejection in report.rejected.items()
        },
        "unacknowledged": dict(report.unacknowledged),
        "requests": report.requests,
        "retries": report.retries,
        "retries_by_cause": dict(report.retries_by_cause),
    }


def _code_of(report: UpdateReport) -> ExitCode:
    if report.rejected or report.unacknowledged:
        return ExitCode.WITH_ERRORS
    return ExitCode.DONE


def _code_of_outcome(outcome: CompletionOutcome) -> ExitCode:
    return ExitCode.DONE if outcome.event is JobEvent.COMPLETED else ExitCode.WITH_ERRORS


async def _held_if_delivered_before(run: Any, outcome: CompletionOutcome) -> ExportJob | None:
    """The job as Pleo holds it when its final event was delivered before this run: what was
    asked now (another reason, say) was not sent, so only Pleo knows what the job says."""
    if not outcome.already_delivered:
        return None
    held: ExportJob = await run.fetch()
    return held


def _show_outcome(output: Output, outcome: CompletionOutcome, held: ExportJob | None) -> None:
    if held is not None:
        output.show(
            f"job {outcome.job_id} was already {held.status} at Pleo; nothing was sent "
            f"({outcome.event.value} was delivered before)"
        )
        if held.failure_reason:
            output.show(f"  {held.failure_reason_type}: {held.failure_reason}")
        return
    output.show(
        f"job {outcome.job_id}: sent {outcome.event.value}",
        f"  {outcome.successful:,} successful, {outcome.failed:,} failed, "
        f"{outcome.rejected:,} rejected",
    )
    if outcome.failure_reason:
        output.show(f"  {outcome.failure_reason_type}: {outcome.failure_reason}")


def _outcome_document(outcome: CompletionOutcome, held: ExportJob | None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "job_id": outcome.job_id,
        **outcome_fields(outcome),
        "sent": held is None and not outcome.already_delivered,
        "already_delivered": outcome.already_delivered,
    }
    if held is not None:
        # What Pleo holds, not what this run asked for.
        document.update(
            status=held.status,
            failure_reason=held.failure_reason,
            failure_reason_type=held.failure_reason_type,
        )
    return document


@cli.command()
@click.argument("job_id", metavar="JOB")
@click.option(
    "--event",
    type=click.Choice([e.value for e in JobEvent if e.is_final]),
    help="The final event to send; by default it follows from the items' results.",
)
@click.option("--ledger", type=click.Path(dir_okay=False, path_type=Path), help="The push ledger.")
@_JSON
@click.pass_context
def complete(
    ctx: click.Context, job_id: str, event: str | None, ledger: Path | None, as_json: bool
) -> None:
    """Close the job with its final event, once. The event follows from the items' results at
    Pleo unless --event says otherwise."""
    settings = settings_for(ctx, as_json)

    async def work() -> ExitCode:
        output = settings.output
        store = _ledger(ledger)
        try:
            async with client_for(settings) as client:
                run = client.job(job_id, ledger=store)
                recorded = await run.recorded_outcome()
                if recorded is None:
                    job = await run.fetch()
                    if job.status not in (JobStatus.PENDING, JobStatus.IN_PROGRESS):
                        return _show_closed(output, job)
                    await run.take_in_what_pleo_holds([item async for item in run.items()])
                try:
                    outcome = await run.complete(event=event)
                except IncompleteJob as error:
                    if error.unacknowledged:
                        raise
                    output.error(
                        f"job {job_id} has no item results, at Pleo or in the ledger, to choose "
                        "its final event from; no event was sent. Pass --event to close it anyway"
                    )
                    return ExitCode.WITH_ERRORS
                held = await _held_if_delivered_before(run, outcome)
                _show_outcome(output, outcome, held)
                if output.json_mode:
                    output.document(_outcome_document(outcome, held))
                return _code_of_outcome(outcome)
        finally:
            if store is not None:
                await store.close()

    run(settings, work())


def _show_closed(output: Output, job: ExportJob) -> ExitCode:
    """A job already closed, by whoever: what Pleo holds, and nothing sent."""
    output.show(f"job {job.id} is already {job.status} at Pleo; nothing was sent")
    if job.failure_reason:
        output.show(f"  {job.failure_reason_type}: {job.failure_reason}")
    if output.json_mode:
        output.document(
            {
                "job_id": job.id,
                "sent": False,
                "status": job.status,
                "failure_reason": job.failure_reason,
                "failure_reason_type": job.failure_reason_type,
            }
        )
    return ExitCode.DONE if job.status == JobStatus.COMPLETED else ExitCode.WITH_ERRORS


@cli.command()
@click.argument("job_id", metavar="JOB")
@click.option("--reason", required=True, help="What went wrong, for the bookkeeper to read.")
@click.option(
    "--type",
    "reason_type",
    required=True,
    type=click.Choice([t.value for t in JobFailureReasonType]),
    help="The job-level failure type.",
)
@_JSON
@click.pass_context
def fail(ctx: click.Context, job_id: str, reason: str, reason_type: str, as_json: bool) -> None:
    """Fail the whole job now, whatever its items."""
    settings = settings_for(ctx, as_json)

    async def work() -> ExitCode:
        output = settings.output
        async with client_for(settings) as client:
            run = client.job(job_id)
            outcome = await run.fail(reason, reason_type)
            held = await _held_if_delivered_before(run, outcome)
        _show_outcome(output, outcome, held)
        if output.json_mode:
            output.document(_outcome_document(outcome, held))
        return ExitCode.DONE

    run(settings, work())


# -- the fake server and the demo ------------------------------------------------------------------


cli.add_command(fake_server)
cli.add_command(ledger)
cli.add_command(serve)
cli.add_command(webhooks)


@cli.command()
@click.option(
    "--items",
    type=click.IntRange(min=1),
    default=5000,
    show_default=True,
    help="Items in the demo's job.",
)
@click.option(
    "--faults",
    type=click.Choice(["none", "light", "heavy"]),
    default="light",
    show_default=True,
    help="How hostile the fake server is.",
)
@click.option(
    "--seed",
    type=int,
    default=2026,
    show_default=True,
    help="Seed for the job, the faults and the ERP's answers.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=8,
    show_default=True,
    help="Requests in flight at most.",
)
@click.option(
    "--failed-fraction",
    type=click.FloatRange(0.0, 1.0),
    default=0.1,
    show_default=True,
    help="The share of items the stand-in ERP fails.",
)
@_JSON
@click.pass_context
def demo(
    ctx: click.Context,
    items: int,
    faults: str,
    seed: int,
    concurrency: int,
    failed_fraction: float,
    as_json: bool,
) -> None:
    """Export a job through the bundled fake Pleo server, with faults, and show what happened."""
    from ._demo import run_demo

    settings = settings_for(ctx, as_json)
    run(
        settings,
        run_demo(
            settings.output,
            items=items,
            faults=faults,
            seed=seed,
            concurrency=concurrency,
            failed_fraction=failed_fraction,
        ),
    )
