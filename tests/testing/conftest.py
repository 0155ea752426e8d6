"""Fixtures for the fake server's own tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from pleo_export_async.testing import FakePleo
from pleo_export_async.testing import pytest_plugin as fake_pleo_plugin


def pytest_configure(config: pytest.Config) -> None:
    # Installed, the package registers the plugin through its pytest11 entry point; from a plain
    # source checkout it is not, so register it here, once.
    if not config.pluginmanager.is_registered(fake_pleo_plugin):
        config.pluginmanager.register(fake_pleo_plugin, "pleo_export_async")


@pytest.fixture
async def session(fake_pleo: FakePleo) -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp session to `fake_pleo`, authenticated with its API key."""
    async with aiohttp.ClientSession(fake_pleo.base_url, headers=fake_pleo.auth_headers()) as s:
        yield s
