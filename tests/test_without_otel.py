"""Without the `otel` extra the library works as before: a child process in which every
`opentelemetry` import fails runs a job against the fake, and its log records carry no trace
id (issue 21: the extra is optional)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from helpers import REPO_ROOT

CHILD = textwrap.dedent(
    """
    import asyncio, logging, sys
    sys.modules["opentelemetry"] = None  # every `import opentelemetry...` raises ImportError

    from pleo_export_async import ApiKeyAuth, ItemUpdate, PleoExportClient, _telemetry
    from pleo_export_async.testing import FakePleo

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("pleo_export_async").addHandler(handler)
    logging.getLogger("pleo_export_async").setLevel(logging.INFO)

    async def book(item):
        return ItemUpdate.successful(item.accounting_entry_id, external_id="JE-1")

    async def main():
        async with FakePleo(seed=5) as fake:
            job = fake.create_job(items=120, status="pending")
            async with PleoExportClient(fake.base_url, auth=ApiKeyAuth(fake.api_key)) as client:
                outcome = await client.process_job(job.id, book)
            return outcome, len(fake.journal.final_events_applied(job.id))

    outcome, finals = asyncio.run(main())
    assert not _telemetry.AVAILABLE
    assert "opentelemetry.trace" not in sys.modules
    assert records and not any(hasattr(r, "trace_id") for r in records)
    print(outcome.event.value, outcome.successful, finals)
    """
)


def test_without_opentelemetry_a_job_runs_and_nothing_is_traced() -> None:
    """With opentelemetry unimportable, `process_job` closes a job of 120 items with one final
    event, the telemetry module says it is unavailable, and no log record has a trace id."""
    ran = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["completed", "120", "1"]
