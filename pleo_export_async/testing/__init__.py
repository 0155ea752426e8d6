"""A faithful fake of Pleo's Export API v3 for tests: real TCP on loopback, scriptable faults.

It is strict by default: what Pleo refuses, and what Pleo's guidance tells a connector not to
do (item updates before `started`, completing with items still pending, rewriting a
successful item), it refuses with Pleo's status and error type; `FakePleo(strict=False)` is
the lenient opt-in. See `FakePleo`.

    from pleo_export_async.testing import FakePleo, Faults, FaultSpec

    async with FakePleo(faults=Faults(rate_limit=FaultSpec(at={3}))) as fake:
        job = fake.create_job(items=250)
        ...  # point a client at fake.base_url with fake.api_key
        assert fake.journal.resent_after_ack(job.id) == {}

With `webhook_url=...` (or a subscription made through its `/v1/subscriptions` API) every job
created `pending` is announced by a signed job-created notification, sent in the background;
`journal.webhook_deliveries()` lists every attempt (each a `WebhookDelivery`).

`instant_retries()` makes the client's backoff waits zero inside a block (a Retry-After pause
from the fake still holds), so tests of retry paths run fast.

Also a pytest plugin (the `fake_pleo` fixture) and a command line server, the same program
as `pleo-export fake-server` (it needs the `cli` extra):
`python -m pleo_export_async.testing --port 8080 --jobs 3 --items 500`.
"""

from pleo_export_async._retry import instant_retries

from ._faults import Faults, FaultSpec
from ._journal import ItemSend, JobSummary, Journal, JournalEntry, PauseWindow, WebhookDelivery
from ._server import FakeJob, FakePleo

# Reprs, help() and tracebacks show where users import these from, not the private module.
for _public in (
    FakePleo,
    FakeJob,
    Faults,
    FaultSpec,
    Journal,
    JournalEntry,
    ItemSend,
    PauseWindow,
    JobSummary,
    WebhookDelivery,
):
    _public.__module__ = __name__
del _public
# Public only from here, though it lives beside the retry code it switches.
instant_retries.__module__ = __name__

__all__ = [
    "FakePleo",
    "FakeJob",
    "Faults",
    "FaultSpec",
    "Journal",
    "JournalEntry",
    "ItemSend",
    "PauseWindow",
    "JobSummary",
    "WebhookDelivery",
    "instant_retries",
]
