"""PostgresLedger's own ways: its schema is created on first use and versioned, a schema it cannot
trust is refused and left as it was, workers starting at once set it up one at a time, the DSN's
password is never shown, and bad arguments are refused before any connection.

What every durable ledger promises is tested in test_durable_ledgers.py; the leases, with several
workers, in test_leases.py."""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from batching import new_tracker, planned
from helpers import client_for, successful_updates
from pleo_export_async import InvalidInput, ItemUpdate, LedgerError, PostgresLedger
from pleo_export_async._codec import encode_item_updates
from pleo_export_async._company_turns import CompanyBusy
from pleo_export_async._postgres_schema import APPLICATION, SCHEMA_VERSION
from pleo_export_async.testing import FakePleo

JOB_A = "11111111-1111-4111-8111-111111111111"
JOB_IDS = [f"33333333-3333-4333-8333-{n:012d}" for n in range(4)]
ENTRY_1 = "aaaaaaaa-0000-4000-8000-000000000001"
ENTRY_2 = "aaaaaaaa-0000-4000-8000-000000000002"
PASSWORD = "s3cr3t-pw"
LEDGER_TABLES = {"meta", "batch", "acknowledgement", "final_event", "lease"}


async def fetch(dsn: str, sql: str, *parameters: object) -> list[tuple[Any, ...]]:
    """Rows read from the database directly, bypassing the ledger."""
    connection = await asyncpg.connect(dsn)
    try:
        return [tuple(row) for row in await connection.fetch(sql, *parameters)]
    finally:
        await connection.close()


