"""read_results: the JSON Lines or CSV file of item results that `pleo-export push` sends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pleo_export_async import ItemFailureReasonType, ItemStatus, ItemUpdate
from pleo_export_async._cli._results import LineError, Results, read_results

FIRST = "0b6f2b4e-3c1d-4d55-9a3e-0c7f1a2b3c4d"
SECOND = "1c7a3c5f-4d2e-4e66-8b4f-1d8a2b3c4d5e"
THIRD = "2d8b4d6a-5e3f-4f77-9c5a-2e9b3c4d5e6f"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def json_lines(*rows: dict[str, Any] | str) -> str:
    """One line per row: a dict is dumped as JSON, a string is written as it is."""
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


def read_text(directory: Path, name: str, text: str) -> Results:
    return read_results(write(directory, name, text))


def only_error(results: Results) -> LineError:
    assert len(results.errors) == 1, results.errors
    return results.errors[0]


# -- good files ----------------------------------------------------------------------------------


def test_json_lines_in_camel_case_give_every_field(tmp_path: Path) -> None:
    """A JSON Lines file with the API's camelCase fields becomes one ItemUpdate per line."""
    text = json_lines(
        {
            "accountingEntryId": FIRST,
            "status": "successful",
            "externalId": "JE-1",
            "externalUrl": "https://erp.example.com/journal/JE-1",
            "exportedAt": "2026-03-01T10:15:00+02:00",
        },
        {
            "accountingEntryId": SECOND,
            "status": "failed",
            "failureReason": "Vendor V-7 does not exist in the accounting system",
            "failureReasonType": "vendor_unknown",
        },
    )
    results = read_text(tmp_path, "results.jsonl", text)
    assert results.errors == []
    assert results.updates == [
        ItemUpdate.successful(
            FIRST,
            external_id="JE-1",
            external_url="https://erp.example.com/journal/JE-1",
            exported_at=datetime(2026, 3, 1, 10, 15, tzinfo=timezone(timedelta(hours=2))),
        ),
        ItemUpdate.failed(
            SECOND,
            reason="Vendor V-7 does not exist in the accounting system",
            reason_type=ItemFailureReasonType.VENDOR_UNKNOWN,
        ),
    ]


def test_json_lines_in_snake_case_and_json_nulls_are_read(tmp_path: Path) -> None:
    """snake_case field names are accepted in JSON Lines, and a JSON null is a field not given."""
    text = json_lines(
        {
            "accounting_entry_id": FIRST,
            "status": "successful",
            "external_id": "JE-9",
            "external_url": None,
            "failure_reason": None,
        }
    )
    results = read_text(tmp_path, "results.jsonl", text)
    assert results.errors == []
    assert results.updates == [ItemUpdate.successful(FIRST, external_id="JE-9")]


def test_csv_in_snake_case_with_an_offset_and_empty_cells(tmp_path: Path) -> None:
    """A snake_case CSV is read; exported_at keeps its UTC offset and an empty cell is absent."""
    text = (
        "accounting_entry_id,status,exported_at,external_id,external_url,"
        "failure_reason,failure_reason_type\n"
        f"{FIRST},successful,2026-03-01T10:15:00-05:00,JE-1,,,\n"
        f"{SECOND},failed,,,,Tax Code VAT25R does not exist,tax_code_unknown\n"
    )
    results = read_text(tmp_path, "results.csv", text)
    assert results.errors == []
    first, second = results.updates
    assert first == ItemUpdate.successful(
        FIRST,
        external_id="JE-1",
        exported_at=datetime(2026, 3, 1, 10, 15, tzinfo=timezone(timedelta(hours=-5))),
    )
    assert first.exported_at is not None
    assert first.exported_at.utcoffset() == timedelta(hours=-5)
    assert first.external_url is None
    assert second.status is ItemStatus.FAILED
    assert second.failure_reason_type is ItemFailureReasonType.TAX_CODE_UNKNOWN
    assert second.exported_at is None
    assert second.external_id is None


def test_csv_in_camel_case_is_read(tmp_path: Path) -> None:
    """A CSV with the API's camelCase column names is read like the snake_case one."""
    text = (
        "accountingEntryId,status,exportedAt,externalId\n"
        f"{FIRST},successful,2026-03-01T10:15:00Z,JE-1\n"
    )
    results = read_text(tmp_path, "results.csv", text)
    assert results.errors == []
    assert results.updates == [
        ItemUpdate.successful(
            FIRST, external_id="JE-1", exported_at=datetime(2026, 3, 1, 10, 15, tzinfo=UTC)
        )
    ]


