"""What a JobRun is told by the client that made it: how it batches, how far ahead it sends, and
how it treats Pleo's per-item errors. A frozen record, so a JobRun never reads the client."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from ._core._classify import ItemErrorKind


@attrs.frozen
class JobSettings:
    #: Items per PUT (1..100), until a 413 makes one update engine send fewer (R8).
    batch_size: int
    #: Seconds a partial batch from an async source may wait before it goes out (R16).
    flush_after: float | None
    #: Batches one `update()` call keeps in flight; the transport bounds the client's requests.
    max_concurrency: int
    #: Attempts an item gets when Pleo's error for it is retryable (R5).
    item_error_attempts: int
    classify_item_error: Callable[[str], ItemErrorKind]
