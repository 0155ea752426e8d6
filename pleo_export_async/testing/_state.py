"""The fake's world: export jobs, their items, the job lifecycle (docs/pleo-api.md#lifecycle) and
expiry, on a clock.

No HTTP here. Operations raise `ApiError` with the status and ExceptionInfo type the server
answers with; every mutation is synchronous, so one request's changes are atomic under asyncio.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from . import _spec
from ._data import ExportItemFactory, seeded_uuid
from ._request_checks import format_datetime, parse_datetime


class ApiError(Exception):
    """A request the API refuses as a whole: HTTP status plus an ExceptionInfo body."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(f"{status} {error_type}: {message}")
        self.status = status
        self.error_type = error_type
        self.message = message


def _items(count: int) -> str:
    """`"1 item is"` or `"3 items are"`."""
    return "1 item is" if count == 1 else f"{count} items are"


def _not_found() -> ApiError:
    return ApiError(404, _spec.EXPORT_NOT_FOUND, _spec.MESSAGE_EXPORT_NOT_FOUND)


class Clock:
    """The fake's notion of now: a source (wall clock by default) plus a test-controlled offset."""

    def __init__(self, source: Callable[[], datetime] | None = None) -> None:
        self._source = source
        self._offset = timedelta(0)

    def now(self) -> datetime:
        """The current time, timezone-aware in UTC."""
        moment = self._source() if self._source is not None else datetime.now(UTC)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment + self._offset

    def advance(self, seconds: float) -> None:
        """Move now forward (or back, with a negative value) by `seconds`."""
        self._offset += timedelta(seconds=seconds)


def _optional_datetime(moment: datetime | None) -> str | None:
    return None if moment is None else format_datetime(moment)


