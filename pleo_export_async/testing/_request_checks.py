"""Validation of raw request JSON against the Export API v3 request schemas.

Works on parsed JSON (dicts, lists, strings), never on the client's models, so a mistake in the
client's models cannot be mirrored here. Each check returns the first problem as a message that
names the field, e.g. `"[3].failureReasonType: unknown value 'bogus'"`, or None when valid.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from . import _spec

_UUID_PATTERN: Final = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
# RFC 3339 date-time: an explicit offset is required, fractional seconds are optional.
_DATETIME_PATTERN: Final = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$"
)
_MAX_ECHOED_VALUE: Final = 40


class RequestInvalid(Exception):
    """A request failed validation; `message` names the field and the problem."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def single_parameter(query: Mapping[str, list[str]], name: str) -> str | None:
    """A query parameter given at most once: its value, or None when absent."""
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise RequestInvalid(f"{name}: given more than once")
    return values[0]


def is_uuid(value: object) -> bool:
    """Tell whether `value` is a UUID string in the canonical 8-4-4-4-12 form."""
    return isinstance(value, str) and _UUID_PATTERN.match(value) is not None


def parse_datetime(value: str) -> datetime | None:
    """Parse an RFC 3339 date-time with an offset; None when it is not one."""
    match = _DATETIME_PATTERN.match(value)
    if match is None:
        return None
    date_part, time_part, fraction, offset = match.groups()
    # fromisoformat takes at most microseconds, and this Python wants "+00:00" rather than "Z".
    micros = f".{fraction[:6]}" if fraction else ""
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        return datetime.fromisoformat(f"{date_part}T{time_part}{micros}{offset}")
    except ValueError:
        return None