async def execute(dsn: str, *statements: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def tables(dsn: str, schema: str) -> set[str]:
    rows = await fetch(dsn, "SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)
    return {name for (name,) in rows}


async def record_one_batch(ledger: PostgresLedger, job_id: str) -> None:
    """Send one update's batch and record its acknowledgement, with the job's lease held."""
    job = await ledger.open_job(job_id)
    async with job.turn():
        tracker = new_tracker(job.acknowledgements)
        batch = planned(tracker, [ItemUpdate.successful(ENTRY_1)])
        assert batch.updates is not None
        await job.record_in_flight(batch, encode_item_updates(batch.updates))
        tracker.reconcile(batch, [ENTRY_1], ())
        await job.record_acknowledged(batch)


def unreachable_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_the_schema_is_created_on_first_use_and_versioned(
    postgres_dsn: str, postgres_schema: str
) -> None:
    """The first ledger on a schema creates it with its tables and a `meta` row naming the
    application and the schema version; a later ledger takes the schema as it is."""
    assert await tables(postgres_dsn, postgres_schema) == set()
    async with PostgresLedger(postgres_dsn, schema=postgres_schema) as ledger:
        await record_one_batch(ledger, JOB_A)
    assert await tables(postgres_dsn, postgres_schema) == LEDGER_TABLES
    meta = f"SELECT application, schema_version FROM {postgres_schema}.meta"
    assert await fetch(postgres_dsn, meta) == [(APPLICATION, SCHEMA_VERSION)]
    async with PostgresLedger(postgres_dsn, schema=postgres_schema) as ledger:
        job = await ledger.open_job(JOB_A)
        assert job.acknowledgements.tally().successful == 1
    assert await fetch(postgres_dsn, meta) == [(APPLICATION, SCHEMA_VERSION)]


@pytest.mark.parametrize(
    "tables_sql",
    [
        pytest.param(
            [
                "CREATE TABLE {s}.notes (id integer PRIMARY KEY, text text NOT NULL)",
                "INSERT INTO {s}.notes VALUES (1, 'keep me')",
            ],
            id="another-programs-tables",
        ),
        pytest.param(
            [
                "CREATE TABLE {s}.meta (application text, schema_version integer)",
                "INSERT INTO {s}.meta VALUES ('another_program', 1)",
            ],
            id="another-programs-meta",
        ),
    ],
)
async def test_a_schema_holding_other_tables_is_refused_and_left_untouched(
    postgres_dsn: str, postgres_schema: str, tables_sql: list[str]
) -> None:
    """A schema holding tables that are not a ledger's raises LedgerError naming the schema, and
    no table or row is added, changed or dropped."""
    await execute(
        postgres_dsn,
        f"CREATE SCHEMA {postgres_schema}",
        *(sql.format(s=postgres_schema) for sql in tables_sql),
    )
    before = await tables(postgres_dsn, postgres_schema)
    (table,) = before
    rows_before = await fetch(postgres_dsn, f"SELECT * FROM {postgres_schema}.{table}")
    ledger = PostgresLedger(postgres_dsn, schema=postgres_schema)
    with pytest.raises(LedgerError, match="not a pleo_export_async ledger") as raised:
        await ledger.open_job(JOB_A)
    await ledger.close()
    assert postgres_schema in str(raised.value)
    assert await tables(postgres_dsn, postgres_schema) == before
    assert await fetch(postgres_dsn, f"SELECT * FROM {postgres_schema}.{table}") == rows_before


async def test_a_newer_schema_version_is_refused_and_left_untouched(
    postgres_dsn: str, postgres_schema: str
) -> None:
    """A ledger schema of a newer version raises LedgerError naming both versions, and its
    tables and rows are left as they were."""
    async with PostgresLedger(postgres_dsn, schema=postgres_schema) as ledger:
        await record_one_batch(ledger, JOB_A)
    newer = SCHEMA_VERSION + 1
    await execute(postgres_dsn, f"UPDATE {postgres_schema}.meta SET schema_version = {newer}")

    async def snapshot() -> list[object]:
        return [
            await tables(postgres_dsn, postgres_schema),
            *[
                await fetch(postgres_dsn, f"SELECT * FROM {postgres_schema}.{table} ORDER BY 1")
                for table in sorted(LEDGER_TABLES)
            ],
        ]

    before = await snapshot()
    ledger = PostgresLedger(postgres_dsn, schema=postgres_schema)
    with pytest.raises(LedgerError) as raised:
        await ledger.open_job(JOB_A)
    await ledger.close()
    message = str(raised.value)
    assert re.search(rf"version {newer}\b", message), message
    assert re.search(rf"version {SCHEMA_VERSION}\b", message), message
    assert await snapshot() == before


async def test_ledgers_starting_at_once_on_a_fresh_schema_all_work(
    postgres_dsn: str, postgres_schema: str
) -> None:
    """Several ledgers opened at the same moment on a schema that does not exist yet set it up
    one at a time (under an advisory lock): each of them opens and records its job."""
    ledgers = {job: PostgresLedger(postgres_dsn, schema=postgres_schema) for job in JOB_IDS}
    try:
        await asyncio.gather(*(ledger.open_job(job) for job, ledger in ledgers.items()))
        await asyncio.gather(*(record_one_batch(ledger, job) for job, ledger in ledgers.items()))
    finally:
        for ledger in ledgers.values():
            await ledger.close()
    assert await fetch(postgres_dsn, f"SELECT count(*) FROM {postgres_schema}.meta") == [(1,)]
    async with PostgresLedger(postgres_dsn, schema=postgres_schema) as reader:
        for job_id in JOB_IDS:
            job = await reader.open_job(job_id)
            assert job.acknowledgements.tally().successful == 1, job_id


async def test_a_company_turn_is_held_by_one_worker_of_the_database_at_a_time(
    postgres_dsn: str, postgres_schema: str
) -> None:
    """A second ledger on the database is refused a company's turn while the first holds it,
    gets another company's, and gets the first company's once it is let go; renewed in the
    background meanwhile, each turn is a `company:<id>` row beside the jobs' leases."""
    company, other = "0b5f3a2e-7c1d-4e8f-9a6b-2d4c6e8f0a1b", "5e0c2a1b-3d4f-4a6b-8c9d-0e1f2a3b4c5d"
    async with (
        PostgresLedger(postgres_dsn, schema=postgres_schema, lease_ttl=3) as first,
        PostgresLedger(postgres_dsn, schema=postgres_schema, lease_ttl=3) as second,
    ):
        async with first.company_turn(company) as turn:
            assert turn.held
            with pytest.raises(CompanyBusy) as busy:
                async with second.company_turn(company):
                    pass
            assert busy.value.holder == first.holder
            async with second.company_turn(other) as elsewhere:
                assert elsewhere.held
            await asyncio.sleep(4)  # past the lease's 3 s: only its renewal keeps it held
            with pytest.raises(CompanyBusy):
                async with second.company_turn(company):
                    pass
            assert turn.held
        async with second.company_turn(company) as taken:
            assert taken.held
    rows = await fetch(postgres_dsn, f"SELECT job_id, fence FROM {postgres_schema}.lease")
    assert sorted(rows) == [(f"company:{company}", 2), (f"company:{other}", 1)]


async def test_the_password_never_appears_in_repr_or_in_a_ledger_error() -> None:
    """A ledger whose database cannot be reached shows its DSN's password neither in its repr
    nor in the LedgerError it raises."""
    dsn = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{unreachable_port()}/postgres"
    ledger = PostgresLedger(dsn)
    assert PASSWORD not in repr(ledger)
    assert PASSWORD not in str(ledger)
    with pytest.raises(LedgerError, match="cannot connect") as raised:
        await ledger.open_job(JOB_A)
    await ledger.close()
    assert PASSWORD not in str(raised.value)
    assert PASSWORD not in repr(raised.value)


async def test_a_database_error_quoting_the_password_is_redacted(postgres_dsn: str) -> None:
    """When the server's error happens to quote the password (here it is also the user name),
    the LedgerError shows `<redacted>` in its place."""
    server = urlsplit(postgres_dsn)
    dsn = f"postgresql://{PASSWORD}:{PASSWORD}@{server.hostname}:{server.port}/postgres"
    ledger = PostgresLedger(dsn)
    with pytest.raises(LedgerError) as raised:
        await ledger.open_job(JOB_A)
    await ledger.close()
    message = str(raised.value)
    assert PASSWORD not in message
    assert "<redacted>" in message, message


@pytest.mark.parametrize("password", ["pw?s3cr3t", "s3cr3t/pw"], ids=["question-mark", "slash"])
async def test_a_dsn_asyncpg_cannot_parse_raises_a_ledger_error_without_the_password(
    password: str,
) -> None:
    """A DSN whose password holds a character a URL must escape raises LedgerError, and no part
    of the password shows in it."""
    dsn = f"postgresql://postgres:{password}@127.0.0.1:{unreachable_port()}/postgres"
    ledger = PostgresLedger(dsn)
    try:
        with pytest.raises(LedgerError) as raised:
            await ledger.open_job(JOB_A)
    finally:
        await ledger.close()
    assert "s3cr3t" not in str(raised.value)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"dsn": ""}, "dsn"),
        ({"schema": "Pleo"}, "schema"),
        ({"schema": "1st_ledger"}, "schema"),
        ({"schema": "pleo-export"}, "schema"),
        ({"schema": "pleo; DROP TABLE x"}, "schema"),
        ({"schema": "a" * 64}, "schema"),
        ({"schema": ""}, "schema"),
        ({"schema": 7}, "schema"),
        ({"lease_ttl": 2.9}, "lease_ttl"),
        ({"lease_ttl": 3601}, "lease_ttl"),
        ({"lease_ttl": 0}, "lease_ttl"),
        ({"lease_ttl": float("nan")}, "lease_ttl"),
        ({"lease_ttl": True}, "lease_ttl"),
        ({"lease_ttl": "60"}, "lease_ttl"),
        ({"max_connections": 1}, "max_connections"),
        ({"max_connections": 2.5}, "max_connections"),
        ({"max_connections": True}, "max_connections"),
        ({"max_connections": "10"}, "max_connections"),
    ],
)
def test_bad_arguments_are_refused_before_any_connection(
    options: dict[str, Any], field: str
) -> None:
    """A bad dsn, schema name, lease_ttl or max_connections raises InvalidInput naming the
    parameter when the ledger is made, before it connects to anything."""
    arguments: dict[str, Any] = {
        "dsn": f"postgresql://postgres:{PASSWORD}@127.0.0.1:{unreachable_port()}/postgres",
        **options,
    }
    with pytest.raises(InvalidInput) as raised:
        PostgresLedger(**arguments)
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}=")
    assert PASSWORD not in str(raised.value)


