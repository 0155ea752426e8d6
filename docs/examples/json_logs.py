"""JSON logs with the standard library: one JSON object a line, with the
library's fields (`job_id`, `accounting_entry_id`, ...) as keys of their own."""

import asyncio
import json
import logging
import sys
from datetime import UTC, datetime

from pleo_export_async import (
    ApiKeyAuth,
    ExportItem,
    ItemUpdate,
    PleoExportClient,
)
from pleo_export_async.testing import FakePleo, Faults, FaultSpec

# --8<-- [start:formatter]
# What every record has; anything else on a record came from `extra=` (or
# from a filter, such as the library's `trace_id` and `span_id`).
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON: time, level, logger, message, then each
    field the record carries beyond the standard ones."""

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, object] = {
            "time": created.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD:
                entry[name] = value  # job_id, attempt, trace_id, ...
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def log_json() -> None:
    """The library's records, INFO and above, as JSON lines on stdout."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("pleo_export_async").setLevel(logging.INFO)


# --8<-- [end:formatter]
async def main() -> None:
    log_json()
    # Request 5 is the job's one PUT: its answer is lost, so it is retried.
    faults = Faults(lost_response=FaultSpec(at={5}))
    async with FakePleo(seed=1, faults=faults) as pleo:
        job = pleo.create_job(items=20, status="pending")
        broken = job.item_ids[0]

        async def book(item: ExportItem) -> ItemUpdate:
            """Book the item; one breaks the ERP, so its record has a
            traceback."""
            if item.accounting_entry_id == broken:
                raise ConnectionResetError("the ERP hung up")
            return ItemUpdate.successful(item.accounting_entry_id)

        auth = ApiKeyAuth(pleo.api_key)
        async with PleoExportClient(pleo.base_url, auth=auth) as client:
            await client.process_job(job.id, book)


if __name__ == "__main__":
    asyncio.run(main())
