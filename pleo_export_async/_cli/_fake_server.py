"""`pleo-export fake-server`, also run as `python -m pleo_export_async.testing`: the bundled fake
Pleo Export API, served from the shell until SIGINT or SIGTERM.

Its output is a contract scripts rely on. stdout gets one `key=value` pair per line, then
`ready` once it accepts requests:

    base_url=http://127.0.0.1:8080
    api_key=test-api-key
    company_id=<uuid>
    job_id=<uuid>          (one line per job, oldest first)
    webhook_url=<url>      (only with --webhook-url)
    ready

With `--json` the same is one JSON object on one line, with `"ready": true` (and `webhook_url`
with --webhook-url). Hints go to stderr.

With `--webhook-url`, every job created pending (those it creates at start, and those created
through POST /v3/export-jobs) is announced by a job-created notification POSTed there, signed
with `--webhook-secret` or `PLEO_WEBHOOK_SECRET` (`whsec_...`; never printed), or with a secret
of its own when neither is given.
On SIGINT or SIGTERM it prints what it received per job (requests, items, updates sent again
after their acknowledgement, final events; a table, or with `--json` one more JSON line) and
exits 0. `GET /_fake/journal` shows the same, and every request, while it runs.
"""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING

import click
from rich.table import Table

from ._command import run, settings_for
from ._output import ExitCode, Output

if TYPE_CHECKING:
    from pleo_export_async.testing import JobSummary

# The job statuses a created job may start in (the fake's _spec.ACTIVE_JOB_STATUSES).
_STARTING_STATUSES = ("in_progress", "pending")


@click.command("fake-server")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
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
    help="How many export jobs to create.",
)
@click.option(
    "--items", type=click.IntRange(min=0), default=100, show_default=True, help="Items per job."
)
@click.option(
    "--status",
    type=click.Choice(_STARTING_STATUSES),
    default="pending",
    show_default=True,
    help="The status of the created jobs (Pleo creates them pending).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for IDs and faults.")
@click.option(
    "--api-key",
    default="test-api-key",
    show_default=True,
    help="The API key the fake accepts (HTTP Basic: the key as user name, no password).",
)
@click.option(
    "--faults",
    type=click.Choice(["none", "light", "heavy"]),
    default="none",
    show_default=True,
    help="Faults to inject into the answers (as `pleo-export demo` does).",
)
@click.option(
    "--lenient",
    "lenient",
    flag_value=True,
    default=False,
    help="Accept what Pleo's guidance tells a connector not to do (item updates before "
    "`started`, completing with items pending, rewriting a successful item); refused by default.",
)
# The default since strict became the default; still accepted so that old scripts run.
@click.option(
    "--strict", "lenient", flag_value=False, hidden=True, help="The default (kept for old scripts)."
)
@click.option(
    "--webhook-url",
    metavar="URL",
    default=None,
    help="Send a signed job-created notification here for every job created pending.",
)
@click.option(
    "--webhook-secret",
    metavar="whsec_...",
    envvar="PLEO_WEBHOOK_SECRET",
    default=None,
    show_envvar=True,
    help="The Standard Webhooks secret that signs the notifications (a new one if not given).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON Lines on stdout.")
@click.pass_context
def fake_server(
    ctx: click.Context,
    host: str,
    port: int,
    job_count: int,
    items: int,
    status: str,
    seed: int,
    api_key: str,
    faults: str,
    lenient: bool,
    webhook_url: str | None,
    webhook_secret: str | None,
    as_json: bool,
) -> None:
    """Serve a fake Pleo Export API until SIGINT or SIGTERM, then summarise what it received."""
    settings = settings_for(ctx, as_json)

    async def work() -> ExitCode:
        from pleo_export_async.testing import FakePleo

        from ._demo import faults_for

        output = settings.output
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signal_number, stop.set)
        try:
            fake = FakePleo(
                host=host,
                port=port,
                api_key=api_key,
                seed=seed,
                faults=faults_for(faults),
                strict=not lenient,
                webhook_url=webhook_url,
                webhook_secret=webhook_secret,
            )
        except ValueError as error:
            # The fake's message names its parameter (webhook_url or webhook_secret) and the
            # problem, never the secret itself.
            output.error(f"bad webhook setting: {error}")
            return ExitCode.BAD_INPUT
        except ImportError as error:
            output.error(str(error))
            return ExitCode.BAD_INPUT
        async with fake:
            created = [fake.create_job(items=items, status=status) for _ in range(job_count)]
            if output.json_mode:
                announcement: dict[str, object] = {
                    "base_url": fake.base_url,
                    "api_key": fake.api_key,
                    "company_id": fake.company_id,
                    "job_ids": [job.id for job in created],
                }
                if webhook_url is not None:
                    announcement["webhook_url"] = webhook_url
                output.json_line({**announcement, "ready": True})
            else:
                lines = [
                    f"base_url={fake.base_url}",
                    f"api_key={fake.api_key}",
                    f"company_id={fake.company_id}",
                    *(f"job_id={job.id}" for job in created),
                    *([f"webhook_url={webhook_url}"] if webhook_url is not None else []),
                    "ready",
                ]
                output.stdout.file.write("\n".join(lines) + "\n")
                output.stdout.file.flush()
            output.note(
                f"serving the fake Pleo Export API at {fake.base_url}; stop with Ctrl+C "
                f"(what it received: GET {fake.base_url}/_fake/journal)"
            )
            if webhook_url is not None and webhook_secret is None:
                output.note(
                    "the notifications are signed with a secret made for this run; pass "
                    "--webhook-secret or PLEO_WEBHOOK_SECRET to verify them"
                )
            await stop.wait()
            summaries = fake.job_summaries()
            requests = len(fake.journal.requests)
        _show_summaries(output, summaries, requests)
        return ExitCode.DONE

    run(settings, work())


def _show_summaries(output: Output, summaries: list[JobSummary], requests: int) -> None:
    if output.json_mode:
        output.json_line(
            {
                "requests": requests,
                "jobs": {summary.job_id: summary.to_json() for summary in summaries},
            }
        )
        return
    table = Table(
        "job",
        "status",
        "requests",
        "items sent",
        "acknowledged",
        "resent after ack",
        "final events",
        title=f"what the fake received ({requests:,} requests in all)",
        title_justify="left",
    )
    table.columns[0].no_wrap = True
    for column in table.columns[2:6]:
        column.justify = "right"
    for summary in summaries:
        table.add_row(
            summary.job_id,
            summary.status,
            f"{summary.requests:,}",
            f"{summary.items_sent:,}",
            f"{summary.acknowledged:,}",
            f"{sum(summary.resent_after_ack.values()):,}",
            ", ".join(summary.final_events) or "none",
        )
    output.show(table)
    resent = sum(sum(summary.resent_after_ack.values()) for summary in summaries)
    if resent:
        output.show(f"{resent:,} update(s) were sent again after Pleo had acknowledged them")
    else:
        output.show("no update was sent again after its acknowledgement")
