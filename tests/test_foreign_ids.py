"""Updates for IDs that are not items of the job (issue 23): Pleo rejects them with
`ACCOUNTING_ENTRY_DOES_NOT_EXIST`; the update's report lists them as rejected, and the job's final
event and its counts leave them out (R10), in this process and after a crash (R13)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import client_for, mixed_updates, successful_updates, update_with_the_last_refused
from pleo_export_async import (
    IncompleteJob,
    ItemUpdate,
    JobEvent,
    Ledger,
    PostgresLedger,
    SqliteLedger,
)
from pleo_export_async._core._decision import (
    Tally,
    choose_final_event,
    names_no_item_of_the_job,
    with_rejections,
)
from pleo_export_async.testing import FakePleo

pytestmark = pytest.mark.usefixtures("instant")

NOT_IN_JOB = "ACCOUNTING_ENTRY_DOES_NOT_EXIST"
STRANGERS = [f"00000000-0000-4000-8000-{n:012d}" for n in range(1, 4)]


def for_strangers(count: int = 1) -> list[ItemUpdate]:
    return [ItemUpdate.successful(entry_id) for entry_id in STRANGERS[:count]]


# -- against the fake server ---------------------------------------------------------------------


async def test_a_foreign_id_leaves_a_successful_job_completed(fake: FakePleo) -> None:
    """Ten successful items and one ID from outside the job close it `completed`, 10 successful,
    with the outsider listed as rejected in the report."""
    job = fake.create_job(items=10)
    async with client_for(fake) as client:
        run = client.job(job.id)
        report = await run.update([*successful_updates(job.item_ids), *for_strangers()])
        outcome = await run.complete()
    assert set(report.rejected) == {STRANGERS[0]}
    assert report.rejected[STRANGERS[0]].error_type == NOT_IN_JOB
    assert outcome.event is JobEvent.COMPLETED
    assert (outcome.successful, outcome.failed, outcome.rejected) == (10, 0, 0)
    assert outcome.failure_reason is None
    (event,) = fake.journal.events(job.id)
    assert event.body == {"event": "completed", "jobId": job.id}
    assert len(fake.journal.item_history(STRANGERS[0])) == 1  # rejected for good: sent once


async def test_foreign_ids_are_not_in_the_counts_of_completed_with_errors(fake: FakePleo) -> None:
    """With failed items too, the reason counts the job's items only: "1 of 10", not "1 of 11"."""
    job = fake.create_job(items=10)
    async with client_for(fake) as client:
        run = client.job(job.id)
        await run.update([*mixed_updates(job), *for_strangers(2)])
        outcome = await run.complete()
    assert outcome.event is JobEvent.COMPLETED_WITH_ERRORS
    assert (outcome.successful, outcome.failed, outcome.rejected) == (9, 1, 0)
    (event,) = fake.journal.final_events_applied(job.id)
    assert event.body["failureReason"].startswith("1 of 10 items could not be exported")
    assert "rejected" not in event.body["failureReason"]


async def test_foreign_ids_do_not_change_a_failed_jobs_reason(fake: FakePleo) -> None:
    """A job whose items all failed is `failed` for all of its items, the outsiders left out."""
    job = fake.create_job(items=3)
    failures = [
        ItemUpdate.failed(entry_id, reason="Account 6000 unknown", reason_type="account_unknown")
        for entry_id in job.item_ids
    ]
    async with client_for(fake) as client:
        run = client.job(job.id)
        await run.update([*failures, *for_strangers()])
        outcome = await run.complete()
    assert outcome.event is JobEvent.FAILED
    assert (outcome.successful, outcome.failed, outcome.rejected) == (0, 3, 0)
    (event,) = fake.journal.final_events_applied(job.id)
    assert event.body["failureReason"].startswith("All 3 items could not be exported")


async def test_only_foreign_ids_leave_the_job_with_no_results_of_its_own(fake: FakePleo) -> None:
    """When the only results are for IDs outside the job, complete() sends nothing and says the
    outsiders were left out, as for a job with no results; event= closes it anyway."""
    job = fake.create_job(items=2)
    async with client_for(fake) as client:
        run = client.job(job.id)
        report = await run.update(for_strangers(2))
        with pytest.raises(IncompleteJob) as raised:
            await run.complete()
        assert fake.journal.events(job.id) == []
        outcome = await run.complete(
            event="failed",
            failure_reason="Nothing of this job was exported",
            failure_reason_type="validation_failure",
        )
    assert set(report.rejected) == set(STRANGERS[:2])
    message = str(raised.value)
    assert "2 rejected update(s) for IDs that are not items of the job" in message
    assert NOT_IN_JOB in message
    assert "pass event= to close it anyway" in message
    assert raised.value.unacknowledged == frozenset()
    assert (outcome.event, outcome.successful, outcome.failed, outcome.rejected) == (
        JobEvent.FAILED,
        0,
        0,
        0,
    )
    (event,) = fake.journal.final_events_applied(job.id)
    assert event.body["event"] == "failed"


