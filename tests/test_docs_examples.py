"""The documentation site cannot rot: its examples run, its citations exist, its reference is
the public API.

* Every program in docs/examples/ runs against the fake and prints what the pages say.
* The testing how-to's test file passes in a project with no configuration at all.
* Every `tests/...py::test_name` the pages cite is a test function of that file, and every
  behaviour rule (R1 to R18) cites at least one.
* The reference pages render exactly the names of `pleo_export_async.__all__` and
  `pleo_export_async.testing.__all__`.
* Every file the pages include with pymdownx.snippets exists.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import pleo_export_async
import pleo_export_async.testing

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCS = REPO_ROOT / "docs"
EXAMPLES = DOCS / "examples"
# Where pymdownx.snippets looks, in order (mkdocs.yml: base_path).
SNIPPET_BASES = (REPO_ROOT, DOCS / "_snippets")
PLUGIN = "pleo_export_async.testing.pytest_plugin"

# Each program in docs/examples/ (but the test file) and lines its output must hold: the pages
# quote these.
EXPECTED_OUTPUT = {
    "first_connector.py": [
        "86ead2ae-55a8-4352-81b4-0eb9868586c9 completed_with_errors 162 booked, 38 failed",
    ],
    "survive_a_crash.py": [
        "150 sent and acknowledged, 0 skipped",
        "150 sent and acknowledged, 150 skipped",
        "completed sent",
    ],
    "oauth2.py": ["1 pending job(s)"],
    "service.py": [" completed"],
    "tuning.py": [
        "max_concurrency= 1:",
        "20 requests, at most 1 in flight",
        "20 requests, at most 4 in flight",
        "20 requests, at most 16 in flight",
    ],
    "replicas.py": ["6 jobs, final events applied per job: {1}"],
    "json_logs.py": ['"message": "export job closed with completed_with_errors"'],
    "prometheus_app.py": ["pleo_export_items_total 150.0", "pleo_export_jobs_total 1.0"],
}
# These need a PostgreSQL database (PLEO_POSTGRES_DSN), which the `postgres_dsn` fixture gives.
NEEDS_POSTGRES = {"replicas.py"}


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _environment() -> dict[str, str]:
    """This interpreter's environment, without pytest's settings, with the checkout importable."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def test_every_example_program_is_run_here() -> None:
    """A new example file cannot be added without being run by this module."""
    programs = {path.name for path in EXAMPLES.glob("*.py") if not path.name.startswith("test_")}
    assert programs == set(EXPECTED_OUTPUT)


def test_no_two_examples_share_a_name() -> None:
    """An example in docs/examples/ and one in examples/ never have the same file name, so a
    reader told to run `connector.py` knows which one is meant."""
    in_docs = {path.name for path in EXAMPLES.glob("*.py")}
    in_repository = {path.name for path in (REPO_ROOT / "examples").glob("*.py")}
    assert in_repository, "examples/ holds the service example"
    assert in_docs & in_repository == set()


def _run_example(name: str, cwd: Path, **env: str) -> None:
    """Run docs/examples/`name` and check it prints what the pages say it prints."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=cwd,
        env={**_environment(), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for line in EXPECTED_OUTPUT[name]:
        assert line in result.stdout, result.stdout


@pytest.mark.parametrize("name", sorted(set(EXPECTED_OUTPUT) - NEEDS_POSTGRES))
def test_the_example_runs_against_the_fake(name: str, tmp_path: Path) -> None:
    """The example runs as the page shows it, and prints what the page says it prints."""
    _run_example(name, tmp_path)


async def test_the_replicas_example_runs_against_the_fake_and_postgres(
    postgres_dsn: str, postgres_schema: str, tmp_path: Path
) -> None:
    """Three replicas with PostgresLedger and run_pending close six jobs, one event each."""
    await asyncio.to_thread(
        _run_example,
        "replicas.py",
        tmp_path,
        PLEO_POSTGRES_DSN=postgres_dsn,
        PLEO_POSTGRES_SCHEMA=postgres_schema,
    )


def test_the_json_logs_example_prints_json_lines_with_job_ids(tmp_path: Path) -> None:
    """Each line docs/examples/json_logs.py prints is a JSON object with a time, a level, the
    library's logger, a message and a `job_id`: the retry's and the failed item's among them."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "json_logs.py")],
        cwd=tmp_path,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 3, result.stdout
    for line in lines:
        assert {"time", "level", "logger", "message", "job_id"} <= set(line), line
        assert line["logger"] == "pleo_export_async"
    levels = {line["level"]: line for line in lines}
    assert set(levels) == {"ERROR", "WARNING", "INFO"}
    assert "accounting_entry_id" in levels["ERROR"]
    assert "ConnectionResetError: the ERP hung up" in levels["ERROR"]["exception"]
    assert levels["WARNING"]["attempt"] == 1
    assert levels["WARNING"]["status"] == "connection_error"
    assert levels["INFO"]["event"] == "completed_with_errors"


def test_the_pages_quote_the_output_the_examples_print() -> None:
    """The outputs the pages show are the ones checked above."""
    text = "\n".join(page.read_text() for page in _pages())
    for name in ("first_connector.py", "survive_a_crash.py"):
        for line in EXPECTED_OUTPUT[name]:
            assert line in text, f"{name}: {line!r} is not quoted by any page"