async def slow_acknowledgements(dsn: str, schema: str, seconds: float) -> None:
    """Each acknowledgement's INSERT takes `seconds` in the database (a trigger sleeps)."""
    await execute(
        dsn,
        f"CREATE FUNCTION {schema}.slow_acknowledgement() RETURNS trigger LANGUAGE plpgsql AS"
        f" $$ BEGIN PERFORM pg_sleep({seconds}); RETURN NEW; END $$",
        f"CREATE TRIGGER slow BEFORE INSERT ON {schema}.acknowledgement"
        f" FOR EACH ROW EXECUTE FUNCTION {schema}.slow_acknowledgement()",
    )


async def test_the_acknowledgements_land_before_the_lease_goes(
    fake: FakePleo, postgres_dsn: str, postgres_schema: str
) -> None:
    """update() sends its next batch without waiting for the last one's acknowledgement to be
    written, but the job's lease is let go only once they are all written: the next worker to
    read the job finds every update acknowledged and nothing in flight."""
    job = fake.create_job(items=300)
    async with PostgresLedger(postgres_dsn, schema=postgres_schema) as ledger:
        await slow_acknowledgements(postgres_dsn, postgres_schema, 0.3)
        async with client_for(fake, max_concurrency=1) as client:
            report = await client.job(job.id, ledger=ledger).update(
                successful_updates(job.item_ids)
            )
        async with PostgresLedger(postgres_dsn, schema=postgres_schema) as other_worker:
            seen = await other_worker.open_job(job.id)
            assert dict(seen.in_flight_at_open()) == {}
            assert all(seen.acknowledgements.acknowledged(entry) for entry in job.item_ids)
    assert len(report.acknowledged) == 300
    assert len(fake.journal.puts(job.id)) == 3


