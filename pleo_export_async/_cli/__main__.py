"""`python -m pleo_export_async._cli`, the same as the `pleo-export` console script."""

import sys

from pleo_export_async._cli import main

sys.exit(main())
