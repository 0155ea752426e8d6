"""An address that cannot be reached (issue 23): every connection failure names host:port and
its cause; until the client has had any answer, a refused connection or an unresolvable name
gives up after at most 3 attempts, within seconds; once it has had one, the policy's budget
applies to every failure, as do timeouts and TLS failures at any time. Real sockets on loopback
throughout: aiohttp is never mocked."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from pleo_export_async import ApiKeyAuth, PleoExportClient, RetryPolicy, TransportError, _transport
from pleo_export_async.testing import FakePleo, instant_retries

SECRET = "pk_live_unreachable_0123456789"
JOB_ID = str(uuid.UUID(int=23))
#: Far above what a fast give-up takes, far below the default policy's budget (minutes).
WELL_BELOW_THE_NORMAL_BUDGET = 10.0
#: Small and quick, but more attempts than a first contact is allowed.
QUICK = RetryPolicy(max_attempts=5, initial_delay=0.01, max_delay=0.02)


def closed_port() -> int:
    """A loopback port nothing listens on: bound, then closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def client(base_url: str, **options: Any) -> PleoExportClient:
    return PleoExportClient(base_url, auth=ApiKeyAuth(SECRET), **options)


async def list_jobs(pleo: PleoExportClient) -> None:
    async for _ in pleo.jobs():
        pass


def assert_no_secret(text: str) -> None:
    header = base64.b64encode(f"{SECRET}:".encode()).decode()
    assert SECRET not in text
    assert header not in text


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "pleo_export_async" and record.levelno == logging.WARNING
    ]


# -- first contact ---------------------------------------------------------------------------------


async def test_a_refused_port_on_first_contact_gives_up_after_three_attempts_naming_it() -> None:
    """A refused port before any answer ends after 3 attempts, in seconds, with an error that
    says it never reached host:port, that the connection was refused, and to check the base URL."""
    port = closed_port()
    started = time.monotonic()
    async with client(f"http://127.0.0.1:{port}") as pleo:  # the default policy: 8 attempts
        with pytest.raises(TransportError) as raised:
            await list_jobs(pleo)
        requests = pleo.stats().requests
    took = time.monotonic() - started
    message = str(raised.value)
    assert raised.value.attempts == requests == 3
    assert took < WELL_BELOW_THE_NORMAL_BUDGET
    assert f"never reached 127.0.0.1:{port}: connection refused" in message
    assert "check the base URL" in message
    assert message.startswith("GET /v3/export-jobs: ")
    assert_no_secret(message)


async def test_an_unresolvable_name_on_first_contact_gives_up_after_at_most_three_attempts() -> (
    None
):
    """A name that does not resolve (`.invalid`, RFC 6761) before any answer ends within 3
    attempts, saying the name was not resolved; skipped where the resolver cannot say so fast."""
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.getaddrinfo("pleo.invalid", 443), timeout=2.0)
    except socket.gaierror:
        pass  # the expected answer, however this machine's resolver words it
    except TimeoutError:
        pytest.skip("this machine's resolver takes too long to refuse a name")
    else:
        pytest.skip("this machine's resolver answers for the reserved .invalid domain")
    started = time.monotonic()
    async with client("https://pleo.invalid") as pleo:
        with pytest.raises(TransportError) as raised:
            await pleo.get_job(JOB_ID)
        requests = pleo.stats().requests
    message = str(raised.value)
    assert 1 <= raised.value.attempts == requests <= 3
    assert time.monotonic() - started < WELL_BELOW_THE_NORMAL_BUDGET
    assert "never reached pleo.invalid:443: name not resolved" in message
    assert "check the base URL" in message
    assert_no_secret(message)


@pytest.mark.parametrize("max_attempts", [1, 2])
async def test_a_smaller_policy_gives_up_sooner_still_on_first_contact(max_attempts: int) -> None:
    """A policy of fewer than 3 attempts is kept on first contact, and the error still says the
    address was never reached."""
    port = closed_port()
    policy = RetryPolicy(max_attempts=max_attempts, initial_delay=0.01)
    async with client(f"http://127.0.0.1:{port}", retry=policy) as pleo:
        with pytest.raises(TransportError) as raised:
            await list_jobs(pleo)
        requests = pleo.stats().requests
    assert raised.value.attempts == requests == max_attempts
    plural = "" if max_attempts == 1 else "s"
    assert (
        f"never reached 127.0.0.1:{port}: connection refused ({max_attempts} attempt{plural})"
        in (str(raised.value))
    )


async def test_long_policy_waits_are_cut_to_the_first_contact_time_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A policy's long backoff waits are cut short on first contact: no attempt starts after the
    first-contact time limit (here shortened from 5 s to 0.5 s to keep the test quick)."""
    monkeypatch.setattr(_transport, "FIRST_CONTACT_SECONDS", 0.5)
    policy = RetryPolicy(initial_delay=20.0, max_delay=60.0)
    started = time.monotonic()
    async with client(f"http://127.0.0.1:{closed_port()}", retry=policy) as pleo:
        with pytest.raises(TransportError) as raised:
            await list_jobs(pleo)
    assert 2 <= raised.value.attempts <= 3  # 3 only if a jittered wait happened to be short
    assert time.monotonic() - started < WELL_BELOW_THE_NORMAL_BUDGET
    assert "never reached" in str(raised.value)


async def test_instant_retries_keep_the_first_contact_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Under `instant_retries()` a refused first contact still stops at 3 attempts, with zero
    waits between them."""
    caplog.set_level(logging.WARNING, logger="pleo_export_async")
    with instant_retries():
        async with client(f"http://127.0.0.1:{closed_port()}") as pleo:
            with pytest.raises(TransportError) as raised:
                await list_jobs(pleo)
    assert raised.value.attempts == 3
    assert [
        record.getMessage().endswith("retrying in 0.00s") for record in warnings_of(caplog)
    ] == [
        True,
        True,
    ]


