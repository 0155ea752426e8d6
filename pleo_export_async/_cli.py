"""`pleo-export`: the command line. `pleo-export demo` runs the library's main job end to end
against the bundled fake Pleo server and prints what happened."""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence

from ._auth import ApiKeyAuth
from ._client import PleoExportClient
from ._enums import ItemFailureReasonType, JobStatus
from ._models import ItemUpdate
from ._report import CompletionOutcome, UpdateReport
from ._version import __version__

#: ERP failures as Pleo's integration guide words them (Update Export Items, §8.2 of our notes).
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


async def _post_to_erp(
    entry_ids: Sequence[str], failed_fraction: float, seed: int
) -> AsyncIterator[ItemUpdate]:
    """Stand-in for a connector booking each item in its ERP, yielding each outcome as it comes."""
    rng = random.Random(seed)
    for number, entry_id in enumerate(entry_ids, start=1):
        if rng.random() < failed_fraction:
            reason_type, reason = rng.choice(REALISTIC_FAILURES)
            yield ItemUpdate.failed(entry_id, reason=reason, reason_type=reason_type)
        else:
            yield ItemUpdate.successful(
                entry_id,
                external_id=f"JE-{10_000 + number}",
                external_url=f"https://erp.example.com/journal/JE-{10_000 + number}",
            )
        if number % 500 == 0:
            await asyncio.sleep(0)  # a real ERP call would yield to the event loop


async def run_demo(items: int, concurrency: int, failed_fraction: float, seed: int) -> int:
    from .testing import FakePleo, Faults, FaultSpec  # the fake is only needed by the demo

    faults = Faults(
        latency=(0.001, 0.01),
        server_error=FaultSpec(probability=0.02),
        rate_limit=FaultSpec(at={12}),
        retry_after=0.5,
        lost_response=FaultSpec(probability=0.02),
        partial_ack=FaultSpec(probability=0.03),
        item_error=FaultSpec(probability=0.002),
    )
    async with FakePleo(seed=seed, faults=faults) as fake:
        fake.create_job(items=items, status="pending")
        print(f"fake Pleo Export API at {fake.base_url} (seed {seed})")
        started = time.perf_counter()
        async with PleoExportClient(
            fake.base_url, auth=ApiKeyAuth(fake.api_key), max_concurrency=concurrency
        ) as client:
            (pending,) = [job async for job in client.jobs(statuses=[JobStatus.PENDING])]
            job = client.job(pending.id)
            await job.start()
            entry_ids = [item.accounting_entry_id async for item in job.items()]
            print(f"job {pending.id}: {len(entry_ids)} items, started")
            report = await job.update(_post_to_erp(entry_ids, failed_fraction, seed))
            # The final event lands at Pleo but its answer is lost: exactly-once is on show.
            faults.lost_event_response = FaultSpec(at={len(fake.journal.requests) + 1})
            outcome = await job.complete()
        elapsed = time.perf_counter() - started
        journal = fake.journal
        _print_summary(report, outcome, elapsed)
        resent = sum(journal.resent_after_ack(pending.id).values())
        print(f"  highest concurrency      {journal.max_in_flight} (limit {concurrency})")
        print(f"  resent after their ack   {resent}")
        print(f"  final events applied     {len(journal.final_events_applied(pending.id))}")
        print(f"  job status at Pleo       {fake.job_status(pending.id)}")
        return 0 if resent == 0 and len(journal.final_events_applied(pending.id)) == 1 else 1


def _print_summary(report: UpdateReport, outcome: CompletionOutcome, elapsed: float) -> None:
    statuses = Counter(status.value for status in report.acknowledged.values())
    causes = ", ".join(
        f"{cause} {count}" for cause, count in sorted(report.retries_by_cause.items())
    )
    print(
        f"event sent: {outcome.event.value}"
        + (" (found already delivered after a lost answer)" if outcome.already_delivered else "")
    )
    if outcome.failure_reason:
        print(f"  reason                   {outcome.failure_reason_type}: {outcome.failure_reason}")
    print(
        f"  acknowledged             {len(report.acknowledged)} "
        f"({statuses['successful']} successful, {statuses['failed']} failed)"
    )
    print(f"  rejected by Pleo         {len(report.rejected)}")
    print(f"  unacknowledged           {len(report.unacknowledged)}")
    print(f"  requests                 {report.requests}")
    print(f"  retries                  {report.retries} ({causes or 'none'})")
    print(f"  items resent (not acked) {report.items_resent}")
    print(f"  wall time                {elapsed:.2f}s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pleo-export", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="export a job through the bundled fake Pleo server")
    demo.add_argument("--items", type=int, default=5000)
    demo.add_argument("--concurrency", type=int, default=8)
    demo.add_argument("--failed-fraction", type=float, default=0.1)
    demo.add_argument("--seed", type=int, default=2026)
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="  log: %(message)s")
    if arguments.command == "demo":
        return asyncio.run(
            run_demo(
                arguments.items, arguments.concurrency, arguments.failed_fraction, arguments.seed
            )
        )
    parser.error(f"unknown command {arguments.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