@pytest.mark.parametrize(
    "text",
    [
        json_lines({"accountingEntryId": FIRST, "status": "successful"}),
        f"accountingEntryId,status\n{FIRST},successful\n",
    ],
    ids=["json-lines", "csv"],
)
def test_the_format_of_a_file_without_a_known_suffix_is_recognised(
    tmp_path: Path, text: str
) -> None:
    """A file named without .jsonl or .csv is read as JSON Lines or CSV from its content."""
    results = read_text(tmp_path, "results.txt", text)
    assert results.errors == []
    assert results.updates == [ItemUpdate.successful(FIRST)]


def test_blank_lines_are_skipped_and_still_counted(tmp_path: Path) -> None:
    """Blank lines are skipped, and the line numbers of later problems still count them."""
    text = json_lines(
        "",
        {"accountingEntryId": FIRST, "status": "successful"},
        "   ",
        "",
        {"accountingEntryId": SECOND, "status": "done"},
    )
    results = read_text(tmp_path, "results.jsonl", text)
    assert results.updates == [ItemUpdate.successful(FIRST)]
    error = only_error(results)
    assert error.line == 5
    assert "status" in error.problem


def test_blank_lines_of_a_csv_are_skipped(tmp_path: Path) -> None:
    """Blank lines between the rows of a CSV are skipped."""
    text = f"accountingEntryId,status\n\n{FIRST},successful\n\n{SECOND},successful\n\n"
    results = read_text(tmp_path, "results.csv", text)
    assert results.errors == []
    assert [update.accounting_entry_id for update in results.updates] == [FIRST, SECOND]


def test_identical_duplicate_lines_are_kept_once(tmp_path: Path) -> None:
    """The same result twice for one item (even with the ID in capitals) is one update."""
    row = {"accountingEntryId": FIRST, "status": "successful", "externalId": "JE-1"}
    text = json_lines(
        row,
        {"accountingEntryId": SECOND, "status": "successful"},
        row,
        {**row, "accountingEntryId": FIRST.upper()},
    )
    results = read_text(tmp_path, "results.jsonl", text)
    assert results.errors == []
    assert results.updates == [
        ItemUpdate.successful(FIRST, external_id="JE-1"),
        ItemUpdate.successful(SECOND),
    ]


# -- bad lines -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"accountingEntryId": "not-a-uuid", "status": "successful"}, "accounting_entry_id"),
        ({"accountingEntryId": FIRST, "status": "done"}, "status"),
        ({"accountingEntryId": FIRST, "status": "failed"}, "failure_reason_type"),
        (
            {"accountingEntryId": FIRST, "status": "failed", "failureReasonType": "ledger_on_fire"},
            "failure_reason_type",
        ),
        (
            {"accountingEntryId": FIRST, "status": "successful", "exportedAt": "2026-03-01T10:15"},
            "exported_at",
        ),
        (
            {"accountingEntryId": FIRST, "status": "successful", "exportedAt": "yesterday"},
            "exported_at",
        ),
        ({"accountingEntryId": FIRST, "status": "successful", "colour": "red"}, "colour"),
        ({"status": "successful"}, "accounting_entry_id"),
        ({"accountingEntryId": FIRST}, "status"),
    ],
    ids=[
        "bad-uuid",
        "unknown-status",
        "failed-without-type",
        "unknown-failure-type",
        "naive-exported-at",
        "exported-at-not-a-date",
        "unknown-field",
        "no-id",
        "no-status",
    ],
)
def test_a_bad_line_is_reported_with_its_number_and_field(
    tmp_path: Path, row: dict[str, Any], field: str
) -> None:
    """A line with a bad value is reported with its line number and the field that is wrong."""
    text = json_lines({"accountingEntryId": SECOND, "status": "successful"}, "", row)
    error = only_error(read_text(tmp_path, "results.jsonl", text))
    assert error.line == 3
    assert field in error.problem
    assert str(error).startswith("line 3: ")


def test_a_line_that_is_not_json_is_reported(tmp_path: Path) -> None:
    """A line that does not parse as JSON is reported with its line number."""
    text = json_lines({"accountingEntryId": FIRST, "status": "successful"}, '{"status": ')
    error = only_error(read_text(tmp_path, "results.jsonl", text))
    assert error.line == 2
    assert "not JSON" in error.problem


def test_a_json_array_instead_of_an_object_is_reported(tmp_path: Path) -> None:
    """A line holding a JSON array rather than an object is reported with its line number."""
    text = json_lines(
        {"accountingEntryId": FIRST, "status": "successful"}, json.dumps([FIRST, "successful"])
    )
    error = only_error(read_text(tmp_path, "results.jsonl", text))
    assert error.line == 2
    assert "object" in error.problem
    assert "list" in error.problem


