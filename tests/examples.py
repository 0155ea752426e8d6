"""Wire JSON examples of Export API v3, as quoted or described in docs/pleo-api.md.

Shared fixtures: treat them as read-only (`copy.deepcopy` before changing one). Section numbers
refer to docs/pleo-api.md.
"""

from __future__ import annotations

from typing import Any, Final

JsonObject = dict[str, Any]

COMPANY_ID: Final = "016406b3-9a3a-47f0-b419-dbc52adc14da"
JOB_ID: Final = "6a3b0e41-5ef9-46ea-9c21-2ffa41789288"
OTHER_JOB_ID: Final = "a7327909-115c-4b8a-bcea-9c10f38cb4c4"
EMPLOYEE_ID: Final = "9f58b106-9447-4932-9e1e-9e7d08bed603"
ENTRY_ID_1: Final = "47324e87-8d05-4049-871b-f0dbe09ed4e0"
ENTRY_ID_2: Final = "9cac86ed-c003-4a39-8387-28672a913b50"
ENTRY_ID_3: Final = "1090aff0-72ea-4a31-a24f-53955c8b83e3"

# docs/pleo-api.md#update-items "Documented payloads" [DOC HT-UPDATE]: elements of the PUT …/items
# array.
ITEM_UPDATE_SUCCESSFUL: Final[JsonObject] = {
    "accountingEntryId": ENTRY_ID_1,
    "status": "successful",
    "externalId": "JE-10452",
    "externalUrl": "https://erp.example.com/journal/JE-10452",
}
ITEM_UPDATE_SUCCESSFUL_EXPORTED_AT: Final[JsonObject] = {
    "accountingEntryId": ENTRY_ID_1,
    "status": "successful",
    "exportedAt": "2023-11-07T05:31:56Z",
    "externalId": "JE-10452",
    "externalUrl": "https://erp.example.com/journal/JE-10452",
}
ITEM_UPDATE_FAILED: Final[JsonObject] = {
    "accountingEntryId": ENTRY_ID_2,
    "status": "failed",
    "failureReason": "Vendor not found in ERP",
    "failureReasonType": "accounting_system_validation_failure",
}
# A whole PUT body: a bare JSON array, successes and failures mixed.
ITEM_UPDATE_BATCH: Final[list[JsonObject]] = [
    ITEM_UPDATE_SUCCESSFUL_EXPORTED_AT,
    ITEM_UPDATE_FAILED,
]

# docs/pleo-api.md#update-items / docs/pleo-api.md#export-job-item /
# docs/pleo-api.md#item-update-bodies: a 200 PUT response acknowledging two items and refusing a
# third.
PUT_ITEMS_RESPONSE: Final[JsonObject] = {
    "data": [
        {
            "accountingEntryId": ENTRY_ID_1,
            "exportJobId": JOB_ID,
            "status": "successful",
            "exportedAt": "2023-11-07T05:31:56Z",
            "externalId": "JE-10452",
            "externalUrl": "https://erp.example.com/journal/JE-10452",
            "failureReason": None,
            "failureReasonType": None,
        },
        {
            "accountingEntryId": ENTRY_ID_2,
            "exportJobId": JOB_ID,
            "status": "failed",
            "exportedAt": None,
            "externalId": None,
            "externalUrl": None,
            "failureReason": "Vendor not found in ERP",
            "failureReasonType": "accounting_system_validation_failure",
        },
    ],
    "errors": [
        {
            "accountingEntryId": ENTRY_ID_3,
            "message": "Accounting entry does not exist.",
            "type": "ACCOUNTING_ENTRY_DOES_NOT_EXIST",
        }
    ],
}

