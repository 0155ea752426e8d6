"""What every chaos, cancellation and crash run checks afterwards, from the fake's journal alone,
and the pieces the runs share: job contents, fault plans, and a connector's finishing loop."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from hypothesis import strategies as st

from pleo_export_async import (
    ApiError,
    CompletionOutcome,
    IncompleteJob,
    ItemUpdate,
    JobEvent,
    JobRun,
    RetryPolicy,
    TransportError,
)
from pleo_export_async.testing import FakePleo, Faults, FaultSpec, Journal, JournalEntry
from pleo_export_async.testing._journal import DEFAULT_PAUSE_EPSILON

from .figures import Figures

#: Item error types Pleo may clear on a later attempt (R5), in both spellings Pleo uses.
TRANSIENT_ITEM_ERRORS: Final = (
    "EXPORT_ENTRY_STATUS_UPDATE_FAILED",
    "ACCOUNTING_ENTRY_UPDATE_FAILED",
    "export_entry_status_update_failed",
)
#: The client timeout of the runs whose fault plan has latency spikes past it (only those: a
#: tight timeout on a loaded machine makes the client give up on answers the fake did write).
SPIKE_TIMEOUT: Final = 1.5
#: A spike: the answer comes this long after the work is done.
SPIKE_DELAY: Final = 2.0
#: How much earlier than `timeout` after its arrival a request is taken as given up by the
#: client, when counting the requests in flight: covers the way from the client to the fake.
GIVE_UP_MARGIN: Final = 0.5
#: The retries of the chaos and cancellation runs: enough to outlast any fault plan's bursts,
#: waits short enough for hundreds of jobs.
RETRY: Final = RetryPolicy(max_attempts=10, initial_delay=0.01, max_delay=0.05)
REPO_TESTS: Final = Path(__file__).resolve().parents[1]


def digest(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True)
class JobPlan:
    """What a connector reports for a job: an update per item, and some updates for IDs the
    job does not have (Pleo rejects those with ACCOUNTING_ENTRY_DOES_NOT_EXIST)."""

    known: list[ItemUpdate]
    unknown: list[ItemUpdate]

    @property
    def updates(self) -> list[ItemUpdate]:
        """Known and unknown interleaved, as a connector would send them."""
        merged = list(self.known)
        step = max(1, len(merged) // (len(self.unknown) + 1))
        for offset, update in enumerate(self.unknown):
            merged.insert(min(len(merged), (offset + 1) * step + offset), update)
        return merged

    def expected_event(self) -> JobEvent:
        """R10: every item successful and none rejected -> completed; some successful and some
        failed or rejected -> completed_with_errors; none successful -> failed. The rejected
        updates for IDs the job does not have are not the job's items: left out."""
        successful = sum(1 for u in self.known if u.status.value == "successful")
        others = len(self.known) - successful
        if successful and not others:
            return JobEvent.COMPLETED
        if successful:
            return JobEvent.COMPLETED_WITH_ERRORS
        return JobEvent.FAILED


def item_update(entry_id: str, number: int, failed_share: float, seed: int) -> ItemUpdate:
    """A realistic update for an item: failed with a share of `failed_share`, else successful;
    the optional fields vary with the item."""
    draw = digest(seed, entry_id)
    if (draw % 10_000) / 10_000 < failed_share:
        reason_type = (
            "account_unknown",
            "vendor_unknown",
            "tax_code_unknown",
            "validation_failure",
        )[draw % 4]
        return ItemUpdate.failed(
            entry_id, reason=f"Line {number}: {reason_type} in the ERP", reason_type=reason_type
        )
    kind = draw % 3
    if kind == 0:
        return ItemUpdate.successful(entry_id, external_id=f"JE-{number}")
    if kind == 1:
        return ItemUpdate.successful(
            entry_id,
            external_id=f"JE-{number}",
            external_url=f"https://erp.example.com/je/{number}",
            exported_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=number),
        )
    return ItemUpdate.successful(entry_id)


def unknown_ids(count: int, seed: int) -> list[str]:
    """UUIDs no fake job has (the fake's own IDs are seeded from another stream)."""
    ids = []
    for n in range(count):
        value = digest("unknown", seed, n) << 64 | digest("unknown-low", seed, n)
        text = f"{value:032x}"
        ids.append(f"{text[:8]}-{text[8:12]}-4{text[13:16]}-8{text[17:20]}-{text[20:32]}")
    return ids


