"""The README's example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_example_runs_and_closes_the_job() -> None:
    """The Python block in the README exports a job through the fake and prints the outcome."""
    (example,) = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    result = subprocess.run(
        [sys.executable, "-c", example], capture_output=True, text=True, timeout=60, check=True
    )
    assert "250 acknowledged, 0 rejected" in result.stdout
    assert "completed_with_errors - 25 of 250 items could not be exported" in result.stdout


def test_the_readmes_reliability_table_is_the_one_make_chaos_last_wrote() -> None:
    """The README's reliability figures are benchmarks/results/chaos.md, row for row."""
    written = (README.parent / "benchmarks" / "results" / "chaos.md").read_text().strip()
    section = README.read_text().split("## Reliability", 1)[1].split("\n## ", 1)[0]
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    assert table == written