# docs/pleo-api.md#export-job ExportJobV3 with every field, while the integration works on it.
EXPORT_JOB: Final[JsonObject] = {
    "id": JOB_ID,
    "companyId": COMPANY_ID,
    "createdAt": "2025-02-21T09:58:12Z",
    "createdBy": EMPLOYEE_ID,
    "expiresIn": 3600,
    "expiredAt": None,
    "failureReason": None,
    "failureReasonType": None,
    "isInteractive": True,
    "lastUpdatedAt": "2025-02-21T10:04:03Z",
    "numberOfItems": 3,
    "startedAt": "2025-02-21T10:01:47Z",
    "completedAt": None,
    "status": "in_progress",
    "vendorBasedBookkeeping": True,
}
# docs/pleo-api.md#documented-flow step 9: a job that expired.
EXPORT_JOB_EXPIRED: Final[JsonObject] = {
    "id": OTHER_JOB_ID,
    "companyId": COMPANY_ID,
    "createdAt": "2025-02-20T08:00:00Z",
    "createdBy": None,
    "expiresIn": 3600,
    "expiredAt": "2025-02-20T09:15:00Z",
    "failureReason": "Job not updated within expiry time limit",
    "failureReasonType": "job_expired",
    "isInteractive": False,
    "lastUpdatedAt": "2025-02-20T08:15:00Z",
    "numberOfItems": 12,
    "startedAt": "2025-02-20T08:05:00Z",
    "completedAt": None,
    "status": "failed",
    "vendorBasedBookkeeping": False,
}
# docs/pleo-api.md#get-job: GET /v3/export-jobs/{jobId} and the 201 of POST /v3/export-jobs.
EXPORT_JOB_RESPONSE: Final[JsonObject] = {"data": EXPORT_JOB}

# docs/pleo-api.md#webhook: the `v1.export-job.created` webhook; `data` lacks isInteractive and
# vendorBasedBookkeeping.
WEBHOOK_EXPORT_JOB_CREATED: Final[JsonObject] = {
    "data": {
        "companyId": COMPANY_ID,
        "createdAt": "2025-02-21T09:58:12Z",
        "createdBy": EMPLOYEE_ID,
        "expiresIn": 3600,
        "id": JOB_ID,
        "numberOfItems": 3,
        "status": "pending",
    },
    "eventId": "3c112666-87a6-4eff-8d98-3e12070ceb09",
    "eventType": "v1.export-job.created",
}

# docs/pleo-api.md#cursor-pagination pagination envelope, first of two pages.
JOB_ITEMS_PAGINATION: Final[JsonObject] = {
    "currentRequestPagination": {
        "parameters": {"limit": ["2"]},
        "after": None,
        "before": None,
        "limit": 2,
        "offset": None,
        "sortingKeys": [],
        "sortingOrder": [],
    },
    "hasNextPage": True,
    "hasPreviousPage": False,
    "endCursor": "MFRGGZDFMZTWQ2LK",
    "startCursor": "GEZDGNBVGY3TQOJQ",
    "total": 3,
}
# docs/pleo-api.md#job-items GET /v3/export-jobs/{jobId}/items as in HT-RETRIEVE: fields null before
# processing.
JOB_ITEMS_PAGE: Final[JsonObject] = {
    "data": [
        {
            "accountingEntryId": ENTRY_ID_1,
            "exportJobId": JOB_ID,
            "status": "pending",
            "exportedAt": None,
            "externalId": None,
            "externalUrl": None,
            "failureReason": None,
            "failureReasonType": None,
        },
        {
            "accountingEntryId": ENTRY_ID_2,
            "exportJobId": JOB_ID,
            "status": None,
            "exportedAt": None,
            "externalId": None,
            "externalUrl": None,
            "failureReason": None,
            "failureReasonType": None,
        },
    ],
    "pagination": JOB_ITEMS_PAGINATION,
}

# docs/pleo-api.md#list-jobs GET /v3/export-jobs?company_id=…&statuses=pending&statuses=in_progress,
# the last page.
JOBS_PAGE: Final[JsonObject] = {
    "data": [EXPORT_JOB_EXPIRED, EXPORT_JOB],
    "pagination": {
        "currentRequestPagination": {
            "parameters": {
                "company_id": [COMPANY_ID],
                "statuses": ["pending", "in_progress"],
            },
            "limit": 100,
        },
        "hasNextPage": False,
        "hasPreviousPage": False,
        "total": 2,
    },
}

# docs/pleo-api.md#error-body ExceptionInfo.
EXCEPTION_INFO: Final[JsonObject] = {"type": "EXPORT_NOT_FOUND", "message": "Export job not found."}

