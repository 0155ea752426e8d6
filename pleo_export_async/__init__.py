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
    HeldTokens,
    OAuth2Auth,
    TokenPair,
    TokenStore,
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
from ._subscriptions import WebhookSubscription, WebhookSubscriptions
from ._token_store import FileTokenStore, PostgresTokenStore
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
    "FileTokenStore",
    "FinalEventRecord",
    "HeldTokens",
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
    "PostgresTokenStore",
    "Progress",
    "ReauthorizationRequired",
    "Rejection",
    "RequestStats",
    "RetryPolicy",
    "SqliteLedger",
    "TokenPair",
    "TokenStore",
    "TransportError",
    "UnexpectedResponse",
    "UpdateReport",
    "WebhookSubscription",
    "WebhookSubscriptions",
    "__version__",
]


def _make_public() -> None:
    """Every class of `__all__` says it is `pleo_export_async.Name`, as users import it, in its
    repr, its tracebacks and its pickles, not the private module that defines it.

    The string annotations of an attrs class are resolved first, in their own module (where
    every name they use is defined), because resolving looks them up in the module that
    `__module__` names.
    """
    import attrs

    for name in __all__:
        value = globals()[name]
        if not isinstance(value, type):
            continue
        if attrs.has(value):
            attrs.resolve_types(value)
        value.__module__ = __name__


_make_public()
del _make_public
