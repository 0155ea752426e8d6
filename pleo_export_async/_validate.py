"""Validation where values enter the library (rule R14): each error names the field and value."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from enum import StrEnum
from typing import TypeVar

from ._errors import InvalidInput

CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

E = TypeVar("E", bound=StrEnum)


def uuid_string(field: str, value: object) -> str:
    """The canonical lower-case text form of a UUID given as `str` or `uuid.UUID`."""
    if isinstance(value, str):
        # The fast path: nearly every ID arrives already canonical.
        if CANONICAL_UUID.fullmatch(value):
            return value
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise InvalidInput(field, value, "not a UUID") from None
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
