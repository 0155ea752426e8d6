"""`pleo-export serve`: the connector as a service, run as child processes against the fake over
TCP. Pleo's job order across replicas (R19), webhooks as hints (R20), drain on SIGTERM (R21),
and the health probes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import re
import secrets
import signal
import socket
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from standardwebhooks import Webhook

from helpers import (
    PLEO_EXPORT,
    assert_in_pleos_order,
    company,
    console_script_environment,
    created_minutes_ago,
    run_console_script,
    wait_until,
)
from pleo_export_async.testing import FakePleo, Faults, FaultSpec

TESTS = Path(__file__).resolve().parent
SECRET = "whsec_" + base64.b64encode(b"serve-test-secret-0123456789ab").decode()
JOB_CREATED = "v1.export-job.created"


class Served:
    """One `pleo-export serve` child process, and what it wrote on stderr."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.url = ""
        self._listening = asyncio.Event()
        self._reading = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            found = re.search(r"serving on (http://[\d.]+:\d+)", line)
            if found:
                self.url = found.group(1)
                self._listening.set()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    async def listening(self) -> None:
        waiting = asyncio.create_task(self._listening.wait())
        await asyncio.wait({waiting, self._reading}, timeout=60, return_when="FIRST_COMPLETED")
        waiting.cancel()
        assert self.url, f"serve did not start listening:\n{self.text}"

    async def signal_and_wait(self, signum: int = signal.SIGTERM, within: float = 60) -> int:
        self.process.send_signal(signum)
        return await self.wait(within)

    async def wait(self, within: float = 60) -> int:
        code = await asyncio.wait_for(self.process.wait(), within)
        await self._reading
        return code

    async def get(self, path: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session, session.get(self.url + path) as answer:
            return answer.status, await answer.json()


async def start_serving(
    fake: FakePleo,
    *arguments: str,
    env: Mapping[str, str] | None = None,
    handler: str = "serve_handler:handle",
) -> Served:
    process = await asyncio.create_subprocess_exec(
        str(PLEO_EXPORT),
        "serve",
        handler,
        "--base-url",
        fake.base_url,
        "--listen",
        "127.0.0.1:0",
        *arguments,
        cwd=TESTS,
        env=console_script_environment({"PLEO_API_KEY": fake.api_key, **(env or {})}),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    served = Served(process)
    await served.listening()
    return served


@contextlib.asynccontextmanager
async def serving(
    fake: FakePleo, *arguments: str, env: Mapping[str, str] | None = None
) -> AsyncIterator[Served]:
    served = await start_serving(fake, *arguments, env=env)
    try:
        yield served
    finally:
        if served.process.returncode is None:
            served.process.kill()
            await served.process.wait()


def listings(fake: FakePleo) -> list[Any]:
    return [e for e in fake.journal.entries("GET") if e.path == "/v3/export-jobs"]


def started(fake: FakePleo, job_id: str) -> bool:
    return bool(fake.journal.events(job_id))


def completed(fake: FakePleo, job_id: str) -> bool:
    return fake.job_status(job_id) == "completed"


def rounds(fake: FakePleo) -> int:
    """The worker's rounds: its listings of every company's jobs (a poll, or a webhook's wake),
    not the listings of one company's jobs it makes after closing one of them."""
    return len([entry for entry in listings(fake) if "company_id" not in entry.query])


async def create_job_through_the_api(fake: FakePleo, company_id: str, items: int = 20) -> str:
    body = {
        "accountingEntryIds": [str(uuid.uuid4()) for _ in range(items)],
        "companyId": company_id,
    }
    key = base64.b64encode(f"{fake.api_key}:".encode()).decode()
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Basic {key}"}) as session,
        session.post(fake.base_url + "/v3/export-jobs", json=body) as answer,
    ):
        assert answer.status == 201, await answer.text()
        job_id: str = (await answer.json())["data"]["id"]
        return job_id


def signed(
    body: bytes, *, secret: str = SECRET, webhook_id: str | None = None, at: datetime | None = None
) -> dict[str, str]:
    """The headers Pleo sends with `body`, signed by the Standard Webhooks scheme."""
    webhook_id = webhook_id or f"msg_{secrets.token_hex(8)}"
    moment = at or datetime.now(UTC)
    signature = Webhook(secret).sign(webhook_id, moment, body.decode())
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def job_created(job_id: str, company_id: str, event_type: str = JOB_CREATED) -> bytes:
    return json.dumps(
        {
            "data": {"id": job_id, "companyId": company_id, "status": "pending"},
            "eventId": str(uuid.uuid4()),
            "eventType": event_type,
        }
    ).encode()


async def notify(served: Served, body: bytes, headers: Mapping[str, str]) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(served.url + "/webhooks/pleo", data=body, headers=headers) as answer,
    ):
        return answer.status


