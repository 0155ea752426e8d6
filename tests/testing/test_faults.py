"""Fault injection: each fault, its scope, its journal marks, and seeded repeatability."""

from __future__ import annotations

import asyncio
import email.utils
import time

import aiohttp
import pytest

from pleo_export_async.testing import FakePleo, Faults, FaultSpec
from pleo_export_async.testing._faults import FaultDecider

from .helpers import call, post_event, put_items, session_for, successful

# ---- latency ------------------------------------------------------------------------------


async def test_fixed_latency_delays_every_api_request() -> None:
    """A fixed latency delays each /v3 request by at least that long."""
    async with FakePleo(faults=Faults(latency=0.15)) as fake, session_for(fake) as session:
        started = time.monotonic()
        status, _ = await call(session, "GET", "/v3/export-jobs")
        assert status == 200
        assert time.monotonic() - started >= 0.15
        [entry] = fake.journal.requests
        assert entry.answered_at is not None
        assert entry.answered_at - entry.received_at >= 0.15


async def test_latency_range_is_seeded_and_within_bounds() -> None:
    """A (low, high) latency is drawn per request number, within bounds, the same per seed."""
    draws = [FaultDecider(seed=5).latency((0.1, 0.3), seq) for seq in range(1, 50)]
    assert all(0.1 <= draw <= 0.3 for draw in draws)
    assert len(set(draws)) > 40
    assert draws == [FaultDecider(seed=5).latency((0.1, 0.3), seq) for seq in range(1, 50)]
    assert draws != [FaultDecider(seed=6).latency((0.1, 0.3), seq) for seq in range(1, 50)]


# ---- server errors ------------------------------------------------------------------------


async def test_server_error_at_request_number_commits_nothing() -> None:
    """server_error at={2}: exactly the 2nd request gets 503 and its update is not committed."""
    faults = Faults(server_error=FaultSpec(at={2}))
    async with FakePleo(faults=faults) as fake, session_for(fake) as session:
        job = fake.create_job(items=3)
        results = [await put_items(session, job.id, [successful(i)]) for i in job.item_ids]
        assert [status for status, _ in results] == [200, 503, 200]
        assert results[1][1]["type"] == "SERVICE_UNAVAILABLE"
        assert [item["status"] for item in fake.items(job.id)] == [
            "successful",
            "pending",
            "successful",
        ]
        assert [entry.fault for entry in fake.journal.requests] == [None, "server_error", None]


async def test_server_error_status_is_configurable_and_event_not_applied() -> None:
    """server_error_status=500 answers 500 INTERNAL_SERVER_ERROR and the event is not applied."""
    faults = Faults(server_error=FaultSpec(probability=1.0), server_error_status=500)
    async with FakePleo(faults=faults) as fake, session_for(fake) as session:
        job = fake.create_job(items=0)
        status, body = await post_event(session, job.id, "completed")
        assert (status, body["type"]) == (500, "INTERNAL_SERVER_ERROR")
        assert fake.job_status(job.id) == "in_progress"
        assert fake.journal.final_events_applied() == []


async def test_faults_can_be_changed_between_requests() -> None:
    """Assigning fake.faults, or one of its fields, takes effect on the next request."""
    async with FakePleo() as fake, session_for(fake) as session:
        fake.faults = Faults(server_error=FaultSpec(probability=1.0))
        assert (await call(session, "GET", "/v3/export-jobs"))[0] == 503
        fake.faults.server_error = FaultSpec()
        assert (await call(session, "GET", "/v3/export-jobs"))[0] == 200
        fake.faults.server_error_status = 502
        fake.faults.server_error = FaultSpec(at={3})
        assert (await call(session, "GET", "/v3/export-jobs"))[0] == 502


def test_fault_configuration_is_validated() -> None:
    """Out-of-range probabilities, request numbers, latencies and statuses are refused."""
    with pytest.raises(ValueError, match="probability"):
        FaultSpec(probability=1.5)
    with pytest.raises(ValueError, match="1-based"):
        FaultSpec(at={0})
    with pytest.raises(ValueError, match="latency"):
        Faults(latency=(0.5, 0.1))
    with pytest.raises(ValueError, match="5xx"):
        Faults(server_error_status=404)
    faults = Faults()
    with pytest.raises(ValueError, match="partial_ack_fraction"):
        faults.partial_ack_fraction = 2.0


async def test_same_seed_gives_same_faults() -> None:
    """A probabilistic fault hits the same request numbers for the same seed, others for another."""

    async def statuses(seed: int) -> list[int]:
        faults = Faults(server_error=FaultSpec(probability=0.5))
        async with FakePleo(seed=seed, faults=faults) as fake, session_for(fake) as session:
            return [(await call(session, "GET", "/v3/export-jobs"))[0] for _ in range(16)]

    first = await statuses(11)
    assert set(first) == {200, 503}
    assert await statuses(11) == first
    assert await statuses(12) != first


