"""A connector service: exports Pleo's export jobs, one at a time, into a stand-in ERP.

    PLEO_API_KEY=... python examples/connector.py --base-url http://127.0.0.1:8080 \\
        --ledger connector.sqlite3

It polls `GET /v3/export-jobs` for `in_progress` and `pending` jobs and takes one at a time:
an `in_progress` job first (one it was working on when it last stopped), then the oldest
`pending` one. Each job goes through `client.process_job(...)`, which starts or resumes it,
calls `post_to_erp` on every item that still needs a result, reports the results in batches,
and sends the job's final event once. The `SqliteLedger` file remembers what Pleo acknowledged,
so a restarted connector resends nothing and calls the ERP only for the items left.

Several replicas (processes, machines) share one company's jobs with `--postgres DSN` in place
of `--ledger`: a `PostgresLedger` on a database they all reach. Each job is then worked by one
worker at a time: a job another worker holds is skipped, and taken up again once it is free (if
its worker died, once its lease expires). `--workers N` runs N such workers in this process.

    PLEO_API_KEY=... python examples/connector.py --base-url ... \
        --postgres postgresql://connector@db/connector --workers 4

SIGTERM or SIGINT stops it gracefully: it takes no new item, lets the batches in flight settle,
sends no final event for the unfinished job (which stays `in_progress` for the next start),
closes the ledger and the client, and exits 0. A second signal cancels what is still in flight.

Output: one JSON line per job on stdout (job ID, the final event sent or "stopped", counts,
duration); everything else goes to stderr. The API key is read from PLEO_API_KEY only, never
from the command line, and never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from pleo_export_async import (
    ApiKeyAuth,
    AuthenticationError,
    ExportItem,
    ExportJob,
    InvalidInput,
    ItemFailureReasonType,
    ItemUpdate,
    JobFailureReasonType,
    JobLeased,
    JobStatus,
    Ledger,
    LedgerError,
    MissingContraAccounts,
    PermissionDenied,
    PleoExportClient,
    PleoExportError,
    PostgresLedger,
    SqliteLedger,
)

log = logging.getLogger("connector")
#: One JSON line per job, on stdout.
job_log = logging.getLogger("connector.jobs")

# ---- the stand-in ERP ----------------------------------------------------------------------

#: Account codes in the stand-in ERP's chart of accounts. The fake Pleo also books to 6310
#: (Rent), which this ERP lacks, so some items fail as they would against a real one.
ERP_ACCOUNTS = frozenset({"6540", "6800", "7010", "7130", "7140", "7780"})
#: Vendor codes the stand-in ERP has blocked.
BLOCKED_VENDORS = frozenset({"V1003"})
ERP_URL = "https://erp.example.com/journal-entries"


def erp_result(item: ExportItem) -> ItemUpdate:
    """What the stand-in ERP answers for this item; the same every time for the same item.

    The checks and messages follow Pleo's guide to failure reasons
    (docs/pleo-api.md#failure-mappings).
    """
    entry_id = item.accounting_entry_id
    lines = item.accounting_entry_lines
    if not lines or lines[0].account is None:
        category = item.supplier.category_code if item.supplier else None
        subject = f"category {category}" if category else f"{item.type} expenses"
        return ItemUpdate.failed(
            entry_id,
            reason=(
                f"Account for {subject} missing: provide the expense account for {subject} "
                "in the configurations"
            ),
            reason_type=ItemFailureReasonType.MISSING_CONFIGURATION,
        )
    for line in lines:
        code = line.account.code if line.account is not None else None
        if code is not None and code not in ERP_ACCOUNTS:
            return ItemUpdate.failed(
                entry_id,
                reason=(
                    f"Account No. {code} does not exist in the Accounting System. Check Category."
                ),
                reason_type=ItemFailureReasonType.ACCOUNT_UNKNOWN,
            )
    if item.vendor is not None and item.vendor.code in BLOCKED_VENDORS:
        return ItemUpdate.failed(
            entry_id,
            reason=(
                "Selected vendor cannot be processed because it does not exist or is currently "
                "blocked. Please verify the vendor's status in the accounting system and try again."
            ),
            reason_type=ItemFailureReasonType.VENDOR_UNKNOWN,
        )
    # A real ERP also says when it booked the entry: pass that as `exported_at`. Left out here
    # so that every run sends the same updates.
    external_id = f"JE-{zlib.crc32(entry_id.encode()) % 10**8:08d}"
    return ItemUpdate.successful(
        entry_id, external_id=external_id, external_url=f"{ERP_URL}/{external_id}"
    )


async def post_to_erp(item: ExportItem) -> ItemUpdate:
    """Book the item in the stand-in ERP: a short wait, as for a network call, then its answer."""
    await asyncio.sleep(0.004 + (zlib.crc32(item.accounting_entry_id.encode()) % 12) / 1000)
    return erp_result(item)


# ---- the service ---------------------------------------------------------------------------


class Fatal(Exception):
    """Retrying cannot help (credentials refused, ledger unusable): the connector exits 1."""


async def next_job(
    client: PleoExportClient, company_id: str | None, skip: set[str]
) -> ExportJob | None:
    """The job to work on next, in Pleo's order (docs/pleo-api.md#documented-flow): each
    company's one job at a time, the one in progress (to resume) before its oldest pending one.
    A company whose next job is in `skip` (held by another worker, or tried this round) offers
    none: its later jobs wait their turn rather than run beside it."""
    next_of_company: dict[str, ExportJob] = {}
    async for job in client.jobs(
        statuses=(JobStatus.IN_PROGRESS, JobStatus.PENDING), company_id=company_id
    ):
        # jobs() yields oldest first, so the first seen is kept unless one is in progress.
        kept = next_of_company.get(job.company_id)
        if kept is None or (
            job.status == JobStatus.IN_PROGRESS and kept.status != JobStatus.IN_PROGRESS
        ):
            next_of_company[job.company_id] = job
    found = [job for job in next_of_company.values() if job.id not in skip]
    return min(found, key=lambda job: job.status != JobStatus.IN_PROGRESS, default=None)


async def export_job(
    client: PleoExportClient,
    ledger: Ledger,
    job: ExportJob,
    *,
    stop: asyncio.Event,
    concurrency: int,
) -> bool:
    """Export one job (or until `stop` is set) and log its line; False if an error stopped it."""
    handled: Counter[str] = Counter()

    async def handler(item: ExportItem) -> ItemUpdate:
        update = await post_to_erp(item)
        handled[update.status.value] += 1
        return update

    started = time.monotonic()

    def log_line(message: str, **details: object) -> None:
        fields = {
            "job_id": job.id,
            "resumed": job.status == JobStatus.IN_PROGRESS,
            **details,
            "handled_successful": handled["successful"],
            "handled_failed": handled["failed"],
            "duration_s": round(time.monotonic() - started, 3),
        }
        job_log.info(message, extra={"fields": fields})

    try:
        try:
            # wait=False: a job another worker holds is left to it, not waited for.
            outcome = await client.process_job(
                job.id, handler, concurrency=concurrency, ledger=ledger, stop=stop, wait=False
            )
        except MissingContraAccounts:
            # Pleo gives no export data until a bookkeeper maps the contra accounts: say so.
            outcome = await client.job(job.id, ledger=ledger).fail(
                "Contra accounts are not mapped in Pleo: map them, then export again",
                JobFailureReasonType.MISSING_CONFIGURATION,
            )
    except asyncio.CancelledError:
        log_line("export job cancelled; it stays in_progress", event="cancelled")
        raise
    except JobLeased as leased:
        log.info("job %s is held by %s; leaving it to that worker", job.id, leased.holder)
        return True
    except PleoExportError as error:
        log_line("export job interrupted", event=None, error=f"{type(error).__name__}: {error}")
        if isinstance(error, AuthenticationError | PermissionDenied | LedgerError):
            raise Fatal(f"{type(error).__name__}: {error}") from error
        # Transient trouble that outlasted the retries, or the job closed by someone else:
        # the job keeps its status, and the next poll takes it up again if it is still open.
        return False
    if outcome is None:
        log_line("export job stopped before its end; it stays in_progress", event="stopped")
    else:
        # already_delivered: an earlier run (another replica, or this one before a restart)
        # closed the job, and this one sent nothing.
        closed = "was already closed" if outcome.already_delivered else "closed"
        log_line(
            f"export job {closed}: {outcome.event.value}",
            event=outcome.event.value,
            already_delivered=outcome.already_delivered,
            successful=outcome.successful,
            failed=outcome.failed,
            rejected=outcome.rejected,
            failure_reason=outcome.failure_reason,
        )
    return True


async def sleep_unless_stopped(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class Worker:
    """One worker's loop: poll, take the next job no worker of this process has in hand, export
    it. Workers of other processes are kept off a job by the ledger's lease (wait=False)."""

    def __init__(
        self,
        client: PleoExportClient,
        ledger: Ledger,
        arguments: argparse.Namespace,
        stop: asyncio.Event,
        in_hand: set[str],
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.arguments = arguments
        self.stop = stop
        self.in_hand = in_hand  # shared by this process's workers
        self.attempted: set[str] = set()  # with --once, each job gets one attempt
        self.polling: asyncio.Task[ExportJob | None] | None = None
        self.failures = 0

    async def run(self) -> None:
        """Poll and export until stopped (or, with --once, until no job is left for it)."""
        once: bool = self.arguments.once
        main_task = asyncio.current_task()
        assert main_task is not None
        while not self.stop.is_set():
            self.polling = asyncio.create_task(
                next_job(self.client, self.arguments.company_id, self.attempted | self.in_hand)
            )
            try:
                job = await self.polling
            except asyncio.CancelledError:
                if self.polling.cancelled() and not main_task.cancelling():
                    break  # stopped while polling
                raise
            except (AuthenticationError, PermissionDenied) as error:
                raise Fatal(f"{type(error).__name__}: {error}") from error
            except PleoExportError as error:
                log.warning("could not list the export jobs: %s", error)
                if once:
                    self.failures += 1
                    return
                await sleep_unless_stopped(self.stop, self.arguments.poll_seconds)
                continue
            finally:
                self.polling = None
            if self.stop.is_set():
                break
            if job is None:
                if once:
                    break
                await sleep_unless_stopped(self.stop, self.arguments.poll_seconds)
                continue
            # Each job gets one attempt per round of this worker: one another worker holds
            # (JobLeased) or that failed is offered again after the next poll wait.
            self.attempted.add(job.id)
            self.in_hand.add(job.id)
            try:
                exported = await export_job(
                    self.client,
                    self.ledger,
                    job,
                    stop=self.stop,
                    concurrency=self.arguments.concurrency,
                )
            finally:
                self.in_hand.discard(job.id)
            if not exported:
                self.failures += 1
            if not once and (not exported or not await self._any_job_left()):
                await sleep_unless_stopped(self.stop, self.arguments.poll_seconds)
                self.attempted.clear()

    async def _any_job_left(self) -> bool:
        """Whether a job this worker has not tried this round is open now."""
        try:
            job = await next_job(
                self.client, self.arguments.company_id, self.attempted | self.in_hand
            )
        except PleoExportError:
            return False
        return job is not None


def open_ledger(arguments: argparse.Namespace) -> tuple[SqliteLedger | PostgresLedger, str]:
    """The ledger the arguments ask for, and how to name it in the log (never with a password)."""
    if arguments.postgres:
        dsn = os.environ.get("PLEO_LEDGER_DSN", "")
        ledger = PostgresLedger(dsn, schema=arguments.postgres_schema)
        return ledger, f"PostgreSQL ledger {ledger!r}"
    sqlite = SqliteLedger(arguments.ledger)
    return sqlite, f"ledger {sqlite.path}"


async def serve(arguments: argparse.Namespace, api_key: str) -> int:
    """Run the workers until stopped (or, with --once, until no job is left); the exit code."""
    stop = asyncio.Event()
    main_task = asyncio.current_task()
    assert main_task is not None
    workers: list[Worker] = []

    def on_signal(signum: signal.Signals) -> None:
        if not stop.is_set():
            log.info("%s: stopping once the batches in flight have settled", signum.name)
            stop.set()
            for worker in workers:
                if worker.polling is not None:
                    worker.polling.cancel()  # a poll has nothing to settle, not even retries
        else:
            log.warning("%s again: cancelling the requests in flight", signum.name)
            main_task.cancel()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    try:
        client = PleoExportClient(arguments.base_url, auth=ApiKeyAuth(api_key))
        ledger, ledger_name = open_ledger(arguments)
    except (InvalidInput, LedgerError) as error:
        log.error("%s", error)
        return 2
    try:
        async with ledger, client:
            log.info(
                "exporting from %s, %s, %d worker(s)",
                client.base_url,
                ledger_name,
                arguments.workers,
            )
            in_hand: set[str] = set()
            workers.extend(
                Worker(client, ledger, arguments, stop, in_hand) for _ in range(arguments.workers)
            )
            try:
                async with asyncio.TaskGroup() as group:
                    for worker in workers:
                        group.create_task(worker.run())
            except BaseExceptionGroup as errors:
                # One worker's fatal error stops them all; say the first one.
                fatal = errors.subgroup((Fatal, LedgerError))
                if fatal is None:
                    raise
                raise fatal.exceptions[0] from None
    except (Fatal, LedgerError) as error:
        log.error("cannot go on: %s", error)
        return 1
    except asyncio.CancelledError:
        log.warning("cancelled: an unfinished job stays in_progress, with no final event")
        return 1
    log.info("stopped" if stop.is_set() else "no export job left")
    return 1 if arguments.once and any(worker.failures for worker in workers) else 0


# ---- configuration and logging -------------------------------------------------------------


class JsonLines(logging.Formatter):
    """A log record as one JSON object: time, level, message and the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        return json.dumps(line)


def configure_logging() -> None:
    """Job lines as JSON on stdout; the connector's other messages and the library's warnings
    on stderr."""
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pleo_export_async").setLevel(logging.WARNING)
    log.setLevel(logging.INFO)
    lines = logging.StreamHandler(sys.stdout)
    lines.setFormatter(JsonLines())
    job_log.addHandler(lines)
    job_log.propagate = False


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {value!r}") from None


def _positive_float(value: str) -> float:
    number = float(value)
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {value!r}")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {value!r}")
    return number


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export Pleo's export jobs into a stand-in ERP.",
        epilog="The API key is read from PLEO_API_KEY. SIGTERM or SIGINT stops gracefully.",
    )
    parser.add_argument(
        "--base-url",
        default=os.environ.get("PLEO_BASE_URL"),
        help="Pleo's API, e.g. https://external.pleo.io (default: $PLEO_BASE_URL)",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--ledger", help="SQLite file of the acknowledgements (one machine)")
    where.add_argument(
        "--postgres",
        action="store_true",
        help="keep the acknowledgements and job leases in PostgreSQL, at the DSN in "
        "$PLEO_LEDGER_DSN, shared with the connector's other replicas",
    )
    parser.add_argument(
        "--postgres-schema",
        default="pleo_export",
        help="with --postgres, the database schema of the ledger's tables (default: pleo_export)",
    )
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="jobs this process exports at once, each by a worker of its own (default: 1)",
    )
    parser.add_argument(
        "--poll-seconds",
        type=_positive_float,
        default=30.0,
        help="wait between polls when there is no job (default: 30)",
    )
    parser.add_argument(
        "--company-id", type=_uuid, help="only this company's jobs (default: every company)"
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=8,
        help="items posted to the ERP at once (default: 8)",
    )
    parser.add_argument(
        "--once", action="store_true", help="export the jobs there are now, then exit"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    if not arguments.base_url:
        parser().error("give --base-url or set PLEO_BASE_URL")
    api_key = os.environ.get("PLEO_API_KEY", "")
    if not api_key:
        parser().error("set PLEO_API_KEY to the API key")
    if arguments.postgres and not os.environ.get("PLEO_LEDGER_DSN"):
        parser().error("--postgres: set PLEO_LEDGER_DSN to the database's connection string")
    configure_logging()
    return asyncio.run(serve(arguments, api_key))


if __name__ == "__main__":
    sys.exit(main())