# -- Pleo's job order across replicas (R19) ------------------------------------------------------


async def test_three_replicas_keep_pleos_order_per_company(
    postgres_dsn: str, postgres_schema: str
) -> None:
    """Three `serve` replicas on one PostgreSQL ledger, two companies at once each, over 4
    companies with 3 jobs each: per company no two jobs in progress at once, oldest first; all
    12 close with one final event and nothing resent; SIGTERM then exits each with 0."""
    async with FakePleo(seed=51, strict=True, faults=Faults(latency=(0.001, 0.004))) as fake:
        made = [
            (minutes, created_minutes_ago(fake, minutes, company(number)))
            for minutes in (2, 3, 1)
            for number in range(4)
        ]
        jobs = [job for _, job in sorted(made, key=lambda made: -made[0])]
        arguments = [
            *("--ledger", postgres_dsn, "--ledger-schema", postgres_schema),
            *("--companies-at-once", "2", "--poll-interval", "0.2"),
        ]
        async with contextlib.AsyncExitStack() as stack:
            replicas = [
                await stack.enter_async_context(serving(fake, *arguments)) for _ in range(3)
            ]
            await wait_until(lambda: len(fake.journal.final_events_applied()) >= len(jobs), 120)
            codes = [await replica.signal_and_wait() for replica in replicas]
        assert codes == [0, 0, 0], "\n".join(replica.text for replica in replicas)
        for job in jobs:
            assert len(fake.journal.final_events_applied(job.id)) == 1
            assert fake.journal.resent_after_ack(job.id) == {}
        assert_in_pleos_order(fake, jobs)
        assert all("drained" in replica.text for replica in replicas)
        assert all(postgres_dsn not in replica.text for replica in replicas)


# -- webhooks wake the worker; they are only hints (R20) -----------------------------------------