async def test_fault_numbers_on_other_request_kinds_are_ignored() -> None:
    """lost_response at a GET's number does nothing: it applies to PUT items only."""
    faults = Faults(lost_response=FaultSpec(at={1}), lost_event_response=FaultSpec(at={1}))
    async with FakePleo(faults=faults) as fake, session_for(fake) as session:
        assert (await call(session, "GET", "/v3/export-jobs"))[0] == 200
        assert fake.journal.requests[0].delivered is True


# ---- rate limiting ------------------------------------------------------------------------


async def test_rate_limit_answers_429_with_retry_after_seconds() -> None:
    """429 TOO_MANY_REQUESTS with Retry-After in whole seconds (rounded up); nothing committed."""
    faults = Faults(rate_limit=FaultSpec(at={1}), retry_after=0.2)
    async with FakePleo(faults=faults) as fake, session_for(fake) as session:
        job = fake.create_job(items=1)
        async with session.put(
            f"/v3/export-jobs/{job.id}/items", json=[successful(job.item_ids[0])]
        ) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "1"
            assert (await response.json(content_type=None))["type"] == "TOO_MANY_REQUESTS"
        assert fake.item(job.id, job.item_ids[0])["status"] == "pending"
        [window] = fake.journal.pause_windows
        assert window.opened_by == 1
        assert window.end - window.start == pytest.approx(1.0)


async def test_rate_limit_retry_after_as_http_date() -> None:
    """With retry_after_http_date, Retry-After is an HTTP date at least retry_after ahead."""
    faults = Faults(rate_limit=FaultSpec(at={1}), retry_after=1.0, retry_after_http_date=True)
    async with FakePleo(faults=faults) as fake, session_for(fake) as session:
        before = time.time()
        async with session.get("/v3/export-jobs") as response:
            assert response.status == 429
            until = email.utils.parsedate_to_datetime(response.headers["Retry-After"]).timestamp()
        assert before + 1.0 <= until <= time.time() + 2.0
        [window] = fake.journal.pause_windows
        assert 0.9 <= window.end - window.start <= 2.1


async def test_requests_during_pause_catches_an_early_retry() -> None:
    """A request sent 50 ms after a 429 asking for 1 s is reported; the 429 itself is not."""
    faults = Faults(rate_limit=FaultSpec(at={1}), retry_after=1.0)
    async with FakePleo(faults=faults) as fake, session_for(fake) as session:
        assert (await call(session, "GET", "/v3/export-jobs"))[0] == 429
        assert fake.journal.requests_during_pause() == []
        await asyncio.sleep(0.05)
        assert (await call(session, "GET", "/v3/export-jobs"))[0] == 200
        first, second = fake.journal.requests
        assert first.connection == second.connection
        assert fake.journal.requests_during_pause() == [second]


async def test_requests_during_pause_epsilon_sets_the_grace_at_the_edges() -> None:
    """A retry 20 ms after the 429 is missed with a 50 ms epsilon and caught with a 5 ms one."""
    faults = Faults(rate_limit=FaultSpec(at={1}), retry_after=1.0)
    async with FakePleo(faults=faults) as fake, session_for(fake) as session:
        assert (await call(session, "GET", "/v3/export-jobs"))[0] == 429
        await asyncio.sleep(0.02)
        assert (await call(session, "GET", "/v3/export-jobs"))[0] == 200
        assert fake.journal.requests_during_pause(epsilon=0.05) == []
        assert [e.seq for e in fake.journal.requests_during_pause(epsilon=0.005)] == [2]


async def test_requests_during_pause_catches_an_early_request_on_a_new_connection() -> None:
    """A request on another connection, received well inside the pause, is reported."""
    faults = Faults(rate_limit=FaultSpec(at={1}), retry_after=1.0)
    async with FakePleo(faults=faults) as fake, session_for(fake, force_close=True) as session:
        assert (await call(session, "GET", "/v3/export-jobs"))[0] == 429
        await asyncio.sleep(0.05)
        assert (await call(session, "GET", "/v3/export-jobs"))[0] == 200
        first, second = fake.journal.requests
        assert first.connection != second.connection
        assert fake.journal.requests_during_pause() == [second]