def test_every_bad_line_of_a_file_is_reported(tmp_path: Path) -> None:
    """Every bad line of a file is reported, each with its own line number, in file order."""
    text = json_lines(
        {"accountingEntryId": "nope", "status": "successful"},
        {"accountingEntryId": FIRST, "status": "successful"},
        {"accountingEntryId": SECOND, "status": "done"},
        "not json at all",
        {"accountingEntryId": THIRD, "status": "failed"},
        {"accountingEntryId": THIRD, "status": "successful", "exportedAt": "2026-03-01T10:15"},
    )
    results = read_text(tmp_path, "results.jsonl", text)
    assert [(error.line, error.problem.split("=")[0]) for error in results.errors] == [
        (1, "accounting_entry_id"),
        (3, "status"),
        (4, "not JSON: Expecting value at column 1"),
        (5, "failure_reason_type"),
        (6, "exported_at"),
    ]


def test_two_different_results_for_one_item_name_both_lines(tmp_path: Path) -> None:
    """Two different results for one item are an error naming both of their line numbers."""
    text = json_lines(
        {"accountingEntryId": FIRST, "status": "successful", "externalId": "JE-1"},
        {"accountingEntryId": SECOND, "status": "successful"},
        {
            "accountingEntryId": FIRST,
            "status": "failed",
            "failureReasonType": "account_unknown",
        },
    )
    error = only_error(read_text(tmp_path, "results.jsonl", text))
    assert error.line == 3
    assert "accounting_entry_id" in error.problem
    assert FIRST in error.problem
    assert "line 1" in error.problem


def test_an_unknown_csv_column_is_reported_on_line_1(tmp_path: Path) -> None:
    """A CSV column that is not a field of an item result is reported on the header line."""
    text = f"accountingEntryId,status,colour\n{FIRST},successful,red\n"
    results = read_text(tmp_path, "results.csv", text)
    error = only_error(results)
    assert error.line == 1
    assert "colour" in error.problem
    assert results.updates == []


def test_a_csv_row_with_more_values_than_columns_is_reported(tmp_path: Path) -> None:
    """A CSV row with more values than the header has columns is reported with its line."""
    text = f"accountingEntryId,status\n{FIRST},successful\n{SECOND},successful,JE-2\n"
    error = only_error(read_text(tmp_path, "results.csv", text))
    assert error.line == 3
    assert "more values than columns" in error.problem


def test_bad_csv_rows_are_reported_with_their_line_and_field(tmp_path: Path) -> None:
    """Each bad row of a CSV is reported with its line number and the field that is wrong."""
    text = (
        "accounting_entry_id,status,failure_reason_type\n"
        f"{FIRST},successful,\n"
        "nope,successful,\n"
        f"{SECOND},failed,\n"
        f"{THIRD},failed,ledger_on_fire\n"
    )
    results = read_text(tmp_path, "results.csv", text)
    assert [(error.line, error.problem.split("=")[0]) for error in results.errors] == [
        (3, "accounting_entry_id"),
        (4, "failure_reason_type"),
        (5, "failure_reason_type"),
    ]


def test_a_file_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    """A file that is not UTF-8 text is reported as such, with nothing to send."""
    path = tmp_path / "results.csv"
    path.write_bytes(
        f"accountingEntryId,status,externalId\n{FIRST},successful,".encode() + b"\xff\n"
    )
    results = read_results(path)
    error = only_error(results)
    assert "UTF-8" in error.problem
    assert results.updates == []


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("results.jsonl", ""),
        ("results.csv", ""),
        ("results.jsonl", "\n  \n\n"),
        ("results.csv", "accountingEntryId,status\n"),
    ],
    ids=["empty-json-lines", "empty-csv", "blank-json-lines", "csv-header-only"],
)
def test_a_file_without_results_is_reported(tmp_path: Path, name: str, text: str) -> None:
    """A file that holds no results is an error, not an empty push."""
    results = read_text(tmp_path, name, text)
    error = only_error(results)
    assert error.line == 1
    assert "no results" in error.problem
    assert results.updates == []


def test_a_csv_saved_with_a_utf8_byte_order_mark_is_read(tmp_path: Path) -> None:
    """A UTF-8 CSV that starts with a byte order mark (as spreadsheets save it) is read."""
    path = tmp_path / "results.csv"
    path.write_text(f"accountingEntryId,status\n{FIRST},successful\n", encoding="utf-8-sig")
    results = read_results(path)
    assert results.errors == []
    assert results.updates == [ItemUpdate.successful(FIRST)]
