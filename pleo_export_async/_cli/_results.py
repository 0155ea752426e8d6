"""Reading a file of item results for `pleo-export push`: JSON Lines or CSV, one item per line,
with the fields of the API (`accountingEntryId`, `status`, `externalId`, `externalUrl`,
`exportedAt`, `failureReason`, `failureReasonType`), in camelCase or snake_case.

Every line is checked before anything is sent; each bad one is reported with its line number
and the field that is wrong.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import attrs

from pleo_export_async._codec import camel_case
from pleo_export_async._errors import InvalidInput
from pleo_export_async._models import ItemUpdate

#: The API's field names, and the ItemUpdate attribute each one fills.
FIELDS = {camel_case(field.name): field.name for field in attrs.fields(ItemUpdate)}
_BY_ANY_SPELLING = {**FIELDS, **{name: name for name in FIELDS.values()}}


@attrs.frozen
class LineError:
    """What is wrong with one line of the file."""

    line: int
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem}"


@attrs.frozen
class Results:
    updates: list[ItemUpdate]
    errors: list[LineError]


def read_results(path: Path) -> Results:
    """Every update of the file, or every problem with it (then nothing is to be sent)."""
    try:
        # utf-8-sig: spreadsheets save "CSV UTF-8" with a byte order mark.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        return Results([], [LineError(1, f"the file is not UTF-8 text: {error.reason}")])
    rows = _csv_rows(text) if _is_csv(path, text) else _json_rows(text)
    updates: list[ItemUpdate] = []
    errors: list[LineError] = []
    first_line_of: dict[str, tuple[int, ItemUpdate]] = {}
    for line, row in rows:
        if isinstance(row, LineError):
            errors.append(row)
            continue
        try:
            update = _update_from(row)
        except InvalidInput as error:
            errors.append(LineError(line, str(error)))
            continue
        earlier = first_line_of.setdefault(update.accounting_entry_id, (line, update))
        if earlier[1] is not update:
            if earlier[1] != update:
                errors.append(
                    LineError(
                        line,
                        f"accounting_entry_id={update.accounting_entry_id!r}: another result for "
                        f"this item is on line {earlier[0]}",
                    )
                )
            continue  # the same result twice: sent once
        updates.append(update)
    if not updates and not errors:
        errors.append(LineError(1, "the file holds no results"))
    return Results(updates, errors)


def _is_csv(path: Path, text: str) -> bool:
    if path.suffix.lower() in {".csv", ".tsv"}:
        return True
    if path.suffix.lower() in {".jsonl", ".ndjson", ".json"}:
        return False
    return not text.lstrip().startswith("{")


def _json_rows(text: str) -> Iterator[tuple[int, dict[str, object] | LineError]]:
    for number, raw in enumerate(io.StringIO(text), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as error:
            yield number, LineError(number, f"not JSON: {error.msg} at column {error.colno}")
            continue
        if not isinstance(row, dict):
            yield number, LineError(number, f"expected a JSON object, got {type(row).__name__}")
            continue
        yield number, row


def _csv_rows(text: str) -> Iterator[tuple[int, dict[str, object] | LineError]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    unknown = [name for name in reader.fieldnames or () if name not in _BY_ANY_SPELLING]
    if unknown:
        yield 1, LineError(1, f"unknown column(s): {', '.join(unknown)}")
        return
    for row in reader:
        if None in row:
            yield reader.line_num, LineError(reader.line_num, "more values than columns")
            continue
        # An empty CSV cell is a field not given.
        yield reader.line_num, {name: value for name, value in row.items() if value != ""}


def _update_from(row: dict[str, object]) -> ItemUpdate:
    fields: dict[str, object] = {}
    for name, value in row.items():
        attribute = _BY_ANY_SPELLING.get(name)
        if attribute is None:
            raise InvalidInput(name, value, "not a field of an item result")
        if value is not None:
            fields[attribute] = value
    for required in ("accounting_entry_id", "status"):
        if required not in fields:
            raise InvalidInput(required, None, "is required")
    exported_at = fields.get("exported_at")
    if isinstance(exported_at, str):
        try:
            fields["exported_at"] = datetime.fromisoformat(exported_at)  # naive is refused below
        except ValueError:
            raise InvalidInput("exported_at", exported_at, "not an RFC 3339 date-time") from None
    return ItemUpdate(**fields)  # type: ignore[arg-type]
