"""Report export results to Pleo's Export API v3 from asyncio, and close the export job once.

async with PleoExportClient(base_url, auth=ApiKeyAuth(key)) as client:
    job = client.job(job_id)
    report = await job.update(updates)
    outcome = await job.complete()
"""

from ._auth import (
    PRODUCTION_TOKEN_URL,
    STAGING_TOKEN_URL,
    ApiKeyAuth,
    BearerTokenAuth,
    OAuth2Auth,
    TokenPair,
)
from ._client import PRODUCTION_BASE_URL, STAGING_BASE_URL, PleoExportClient
from ._core._classify import ItemErrorKind
from ._enums import (
    ItemFailureReasonType,
    ItemStatus,
    ItemUpdateErrorType,
    JobEvent,
    JobFailureReasonType,
    JobStatus,
)
from ._errors import (
    ApiError,
    AuthenticationError,
    ConflictingUpdates,
    IncompleteJob,
    InvalidInput,
    JobFinished,
    JobLeased,
    JobNotFound,
    JobStateConflict,
    LeaseLost,
    LedgerError,
    MissingContraAccounts,
    PermissionDenied,
    PleoExportError,
    ReauthorizationRequired,
    TransportError,
    UnexpectedResponse,
)
from ._export_items import ExportItem
from ._job import JobRun
from ._ledger import FinalEventRecord, JobLedger, Ledger, MemoryLedger
from ._models import ExportJob, ExportJobItem, ItemUpdate
from ._postgres_ledger import PostgresLedger
from ._report import CompletionOutcome, Progress, Rejection, UpdateReport
from ._retry import RetryPolicy
from ._sqlite_ledger import SqliteLedger
from ._transport import RequestStats
from ._version import __version__

__all__ = [
    "PRODUCTION_BASE_URL",
    "PRODUCTION_TOKEN_URL",
    "STAGING_BASE_URL",
    "STAGING_TOKEN_URL",
    "ApiError",
    "ApiKeyAuth",
    "AuthenticationError",
    "BearerTokenAuth",
    "CompletionOutcome",
    "ConflictingUpdates",
    "ExportItem",
    "ExportJob",
    "ExportJobItem",
    "FinalEventRecord",
    "IncompleteJob",
    "InvalidInput",
    "ItemErrorKind",
    "ItemFailureReasonType",
    "ItemStatus",
    "ItemUpdate",
    "ItemUpdateErrorType",
    "JobEvent",
    "JobFailureReasonType",
    "JobFinished",
    "JobLeased",
    "JobLedger",
    "JobNotFound",
    "JobRun",
    "JobStateConflict",
    "JobStatus",
    "LeaseLost",
    "Ledger",
    "LedgerError",
    "MemoryLedger",
    "MissingContraAccounts",
    "OAuth2Auth",
    "PermissionDenied",
    "PleoExportClient",
    "PleoExportError",
    "PostgresLedger",
    "Progress",
    "ReauthorizationRequired",
    "Rejection",
    "RequestStats",
    "RetryPolicy",
    "SqliteLedger",
    "TokenPair",
    "TransportError",
    "UnexpectedResponse",
    "UpdateReport",
    "__version__",
]