async def test_requests_during_pause_ignores_requests_after_the_window() -> None:
    """A request sent after Retry-After has passed is not reported."""
    faults = Faults(rate_limit=FaultSpec(at={1}), retry_after=0.1)
    async with FakePleo(faults=faults) as fake, session_for(fake) as session:
        assert (await call(session, "GET", "/v3/export-jobs"))[0] == 429
        await asyncio.sleep(1.05)  # the advertised "Retry-After: 1"
        assert (await call(session, "GET", "/v3/export-jobs"))[0] == 200
        assert fake.journal.requests_during_pause() == []


async def test_requests_during_pause_ignores_requests_already_in_flight() -> None:
    """A request received before the 429 was sent does not count as ignoring the pause."""
    faults = Faults(latency=0.1, rate_limit=FaultSpec(at={1}), retry_after=1.0)
    async with FakePleo(faults=faults) as fake, session_for(fake) as session:
        statuses = await asyncio.gather(
            call(session, "GET", "/v3/export-jobs"), call(session, "GET", "/v3/export-jobs")
        )
        assert sorted(status for status, _ in statuses) == [200, 429]
        assert fake.journal.requests_during_pause() == []


# ---- lost and partial acknowledgements ----------------------------------------------------


async def test_lost_response_commits_but_client_sees_disconnect() -> None:
    """lost_response: the update is committed, the client gets ServerDisconnectedError."""
    faults = Faults(lost_response=FaultSpec(probability=1.0))
    async with FakePleo(faults=faults) as fake, session_for(fake) as session:
        job = fake.create_job(items=2)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await put_items(session, job.id, [successful(i) for i in job.item_ids])
        assert [item["status"] for item in fake.items(job.id)] == ["successful", "successful"]
        # aiohttp itself sends an idempotent request (PUT) once more after a disconnect
        # (3.14: always; older versions: on a reused connection), so there may be two PUTs.
        entries = fake.journal.requests
        assert 1 <= len(entries) <= 2
        for entry in entries:
            assert (entry.status, entry.delivered, entry.fault) == (None, False, "lost_response")
        for send in fake.journal.item_history(job.item_ids[0]):
            assert (send.committed, send.acknowledged_in_data, send.delivered) == (
                True,
                True,
                False,
            )


async def test_single_lost_response_is_hidden_by_aiohttps_own_resend() -> None:
    """lost_response at={1}: aiohttp's own resend of the PUT (seq 2) gets the answer."""
    faults = Faults(lost_response=FaultSpec(at={1}))
    async with FakePleo(faults=faults) as fake, session_for(fake) as session:
        job = fake.create_job(items=1)
        status, body = await put_items(session, job.id, [successful(job.item_ids[0])])
        assert (status, len(body["data"])) == (200, 1)
        assert [(e.seq, e.fault, e.delivered) for e in fake.journal.requests] == [
            (1, "lost_response", False),
            (2, None, True),
        ]
        assert fake.journal.resent_after_ack() == {}


async def test_partial_ack_leaves_committed_ids_out_of_data() -> None:
    """partial_ack: every item is committed, but a fraction is in neither data nor errors."""
    faults = Faults(partial_ack=FaultSpec(at={1}), partial_ack_fraction=0.3)
    async with FakePleo(faults=faults) as fake, session_for(fake) as session:
        job = fake.create_job(items=10)
        status, body = await put_items(session, job.id, [successful(i) for i in job.item_ids])
        assert status == 200
        assert body["errors"] == []
        acknowledged = {item["accountingEntryId"] for item in body["data"]}
        assert len(acknowledged) == 7
        assert acknowledged < set(job.item_ids)
        assert all(item["status"] == "successful" for item in fake.items(job.id))
        [entry] = fake.journal.requests
        assert entry.fault == "partial_ack"
        assert entry.acknowledged_ids == acknowledged
        assert entry.committed_indexes == frozenset(range(10))


async def test_partial_ack_leaves_out_at_least_one_id() -> None:
    """A partial acknowledgement of a single committed item leaves it out."""
    faults = Faults(partial_ack=FaultSpec(probability=1.0))
    async with FakePleo(faults=faults) as fake, session_for(fake) as session:
        job = fake.create_job(items=1)
        _, body = await put_items(session, job.id, [successful(job.item_ids[0])])
        assert body == {"data": [], "errors": []}
        assert fake.item(job.id, job.item_ids[0])["status"] == "successful"


# ---- per-item errors ----------------------------------------------------------------------


async def test_item_error_at_request_fails_every_item() -> None:
    """item_error at={1}: every item of request 1 is in errors and none is committed."""
    faults = Faults(item_error=FaultSpec(at={1}))
    async with FakePleo(faults=faults) as fake, session_for(fake) as session:
        job = fake.create_job(items=3)
        _, body = await put_items(session, job.id, [successful(i) for i in job.item_ids])
        assert body["data"] == []
        assert [(e["accountingEntryId"], e["type"]) for e in body["errors"]] == [
            (i, "EXPORT_ENTRY_STATUS_UPDATE_FAILED") for i in job.item_ids
        ]
        assert all(item["status"] == "pending" for item in fake.items(job.id))
        _, body = await put_items(session, job.id, [successful(i) for i in job.item_ids])
        assert (len(body["data"]), body["errors"]) == (3, [])


