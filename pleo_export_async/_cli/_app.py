"""The commands of `pleo-export` (click), each a thin layer over the library.

Credentials come from `PLEO_API_KEY` or `PLEO_ACCESS_TOKEN`, never from an argument (it would
show in the process list). The base URL comes from `--base-url`, `--staging` or `PLEO_BASE_URL`.
Exit codes: 0 done; 1 the job completed with errors or items were rejected or left over; 2 bad
input; 3 Pleo refused or the network failed; 130 interrupted. An error is one line; `--debug`
shows its traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import traceback
from collections.abc import Coroutine
from datetime import UTC
from pathlib import Path
from typing import Any, NoReturn

import attrs
import click
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from pleo_export_async._auth import ApiKeyAuth, BearerTokenAuth
from pleo_export_async._client import PRODUCTION_BASE_URL, STAGING_BASE_URL, PleoExportClient
from pleo_export_async._enums import ItemStatus, JobEvent, JobFailureReasonType, JobStatus
from pleo_export_async._errors import IncompleteJob, InvalidInput, PleoExportError
from pleo_export_async._ledger import Ledger
from pleo_export_async._models import ExportJob, ExportJobItem
from pleo_export_async._report import CompletionOutcome, UpdateReport
from pleo_export_async._report import Progress as JobProgress
from pleo_export_async._sqlite_ledger import SqliteLedger
from pleo_export_async._version import __version__

from ._output import ExitCode, Output
from ._results import read_results


@attrs.frozen
class Settings:
    base_url: str
    debug: bool
    output: Output


def _fail(code: ExitCode) -> NoReturn:
    raise click.exceptions.Exit(int(code))


def _run(settings: Settings, work: Coroutine[Any, Any, ExitCode]) -> NoReturn:
    """Run a command's coroutine and leave with its exit code; every error is one line."""
    output = settings.output
    try:
        code = asyncio.run(work)
    except KeyboardInterrupt:
        output.error("interrupted; what Pleo acknowledged is kept")
        _fail(ExitCode.INTERRUPTED)
    except InvalidInput as error:
        _report(settings, error)
        _fail(ExitCode.BAD_INPUT)
    except IncompleteJob as error:
        _report(settings, error)
        _fail(ExitCode.WITH_ERRORS)
    except PleoExportError as error:
        _report(settings, error)
        _fail(ExitCode.API_FAILURE)
    _fail(code)


def _report(settings: Settings, error: BaseException) -> None:
    if settings.debug:
        settings.output.stderr.print(
            "".join(traceback.format_exception(error)), markup=False, highlight=False
        )
    settings.output.error(str(error))


def _client(settings: Settings) -> PleoExportClient:
    api_key, access_token = os.environ.get("PLEO_API_KEY"), os.environ.get("PLEO_ACCESS_TOKEN")
    if api_key:
        auth: ApiKeyAuth | BearerTokenAuth = ApiKeyAuth(api_key)
    elif access_token:
        auth = BearerTokenAuth(access_token)
    else:
        settings.output.error("set PLEO_API_KEY (or PLEO_ACCESS_TOKEN) to authenticate")
        _fail(ExitCode.BAD_INPUT)
    return PleoExportClient(settings.base_url, auth=auth)


def _ledger(path: Path | None) -> Ledger | None:
    return None if path is None else SqliteLedger(path)


_JSON = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--base-url",
    envvar="PLEO_BASE_URL",
    help=f"The Export API's address (default {PRODUCTION_BASE_URL}; env PLEO_BASE_URL).",
)
@click.option("--staging", is_flag=True, help=f"Use Pleo's staging API ({STAGING_BASE_URL}).")
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@click.version_option(__version__, prog_name="pleo-export")
@click.pass_context
def cli(ctx: click.Context, base_url: str | None, staging: bool, debug: bool) -> None:
    """Look at Pleo export jobs, push results, close jobs, and run the demo.

    Authenticate with PLEO_API_KEY (or PLEO_ACCESS_TOKEN) in the environment.
    """
    if base_url and staging:
        raise click.UsageError("give --base-url or --staging, not both")
    url = base_url or (STAGING_BASE_URL if staging else PRODUCTION_BASE_URL)
    output = Output()
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
    ctx.obj = Settings(url, debug, output)


