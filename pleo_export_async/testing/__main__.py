"""`python -m pleo_export_async.testing`: the shell fake, the very program `pleo-export
fake-server` runs, with the same flags and the same output (it needs the `cli` extra).

    python -m pleo_export_async.testing --port 8080 --jobs 3 --items 500

stdout gets one `key=value` pair per line (base_url, api_key, company_id, one job_id per job),
then `ready` once it accepts requests; SIGINT or SIGTERM prints what it received and exits 0.
`--help` lists the flags.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake server from the command line."""
    from pleo_export_async._cli import main as command_line

    arguments = list(sys.argv[1:] if argv is None else argv)
    return command_line(["fake-server", *arguments])


if __name__ == "__main__":
    sys.exit(main())