async def test_the_events_intent_is_written_after_every_acknowledgement(
    fake: FakePleo, postgres_dsn: str, postgres_schema: str
) -> None:
    """Within one held turn, complete() writes the event's intent only once every
    acknowledgement of update() has landed (the database refuses an intent that comes first)."""
    job = fake.create_job(items=200)
    async with PostgresLedger(postgres_dsn, schema=postgres_schema) as ledger:
        await slow_acknowledgements(postgres_dsn, postgres_schema, 0.3)
        await execute(
            postgres_dsn,
            f"CREATE FUNCTION {postgres_schema}.acknowledged_first() RETURNS trigger"
            " LANGUAGE plpgsql AS $$ BEGIN IF EXISTS (SELECT 1 FROM"
            f" {postgres_schema}.batch b LEFT JOIN {postgres_schema}.acknowledgement a"
            " ON a.batch_id = b.id WHERE b.job_id = NEW.job_id AND a.batch_id IS NULL)"
            " THEN RAISE EXCEPTION 'intent before an acknowledgement'; END IF;"
            " RETURN NEW; END $$",
            f"CREATE TRIGGER acknowledged_first BEFORE INSERT ON {postgres_schema}.final_event"
            f" FOR EACH ROW EXECUTE FUNCTION {postgres_schema}.acknowledged_first()",
        )
        async with client_for(fake, max_concurrency=2) as client:
            run = client.job(job.id, ledger=ledger)
            async with run.hold():
                await run.update(successful_updates(job.item_ids))
                outcome = await run.complete()
    assert outcome.successful == 200
    assert len(fake.journal.final_events_applied(job.id)) == 1


async def refuse_acknowledgements(dsn: str, schema: str, condition: str) -> None:
    """The database refuses each acknowledgement row for which `condition` holds (`NEW` is
    the row), as a full disk would."""
    await execute(
        dsn,
        f"CREATE FUNCTION {schema}.refuse() RETURNS trigger LANGUAGE plpgsql"
        f" AS $$ BEGIN IF {condition} THEN RAISE EXCEPTION 'could not extend file'; END IF;"
        " RETURN NEW; END $$",
        f"CREATE TRIGGER refuse BEFORE INSERT ON {schema}.acknowledgement"
        f" FOR EACH ROW EXECUTE FUNCTION {schema}.refuse()",
    )


async def refuse_all_but_the_first_batch(dsn: str, schema: str) -> None:
    await refuse_acknowledgements(
        dsn, schema, f"NEW.batch_id > (SELECT min(id) FROM {schema}.batch)"
    )


async def test_an_acknowledgement_that_did_not_land_is_raised_once_with_the_report(
    fake: FakePleo, postgres_dsn: str, postgres_schema: str
) -> None:
    """When the database refuses an acknowledgement, update() raises LedgerError naming the
    job, with the call's report, and no event is sent; the run then completes once from what
    it knows Pleo acknowledged, sending nothing twice."""
    job = fake.create_job(items=150)
    async with PostgresLedger(postgres_dsn, schema=postgres_schema) as ledger:
        await refuse_all_but_the_first_batch(postgres_dsn, postgres_schema)
        async with client_for(fake, max_concurrency=1) as client:
            run = client.job(job.id, ledger=ledger)
            with pytest.raises(
                LedgerError, match=f"acknowledgement of job {job.id} was not rec"
            ) as raised:
                await run.update(successful_updates(job.item_ids))
            report = raised.value.report
            assert report is not None
            assert len(report.acknowledged) == 150
            assert fake.journal.events(job.id) == []
            outcome = await run.complete()
    assert outcome.successful == 150
    assert len(fake.journal.final_events_applied(job.id)) == 1
    assert fake.journal.resent_after_ack() == {}
    assert len(fake.journal.puts(job.id)) == 2