# docs/pleo-api.md#job-events CreateExportJobEvent: the start,
# docs/pleo-api.md#pre-export-validation's pre-validation failure, HT-COMPLETE's failure.
JOB_EVENT_STARTED: Final[JsonObject] = {"event": "started", "jobId": JOB_ID}
JOB_EVENT_FAILED: Final[JsonObject] = {
    "event": "failed",
    "jobId": JOB_ID,
    "failureReason": "Failed to reach the Accounting System.",
    "failureReasonType": "accounting_system_unreachable",
}
JOB_EVENT_SERVICE_UNREACHABLE: Final[JsonObject] = {
    "event": "failed",
    "jobId": JOB_ID,
    "failureReason": "ERP unavailable",
    "failureReasonType": "service_unreachable",
}

# docs/pleo-api.md#create-job CreateExportJob with every field.
CREATE_EXPORT_JOB: Final[JsonObject] = {
    "accountingEntryIds": [ENTRY_ID_1, ENTRY_ID_2, ENTRY_ID_3],
    "companyId": COMPANY_ID,
    "employeeId": EMPLOYEE_ID,
    "isInteractive": False,
    "options": {"vendorBasedBookkeeping": True},
}

# docs/pleo-api.md#export-item ExportItemV3 with every nested type filled: a EUR supplier invoice
# paid from a DKK wallet, split over two lines, booked as accounts payable. `date` has nanoseconds;
# invoice dates are bare `YYYY-MM-DD` dates.
EXPORT_ITEM: Final[JsonObject] = {
    "_links": {
        "api": {
            "exportItem": f"https://external.pleo.io/v3/export-items?job_id={JOB_ID}",
        },
        "mobile": {"exportItem": f"pleo://export-items/{ENTRY_ID_1}"},
        "web": {"exportItem": f"https://app.pleo.io/export/{ENTRY_ID_1}"},
    },
    "accountingEntryId": ENTRY_ID_1,
    "accountingEntryLines": [
        {
            "accountingEntryLineId": "7778e9d5-9b15-4115-95b0-251d5943eb9c",
            "lineAmount": {
                "inSupplierCurrency": {"currency": "EUR", "value": 10000},
                "inWalletCurrency": {"currency": "DKK", "value": 74596},
            },
            "netAmount": {
                "inSupplierCurrency": {"currency": "EUR", "value": 8000},
                "inWalletCurrency": {"currency": "DKK", "value": 59677},
            },
            "account": {
                "id": "98282eac-ecfb-40b8-bc1c-3b865d0d7f40",
                "name": "Software subscriptions",
                "code": "6810",
                "identifier": "GL-6810",
            },
            "tags": [
                {
                    "id": "65310d07-cd7a-40b3-8d7a-10261857341a",
                    "code": "MKT-01",
                    "groupCode": "DEPARTMENT",
                },
                {
                    "id": "3896c3a5-cb68-4d23-8541-2bf163b99cd8",
                    "code": "P-2025-Q1",
                    "groupCode": "PROJECT",
                },
            ],
            "tax": {
                "id": "1c7ee496-1999-401d-bad8-081e8239904d",
                "amount": {
                    "inSupplierCurrency": {"currency": "EUR", "value": 2000},
                    "inWalletCurrency": {"currency": "DKK", "value": 14919},
                },
                "rate": 0.25,
                "type": "inclusive",
                "code": "I25",
                "ingoingTaxAccount": "5610",
                "outgoingTaxAccount": "5620",
            },
        },
        {
            "accountingEntryLineId": "7ef18ce7-ff36-4fa7-be40-3d29c323b550",
            "lineAmount": {
                "inSupplierCurrency": {"currency": "EUR", "value": 2500},
                "inWalletCurrency": {"currency": "DKK", "value": 18649},
            },
            "netAmount": {
                "inSupplierCurrency": {"currency": "EUR", "value": 2500},
                "inWalletCurrency": {"currency": "DKK", "value": 18649},
            },
            "account": {
                "id": "35c89fd3-38b6-4e79-bf53-4113d347afb8",
                "name": "Training",
                "code": None,
                "identifier": None,
            },
            "tags": None,
            "tax": None,
        },
    ],
    "additionalInformation": {
        "reconciliationId": "B-2025-00417",
        "attendees": ["Ana Silva", "Jonas Berg"],
        "invoiceInformation": {
            "invoiceDate": "2025-02-14",
            "invoiceNumber": "INV-88231",
            "status": "paid",
            "dueDate": "2025-03-16",
            "paymentDate": "2025-02-21",
            "supplierBankAccount": {
                "bankName": "Bank of Ireland",
                "country": "IE",
                "accountNumber": "12345678",
                "bankCode": "900017",
                "bic": "BOFIIE2D",
                "iban": "IE29AIBK93115212345678",
            },
        },
        "reconciledEntries": ["B-2025-00398", "B-2025-00399"],
    },
    "amount": {
        "inSupplierCurrency": {"currency": "EUR", "value": 12500},
        "inWalletCurrency": {"currency": "DKK", "value": 93245},
    },
    "bookkeeping": {"method": "accounts_payable"},
    "companyId": COMPANY_ID,
    "contraAccount": {
        "id": "9fb0fa96-6b59-417c-9316-d7795dc713a9",
        "name": "Pleo DKK Account",
        "code": "5820",
        "identifier": "BANK-PLEO-DKK",
    },
    "date": "2025-02-21T10:05:43.530450712Z",
    "files": [
        {
            "size": 48213,
            "type": "application/pdf",
            "url": "https://files.pleo.io/receipts/7649c479-c56a-439c-af5d-d4ad21d2f4e6.pdf",
        },
        {
            "size": 2084,
            "type": "image/jpeg",
            "url": "https://files.pleo.io/receipts/5d51b80c-9dbf-4da7-938a-8912a05ce02d.jpg",
        },
    ],
    "note": "Annual licence renewal, Nordics team",
    "servicePeriod": {"from": "2025-01-01T00:00:00Z", "to": "2025-12-31T00:00:00Z"},
    "subType": None,
    "supplier": {
        "account": "70012",
        "categoryCode": "5734",
        "code": "SUP-0042",
        "country": "IE",
        "name": "ATLASSIAN NETWORK SVCS",
        "taxIdentifier": "IE9825613N",
    },
    "team": {"id": "844a58a6-5639-49f0-adf2-b3a1f29e9481", "name": "Marketing", "code": "T-MKT"},
    "type": "invoice",
    "user": {"id": EMPLOYEE_ID, "name": "Ana Silva", "code": "EMP-117"},
    "vendor": {
        "id": "1d4c4756-c769-4c5f-8410-319c563055cc",
        "name": "Atlassian",
        "defaultCurrency": "EUR",
        "code": "V-1001",
        "country": "IE",
        "externalId": "V-1001",
        "registrationNumber": "IE-CRO-316562",
        "taxRegistrationNumber": "IE9825613N",
    },
}

