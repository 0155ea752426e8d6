"""The enums of Export API v3 that the client sends (strict) or compares against.

Values the client *receives* are kept as plain strings in the models (Pleo types them as strings
"that can be one of X values", and may add values); compare them with these enums, which are `str`.
"""

from __future__ import annotations

from enum import StrEnum


class ItemStatus(StrEnum):
    """ExportJobItemStatus."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    FAILED = "failed"
    SUCCESSFUL = "successful"
    ABANDONED = "abandoned"


class ItemFailureReasonType(StrEnum):
    """ExportJobItemFailureReasonType: why one item could not be exported (18 values in v3)."""

    RECEIPT_UPLOAD_FAILURE = "receipt_upload_failure"
    RECEIPT_DOWNLOAD_FAILURE = "receipt_download_failure"
    RECEIPT_FILE_SIZE_LIMIT_EXCEEDED = "receipt_file_size_limit_exceeded"
    RECEIPT_CONVERSION_FAILURE = "receipt_conversion_failure"
    UNEXPECTED_FAILURE = "unexpected_failure"
    INVALID_CONFIGURATION = "invalid_configuration"
    MISSING_CONFIGURATION = "missing_configuration"
    ACCOUNTING_SYSTEM_AUTHENTICATION_FAILURE = "accounting_system_authentication_failure"
    ACCOUNTING_SYSTEM_RATE_LIMIT = "accounting_system_rate_limit"
    ACCOUNTING_SYSTEM_UNREACHABLE = "accounting_system_unreachable"
    VALIDATION_FAILURE = "validation_failure"
    ACCOUNTING_SYSTEM_VALIDATION_FAILURE = "accounting_system_validation_failure"
    AUTHORIZATION_FAILURE = "authorization_failure"
    ACCOUNTING_SYSTEM_TIMEOUT = "accounting_system_timeout"
    VENDOR_UNKNOWN = "vendor_unknown"
    ACCOUNT_UNKNOWN = "account_unknown"
    TAX_CODE_UNKNOWN = "tax_code_unknown"
    TAG_UNKNOWN = "tag_unknown"


class JobEvent(StrEnum):
    """ExportJobEventType."""

    STARTED = "started"
    FAILED = "failed"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"

    @property
    def is_final(self) -> bool:
        return self is not JobEvent.STARTED


class JobFailureReasonType(StrEnum):
    """ExportJobFailureReasonType: why a whole job failed (15 values).

    Note `accounting_system_validation_failure` is an item-level value only; it is not valid here.
    """

    INVALID_CONFIGURATION = "invalid_configuration"
    MISSING_CONFIGURATION = "missing_configuration"
    AUTHENTICATION_FAILURE = "authentication_failure"
    ACCOUNTING_SYSTEM_AUTHENTICATION_FAILURE = "accounting_system_authentication_failure"
    PLEO_RATE_LIMIT = "pleo_rate_limit"
    ACCOUNTING_SYSTEM_RATE_LIMIT = "accounting_system_rate_limit"
    SERVICE_UNREACHABLE = "service_unreachable"
    ACCOUNTING_SYSTEM_UNREACHABLE = "accounting_system_unreachable"
    VALIDATION_FAILURE = "validation_failure"
    AUTHORIZATION_FAILURE = "authorization_failure"
    INTEGRATION_UNUSABLE = "integration_unusable"
    JOB_EXPIRED = "job_expired"
    SERVICE_TIMEOUT = "service_timeout"
    ACCOUNTING_SYSTEM_TIMEOUT = "accounting_system_timeout"
    CANCELED_BY_USER = "canceled_by_user"


class JobStatus(StrEnum):
    """ExportJobStatus. There is no `expired` status: an expired job is `failed`."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    FAILED = "failed"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"


class ItemUpdateErrorType(StrEnum):
    """ExportJobItemUpdateErrorType: `errors[].type` of a PUT items response."""

    ACCOUNTING_ENTRY_DOES_NOT_EXIST = "ACCOUNTING_ENTRY_DOES_NOT_EXIST"
    EXPORT_ENTRY_STATUS_UPDATE_FAILED = "EXPORT_ENTRY_STATUS_UPDATE_FAILED"
    ACCOUNTING_ENTRY_UPDATE_FAILED = "ACCOUNTING_ENTRY_UPDATE_FAILED"


FINAL_JOB_STATUS_OF_EVENT: dict[JobEvent, JobStatus] = {
    JobEvent.FAILED: JobStatus.FAILED,
    JobEvent.COMPLETED: JobStatus.COMPLETED,
    JobEvent.COMPLETED_WITH_ERRORS: JobStatus.COMPLETED_WITH_ERRORS,
}
