"""The pure core: what to send, what Pleo's answers mean, and which event closes the job.

Nothing here does I/O. No module of this package imports aiohttp, asyncio, sqlite3 or the
transport (a test walks their imports); the JobRun drives them over the network and the
ledgers make what they decide durable.

* `_batches`: a `Batch` is one PUT's worth of updates, from planning to Pleo's answer.
* `_acknowledgements`: a job's record of what Pleo acknowledged, one entry per ID.
* `_tracker`: offers, batch planning and the reconciliation of answers (R1, R3, R4, R5, R9).
* `_views`: the lazy, read-only views a report gives of a call's acknowledgements.
* `_classify`: what an HTTP status or a per-item error calls for (R5, R6, R7).
* `_decision`: which final event closes the job, and the tally behind it (R10).
* `_pleo_results`: what an item's state at Pleo says of the updates sent (R11, R13).
"""
