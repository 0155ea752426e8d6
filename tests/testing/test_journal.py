"""The request journal and its assertion helpers."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp

from pleo_export_async.testing import FakePleo, Faults, FaultSpec

from .helpers import call, failed, post_event, put_items, session_for, successful


async def test_requests_are_recorded_in_order(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """Each request is journalled with seq, method, path, query, body, status and times."""
    job = fake_pleo.create_job(items=1)
    await call(
        session, "GET", "/v3/export-jobs", params=[("statuses", "pending"), ("statuses", "failed")]
    )
    await put_items(session, job.id, [successful(job.item_ids[0])])
    first, second = fake_pleo.journal.requests
    assert (first.seq, first.method, first.path) == (1, "GET", "/v3/export-jobs")
    assert first.query == {"statuses": ["pending", "failed"]}
    assert first.body is None
    assert (second.seq, second.method, second.status, second.delivered) == (2, "PUT", 200, True)
    assert second.body == [successful(job.item_ids[0])]
    assert second.job_id == job.id
    assert first.answered_at is not None
    assert second.answered_at is not None
    assert first.received_at <= first.answered_at <= second.received_at <= second.answered_at


async def test_unauthorised_requests_are_journalled_too(fake_pleo: FakePleo) -> None:
    """A request refused with 401 is still in the journal, with its status."""
    async with aiohttp.ClientSession(fake_pleo.base_url) as anonymous:
        await call(anonymous, "GET", "/v3/export-jobs")
    [entry] = fake_pleo.journal.requests
    assert (entry.status, entry.delivered) == (401, True)


async def test_count_puts_and_events_helpers(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """count, puts and events select requests by method, path prefix and job."""
    first = fake_pleo.create_job(items=1)
    second = fake_pleo.create_job(items=1)
    await put_items(session, first.id, [successful(first.item_ids[0])])
    await put_items(session, second.id, [successful(second.item_ids[0])])
    await post_event(session, first.id, "completed")
    await call(session, "GET", f"/v3/export-jobs/{first.id}")
    journal = fake_pleo.journal
    assert journal.count() == 4
    assert journal.count("PUT") == 2
    assert journal.count(path_prefix="/v3/export-jobs/") == 3
    assert journal.count("get", "/v3/export-jobs") == 1
    assert [entry.seq for entry in journal.puts(first.id)] == [1]
    assert [entry.seq for entry in journal.puts()] == [1, 2]
    assert [entry.seq for entry in journal.events(first.id)] == [3]
    assert journal.events(second.id) == []


async def test_max_in_flight_counts_concurrent_requests() -> None:
    """Five concurrent requests held by latency are five in flight; sequential ones are one."""
    async with FakePleo(faults=Faults(latency=0.2)) as fake, session_for(fake) as session:
        await call(session, "GET", "/v3/export-jobs")
        await call(session, "GET", "/v3/export-jobs")
        assert fake.journal.max_in_flight == 1
        await asyncio.gather(*(call(session, "GET", "/v3/export-jobs") for _ in range(5)))
        assert fake.journal.max_in_flight == 5
        assert fake.journal.in_flight == 0


async def test_item_history_follows_one_entry(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """item_history lists every PUT occurrence of an ID with its commit and ack flags."""
    job = fake_pleo.create_job(items=2)
    entry_id, other = job.item_ids
    fake_pleo.faults.item_error = FaultSpec(at={1})
    await put_items(session, job.id, [failed(entry_id)])
    await put_items(session, job.id, [successful(other)])
    await put_items(session, job.id, [successful(entry_id.upper())])
    history = fake_pleo.journal.item_history(entry_id)
    assert [(s.seq, s.committed, s.acknowledged_in_data, s.delivered) for s in history] == [
        (1, False, False, True),
        (3, True, True, True),
    ]
    assert history[0].body == failed(entry_id)
    assert fake_pleo.journal.requests[0].rejected == {entry_id: "EXPORT_ENTRY_STATUS_UPDATE_FAILED"}


# ---- resent_after_ack ---------------------------------------------------------------------


async def test_resending_an_acknowledged_identical_update_is_counted(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """Sending the same body again after its acknowledgement was delivered counts as a resend."""
    job = fake_pleo.create_job(items=2)
    entry_id, other = job.item_ids
    await put_items(session, job.id, [failed(entry_id), successful(other)])
    await put_items(session, job.id, [failed(entry_id)])
    await put_items(session, job.id, [failed(entry_id)])
    assert fake_pleo.journal.resent_after_ack() == {entry_id: 2}
    assert fake_pleo.journal.resent_after_ack(job.id) == {entry_id: 2}


async def test_any_send_after_an_acknowledged_success_is_counted(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """After a delivered ack of a successful update, any later send of that ID counts."""
    job = fake_pleo.create_job(items=1)
    entry_id = job.item_ids[0]
    await put_items(session, job.id, [successful(entry_id, externalId="JE-1")])
    await put_items(session, job.id, [failed(entry_id)])
    assert fake_pleo.journal.resent_after_ack() == {entry_id: 1}


async def test_superseding_an_acknowledged_failure_is_not_counted(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """An acknowledged failed item may be replaced by a different update (R4)."""
    job = fake_pleo.create_job(items=1)
    entry_id = job.item_ids[0]
    await put_items(session, job.id, [failed(entry_id)])
    await put_items(session, job.id, [successful(entry_id)])
    assert fake_pleo.journal.resent_after_ack() == {}


async def test_retrying_unacknowledged_updates_is_not_counted() -> None:
    """Retries after a 503, a lost response, a partial ack or an item error are not resends."""
    faults = Faults(
        server_error=FaultSpec(at={1}),
        lost_response=FaultSpec(at={2, 3}),
        partial_ack=FaultSpec(at={4}),
        item_error=FaultSpec(at={6}),
    )
    async with FakePleo(faults=faults) as fake, session_for(fake) as session:
        job = fake.create_job(items=4)
        updates = [successful(i) for i in job.item_ids]
        assert (await put_items(session, job.id, updates))[0] == 503  # seq 1
        with contextlib.suppress(aiohttp.ServerDisconnectedError):
            await put_items(session, job.id, updates)  # seq 2, and aiohttp's own resend: seq 3
        _, body = await put_items(session, job.id, updates)  # seq 4: partial ack
        acknowledged = {item["accountingEntryId"] for item in body["data"]}
        missing = [u for u in updates if u["accountingEntryId"] not in acknowledged]
        assert missing
        await put_items(session, job.id, missing)  # seq 5: resend of unacknowledged ones
        other = fake.create_job(items=1)
        await put_items(session, other.id, [failed(other.item_ids[0])])  # seq 6: item error
        await put_items(session, other.id, [failed(other.item_ids[0])])  # seq 7
        assert [entry.seq for entry in fake.journal.requests] == [1, 2, 3, 4, 5, 6, 7]
        assert fake.journal.resent_after_ack() == {}


async def test_partially_acknowledged_ids_that_are_resent_are_counted() -> None:
    """After a partial ack, resending an acknowledged ID counts; resending a missing one doesn't."""
    faults = Faults(partial_ack=FaultSpec(at={1}), partial_ack_fraction=0.5)
    async with FakePleo(faults=faults) as fake, session_for(fake) as session:
        job = fake.create_job(items=4)
        updates = [successful(i) for i in job.item_ids]
        _, body = await put_items(session, job.id, updates)
        acknowledged = {item["accountingEntryId"] for item in body["data"]}
        await put_items(session, job.id, updates)
        assert fake.journal.resent_after_ack() == dict.fromkeys(acknowledged, 1)


