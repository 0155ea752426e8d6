"""RetryPolicy (rule R6): validation, attempt and time bounds, full-jitter waits, instant mode."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from pleo_export_async._errors import InvalidInput, PleoExportError
from pleo_export_async._retry import RetryPolicy, instant_retries

FIELDS = ["max_attempts", "initial_delay", "max_delay", "max_elapsed"]


class Flaky(Exception):
    """The error the wrapped function raises, and the one the policy retries."""


class Other(Exception):
    """An error the policy does not retry."""


class Recorder:
    """An always-failing coroutine function and the on_backoff details it caused."""

    def __init__(self, error: Exception | None = None, succeed_after: int | None = None) -> None:
        self.calls = 0
        self.backoffs: list[dict[str, Any]] = []
        self.error = error or Flaky("still failing")
        self.succeed_after = succeed_after
        self.sleep = 0.0

    async def target(self) -> str:
        self.calls += 1
        if self.sleep:
            await asyncio.sleep(self.sleep)
        if self.succeed_after is not None and self.calls > self.succeed_after:
            return "done"
        raise self.error

    def on_backoff(self, details: Any) -> None:
        self.backoffs.append(dict(details))

    def waits(self) -> list[float]:
        return [float(details["wait"]) for details in self.backoffs]


def wrap(policy: RetryPolicy, recorder: Recorder) -> Any:
    return policy.retrying(Flaky, recorder.on_backoff)(recorder.target)


# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", [0, -1, -0.5])
def test_non_positive_value_is_refused(field: str, value: float) -> None:
    """A zero or negative bound raises InvalidInput naming the field and the value."""
    kwargs: dict[str, Any] = {field: value}
    with pytest.raises(InvalidInput) as caught:
        RetryPolicy(**kwargs)
    assert isinstance(caught.value, PleoExportError)
    assert caught.value.field == field
    assert caught.value.value == value
    assert field in str(caught.value)


def test_defaults_and_positive_values_are_accepted() -> None:
    """The defaults are valid, and small positive values are accepted as given."""
    assert RetryPolicy() == RetryPolicy(8, 0.5, 30.0, 300.0)
    policy = RetryPolicy(max_attempts=1, initial_delay=0.001, max_delay=0.001, max_elapsed=0.01)
    assert (policy.max_attempts, policy.initial_delay) == (1, 0.001)


@pytest.mark.parametrize("field", FIELDS[1:])
def test_nan_is_refused(field: str) -> None:
    """NaN is not greater than zero, so it is refused like any non-positive value."""
    kwargs: dict[str, Any] = {field: float("nan")}
    with pytest.raises(InvalidInput):
        RetryPolicy(**kwargs)


# -- attempts --------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_attempts", [1, 2, 5])
async def test_always_failing_is_called_max_attempts_times(max_attempts: int) -> None:
    """An always-failing call is tried max_attempts times, then its error propagates."""
    recorder = Recorder()
    policy = RetryPolicy(max_attempts=max_attempts, initial_delay=0.001, max_delay=0.002)
    with pytest.raises(Flaky, match="still failing"):
        await wrap(policy, recorder)()
    assert recorder.calls == max_attempts
    assert len(recorder.backoffs) == max_attempts - 1
    assert [details["tries"] for details in recorder.backoffs] == list(range(1, max_attempts))
    assert all("wait" in details for details in recorder.backoffs)


async def test_success_after_failures_returns_the_value() -> None:
    """A call that fails twice then succeeds returns its value after three calls."""
    recorder = Recorder(succeed_after=2)
    with instant_retries():
        result = await wrap(RetryPolicy(max_attempts=5), recorder)()
    assert result == "done"
    assert recorder.calls == 3
    assert len(recorder.backoffs) == 2


async def test_other_errors_are_not_retried() -> None:
    """An error other than `retry_on` propagates after a single call, with no backoff."""
    recorder = Recorder(error=Other("final"))
    with instant_retries(), pytest.raises(Other):
        await wrap(RetryPolicy(max_attempts=5), recorder)()
    assert recorder.calls == 1
    assert recorder.backoffs == []


# -- waits -----------------------------------------------------------------------------------------


async def test_instant_retries_makes_every_wait_zero() -> None:
    """Under instant_retries() every backoff wait is 0, and every attempt still happens."""
    recorder = Recorder()
    policy = RetryPolicy(max_attempts=6, initial_delay=10.0, max_delay=60.0)
    started = time.monotonic()
    with instant_retries(), pytest.raises(Flaky):
        await wrap(policy, recorder)()
    assert time.monotonic() - started < 5.0
    assert recorder.calls == 6
    assert recorder.waits() == [0.0] * 5


async def test_instant_retries_nests_and_restores() -> None:
    """Leaving nested instant_retries() blocks restores jittered waits afterwards."""
    policy = RetryPolicy(max_attempts=4, initial_delay=0.001, max_delay=0.001)
    with instant_retries():
        with instant_retries():
            pass
        inner = Recorder()
        with pytest.raises(Flaky):
            await wrap(policy, inner)()
    assert inner.waits() == [0.0] * 3
    outer = Recorder()
    with pytest.raises(Flaky):
        await wrap(policy, outer)()
    assert outer.waits() != [0.0] * 3


async def test_waits_are_full_jitter_within_the_exponential_cap() -> None:
    """Without instant mode, wait n lies in [0, min(max_delay, initial_delay * 2**(n-1))]."""
    policy = RetryPolicy(max_attempts=7, initial_delay=0.001, max_delay=0.004, max_elapsed=60.0)
    waits: list[tuple[int, float]] = []
    for _ in range(5):
        recorder = Recorder()
        with pytest.raises(Flaky):
            await wrap(policy, recorder)()
        assert recorder.calls == 7
        waits += [(int(d["tries"]), float(d["wait"])) for d in recorder.backoffs]
    for tries, wait in waits:
        assert 0.0 <= wait <= min(0.004, 0.001 * 2 ** (tries - 1)), (tries, wait)
    # Full jitter: random in the range, not pinned to its upper bound.
    assert len({wait for _, wait in waits}) > 1
    assert any(wait < min(0.004, 0.001 * 2 ** (tries - 1)) for tries, wait in waits)


async def test_max_elapsed_stops_before_max_attempts() -> None:
    """Once max_elapsed seconds have passed, the error propagates even with attempts left."""
    recorder = Recorder()
    recorder.sleep = 0.01
    policy = RetryPolicy(max_attempts=1000, initial_delay=0.001, max_delay=0.002, max_elapsed=0.1)
    started = time.monotonic()
    with pytest.raises(Flaky):
        await wrap(policy, recorder)()
    elapsed = time.monotonic() - started
    assert 2 <= recorder.calls < 1000
    assert elapsed >= 0.1
    assert elapsed < 5.0
    # No wait runs past the budget.
    assert all(d["elapsed"] + d["wait"] <= 0.1 + 1e-6 for d in recorder.backoffs)


async def test_max_elapsed_also_bounds_instant_retries() -> None:
    """The time budget holds in instant mode too: slow attempts stop before max_attempts."""
    recorder = Recorder()
    recorder.sleep = 0.01
    policy = RetryPolicy(max_attempts=1000, max_elapsed=0.05)
    with instant_retries(), pytest.raises(Flaky):
        await wrap(policy, recorder)()
    assert 2 <= recorder.calls < 1000