def job_plan(item_ids: Sequence[str], failed_share: float, unknown: int, seed: int) -> JobPlan:
    return JobPlan(
        known=[item_update(i, n, failed_share, seed) for n, i in enumerate(item_ids)],
        unknown=[ItemUpdate.successful(i, external_id="JE-X") for i in unknown_ids(unknown, seed)],
    )


# -- fault plans ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultPlan:
    """A random fault plan for the fake, and the client timeout it needs."""

    faults: Faults
    timeout: float

    def describe(self) -> str:
        return repr(self.faults)


_PROBABILITIES: Final = st.sampled_from([0.0, 0.0, 0.01, 0.03, 0.06, 0.1])
_EARLY: Final = st.integers(min_value=2, max_value=30)
_LATENCIES: Final[list[float | tuple[float, float]]] = [0.0, (0.0, 0.002), (0.0, 0.006)]


@st.composite
def fault_plans(draw: st.DrawFn) -> FaultPlan:
    """5xx, 429 with Retry-After, answers lost after the commit, answers cut off mid-body,
    partial acknowledgements, transient per-item errors, latency spikes past the client timeout,
    lost final-event answers; each off, at a few request numbers, or with a probability."""

    def spec(probability: st.SearchStrategy[float] = _PROBABILITIES) -> FaultSpec:
        return FaultSpec(
            probability=draw(probability),
            at=draw(st.frozensets(_EARLY, max_size=2)),
        )

    spikes = draw(st.booleans())
    faults = Faults(
        latency=draw(st.sampled_from(_LATENCIES)),
        server_error=spec(),
        server_error_status=draw(st.sampled_from([500, 502, 503, 504])),
        # Each Retry-After pauses the client a whole second (the header has whole seconds).
        rate_limit=FaultSpec(at=draw(st.frozensets(_EARLY, max_size=1))),
        retry_after=1.0,
        retry_after_http_date=draw(st.booleans()),
        lost_response=spec(),
        dropped_mid_body=spec(),
        partial_ack=spec(),
        partial_ack_fraction=draw(st.sampled_from([0.05, 0.3, 1.0])),
        item_error=FaultSpec(
            probability=draw(st.sampled_from([0.0, 0.002, 0.01])),
            at=draw(st.frozensets(_EARLY, max_size=1)),
        ),
        item_error_type=draw(st.sampled_from(TRANSIENT_ITEM_ERRORS)),
        lost_event_response=FaultSpec(probability=draw(st.sampled_from([0.0, 0.5, 1.0]))),
        slow_response=FaultSpec(at=draw(st.frozensets(_EARLY, min_size=1, max_size=1)))
        if spikes
        else FaultSpec(),
        slow_response_delay=SPIKE_DELAY,
    )
    return FaultPlan(faults, SPIKE_TIMEOUT if spikes else 5.0)


# -- finishing a job as a connector would -------------------------------------------------------

#: What a connector retries on: the network or Pleo failing for longer than the retry budget,
#: or items left unacknowledged by it.
GIVE_UP_AND_RETRY: Final = (TransportError, ApiError, IncompleteJob)


async def finish(
    run: JobRun,
    source: Callable[[], Iterable[ItemUpdate] | AsyncIterator[ItemUpdate]],
    *,
    rounds: int = 4,
) -> CompletionOutcome:
    """update() then complete(), as a connector's retry loop does once the retry budget ran out:
    update() again with the same input while items are unacknowledged (what was acknowledged is
    skipped), complete() again while the event is not known to be delivered."""
    last: BaseException | None = None
    needs_update = True
    for _ in range(rounds):
        try:
            if needs_update:
                await run.update(source())
                needs_update = False
            return await run.complete()
        except IncompleteJob as error:
            needs_update, last = True, error
        except GIVE_UP_AND_RETRY as error:
            last = error
    assert last is not None
    raise last


async def slow_source(
    updates: Sequence[ItemUpdate], pause_every: int, pause: float
) -> AsyncIterator[ItemUpdate]:
    """The updates, from an ERP that takes `pause` seconds now and then."""
    for number, update in enumerate(updates, 1):
        if pause_every and number % pause_every == 0:
            await asyncio.sleep(pause)
        yield update


# -- the checks -------------------------------------------------------------------------------


