"""The figures of a reliability run: what was tried, and the counts that must stay zero.

One `Figures` per test session (the `figures` fixture). Tests add to it as they go, before
they assert, so a failing run still shows what it found. At the end of the session the table is
printed; with `PLEO_CHAOS=full` it is also written to `benchmarks/results/chaos.json` and
`benchmarks/results/chaos.md`. `make chaos` then runs the lease, crash and chaos tests again
beside one busy loop per core, and adds how that went to both files (`write_loaded_run`).
"""

from __future__ import annotations

import contextlib
import json
import platform
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from pleo_export_async.testing import Journal

RESULTS: Final = Path(__file__).resolve().parents[2] / "benchmarks" / "results"

#: What the library must never do, whatever it is sent: these exceptions are its own bugs.
INTERNAL_ERRORS: Final = (
    KeyError,
    AttributeError,
    TypeError,
    IndexError,
    AssertionError,
    NameError,
    RecursionError,
    BaseExceptionGroup,
)

#: The counts that must be zero, in the order the table shows them.
ZERO_COUNTS: Final = (
    ("resent_after_ack", "resent after acknowledgement"),
    ("lost_items", "lost items"),
    ("extra_final_events", "extra final events"),
    ("internal_errors", "internal errors (KeyError, AttributeError, TypeError, ...)"),
    ("leaked_secrets", "leaked secrets"),
    ("leaked_tasks", "leaked asyncio tasks"),
    ("leaked_sockets", "leaked sockets or file descriptors"),
)


