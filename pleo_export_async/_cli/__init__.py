"""`pleo-export`: the command line for operators, and the demo (the CLI layer,
docs/architecture.md).

It needs the `cli` extra (click and rich); the library itself does not.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """The `pleo-export` console script."""
    try:
        from ._app import cli
    except ImportError as missing:
        print(
            f"pleo-export needs the cli extra ({missing.name} is not installed): "
            "pip install 'pleo-export-async[cli]'",
            file=sys.stderr,
        )
        return 2
    import click

    try:
        # Not in standalone mode, click returns a command's exit code instead of exiting.
        code = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="pleo-export",
            standalone_mode=False,
        )
    except click.exceptions.Exit as leaving:
        return leaving.exit_code
    except click.ClickException as error:
        # One clear line, not click's usage block: `--help` is there for the rest.
        print(f"pleo-export: error: {error.format_message()}", file=sys.stderr)
        return error.exit_code
    except click.exceptions.Abort:
        print("pleo-export: interrupted", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0
