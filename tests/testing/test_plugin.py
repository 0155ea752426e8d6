"""The pytest plugin's fixtures and marker."""

from __future__ import annotations

import ast
import asyncio
import os
import re
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from pleo_export_async.testing import FakePleo
from pleo_export_async.testing.pytest_plugin import FakePleoFactory

from .helpers import call, session_for

REPO_ROOT = Path(__file__).resolve().parents[2]


async def test_fake_pleo_fixture_is_started(fake_pleo: FakePleo) -> None:
    """`fake_pleo` is a started server answering on its base_url, strict unless told otherwise."""
    async with session_for(fake_pleo) as session:
        assert (await call(session, "GET", "/v3/export-jobs"))[0] == 200
    assert fake_pleo.strict is True


@pytest.mark.fake_pleo(strict=False, seed=9, api_key="marker-key")
async def test_marker_configures_fake_pleo(fake_pleo: FakePleo) -> None:
    """@pytest.mark.fake_pleo(...) passes its keyword arguments to FakePleo."""
    assert (fake_pleo.strict, fake_pleo.seed, fake_pleo.api_key) == (False, 9, "marker-key")


async def test_factory_starts_independent_servers(fake_pleo_factory: FakePleoFactory) -> None:
    """`fake_pleo_factory` starts separate servers with their own configuration."""
    first = await fake_pleo_factory(seed=1)
    second = await fake_pleo_factory(seed=2, strict=False)
    assert first.base_url != second.base_url
    assert (first.strict, second.strict) == (True, False)
    async with session_for(second) as session:
        assert (await call(session, "GET", "/v3/export-jobs"))[0] == 200