@dataclass(repr=False)
class Figures:
    """Counts fed by the tests of one session."""

    profile: str = "quick"
    started: float = field(default_factory=time.monotonic)
    jobs_run: int = 0
    updates_sent: int = 0
    requests: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    crashes_survived: int = 0
    crash_moments: Counter[str] = field(default_factory=Counter)
    cancellations_survived: int = 0
    cancel_moments: Counter[str] = field(default_factory=Counter)
    hostile_answers: Counter[str] = field(default_factory=Counter)
    bad_inputs: Counter[str] = field(default_factory=Counter)
    secrets_checked_texts: int = 0
    resent_after_ack: int = 0
    lost_items: int = 0
    extra_final_events: int = 0
    internal_errors: int = 0
    leaked_secrets: int = 0
    leaked_tasks: int = 0
    leaked_sockets: int = 0
    busy_loops: int = 0  # CPU-burning processes beside the session (tests/busy_loops.py)

    def __repr__(self) -> str:
        return f"<Figures of the {self.profile} profile: {self.jobs_run} jobs so far>"

    @property
    def touched(self) -> bool:
        """Whether any reliability test fed these figures."""
        return bool(
            self.jobs_run
            or self.hostile_answers
            or self.bad_inputs
            or self.secrets_checked_texts
            or self.crashes_survived
        )

    # -- feeding ------------------------------------------------------------------------------

    def take_journal(self, journal: Journal, job_ids: Iterable[str] | None = None) -> None:
        """Count the requests, item updates and injected faults of a fake's journal."""
        wanted = None if job_ids is None else {job_id.lower() for job_id in job_ids}
        for entry in journal.requests:
            if wanted is not None and entry.job_id not in wanted:
                continue
            self.requests += 1
            self.faults.update(entry.faults)
            if entry.is_item_update and isinstance(entry.body, list):
                self.updates_sent += len(entry.body)

    @contextlib.contextmanager
    def counting_internal_errors(self) -> Iterator[None]:
        """Count (and let through) an internal error raised by the library inside the block."""
        try:
            yield
        except INTERNAL_ERRORS:
            self.internal_errors += 1
            raise

    # -- showing ------------------------------------------------------------------------------

    def rows(self) -> list[tuple[str, str]]:
        """(what, how many) rows of the table, the must-be-zero counts last."""

        def by_kind(counts: Counter[str]) -> str:
            total = sum(counts.values())
            if not counts:
                return "0"
            kinds = ", ".join(f"{kind} {n:,}" for kind, n in sorted(counts.items()))
            return f"{total:,} ({kinds})"

        elapsed = time.monotonic() - self.started
        rows = [("profile", f"{self.profile} ({elapsed:,.0f} s)")]
        if self.busy_loops:
            rows.append(("busy loops beside the tests", f"{self.busy_loops:,}"))
        rows += [
            ("jobs run", f"{self.jobs_run:,}"),
            ("item updates sent", f"{self.updates_sent:,} in {self.requests:,} requests"),
            ("faults injected", by_kind(self.faults)),
            ("crashes survived (SIGKILL, then resumed)", by_kind(_by_phase(self.crash_moments))),
            ("cancellations survived", by_kind(self.cancel_moments)),
            ("hostile answers tried", by_kind(self.hostile_answers)),
            ("bad inputs tried", by_kind(self.bad_inputs)),
            ("texts searched for secrets", f"{self.secrets_checked_texts:,}"),
        ]
        rows.extend((label, f"{getattr(self, name):,}") for name, label in ZERO_COUNTS)
        return rows

    def as_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "seconds": round(time.monotonic() - self.started, 1),
            "busy_loops": self.busy_loops,
            "jobs_run": self.jobs_run,
            "updates_sent": self.updates_sent,
            "requests": self.requests,
            "faults_injected": dict(sorted(self.faults.items())),
            "crashes_survived": dict(sorted(self.crash_moments.items())),
            "cancellations_survived": dict(sorted(self.cancel_moments.items())),
            "hostile_answers_tried": dict(sorted(self.hostile_answers.items())),
            "bad_inputs_tried": dict(sorted(self.bad_inputs.items())),
            "texts_searched_for_secrets": self.secrets_checked_texts,
            "must_be_zero": {name: getattr(self, name) for name, _ in ZERO_COUNTS},
        }

    def markdown(self) -> str:
        lines = ["| what | count |", "|---|---|"]
        lines.extend(f"| {label} | {value} |" for label, value in self.rows())
        return "\n".join(lines) + "\n"

    def plain(self) -> str:
        rows = self.rows()
        width = max(len(label) for label, _ in rows)
        return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)

    def write_results(self, directory: Path = RESULTS) -> list[Path]:
        """Write chaos.json and chaos.md; returns their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        as_json, as_markdown = directory / "chaos.json", directory / "chaos.md"
        as_json.write_text(json.dumps(self.as_json(), indent=2) + "\n", encoding="utf-8")
        as_markdown.write_text(self.markdown(), encoding="utf-8")
        return [as_json, as_markdown]


#: The row of chaos.md that the loaded run adds under the full run's table.
LOADED_LABEL: Final = "the lease, crash and chaos tests beside a busy loop per core"


@dataclass(frozen=True)
class LoadedRun:
    """How a session beside busy loops went (`make loaded`): starved of CPU, lease renewals
    come late, kills land at other moments, answers come nearer their timeouts."""

    busy_loops: int
    cores: int
    seconds: float
    passed: int
    failed: int
    profile: str
    files: tuple[str, ...]

    def value(self) -> str:
        return (
            f"{self.passed:,} passed, {self.failed:,} failed in {self.seconds:,.0f} s beside "
            f"{self.busy_loops} busy loop{'s' if self.busy_loops != 1 else ''} on "
            f"{self.cores} cores ({self.profile} profile of "
            f"{', '.join(self.files)})"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "python": platform.python_version(),
            "busy_loops": self.busy_loops,
            "cores": self.cores,
            "seconds": round(self.seconds, 1),
            "passed": self.passed,
            "failed": self.failed,
            "profile": self.profile,
            "files": list(self.files),
        }


def write_loaded_run(run: LoadedRun, directory: Path = RESULTS) -> list[Path]:
    """Add the loaded run to the chaos.json and chaos.md that the full run wrote just before
    (`make chaos`), in place of an earlier loaded run's; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    as_json, as_markdown = directory / "chaos.json", directory / "chaos.md"
    figures = json.loads(as_json.read_text(encoding="utf-8")) if as_json.exists() else {}
    figures["loaded_run"] = run.as_json()
    as_json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    table = as_markdown.read_text(encoding="utf-8") if as_markdown.exists() else ""
    lines = [line for line in table.splitlines() if not line.startswith(f"| {LOADED_LABEL} |")]
    if not lines:
        lines = ["| what | count |", "|---|---|"]
    lines.append(f"| {LOADED_LABEL} | {run.value()} |")
    as_markdown.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [as_json, as_markdown]


def _by_phase(moments: Counter[str]) -> Counter[str]:
    """Kills inside the ledger's commit counted together per call; which write and which step
    of it each hit stays in chaos.json."""
    merged: Counter[str] = Counter()
    marker = ": inside the ledger's commit"
    for moment, count in moments.items():
        call, inside, _ = moment.partition(marker)
        merged[call + inside] += count
    return merged


def render(figures: Figures) -> str:
    """The table as text: drawn by rich when it is installed, plain columns otherwise."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich comes with the cli extra
        return figures.plain()
    table = Table(title="reliability figures", title_justify="left")
    table.add_column("what")
    table.add_column("count", overflow="fold")
    zero_labels = {label for _, label in ZERO_COUNTS}
    for label, value in figures.rows():
        style = "red" if label in zero_labels and value != "0" else None
        table.add_row(label, value, style=style)
    console = Console(width=110, record=True, force_terminal=False, color_system=None)
    with console.capture() as captured:
        console.print(table)
    return captured.get()
