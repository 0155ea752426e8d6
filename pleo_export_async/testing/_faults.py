"""Fault configuration and the seeded decisions of which request gets which fault.

Each decision is a pure function of (seed, fault name, request number[, item index]), not a draw
from a shared random stream, so the same seed gives the same faults on the same request numbers
however concurrent requests interleave.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Sequence
from typing import Any

import attrs


def _frozen_request_numbers(values: Collection[int]) -> frozenset[int]:
    numbers = frozenset(values)
    if any(not isinstance(n, int) or n < 1 for n in numbers):
        raise ValueError(f"request numbers are 1-based positive integers, got {sorted(numbers)}")
    return numbers


def _probability(_instance: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be within [0, 1], got {value}")


def _non_negative(_instance: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value}")


def _latency(_instance: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    low, high = value if isinstance(value, tuple) else (value, value)
    if not 0 <= low <= high:
        raise ValueError(f"latency must be seconds >= 0, or a (low, high) range; got {value!r}")


def _server_error_status(_instance: Any, _attribute: attrs.Attribute[int], value: int) -> None:
    if not 500 <= value <= 599:
        raise ValueError(f"server_error_status must be a 5xx status, got {value}")


@attrs.frozen
class FaultSpec:
    """When a fault fires: with `probability` per request, and always at the request numbers
    in `at` (1-based, the `seq` of the journal; counting every request the fake receives). The
    webhook faults count job-created notifications instead (see `Faults`)."""

    probability: float = attrs.field(default=0.0, validator=_probability)
    at: frozenset[int] = attrs.field(default=frozenset(), converter=_frozen_request_numbers)


@attrs.define
class Faults:
    """The faults the fake injects; assign a new one to `FakePleo.faults` or mutate this one.

    Which requests each applies to:
    * `latency`, `server_error`, `rate_limit`, `slow_response`, `forbidden`: every
      /v3 request.
    * `lost_response`, `dropped_mid_body`, `partial_ack`, `item_error`: PUT
      /v3/export-jobs/{jobId}/items.
    * `lost_event_response`: POST /v3/export-job-events.
    A spec's `at` numbers that land on a request the fault does not apply to are ignored.

    `webhook_dropped` and `webhook_duplicated` count notifications, not requests: the job-created
    notifications, numbered from 1 in the order the fake creates `pending` jobs (through POST
    /v3/export-jobs or `FakePleo.create_job`), whether anyone is subscribed or not. A fault on a
    notification applies to every endpoint it goes to.
    """

    # Seconds added to every /v3 request: fixed, or uniform in (low, high).
    latency: float | tuple[float, float] = attrs.field(default=0.0, validator=_latency)
    # Answer 5xx before doing anything, so nothing is committed.
    server_error: FaultSpec = attrs.field(factory=FaultSpec)
    server_error_status: int = attrs.field(default=503, validator=_server_error_status)
    # Answer 429 TOO_MANY_REQUESTS with Retry-After, before doing anything.
    rate_limit: FaultSpec = attrs.field(factory=FaultSpec)
    retry_after: float = attrs.field(default=1.0, validator=_non_negative)
    retry_after_http_date: bool = False
    # PUT items: commit, then close the connection without answering.
    lost_response: FaultSpec = attrs.field(factory=FaultSpec)
    # PUT items: commit, send the status line, the headers and half the body, then close the
    # connection (the client reads a body shorter than its Content-Length).
    dropped_mid_body: FaultSpec = attrs.field(factory=FaultSpec)
    # PUT items: commit everything, but leave some committed IDs out of `data` (and `errors`).
    partial_ack: FaultSpec = attrs.field(factory=FaultSpec)
    partial_ack_fraction: float = attrs.field(default=0.3, validator=_probability)
    # PUT items, per item: that item is not committed and is reported in `errors`.
    # Its probability is per item; its `at` numbers make every item of those requests fail.
    item_error: FaultSpec = attrs.field(factory=FaultSpec)
    item_error_type: str = "EXPORT_ENTRY_STATUS_UPDATE_FAILED"
    # Any /v3 request with a valid credential: 403 FORBIDDEN, as for a missing scope.
    forbidden: FaultSpec = attrs.field(factory=FaultSpec)
    # POST events: apply the event, then close the connection without answering.
    lost_event_response: FaultSpec = attrs.field(factory=FaultSpec)
    # Any /v3 request: do the work, then wait this long before answering.
    slow_response: FaultSpec = attrs.field(factory=FaultSpec)
    slow_response_delay: float = attrs.field(default=2.0, validator=_non_negative)
    # Job-created notification: never sent.
    webhook_dropped: FaultSpec = attrs.field(factory=FaultSpec)
    # Job-created notification: sent twice, with the same webhook-id, as an at-least-once
    # delivery may (each copy with its own attempts).
    webhook_duplicated: FaultSpec = attrs.field(factory=FaultSpec)


class FaultDecider:
    """Answers "does this fault fire on request N?" reproducibly from a seed."""

    def __init__(self, seed: int) -> None:
        self._seed = seed

    def _uniform(self, *key: object) -> float:
        # A string seed is hashed with SHA-512 by `random`, independent of PYTHONHASHSEED.
        return random.Random(":".join(map(str, (self._seed, *key)))).random()

    def fires(self, name: str, spec: FaultSpec, seq: int) -> bool:
        """Whether the fault `name` fires on request `seq`."""
        if seq in spec.at:
            return True
        return spec.probability > 0 and self._uniform(name, seq) < spec.probability

    def latency(self, latency: float | tuple[float, float], seq: int) -> float:
        """Seconds of latency for request `seq`."""
        if not isinstance(latency, tuple):
            return latency
        low, high = latency
        return low + (high - low) * self._uniform("latency", seq)

    def item_error(self, spec: FaultSpec, seq: int, index: int) -> bool:
        """Whether the item at `index` of PUT request `seq` gets an injected error."""
        if seq in spec.at:
            return True
        return spec.probability > 0 and self._uniform("item_error", seq, index) < spec.probability

    def omitted_from_ack(self, fraction: float, seq: int, committed: Sequence[str]) -> set[str]:
        """Which committed IDs a partial acknowledgement leaves out: at least one, if any."""
        if not committed or fraction <= 0:
            return set()
        count = min(len(committed), max(1, math.ceil(fraction * len(committed))))
        chooser = random.Random(f"{self._seed}:partial_ack:{seq}")
        return set(chooser.sample(list(committed), count))
