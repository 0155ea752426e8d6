"""Serve a fake Pleo Export API from the shell until SIGINT or SIGTERM.

    python -m pleo_export_async.testing --port 8080 --jobs 3 --items 500

Prints, to stdout, one `key=value` pair per line, then `ready` once it accepts requests:

    base_url=http://127.0.0.1:8080
    api_key=test-api-key
    company_id=<uuid>
    job_id=<uuid>          (one line per job, oldest first)
    ready

Anything else (the "stop with Ctrl+C" hint) goes to stderr, so stdout stays machine-readable.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from . import _spec
from ._server import FakePleo


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pleo_export_async.testing",
        description="Serve a fake Pleo Export API v3 with seeded export jobs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "stdout, one key=value per line, then `ready` once serving:\n"
            "  base_url=http://127.0.0.1:8080\n"
            "  api_key=test-api-key\n"
            "  company_id=<uuid>\n"
            "  job_id=<uuid>   (one line per job, oldest first)\n"
            "  ready\n"
            "Authenticate with HTTP Basic: the API key as user name, an empty password."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=8080, help="port to bind; 0 picks a free one")
    parser.add_argument("--jobs", type=int, default=1, help="how many export jobs to create")
    parser.add_argument("--items", type=int, default=100, help="items per job")
    parser.add_argument("--seed", type=int, default=0, help="seed for IDs and export item data")
    parser.add_argument("--api-key", default="test-api-key", help="the API key to accept")
    parser.add_argument(
        "--status",
        choices=sorted(_spec.ACTIVE_JOB_STATUSES),
        default="pending",
        help="status of the created jobs (default: pending, as Pleo creates them)",
    )
    parser.add_argument(
        "--lenient",
        dest="strict",
        action="store_false",
        help=(
            "accept what Pleo's guidance tells a connector not to do (item updates before "
            "`started`, completing with items pending, rewriting a successful item); "
            "by default the fake refuses it, as FakePleo(strict=True) does"
        ),
    )
    # The default since strict became the default; still accepted so old scripts run.
    parser.add_argument("--strict", dest="strict", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(strict=True)
    return parser


async def _serve(arguments: argparse.Namespace) -> None:
    fake = FakePleo(
        host=arguments.host,
        port=arguments.port,
        api_key=arguments.api_key,
        seed=arguments.seed,
        strict=arguments.strict,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    async with fake:
        jobs = [
            fake.create_job(items=arguments.items, status=arguments.status)
            for _ in range(arguments.jobs)
        ]
        lines = [
            f"base_url={fake.base_url}",
            f"api_key={fake.api_key}",
            f"company_id={fake.company_id}",
            *(f"job_id={job.id}" for job in jobs),
            "ready",
        ]
        print("\n".join(lines), flush=True)
        print("Serving the fake Pleo Export API; stop with Ctrl+C.", file=sys.stderr, flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake server from the command line."""
    arguments = _parser().parse_args(argv)
    if arguments.jobs < 0 or arguments.items < 0:
        _parser().error("--jobs and --items must not be negative")
    asyncio.run(_serve(arguments))
    return 0


if __name__ == "__main__":
    sys.exit(main())