# docs/pleo-api.md#export-item ExportItemV3 with only the required fields: a card purchase, vendor
# tagging off (`bookkeeping` null), optional fields either null or left out.
EXPORT_ITEM_MINIMAL: Final[JsonObject] = {
    "_links": {},
    "accountingEntryId": ENTRY_ID_2,
    "accountingEntryLines": [
        {
            "accountingEntryLineId": "20e2effe-e59e-42ab-839a-53251040217f",
            "lineAmount": {
                "inSupplierCurrency": {"currency": "SEK", "value": 89696},
                "inWalletCurrency": {"currency": "DKK", "value": 58830},
            },
            "netAmount": {
                "inSupplierCurrency": {"currency": "SEK", "value": 89696},
                "inWalletCurrency": {"currency": "DKK", "value": 58830},
            },
        }
    ],
    "additionalInformation": {"reconciliationId": "B-2025-00418"},
    "amount": {
        "inSupplierCurrency": {"currency": "SEK", "value": 89696},
        "inWalletCurrency": {"currency": "DKK", "value": 58830},
    },
    "companyId": COMPANY_ID,
    "date": "2025-02-20T14:31:09+01:00",
    "type": "card_purchase",
    "bookkeeping": None,
    "subType": None,
    "supplier": None,
}

# docs/pleo-api.md#export-items GET /v3/export-items?job_id=…
EXPORT_ITEMS_PAGE: Final[JsonObject] = {
    "data": [EXPORT_ITEM, EXPORT_ITEM_MINIMAL],
    "pagination": {
        "currentRequestPagination": {"parameters": {"job_id": [JOB_ID]}, "limit": 100},
        "hasNextPage": False,
        "hasPreviousPage": False,
        "endCursor": "MFRGGZDFMZTWQ2LK",
        "startCursor": "MFRGGZDFMZTWQ2LK",
    },
}
