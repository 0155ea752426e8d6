"""The one converter between wire JSON and the models (layer 2).

* camelCase on the wire, snake_case in Python; a field can name its wire key with
  `attrs.field(metadata={WIRE_NAME: "_links"})`.
* Datetimes: sent as RFC 3339 `YYYY-MM-DDTHH:MM:SSZ` in UTC; received with optional fractional
  seconds and any offset (a bare date or a naive time is read as UTC).
* Fields that are None (or equal to their default) are left out of what is sent.
* The enums are `str` enums: cattrs passes them through and both JSON libraries write their value.
* JSON text goes through orjson when it is installed (the `speed` extra), else the stdlib.

The PUT response is on the hot path: `read_item_update_response` reads only the acknowledged IDs
from `data` and structures just the (rare) `errors`, instead of building a model per echoed item.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar, get_origin

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._errors import UnexpectedResponse
from ._models import ItemUpdate, ItemUpdateError

T = TypeVar("T")

WIRE_NAME = "pleo_export_async.wire_name"
#: Field metadata key: a `(value, type) -> value` hook that replaces the type's structure hook.
STRUCTURE_HOOK = "pleo_export_async.structure_hook"

try:
    if os.environ.get("PLEO_EXPORT_ASYNC_JSON", "").lower() == "stdlib":
        raise ImportError("stdlib JSON requested")
    import orjson

    def dumps(value: Any) -> bytes:
        """Compact UTF-8 JSON bytes."""
        encoded: bytes = orjson.dumps(value)  # typed even where orjson's stubs are absent
        return encoded

    loads: Callable[[bytes | str], Any] = orjson.loads
    JSON_LIBRARY = "orjson"
except ImportError:
    _encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

    def dumps(value: Any) -> bytes:
        """Compact UTF-8 JSON bytes."""
        return _encoder.encode(value).encode()

    loads = json.loads
    JSON_LIBRARY = "json"


def camel_case(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def format_datetime(value: datetime) -> str:
    """RFC 3339 in UTC with whole seconds, as Pleo documents: `2023-11-07T05:31:56Z`."""
    # isoformat, not strftime: strftime does not zero-pad years before 1000.
    return value.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def parse_datetime(value: object, _: object = None) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise ValueError(f"expected an RFC 3339 date-time string, got {value!r}")
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _lenient_text(value: object, _: object) -> str:
    if isinstance(value, str):
        return value
    return "" if value is None else str(value)


def _is_attrs_class(type_: Any) -> bool:
    return attrs.has(get_origin(type_) or type_)


def _wire_overrides(cls: Any) -> dict[str, Any]:
    origin = get_origin(cls) or cls
    return {
        field.name: override(
            rename=field.metadata.get(WIRE_NAME) or camel_case(field.name),
            struct_hook=field.metadata.get(STRUCTURE_HOOK),
            # Only optional fields are left out when unset; a required field with a default
            # (expiresIn 3600, an empty `data`) is still written.
            omit_if_default=None if field.default is None else False,
        )
        for field in attrs.fields(origin)
    }


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter()
    # Lenient reading: a null where the spec promises a string becomes "", never the text "None".
    converter.register_structure_hook(str, _lenient_text)
    # StrEnum comes before str in a str enum's MRO, so enums still become their members.
    converter.register_structure_hook(StrEnum, lambda value, enum_type: enum_type(value))
    converter.register_unstructure_hook(datetime, format_datetime)
    converter.register_structure_hook(datetime, parse_datetime)
    converter.register_unstructure_hook(uuid.UUID, str)
    converter.register_structure_hook(uuid.UUID, lambda value, _: uuid.UUID(str(value)))
    converter.register_unstructure_hook_factory(
        _is_attrs_class,
        lambda cls: make_dict_unstructure_fn(
            cls, converter, _cattrs_omit_if_default=True, **_wire_overrides(cls)
        ),
    )
    converter.register_structure_hook_factory(
        _is_attrs_class,
        lambda cls: make_dict_structure_fn(cls, converter, **_wire_overrides(cls)),
    )
    return converter


def _item_update_to_wire(update: ItemUpdate) -> dict[str, Any]:
    """What the generated hook makes of an ItemUpdate, written out: it runs once per item sent,
    and at a third of the cost. `test_codec` checks the two agree on every kind of update."""
    wire: dict[str, Any] = {
        "accountingEntryId": update.accounting_entry_id,
        "status": update.status,
    }
    if update.exported_at is not None:
        wire["exportedAt"] = format_datetime(update.exported_at)
    if update.external_id is not None:
        wire["externalId"] = update.external_id
    if update.external_url is not None:
        wire["externalUrl"] = update.external_url
    if update.failure_reason is not None:
        wire["failureReason"] = update.failure_reason
    if update.failure_reason_type is not None:
        wire["failureReasonType"] = update.failure_reason_type
    return wire


converter = _make_converter()
#: The hook cattrs generates for ItemUpdate, kept to check `_item_update_to_wire` against.
generated_item_update_hook: Callable[[ItemUpdate], dict[str, Any]] = converter.get_unstructure_hook(
    ItemUpdate
)
converter.register_unstructure_hook(ItemUpdate, _item_update_to_wire)
_structure_update_error = converter.get_structure_hook(ItemUpdateError)


def to_wire(value: Any) -> Any:
    """The JSON-ready form of a model (dicts, lists, strings, numbers)."""
    return converter.unstructure(value)


def from_wire(data: Any, cls: type[T]) -> T:
    """Structure JSON-ready data into `cls`; raises cattrs' errors on a shape mismatch."""
    return converter.structure(data, cls)


def encode(value: Any) -> bytes:
    return dumps(converter.unstructure(value))


def decode(body: bytes, cls: type[T]) -> T:
    """Structure a response body; a body of another shape raises `UnexpectedResponse`."""
    try:
        return converter.structure(loads(body), cls)
    except (ValueError, TypeError, KeyError, cattrs.BaseValidationError) as error:
        name = getattr(cls, "__name__", str(cls))
        raise UnexpectedResponse(f"response body is not a valid {name}: {error}") from None


def encode_item_updates(batch: Sequence[ItemUpdate]) -> bytes:
    """The PUT items body: a bare JSON array of UpdateExportJobItemV3."""
    unstructure = _item_update_to_wire
    return dumps([unstructure(update) for update in batch])


def read_item_update_response(body: bytes) -> tuple[list[str], list[ItemUpdateError]]:
    """The accountingEntryIds in `data` (as Pleo wrote them; the tracker matches them to ours
    regardless of case) and the entries of `errors` of a 200 PUT response.

    Entries without a usable accountingEntryId are dropped: they cannot acknowledge anything.
    """
    payload = loads(body)
    if not isinstance(payload, dict):
        raise ValueError(f"expected a JSON object, got {type(payload).__name__}")
    acknowledged = [
        entry_id
        for item in payload.get("data") or ()
        if type(item) is dict and type(entry_id := item.get("accountingEntryId")) is str
    ]
    errors: list[ItemUpdateError] = []
    for error in payload.get("errors") or ():
        if isinstance(error, dict) and isinstance(error.get("accountingEntryId"), str):
            errors.append(_structure_update_error(error, ItemUpdateError))
    return acknowledged, errors
