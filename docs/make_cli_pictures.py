"""Draw the pictures of docs/cli.md: real runs of `pleo-export demo`, `jobs` and `push` against
the bundled fake, recorded by rich and exported as SVG into docs/images/.

    .venv/bin/python docs/make_cli_pictures.py

Run it again after a change to what the commands print, and commit the pictures.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import click
from rich.console import Console

from pleo_export_async._cli._app import cli
from pleo_export_async._cli._output import Output
from pleo_export_async.testing import FakePleo

IMAGES = Path(__file__).resolve().parent / "images"
WIDTH = 100


@contextmanager
def served_fake() -> Iterator[FakePleo]:
    """A FakePleo served by an event loop of its own, since each command runs asyncio.run."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fake = FakePleo(seed=2026)
    asyncio.run_coroutine_threadsafe(fake.start(), loop).result(timeout=10)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def picture(name: str, arguments: list[str], environment: dict[str, str]) -> None:
    """Run `pleo-export ARGUMENTS` with a recording console as its terminal; save the SVG."""
    console = Console(
        record=True, width=WIDTH, force_terminal=True, highlight=False, file=io.StringIO()
    )
    # Not a terminal: the live progress (gone from a terminal once the run ends) is not drawn.
    progress = Console(file=io.StringIO(), highlight=False)
    os.environ.update(environment)
    with suppress(click.exceptions.Exit):  # how a command leaves with its exit code
        cli.main(args=arguments, obj=Output(stdout=console, stderr=progress), standalone_mode=False)
    shown = " ".join(a for a in arguments if not a.startswith("http"))
    shown = shown.replace("--base-url ", "")
    svg = console.export_svg(title=f"pleo-export {shown}")
    (IMAGES / f"cli-{name}.svg").write_text(svg)
    print(f"wrote docs/images/cli-{name}.svg", file=sys.stderr)


def main() -> None:
    IMAGES.mkdir(exist_ok=True)
    picture("demo", ["demo", "--items", "2000"], {})
    with served_fake() as fake:
        environment = {"PLEO_API_KEY": fake.api_key}
        pending = fake.create_job(items=250, status="pending")
        fake.create_job(items=40, status="in_progress", company_id=fake.company_id)
        url = ["--base-url", fake.base_url]
        picture("jobs", [*url, "jobs"], environment)
        with tempfile.TemporaryDirectory() as folder:
            os.chdir(folder)  # so that the picture's title shows a plain file name
            results = Path("results.jsonl")
            lines = []
            for index, entry_id in enumerate(pending.item_ids):
                row = {"accountingEntryId": entry_id, "status": "successful"}
                if index % 25 == 24:
                    row = {
                        "accountingEntryId": entry_id,
                        "status": "failed",
                        "failureReason": "Account No. 6810 does not exist in the Accounting System",
                        "failureReasonType": "account_unknown",
                    }
                lines.append(json.dumps(row))
            results.write_text("\n".join(lines) + "\n")
            picture("push", [*url, "push", pending.id, str(results), "--complete"], environment)


if __name__ == "__main__":
    main()
