"""The API facts the fake enforces: enum values, limits and error types of Export API v3.

Copied from the API reference (docs/pleo-api.md#conventions, docs/pleo-api.md#enums,
docs/pleo-api.md#limits) on purpose instead of being imported from the client's modules: the fake
must not share a mistake with the client it tests.
"""

from __future__ import annotations

from typing import Final

# docs/pleo-api.md#job-status ExportJobStatus
JOB_STATUSES: Final = (
    "pending",
    "in_progress",
    "failed",
    "completed",
    "completed_with_errors",
)
ACTIVE_JOB_STATUSES: Final = frozenset({"pending", "in_progress"})
TERMINAL_JOB_STATUSES: Final = frozenset({"failed", "completed", "completed_with_errors"})

# docs/pleo-api.md#job-event-type ExportJobEventType
JOB_EVENTS: Final = ("started", "failed", "completed", "completed_with_errors")
FINAL_JOB_EVENTS: Final = frozenset({"failed", "completed", "completed_with_errors"})

# docs/pleo-api.md#job-failure-reason-type ExportJobFailureReasonType: the job-level enum (15
# values)
JOB_FAILURE_REASON_TYPES: Final = (
    "invalid_configuration",
    "missing_configuration",
    "authentication_failure",
    "accounting_system_authentication_failure",
    "pleo_rate_limit",
    "accounting_system_rate_limit",
    "service_unreachable",
    "accounting_system_unreachable",
    "validation_failure",
    "authorization_failure",
    "integration_unusable",
    "job_expired",
    "service_timeout",
    "accounting_system_timeout",
    "canceled_by_user",
)

# docs/pleo-api.md#item-status ExportJobItemStatus
ITEM_STATUSES: Final = ("pending", "in_progress", "failed", "successful", "abandoned")
# Items the integration has finished with; everything else is abandoned when the job fails.
FINAL_ITEM_STATUSES: Final = frozenset({"successful", "failed"})

# docs/pleo-api.md#item-failure-reason-type ExportJobItemFailureReasonType: the item-level enum (18
# values in v3)
ITEM_FAILURE_REASON_TYPES: Final = (
    "receipt_upload_failure",
    "receipt_download_failure",
    "receipt_file_size_limit_exceeded",
    "receipt_conversion_failure",
    "unexpected_failure",
    "invalid_configuration",
    "missing_configuration",
    "accounting_system_authentication_failure",
    "accounting_system_rate_limit",
    "accounting_system_unreachable",
    "validation_failure",
    "accounting_system_validation_failure",
    "authorization_failure",
    "accounting_system_timeout",
    "vendor_unknown",
    "account_unknown",
    "tax_code_unknown",
    "tag_unknown",
)

# docs/pleo-api.md#item-update-error-type ExportJobItemUpdateErrorType: errors[].type in the PUT
# response
ITEM_UPDATE_ERROR_TYPES: Final = (
    "ACCOUNTING_ENTRY_DOES_NOT_EXIST",
    "EXPORT_ENTRY_STATUS_UPDATE_FAILED",
    "ACCOUNTING_ENTRY_UPDATE_FAILED",
)

# docs/pleo-api.md#cursor-pagination PageOrder
PAGE_ORDERS: Final = (
    "ASC",
    "ASC_NULLS_FIRST",
    "ASC_NULLS_LAST",
    "DESC",
    "DESC_NULLS_FIRST",
    "DESC_NULLS_LAST",
)

