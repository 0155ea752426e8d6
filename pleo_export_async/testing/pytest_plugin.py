"""pytest plugin: the `fake_pleo` and `fake_pleo_factory` fixtures.

Installing the package registers this plugin (through the `pytest11` entry point); the
`testing` extra (`pip install 'pleo-export-async[testing]'`) brings pytest and pytest-asyncio,
which is all it needs. An async test that asks for one of its fixtures runs as it is, with no
`@pytest.mark.asyncio` and no `asyncio_mode` setting:

    from pleo_export_async import ApiKeyAuth, PleoExportClient


    async def test_my_connector_closes_the_job(fake_pleo):
        job = fake_pleo.create_job(items=250)
        async with PleoExportClient(fake_pleo.base_url, auth=ApiKeyAuth(fake_pleo.api_key)) as c:
            ...
        assert fake_pleo.journal.resent_after_ack(job.id) == {}

Fixtures:

* `fake_pleo`: a started `FakePleo` on loopback for one test, closed after it.
* `fake_pleo_factory`: `await fake_pleo_factory(**kwargs)` starts another `FakePleo` with
  those keyword arguments; every one it started is closed after the test.

Options. `@pytest.mark.fake_pleo(**kwargs)` on a test (or a class or module, through
`pytestmark`) passes its keyword arguments to the `FakePleo` of `fake_pleo`. The ones a
connector's tests use most:

* `faults=Faults(...)`: the faults the fake injects (latency, 5xx, 429 with `Retry-After`,
  lost responses, partial acknowledgements, per-item errors), each a `FaultSpec` that fires
  with a probability per request or always at given request numbers. `fake_pleo.faults` can
  also be replaced during the test.
* `strict`: on by default, so a connector's bug fails its tests. The fake refuses what Pleo
  refuses and what Pleo's guidance tells a connector not to do, with Pleo's status and error
  type: item updates on a job not yet started (422 `EXPORT_JOB_STATUS_UNPROCESSABLE`),
  completing a job while items are still pending (422 `INVALID_EXPORT_JOB_STATUS_CHANGE`),
  turning a successful item into a failed one (`EXPORT_ENTRY_STATUS_UPDATE_FAILED` in the
  answer's `errors`); see `FakePleo` for the whole list. `strict=False` is the lenient
  opt-in, for a test that means to exercise what a connector should not do.
* `seed`: makes the fake's IDs, data and probabilistic faults reproducible; the same seed
  gives the same faults on the same request numbers.
* anything else `FakePleo` takes: `api_key`, `page_size_default`, `oauth_clients`,
  `access_token_lifetime`, `max_items_per_update`, ...

For example:

    @pytest.mark.fake_pleo(seed=3, faults=Faults(rate_limit=FaultSpec(at={2})))
    async def test_a_429_is_retried(fake_pleo): ...

How the tests run. Before pytest-asyncio looks at a collected coroutine test, this plugin marks
it `@pytest.mark.asyncio` when it asks, directly or through other fixtures, for `fake_pleo`
or `fake_pleo_factory` and carries no asyncio marker of its own (nor an `anyio` or `trio`
one). Other tests are left alone; in `asyncio_mode = "auto"` nothing changes. The fixtures'
event loop follows pytest-asyncio's settings (one loop per test unless configured otherwise).
When the project leaves pytest-asyncio's `asyncio_default_fixture_loop_scope` unset, the
plugin sets it to "function" (pytest-asyncio's coming default), so that pytest-asyncio's
deprecation warning does not fail a run with `-W error`.

Without pytest-asyncio this module still imports, and the fixtures fail with a message that
says what to install.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from typing import Any

import pluggy
import pytest

from ._server import FakePleo

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - exercised only where pytest-asyncio is absent
    pytest_asyncio = None  # type: ignore[assignment]

FakePleoFactory = Callable[..., Awaitable[FakePleo]]

_MARKER = "fake_pleo"
_FIXTURES = frozenset({"fake_pleo", "fake_pleo_factory"})
# A test with one of these markers is run by its own async framework's plugin, not asyncio's.
_OTHER_RUNNERS = ("asyncio", "anyio", "trio")
_NEEDS_PYTEST_ASYNCIO = (
    "the fake_pleo fixtures are async: install pytest-asyncio "
    "(pip install 'pleo-export-async[testing]')"
)


# pytest-asyncio warns on every run until this option is set (a PytestDeprecationWarning, an
# error under `-W error`), and will default it to "function" in a later version.
_LOOP_SCOPE_OPTION = "asyncio_default_fixture_loop_scope"
_LOOP_SCOPE_DEFAULT = "function"


# tryfirst: before pytest-asyncio's own pytest_configure reads the option and warns.
@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{_MARKER}(**kwargs): keyword arguments for the FakePleo of `fake_pleo`"
    )
    _default_the_fixture_loop_scope(config)


def _default_the_fixture_loop_scope(config: pytest.Config) -> None:
    """A project that never configured pytest-asyncio (it came with the `testing` extra) gets
    the fixture loop scope pytest-asyncio is moving to, "function", without the warning; a
    value of the project's own, in its ini file or with `-o`, is left alone."""
    if pytest_asyncio is None:
        return
    try:
        if config.getini(_LOOP_SCOPE_OPTION):
            return
    except ValueError:  # a pytest-asyncio too old to have the option: nothing to quieten
        return
    # pytest has no public way to give an ini option a value; getini() answers from this
    # cache, which pytest 8 and 9 fill on first read. Without it, the warning stays.
    cache = getattr(config, "_inicache", None)
    if isinstance(cache, dict):
        cache[_LOOP_SCOPE_OPTION] = _LOOP_SCOPE_DEFAULT


