"""The tables of `PostgresLedger` and every statement it runs, in one schema of the database
(`{s}` stands for the schema's name). The version is written in the `meta` row."""

from __future__ import annotations

import re

SCHEMA_VERSION = 1
APPLICATION = "pleo_export_async"
#: The first key of the advisory lock under which the schema is checked and created ("PLEO").
SCHEMA_LOCK = 0x504C454F

TABLES = """
CREATE TABLE {s}.meta (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    application text NOT NULL,
    schema_version integer NOT NULL
);
CREATE TABLE {s}.batch (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id text NOT NULL,
    updates bytea NOT NULL
);
CREATE INDEX batch_by_job ON {s}.batch (job_id, id);
CREATE TABLE {s}.acknowledgement (
    batch_id bigint PRIMARY KEY REFERENCES {s}.batch (id) ON DELETE CASCADE,
    acknowledged text NOT NULL
);
CREATE TABLE {s}.final_event (
    job_id text PRIMARY KEY,
    request bytea NOT NULL,
    outcome bytea
);
CREATE TABLE {s}.lease (
    job_id text PRIMARY KEY,
    holder text NOT NULL,
    fence bigint NOT NULL,
    expires_at timestamptz NOT NULL
)
"""

#: The lease still names this worker and this fence, and has not expired; `FOR SHARE` keeps
#: another worker from taking it until the statement's transaction ends.
_HELD = (
    "EXISTS (SELECT 1 FROM {s}.lease WHERE job_id = $1 AND holder = $3 AND fence = $4"
    " AND expires_at > now() FOR SHARE)"
)
SQL = {
    "take": (
        "INSERT INTO {s}.lease AS lease (job_id, holder, fence, expires_at)"
        " VALUES ($1, $2, 1, now() + make_interval(secs => $3))"
        " ON CONFLICT (job_id) DO UPDATE SET holder = EXCLUDED.holder,"
        " fence = lease.fence + 1, expires_at = EXCLUDED.expires_at"
        " WHERE lease.expires_at <= now()"
        " RETURNING fence"
    ),
    "holder": "SELECT holder, expires_at FROM {s}.lease WHERE job_id = $1",
    "renew": (
        "UPDATE {s}.lease SET expires_at = now() + make_interval(secs => $4)"
        " WHERE job_id = $1 AND holder = $2 AND fence = $3 AND expires_at > now()"
        " RETURNING fence"
    ),
    # One statement, one round trip: let the lease go, and wake the workers waiting for it
    # ($4 is the channel they listen on), even when it had expired already (PostgreSQL runs a
    # WITH clause's UPDATE whether or not the query reads it).
    "release": (
        "WITH released AS (UPDATE {s}.lease SET expires_at = now()"
        " WHERE job_id = $1 AND holder = $2 AND fence = $3 AND expires_at > now())"
        " SELECT pg_notify($4, $1)"
    ),
    "in_flight": (
        "INSERT INTO {s}.batch (job_id, updates) SELECT $1, $2 WHERE " + _HELD + " RETURNING id"
    ),
    # The acknowledgements of several batches (of any jobs), in one statement.
    "acknowledged": (
        "INSERT INTO {s}.acknowledgement (batch_id, acknowledged)"
        " SELECT * FROM unnest($1::bigint[], $2::text[])"
    ),
    "intent": (
        "INSERT INTO {s}.final_event AS event (job_id, request, outcome)"
        " SELECT $1, $2, NULL WHERE " + _HELD + " ON CONFLICT (job_id) DO UPDATE"
        " SET request = EXCLUDED.request, outcome = NULL WHERE event.outcome IS NULL"
        " RETURNING job_id"
    ),
    "delivered": "UPDATE {s}.final_event SET outcome = $2 WHERE job_id = $1",
    "forget": "DELETE FROM {s}.batch WHERE job_id = $1",
    "read_lease": "SELECT fence, expires_at > now() AS held FROM {s}.lease WHERE job_id = $1",
    "read_event": "SELECT request, outcome FROM {s}.final_event WHERE job_id = $1",
    "read_batches": (
        "SELECT id, updates, acknowledged FROM {s}.batch"
        " LEFT JOIN {s}.acknowledgement ON batch_id = id WHERE job_id = $1 ORDER BY id"
    ),
}

SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
