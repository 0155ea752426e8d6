"""How hard the suite tries: a quick profile for CI, a large one for `make chaos`.

`PLEO_CHAOS=full` selects the large one. Both run the same tests; only the number of examples,
seeds, kills and jobs changes. Hypothesis settings come from named profiles, applied per test
(`@settings(profile("chaos"))`), so loading this suite never changes the settings of the others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from hypothesis import HealthCheck, settings

FULL: Final = os.environ.get("PLEO_CHAOS", "").strip().lower() == "full"
PROFILE_NAME: Final = "full" if FULL else "quick"


@dataclass(frozen=True)
class Scale:
    """Counts per area of the suite."""

    chaos_examples: int
    workflow_examples: int
    cancel_examples: int
    fuzz_examples: int
    kills: int  # SIGKILLs at random moments from outside, of update()/complete()
    commit_kills: int  # SIGKILLs inside the SqliteLedger's commit
    workflow_kills: int  # SIGKILLs of a process_job worker
    migration_kills: int  # SIGKILLs while a SqliteLedger migrates an old file
    service_jobs: int  # jobs one client runs one after another
    service_rounds: int  # rounds of several jobs at once
    service_parallel: int  # jobs per such round
    max_items: int  # the largest chaos job


QUICK: Final = Scale(
    chaos_examples=14,
    workflow_examples=8,
    cancel_examples=10,
    fuzz_examples=120,
    kills=4,
    commit_kills=4,
    workflow_kills=2,
    migration_kills=6,
    service_jobs=120,
    service_rounds=4,
    service_parallel=6,
    max_items=3000,
)
LARGE: Final = Scale(
    chaos_examples=120,
    workflow_examples=50,
    cancel_examples=75,
    fuzz_examples=1000,
    kills=20,
    commit_kills=20,
    workflow_kills=10,
    migration_kills=30,
    service_jobs=600,
    service_rounds=20,
    service_parallel=10,
    max_items=3000,
)
SCALE: Final = LARGE if FULL else QUICK

_BASE: Final = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
for _kind, _examples in (
    ("chaos", (QUICK.chaos_examples, LARGE.chaos_examples)),
    ("workflow", (QUICK.workflow_examples, LARGE.workflow_examples)),
    ("cancel", (QUICK.cancel_examples, LARGE.cancel_examples)),
    ("fuzz", (QUICK.fuzz_examples, LARGE.fuzz_examples)),
):
    settings.register_profile(
        f"pleo-reliability-{_kind}-quick", parent=_BASE, max_examples=_examples[0]
    )
    settings.register_profile(
        f"pleo-reliability-{_kind}-full", parent=_BASE, max_examples=_examples[1]
    )


def profile(kind: str) -> settings:
    """The hypothesis settings of this part of the suite in the selected profile."""
    return settings.get_profile(f"pleo-reliability-{kind}-{PROFILE_NAME}")
