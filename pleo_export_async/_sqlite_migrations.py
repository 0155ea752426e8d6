"""Forward migrations of a SqliteLedger file, from every schema version that was ever released
to the current one (the Ledgers layer, docs/architecture.md).

`MIGRATIONS[n]` takes a file from version n to n + 1 inside the caller's transaction, so a
process killed at any instant leaves the file at the version it had or at the next one, never
between. Each migration works on the stored JSON, not on today's models: a row that today's
checks would refuse (an `external_url` earlier versions took) is carried over as it was sent.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import Any, Final

from . import _codec
from ._durable_rows import EVERY_ID

#: How many updates one batch row holds when a migration has to make new ones (a PUT's worth).
_ROW_SIZE: Final = 100


def same_update(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Whether two stored item objects are the same update (a null field is a field left out)."""
    return {k: v for k, v in first.items() if v is not None} == {
        k: v for k, v in second.items() if v is not None
    }


def _version_1_to_2(connection: sqlite3.Connection) -> None:
    """Version 1 kept one `batch_record` row per write, `in_flight` or `acknowledged`, each with
    the whole updates. Version 2 keeps one `batch` row per PUT body and one `acknowledgement`
    row per answer, and deletes a job's rows once its final event is delivered.

    Each job is replayed as version 1 read it: an acknowledged record's updates are Pleo's;
    an in-flight update is still in doubt unless the very same update was acknowledged after
    it. The acknowledged records become batches acknowledged whole; the updates still in doubt
    become batches with no answer, after them, so version 2 reads the same back.
    """
    connection.execute(
        "CREATE TABLE batch (id INTEGER PRIMARY KEY, job_id TEXT NOT NULL, updates BLOB NOT NULL)"
    )
    connection.execute("CREATE INDEX batch_by_job ON batch (job_id, id)")
    connection.execute(
        "CREATE TABLE acknowledgement (batch_id INTEGER PRIMARY KEY, acknowledged TEXT NOT NULL)"
    )
    delivered = {
        job_id
        for (job_id,) in connection.execute(
            "SELECT job_id FROM final_event WHERE outcome IS NOT NULL"
        )
    }
    acknowledged: dict[str, list[bytes]] = {}
    in_doubt: dict[str, dict[str, dict[str, Any]]] = {}
    for job_id, kind, updates in connection.execute(
        "SELECT job_id, kind, updates FROM batch_record ORDER BY seq"
    ):
        if job_id in delivered:
            continue  # version 2 forgets a job's batches once its event is delivered
        items: list[dict[str, Any]] = _codec.loads(updates)
        doubt = in_doubt.setdefault(job_id, {})
        if kind == "in_flight":
            for item in items:
                doubt[item["accountingEntryId"]] = item
            continue
        acknowledged.setdefault(job_id, []).append(bytes(updates))
        for item in items:
            entry_id = item["accountingEntryId"]
            if entry_id in doubt and same_update(doubt[entry_id], item):
                del doubt[entry_id]
    for job_id in sorted(acknowledged.keys() | in_doubt.keys()):
        for body in acknowledged.get(job_id, []):
            key = connection.execute(
                "INSERT INTO batch (job_id, updates) VALUES (?, ?)", (job_id, body)
            ).lastrowid
            connection.execute(
                "INSERT INTO acknowledgement (batch_id, acknowledged) VALUES (?, ?)",
                (key, EVERY_ID),
            )
        doubtful = list(in_doubt.get(job_id, {}).values())
        for start in range(0, len(doubtful), _ROW_SIZE):
            connection.execute(
                "INSERT INTO batch (job_id, updates) VALUES (?, ?)",
                (job_id, _codec.dumps(doubtful[start : start + _ROW_SIZE])),
            )
    connection.execute("DROP INDEX batch_record_by_job")
    connection.execute("DROP TABLE batch_record")


#: From each released version to the next.
MIGRATIONS: Final[Mapping[int, Callable[[sqlite3.Connection], None]]] = {1: _version_1_to_2}
