"""What Pleo holds of one job, read over the transport: the job itself, its items' statuses (the
control layer) and their accounting data (the data layer)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from . import _codec
from ._checks import enum_member
from ._enums import FINAL_JOB_STATUS_OF_EVENT, ItemStatus
from ._errors import JobFinished, MissingContraAccounts
from ._export_items import ExportItem
from ._job_state import RunState
from ._models import DataResponse, ExportJob, ExportJobItem
from ._pages import checked_page_size, every_item
from ._transport import Response, Transport, raise_for_response

JOBS_PATH = "/v3/export-jobs"
_EXPORT_ITEMS_PATH = "/v3/export-items"
FINAL_STATUSES = frozenset(status.value for status in FINAL_JOB_STATUS_OF_EVENT.values())


async def fetch_job(transport: Transport, job_id: str) -> ExportJob:
    """`GET /v3/export-jobs/{jobId}` for a job ID already checked."""
    path = f"{JOBS_PATH}/{job_id}"
    response = await transport.request("GET", path)
    raise_for_response(response, "GET", path)
    return _codec.decode(response.body, DataResponse[ExportJob]).data


class JobReads:
    """The read endpoints of one job."""

    def __init__(self, transport: Transport, state: RunState) -> None:
        self._transport = transport
        self._state = state
        self.items_path = f"{JOBS_PATH}/{state.job_id}/items"

    async def job(self) -> ExportJob:
        job = await fetch_job(self._transport, self._state.job_id)
        self._state.company_id = job.company_id
        return job

    def items(
        self, status: ItemStatus | str | None, page_size: int
    ) -> AsyncGenerator[ExportJobItem, None]:
        """Checks its arguments when called: call it where InvalidInput is to be raised."""
        params: dict[str, str | list[str]] = {}
        if status is not None:
            params["status"] = enum_member("status", status, ItemStatus).value
        return every_item(
            self._transport,
            self.items_path,
            ExportJobItem,
            page_size=checked_page_size(page_size),
            params=params,
            read_ahead=True,
        )

    def export_items(self, page_size: int) -> AsyncGenerator[ExportItem, None]:
        """Checks its argument when called, as `items` does."""
        return every_item(
            self._transport,
            _EXPORT_ITEMS_PATH,
            ExportItem,
            page_size=checked_page_size(page_size),
            params={"job_id": self._state.job_id},
            raise_for=self._raise_for_export_items,
            read_ahead=True,
        )

    def _raise_for_export_items(self, response: Response, method: str, path: str) -> None:
        if response.status == 400 and response.error_type_is("MISSING_CONTRA_ACCOUNTS"):
            error_type, message = response.exception_info()
            raise MissingContraAccounts(
                400, error_type, message, method=method, path=path, attempts=response.attempts
            )
        if response.status == 422 and response.error_type_is("EXPORT_JOB_STATUS_UNPROCESSABLE"):
            _, message = response.exception_info()
            detail = message or "Pleo gives export items only for running jobs"
            self._state.closed_by_others(detail)
            raise JobFinished(self._state.job_id, detail)
        raise_for_response(response, method, path)