def committed_as_sent(item: dict[str, Any], update: ItemUpdate) -> bool:
    """Whether Pleo's item holds this update: status and every field."""
    exported = item.get("exportedAt")
    sent_exported = (
        None
        if update.exported_at is None
        else update.exported_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    return (
        item["status"] == update.status.value
        and item.get("externalId") == update.external_id
        and item.get("externalUrl") == update.external_url
        and item.get("failureReason") == update.failure_reason
        and item.get("failureReasonType")
        == (None if update.failure_reason_type is None else update.failure_reason_type.value)
        and (sent_exported is None or exported == sent_exported)
    )


def max_in_flight(
    entries: Iterable[JournalEntry], timeout: float, abandoned_at: float | None = None
) -> int:
    """The most /v3 requests the client had in flight at once, as the fake saw them.

    A request counts from its arrival until it was answered, or until the client must have given
    up on it: its timeout after the arrival (less a margin), or `abandoned_at` (a cancellation)
    for one that arrived before. The fake may still be working on a request the client
    abandoned, and that one is no longer the client's.
    """
    edges: list[tuple[float, int]] = []
    for entry in entries:
        if not entry.is_api:
            continue
        end = entry.received_at + max(0.0, timeout - GIVE_UP_MARGIN)
        if entry.answered_at is not None:
            end = min(end, entry.answered_at)
        if abandoned_at is not None and entry.received_at < abandoned_at:
            end = min(end, abandoned_at)
        if end <= entry.received_at:
            continue
        edges.append((entry.received_at, 1))
        edges.append((end, -1))
    highest = current = 0
    for _, step in sorted(edges):  # at a tie an end (-1) sorts before a start
        current += step
        highest = max(highest, current)
    return highest


def check_pauses(journal: Journal, max_concurrency: int) -> None:
    """No request was sent inside a Retry-After pause (R6), as far as the fake can tell.

    The fake sees when a request arrives, not when it was sent: requests already on their way
    when the client read the 429 arrive inside the window, and on a busy machine they may arrive
    well after it opened. So: at most the other requests the limit lets be in flight arrive
    inside a window, and the request that got the 429 is sent again only after it ends.
    """
    epsilon = DEFAULT_PAUSE_EPSILON
    for window in journal.pause_windows:
        inside = [
            entry
            for entry in journal.requests
            if entry.is_api
            and entry.seq != window.opened_by
            and window.start < entry.received_at < window.end - epsilon
        ]
        assert len(inside) <= max_concurrency - 1, (
            f"{len(inside)} requests inside the pause opened by request {window.opened_by}"
        )
        opener = journal.requests[window.opened_by - 1]
        again = next(
            (
                entry
                for entry in journal.requests[window.opened_by :]
                if (entry.method, entry.path, entry.body)
                == (opener.method, opener.path, opener.body)
            ),
            None,
        )
        if again is not None:
            assert again.received_at >= window.end - epsilon, (
                f"request {window.opened_by} was sent again inside its own Retry-After pause"
            )


def check_job(
    fake: FakePleo,
    job_id: str,
    plan: JobPlan,
    outcome: CompletionOutcome,
    figures: Figures,
    *,
    max_concurrency: int,
    timeout: float,
    resend_checked: bool = True,
    abandoned_at: float | None = None,
) -> None:
    """The journal checks of the reliability suite, counted into the figures before they are
    asserted."""
    journal = fake.journal
    figures.jobs_run += 1
    lost = [
        update.accounting_entry_id
        for update in plan.known
        if not committed_as_sent(fake.item(job_id, update.accounting_entry_id), update)
    ]
    figures.lost_items += len(lost)
    resent = resent_after_known_ack(fake, job_id, timeout=timeout) if resend_checked else {}
    figures.resent_after_ack += sum(resent.values())
    applied = journal.final_events_applied(job_id)
    figures.extra_final_events += max(0, len(applied) - 1)

    assert lost == [], f"{len(lost)} items not committed with their update: {lost[:5]}"
    assert resent == {}, f"resent after their acknowledgement: {resent}"
    in_flight = max_in_flight(journal.requests, timeout, abandoned_at)
    assert in_flight <= max_concurrency, f"{in_flight} requests in flight, limit {max_concurrency}"
    check_pauses(journal, max_concurrency)
    assert len(applied) == 1, f"{len(applied)} final events applied"
    (event,) = applied
    expected = plan.expected_event()
    assert outcome.event is expected
    assert event.body["event"] == expected.value
    assert fake.job_status(job_id) == expected.value
    final_posts = {
        entry.body.get("event")
        for entry in journal.events(job_id)
        if isinstance(entry.body, dict) and entry.body.get("event") != "started"
    }
    assert final_posts == {expected.value}, f"final events posted: {final_posts}"
    acknowledged_at = [
        entry.answered_at
        for entry in journal.puts(job_id)
        if entry.delivered and entry.acknowledged_ids and entry.answered_at is not None
    ]
    if acknowledged_at:
        assert event.received_at > max(acknowledged_at), "final event before an acknowledgement"
    successful = sum(1 for u in plan.known if u.status.value == "successful")
    assert (outcome.successful, outcome.failed) == (successful, len(plan.known) - successful)
    # The plan's only rejections are of IDs the job does not have: in no count of the job.
    assert outcome.rejected == 0


def library_tasks() -> list[asyncio.Task[Any]]:
    """Tasks of the running loop whose coroutine is the library's (not the fake's, not a test's)."""
    found = []
    for task in asyncio.all_tasks():
        if task.done():
            continue
        code = getattr(task.get_coro(), "cr_code", None)
        filename = getattr(code, "co_filename", "")
        if "pleo_export_async" in filename and "testing" not in Path(filename).parts:
            found.append(task)
    return found


async def settle_loop(turns: int = 5) -> None:
    """Let callbacks and cancelled tasks run to their end."""
    for _ in range(turns):
        await asyncio.sleep(0)


def resent_after_known_ack(
    fake: FakePleo,
    job_id: str,
    *,
    timeout: float,
    cut: float | None = None,
    known: set[str] | None = None,
) -> dict[str, int]:
    """`Journal.resent_after_ack`, counting only acknowledgements the client can have read.

    The fake calls an answer delivered once it is written to the connection; the client may
    have given up on it by then. It gives up `timeout` after sending, and it sent before the fake
    received (by up to GIVE_UP_MARGIN on a busy loop that client and fake share), so an answer
    written later than that after the request arrived was not read: an acknowledgement it holds
    does not count. That happens with latency spikes past the timeout, and when a loaded machine
    makes the fake slow to answer.

    For a run whose call was cancelled and then resumed at `cut`: an acknowledgement the
    cancelled call never took in does not count either. That is one answered to a request that
    arrived before `cut`, for an ID the ledger did not hold after the cancellation (`known`;
    R12: what was in flight becomes unacknowledged, and is sent again)."""
    read_within = max(0.0, timeout - GIVE_UP_MARGIN)
    acks: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    sends: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for entry in fake.journal.puts(job_id):
        if not isinstance(entry.body, list):
            continue
        for index, item in enumerate(entry.body):
            entry_id = str(item.get("accountingEntryId", "")).lower()
            sends.setdefault(entry_id, []).append((entry.received_at, item))
            taken_in = cut is None or entry.received_at >= cut or entry_id in (known or ())
            if (
                entry.delivered
                and entry.answered_at is not None
                and entry.answered_at - entry.received_at < read_within
                and index in entry.committed_indexes
                and entry_id in entry.acknowledged_ids
                and taken_in
            ):
                acks.setdefault(entry_id, []).append((entry.answered_at, item))
    resent: dict[str, int] = {}
    for entry_id, history in sends.items():
        count = sum(
            1
            for received_at, body in history
            if any(
                acked_at < received_at and (acked.get("status") == "successful" or acked == body)
                for acked_at, acked in acks.get(entry_id, ())
            )
        )
        if count:
            resent[entry_id] = count
    return resent


def phase_of(fake: FakePleo, job_id: str) -> str:
    """Where a call was when it was cancelled or killed, as the fake saw it."""
    entries = [entry for entry in fake.journal.requests if entry.job_id == job_id.lower()]
    if not entries:
        return "before any request"
    final_events = [
        entry
        for entry in entries
        if entry.is_job_event
        and isinstance(entry.body, dict)
        and entry.body.get("event") != "started"
    ]
    if final_events:
        if any(entry.answered_at is None for entry in final_events):
            return "final event in flight"
        return "after the final event was answered"
    if any(entry.is_item_update and entry.answered_at is None for entry in entries):
        return "item updates in flight"
    if any(entry.answered_at is None for entry in entries):
        return "reading the job or its items"
    return "between requests"


async def wait_for_requests(
    fake: FakePleo, job_id: str, count: int, task: asyncio.Task[Any]
) -> None:
    """Until the fake has received `count` requests about the job, or `task` is done."""
    async with asyncio.timeout(60):
        while not task.done():
            if sum(1 for entry in fake.journal.requests if entry.job_id == job_id) >= count:
                return
            await asyncio.sleep(0.0005)
