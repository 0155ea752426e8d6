"""The one converter between wire JSON and the models (the Codec layer, docs/architecture.md).

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

import functools
import json
import os
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from types import NoneType, UnionType
from typing import Any, Literal, NamedTuple, TypeVar, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._errors import UnexpectedResponse
from ._models import CursorPageInfo, ItemUpdate, ItemUpdateError

T = TypeVar("T")

WIRE_NAME = "pleo_export_async.wire_name"
#: Field metadata key: a `(value, type) -> value` hook that replaces the type's structure hook.
STRUCTURE_HOOK = "pleo_export_async.structure_hook"


def format_datetime(value: datetime) -> str:
    """RFC 3339 in UTC with whole seconds, as Pleo documents: `2023-11-07T05:31:56Z`."""
    # isoformat, not strftime: strftime does not zero-pad years before 1000.
    return value.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def stdlib_json_requested() -> bool:
    """`PLEO_EXPORT_ASYNC_JSON=stdlib`: the `speed` extra's libraries are left unused, as if
    they were not installed (how the tests run the library, and the fake, without them)."""
    return os.environ.get("PLEO_EXPORT_ASYNC_JSON", "").lower() == "stdlib"


try:
    if stdlib_json_requested():
        raise ImportError("stdlib JSON requested")
    import orjson

    # orjson writes a UTC datetime as Pleo documents it (`...:56Z`, whole seconds) in C.
    _ORJSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_OMIT_MICROSECONDS

    def dumps(value: Any) -> bytes:
        """Compact UTF-8 JSON bytes."""
        encoded: bytes = orjson.dumps(value, option=_ORJSON_OPTIONS)
        return encoded

    def wire_datetime(value: datetime) -> datetime | str:
        """A datetime as `dumps` writes it right: in UTC, for orjson to format."""
        return value if value.tzinfo is UTC else value.astimezone(UTC)

    loads: Callable[[bytes | str], Any] = orjson.loads
    JSON_LIBRARY = "orjson"
except ImportError:
    _encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

    def dumps(value: Any) -> bytes:
        """Compact UTF-8 JSON bytes."""
        return _encoder.encode(value).encode()

    wire_datetime = format_datetime
    loads = json.loads
    JSON_LIBRARY = "json"


def camel_case(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


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


def _lenient_optional_text(value: object, _: object) -> str | None:
    return value if value is None or type(value) is str else _lenient_text(value, str)


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


def _optional_member(type_: Any) -> Any:
    """`X` of `X | None` (or `Optional[X]`); None for any other type."""
    if get_origin(type_) not in (Union, UnionType):
        return None
    members = get_args(type_)
    if len(members) != 2 or NoneType not in members:
        return None
    return members[0] if members[1] is NoneType else members[1]


def _optional_structure_hook(converter: cattrs.Converter, type_: Any) -> Any:
    """The hook of `X | None`, with X's hook looked up once (on first use, for a model that
    refers to itself). cattrs' own looks it up for every value: the export items' profile had
    that lookup at a third of the time structuring takes, which is most of what a whole job's
    CPU is."""
    member = _optional_member(type_)
    if member is str:  # the commonest, with the hook registered for str inline
        return _lenient_optional_text
    member_hook: Callable[[Any, Any], Any] | None = None

    def structure(value: Any, _: Any) -> Any:
        nonlocal member_hook
        if value is None:
            return None
        if member_hook is None:
            member_hook = converter.get_structure_hook(member)
        return member_hook(value, member)

    return structure


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter()
    converter.register_structure_hook_factory(
        lambda type_: _optional_member(type_) is not None,
        lambda type_: _optional_structure_hook(converter, type_),
    )
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


def _item_update_to_wire(
    update: ItemUpdate, datetime_form: Callable[[datetime], object] = format_datetime
) -> dict[str, Any]:
    """What the generated hook makes of an ItemUpdate, written out: it runs once per item sent,
    and at a third of the cost. `test_codec` checks the two agree on every kind of update.

    `encode_item_updates` passes `wire_datetime`, which may leave the datetime for orjson."""
    wire: dict[str, Any] = {
        "accountingEntryId": update.accounting_entry_id,
        "status": update.status,
    }
    if update.exported_at is not None:
        wire["exportedAt"] = datetime_form(update.exported_at)
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


def read_page(body: bytes) -> tuple[CursorPageInfo, list[Any]]:
    """A CursorPage body, in two parts: its `pagination`, structured, and its `data` as JSON.

    The data is structured apart (`page_item_reader`), so that a reader can ask for the next page
    before the CPU work of this one. Raises `UnexpectedResponse` for a body of another shape."""
    try:
        payload = loads(body)
        if not isinstance(payload, dict):
            raise TypeError(f"expected a JSON object, got {type(payload).__name__}")
        data = payload["data"]
        if not isinstance(data, list):
            raise TypeError(f"data: expected a JSON array, got {type(data).__name__}")
        info = converter.structure(payload.get("pagination", {}), CursorPageInfo)
    except (ValueError, TypeError, KeyError, cattrs.BaseValidationError) as error:
        raise UnexpectedResponse(f"response body is not a valid CursorPage: {error}") from None
    return info, data


def page_item_reader(item_type: type[T]) -> Callable[[Any], T]:
    """Structures one element of a page's `data` (from `read_page`) into `item_type`; raises
    `UnexpectedResponse`. One at a time, so that a consumer gets the first item of a page
    without waiting for the rest."""
    structure = converter.get_structure_hook(item_type)

    def read(element: Any) -> T:
        try:
            return structure(element, item_type)  # type: ignore[no-any-return]
        except (ValueError, TypeError, KeyError, cattrs.BaseValidationError) as error:
            raise UnexpectedResponse(f"response body is not a valid CursorPage: {error}") from None

    return read


def encode_item_updates(batch: Sequence[ItemUpdate]) -> bytes:
    """The PUT items body: a bare JSON array of UpdateExportJobItemV3."""
    to_wire = _item_update_to_wire
    # The shape nearly every successful update has is written inline: one call fewer per item.
    return dumps(
        [
            {
                "accountingEntryId": u.accounting_entry_id,
                "status": u.status,
                "externalId": u.external_id,
            }
            if u.exported_at is None
            and u.external_url is None
            and u.failure_reason is None
            and u.failure_reason_type is None
            and u.external_id is not None
            else to_wire(u, wire_datetime)
            for u in batch
        ]
    )


class ItemUpdateAnswer(NamedTuple):
    """What a 200 answer to PUT items says about the request."""

    acknowledged_ids: list[str]  # `data[].accountingEntryId` of this job, as Pleo wrote them
    errors: list[ItemUpdateError]
    other_jobs: int  # items in `data` that name another job: they acknowledge nothing here


def read_item_update_response(body: bytes, job_id: str) -> ItemUpdateAnswer:
    """Read a 200 PUT response: the acknowledged IDs (as Pleo wrote them; the tracker matches
    them to ours regardless of case) and the entries of `errors`.

    Entries without a usable accountingEntryId, and items of another job, acknowledge nothing.
    Raises ValueError for a body that is not a JSON object.
    """
    if typed_reading:
        typed = _read_typed_answer(body, job_id)
        if typed is not None:
            return typed
    payload = loads(body)
    if not isinstance(payload, dict):
        raise ValueError(f"expected a JSON object, got {type(payload).__name__}")
    data = payload.get("data")
    items = [
        (entry_id, item.get("exportJobId"))
        for item in (data if isinstance(data, list) else ())
        if type(item) is dict and type(entry_id := item.get("accountingEntryId")) is str
    ]
    acknowledged = [
        entry_id
        for entry_id, item_job in items
        if item_job is None or (isinstance(item_job, str) and item_job.lower() == job_id)
    ]
    errors: list[ItemUpdateError] = []
    raw_errors = payload.get("errors")
    for error in raw_errors if isinstance(raw_errors, list) else ():
        if isinstance(error, dict) and isinstance(error.get("accountingEntryId"), str):
            errors.append(_structure_update_error(error, ItemUpdateError))
    return ItemUpdateAnswer(acknowledged, errors, len(items) - len(acknowledged))


def _read_typed_answer(body: bytes, job_id: str) -> ItemUpdateAnswer | None:
    """The msgspec reading (the `speed` extra); None for a shape it will not take, such as an
    item of another job: the lenient reading then sorts that out."""
    try:
        answer = _typed_decoder(job_id).decode(body)
    except msgspec.ValidationError:
        return None
    errors = [
        ItemUpdateError(error.accountingEntryId.lower(), error.type or "", error.message or "")
        for error in answer.errors
    ]
    return ItemUpdateAnswer([item.accountingEntryId for item in answer.data], errors, 0)


try:
    if stdlib_json_requested():
        raise ImportError("stdlib JSON requested")
    import msgspec
except ImportError:
    #: Whether PUT answers are read by msgspec (the `speed` extra) before the lenient way.
    typed_reading = False
else:
    # Typed to just what reconciliation reads: faster than building every echoed item (the
    # `speed` extra). Unknown fields are skipped. The job's ID is part of the type, so msgspec
    # checks every item's exportJobId in C; a decoder is made per job and a few are kept.

    class _AnsweredError(msgspec.Struct, gc=False):
        accountingEntryId: str
        type: str | None = ""
        message: str | None = ""

    typed_reading = True

    @functools.lru_cache(maxsize=32)
    def _typed_decoder(job_id: str) -> msgspec.json.Decoder[Any]:
        item = msgspec.defstruct(
            "AnsweredItem",
            [("accountingEntryId", str), ("exportJobId", Literal[job_id] | None, None)],
            gc=False,
        )
        answer = msgspec.defstruct(
            "Answer",
            [
                ("data", list[item], msgspec.field(default_factory=list)),  # type: ignore[valid-type]
                ("errors", list[_AnsweredError], msgspec.field(default_factory=list)),
            ],
        )
        return msgspec.json.Decoder(answer)