def _settings(ctx: click.Context, as_json: bool = False) -> Settings:
    settings: Settings = ctx.obj
    if as_json:
        settings = attrs.evolve(settings, output=attrs.evolve(settings.output, json_mode=True))
    return settings


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
    settings = _settings(ctx, as_json)

    async def work() -> ExitCode:
        wanted = statuses or (JobStatus.PENDING.value, JobStatus.IN_PROGRESS.value)
        async with _client(settings) as client:
            found = [job async for job in client.jobs(statuses=wanted, company_id=company_id)]
        _show_jobs(settings.output, found, as_json)
        return ExitCode.DONE

    _run(settings, work())


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
    output.display.print(table)


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
    settings = _settings(ctx, as_json)

    async def work() -> ExitCode:
        async with _client(settings) as client:
            found = [item async for item in client.job(job_id).items(status=status)]
        _show_items(settings.output, found, as_json)
        return ExitCode.DONE

    _run(settings, work())


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
    output.display.print(table)


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
@click.pass_context
def push(
    ctx: click.Context, job_id: str, file: Path, ledger: Path | None, then_complete: bool
) -> None:
    """Send the item results in FILE (JSON Lines or CSV) to the job.

    Columns are the API's fields, in camelCase or snake_case: accountingEntryId, status,
    externalId, externalUrl, exportedAt, failureReason, failureReasonType. Every line is checked
    before anything is sent. A pending job is started first.
    """
    settings = _settings(ctx)
    results = read_results(file)
    if results.errors:
        for error in results.errors:
            settings.output.error(f"{file}: {error}")
        settings.output.error(f"{len(results.errors)} bad line(s); nothing was sent")
        _fail(ExitCode.BAD_INPUT)

    async def work() -> ExitCode:
        store = _ledger(ledger)
        try:
            async with _client(settings) as client:
                run = client.job(job_id, ledger=store)
                if (await run.fetch()).status == JobStatus.PENDING:
                    await run.start()
                report = await _update_with_progress(settings.output, run.update, results.updates)
                _show_report(settings.output, report)
                code = _code_of(report)
                if then_complete:
                    outcome = await run.complete()
                    _show_outcome(settings.output, outcome)
                    code = max(code, _code_of_outcome(outcome))
                return code
        finally:
            if store is not None:
                await store.close()

    _run(settings, work())


async def _update_with_progress(output: Output, update: Any, updates: list[Any]) -> UpdateReport:
    progress = Progress(
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rejected {task.fields[rejected]}"),
        console=output.display,
        transient=True,
    )
    task = progress.add_task("push", total=len(updates), rejected=0)

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
    output.display.print(table)
    for entry_id, rejection in list(report.rejected.items())[:20]:
        output.display.print(f"  rejected {entry_id}: {rejection.error_type} {rejection.message}")


def _code_of(report: UpdateReport) -> ExitCode:
    if report.rejected or report.unacknowledged:
        return ExitCode.WITH_ERRORS
    return ExitCode.DONE


def _code_of_outcome(outcome: CompletionOutcome) -> ExitCode:
    return ExitCode.DONE if outcome.event is JobEvent.COMPLETED else ExitCode.WITH_ERRORS


def _show_outcome(output: Output, outcome: CompletionOutcome) -> None:
    if outcome.already_delivered:
        output.display.print(f"job {outcome.job_id}: {outcome.event.value} was already delivered")
    else:
        output.display.print(f"job {outcome.job_id}: sent {outcome.event.value}")
    output.display.print(
        f"  {outcome.successful:,} successful, {outcome.failed:,} failed, "
        f"{outcome.rejected:,} rejected"
    )
    if outcome.failure_reason:
        output.display.print(f"  {outcome.failure_reason_type}: {outcome.failure_reason}")


