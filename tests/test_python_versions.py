"""What differs between the Pythons the package claims (3.11 to 3.13), pinned where the library
leans on it. CI runs the whole suite on each, so these and the tests they name run on each.

* sqlite3's transaction control: 3.12 added `autocommit`, and the defaults of `isolation_level`
  are the legacy ones on every version. SqliteLedger runs its own `BEGIN`/`COMMIT` on a connection
  opened with `isolation_level=None`: no implicit transaction may stay open between its writes.
* asyncio's TaskGroup: an error in one worker of `update()` reaches the caller as itself, not in
  an ExceptionGroup (tests/test_regressions.py, the async source raising mid stream), and a
  cancellation stays a CancelledError (tests/reliability/test_cancellation.py).
* asyncio's timeouts: `flush_after` and the client's request deadline
  (tests/test_workflow.py, the partial batches sent after flush_after;
  tests/testing/test_journal_delivery.py).
* pytest-asyncio's loop scopes: the plugin's fixtures in a user's project with no configuration
  (tests/testing/test_plugin.py).
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from pathlib import Path

from pleo_export_async import ApiKeyAuth, ItemUpdate, PleoExportClient, SqliteLedger
from pleo_export_async.testing import FakePleo


def test_this_python_is_one_the_package_claims() -> None:
    """The suite runs on a Python that pyproject.toml lists."""
    text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f'"Programming Language :: Python :: {version}"' in text


async def test_the_sqlite_ledger_holds_no_transaction_open_between_writes(
    fake_pleo: FakePleo, tmp_path: Path
) -> None:
    """Once `update()` returns, every batch and acknowledgement row is committed and visible to
    another connection, and the ledger holds no write lock: another writer begins at once."""
    job = fake_pleo.create_job(items=250, status="in_progress")
    path = tmp_path / "ledger.sqlite3"
    async with (
        SqliteLedger(path) as ledger,
        PleoExportClient(
            fake_pleo.base_url, auth=ApiKeyAuth(fake_pleo.api_key), ledger=ledger
        ) as client,
    ):
        report = await client.job(job.id).update(
            [ItemUpdate.successful(entry_id) for entry_id in job.item_ids]
        )
        assert len(report.acknowledged) == 250
        with contextlib.closing(sqlite3.connect(path, isolation_level=None, timeout=0)) as other:
            batches = other.execute("SELECT count(*) FROM batch").fetchone()[0]
            answered = other.execute("SELECT count(*) FROM acknowledgement").fetchone()[0]
            other.execute("BEGIN IMMEDIATE")  # raises "database is locked" if a write is open
            other.execute("ROLLBACK")
    assert (batches, answered) == (3, 3)
