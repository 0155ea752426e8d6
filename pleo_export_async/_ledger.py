"""Where a job's acknowledgements and its final event are remembered (layer 4).

A `Ledger` hands out one `JobLedger` per job ID; every JobRun that shares a ledger shares that
object, so an update one of them got acknowledged is never sent again by another (rule R4).

Implementing a ledger (e.g. on PostgreSQL or Redis) means implementing these two protocols:

* Lookups (`acknowledged`, `tally`, `final_event`, `in_flight_at_open`) are synchronous
  and called on the hot path, once per item: serve them from memory, loaded in `open_job`.
* Writes are awaited, and the library waits for each before it relies on it: an acknowledgement
  is recorded before the next batch of the job is planned, the intent to send the final event
  before it is sent, its result after.
* `record_in_flight` is called before each batch is sent; a durable ledger keeps those IDs until
  they are acknowledged, so that a process started after a crash knows which updates may have
  landed without their acknowledgement being recorded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import attrs

from ._decision import Tally
from ._enums import ItemStatus
from ._models import ItemUpdate, JobEventRequest
from ._report import CompletionOutcome


@attrs.frozen
class FinalEventRecord:
    """A job's final event as the ledger knows it: intended, and delivered once `outcome` is set."""

    request: JobEventRequest
    outcome: CompletionOutcome | None = None


@runtime_checkable
class JobLedger(Protocol):
    """One job's records in a ledger."""

    @property
    def job_id(self) -> str: ...

    def acknowledged(self, entry_id: str) -> ItemStatus | ItemUpdate | None:
        """What Pleo last acknowledged for this accountingEntryId: None if nothing, else the
        update; for a `successful` one it may be just `ItemStatus.SUCCESSFUL`, since a
        successful item is terminal (R4) and its fields no longer decide anything."""
        ...

    def tally(self) -> Tally:
        """Counts of acknowledged items by final status, with the failed items' failure types."""
        ...

    def final_event(self) -> FinalEventRecord | None: ...

    def in_flight_at_open(self) -> Mapping[str, ItemUpdate]:
        """Updates recorded in flight and never acknowledged when the job was opened: a crash
        may have left them committed at Pleo without their acknowledgement recorded."""
        ...

    async def record_in_flight(self, updates: Sequence[ItemUpdate]) -> None: ...

    async def record_acknowledged(self, updates: Sequence[ItemUpdate]) -> None: ...

    async def record_event_intent(self, request: JobEventRequest) -> None: ...

    async def record_event_delivered(self, outcome: CompletionOutcome) -> None: ...


@runtime_checkable
class Ledger(Protocol):
    """A store of JobLedgers. `open_job` returns the same object for the same job ID."""

    async def open_job(self, job_id: str) -> JobLedger: ...

    async def close(self) -> None: ...


class MemoryJobLedger:
    """One job's acknowledgements, in memory.

    A successful acknowledgement is kept as `ItemStatus.SUCCESSFUL` alone, not as its update:
    that is all R4 needs, and a million of them then cost one dict, not a million objects.
    """

    def __init__(self, job_id: str) -> None:
        self._job_id = job_id
        self._acknowledged: dict[str, ItemStatus | ItemUpdate] = {}
        self._status_counts: Counter[ItemStatus] = Counter()
        self._failure_types: Counter[str] = Counter()
        self._final_event: FinalEventRecord | None = None

    @property
    def job_id(self) -> str:
        return self._job_id

    def acknowledged(self, entry_id: str) -> ItemStatus | ItemUpdate | None:
        return self._acknowledged.get(entry_id)

    def tally(self) -> Tally:
        return Tally(
            successful=self._status_counts[ItemStatus.SUCCESSFUL],
            failed=self._status_counts[ItemStatus.FAILED],
            failure_types=dict(self._failure_types),
        )

    def final_event(self) -> FinalEventRecord | None:
        return self._final_event

    def in_flight_at_open(self) -> Mapping[str, ItemUpdate]:
        return {}

    async def record_in_flight(self, updates: Sequence[ItemUpdate]) -> None:
        # Nothing outlives the process, so there is no crash to recover from.
        return

    async def record_acknowledged(self, updates: Sequence[ItemUpdate]) -> None:
        self._remember_acknowledged(updates)

    def _remember_acknowledged(self, updates: Sequence[ItemUpdate]) -> None:
        acknowledged = self._acknowledged
        counts = self._status_counts
        failure_types = self._failure_types
        successful = 0
        for update in updates:
            entry_id = update.accounting_entry_id
            previous = acknowledged.get(entry_id)
            if previous is not None:
                if previous is _SUCCESSFUL:
                    counts[_SUCCESSFUL] -= 1
                else:
                    assert isinstance(previous, ItemUpdate)
                    counts[previous.status] -= 1
                    if previous.failure_reason_type is not None:
                        failure_types[previous.failure_reason_type.value] -= 1
            if update.status is _SUCCESSFUL:
                acknowledged[entry_id] = _SUCCESSFUL
                successful += 1
                continue
            acknowledged[entry_id] = update
            counts[update.status] += 1
            if update.failure_reason_type is not None:
                failure_types[update.failure_reason_type.value] += 1
        counts[_SUCCESSFUL] += successful
        failure_types += Counter()  # drop the types whose count fell to zero

    async def record_event_intent(self, request: JobEventRequest) -> None:
        self._final_event = FinalEventRecord(request)

    async def record_event_delivered(self, outcome: CompletionOutcome) -> None:
        self._final_event = self._delivered_record(outcome)

    def _delivered_record(self, outcome: CompletionOutcome) -> FinalEventRecord:
        assert self._final_event is not None, "the intent is recorded before the event is sent"
        return attrs.evolve(self._final_event, outcome=outcome)


_SUCCESSFUL = ItemStatus.SUCCESSFUL


class MemoryLedger:
    """The default ledger: acknowledgements live as long as this object (and the process).

    Share one instance between JobRuns (`client.job(job_id, ledger=ledger)`) so none of them
    resends what another got acknowledged. Use `SqliteLedger` to survive a crash.
    """

    def __init__(self) -> None:
        self._jobs: dict[str, MemoryJobLedger] = {}

    async def open_job(self, job_id: str) -> MemoryJobLedger:
        job = self._jobs.get(job_id)
        if job is None:
            job = self._jobs[job_id] = MemoryJobLedger(job_id)
        return job

    async def close(self) -> None:
        return

    def __repr__(self) -> str:
        return f"MemoryLedger(jobs={len(self._jobs)})"
