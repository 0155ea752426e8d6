"""Where a job's acknowledgements and its final event are remembered (the Ledgers layer,
docs/architecture.md).

A `Ledger` hands out one `JobLedger` per job ID; every JobRun that shares a ledger shares that
object, so an update one of them got acknowledged is never sent again by another (rule R4), and
they take turns at the job (`turn()`), so one of them at a time sends anything for it.

Implementing a ledger (e.g. on PostgreSQL or Redis) means implementing these two protocols. The
in-memory state is the core's `Acknowledgements` (one entry per ID): the tracker reads and updates
it on the hot path, synchronously. A ledger's job is to make it durable and to read it back:

* `record_in_flight(batch, body)` is awaited before the batch is sent, with the PUT body as it
  will be sent; a durable ledger keeps it, so that a process started after a crash knows which
  updates may have landed without their acknowledgement being recorded (`in_flight_at_open`).
* `record_acknowledged(batch)` is awaited once Pleo's answer has settled the batch (it says
  which of its IDs were acknowledged).
* `record_event_intent` is awaited before the final event is sent, `record_event_delivered`
  after; once it is delivered the job's per-ID state may go (`Acknowledgements.forget`).

Writes go per batch, never per item.

A ledger shared by several processes (`PostgresLedger`) also keeps them from working one job at
once: `turn()` takes a lease on the job, and while another process holds it the turn waits (or,
with `wait=False`, raises `JobLeased`). When the job's records were written by another process
since this one last held it, taking the turn reads them again and `epoch` changes, so each JobRun
picks up where that process left off; `sending_guard` is awaited before every request that sends
something for the job, and raises `LeaseLost` once this process can no longer be sure it holds
the job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import ClassVar, Protocol, runtime_checkable

import attrs

from ._core._acknowledgements import Acknowledgements
from ._core._batches import Batch
from ._errors import JobLeased
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

    @property
    def acknowledgements(self) -> Acknowledgements:
        """The job's acknowledgement record in memory, read and updated by the tracker."""
        ...

    def turn(self, *, wait: bool = True) -> AbstractAsyncContextManager[object]:
        """Held by a JobRun while it works the job; the other JobRuns of the ledger wait. With
        `wait=False`, raises `JobLeased` at once if another holds it."""
        ...

    @property
    def epoch(self) -> int:
        """Changes each time the job's records are read again because another process wrote
        them; a JobRun that sees it change resumes as after a crash (R13)."""
        ...

    def sending_guard(self, request_timeout: float) -> Callable[[], Awaitable[None]] | None:
        """What to await before each attempt of a request that sends something for the job (and
        may take up to `request_timeout` seconds), or None when nothing needs checking.

        If what it returns also has a synchronous `at_the_wire() -> bool`, that is called right
        before the request's body is written, with nothing else able to run in between; False
        holds the body back (nothing is sent) and the guard is awaited again."""
        ...

    def final_event(self) -> FinalEventRecord | None: ...

    def in_flight_at_open(self) -> Mapping[str, ItemUpdate]:
        """Updates recorded in flight and never acknowledged when the job was opened: a crash
        may have left them committed at Pleo without their acknowledgement recorded."""
        ...

    async def record_in_flight(self, batch: Batch, body: bytes) -> None: ...

    async def record_acknowledged(self, batch: Batch) -> None: ...

    async def record_event_intent(self, request: JobEventRequest) -> None: ...

    async def record_event_delivered(self, outcome: CompletionOutcome) -> None: ...


@runtime_checkable
class Ledger(Protocol):
    """A store of JobLedgers. `open_job` returns the same object for the same job ID."""

    async def open_job(self, job_id: str) -> JobLedger: ...

    async def close(self) -> None: ...


def commit_kind(job_ledger: JobLedger) -> str | None:
    """What the job ledger's writes are, for telemetry: `sqlite`, `postgres`, a custom
    ledger's class name, or None for `MemoryLedger`'s, which write nothing."""
    kind: str | None = getattr(job_ledger, "commit_kind", type(job_ledger).__name__)
    return kind


class MemoryJobLedger:
    """One job's records, in memory only: nothing outlives the process, so in-flight batches
    need no record and there is no crash to recover from."""

    #: What its writes are, for telemetry (`commit_kind`): none, they are in memory.
    commit_kind: ClassVar[str | None] = None

    def __init__(self, job_id: str) -> None:
        self._job_id = job_id
        self._acknowledgements = Acknowledgements()
        self._final_event: FinalEventRecord | None = None
        self._turn = asyncio.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._job_id!r}, {self._acknowledgements!r})"

    @property
    def job_id(self) -> str:
        return self._job_id

    @property
    def acknowledgements(self) -> Acknowledgements:
        return self._acknowledgements

    def turn(self, *, wait: bool = True) -> asyncio.Lock:
        if not wait and self._turn.locked():
            raise JobLeased(self._job_id, "another JobRun of this process")
        return self._turn

    @property
    def epoch(self) -> int:
        return 0  # no other process writes this job's records

    def sending_guard(self, request_timeout: float) -> None:
        return None

    def final_event(self) -> FinalEventRecord | None:
        return self._final_event

    def in_flight_at_open(self) -> Mapping[str, ItemUpdate]:
        return {}

    async def record_in_flight(self, batch: Batch, body: bytes) -> None:
        return

    async def record_acknowledged(self, batch: Batch) -> None:
        return

    async def record_event_intent(self, request: JobEventRequest) -> None:
        self._final_event = FinalEventRecord(request)

    async def record_event_delivered(self, outcome: CompletionOutcome) -> None:
        self._final_event = self._delivered_record(outcome)
        self._acknowledgements.forget()

    def _delivered_record(self, outcome: CompletionOutcome) -> FinalEventRecord:
        assert self._final_event is not None, "the intent is recorded before the event is sent"
        return attrs.evolve(self._final_event, outcome=outcome)


class MemoryLedger:
    """The default ledger: acknowledgements live as long as this object (and the process).

    Share one instance between JobRuns (`client.job(job_id, ledger=ledger)`) so none of them
    resends what another got acknowledged. Use `SqliteLedger` to survive a crash. Once a job's
    final event is delivered, only its outcome and counts are kept.
    """

    def __init__(self) -> None:
        self._jobs: dict[str, MemoryJobLedger] = {}

    async def open_job(self, job_id: str) -> MemoryJobLedger:
        """The job's records, made empty the first time. Raises nothing: they are in memory."""
        job = self._jobs.get(job_id)
        if job is None:
            job = self._jobs[job_id] = MemoryJobLedger(job_id)
        return job

    async def close(self) -> None:
        """Nothing to let go of. Raises nothing."""
        return

    def __repr__(self) -> str:
        return f"MemoryLedger(jobs={len(self._jobs)})"
