"""Shared fixtures: a fake Pleo server on loopback and clients pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from pleo_export_async.testing import FakePleo, instant_retries


@pytest.fixture
def instant() -> Iterator[None]:
    """Backoff waits are zero inside the test; Retry-After pauses still hold."""
    with instant_retries():
        yield


@pytest.fixture
async def fake() -> AsyncIterator[FakePleo]:
    async with FakePleo(seed=7) as server:
        yield server