async def test_plugin_imports_without_pytest_asyncio() -> None:
    """Without pytest-asyncio the plugin still imports, with fixtures that explain the need."""
    script = (
        "import sys\n"
        "sys.modules['pytest_asyncio'] = None  # makes `import pytest_asyncio` fail\n"
        "import pleo_export_async.testing.pytest_plugin as plugin\n"
        "assert plugin.pytest_asyncio is None\n"
        "assert 'pytest-asyncio' in plugin._NEEDS_PYTEST_ASYNCIO\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert await asyncio.wait_for(process.wait(), timeout=30) == 0


# The one client name the package re-exports: the test switch for the client's retries. It is
# handed to users, never used by the fake itself.
CLIENT_REEXPORTS = {("__init__.py", "pleo_export_async._retry", ("instant_retries",))}
# `python -m pleo_export_async.testing` runs the command line's fake-server program; the fake
# itself never imports it.
SHELL_ENTRY = {("__main__.py", "pleo_export_async._cli", ("main",))}


def test_fake_imports_nothing_from_the_client() -> None:
    """The fake's modules import only each other, aiohttp, attrs, the standard library and,
    when it is installed, orjson."""
    package = REPO_ROOT / "pleo_export_async" / "testing"
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.level in (0, 1), f"{path.name} imports from outside testing/"
                module = node.module or ""
                names = tuple(alias.name for alias in node.names)
                if (path.name, module, names) in CLIENT_REEXPORTS | SHELL_ENTRY:
                    continue
                assert node.level == 1 or not module.startswith("pleo_export_async"), path.name
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("pleo_export_async"), path.name


# A user's project: nothing but test files. No conftest, no ini file, no marker, no asyncio_mode:
# pytest-asyncio runs in its default strict mode, and the plugin comes from the entry point.
USER_TESTS = """
import pytest
import pytest_asyncio

from pleo_export_async import ApiKeyAuth, ItemUpdate, PleoExportClient, PleoExportError
from pleo_export_async.testing import Faults, FaultSpec, instant_retries


async def test_a_connector_closes_the_job(fake_pleo):
    pending = fake_pleo.create_job(items=120, status="pending")
    with instant_retries():
        async with PleoExportClient(fake_pleo.base_url, auth=ApiKeyAuth(fake_pleo.api_key)) as c:
            job = c.job(pending.id)
            await job.start()
            await job.update(ItemUpdate.successful(i) for i in pending.item_ids)
            outcome = await job.complete()
    assert outcome.event.value == "completed"
    assert fake_pleo.job_status(pending.id) == "completed"
    assert fake_pleo.journal.resent_after_ack(pending.id) == {}


async def test_a_connector_that_forgets_to_start_is_caught(fake_pleo):
    pending = fake_pleo.create_job(items=3, status="pending")
    async with PleoExportClient(fake_pleo.base_url, auth=ApiKeyAuth(fake_pleo.api_key)) as c:
        with pytest.raises(PleoExportError):
            await c.job(pending.id).update(ItemUpdate.successful(i) for i in pending.item_ids)
    assert [entry.status for entry in fake_pleo.journal.puts(pending.id)] == [422]
    assert fake_pleo.job_status(pending.id) == "pending"


@pytest.mark.fake_pleo(seed=5, faults=Faults(rate_limit=FaultSpec(at={1})))
async def test_the_marker_configures_the_fake(fake_pleo):
    assert fake_pleo.seed == 5
    assert fake_pleo.faults.rate_limit.at == {1}


@pytest.fixture
def job(fake_pleo):
    return fake_pleo, fake_pleo.create_job(items=3)


@pytest_asyncio.fixture
async def started_job(fake_pleo):
    pending = fake_pleo.create_job(items=3, status="pending")
    async with PleoExportClient(fake_pleo.base_url, auth=ApiKeyAuth(fake_pleo.api_key)) as c:
        await c.job(pending.id).start()
    return fake_pleo, pending


async def test_through_a_fixture_of_the_project(job):
    fake, created = job
    assert fake.job_status(created.id) == "in_progress"


async def test_through_an_async_fixture_of_the_project(started_job):
    fake, pending = started_job
    assert fake.job_status(pending.id) == "in_progress"


class TestInAClass:
    async def test_factory(self, fake_pleo_factory):
        first = await fake_pleo_factory(seed=1)
        second = await fake_pleo_factory(seed=2)
        assert first.base_url != second.base_url


def test_a_plain_test_still_runs(fake_pleo):
    assert fake_pleo.base_url.startswith("http://127.0.0.1:")
"""

# An async test that uses none of the plugin's fixtures: the plugin leaves it to the project.
UNRELATED_TEST = """
async def test_unrelated():
    pass
"""


def _run_user_project(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest in `project` in a fresh process, with no configuration from this repository."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    # From a plain source checkout the package is importable but its entry point is not there.
    names = {entry.value for entry in entry_points(group="pytest11")}
    load = (
        []
        if "pleo_export_async.testing.pytest_plugin" in names
        else ["-p", "pleo_export_async.testing.pytest_plugin"]
    )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *load, *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_users_async_test_runs_with_no_configuration(tmp_path: Path) -> None:
    """`async def test_x(fake_pleo)` runs with no marker, no asyncio_mode and no conftest."""
    (tmp_path / "test_connector.py").write_text(textwrap.dedent(USER_TESTS))
    result = _run_user_project(tmp_path)
    output = result.stdout + result.stderr
    # The project's own rootdir, with no configuration file: nothing of this repository's.
    assert f"rootdir: {tmp_path}" in output, output
    assert "configfile" not in output, output
    # pytest-asyncio's header: its default strict mode, as nothing configured it.
    assert re.search(r"asyncio: mode=(Mode\.)?strict", output, flags=re.IGNORECASE), output
    assert result.returncode == 0, output
    assert "7 passed" in output, output


def test_a_project_in_asyncio_auto_mode_runs_the_same_tests(tmp_path: Path) -> None:
    """In a project that sets asyncio_mode = auto, the same tests run as they are."""
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    (tmp_path / "test_connector.py").write_text(textwrap.dedent(USER_TESTS))
    result = _run_user_project(tmp_path)
    output = result.stdout + result.stderr
    assert re.search(r"asyncio: mode=(Mode\.)?auto", output, flags=re.IGNORECASE), output
    assert result.returncode == 0, output
    assert "7 passed" in output, output


def test_async_tests_without_the_fixtures_are_left_alone(tmp_path: Path) -> None:
    """The plugin marks only tests that use its fixtures; others are the project's business."""
    (tmp_path / "test_unrelated.py").write_text(UNRELATED_TEST)
    result = _run_user_project(tmp_path)
    output = result.stdout + result.stderr
    # pytest itself refuses it: failed since pytest 9, skipped with a warning before.
    assert re.search(r"\b1 (failed|skipped)\b", output), output


def test_a_users_run_with_warnings_as_errors_passes_with_no_configuration(tmp_path: Path) -> None:
    """`pytest -W error` in a project with no configuration passes: pytest-asyncio's warning
    about its unset fixture loop scope does not appear, and the scope is "function"."""
    (tmp_path / "test_connector.py").write_text(textwrap.dedent(USER_TESTS))
    result = _run_user_project(tmp_path, "-W", "error")
    output = result.stdout + result.stderr
    assert "configfile" not in output, output
    assert "asyncio_default_fixture_loop_scope=function" in output, output
    assert "is unset" not in output, output
    assert result.returncode == 0, output
    assert "7 passed" in output, output


def test_a_projects_own_fixture_loop_scope_is_left_alone(tmp_path: Path) -> None:
    """A project that sets asyncio_default_fixture_loop_scope keeps its own value."""
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = module\n")
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    result = _run_user_project(tmp_path, "-W", "error")
    output = result.stdout + result.stderr
    assert "asyncio_default_fixture_loop_scope=module" in output, output
    assert result.returncode == 0, output