def _needs_asyncio_marker(item: pytest.Function) -> bool:
    """Whether `item` is a coroutine test that uses our fixtures and has no runner marker."""
    function = item.obj
    if isinstance(function, staticmethod):
        function = function.__func__
    hypothesis = getattr(function, "hypothesis", None)
    inner = getattr(hypothesis, "inner_test", None)
    if not (inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(inner)):
        return False
    if not _FIXTURES.intersection(item.fixturenames):
        return False
    return all(item.get_closest_marker(name) is None for name in _OTHER_RUNNERS)


# pytest-asyncio turns a coroutine test into one it runs while the test is collected, in a
# wrapper of this hook, and only if the test carries its marker by then (in its default strict
# mode). `trylast` makes this wrapper the innermost one, so its code after the `yield` runs
# before pytest-asyncio's: the marker is there when pytest-asyncio looks. Marking later, in
# pytest_collection_modifyitems, would be too late: the item would stay a plain function that
# pytest refuses to run ("async def functions are not natively supported").
@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> Generator[None, pluggy.Result[Any], None]:
    outcome = yield
    if pytest_asyncio is None:
        return
    try:
        result = outcome.get_result()
    except BaseException:
        return  # pytest reports the collection error itself
    items = result if isinstance(result, list) else [result]
    for item in items:
        if isinstance(item, pytest.Function) and _needs_asyncio_marker(item):
            item.add_marker(pytest.mark.asyncio)


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
        """A started `FakePleo` on loopback, closed after the test.

        An async test that asks for it runs with no `@pytest.mark.asyncio` and no
        `asyncio_mode`. `@pytest.mark.fake_pleo(**kwargs)` on the test, its class or its
        module passes keyword arguments to `FakePleo`:

        * `faults=Faults(...)`: latency, 5xx, 429 with `Retry-After`, lost or half-sent
          answers, partial acknowledgements, per-item errors; each a `FaultSpec` that fires with
          a probability per request or at given request numbers (`journal` `seq` values).
          Assigning `fake_pleo.faults` changes them during the test.
        * `strict` (default True): refuse, with Pleo's status and error type, what Pleo
          refuses and what its guidance tells a connector not to do: item updates before
          `started`, completing with items still pending, rewriting a successful item.
          `strict=False` accepts those (last write wins; pending items become abandoned).
        * `seed` (default 0): the fake's IDs, export item data and probabilistic faults are
          the same for the same seed.
        * anything else `FakePleo` takes: `api_key`, `clock`, `page_size_default`,
          `oauth_clients`, `access_token_lifetime`, `max_items_per_update`, ...

        Example: `@pytest.mark.fake_pleo(seed=3, faults=Faults(rate_limit=FaultSpec(at={2})))`.
        """
        async with FakePleo(**_marker_kwargs(request)) as fake:
            yield fake

    @pytest_asyncio.fixture
    async def fake_pleo_factory() -> AsyncIterator[FakePleoFactory]:
        """Start more `FakePleo` servers with `await fake_pleo_factory(**kwargs)`.

        Each takes `FakePleo`'s keyword arguments (`faults`, `strict`, `seed`, ... as for
        `fake_pleo`; strict unless `strict=False`); all are closed after the test, last
        first.
        """
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
