"""Where the command line writes, and how it tells an operator what happened.

Human displays (tables, progress) go to stdout when it is a terminal, else to stderr, so that
stdout can be piped; with `--json` stdout holds one JSON document and nothing else. rich leaves
colour out when `NO_COLOR` is set or the output is not a terminal.
"""

from __future__ import annotations

import datetime
import enum
import json
import sys
from typing import Any

import attrs
from rich.console import Console


class ExitCode(enum.IntEnum):
    DONE = 0
    WITH_ERRORS = 1  # the job completed with errors, or items were rejected or left over
    BAD_INPUT = 2
    API_FAILURE = 3  # Pleo refused, or the network failed
    INTERRUPTED = 130


@attrs.define
class Output:
    json_mode: bool = False
    stdout: Console = attrs.field(factory=lambda: Console(highlight=False))
    stderr: Console = attrs.field(factory=lambda: Console(stderr=True, highlight=False))

    @property
    def display(self) -> Console:
        """Where tables and progress go."""
        if self.json_mode or not sys.stdout.isatty():
            return self.stderr
        return self.stdout

    def document(self, value: Any) -> None:
        """The one JSON document of a `--json` run, on stdout."""
        sys.stdout.write(json.dumps(value, indent=2, default=_rfc3339) + "\n")
        sys.stdout.flush()

    def error(self, message: str) -> None:
        """One clear line on stderr."""
        self.stderr.print(
            f"pleo-export: error: {message}", markup=False, highlight=False, soft_wrap=True
        )


def _rfc3339(value: object) -> str:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return str(value)
