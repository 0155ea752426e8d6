"""pytest plugin: the ``fake_pleo`` and ``fake_pleo_factory`` fixtures.

Registered through the ``pytest11`` entry point, so installing the package makes them available.

* ``fake_pleo``: a started ``FakePleo`` for one test. Configure it with the marker
  ``@pytest.mark.fake_pleo(strict=True, seed=3, ...)``, whose keyword arguments go to ``FakePleo``.
* ``fake_pleo_factory``: ``await fake_pleo_factory(**kwargs)`` starts another ``FakePleo``;
  every one it started is closed after the test.

The fixtures are async and need pytest-asyncio. Without it this module still imports, and the
fixtures fail with a message that says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ._server import FakePleo

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - exercised only where pytest-asyncio is absent
    pytest_asyncio = None  # type: ignore[assignment]

FakePleoFactory = Callable[..., Awaitable[FakePleo]]

_MARKER = "fake_pleo"
_NEEDS_PYTEST_ASYNCIO = (
    "the fake_pleo fixtures are async: install pytest-asyncio (pip install pytest-asyncio)"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{_MARKER}(**kwargs): keyword arguments for the FakePleo of `fake_pleo`"
    )


def _marker_kwargs(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker(_MARKER)
    if marker is None:
        return {}
    if marker.args:
        raise TypeError(f"@pytest.mark.{_MARKER} takes keyword arguments only")
    return dict(marker.kwargs)


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def fake_pleo(request: pytest.FixtureRequest) -> AsyncIterator[FakePleo]:
        """A started FakePleo, closed after the test; configured by @pytest.mark.fake_pleo."""
        async with FakePleo(**_marker_kwargs(request)) as fake:
            yield fake

    @pytest_asyncio.fixture
    async def fake_pleo_factory() -> AsyncIterator[FakePleoFactory]:
        """Start more FakePleo servers with ``await fake_pleo_factory(**kwargs)``."""
        started: list[FakePleo] = []

        async def start(**kwargs: Any) -> FakePleo:
            fake = FakePleo(**kwargs)
            await fake.start()
            started.append(fake)
            return fake

        try:
            yield start
        finally:
            for fake in reversed(started):
                await fake.close()

else:  # pragma: no cover - exercised only where pytest-asyncio is absent

    @pytest.fixture(name="fake_pleo")
    def _fake_pleo_without_pytest_asyncio() -> FakePleo:
        pytest.fail(_NEEDS_PYTEST_ASYNCIO, pytrace=False)

    @pytest.fixture(name="fake_pleo_factory")
    def _fake_pleo_factory_without_pytest_asyncio() -> FakePleoFactory:
        pytest.fail(_NEEDS_PYTEST_ASYNCIO, pytrace=False)