def free_port() -> int:
    """A loopback port free now, for a service the fake must know the address of before it
    starts (the fake's webhook_url)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_the_fakes_webhook_starts_a_new_job_with_no_poll_in_between() -> None:
    """With --poll-interval 600, each job created through the fake is announced by the fake's
    signed notification, answered 202, and started after the one round it caused, not a poll.
    Prints the median creation-to-started time over 20 jobs."""
    port = free_port()
    webhook_url = f"http://127.0.0.1:{port}/webhooks/pleo"
    async with (
        FakePleo(seed=52, strict=True, webhook_url=webhook_url, webhook_secret=SECRET) as fake,
        serving(
            fake,
            *("--poll-interval", "600", "--listen", f"127.0.0.1:{port}"),
            env={"PLEO_WEBHOOK_SECRET": SECRET},
        ) as served,
    ):
        await wait_until(lambda: rounds(fake) >= 1, seconds=60, what="the first listing")
        waits = []
        for number in range(20):
            before = rounds(fake)
            created_at = time.monotonic()
            job_id = await create_job_through_the_api(fake, company(100 + number))
            await wait_until(
                functools.partial(started, fake, job_id), seconds=60, what="the job started"
            )
            waits.append(time.monotonic() - created_at)
            [delivery] = fake.journal.webhook_deliveries(job_id)
            assert delivery.status == 202
            # One round, the one the notification caused; a poll would be a second.
            assert rounds(fake) == before + 1
            await wait_until(
                functools.partial(completed, fake, job_id),
                seconds=60,
                what="the job closed",
            )
        median = statistics.median(waits) * 1000
        print(f"\nmedian creation-to-started over 20 jobs: {median:.0f} ms")
        assert await served.signal_and_wait() == 0


async def test_with_the_webhook_dropped_the_job_starts_at_the_next_poll() -> None:
    """A job whose notification the fake drops is started by the next poll, not before."""
    port = free_port()
    faults = Faults(webhook_dropped=FaultSpec(probability=1.0))
    async with (
        FakePleo(
            seed=53,
            strict=True,
            faults=faults,
            webhook_url=f"http://127.0.0.1:{port}/webhooks/pleo",
        ) as fake,
        serving(
            fake,
            *("--poll-interval", "1", "--listen", f"127.0.0.1:{port}"),
            env={"PLEO_WEBHOOK_SECRET": fake.webhook_secret},
        ) as served,
    ):
        await wait_until(lambda: rounds(fake) >= 1, seconds=60, what="the first listing")
        job_id = await create_job_through_the_api(fake, company(200))
        await wait_until(
            lambda: fake.job_status(job_id) == "completed", seconds=60, what="the job closed"
        )
        assert fake.journal.webhook_deliveries(job_id) == []
        started = fake.journal.events(job_id)[0].received_at
        polls_before = [
            entry
            for entry in listings(fake)
            if "company_id" not in entry.query and entry.received_at < started
        ]
        assert len(polls_before) >= 2, "a poll after the first listing took it"
        assert await served.signal_and_wait() == 0


def _bad_notifications(
    job_id: str, company_id: str
) -> list[tuple[str, bytes, dict[str, str], int]]:
    body = job_created(job_id, company_id)
    good = signed(body)
    other_secret = "whsec_" + base64.b64encode(b"not-the-subscription-secret!").decode()
    old = datetime.fromtimestamp(time.time() - 600, UTC)
    not_json = b"this is not json"
    unknown = json.dumps({"data": {}, "eventId": "e", "eventType": "v1.vendor.created"}).encode()
    big = b"{" + b" " * (2 * 1024 * 1024) + b"}"
    return [
        ("wrong signature", body, signed(body, secret=other_secret), 401),
        ("old timestamp", body, signed(body, at=old), 401),
        ("no headers", body, {"content-type": "application/json"}, 401),
        ("no signature", body, {k: v for k, v in good.items() if k != "webhook-signature"}, 401),
        ("malformed signature", body, {**good, "webhook-signature": "garbage"}, 401),
        ("signature of another body", body + b" ", good, 401),
        ("not json", not_json, signed(not_json), 400),
        ("2 MiB body", big, {"content-type": "application/json"}, 413),
        ("unknown event type", unknown, signed(unknown), 202),
    ]


async def test_bad_notifications_get_their_status_and_start_nothing() -> None:
    """Wrong signature, old timestamp, missing headers, a 2 MiB or non-JSON body, a replay, an
    unknown event type: each gets its status, none starts the job, the service keeps running;
    then one good notification starts it, and its replay acts no more."""
    async with (
        FakePleo(seed=54, strict=True) as fake,
        serving(fake, "--poll-interval", "600", env={"PLEO_WEBHOOK_SECRET": SECRET}) as served,
    ):
        await wait_until(lambda: len(listings(fake)) >= 1, seconds=60, what="the first listing")
        company_id = company(300)
        job_id = await create_job_through_the_api(fake, company_id)
        answered = {
            name: await notify(served, body, headers)
            for name, body, headers, _ in _bad_notifications(job_id, company_id)
        }
        expected = {name: status for name, _, _, status in _bad_notifications(job_id, company_id)}
        assert answered == expected
        await asyncio.sleep(0.5)  # time for a wrongly woken worker to list and start the job
        assert rounds(fake) == 1
        assert fake.job_status(job_id) == "pending"
        assert (await served.get("/healthz"))[0] == 200
        body = job_created(job_id, company_id)
        headers = signed(body)
        assert await notify(served, body, headers) == 202
        await wait_until(
            lambda: fake.job_status(job_id) == "completed", seconds=60, what="the job closed"
        )
        done = rounds(fake)
        assert await notify(served, body, signed(body, webhook_id=headers["webhook-id"])) == 200
        await asyncio.sleep(0.3)
        assert rounds(fake) == done, "a replayed webhook-id acts once"
        assert await served.signal_and_wait() == 0
    assert SECRET not in served.text


# -- drain on SIGTERM (R21) and the probes --------------------------------------------------------


async def test_sigterm_mid_job_drains_and_the_next_start_finishes_it_sqlite(
    tmp_path: Path,
) -> None:
    """SIGTERM while a job is being worked, with a SqliteLedger: exit 0 within the grace period,
    naming the job left in progress, no final event; the next start finishes it, nothing
    resent, one final event."""
    await _drained_then_finished(["--ledger", str(tmp_path / "serve.sqlite3")])


async def test_sigterm_mid_job_drains_and_the_next_start_finishes_it_postgres(
    postgres_dsn: str, postgres_schema: str
) -> None:
    """The same with a PostgresLedger."""
    await _drained_then_finished(["--ledger", postgres_dsn, "--ledger-schema", postgres_schema])


async def _drained_then_finished(ledger: list[str]) -> None:
    slow = {"SERVE_HANDLER_SLEEP": "0.01"}
    async with FakePleo(seed=55, strict=True) as fake:
        job = fake.create_job(items=1500, status="pending")
        async with serving(fake, *ledger, "--grace", "20", "--concurrency", "4", env=slow) as first:
            await wait_until(
                lambda: len(fake.journal.puts(job.id)) >= 3, seconds=60, what="a few batches sent"
            )
            first.process.send_signal(signal.SIGTERM)
            await wait_until(
                lambda: any("draining" in line for line in first.lines), seconds=60, what="draining"
            )
            code = await first.wait(within=20 + 30)
        assert code == 0, first.text
        assert "left in progress" in first.lines[-1], first.text
        assert job.id in first.lines[-1]
        assert "grace period ran out" not in first.lines[-1]
        assert fake.journal.final_events_applied(job.id) == []
        assert fake.job_status(job.id) == "in_progress"
        async with serving(fake, *ledger, "--poll-interval", "0.2") as second:
            await wait_until(
                lambda: fake.job_status(job.id) == "completed", seconds=60, what="the job finished"
            )
            assert await second.signal_and_wait() == 0
        assert len(fake.journal.final_events_applied(job.id)) == 1
        assert fake.journal.resent_after_ack(job.id) == {}


async def test_readyz_answers_503_while_draining_and_a_second_signal_exits_at_once(
    tmp_path: Path,
) -> None:
    """Ready once the jobs were listed; after SIGTERM, /readyz and the webhook answer 503 while
    the batches settle, and a second SIGTERM exits at once with 143."""
    # Handler calls of 20 s: the drain waits for the two in flight, which began with the job.
    called = tmp_path / "handler-called"
    slow = {
        "SERVE_HANDLER_SLEEP": "20",
        "SERVE_HANDLER_CALLED": str(called),
        "PLEO_WEBHOOK_SECRET": SECRET,
    }
    async with FakePleo(seed=56, strict=True) as fake:
        job = fake.create_job(items=400, status="pending")
        async with serving(fake, "--grace", "60", "--concurrency", "2", env=slow) as served:
            await wait_until(called.exists, seconds=60, what="the first handler calls")
            assert await served.get("/readyz") == (200, {"ready": True})
            assert (await served.get("/healthz"))[0] == 200
            served.process.send_signal(signal.SIGTERM)
            await wait_until(
                lambda: any("draining" in line for line in served.lines),
                seconds=60,
                what="draining",
            )
            status, document = await served.get("/readyz")
            assert (status, document["why"]) == (503, ["draining"])
            body = job_created(job.id, job.company_id)
            assert await notify(served, body, signed(body)) == 503
            assert await served.signal_and_wait(signal.SIGTERM, within=10) == 128 + signal.SIGTERM
        assert fake.journal.final_events_applied(job.id) == []


@pytest.mark.parametrize(
    ("handler", "said"),
    [
        ("no_such_module:handle", "cannot import module 'no_such_module'"),
        ("serve_handler:no_such_function", "has no attribute 'no_such_function'"),
        ("serve_handler", "MODULE:FUNCTION"),
    ],
)
def test_a_handler_that_cannot_be_used_is_one_line_and_exit_2(handler: str, said: str) -> None:
    """A handler that cannot be imported, or is not an async function, is refused before any
    request: exit 2, one line naming it, no traceback."""
    ran = run_console_script(
        ["serve", handler, "--base-url", "http://127.0.0.1:9"],
        env={"PLEO_API_KEY": "key"},
        timeout=60,
        cwd=TESTS,
    )
    assert ran.returncode == 2, ran.stderr
    assert said in ran.stderr
    assert "Traceback" not in ran.stderr


async def test_a_handler_whose_call_gives_no_awaitable_ends_the_service_with_exit_2() -> None:
    """A plain function as the handler: its first call ends the service, with exit 2 and one
    line saying it must be async; the job stays in progress with no final event."""
    async with FakePleo(seed=57, strict=True) as fake:
        job = fake.create_job(items=30, status="pending")
        served = await start_serving(fake, handler="serve_handler:not_async")
        code = await served.wait(within=60)
    said = served.text
    assert code == 2, said
    assert "async" in served.lines[-1]
    assert "Traceback" not in said
    assert fake.journal.final_events_applied(job.id) == []


def test_a_ledger_value_that_may_hold_a_password_is_refused_without_showing_it() -> None:
    """--ledger with a URL that is neither a file nor a postgresql:// DSN is exit 2, and its
    password appears nowhere in the output."""
    ran = run_console_script(
        [
            "serve",
            "serve_handler:handle",
            "--ledger",
            "postgresql+asyncpg://exports:pw-7c41e9-secret@127.0.0.1:1/connector",
        ],
        env={"PLEO_API_KEY": "key"},
        timeout=60,
        cwd=TESTS,
    )
    assert ran.returncode == 2, ran.stderr
    assert "--ledger" in ran.stderr
    assert "pw-7c41e9-secret" not in ran.stdout + ran.stderr


# -- OAuth2: the rotated tokens live beside the ledger, shared by the replicas --------------------

OAUTH_CLIENT = ("serve-connector", "cs-serve-5b1e9d0a77c4")


def oauth_environment(fake: FakePleo, refresh_token: str) -> dict[str, str]:
    client_id, client_secret = OAUTH_CLIENT
    return {
        "PLEO_API_KEY": "",
        "PLEO_CLIENT_ID": client_id,
        "PLEO_CLIENT_SECRET": client_secret,
        "PLEO_REFRESH_TOKEN": refresh_token,
        "PLEO_TOKEN_URL": f"{fake.base_url}/oauth/token",
    }


def token_requests(fake: FakePleo) -> int:
    return fake.journal.count(method="POST", path_prefix="/oauth/token")


async def test_replicas_with_oauth2_refresh_one_at_a_time_and_a_restart_reads_the_stored_pair(
    postgres_dsn: str, postgres_schema: str
) -> None:
    """Two `serve` replicas given one authorisation's refresh token (PLEO_CLIENT_ID, ...) on a
    PostgreSQL ledger: one token request to start, one more after Pleo expires every access
    token mid-run, never the spent seed again (which would revoke the authorisation); every job
    closes once; a replica started later with the same, spent, seed reads the stored pair and
    works a new job with no token request; no secret reaches their output."""
    client_id, client_secret = OAUTH_CLIENT
    async with FakePleo(seed=57, strict=True, oauth_clients={client_id: client_secret}) as fake:
        _, seed = fake.issue_token()
        jobs = [
            fake.create_job(items=400, status="pending", company_id=company(n)) for n in range(4)
        ]
        arguments = [
            *("--ledger", postgres_dsn, "--ledger-schema", postgres_schema),
            *("--companies-at-once", "2", "--poll-interval", "0.2", "--concurrency", "4"),
        ]
        env = {**oauth_environment(fake, seed), "SERVE_HANDLER_SLEEP": "0.005"}
        async with contextlib.AsyncExitStack() as stack:
            replicas = [
                await stack.enter_async_context(serving(fake, *arguments, env=env))
                for _ in range(2)
            ]
            await wait_until(lambda: len(fake.journal.puts()) >= 4, 60, what="batches sent")
            assert token_requests(fake) == 1
            fake.expire_access_tokens()
            await wait_until(
                lambda: len(fake.journal.final_events_applied()) >= len(jobs),
                120,
                what="all closed",
            )
            codes = [await replica.signal_and_wait() for replica in replicas]
        assert codes == [0, 0], "\n".join(replica.text for replica in replicas)
        assert token_requests(fake) == 2
        for job in jobs:
            assert len(fake.journal.final_events_applied(job.id)) == 1
            assert fake.journal.resent_after_ack(job.id) == {}
        later = fake.create_job(items=5, status="pending", company_id=company(9))
        async with serving(fake, *arguments, env=env) as restarted:
            await wait_until(lambda: completed(fake, later.id), 60, what="the new job closed")
            assert await restarted.signal_and_wait() == 0
        assert token_requests(fake) == 2
        texts = [replica.text for replica in [*replicas, restarted]]
        for secret in (seed, client_secret, postgres_dsn):
            assert all(secret not in text for text in texts)


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"PLEO_CLIENT_SECRET": "cs-x"}, "needs a place for the rotated refresh token"),
        ({"PLEO_API_KEY": "key-1"}, "give PLEO_CLIENT_ID or PLEO_API_KEY, not both"),
    ],
)
def test_oauth2_settings_that_cannot_work_are_one_line_and_exit_2(
    given: dict[str, str], said: str
) -> None:
    """PLEO_CLIENT_ID with no --ledger to keep the rotated token in, or beside an API key, is
    refused before anything is sent, in one line that shows no secret."""
    env = {"PLEO_API_KEY": "", "PLEO_CLIENT_ID": "serve-connector", **given}
    ran = run_console_script(
        ["serve", "serve_handler:handle", "--base-url", "http://127.0.0.1:9"],
        env=env,
        timeout=60,
        cwd=TESTS,
    )
    assert ran.returncode == 2, ran.stderr
    assert said in ran.stderr
    assert "cs-x" not in ran.stderr + ran.stdout


def test_oauth2_without_the_client_secret_is_refused_naming_the_variable(tmp_path: Path) -> None:
    """PLEO_CLIENT_ID with a ledger but no PLEO_CLIENT_SECRET says which variable is missing."""
    env = {"PLEO_API_KEY": "", "PLEO_CLIENT_ID": "serve-connector"}
    ran = run_console_script(
        [
            *("serve", "serve_handler:handle", "--base-url", "http://127.0.0.1:9"),
            *("--ledger", str(tmp_path / "ledger.sqlite")),
        ],
        env=env,
        timeout=60,
        cwd=TESTS,
    )
    assert ran.returncode == 2, ran.stderr
    assert "PLEO_CLIENT_SECRET" in ran.stderr
