"""Fixtures of the reliability suite, and the table of figures printed when the session ends."""

from __future__ import annotations

import pytest

from .figures import Figures, render
from .scale import FULL, PROFILE_NAME

#: The session's figures: module-level so that the terminal summary finds them.
FIGURES = Figures(profile=PROFILE_NAME)


@pytest.fixture(scope="session")
def figures() -> Figures:
    """What this session tried and survived, printed at the end of the session."""
    return FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES.touched:
        return
    terminalreporter.write_sep("=", "reliability figures")
    terminalreporter.write_line(render(FIGURES).rstrip())
    if FULL:
        for path in FIGURES.write_results():
            terminalreporter.write_line(f"wrote {path}")
