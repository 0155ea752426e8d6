"""The pytest plugin's fixtures and marker."""

from __future__ import annotations

import ast
import asyncio
import os
import sys
from pathlib import Path

import pytest

from pleo_export_async.testing import FakePleo
from pleo_export_async.testing.pytest_plugin import FakePleoFactory

from .helpers import call, session_for

REPO_ROOT = Path(__file__).resolve().parents[2]


async def test_fake_pleo_fixture_is_started(fake_pleo: FakePleo) -> None:
    """`fake_pleo` is a started server answering on its base_url."""
    async with session_for(fake_pleo) as session:
        assert (await call(session, "GET", "/v3/export-jobs"))[0] == 200
    assert fake_pleo.strict is False


@pytest.mark.fake_pleo(strict=True, seed=9, api_key="marker-key")
async def test_marker_configures_fake_pleo(fake_pleo: FakePleo) -> None:
    """@pytest.mark.fake_pleo(...) passes its keyword arguments to FakePleo."""
    assert (fake_pleo.strict, fake_pleo.seed, fake_pleo.api_key) == (True, 9, "marker-key")


async def test_factory_starts_independent_servers(fake_pleo_factory: FakePleoFactory) -> None:
    """`fake_pleo_factory` starts separate servers with their own configuration."""
    first = await fake_pleo_factory(seed=1)
    second = await fake_pleo_factory(seed=2, strict=True)
    assert first.base_url != second.base_url
    assert (first.strict, second.strict) == (False, True)
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


def test_fake_imports_nothing_from_the_client() -> None:
    """The fake's modules import only each other, aiohttp, attrs and the standard library."""
    package = REPO_ROOT / "pleo_export_async" / "testing"
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.level in (0, 1), f"{path.name} imports from outside testing/"
                module = node.module or ""
                names = tuple(alias.name for alias in node.names)
                if (path.name, module, names) in CLIENT_REEXPORTS:
                    continue
                assert node.level == 1 or not module.startswith("pleo_export_async"), path.name
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("pleo_export_async"), path.name
