"""Fixtures of the reliability suite, and the table of figures printed when the session ends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from busy_loops import LOOPS

from .figures import Figures, LoadedRun, render, write_loaded_run
from .scale import FULL, PROFILE_NAME

#: The session's figures: module-level so that the terminal summary finds them.
FIGURES = Figures(profile=PROFILE_NAME)

#: Set by `make chaos` for its loaded run, whose row then joins the full run's table.
LOADED_ROW = os.environ.get("PLEO_CHAOS_LOADED_ROW", "").strip() not in ("", "0")


@pytest.fixture(scope="session")
def figures() -> Figures:
    """What this session tried and survived, printed at the end of the session."""
    return FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES.touched:
        FIGURES.busy_loops = LOOPS.count if LOOPS.ran else 0
        terminalreporter.write_sep("=", "reliability figures")
        terminalreporter.write_line(render(FIGURES).rstrip())
        if FULL:
            for path in FIGURES.write_results():
                terminalreporter.write_line(f"wrote {path}")
    # After the full table is written, whichever session wrote it: the row goes under it.
    if LOADED_ROW:
        _write_loaded_row(terminalreporter)


def _write_loaded_row(terminalreporter: pytest.TerminalReporter) -> None:
    if not LOOPS.ran:
        # A row saying "beside busy loops" for a run on an idle machine would be a false one.
        terminalreporter.write_line("PLEO_CHAOS_LOADED_ROW without PLEO_BUSY_LOOPS: no row written")
        return
    stats = terminalreporter.stats
    files = {
        report.nodeid.split("::", 1)[0]
        for key in ("passed", "failed", "error")
        for report in stats.get(key, [])
    }
    run = LoadedRun(
        busy_loops=LOOPS.count,
        cores=os.cpu_count() or 1,
        seconds=LOOPS.seconds,
        passed=len(stats.get("passed", [])),
        failed=len(stats.get("failed", [])) + len(stats.get("error", [])),
        profile=PROFILE_NAME,
        files=tuple(sorted(str(Path(file).relative_to("tests")) for file in files)),
    )
    for path in write_loaded_run(run):
        terminalreporter.write_line(f"wrote {path}")