async def test_the_error_type_is_compared_in_any_case() -> None:
    """Pleo's `accounting_entry_does_not_exist`, in lower case, is left out of the event too."""
    # Not strict: a strict fake refuses `completed` while the refused item is still pending.
    async with FakePleo(seed=7, strict=False) as fake:
        job = fake.create_job(items=3)
        updates = successful_updates(job.item_ids)
        async with client_for(fake) as client:
            run = client.job(job.id)
            report = await update_with_the_last_refused(fake, run, updates, NOT_IN_JOB.lower())
            outcome = await run.complete()
        (event,) = fake.journal.events(job.id)
    assert report.rejected[job.item_ids[2]].error_type == NOT_IN_JOB.lower()
    assert (outcome.event, outcome.successful, outcome.rejected) == (JobEvent.COMPLETED, 2, 0)
    assert event.body == {"event": "completed", "jobId": job.id}


# -- after a crash, with a durable ledger -----------------------------------------------------


LedgerMaker = Callable[[], SqliteLedger | PostgresLedger]


@pytest.fixture(params=["sqlite", "postgres"])
def open_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerMaker:
    """A maker of durable ledgers on one storage: each call is a new process's ledger."""
    if request.param == "sqlite":
        return lambda: SqliteLedger(tmp_path / "ledger.sqlite3")
    dsn = request.getfixturevalue("postgres_dsn")
    schema = request.getfixturevalue("postgres_schema")
    return lambda: PostgresLedger(dsn, schema=schema, lease_ttl=30.0)


@contextlib.asynccontextmanager
async def process(open_ledger: LedgerMaker) -> AsyncIterator[Ledger]:
    """The ledger of one process: opened, and closed when the process ends."""
    ledger = open_ledger()
    try:
        yield ledger
    finally:
        await ledger.close()


@pytest.mark.parametrize("sends_again", [False, True], ids=["completes", "sends-again"])
async def test_a_resumed_run_leaves_foreign_ids_out_as_the_first_would_have(
    fake: FakePleo, open_ledger: LedgerMaker, sends_again: bool
) -> None:
    """A process that resumes from a durable ledger after a crash, whether it completes at once
    or sends the same updates again first, closes the job `completed` for its 10 items."""
    job = fake.create_job(items=10)
    updates = [*successful_updates(job.item_ids), *for_strangers()]
    async with process(open_ledger) as ledger, client_for(fake, timeout=5.0) as client:
        first = await client.job(job.id, ledger=ledger).update(updates)
    # The process stops here, before complete(): the ledger keeps acknowledgements only.
    assert set(first.rejected) == {STRANGERS[0]}
    async with process(open_ledger) as ledger, client_for(fake, timeout=5.0) as client:
        run = client.job(job.id, ledger=ledger)
        if sends_again:
            again = await run.update(updates)
            assert again.skipped == set(job.item_ids)
            assert set(again.rejected) == {STRANGERS[0]}
        outcome = await run.complete()
    assert outcome.event is JobEvent.COMPLETED
    assert (outcome.successful, outcome.failed, outcome.rejected) == (10, 0, 0)
    (event,) = fake.journal.events(job.id)
    assert event.body == {"event": "completed", "jobId": job.id}
    assert fake.journal.resent_after_ack() == {}


# -- the rule, in the core -----------------------------------------------------------------------

COUNTS = st.integers(min_value=0, max_value=30)
ERROR_TYPES = st.sampled_from(
    ["EXPORT_ENTRY_STATUS_UPDATE_FAILED", "ACCOUNTING_ENTRY_UPDATE_FAILED", "ITEM_LOCKED"]
)
NOT_IN_JOB_SPELLINGS = st.sampled_from(
    [NOT_IN_JOB, NOT_IN_JOB.lower(), "Accounting_Entry_Does_Not_Exist"]
)


@given(
    acknowledged=st.builds(Tally, COUNTS, COUNTS),
    own=st.lists(st.tuples(st.uuids().map(str), ERROR_TYPES), max_size=10),
    foreign=st.lists(st.tuples(st.uuids().map(str), NOT_IN_JOB_SPELLINGS), max_size=10),
    data=st.data(),
)
def test_foreign_rejections_never_change_the_tally_of_the_jobs_items(
    acknowledged: Tally,
    own: list[tuple[str, str]],
    foreign: list[tuple[str, str]],
    data: st.DataObject,
) -> None:
    """However many outsiders are mixed in, in any spelling and order, the job's counts and
    its event are those of its own results; the outsiders are counted apart."""
    mixed = data.draw(st.permutations(own + foreign))
    tally = with_rejections(acknowledged, mixed, lambda _: False)
    alone = with_rejections(acknowledged, own, lambda _: False)
    assert attrs_without_outsiders(tally) == attrs_without_outsiders(alone)
    assert tally.not_in_job == len(foreign)
    assert tally.total == acknowledged.total + len(own)
    assert choose_final_event(tally) == choose_final_event(alone)


def attrs_without_outsiders(tally: Tally) -> tuple[int, int, int, dict[str, int]]:
    return (tally.successful, tally.failed, tally.rejected, dict(tally.failure_types))


def test_only_the_does_not_exist_type_names_no_item_of_the_job() -> None:
    """The rule is the error type, in any case; other types and no type are the job's."""
    assert names_no_item_of_the_job("ACCOUNTING_ENTRY_DOES_NOT_EXIST")
    assert names_no_item_of_the_job("accounting_entry_does_not_exist")
    assert not names_no_item_of_the_job("EXPORT_ENTRY_STATUS_UPDATE_FAILED")
    assert not names_no_item_of_the_job("")
    assert not names_no_item_of_the_job(None)
