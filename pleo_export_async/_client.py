"""PleoExportClient: the async session manager that owns the transport and hands out JobRuns."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import TracebackType

from . import _codec
from ._auth import ApiKeyAuth, BearerTokenAuth, Credential, require_safe_url
from ._core._classify import ItemErrorClassifier, ItemErrorKind, make_item_error_classifier
from ._enums import JobStatus
from ._errors import InvalidInput
from ._job import JobRun
from ._ledger import Ledger, MemoryLedger
from ._models import CursorPage, ExportJob
from ._retry import RetryPolicy
from ._transport import Transport, raise_for_response
from ._validate import enum_member, uuid_string

PRODUCTION_BASE_URL = "https://external.pleo.io"
STAGING_BASE_URL = "https://external.staging.pleo.io"

MAX_BATCH_SIZE = 100  # Pleo's documented limit per PUT items request


class PleoExportClient:
    """A client of Pleo's Export API v3. Use it as an async context manager.

    `max_concurrency` bounds the requests in flight across every job and endpoint of the client;
    a `Retry-After` from Pleo pauses all of them. `batch_size` (1..100) bounds the items per PUT.
    """

    def __init__(
        self,
        base_url: str = PRODUCTION_BASE_URL,
        *,
        auth: ApiKeyAuth | BearerTokenAuth | Credential,
        max_concurrency: int = 8,
        batch_size: int = MAX_BATCH_SIZE,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        item_error_classifier: ItemErrorClassifier = None,
        ledger: Ledger | None = None,
    ) -> None:
        if not isinstance(max_concurrency, int) or not 1 <= max_concurrency <= 256:
            raise InvalidInput("max_concurrency", max_concurrency, "must be an int in 1..256")
        if not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise InvalidInput("batch_size", batch_size, f"must be an int in 1..{MAX_BATCH_SIZE}")
        if not isinstance(timeout, int | float) or timeout <= 0:
            raise InvalidInput("timeout", timeout, "must be a positive number of seconds")
        for method in ("authorization", "refresh"):
            if not callable(getattr(auth, method, None)):
                raise InvalidInput("auth", auth, "must be ApiKeyAuth or BearerTokenAuth")
        self.base_url = require_safe_url("base_url", base_url)
        self.max_concurrency = max_concurrency
        self.batch_size = batch_size
        self.retry = retry or RetryPolicy()
        self.classify_item_error: Callable[[str], ItemErrorKind] = make_item_error_classifier(
            item_error_classifier
        )
        self.ledger: Ledger = ledger or MemoryLedger()
        self.transport = Transport(
            self.base_url,
            auth,
            max_concurrency=max_concurrency,
            timeout=float(timeout),
            retry=self.retry,
        )
        self._auth = auth

    def __repr__(self) -> str:
        return (
            f"PleoExportClient(base_url={self.base_url!r}, auth={self._auth!r}, "
            f"max_concurrency={self.max_concurrency}, batch_size={self.batch_size})"
        )

    async def __aenter__(self) -> PleoExportClient:
        await self.transport.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.transport.close()

    def job(
        self, job_id: str, *, ledger: Ledger | None = None, reconcile_on_resume: bool = True
    ) -> JobRun:
        """A JobRun for this export job. JobRuns that share a ledger never resend each other's
        acknowledged updates; by default they share the client's ledger.

        With a durable ledger that shows batches in flight when the last process stopped, the
        first call asks Pleo which of them landed (`JobRun.reconcile()`), unless
        `reconcile_on_resume=False`.
        """
        return JobRun(
            self,
            uuid_string("job_id", job_id),
            ledger or self.ledger,
            reconcile_on_resume=reconcile_on_resume,
        )

    async def list_jobs(
        self,
        *,
        statuses: Iterable[JobStatus | str] = (JobStatus.PENDING,),
        company_id: str | None = None,
    ) -> list[ExportJob]:
        """Export jobs in these statuses, oldest first (every page of `GET /v3/export-jobs`)."""
        params: dict[str, str | list[str]] = {
            "limit": "100",
            "statuses": [enum_member("statuses", status, JobStatus).value for status in statuses],
        }
        if company_id is not None:
            params["company_id"] = uuid_string("company_id", company_id)
        jobs: list[ExportJob] = []
        path = "/v3/export-jobs"
        while True:
            response = await self.transport.request("GET", path, params=params)
            raise_for_response(response, "GET", path)
            page = _codec.decode(response.body, CursorPage[ExportJob])
            jobs.extend(page.data)
            if not page.pagination.has_next_page or not page.pagination.end_cursor:
                break
            params["after"] = page.pagination.end_cursor
        # Pleo does not document an order; jobs must be processed oldest first.
        return sorted(jobs, key=lambda job: job.created_at)
