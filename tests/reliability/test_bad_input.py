"""Bad input, fuzzed with hypothesis (R14): ItemUpdate, client.job(), the public
arguments of the client and of JobRun, process_job's handler results and the CLI's results file.
Every rejection is an InvalidInput naming the field, raised before any request."""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any, Final

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import client_for
from pleo_export_async import (
    ApiKeyAuth,
    ExportItem,
    InvalidInput,
    ItemFailureReasonType,
    ItemStatus,
    ItemUpdate,
    JobEvent,
    JobRun,
    PleoExportClient,
)
from pleo_export_async._cli._results import read_results
from pleo_export_async._codec import encode_item_updates
from pleo_export_async.testing import FakePleo

from .figures import INTERNAL_ERRORS, Figures
from .scale import SCALE, profile

VALID_ID: Final = "3f2c1e7a-9b4d-4c8e-a1f2-6d5e4c3b2a19"

#: Values a careless caller passes: right and wrong types, near-misses of valid values.
_UUIDS = st.sampled_from(
    [
        VALID_ID,
        VALID_ID.upper(),
        "{" + VALID_ID + "}",
        " " + VALID_ID,
        VALID_ID.replace("-", ""),
        VALID_ID[:-1],
        "../" + VALID_ID,
        VALID_ID + "/items",
        VALID_ID + "?x=1",
        "",
    ]
) | st.uuids().map(str)
_DATETIMES = st.datetimes(
    timezones=st.none() | st.just(UTC) | st.just(timezone(timedelta(hours=5)))
)
ANYTHING: Final = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.binary(max_size=10),
    _UUIDS,
    _DATETIMES,
    st.sampled_from(list(ItemStatus) + list(ItemFailureReasonType) + list(JobEvent)),
    st.sampled_from(["successful", "failed", "abandoned", "pending", "SUCCESSFUL", " ", "\x00"]),
    st.sampled_from([v.value for v in ItemFailureReasonType] + ["nope", "Account_Unknown"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just(object()),
)


def _rejected_rightly(error: InvalidInput, fields: set[str], figures: Figures, kind: str) -> None:
    figures.bad_inputs[kind] += 1
    named = error.field in fields or error.field.startswith(tuple(f"{f}[" for f in fields))
    assert named, f"{error.field!r} is not one of {sorted(fields)}"
    assert str(error).startswith(f"{error.field}="), str(error)


def _checked(call: Callable[[], object], fields: set[str], figures: Figures, kind: str) -> object:
    """The call's result, or None once its InvalidInput was checked; any other error fails."""
    try:
        return call()
    except InvalidInput as error:
        _rejected_rightly(error, fields, figures, kind)
        return None
    except INTERNAL_ERRORS:
        figures.internal_errors += 1
        raise


def _sound(update: ItemUpdate) -> None:
    """An update that was accepted is one Pleo takes."""
    assert update.accounting_entry_id == update.accounting_entry_id.lower()
    assert len(update.accounting_entry_id) == 36
    assert update.status is not ItemStatus.ABANDONED  # only Pleo sets it
    assert (update.status is ItemStatus.FAILED) == (update.failure_reason_type is not None)
    for text in (update.external_id, update.external_url, update.failure_reason):
        assert text is None or (isinstance(text, str) and text.strip())
    assert update.exported_at is None or update.exported_at.utcoffset() is not None
    json.loads(encode_item_updates([update]))


_SUCCESSFUL_ARGS = ("accounting_entry_id", "external_id", "external_url", "exported_at")
_FAILED_ARGS = ("accounting_entry_id", "reason", "reason_type")
_FIELDS = tuple(field.name for field in attrs.fields(ItemUpdate))


@settings(profile("fuzz"))
@given(
    kind=st.sampled_from(["successful", "failed", "constructor"]),
    values=st.fixed_dictionaries(dict.fromkeys((*_FIELDS, "reason", "reason_type"), ANYTHING)),
    given_names=st.sets(st.sampled_from((*_FIELDS, "reason", "reason_type"))),
)
def test_item_update_accepts_only_sound_values_and_names_the_field(
    kind: str, values: dict[str, Any], given_names: set[str], figures: Figures
) -> None:
    """ItemUpdate.successful, .failed and the constructor either build an update Pleo takes,
    or raise InvalidInput naming the argument that is wrong."""
    if kind == "successful":
        names = set(_SUCCESSFUL_ARGS)
        kwargs = {n: values[n] for n in _SUCCESSFUL_ARGS[1:] if n in given_names}
        result = _checked(
            lambda: ItemUpdate.successful(values["accounting_entry_id"], **kwargs),
            names,
            figures,
            "ItemUpdate.successful",
        )
    elif kind == "failed":
        names = set(_FAILED_ARGS)
        kwargs = {n: values[n] for n in ("reason",) if n in given_names}
        result = _checked(
            lambda: ItemUpdate.failed(
                values["accounting_entry_id"], reason_type=values["reason_type"], **kwargs
            ),
            names,
            figures,
            "ItemUpdate.failed",
        )
    else:
        names = set(_FIELDS)
        kwargs = {n: values[n] for n in _FIELDS[2:] if n in given_names}
        result = _checked(
            lambda: ItemUpdate(values["accounting_entry_id"], values["status"], **kwargs),
            names,
            figures,
            "ItemUpdate()",
        )
    if result is not None:
        assert isinstance(result, ItemUpdate)
        _sound(result)


# -- the client's and JobRun's public arguments --------------------------------------------------


@settings(profile("fuzz"))
@given(
    job_id=ANYTHING,
    wait=ANYTHING,
    reconcile=st.booleans(),
)
def test_client_job_takes_only_a_uuid_and_a_bool(
    job_id: object, wait: object, reconcile: bool, figures: Figures
) -> None:
    """client.job() gives a JobRun for a UUID job id (in canonical form) or raises InvalidInput
    naming `job_id` or `wait`; it never sends anything."""
    client = PleoExportClient("http://127.0.0.1:9", auth=ApiKeyAuth("key"))
    run = _checked(
        lambda: client.job(job_id, wait=wait, reconcile_on_resume=reconcile),  # type: ignore[arg-type]
        {"job_id", "wait"},
        figures,
        "client.job()",
    )
    if run is not None:
        assert isinstance(run, JobRun)
        assert isinstance(job_id, str)
        assert run.job_id == str(uuid.UUID(job_id))  # the canonical form of the same UUID
        assert "/" not in run.job_id
        assert "?" not in run.job_id


#: The client's settings with values that are sound; one at a time is replaced by a fuzzed one.
_SOUND_SETTINGS: Final[dict[str, Any]] = {
    "max_concurrency": 4,
    "batch_size": 50,
    "timeout": 5.0,
    "flush_after": 1.0,
}


def _settings_refused(name: str, value: object) -> bool:
    """Whether a client setting must be refused (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return not (name == "flush_after" and value is None)
    if name == "max_concurrency":
        return not (isinstance(value, int) and 1 <= value <= 256)
    if name == "batch_size":
        return not (isinstance(value, int) and 1 <= value <= 100)
    return not (0 < value < math.inf)


@settings(profile("fuzz"))
@given(
    name=st.sampled_from(sorted(_SOUND_SETTINGS)),
    value=ANYTHING | st.integers(min_value=-2, max_value=300) | st.sampled_from([0.0, -1.0]),
)
def test_client_settings_are_refused_by_name_when_unsound(
    name: str, value: object, figures: Figures
) -> None:
    """PleoExportClient refuses an unsound max_concurrency, batch_size, timeout or flush_after
    with InvalidInput naming it; a sound one is taken."""
    options = {**_SOUND_SETTINGS, name: value}
    client = _checked(
        lambda: PleoExportClient("http://127.0.0.1:9", auth=ApiKeyAuth("key"), **options),
        {name},
        figures,
        "PleoExportClient()",
    )
    assert (client is None) == _settings_refused(name, value), (name, value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_concurrency", True),
        ("batch_size", True),
        ("timeout", True),
        ("timeout", math.nan),
        ("timeout", math.inf),
        ("ledger", "ledger.sqlite3"),
        ("reconcile_on_resume", "no"),
    ],
)
def test_client_settings_refuse_bools_and_non_finite_numbers(name: str, value: object) -> None:
    """A bool where a number is meant, a NaN or infinite timeout, and a ledger or flag of the
    wrong type are refused with InvalidInput naming them."""
    client = PleoExportClient("http://127.0.0.1:9", auth=ApiKeyAuth("key"))
    build: Callable[[], object]
    if name in ("ledger", "reconcile_on_resume"):
        build = lambda: client.job(VALID_ID, **{name: value})  # type: ignore[arg-type]  # noqa: E731
    else:
        build = lambda: PleoExportClient(  # noqa: E731
            "http://127.0.0.1:9",
            auth=ApiKeyAuth("key"),
            **{name: value},  # type: ignore[arg-type]
        )
    with pytest.raises(InvalidInput) as raised:
        build()
    assert raised.value.field == name


# -- the coroutines: rejected before any request ------------------------------------------------


def _coroutine_calls(
    client: PleoExportClient, job_id: str, bad: object
) -> list[tuple[str, set[str], Callable[[], Awaitable[object]]]]:
    """(what, fields it may name, call) for each public coroutine given `bad` in one argument."""
    run = client.job(job_id)

    async def first(agen: Any) -> object:
        async for item in agen:
            return item
        return None

    async def handler(item: ExportItem) -> ItemUpdate:
        return ItemUpdate.successful(item.accounting_entry_id)

    return [
        ("update(updates)", {"updates"}, lambda: run.update(bad)),  # type: ignore[arg-type]
        (
            "update([..., bad])",
            {"updates[1]"},
            lambda: run.update([ItemUpdate.successful(VALID_ID), bad]),  # type: ignore[list-item]
        ),
        ("complete(event)", {"event"}, lambda: run.complete(event=bad)),  # type: ignore[arg-type]
        (
            "complete(failure_reason)",
            {"failure_reason"},
            lambda: run.complete(event="failed", failure_reason=bad),  # type: ignore[arg-type]
        ),
        (
            "complete(failure_reason_type)",
            {"failure_reason_type"},
            lambda: run.complete(failure_reason_type=bad),  # type: ignore[arg-type]
        ),
        ("fail(reason)", {"reason"}, lambda: run.fail(bad, "service_unreachable")),  # type: ignore[arg-type]
        ("fail(reason_type)", {"reason_type"}, lambda: run.fail("ERP down", bad)),  # type: ignore[arg-type]
        ("items(status)", {"status"}, lambda: first(run.items(status=bad))),  # type: ignore[arg-type]
        ("items(page_size)", {"page_size"}, lambda: first(run.items(page_size=bad))),  # type: ignore[arg-type]
        ("export_items(page_size)", {"page_size"}, lambda: first(run.export_items(page_size=bad))),  # type: ignore[arg-type]
        ("get_job(job_id)", {"job_id"}, lambda: client.get_job(bad)),  # type: ignore[arg-type]
        ("jobs(statuses)", {"statuses", "status"}, lambda: first(client.jobs(statuses=[bad]))),  # type: ignore[list-item]
        ("jobs(company_id)", {"company_id"}, lambda: first(client.jobs(company_id=bad))),  # type: ignore[arg-type]
        ("process_job(job_id)", {"job_id"}, lambda: client.process_job(bad, handler)),  # type: ignore[arg-type]
        ("process_job(handler)", {"handler"}, lambda: client.process_job(job_id, bad)),  # type: ignore[arg-type]
        (
            "process_job(concurrency)",
            {"concurrency"},
            lambda: client.process_job(job_id, handler, concurrency=bad),  # type: ignore[arg-type]
        ),
    ]


#: Values no public argument takes (each call below has one argument of a narrower type).
_NEVER_VALID = st.one_of(
    st.integers(min_value=-5, max_value=-1),
    st.just(0),
    st.floats(allow_nan=True).filter(lambda v: not v.is_integer() or v < 1),
    st.binary(min_size=1, max_size=5),
    st.sampled_from(["", " ", "nope", "../x", "started", "\x00"]),
    st.lists(st.integers(), min_size=1, max_size=2).map(tuple),
    st.just(object()),
)


async def _before_any_request(bad: object, index: int, figures: Figures) -> None:
    async with FakePleo(seed=index, strict=True) as fake:
        job = fake.create_job(items=2)
        async with client_for(fake) as client:
            calls = _coroutine_calls(client, job.id, bad)
            what, fields, call = calls[index % len(calls)]
            if "reason)" in what and isinstance(bad, str) and bad.strip():
                return  # any text that says something is a reason
            try:
                await call()
            except InvalidInput as error:
                _rejected_rightly(error, fields, figures, what)
            except INTERNAL_ERRORS:
                figures.internal_errors += 1
                raise
            else:
                raise AssertionError(f"{what} took {bad!r}")
        assert fake.journal.requests == [], f"{what}: a request was sent before the refusal"


@settings(profile("fuzz"))
@given(bad=_NEVER_VALID, index=st.integers(min_value=0, max_value=15))
def test_every_public_coroutine_refuses_a_bad_argument_before_any_request(
    bad: object, index: int, figures: Figures
) -> None:
    """update(), complete(), fail(), items(), export_items(), get_job(), jobs() and process_job()
    refuse a bad argument with InvalidInput naming it, and send nothing."""
    asyncio.run(_before_any_request(bad, index, figures))


# -- process_job's handler results ----------------------------------------------------------------


_RESULTS = st.one_of(
    st.just("own successful"),
    st.just("own failed"),
    st.just("other item's"),
    st.just("raises ValueError"),
    st.just("raises InvalidInput"),
    ANYTHING,
)


async def _workflow_with(results: list[object], awaited: list[bool], figures: Figures) -> None:
    async with FakePleo(seed=len(results), strict=True) as fake:
        job = fake.create_job(items=len(results))
        plan = dict(zip(job.item_ids, zip(results, awaited, strict=True), strict=True))
        expected: dict[str, ItemUpdate | None] = {}
        for entry_id, (result, _) in plan.items():
            if result == "own successful":
                expected[entry_id] = ItemUpdate.successful(entry_id, external_id="JE-1")
            elif result == "own failed":
                expected[entry_id] = ItemUpdate.failed(
                    entry_id, reason="no such account", reason_type="account_unknown"
                )
            else:
                expected[entry_id] = None  # failed with unexpected_failure

        def handler(item: ExportItem) -> object:
            entry_id = item.accounting_entry_id
            result, is_async = plan[entry_id]
            if result == "raises ValueError":
                raise ValueError("the ERP said no")
            if result == "raises InvalidInput":
                ItemUpdate.successful("not a uuid")
            if result in ("own successful", "own failed"):
                value: object = expected[entry_id]
            elif result == "other item's":
                other = (
                    next(i for i in job.item_ids if i != entry_id)
                    if len(job.item_ids) > 1
                    else VALID_ID
                )
                value = ItemUpdate.successful(other)
            else:
                value = result

            # Every call gives an awaitable (a plain result is refused whole, see
            # tests/test_plain_handler.py); some wait a turn of the loop first.
            async def later() -> object:
                if is_async:
                    await asyncio.sleep(0)
                return value

            return later()

        async with client_for(fake, batch_size=3) as client:
            try:
                outcome = await client.process_job(job.id, handler, concurrency=2)  # type: ignore[arg-type]
            except INTERNAL_ERRORS:
                figures.internal_errors += 1
                raise
        figures.bad_inputs["process_job handler result"] += sum(
            1 for v in expected.values() if v is None
        )
        figures.jobs_run += 1
        assert outcome is not None
        for entry_id, update in expected.items():
            item = fake.item(job.id, entry_id)
            if update is None:
                assert item["status"] == "failed"
                assert item["failureReasonType"] == "unexpected_failure"
            else:
                assert item["status"] == update.status.value
        assert len(fake.journal.final_events_applied(job.id)) == 1


@settings(profile("fuzz"), max_examples=max(10, SCALE.fuzz_examples // 6))
@given(
    results=st.lists(_RESULTS, min_size=1, max_size=8),
    data=st.data(),
)
def test_process_job_turns_any_handler_result_into_a_sound_update(
    results: list[object], data: st.DataObject, figures: Figures
) -> None:
    """Whatever the handler returns (or raises, or awaits to), process_job sends the item's own
    update or a failed one with unexpected_failure, and closes the job once."""
    awaited = data.draw(st.lists(st.booleans(), min_size=len(results), max_size=len(results)))
    asyncio.run(_workflow_with(results, awaited, figures))


# -- the CLI's results file -----------------------------------------------------------------------

_COLUMNS = st.sampled_from(
    [
        "accountingEntryId",
        "accounting_entry_id",
        "status",
        "externalId",
        "external_url",
        "exportedAt",
        "failureReason",
        "failure_reason_type",
        "accountingentryid",
        "id",
    ]
)
_CELLS = st.one_of(
    _UUIDS,
    st.sampled_from(
        [
            "successful",
            "failed",
            "abandoned",
            "account_unknown",
            "",
            "2026-01-01",
            "2026-01-01T10:00:00Z",
        ]
    ),
    st.text(max_size=8),
    st.integers(),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=1),
)


@settings(profile("fuzz"))
@given(
    rows=st.lists(st.dictionaries(_COLUMNS, _CELLS, max_size=5), min_size=0, max_size=6),
    raw_lines=st.lists(
        st.sampled_from(["", "not json", "[1]", '{"status": ', "\ufeff{}"]), max_size=2
    ),
    as_csv=st.booleans(),
)
def test_cli_results_file_is_read_or_refused_line_by_line_naming_the_field(
    rows: list[dict[str, object]], raw_lines: list[str], as_csv: bool, figures: Figures
) -> None:
    """The CLI's results file (JSON Lines or CSV) gives sound updates or, for each bad line,
    an error with its line number that names the field (or says why the line is unreadable)."""
    with tempfile.TemporaryDirectory() as directory:
        if as_csv:
            columns = sorted({name for row in rows for name in row})
            lines = [",".join(columns)] + [
                ",".join(_csv_cell(row.get(column)) for column in columns) for row in rows
            ]
            path = Path(directory) / "results.csv"
        else:
            lines = [json.dumps(row) for row in rows] + raw_lines
            path = Path(directory) / "results.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            results = read_results(path)
        except INTERNAL_ERRORS:
            figures.internal_errors += 1
            raise
    figures.bad_inputs["CLI results file lines"] += len(results.errors)
    for update in results.updates:
        _sound(update)
    names = {
        "accountingEntryId",
        "accounting_entry_id",
        "status",
        "externalId",
        "external_id",
        "externalUrl",
        "external_url",
        "exportedAt",
        "exported_at",
        "failureReason",
        "failure_reason",
        "failureReasonType",
        "failure_reason_type",
        "reason",
        "reason_type",
    }
    for error in results.errors:
        assert error.line >= 1
        problem = error.problem
        named = problem.split("=", 1)[0] if "=" in problem else None
        assert (
            named is not None and (named in names or named in {"accountingentryid", "id"})
        ) or problem.startswith(
            ("not JSON", "expected a JSON object", "unknown column", "more values", "the file")
        ), problem


def _csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n\r') else text
