"""What to do with an HTTP answer or a per-item error (rules R5, R6, R7). Pure functions, no I/O."""

from __future__ import annotations

import email.utils
import enum
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from pleo_export_async._enums import ItemUpdateErrorType


class Disposition(enum.Enum):
    SUCCESS = "success"
    RETRY = "retry"  # transient: back off and send again
    REFRESH_CREDENTIAL = "refresh_credential"  # 401: refresh once, then send again
    FAIL = "fail"  # final: map to an exception (or handle per endpoint: 404, 413, 422)


RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


def classify_status(status: int) -> Disposition:
    if 200 <= status < 300:
        return Disposition.SUCCESS
    if status in RETRYABLE_STATUSES:
        return Disposition.RETRY
    if status == 401:
        return Disposition.REFRESH_CREDENTIAL
    return Disposition.FAIL


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """The pause a `Retry-After` header asks for, in seconds; None when absent or unreadable.

    Both forms are read: delay-seconds (`120`) and an HTTP date (`Wed, 21 Oct 2026 07:28:00 GMT`).
    """
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        # float() also reads "inf" and "nan", which are no delay-seconds.
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class ItemErrorKind(enum.Enum):
    TRANSIENT = "transient"  # send the item again, within the retry budget
    PERMANENT = "permanent"  # reject it


#: Per-item error types Pleo may clear on a later attempt; every other type is permanent (R5).
DEFAULT_TRANSIENT_ITEM_ERRORS = frozenset(
    {
        ItemUpdateErrorType.EXPORT_ENTRY_STATUS_UPDATE_FAILED.value,
        ItemUpdateErrorType.ACCOUNTING_ENTRY_UPDATE_FAILED.value,
    }
)

#: A user's override: a mapping from error type (any case) to kind, or a function of the type
#: that returns a kind, or None to fall back to the default.
ItemErrorClassifier = Mapping[str, ItemErrorKind] | Callable[[str], ItemErrorKind | None] | None


def make_item_error_classifier(
    override: ItemErrorClassifier = None,
) -> Callable[[str], ItemErrorKind]:
    """A function telling whether a per-item error in a 200 PUT response is worth another attempt.

    Types are compared case-insensitively (Pleo's docs spell them both ways); unknown types are
    permanent. `override` is consulted first; where it has no answer, the default applies.
    """
    if override is None:
        lookup: Callable[[str], ItemErrorKind | None] = lambda _: None  # noqa: E731
    elif callable(override):
        lookup = override
    else:
        by_type = {key.upper(): kind for key, kind in override.items()}
        lookup = by_type.get

    def classify(error_type: str) -> ItemErrorKind:
        normalized = error_type.upper()
        chosen = lookup(normalized)
        if chosen is not None:
            return chosen
        if normalized in DEFAULT_TRANSIENT_ITEM_ERRORS:
            return ItemErrorKind.TRANSIENT
        return ItemErrorKind.PERMANENT

    return classify