async def test_send_received_before_the_ack_was_delivered_is_not_counted() -> None:
    """A concurrent send that reached the fake before an ack was delivered is not a resend."""
    faults = Faults(slow_response=FaultSpec(at={1}), slow_response_delay=0.3)
    async with FakePleo(faults=faults) as fake, session_for(fake) as session:
        job = fake.create_job(items=1)
        update = [failed(job.item_ids[0])]
        slow = asyncio.create_task(put_items(session, job.id, update))
        await asyncio.sleep(0.1)
        await put_items(session, job.id, update)  # seq 2: answered while seq 1 still sleeps
        await slow
        first, second = fake.journal.requests
        assert first.answered_at is not None
        assert first.answered_at > second.received_at
        assert fake.journal.resent_after_ack() == {}


async def test_resend_filter_by_job(fake_pleo: FakePleo, session: aiohttp.ClientSession) -> None:
    """resent_after_ack(job_id) only looks at that job's PUTs."""
    first = fake_pleo.create_job(items=1)
    second = fake_pleo.create_job(items=1)
    for _ in range(2):
        await put_items(session, first.id, [successful(first.item_ids[0])])
    assert fake_pleo.journal.resent_after_ack(first.id) == {first.item_ids[0]: 1}
    assert fake_pleo.journal.resent_after_ack(second.id) == {}


# ---- final_events_applied -----------------------------------------------------------------


async def test_final_events_applied_lists_only_applied_final_events(
    fake_pleo: FakePleo, session: aiohttp.ClientSession
) -> None:
    """started, refused and malformed events are not listed; applied final ones are, in order."""
    first = fake_pleo.create_job(items=0, status="pending")
    second = fake_pleo.create_job(items=0)
    await post_event(session, first.id, "started")  # seq 1: not final
    await post_event(session, first.id, "completed")  # seq 2: applied
    await post_event(session, first.id, "completed")  # seq 3: 422, not applied
    await post_event(session, second.id, "bogus")  # seq 4: 400
    await post_event(session, second.id, "failed")  # seq 5: applied
    journal = fake_pleo.journal
    assert [entry.seq for entry in journal.final_events_applied()] == [2, 5]
    assert [entry.seq for entry in journal.final_events_applied(first.id)] == [2]
    assert [entry.seq for entry in journal.final_events_applied(second.id)] == [5]
