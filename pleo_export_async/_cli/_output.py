"""Where the command line writes, and how it tells an operator what happened.

Results (tables, the outcome of a command) go to stdout; progress bars, hints and errors go to
stderr, so a pipe or a file gets the results alone. With `--json` stdout holds the JSON
document and nothing else. Piped or redirected, stdout has no window to fit: tables keep every
cell whole rather than wrap or cut at 80 columns (`COLUMNS` still sets a width). rich leaves
colour out when `NO_COLOR` is set or the output is not a terminal.
"""

from __future__ import annotations

import datetime
import enum
import json
import os
from typing import Any, Final

import attrs
from rich.console import Console, RenderableType

from pleo_export_async._report import CompletionOutcome

# Wide enough for any row a command prints; rich does not pad a table out to it.
_PIPED_WIDTH: Final = 10_000


class ExitCode(enum.IntEnum):
    DONE = 0
    WITH_ERRORS = 1  # the job completed with errors, or items were rejected or left over
    BAD_INPUT = 2
    API_FAILURE = 3  # Pleo refused, or the network failed
    INTERRUPTED = 130
    TERMINATED = 143  # SIGTERM: what was in flight settled, nothing else was sent


def _stdout_console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = _PIPED_WIDTH
    return console


@attrs.define
class Output:
    json_mode: bool = False
    stdout: Console = attrs.field(factory=_stdout_console)
    stderr: Console = attrs.field(factory=lambda: Console(stderr=True, highlight=False))

    @property
    def progress(self) -> Console:
        """Where live progress goes: stderr, which rich leaves alone when it is not a terminal."""
        return self.stderr

    def show(self, *renderables: RenderableType) -> None:
        """A result for a person, on stdout: a table or a line. Nothing in `--json` mode,
        where the command prints its document instead."""
        if self.json_mode:
            return
        for renderable in renderables:
            if isinstance(renderable, str):
                # Text from Pleo or a results file may hold brackets: never read it as markup.
                # Wrapped to a terminal's width; whole lines down a pipe.
                self.stdout.print(renderable, markup=False, soft_wrap=not self.stdout.is_terminal)
            else:
                self.stdout.print(renderable)

    def note(self, message: str) -> None:
        """A hint for the person at the terminal (not a result), on stderr."""
        self.stderr.print(message, markup=False, highlight=False, soft_wrap=True)

    def document(self, value: Any) -> None:
        """The one JSON document of a `--json` run, on stdout."""
        self.stdout.file.write(json.dumps(value, indent=2, default=_rfc3339) + "\n")
        self.stdout.file.flush()

    def json_line(self, value: Any) -> None:
        """One JSON document on one line of stdout, for a command that prints several as it
        runs (JSON Lines)."""
        self.stdout.file.write(json.dumps(value, default=_rfc3339) + "\n")
        self.stdout.file.flush()

    def error(self, message: str) -> None:
        """One clear line on stderr."""
        self.stderr.print(
            f"pleo-export: error: {message}", markup=False, highlight=False, soft_wrap=True
        )


def outcome_fields(outcome: CompletionOutcome) -> dict[str, Any]:
    """A final event's outcome as JSON: the event, its counts and its reason."""
    return {
        "event": outcome.event.value,
        "successful": outcome.successful,
        "failed": outcome.failed,
        "rejected": outcome.rejected,
        "failure_reason": outcome.failure_reason,
        "failure_reason_type": None
        if outcome.failure_reason_type is None
        else str(outcome.failure_reason_type),
    }


def _rfc3339(value: object) -> str:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return str(value)