def format_datetime(moment: datetime) -> str:
    """Render a datetime as the fake emits every timestamp: `YYYY-MM-DDTHH:MM:SSZ` in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _shown(value: object) -> str:
    """A short repr of a client-sent value for an error message."""
    text = repr(value)
    return text if len(text) <= _MAX_ECHOED_VALUE else text[: _MAX_ECHOED_VALUE - 3] + "..."


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# One rule per field kind: each takes (path, value) and raises RequestInvalid.
FieldCheck = Callable[[str, Any], None]


def _string(path: str, value: Any) -> None:
    if not isinstance(value, str):
        raise RequestInvalid(f"{path}: expected a string, got {_json_type(value)}")


def _boolean(path: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise RequestInvalid(f"{path}: expected a boolean, got {_json_type(value)}")


def _uuid(path: str, value: Any) -> None:
    _string(path, value)
    if not is_uuid(value):
        raise RequestInvalid(f"{path}: not a UUID: {_shown(value)}")


def _date_time(path: str, value: Any) -> None:
    _string(path, value)
    if parse_datetime(value) is None:
        raise RequestInvalid(
            f"{path}: not an RFC 3339 date-time with an offset "
            f"(e.g. 2024-05-01T12:00:00Z): {_shown(value)}"
        )


def _enum(values: tuple[str, ...]) -> FieldCheck:
    allowed = frozenset(values)

    def check(path: str, value: Any) -> None:
        _string(path, value)
        if value not in allowed:
            raise RequestInvalid(f"{path}: unknown value {_shown(value)}")

    return check


def _uuid_list(path: str, value: Any) -> None:
    if not isinstance(value, list):
        raise RequestInvalid(f"{path}: expected an array, got {_json_type(value)}")
    for index, element in enumerate(value):
        _uuid(f"{path}[{index}]", element)


class _Field:
    """How one field of a request object is checked; `nullable` when the spec says
    `nullable: true`."""

    def __init__(
        self, check: FieldCheck, *, required: bool = False, nullable: bool = False
    ) -> None:
        self.check = check
        self.required = required
        self.nullable = nullable


def _check_object(
    value: Any,
    path: str,
    fields: Mapping[str, _Field],
    *,
    strict: bool,
    hints: Mapping[str, str] | None = None,
) -> None:
    """Check a JSON object field by field. Optional fields may be absent; null only where the
    spec declares the field nullable, or in lenient mode."""
    where = path or "body"
    if not isinstance(value, dict):
        raise RequestInvalid(f"{where}: expected an object, got {_json_type(value)}")
    prefix = f"{path}." if path else ""
    for name, field in fields.items():
        if name not in value:
            if field.required:
                hint = (hints or {}).get(name, "")
                raise RequestInvalid(f"{prefix}{name}: required field missing{hint}")
            continue
        field_value = value[name]
        if field_value is None:
            if field.required:
                raise RequestInvalid(f"{prefix}{name}: required field is null")
            # Lenient mode reads null as absent, as Jackson does for an optional field; strict mode
            # holds the client to the spec, which has no null for this field.
            if strict and not field.nullable:
                raise RequestInvalid(
                    f"{prefix}{name}: null is not allowed (leave the field out instead)"
                )
            continue
        field.check(f"{prefix}{name}", field_value)
    if strict:
        # Lenient mode ignores unknown fields like a default Jackson setup; strict mode
        # catches misspelt field names, which the lenient server would silently drop.
        for name in value:
            if name not in fields:
                raise RequestInvalid(f"{prefix}{name}: unknown field")


# `nullable` copies the OpenAPI document field by field: UpdateExportJobItemV3 and
# CreateExportJobEvent declare no field nullable; CreateExportJob and Options declare all their
# optional ones nullable.
UPDATE_ITEM_FIELDS: Final[Mapping[str, _Field]] = {
    "accountingEntryId": _Field(_uuid, required=True),
    "status": _Field(_enum(_spec.ITEM_STATUSES), required=True),
    "exportedAt": _Field(_date_time),
    "externalId": _Field(_string),
    "externalUrl": _Field(_string),
    "failureReason": _Field(_string),
    "failureReasonType": _Field(_enum(_spec.ITEM_FAILURE_REASON_TYPES)),
}

JOB_EVENT_FIELDS: Final[Mapping[str, _Field]] = {
    "event": _Field(_enum(_spec.JOB_EVENTS), required=True),
    "jobId": _Field(_uuid, required=True),
    "failureReason": _Field(_string),
    "failureReasonType": _Field(_enum(_spec.JOB_FAILURE_REASON_TYPES)),
}

_OPTIONS_FIELDS: Final[Mapping[str, _Field]] = {
    "vendorBasedBookkeeping": _Field(_boolean, nullable=True)
}


def _options(strict: bool) -> FieldCheck:
    def check(path: str, value: Any) -> None:
        _check_object(value, path, _OPTIONS_FIELDS, strict=strict)

    return check


def _create_job_fields(strict: bool) -> Mapping[str, _Field]:
    return {
        "accountingEntryIds": _Field(_uuid_list, required=True),
        "companyId": _Field(_uuid, required=True),
        "employeeId": _Field(_uuid, nullable=True),
        "isInteractive": _Field(_boolean, nullable=True),
        "options": _Field(_options(strict), nullable=True),
    }


def validate_update_items(body: Any, *, strict: bool) -> None:
    """Check a PUT items body: a JSON array of UpdateExportJobItemV3 objects."""
    if not isinstance(body, list):
        raise RequestInvalid(
            f"body: expected a JSON array of UpdateExportJobItemV3, got {_json_type(body)}"
        )
    for index, item in enumerate(body):
        _check_object(item, f"[{index}]", UPDATE_ITEM_FIELDS, strict=strict)


def validate_job_event(body: Any, *, strict: bool) -> None:
    """Check a POST export-job-events body (CreateExportJobEvent)."""
    _check_object(
        body,
        "",
        JOB_EVENT_FIELDS,
        strict=strict,
        # The how-to examples send exportJobId; say what the spec wants instead
        # (docs/pleo-api.md#inconsistencies (row 2)).
        hints={"jobId": " (the field is jobId, not exportJobId)"}
        if isinstance(body, dict) and "exportJobId" in body
        else None,
    )


def validate_create_job(body: Any, *, strict: bool) -> None:
    """Check a POST export-jobs body (CreateExportJob)."""
    _check_object(body, "", _create_job_fields(strict), strict=strict)


def check_uuid_parameter(name: str, value: str) -> None:
    """Check a UUID path or query parameter."""
    _uuid(name, value)


def check_enum_parameter(name: str, value: str, allowed: tuple[str, ...]) -> None:
    """Check an enum query parameter."""
    _enum(allowed)(name, value)
