"""The checks of values where they enter the library (rule R14): the arguments of its public
calls and the fields of the models a caller builds. Each refusal is an `InvalidInput` that names
the field and the value, raised before any request."""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import TypeGuard, TypeVar
from urllib.parse import urlsplit

from ._errors import InvalidInput

#: An ASCII string's bytes mapped to what they are: "x" a lower-case hex digit, "-" a hyphen, "?"
#: anything else. Translating with it and comparing to the canonical UUID's shape is one C call
#: each, where the equivalent regular expression costs two and a half times as much (80 against
#: 200 ns here), and every item's ID goes through it.
UUID_CHARACTER_KINDS = bytes(
    ord("x") if chr(byte) in "0123456789abcdef" else ord("-") if byte == ord("-") else ord("?")
    for byte in range(256)
)
CANONICAL_UUID_SHAPE = b"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
#: The other spellings of a UUID taken and made canonical: any case, in braces, as a URN, or as
#: 32 hex digits without hyphens.
_UUID_SPELLING = re.compile(
    r"(?:urn:uuid:)?(\{)?[0-9a-f]{8}(-?)[0-9a-f]{4}\2[0-9a-f]{4}\2[0-9a-f]{4}\2[0-9a-f]{12}(?(1)\})",
    re.ASCII | re.IGNORECASE,
)
#: The shape nearly every external URL has: http(s), a host name of letters, digits, dots and
#: hyphens, perhaps a port (0 to 65535), then printable ASCII. Whatever matches, `http_url`
#: would accept; it is known good without parsing, which costs ten times the whole ItemUpdate.
PLAIN_HTTP_URL = re.compile(
    r"https?://[A-Za-z0-9.-]+"
    r"(?::(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
    r"(?:[/?#][!-~]*)?"
)
_HTTP_SCHEMES = ("http", "https")

E = TypeVar("E", bound=StrEnum)
L = TypeVar("L")


def is_int(value: object) -> TypeGuard[int]:
    """An int, and not a bool (True is an int to Python, never a count to a caller)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """An int or a float, and not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def whole_number(field: str, value: object, *, low: int, high: int | None = None) -> int:
    """A count given as an int (not a bool) in `low..high`, or of at least `low`."""
    if is_int(value) and low <= value and (high is None or value <= high):
        return value
    if high is None:
        raise InvalidInput(field, value, f"must be an int of at least {low}")
    raise InvalidInput(field, value, f"must be an int in {low}..{high}")


def positive_seconds(
    field: str, value: object, message: str = "must be a positive number of seconds"
) -> float:
    """A duration in seconds: a finite number above 0."""
    if is_number(value) and 0 < value < math.inf:
        return float(value)
    raise InvalidInput(field, value, message)


def flag(field: str, value: object) -> bool:
    """True or False, and nothing that merely looks like one (1, "yes")."""
    if not isinstance(value, bool):
        raise InvalidInput(field, value, "must be True or False")
    return value


def function(field: str, value: L, of: str) -> L:
    """Something to call, such as a handler; `of` says what it is called with."""
    if not callable(value):
        raise InvalidInput(field, value, f"must be a function of {of}")
    return value


def async_function(field: str, value: L, of: str) -> L:
    """Something whose call gives an awaitable, such as an async handler; `of` says what it is
    called with.

    Refused here: what cannot be called, and an async generator function, whose call gives an
    async iterator. What else can be called may give an awaitable without being an async
    function (a lambda around one, say): the caller checks what its calls give."""
    if not callable(value):
        raise InvalidInput(field, value, f"must be an async function of {of} (async def ...)")
    if _gives_async_iterator(value):
        raise InvalidInput(
            field,
            value,
            f"an async generator function: it must be an async function of {of}, which returns"
            " its result instead of yielding it",
        )
    return value


def _gives_async_iterator(value: Callable[..., object]) -> bool:
    while isinstance(value, functools.partial):
        value = value.func
    # An object whose `__call__` is an async generator function is one too.
    return inspect.isasyncgenfunction(value) or inspect.isasyncgenfunction(type(value).__call__)


