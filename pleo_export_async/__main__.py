"""`python -m pleo_export_async`: the `pleo-export` command line (it needs the `cli` extra)."""

import sys

from pleo_export_async._cli import main

sys.exit(main())