# docs/pleo-api.md#export-item-enums ExportItemTypeV3 and ExportItemSubTypeV3
EXPORT_ITEM_TYPES: Final = (
    "card_purchase",
    "card_invoice",
    "out_of_pocket",
    "mileage",
    "per_diem",
    "external_reimbursement",
    "direct_reimbursement",
    "invoice",
    "invoice_payment",
    "chargeback",
    "refund",
    "cashback",
    "atm_withdrawal",
    "wallet_topup",
    "wallet_unload",
    "personal_spend",
    "fee",
)
EXPORT_ITEM_SUB_TYPES: Final = (
    "reimbursement_to_employee_refund",
    "reimbursement_to_company",
    "reimbursement_to_employee",
    "invoice_payment_returned",
    "invoice_payment_sent",
    "interest",
)
BOOKKEEPING_METHODS: Final = ("none", "journal", "accounts_payable")
TAX_TYPES: Final = ("inclusive", "exclusive", "reverse")
INVOICE_STATUSES: Final = (
    "pending_approval",
    "parsed",
    "preparing",
    "prepared",
    "ready",
    "rejected_by_approver",
    "marked_as_paid",
    "scheduled",
    "payment_in_progress",
    "paid",
    "voided_by_user",
    "rejected_by_user",
    "failed_payment",
)

# docs/pleo-api.md#limits limits and docs/pleo-api.md#documented-flow expiry
MAX_ITEMS_PER_UPDATE: Final = 100
JOB_EXPIRY_SECONDS: Final = 3600
ACCESS_TOKEN_LIFETIME_SECONDS: Final = 3600

# docs/pleo-api.md#base-urls: the content type of every JSON response.
JSON_CONTENT_TYPE: Final = "application/json;charset=UTF-8"

# docs/pleo-api.md#error-body ExceptionInfo types (UPPER_CASE, as the spec spells them) and their
# documented messages.
EXPORT_NOT_FOUND: Final = "EXPORT_NOT_FOUND"
EXPORT_ENTRY_NOT_FOUND: Final = "EXPORT_ENTRY_NOT_FOUND"
EXPORT_ALREADY_IN_PROGRESS: Final = "EXPORT_ALREADY_IN_PROGRESS"
EXPORT_JOB_ITEMS_UPDATE_LIMIT: Final = "EXPORT_JOB_ITEMS_UPDATE_LIMIT"
EXPORT_JOB_STATUS_UNPROCESSABLE: Final = "EXPORT_JOB_STATUS_UNPROCESSABLE"
INVALID_EXPORT_JOB_STATUS_CHANGE: Final = "INVALID_EXPORT_JOB_STATUS_CHANGE"
MISSING_CONTRA_ACCOUNTS: Final = "MISSING_CONTRA_ACCOUNTS"
# docs/pleo-api.md#open-questions (row 9) and docs/pleo-api.md#limits: the types the docs leave
# open; the fake picks these.
BAD_REQUEST: Final = "BAD_REQUEST"
REQUIRED_PARAMETER_MISSING: Final = "REQUIRED_PARAMETER_MISSING"
UNAUTHORIZED: Final = "UNAUTHORIZED"
FORBIDDEN: Final = "FORBIDDEN"
NOT_FOUND: Final = "NOT_FOUND"
METHOD_NOT_ALLOWED: Final = "METHOD_NOT_ALLOWED"
TOO_MANY_REQUESTS: Final = "TOO_MANY_REQUESTS"
INTERNAL_SERVER_ERROR: Final = "INTERNAL_SERVER_ERROR"
SERVICE_UNAVAILABLE: Final = "SERVICE_UNAVAILABLE"

MESSAGE_EXPORT_NOT_FOUND: Final = "Export job not found."
MESSAGE_EXPORT_ENTRY_NOT_FOUND: Final = "Export Job Item not found"
MESSAGE_ALREADY_IN_PROGRESS: Final = "Export Job already in progress for this company."
MESSAGE_UPDATE_LIMIT: Final = "Number of items to update is more than 100."
MESSAGE_JOB_FINISHED: Final = "Export job is finished."
MESSAGE_EXPORT_ITEMS_JOB_FINISHED: Final = (
    "Export Job has finished. Only Export Items from running jobs can be retrieved."
)
MESSAGE_STATUS_CHANGE_FAILED: Final = "Export Job status change failed"
MESSAGE_MISSING_CONTRA_ACCOUNTS: Final = (
    "Contra accounts are not fully configured. "
    "Please map contra accounts in the Accounting settings."
)
MESSAGE_ENTRY_DOES_NOT_EXIST: Final = "Accounting entry does not exist."