async def test_item_error_probability_is_per_item() -> None:
    """item_error with a probability fails some items of a request; the others commit."""
    faults = Faults(
        item_error=FaultSpec(probability=0.5), item_error_type="ACCOUNTING_ENTRY_UPDATE_FAILED"
    )
    async with FakePleo(faults=faults) as fake, session_for(fake) as session:
        job = fake.create_job(items=100)
        _, body = await put_items(session, job.id, [successful(i) for i in job.item_ids])
        errored = {e["accountingEntryId"] for e in body["errors"]}
        acknowledged = {item["accountingEntryId"] for item in body["data"]}
        assert 20 < len(errored) < 80
        assert errored | acknowledged == set(job.item_ids)
        assert {e["type"] for e in body["errors"]} == {"ACCOUNTING_ENTRY_UPDATE_FAILED"}
        statuses = {item["accountingEntryId"]: item["status"] for item in fake.items(job.id)}
        assert {statuses[i] for i in errored} == {"pending"}
        assert {statuses[i] for i in acknowledged} == {"successful"}
        assert fake.journal.requests[0].rejected == dict.fromkeys(
            errored, "ACCOUNTING_ENTRY_UPDATE_FAILED"
        )


# ---- events -------------------------------------------------------------------------------


async def test_lost_event_response_applies_the_event() -> None:
    """lost_event_response: the event is applied, the client gets ServerDisconnectedError."""
    faults = Faults(lost_event_response=FaultSpec(at={1}))
    async with FakePleo(faults=faults) as fake, session_for(fake, force_close=True) as session:
        job = fake.create_job(items=0)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await post_event(session, job.id, "completed")
        assert fake.job_status(job.id) == "completed"
        [applied] = fake.journal.final_events_applied(job.id)
        assert (applied.delivered, applied.status, applied.fault) == (
            False,
            None,
            "lost_event_response",
        )
        status, body = await post_event(session, job.id, "completed")
        assert (status, body["type"]) == (422, "INVALID_EXPORT_JOB_STATUS_CHANGE")
        assert len(fake.journal.final_events_applied(job.id)) == 1


# ---- slow responses -----------------------------------------------------------------------


async def test_slow_response_past_client_timeout_is_committed_but_not_delivered() -> None:
    """slow_response: the PUT commits, the client times out, the journal says not delivered."""
    faults = Faults(slow_response=FaultSpec(at={1}), slow_response_delay=0.5)
    async with FakePleo(faults=faults) as fake, session_for(fake) as session:
        job = fake.create_job(items=1)
        with pytest.raises(asyncio.TimeoutError):
            await put_items(
                session,
                job.id,
                [successful(job.item_ids[0])],
                timeout=aiohttp.ClientTimeout(total=0.15),
            )
        assert fake.item(job.id, job.item_ids[0])["status"] == "successful"
        async with asyncio.timeout(3):
            await fake.journal.wait_idle()
        [entry] = fake.journal.requests
        assert (entry.fault, entry.delivered) == ("slow_response", False)


async def test_slow_response_within_client_timeout_is_delivered() -> None:
    """A slow response the client waits for arrives late and is marked delivered."""
    faults = Faults(slow_response=FaultSpec(probability=1.0), slow_response_delay=0.2)
    async with FakePleo(faults=faults) as fake, session_for(fake) as session:
        started = time.monotonic()
        assert (await call(session, "GET", "/v3/export-jobs"))[0] == 200
        assert time.monotonic() - started >= 0.2
        assert fake.journal.requests[0].delivered is True


async def test_forbidden_answers_403_and_changes_nothing() -> None:
    """The forbidden fault answers 403 FORBIDDEN to a valid credential and commits nothing."""
    async with FakePleo(faults=Faults(forbidden=FaultSpec(at={1}))) as fake:
        job = fake.create_job(items=1)
        async with session_for(fake) as session:
            status, body = await put_items(session, job.id, [successful(job.item_ids[0])])
            assert (status, body["type"]) == (403, "FORBIDDEN")
            assert fake.item(job.id, job.item_ids[0])["status"] == "pending"
            status, _ = await put_items(session, job.id, [successful(job.item_ids[0])])
            assert status == 200
        assert fake.journal.requests[0].faults == ["forbidden"]
