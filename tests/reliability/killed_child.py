"""The process the reliability crash tests kill: tests/crash_child.py (update() then complete())
or tests/workflow_child.py (process_job), each with a SqliteLedger, run as they are.

python killed_child.py MODE BASE_URL API_KEY JOB_ID FILE LEDGER_FILE [STATEMENT ORDINAL POINT]

MODE is `update` (FILE holds the job's IDs) or `workflow` (FILE collects the handler's calls).
With the last three arguments the process kills itself with SIGKILL inside the ledger's own
commit: in the ORDINAL-th transaction that holds a STATEMENT (`batch`, `acknowledgement`,
`intent` or `delivered`), at POINT: `begin` (before BEGIN), `midway` (after half of the
transaction's statements), `commit` (after all of them, before COMMIT) or `committed` (after
COMMIT, before anyone waiting for it is told).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Final

# The children of tests/, which this runs as they are.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import crash_child
import workflow_child
from pleo_export_async import _sqlite_ledger

#: What each STATEMENT argument looks for in a transaction's SQL.
STATEMENTS: Final = {
    "batch": "INSERT INTO batch",
    "acknowledgement": "INSERT INTO acknowledgement",
    "intent": "INTO final_event",
    "delivered": "UPDATE final_event",
}
POINTS: Final = ("begin", "midway", "commit", "committed")

Statement = tuple[str, tuple[object, ...]]


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def kill_inside_commit(statement: str, ordinal: int, point: str) -> None:
    """Replace the ledger's commit with one that dies at the chosen point of the chosen one."""
    marker = STATEMENTS[statement]
    original = _sqlite_ledger.SqliteLedger._commit_group
    seen = 0

    def commit_group(self: _sqlite_ledger.SqliteLedger, writes: list[Statement]) -> int:
        nonlocal seen
        if not any(marker in sql for sql, _ in writes):
            return original(self, writes)
        seen += 1
        if seen != ordinal:
            return original(self, writes)
        if point == "committed":
            original(self, writes)
            _die()
        connection = self._writer
        assert isinstance(connection, sqlite3.Connection)
        if point == "begin":
            _die()
        connection.execute("BEGIN")
        upto = len(writes) // 2 if point == "midway" else len(writes)
        for sql, parameters in writes[:upto]:
            connection.execute(sql, parameters)
        _die()
        raise AssertionError("unreachable")

    _sqlite_ledger.SqliteLedger._commit_group = commit_group  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    mode, base_url, api_key, job_id, file, ledger, *kill = argv
    if kill:
        statement, ordinal, point = kill
        kill_inside_commit(statement, int(ordinal), point)
    if mode == "update":
        asyncio.run(crash_child.main(base_url, api_key, job_id, file, ledger))
    elif mode == "workflow":
        with open(file, "a", encoding="utf-8") as calls:
            asyncio.run(workflow_child.main(base_url, api_key, job_id, calls, ledger))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