def ledger(field: str, value: L) -> L:
    """A `Ledger`, or None for the default (checked by its shape: any store with `open_job`)."""
    if value is not None and not callable(getattr(value, "open_job", None)):
        raise InvalidInput(field, value, "must be a Ledger (MemoryLedger, SqliteLedger...)")
    return value


def is_canonical_uuid(value: str) -> bool:
    """`value` is a UUID's canonical text: 36 characters, lower-case hex digits with hyphens at
    8, 13, 18 and 23 (a `str` subclass is judged by its characters, not its own methods)."""
    return str.isascii(value) and str.encode(value).translate(UUID_CHARACTER_KINDS) == (
        CANONICAL_UUID_SHAPE
    )


def uuid_string(field: str, value: object) -> str:
    """The canonical lower-case text form of a UUID given as `str` or `uuid.UUID`."""
    if isinstance(value, str):
        # The fast path: nearly every ID arrives already canonical.
        if is_canonical_uuid(value):
            return value
        # uuid.UUID alone would take more than these spellings, and read some of them as another
        # ID: int() skips a leading space and reads an Arabic-Indic digit as a digit.
        if _UUID_SPELLING.fullmatch(value):
            # uuid.UUID strips only a lower-case "urn:uuid:"; what matched is ASCII.
            with contextlib.suppress(ValueError):
                return str(uuid.UUID(value.lower()))
        raise InvalidInput(field, value, "not a UUID")
    if isinstance(value, uuid.UUID):
        return str(value)
    raise InvalidInput(field, value, f"must be a UUID string, not {type(value).__name__}")


def enum_member(field: str, value: object, enum: type[E]) -> E:
    """`value` as a member of `enum`, accepting the member or its string value."""
    if isinstance(value, enum):
        return value
    if isinstance(value, str):
        try:
            return enum(value)
        except ValueError:
            pass
    allowed = ", ".join(member.value for member in enum)
    raise InvalidInput(field, value, f"not {_a(enum.__name__)}; expected one of: {allowed}")


def _a(noun: str) -> str:
    """`noun` with its indefinite article: "an ItemStatus", "a JobStatus"."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def aware_datetime(field: str, value: object) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidInput(field, value, f"must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(field, value, "datetime must be timezone-aware")
    return value


def optional_text(field: str, value: object) -> str | None:
    """None, or a string with something in it: an empty (or blank) text is refused.

    For the texts a person reads (a failure reason); an ID takes any string."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(field, value, f"must be a string, not {type(value).__name__}")
    if not value.strip():
        raise InvalidInput(field, value, "must not be empty or blank; leave it out (None) instead")
    return value


def http_url(field: str, value: object) -> str:
    """An absolute http or https URL: a string whose scheme is http or https, with a host, and
    with no spaces or control characters (RFC 3986 has none; percent-encode them)."""
    if type(value) is str and PLAIN_HTTP_URL.fullmatch(value):
        return value
    if not isinstance(value, str):
        raise InvalidInput(field, value, f"must be a string, not {type(value).__name__}")
    problem = http_url_problem(value)
    if problem is not None:
        raise InvalidInput(field, value, problem)
    return value


def http_url_problem(text: str) -> str | None:
    """What keeps `text` from being an absolute http(s) URL, judged by `urllib.parse`; None
    if nothing does."""
    try:
        parts = urlsplit(text)
        host = parts.hostname
        parts.port  # noqa: B018  (reading it checks it: a number in 0..65535)
    except ValueError as error:
        return f"not a URL: {error}"
    if parts.scheme not in _HTTP_SCHEMES:
        return "not an absolute http or https URL (such as https://erp.example.com/entries/1)"
    if not host:
        return "not an absolute http or https URL: it has no host"
    # urlsplit drops some of these without a word; the text sent would still hold them.
    if " " in text or not text.isprintable():
        return "not a URL: it has spaces or control characters (percent-encode them)"
    return None