async def test_concurrent_first_requests_each_give_up_fast() -> None:
    """Several requests sent at once before any answer each give up after at most 3 attempts."""
    port = closed_port()
    started = time.monotonic()
    async with client(f"http://127.0.0.1:{port}", max_concurrency=4) as pleo:
        results = await asyncio.gather(
            *(pleo.get_job(str(uuid.UUID(int=number))) for number in range(1, 7)),
            return_exceptions=True,
        )
        requests = pleo.stats().requests
    assert all(isinstance(result, TransportError) for result in results), results
    assert all(result.attempts <= 3 for result in results if isinstance(result, TransportError))
    assert requests <= 6 * 3
    assert all("never reached" in str(result) for result in results)
    assert time.monotonic() - started < WELL_BELOW_THE_NORMAL_BUDGET


async def test_the_retry_warnings_name_host_port_and_the_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each retry WARNING names the request, host:port and the plain cause, and no secret."""
    caplog.set_level(logging.WARNING, logger="pleo_export_async")
    port = closed_port()
    with instant_retries():
        async with client(f"http://127.0.0.1:{port}") as pleo:
            with pytest.raises(TransportError):
                await list_jobs(pleo)
    warnings = warnings_of(caplog)
    assert len(warnings) == 2  # the third attempt's failure is the error, not a warning
    for record in warnings:
        message = record.getMessage()
        assert message.startswith(f"GET /v3/export-jobs: 127.0.0.1:{port}: connection refused; ")
        assert "retrying in" in message
        assert record.__dict__["status"] == "connection_error"
        assert_no_secret(message)
        assert_no_secret(repr(record.__dict__))


# -- after an answer -------------------------------------------------------------------------------


async def test_a_client_that_had_an_answer_retries_a_refused_connection_with_its_policy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Once Pleo has answered, a refused connection (Pleo gone) is retried for the policy's full
    budget, more than the first-contact limit, and the error names host:port and the cause."""
    caplog.set_level(logging.WARNING, logger="pleo_export_async")
    fake = FakePleo(seed=23)
    await fake.start()
    try:
        job = fake.create_job(items=1)
        async with PleoExportClient(
            fake.base_url, auth=ApiKeyAuth(fake.api_key), retry=QUICK
        ) as pleo:
            await pleo.get_job(job.id)  # the first answer
            port = fake.port
            await fake.close()
            before = pleo.stats().requests
            with pytest.raises(TransportError) as raised:
                await pleo.get_job(job.id)
            sent = pleo.stats().requests - before
    finally:
        await fake.close()
    message = str(raised.value)
    assert raised.value.attempts == sent == QUICK.max_attempts
    assert "never reached" not in message
    assert message.endswith(f"127.0.0.1:{port}: connection refused (gave up after 5 attempts)")
    warnings = warnings_of(caplog)
    assert len(warnings) == QUICK.max_attempts - 1
    assert all(f"127.0.0.1:{port}: " in record.getMessage() for record in warnings)


# -- failures that keep the policy's budget even on first contact ----------------------------------


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(handle: Handler) -> AsyncIterator[int]:
    """A loopback TCP server that is not HTTP, handling each connection with `handle`: its port."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        port: int = server.sockets[0].getsockname()[1]
        yield port
    finally:
        server.close()


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # until the client gives up and closes
    writer.close()


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readline()  # the request line: the request has left, no answer follows
    writer.close()


async def test_a_timeout_on_first_contact_keeps_the_policys_budget() -> None:
    """A server that never answers is retried for the policy's full budget even before any
    answer, and the error names host:port and the time waited."""
    async with (
        raw_server(never_answer) as port,
        client(f"http://127.0.0.1:{port}", retry=QUICK, timeout=0.2) as pleo,
    ):
        with pytest.raises(TransportError) as raised:
            await list_jobs(pleo)
    assert raised.value.attempts == QUICK.max_attempts
    assert str(raised.value).endswith(
        f"127.0.0.1:{port}: no answer within 0.2s (gave up after 5 attempts)"
    )
    assert_no_secret(str(raised.value))


async def test_a_server_that_hangs_up_on_first_contact_keeps_the_policys_budget() -> None:
    """A server that closes the connection without answering is retried for the policy's full
    budget even before any answer, and the error says the server closed the connection."""
    async with (
        raw_server(hang_up) as port,
        client(f"http://127.0.0.1:{port}", retry=QUICK) as pleo,
    ):
        with pytest.raises(TransportError) as raised:
            await list_jobs(pleo)
    assert raised.value.attempts == QUICK.max_attempts
    assert str(raised.value).endswith(
        f"127.0.0.1:{port}: server closed the connection (gave up after 5 attempts)"
    )


async def test_a_tls_failure_on_first_contact_keeps_the_policys_budget(fake: FakePleo) -> None:
    """https:// to a plain-HTTP server is a TLS failure, retried for the policy's full budget,
    and the error names host:port and the TLS library's short reason."""
    base_url = fake.base_url.replace("http://", "https://")
    async with client(base_url, retry=QUICK) as pleo:
        with pytest.raises(TransportError) as raised:
            await list_jobs(pleo)
    message = str(raised.value)
    assert raised.value.attempts == QUICK.max_attempts
    assert f"127.0.0.1:{fake.port}: TLS failure: " in message
    assert "wrong version number" in message
    assert message.endswith("(gave up after 5 attempts)")
    assert_no_secret(message)