@cli.command()
@click.argument("job_id", metavar="JOB")
@click.option(
    "--event",
    type=click.Choice([e.value for e in JobEvent if e.is_final]),
    help="The final event to send; by default it follows from the items' results.",
)
@click.option("--ledger", type=click.Path(dir_okay=False, path_type=Path), help="The push ledger.")
@click.pass_context
def complete(ctx: click.Context, job_id: str, event: str | None, ledger: Path | None) -> None:
    """Close the job with its final event, once. The event follows from the items' results at
    Pleo unless --event says otherwise."""
    settings = _settings(ctx)

    async def work() -> ExitCode:
        store = _ledger(ledger)
        try:
            async with _client(settings) as client:
                run = client.job(job_id, ledger=store)
                recorded = await run.recorded_outcome()
                if recorded is None:
                    status = (await run.fetch()).status
                    if status not in (JobStatus.PENDING, JobStatus.IN_PROGRESS):
                        settings.output.display.print(f"job {job_id} is already {status}")
                        return (
                            ExitCode.DONE if status == JobStatus.COMPLETED else ExitCode.WITH_ERRORS
                        )
                    await run.take_in_what_pleo_holds([item async for item in run.items()])
                outcome = await run.complete(event=event)
                _show_outcome(settings.output, outcome)
                return _code_of_outcome(outcome)
        finally:
            if store is not None:
                await store.close()

    _run(settings, work())


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
@click.pass_context
def fail(ctx: click.Context, job_id: str, reason: str, reason_type: str) -> None:
    """Fail the whole job now, whatever its items."""
    settings = _settings(ctx)

    async def work() -> ExitCode:
        async with _client(settings) as client:
            outcome = await client.job(job_id).fail(reason, reason_type)
        _show_outcome(settings.output, outcome)
        return ExitCode.DONE

    _run(settings, work())


# -- the fake server and the demo ------------------------------------------------------------------


@cli.command("fake-server")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port to serve on; 0 picks a free one.",
)
@click.option(
    "--jobs",
    "job_count",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="How many pending jobs to create.",
)
@click.option(
    "--items", type=click.IntRange(min=0), default=100, show_default=True, help="Items per job."
)
@click.option(
    "--faults",
    type=click.Choice(["none", "light", "heavy"]),
    default="none",
    show_default=True,
    help="Faults to inject into the answers.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for IDs and faults.")
@click.option(
    "--lenient",
    is_flag=True,
    help="Accept what Pleo's guidance tells a connector not to do (item updates before "
    "`started`, completing with items pending, rewriting a successful item); refused by default.",
)
@click.pass_context
def fake_server(
    ctx: click.Context, port: int, job_count: int, items: int, faults: str, seed: int, lenient: bool
) -> None:
    """Serve a fake Pleo Export API on loopback until interrupted."""
    from ._demo import faults_for

    settings = _settings(ctx)

    async def work() -> ExitCode:
        from pleo_export_async.testing import FakePleo

        async with FakePleo(
            port=port, seed=seed, faults=faults_for(faults), strict=not lenient
        ) as fake:
            created = [fake.create_job(items=items, status="pending") for _ in range(job_count)]
            out = settings.output.stdout
            out.print(f"base_url={fake.base_url}", markup=False, highlight=False)
            out.print(f"api_key={fake.api_key}", markup=False, highlight=False)
            for job in created:
                out.print(f"job_id={job.id}", markup=False, highlight=False)
            settings.output.stderr.print("serving; stop with Ctrl+C")
            await asyncio.Event().wait()
        return ExitCode.DONE

    _run(settings, work())


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
@click.pass_context
def demo(
    ctx: click.Context,
    items: int,
    faults: str,
    seed: int,
    concurrency: int,
    failed_fraction: float,
) -> None:
    """Export a job through the bundled fake Pleo server, with faults, and show what happened."""
    from ._demo import run_demo

    settings = _settings(ctx)
    _run(
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