async def test_a_worker_resuming_after_an_unrecorded_acknowledgement_reconciles_it(
    fake: FakePleo, postgres_dsn: str, postgres_schema: str
) -> None:
    """The batch whose acknowledgement was refused stays in flight in the database: another
    worker resuming the job learns from Pleo that it landed, sends nothing again, and
    completes once."""
    job = fake.create_job(items=150)
    async with PostgresLedger(postgres_dsn, schema=postgres_schema) as ledger:
        await refuse_all_but_the_first_batch(postgres_dsn, postgres_schema)
        async with client_for(fake, max_concurrency=1) as client:
            with pytest.raises(LedgerError, match="was not recorded"):
                await client.job(job.id, ledger=ledger).update(successful_updates(job.item_ids))
    await execute(postgres_dsn, f"DROP TRIGGER refuse ON {postgres_schema}.acknowledgement")
    async with (
        PostgresLedger(postgres_dsn, schema=postgres_schema) as ledger,
        client_for(fake) as client,
    ):
        run = client.job(job.id, ledger=ledger)
        again = await run.update(successful_updates(job.item_ids))
        outcome = await run.complete()
    assert len(again.acknowledged) == 0
    assert len(again.skipped) == 150
    assert outcome.successful == 150
    assert len(fake.journal.final_events_applied(job.id)) == 1
    assert fake.journal.resent_after_ack() == {}
    assert len(fake.journal.puts(job.id)) == 2


async def test_an_acknowledgement_the_database_refuses_fails_only_its_own_job(
    postgres_dsn: str, postgres_schema: str
) -> None:
    """Acknowledgements of two jobs that go in one statement: the database refuses job A's,
    and only job A is told; job B's is written."""
    async with PostgresLedger(postgres_dsn, schema=postgres_schema) as ledger:
        batches = []
        for job_id, entry in ((JOB_A, ENTRY_1), (JOB_IDS[0], ENTRY_2)):
            job = await ledger.open_job(job_id)
            await job.turn().__aenter__()
            tracker = new_tracker(job.acknowledgements)
            batch = planned(tracker, [ItemUpdate.successful(entry)])
            assert batch.updates is not None
            await job.record_in_flight(batch, encode_item_updates(batch.updates))
            tracker.reconcile(batch, [entry], ())
            batches.append((job, batch))
        await refuse_acknowledgements(
            postgres_dsn,
            postgres_schema,
            f"(SELECT job_id FROM {postgres_schema}.batch WHERE id = NEW.batch_id) = '{JOB_A}'",
        )
        for job, batch in batches:  # in one turn of the loop: one statement for both
            await job.record_acknowledged(batch)
        (job_a, _), (job_b, _) = batches
        with pytest.raises(LedgerError, match=f"acknowledgement of job {JOB_A} was not rec"):
            await job_a.acknowledgements_written()
        await job_b.acknowledgements_written()
        await job_a.acknowledgements_written()  # told once
        for job, _ in batches:
            await job.turn().__aexit__(None, None, None)
    written = await fetch(
        postgres_dsn,
        f"SELECT b.job_id FROM {postgres_schema}.acknowledgement"
        f" JOIN {postgres_schema}.batch b ON b.id = batch_id",
    )
    assert written == [(JOB_IDS[0],)]


async def test_acknowledgements_that_come_while_one_is_written_go_in_one_statement(
    fake: FakePleo, postgres_dsn: str, postgres_schema: str
) -> None:
    """While the first acknowledgement's statement is on its way, the acknowledgements of the
    answers that come meanwhile wait, and then go in one statement together: 16 batches cost
    two statements at most (those queued before the first left, and the rest), and every one
    of them is written."""
    job = fake.create_job(items=1600)
    s = postgres_schema
    async with PostgresLedger(postgres_dsn, schema=s) as ledger:
        await execute(
            postgres_dsn,
            f"CREATE TABLE {s}.statement_rows (rows integer NOT NULL)",
            f"CREATE FUNCTION {s}.count_rows() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NOT EXISTS (SELECT 1 FROM {s}.statement_rows) THEN PERFORM pg_sleep(2); END IF;"
            f" INSERT INTO {s}.statement_rows SELECT count(*) FROM written; RETURN NULL; END $$",
            f"CREATE TRIGGER count_rows AFTER INSERT ON {s}.acknowledgement"
            " REFERENCING NEW TABLE AS written FOR EACH STATEMENT"
            f" EXECUTE FUNCTION {s}.count_rows()",
        )
        async with client_for(fake, max_concurrency=16) as client:
            report = await client.job(job.id, ledger=ledger).update(
                successful_updates(job.item_ids)
            )
    assert len(report.acknowledged) == 1600
    rows = await fetch(postgres_dsn, f"SELECT rows FROM {s}.statement_rows")
    assert len(rows) <= 2
    assert sum(count for (count,) in rows) == 16
    written = await fetch(postgres_dsn, f"SELECT count(*) FROM {s}.acknowledgement")
    assert written == [(16,)]
