"""What the journal counts as delivered: an answer the client could have read. One written after
the client hung up, or into a connection it then reset with the answer unread, is not delivered,
so the retry that follows is no resend; a true resend is still counted, also from a client that
hangs up the moment it has read the answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import urllib.request

import aiohttp

from pleo_export_async import ApiKeyAuth, ItemUpdate, MemoryLedger, PleoExportClient
from pleo_export_async.testing import FakePleo, Faults


def successes(item_ids: list[str]) -> list[ItemUpdate]:
    return [
        ItemUpdate.successful(entry_id, external_id=f"erp-{entry_id[:8]}") for entry_id in item_ids
    ]


async def test_a_second_update_of_what_was_acknowledged_is_a_resend() -> None:
    """A JobRun whose ledger lost the record sends every update again: the journal counts each
    ID once as resent after its acknowledgement."""
    async with FakePleo(seed=8) as fake:
        job = fake.create_job(items=250, status="in_progress")
        updates = successes(job.item_ids)
        for _ in range(2):
            async with PleoExportClient(
                fake.base_url, auth=ApiKeyAuth(fake.api_key), ledger=MemoryLedger()
            ) as client:
                await client.job(job.id).update(updates)
        await fake.journal.wait_idle()
    assert fake.journal.resent_after_ack(job.id) == dict.fromkeys(job.item_ids, 1)


def put_request(fake: FakePleo, job_id: str, body: bytes) -> bytes:
    """A raw HTTP/1.1 PUT of job items, as bytes for a plain socket."""
    headers = {
        "Host": f"{fake.host}:{fake.port}",
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        **fake.auth_headers(),
    }
    head = f"PUT /v3/export-jobs/{job_id}/items HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    return (head + "\r\n").encode() + body


def assert_first_answer_unread_and_no_resend(fake: FakePleo, job_id: str) -> None:
    """The job's first PUT was answered but not delivered, its second delivered, and the
    second is no resend of the first."""
    first, second = fake.journal.puts(job_id)
    assert (first.status, first.delivered) == (200, False)
    assert (second.status, second.delivered) == (200, True)
    assert fake.journal.resent_after_ack(job_id) == {}


def answered(fake: FakePleo, job_id: str) -> bool:
    puts = fake.journal.puts(job_id)
    return bool(puts) and puts[0].answered_at is not None


async def test_an_answer_the_client_reset_unread_is_not_delivered() -> None:
    """A client whose answer reached its socket but that closed it unread (the kernel then
    resets the connection) was told nothing: the answer is not delivered, and the same PUT
    again is no resend."""
    async with FakePleo(seed=9) as fake:
        job = fake.create_job(items=3, status="in_progress")
        body = json.dumps(
            [{"accountingEntryId": entry_id, "status": "successful"} for entry_id in job.item_ids]
        ).encode()
        # A plain socket the event loop does not read: the answer stays unread in the kernel.
        with socket.create_connection((fake.host, fake.port)) as raw:
            raw.sendall(put_request(fake, job.id, body))
            async with asyncio.timeout(30):
                # The journal offers no event for one answer being written: look until it is.
                while not answered(fake, job.id):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
        async with aiohttp.ClientSession(headers=fake.auth_headers()) as session:
            url = f"{fake.base_url}/v3/export-jobs/{job.id}/items"
            async with session.put(
                url, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                assert response.status == 200
        await fake.journal.wait_idle()
    assert_first_answer_unread_and_no_resend(fake, job.id)


async def test_an_answer_written_after_the_client_hung_up_is_not_delivered() -> None:
    """A client that timed out and closed the connection before the answer was written has
    not read it: not delivered, and the retry is no resend."""
    async with FakePleo(seed=10, faults=Faults(latency=0.3)) as fake:
        job = fake.create_job(items=3, status="in_progress")
        body = [
            {"accountingEntryId": entry_id, "status": "successful"} for entry_id in job.item_ids
        ]
        url = f"{fake.base_url}/v3/export-jobs/{job.id}/items"
        async with aiohttp.ClientSession(headers=fake.auth_headers()) as session:
            with contextlib.suppress(TimeoutError):
                await session.put(url, json=body, timeout=aiohttp.ClientTimeout(total=0.1))
            async with session.put(url, json=body) as response:
                assert response.status == 200
        await fake.journal.wait_idle()
    assert_first_answer_unread_and_no_resend(fake, job.id)


def put_with_urllib(url: str, body: bytes, headers: dict[str, str]) -> int:
    """One PUT by the standard library's client, which reads the answer and closes at once."""
    request = urllib.request.Request(url, data=body, method="PUT", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()
        status: int = answer.status
    return status


async def test_an_answer_a_client_read_and_closed_at_once_is_delivered() -> None:
    """A client that reads the answer and hangs up straight away (urllib, from another thread)
    read it: each answer is delivered, and the same updates sent again are resends."""
    async with FakePleo(seed=11) as fake:
        job = fake.create_job(items=3, status="in_progress")
        body = json.dumps(
            [{"accountingEntryId": entry_id, "status": "successful"} for entry_id in job.item_ids]
        ).encode()
        url = f"{fake.base_url}/v3/export-jobs/{job.id}/items"
        headers = {"Content-Type": "application/json", **fake.auth_headers()}
        for _ in range(3):
            assert await asyncio.to_thread(put_with_urllib, url, body, headers) == 200
        await fake.journal.wait_idle()
    assert [entry.delivered for entry in fake.journal.puts(job.id)] == [True, True, True]
    assert fake.journal.resent_after_ack(job.id) == dict.fromkeys(job.item_ids, 2)