def test_the_testing_how_to_passes_in_a_project_with_no_configuration(tmp_path: Path) -> None:
    """docs/examples/test_first_connector.py, beside the connector it tests, passes with plain
    `pytest`: no conftest, no ini file, no marker, no asyncio_mode."""
    for name in ("first_connector.py", "test_first_connector.py"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    installed = {entry.value for entry in entry_points(group="pytest11")}
    load = [] if PLUGIN in installed else ["-p", PLUGIN]  # a plain checkout: no entry point
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *load],
        cwd=tmp_path,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "3 passed" in output, output


CITATION = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    }


def test_every_cited_test_exists() -> None:
    """Each `tests/file.py::test_name` on a page is a test function defined in that file."""
    cited = [(page, *match) for page in _pages() for match in CITATION.findall(page.read_text())]
    assert cited
    missing = [
        f"{page.relative_to(REPO_ROOT)}: {file}::{name}"
        for page, file, name in cited
        if not (REPO_ROOT / file).is_file() or name not in _test_functions(REPO_ROOT / file)
    ]
    assert missing == [], "cited tests that do not exist (renamed or removed?)"


def test_every_behaviour_rule_cites_a_test() -> None:
    """behaviour.md has a section for each rule from R1 on, in order, through at least R19, and
    each cites at least one test."""
    sections = re.split(r"^## ", (DOCS / "behaviour.md").read_text(), flags=re.MULTILINE)[1:]
    rules = {section.split()[0]: section for section in sections}
    assert list(rules) == [f"R{n}" for n in range(1, len(rules) + 1)]
    assert len(rules) >= 19
    assert [rule for rule, text in rules.items() if not CITATION.search(text)] == []


def test_the_reference_renders_exactly_the_public_names() -> None:
    """The `::: name` directives of docs/reference/ are the names in the two `__all__`s.

    A name added to (or removed from) `__all__` needs its line in a reference page."""
    directives = [
        line.removeprefix("::: ").strip()
        for page in sorted((DOCS / "reference").glob("*.md"))
        for line in page.read_text().splitlines()
        if line.startswith("::: ")
    ]
    public = {f"pleo_export_async.{name}" for name in pleo_export_async.__all__}
    public.discard("pleo_export_async.__version__")  # stated in reference/index.md
    public |= {f"pleo_export_async.testing.{name}" for name in pleo_export_async.testing.__all__}
    assert len(directives) == len(set(directives)), "a name is rendered twice"
    assert sorted(public - set(directives)) == [], "public names missing from docs/reference/"
    assert sorted(set(directives) - public) == [], "names in docs/reference/ that are not public"


SNIPPET_LINE = re.compile(r'^\s*-+8<-+\s+"([^"]+)"\s*$', flags=re.MULTILINE)
SNIPPET_BLOCK = re.compile(r"^\s*-+8<-+\s*$\n(.*?)^\s*-+8<-+\s*$", flags=re.MULTILINE | re.DOTALL)


def test_every_included_file_exists() -> None:
    """Each file a page includes is found where mkdocs.yml tells pymdownx.snippets to look."""
    included: list[str] = []
    for page in _pages():
        text = page.read_text()
        included += SNIPPET_LINE.findall(text)
        for block in SNIPPET_BLOCK.findall(text):
            included += [line.strip() for line in block.splitlines() if line.strip()]
    assert included
    # A trailing `:name` selects a section of the file.
    paths = {re.sub(r":[\w-]+$", "", path) for path in included}
    missing = [path for path in paths if not any((base / path).is_file() for base in SNIPPET_BASES)]
    assert missing == []


PYTHON_BLOCK = re.compile(r"^( *)```python[^\n]*\n(.*?)^\1```", flags=re.MULTILINE | re.DOTALL)
#: Names a page's fragment may use without defining them: the standard library's, and the
#: stand-ins for what the reader has (`client`, `handler`, ...), which are not CamelCase.
STANDARD_NAMES = {"Path", "Counter"}


def _fragments() -> list[tuple[Path, str]]:
    """The Python blocks the pages show as they are (not included from docs/examples/)."""
    found = []
    for page in _pages():
        for indent, block in PYTHON_BLOCK.findall(page.read_text()):
            code = textwrap.dedent(
                "\n".join(line.removeprefix(indent) for line in block.splitlines())
            )
            if "--8<--" not in code:
                found.append((page, code))
    return found


def test_every_fragment_on_a_page_is_valid_python_using_public_names() -> None:
    """A fragment compiles (top-level `await` and `async with` allowed, as in a coroutine), and
    each class-like name it uses without defining it is a public name of the package: a
    renamed or removed class cannot linger on a page."""
    public = set(pleo_export_async.__all__) | set(pleo_export_async.testing.__all__)
    fragments = _fragments()
    assert fragments
    problems = []
    for page, code in fragments:
        where = page.relative_to(REPO_ROOT)
        try:
            tree = compile(
                code, str(where), "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
            )
        except SyntaxError as error:
            problems.append(f"{where}: {error}")
            continue
        defined = {
            node.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
        } | {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        }
        used = {
            node.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Name)
            and isinstance(node.ctx, ast.Load)
            and node.id[:1].isupper()
        }
        unknown = used - defined - public - STANDARD_NAMES - {"True", "False", "None"}
        problems += [f"{where}: {name}" for name in sorted(unknown)]
    assert problems == []
