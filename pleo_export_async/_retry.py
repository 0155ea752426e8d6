"""RetryPolicy: how transient failures are retried (rule R6).

The waiting itself is done by the `backoff` package (`backoff.on_exception` with the exponential
generator and full jitter); nothing of `backoff` appears in the public API.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Generator, Iterator
from typing import Any, ParamSpec, TypeVar, cast

import attrs
import backoff

from ._errors import InvalidInput

T = TypeVar("T")
E = TypeVar("E", bound=Exception)
P = ParamSpec("P")

_instant_retries = False


@contextlib.contextmanager
def instant_retries() -> Iterator[None]:
    """Within this block backoff waits are zero; a `Retry-After` pause from the server still holds.

    Meant for tests, like `stamina`'s testing mode: retries still happen and are still counted.
    """
    global _instant_retries
    previous, _instant_retries = _instant_retries, True
    try:
        yield
    finally:
        _instant_retries = previous


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:  # also refuses NaN
        raise InvalidInput(attribute.name, value, "must be greater than zero")


@attrs.frozen
class RetryPolicy:
    """Full-jitter exponential backoff, bounded by attempts and by elapsed time.

    Attempt n (counting from 1) that fails waits a random time between 0 and
    `min(max_delay, initial_delay * 2 ** (n - 1))` before the next one; the request is given up
    after `max_attempts` attempts or once `max_elapsed` seconds have passed since the first.
    Per-item errors Pleo calls transient are retried within the same `max_attempts`.
    """

    max_attempts: int = attrs.field(default=8, validator=_positive)
    initial_delay: float = attrs.field(default=0.5, validator=_positive)
    max_delay: float = attrs.field(default=30.0, validator=_positive)
    max_elapsed: float = attrs.field(default=300.0, validator=_positive)

    def _wait_generator(
        self, wait_at_most: Callable[[Any], float | None] | None = None
    ) -> Generator[float, Any, None]:
        # backoff sends each failure into this generator: the curve does not depend on it, but
        # a failure may shorten the wait that follows it.
        delays = backoff.expo(base=2, factor=self.initial_delay, max_value=self.max_delay)
        next(delays)  # backoff.expo yields None first, to be primed by its caller.
        failure = yield 0.0  # backoff primes us the same way; this value is never used
        while True:
            delay = next(delays)
            wait = 0.0 if _instant_retries else backoff.full_jitter(delay)
            if wait_at_most is not None and (limit := wait_at_most(failure)) is not None:
                wait = max(0.0, min(wait, limit))
            failure = yield wait

    def retrying(
        self,
        retry_on: type[E],
        on_backoff: Callable[[Any], None],
        *,
        give_up: Callable[[E], bool] | None = None,
        wait_at_most: Callable[[E], float | None] | None = None,
    ) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
        """A decorator that retries a coroutine function while it raises `retry_on`.

        Within the policy's bounds a failure can end its request sooner: `give_up(failure)`
        true stops at once, and `wait_at_most(failure)` caps the wait before the next attempt.
        """
        return backoff.on_exception(
            functools.partial(self._wait_generator, wait_at_most),
            retry_on,
            max_tries=self.max_attempts,
            max_time=self.max_elapsed,
            # backoff hands giveup only what it caught, a `retry_on`.
            giveup=cast("Callable[[Exception], bool]", give_up or _never),
            jitter=None,
            on_backoff=on_backoff,
            logger=None,
        )


def _never(failure: Exception) -> bool:
    return False
