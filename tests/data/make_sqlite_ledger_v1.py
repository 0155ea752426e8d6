"""Make tests/data/sqlite-ledger-v1.sqlite3: a SqliteLedger file of schema version 1, written by
the code of that version, left as a connector killed mid-job would leave it.

    .venv/bin/python tests/data/make_sqlite_ledger_v1.py

Version 1 was on main until commit 5768c09 ("Lean core", issue 10) moved it to version 2. The
script checks out the commit before it into a temporary `git worktree` and runs that version's
`SqliteLedger` there, in a child process, writing through its own ledger API. What Pleo held
at that moment is written beside it, in sqlite-ledger-v1.json, for the test that opens the file
with today's code (tests/test_ledger_migrations.py):

* job A, in progress: 150 updates acknowledged; 50 recorded in flight whose PUT reached Pleo
  (the answer was lost); 50 recorded in flight never sent; 50 items not begun.
* job B, in progress: all 120 acknowledged (a few failed), and the final event's intent recorded
  but never sent.
* job C, completed: its final event delivered and its outcome recorded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
VERSION_1_COMMIT = "5768c09^"
LEDGER = HERE / "sqlite-ledger-v1.sqlite3"
FACTS = HERE / "sqlite-ledger-v1.json"


def ids(prefix: int, count: int) -> list[str]:
    return [str(uuid.UUID(int=(prefix << 64) | n, version=4)) for n in range(count)]


JOB_A, JOB_B, JOB_C = (str(uuid.UUID(int=n << 96, version=4)) for n in (0xA, 0xB, 0xC))
ITEMS = {JOB_A: ids(0xA, 300), JOB_B: ids(0xB, 120), JOB_C: ids(0xC, 40)}

# Run by that version's interpreter path, with that version's package first on sys.path.
WRITER = r"""
import asyncio, json, sys
from datetime import datetime, timezone
from pleo_export_async import ItemUpdate, SqliteLedger
from pleo_export_async._codec import encode_item_updates
from pleo_export_async._enums import JobEvent
from pleo_export_async._models import JobEventRequest
from pleo_export_async._report import CompletionOutcome

path, facts = sys.argv[1], json.loads(sys.argv[2])
A, B, C = facts["A"], facts["B"], facts["C"]
items = facts["items"]
at = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)


def wire(update):
    return json.loads(encode_item_updates([update]))[0]


def successful(entry_id, n):
    return ItemUpdate.successful(
        entry_id, external_id=f"JE-{n}", external_url=f"https://erp.example.com/je/{n}",
        exported_at=at,
    )


def failed(entry_id):
    return ItemUpdate.failed(
        entry_id, reason="Account No. 6810 does not exist", reason_type="account_unknown"
    )


async def main():
    ledger = SqliteLedger(path)
    a = await ledger.open_job(A)
    ups = [successful(e, n) for n, e in enumerate(items[A])]
    for start in (0, 100):
        batch = ups[start:min(start + 100, 150)]
        await a.record_in_flight(batch)
        await a.record_acknowledged(batch)
    await a.record_in_flight(ups[150:200])  # sent, answer lost
    await a.record_in_flight(ups[200:250])  # never sent
    b = await ledger.open_job(B)
    ups_b = [failed(e) if n % 10 == 9 else successful(e, n) for n, e in enumerate(items[B])]
    for start in (0, 100):
        batch = ups_b[start:start + 100]
        await b.record_in_flight(batch)
        await b.record_acknowledged(batch)
    await b.record_event_intent(JobEventRequest(JobEvent.COMPLETED_WITH_ERRORS, B))
    c = await ledger.open_job(C)
    ups_c = [successful(e, n) for n, e in enumerate(items[C])]
    await c.record_in_flight(ups_c)
    await c.record_acknowledged(ups_c)
    await c.record_event_intent(JobEventRequest(JobEvent.COMPLETED, C))
    outcome = CompletionOutcome(C, JobEvent.COMPLETED, None, None, 40, 0, 0)
    await c.record_event_delivered(outcome)
    await ledger.close()
    print(json.dumps({
        "held_by_pleo": {
            A: [wire(u) for u in ups[:200]],
            B: [wire(u) for u in ups_b],
            C: [wire(u) for u in ups_c],
        },
        "sent_by_the_connector": {A: [wire(u) for u in ups], B: [wire(u) for u in ups_b]},
    }))


asyncio.run(main())
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        tree = Path(folder) / "v1"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), VERSION_1_COMMIT],
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
        )
        try:
            schema = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "from pleo_export_async import _sqlite_ledger as s;print(s.SCHEMA_VERSION)",
                ],
                cwd=tree,
                env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            assert schema == "1", f"{VERSION_1_COMMIT} writes schema {schema}, not 1"
            written = Path(folder) / "ledger.sqlite3"
            facts = {"A": JOB_A, "B": JOB_B, "C": JOB_C, "items": ITEMS}
            ran = subprocess.run(
                [sys.executable, "-c", WRITER, str(written), json.dumps(facts)],
                cwd=tree,
                env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                check=True,
                capture_output=True,
                text=True,
            )
            pleo = json.loads(ran.stdout)
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(tree)], cwd=REPO_ROOT, check=True
            )
        shutil.copyfile(written, LEDGER)
    FACTS.write_text(
        json.dumps(
            {
                "written_by": f"pleo_export_async at {VERSION_1_COMMIT} (SqliteLedger schema 1)",
                "jobs": {
                    JOB_A: {"status": "in_progress", "items": ITEMS[JOB_A]},
                    JOB_B: {"status": "in_progress", "items": ITEMS[JOB_B]},
                    JOB_C: {"status": "completed", "items": ITEMS[JOB_C]},
                },
                **pleo,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {LEDGER.relative_to(REPO_ROOT)} and {FACTS.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