def _without_nulls(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload with the optional keys that have no value left out
    (docs/pleo-api.md#schema-check: real answers may carry null or leave the key out; a client must
    accept both, and the fake does the latter)."""
    return {key: value for key, value in payload.items() if value is not None}


@attrs.define
class JobItem:
    """One export job item (ExportJobItemV3) as Pleo stores it."""

    accounting_entry_id: str
    # Position in the job, fixed at creation: the pagination key.
    ordinal: int
    status: str = "pending"
    exported_at: datetime | None = None
    external_id: str | None = None
    external_url: str | None = None
    failure_reason: str | None = None
    failure_reason_type: str | None = None

    def payload(self, job_id: str) -> dict[str, Any]:
        """The item as the API returns it (keys without a value left out)."""
        return _without_nulls(
            {
                "accountingEntryId": self.accounting_entry_id,
                "exportJobId": job_id,
                "status": self.status,
                "exportedAt": _optional_datetime(self.exported_at),
                "externalId": self.external_id,
                "externalUrl": self.external_url,
                "failureReason": self.failure_reason,
                "failureReasonType": self.failure_reason_type,
            }
        )

    def reported_as(self, update: dict[str, Any]) -> bool:
        """Whether a validated update would leave the item exactly as it is (a resend)."""
        exported_at = update.get("exportedAt")
        return (
            self.status == update["status"]
            and self.exported_at == (None if exported_at is None else parse_datetime(exported_at))
            and self.external_id == update.get("externalId")
            and self.external_url == update.get("externalUrl")
            and self.failure_reason == update.get("failureReason")
            and self.failure_reason_type == update.get("failureReasonType")
        )

    def overwrite(self, update: dict[str, Any]) -> None:
        """Replace the item's reported state with a validated UpdateExportJobItemV3 (a PUT)."""
        self.status = update["status"]
        exported_at = update.get("exportedAt")
        self.exported_at = None if exported_at is None else parse_datetime(exported_at)
        self.external_id = update.get("externalId")
        self.external_url = update.get("externalUrl")
        self.failure_reason = update.get("failureReason")
        self.failure_reason_type = update.get("failureReasonType")


@attrs.define
class Job:
    """One export job (ExportJobV3) and its items."""

    id: str
    company_id: str
    # Creation order: the pagination key, and "oldest first" for listings.
    ordinal: int
    created_at: datetime
    last_updated_at: datetime
    status: str = "pending"
    created_by: str | None = None
    is_interactive: bool = True
    vendor_based_bookkeeping: bool = False
    started_at: datetime | None = None
    completed_at: datetime | None = None
    expired_at: datetime | None = None
    failure_reason: str | None = None
    failure_reason_type: str | None = None
    items: dict[str, JobItem] = attrs.field(factory=dict)
    # GET /v3/export-items payloads, generated on first request and then fixed.
    #: (ordinal, ExportItemV3) of each item, made on the first read and kept.
    export_items: list[tuple[int, dict[str, Any]]] | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in _spec.TERMINAL_JOB_STATUSES

    def payload(self, expires_in: int) -> dict[str, Any]:
        """The job as the API returns it (keys without a value left out)."""
        return _without_nulls(
            {
                "id": self.id,
                "companyId": self.company_id,
                "createdAt": format_datetime(self.created_at),
                "createdBy": self.created_by,
                "expiresIn": expires_in,
                "expiredAt": _optional_datetime(self.expired_at),
                "failureReason": self.failure_reason,
                "failureReasonType": self.failure_reason_type,
                "isInteractive": self.is_interactive,
                "lastUpdatedAt": format_datetime(self.last_updated_at),
                "numberOfItems": len(self.items),
                "startedAt": _optional_datetime(self.started_at),
                "completedAt": _optional_datetime(self.completed_at),
                "status": self.status,
                "vendorBasedBookkeeping": self.vendor_based_bookkeeping,
            }
        )

    def abandon_unfinished_items(self) -> None:
        """Mark every item the integration has not finished as abandoned
        (docs/pleo-api.md#job-transitions)."""
        for item in self.items.values():
            if item.status not in _spec.FINAL_ITEM_STATUSES:
                item.status = "abandoned"


@attrs.frozen
class UpdateOutcome:
    """What one PUT items request did: the 200 body's two lists, and what was committed."""

    data: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    # Positions in the request body that were committed (an ID may appear twice in one body).
    committed_indexes: list[int]


@attrs.frozen
class LifecycleRules:
    """The switches for the undocumented corners of the lifecycle (docs/pleo-api.md#job-transitions,
    docs/pleo-api.md#open-questions)."""

    # Refuse what Pleo's guidance tells a connector not to do (see FakePleo); False is lenient.
    strict: bool = True
    # docs/pleo-api.md#open-questions (row 3): whether `started` on an in_progress job is accepted
    # (as a no-op) instead of a 422.
    accept_repeated_started: bool = False
    # docs/pleo-api.md#create-job: whether a pending job (not only an in_progress one) blocks
    # creating another.
    pending_blocks_create: bool = True
    expiry_seconds: int = _spec.JOB_EXPIRY_SECONDS


class State:
    """All jobs of the fake, keyed by job ID, with the operations the endpoints perform."""

    def __init__(
        self,
        *,
        seed: int,
        clock: Clock,
        rules: LifecycleRules,
        on_pending_job: Callable[[Job], None] | None = None,
    ) -> None:
        self.clock = clock
        self.rules = rules
        # Told of each job created `pending`: the event Pleo notifies its subscribers of.
        self._on_pending_job = on_pending_job
        self._seed = seed
        self._ids = random.Random(f"{seed}:ids")
        self.jobs: dict[str, Job] = {}
        self._item_factories: dict[str, ExportItemFactory] = {}
        self.default_company_id = seeded_uuid(self._ids)

    def new_id(self) -> str:
        """A fresh seeded UUID string."""
        return seeded_uuid(self._ids)

    # ---- lookups -------------------------------------------------------------------------

    def get_job(self, job_id: str) -> Job:
        """The job, or a 404 EXPORT_NOT_FOUND."""
        job = self.jobs.get(job_id.lower())
        if job is None:
            raise _not_found()
        return job

    def list_jobs(self, *, company_id: str | None, statuses: Iterable[str]) -> list[Job]:
        """Jobs oldest first, filtered by company and by any of `statuses` (all when empty)."""
        wanted = frozenset(statuses)
        return [
            job
            for job in self.jobs.values()
            if (company_id is None or job.company_id == company_id.lower())
            and (not wanted or job.status in wanted)
        ]

    def find_job_item(
        self, *, company_id: str | None, accounting_entry_id: str | None
    ) -> tuple[Job, JobItem] | None:
        """The newest job item for an accounting entry (the hidden /v3/export-job-items)."""
        if accounting_entry_id is None:
            return None
        for job in reversed(self.jobs.values()):
            if company_id is not None and job.company_id != company_id.lower():
                continue
            item = job.items.get(accounting_entry_id.lower())
            if item is not None:
                return job, item
        return None

    # ---- creation ------------------------------------------------------------------------

    def add_job(
        self,
        *,
        company_id: str,
        item_ids: Sequence[str],
        status: str = "pending",
        created_by: str | None = None,
        is_interactive: bool = True,
        vendor_based_bookkeeping: bool = False,
        job_id: str | None = None,
    ) -> Job:
        """Create a job directly in `status` (the test helper; no company lock), with a new ID
        unless `job_id` gives one."""
        if status not in _spec.JOB_STATUSES:
            raise ValueError(f"status must be one of {_spec.JOB_STATUSES}, got {status!r}")
        if job_id is not None and job_id.lower() in self.jobs:
            raise ValueError(f"a job {job_id} exists already")
        now = self.clock.now()
        unique_ids = list(dict.fromkeys(entry_id.lower() for entry_id in item_ids))
        job = Job(
            id=self.new_id() if job_id is None else job_id.lower(),
            company_id=company_id.lower(),
            ordinal=len(self.jobs),
            created_at=now,
            last_updated_at=now,
            status=status,
            created_by=created_by,
            is_interactive=is_interactive,
            vendor_based_bookkeeping=vendor_based_bookkeeping,
            items={
                entry_id: JobItem(accounting_entry_id=entry_id, ordinal=ordinal)
                for ordinal, entry_id in enumerate(unique_ids)
            },
        )
        if status != "pending":
            job.started_at = now
        if status in ("completed", "completed_with_errors"):
            job.completed_at = now
        if status in _spec.TERMINAL_JOB_STATUSES:
            job.abandon_unfinished_items()
        self.jobs[job.id] = job
        if status == "pending" and self._on_pending_job is not None:
            self._on_pending_job(job)
        return job

    def create_job_from_request(self, body: dict[str, Any]) -> Job:
        """POST /v3/export-jobs with a validated CreateExportJob body; 409 while one is open."""
        company_id = body["companyId"].lower()
        blocking = (
            {"in_progress", "pending"} if self.rules.pending_blocks_create else {"in_progress"}
        )
        if any(j.company_id == company_id and j.status in blocking for j in self.jobs.values()):
            raise ApiError(409, _spec.EXPORT_ALREADY_IN_PROGRESS, _spec.MESSAGE_ALREADY_IN_PROGRESS)
        options = body.get("options") or {}
        interactive = body.get("isInteractive")
        return self.add_job(
            company_id=company_id,
            item_ids=body["accountingEntryIds"],
            created_by=(body.get("employeeId") or "").lower() or None,
            is_interactive=True if interactive is None else interactive,
            vendor_based_bookkeeping=bool(options.get("vendorBasedBookkeeping")),
        )

    # ---- lifecycle -----------------------------------------------------------------------

    def expire_due_jobs(self) -> list[Job]:
        """Fail every open job not updated within the expiry time (checked lazily,
        docs/pleo-api.md#documented-flow step 9)."""
        now = self.clock.now()
        expired = []
        limit = timedelta(seconds=self.rules.expiry_seconds)
        for job in self.jobs.values():
            if job.status in _spec.ACTIVE_JOB_STATUSES and now - job.last_updated_at >= limit:
                job.status = "failed"
                # The moment it expired, not the moment this lazy check noticed.
                job.expired_at = job.last_updated_at + limit
                job.failure_reason_type = "job_expired"
                job.failure_reason = "Job not updated within the expiry time limit."
                job.abandon_unfinished_items()
                expired.append(job)
        return expired

    def apply_event(
        self,
        job_id: str,
        event: str,
        *,
        failure_reason: str | None = None,
        failure_reason_type: str | None = None,
    ) -> bool:
        """Apply a validated job event; True when it changed the job's status
        (docs/pleo-api.md#job-transitions table)."""
        job = self.get_job(job_id)
        self._check_transition(job, event)
        now = self.clock.now()
        job.last_updated_at = now
        if event == "started":
            if job.status == "in_progress":
                return False  # accepted as a no-op only with accept_repeated_started
            job.status = "in_progress"
            job.started_at = now
            return True
        job.status = event
        if event in ("failed", "completed_with_errors"):
            # docs/pleo-api.md#inconsistencies (row 5): the reference says "failed only", the design
            # guide also sends them with completed_with_errors; storing them for both is the lenient
            # reading.
            job.failure_reason = failure_reason
            job.failure_reason_type = failure_reason_type
        if event != "failed":
            job.completed_at = now
        # Items the integration left unfinished can no longer be: abandoned
        # (docs/pleo-api.md#documented-flow step 9). Strict mode refuses a completion with such
        # items, so only `failed` gets here with them.
        job.abandon_unfinished_items()
        return True

    def _check_transition(self, job: Job, event: str) -> None:
        def refuse(why: str) -> ApiError:
            return ApiError(
                422,
                _spec.INVALID_EXPORT_JOB_STATUS_CHANGE,
                f"{_spec.MESSAGE_STATUS_CHANGE_FAILED}: {why}",
            )

        if job.is_terminal:
            raise refuse(f"the job is {job.status}, which is final; '{event}' is not allowed")
        if event == "started":
            if job.status == "in_progress" and not self.rules.accept_repeated_started:
                raise refuse("the job is already in_progress")
            return
        if event == "failed":
            return
        # completed or completed_with_errors: checked in strict mode, accepted in lenient mode.
        if not self.rules.strict:
            return
        if job.status == "pending":
            raise refuse(f"the job is pending; send 'started' before '{event}'")
        unfinished = sum(1 for i in job.items.values() if i.status not in _spec.FINAL_ITEM_STATUSES)
        if unfinished:
            raise refuse(f"{_items(unfinished)} neither successful nor failed")
        failed = sum(1 for i in job.items.values() if i.status == "failed")
        if event == "completed" and failed:
            raise refuse(f"{_items(failed)} failed; use completed_with_errors")

    def update_items(
        self,
        job_id: str,
        updates: Sequence[dict[str, Any]],
        *,
        inject_item_error: Callable[[int], bool],
        injected_error_type: str,
    ) -> UpdateOutcome:
        """PUT /v3/export-jobs/{jobId}/items with validated updates: commit item by item."""
        job = self.get_job(job_id)
        if job.is_terminal:
            raise ApiError(422, _spec.EXPORT_JOB_STATUS_UNPROCESSABLE, _spec.MESSAGE_JOB_FINISHED)
        if self.rules.strict and job.status == "pending":
            raise ApiError(
                422,
                _spec.EXPORT_JOB_STATUS_UNPROCESSABLE,
                "Export job has not been started; send the 'started' event first.",
            )
        data: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        committed: list[int] = []

        def reject(entry_id: str, error_type: str, message: str) -> None:
            errors.append({"accountingEntryId": entry_id, "type": error_type, "message": message})

        for index, update in enumerate(updates):
            entry_id = update["accountingEntryId"].lower()
            item = job.items.get(entry_id)
            if item is None:
                reject(
                    entry_id, "ACCOUNTING_ENTRY_DOES_NOT_EXIST", _spec.MESSAGE_ENTRY_DOES_NOT_EXIST
                )
            elif update["status"] == "abandoned":
                reject(
                    entry_id,
                    "EXPORT_ENTRY_STATUS_UPDATE_FAILED",
                    "Status 'abandoned' is set by Pleo when a job fails or expires; "
                    "report 'successful' or 'failed'.",
                )
            elif self.rules.strict and item.status == "successful" and not item.reported_as(update):
                # docs/pleo-api.md#open-questions (row 5): a successful item is final. The same
                # update again (a retry whose answer was lost) changes nothing and is acknowledged;
                # anything else is refused.
                reject(
                    entry_id,
                    "EXPORT_ENTRY_STATUS_UPDATE_FAILED",
                    "Export entry was already exported successfully and cannot be changed.",
                )
            elif inject_item_error(index):
                reject(entry_id, injected_error_type, "Export entry status update failed.")
            else:
                item.overwrite(update)
                data.append(item.payload(job.id))
                committed.append(index)
        job.last_updated_at = self.clock.now()
        return UpdateOutcome(data=data, errors=errors, committed_indexes=committed)

    # ---- export items (data layer) -------------------------------------------------------

    def export_items(self, job_id: str) -> list[tuple[int, dict[str, Any]]]:
        """(ordinal, ExportItemV3) of a running job; 422 once the job is finished."""
        job = self.get_job(job_id)
        if job.is_terminal:
            raise ApiError(
                422,
                _spec.EXPORT_JOB_STATUS_UNPROCESSABLE,
                _spec.MESSAGE_EXPORT_ITEMS_JOB_FINISHED,
            )
        return self.drawn_export_items(job)

    def drawn_export_items(self, job: Job) -> list[tuple[int, dict[str, Any]]]:
        """(ordinal, ExportItemV3) of the job, whatever its status: drawn on first use."""
        if job.export_items is None:
            factory = self._item_factory(job.company_id)
            rng = random.Random(f"{self._seed}:export-items:{job.id}")
            job.export_items = [
                (
                    ordinal,
                    factory.build(
                        entry_id, rng=rng, vendor_based_bookkeeping=job.vendor_based_bookkeeping
                    ),
                )
                for ordinal, entry_id in enumerate(job.items)
            ]
        return job.export_items

    def running_export_items(self) -> list[tuple[int, dict[str, Any]]]:
        """(ordinal, ExportItemV3) across every running job: GET export-items without job_id."""
        collected: list[tuple[int, dict[str, Any]]] = []
        for job in self.jobs.values():
            if job.is_terminal:
                continue
            # Ordinals must be unique across jobs for the cursor; jobs hold under a million items.
            collected.extend(
                (job.ordinal * 1_000_000 + ordinal, item)
                for ordinal, item in self.export_items(job.id)
            )
        return collected

    def _item_factory(self, company_id: str) -> ExportItemFactory:
        factory = self._item_factories.get(company_id)
        if factory is None:
            factory = ExportItemFactory(
                random.Random(f"{self._seed}:company:{company_id}"), company_id=company_id
            )
            self._item_factories[company_id] = factory
        return factory
