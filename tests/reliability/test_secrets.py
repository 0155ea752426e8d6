"""Secrets (R15): whole faulty jobs with logging at DEBUG, every log record attribute,
the reprs of the public objects, the exception messages and tracebacks, and the CLI's output are
searched for the API key, the access tokens, the OAuth2 client secret and the refresh tokens."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from secrets import token_hex
from typing import Any

import pytest

from pleo_export_async import (
    ApiKeyAuth,
    BearerTokenAuth,
    InvalidInput,
    ItemUpdate,
    OAuth2Auth,
    PleoExportClient,
    PleoExportError,
    RetryPolicy,
    SqliteLedger,
    TokenPair,
)
from pleo_export_async.testing import FakePleo, Faults, FaultSpec, instant_retries

from .checks import finish, job_plan
from .figures import Figures

# Made at import, so that no source line (shown in a traceback) holds one.
API_KEY = f"pleo-apikey-{token_hex(12)}"
CLIENT_ID = "connector-client-id"
CLIENT_SECRET = f"oauth-client-{token_hex(12)}"
SOME_ACCESS_TOKEN = f"access-{token_hex(12)}"
SOME_REFRESH_TOKEN = f"refresh-{token_hex(12)}"
FAULTS = Faults(
    latency=(0.0, 0.002),
    server_error=FaultSpec(at=frozenset({2, 9})),
    lost_response=FaultSpec(at=frozenset({4})),
    dropped_mid_body=FaultSpec(at=frozenset({6})),
    partial_ack=FaultSpec(at=frozenset({7})),
    item_error=FaultSpec(at=frozenset({5})),
    lost_event_response=FaultSpec(probability=1.0),
)
#: The CLI's child process waits its retries for real: a few faults only.
CLI_FAULTS = Faults(
    server_error=FaultSpec(at=frozenset({3})),
    partial_ack=FaultSpec(at=frozenset({4})),
    lost_event_response=FaultSpec(at=frozenset({1})),
)
RETRY = RetryPolicy(max_attempts=6, initial_delay=0.01, max_delay=0.02)


class Capture(logging.Handler):
    """Every log record of every logger, kept whole."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self) -> Iterator[str]:
        """The message, every attribute (repr and str), and the formatted exception."""
        formatter = logging.Formatter()
        for record in self.records:
            yield record.getMessage()
            yield formatter.format(record)
            for name, value in vars(record).items():
                yield f"{name}={value!r}"
                yield str(value)


def secret_forms(secrets: set[str]) -> set[str]:
    """Each secret, and the forms it takes on the wire (HTTP Basic of an API key)."""
    forms = set(secrets)
    for secret in secrets:
        forms.add(base64.b64encode(f"{secret}:".encode()).decode())
    return forms


def exception_texts(error: BaseException) -> Iterator[str]:
    yield str(error)
    yield repr(error)
    yield "".join(traceback.format_exception(error))
    yield repr(vars(error))


def _leaks(texts: list[str], secrets: set[str], figures: Figures) -> list[str]:
    forms = secret_forms(secrets)
    figures.secrets_checked_texts += len(texts)
    found = sorted({form for text in texts for form in forms if form in text})
    figures.leaked_secrets += len(found)
    return found


@pytest.fixture
def captured() -> Iterator[Capture]:
    capture = Capture()
    root = logging.getLogger()
    before = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(before)


async def _faulty_jobs(tmp_path: Path, texts: list[str], secrets: set[str]) -> None:
    oauth = {CLIENT_ID: CLIENT_SECRET}
    async with FakePleo(
        seed=21, strict=True, api_key=API_KEY, faults=FAULTS, oauth_clients=oauth
    ) as fake:
        access, refresh = fake.issue_token()
        secrets.update({access, refresh})
        rotated: list[TokenPair] = []

        def on_tokens(pair: TokenPair) -> None:
            rotated.append(pair)
            secrets.update({pair.access_token, pair.refresh_token})
            texts.extend([repr(pair), str(pair)])

        auths: list[Any] = [
            ApiKeyAuth(API_KEY),
            OAuth2Auth(
                CLIENT_ID,
                CLIENT_SECRET,
                access,
                refresh,
                on_tokens=on_tokens,
                token_url=f"{fake.base_url}/oauth/token",
            ),
        ]
        for number, auth in enumerate(auths):
            job = fake.create_job(items=230)
            plan = job_plan(job.item_ids, 0.2, 2, number)
            async with (
                SqliteLedger(tmp_path / f"ledger-{number}.sqlite3") as ledger,
                PleoExportClient(
                    fake.base_url, auth=auth, batch_size=40, retry=RETRY, ledger=ledger
                ) as client,
            ):
                run = client.job(job.id)
                report = await run.update(plan.updates[:100])
                fake.expire_access_tokens()  # the OAuth2 client must refresh, and rotate
                outcome = await finish(run, lambda plan=plan: plan.updates)  # type: ignore[misc]
                texts.extend(
                    repr(thing)
                    for thing in (auth, client, run, report, outcome, ledger, client.stats())
                )
                texts.extend(str(thing) for thing in (auth, client, run, report, outcome))
        assert rotated, "the OAuth2 credential was never refreshed"

        # Refused credentials: the errors say so without the credential.
        job = fake.create_job(items=3)
        updates = [ItemUpdate.successful(i) for i in job.item_ids]
        refused: list[Any] = [
            ApiKeyAuth(API_KEY + "-revoked"),
            BearerTokenAuth(access),  # expired above
            OAuth2Auth(
                CLIENT_ID,
                CLIENT_SECRET,
                access,
                refresh,  # rotated away: a replay, refused for good
                token_url=f"{fake.base_url}/oauth/token",
            ),
        ]
        secrets.add(API_KEY + "-revoked")
        for auth in refused:
            async with PleoExportClient(fake.base_url, auth=auth, retry=RETRY) as client:
                with pytest.raises(PleoExportError) as raised:
                    await client.job(job.id).update(updates)
                texts.extend(exception_texts(raised.value))
                texts.extend([repr(auth), repr(client)])


def _invalid_credentials(texts: list[str], secrets: set[str]) -> None:
    """Building a credential wrongly names the field, never the secret."""
    secrets.update({SOME_ACCESS_TOKEN, SOME_REFRESH_TOKEN})
    attempts: list[Callable[[], object]] = [
        lambda: OAuth2Auth(CLIENT_ID, CLIENT_SECRET, " ", SOME_REFRESH_TOKEN),
        lambda: OAuth2Auth(CLIENT_ID, CLIENT_SECRET, SOME_ACCESS_TOKEN, ""),
        lambda: OAuth2Auth(CLIENT_ID, CLIENT_SECRET, SOME_ACCESS_TOKEN, SOME_REFRESH_TOKEN, 5),  # type: ignore[arg-type]
        lambda: PleoExportClient("http://pleo.example.com", auth=ApiKeyAuth(API_KEY)),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidInput) as raised:
            attempt()
        texts.extend(exception_texts(raised.value))


def test_a_faulty_job_at_debug_leaks_no_secret(
    tmp_path: Path, captured: Capture, figures: Figures
) -> None:
    """Jobs with faults, a token refresh and refused credentials, logged at DEBUG: no log record
    attribute, repr, str, exception message or traceback holds a key, token or client secret."""
    texts: list[str] = []
    secrets = {API_KEY, CLIENT_SECRET}
    with instant_retries():
        asyncio.run(_faulty_jobs(tmp_path, texts, secrets))
    _invalid_credentials(texts, secrets)
    texts.extend(captured.texts())
    figures.jobs_run += 2
    assert sum(r.name.startswith("pleo_export_async") for r in captured.records) >= 10
    assert _leaks(texts, secrets, figures) == []


# -- the CLI ------------------------------------------------------------------------------------


async def _cli(fake: FakePleo, env: dict[str, str], *args: str) -> tuple[int, str]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pleo_export_async._cli",
        "--base-url",
        fake.base_url,
        "--debug",
        *args,
        env={**os.environ, "COLUMNS": "200", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(child.communicate(), 120)
    assert child.returncode is not None
    return child.returncode, stdout.decode() + stderr.decode()


async def _cli_runs(tmp_path: Path, texts: list[str], secrets: set[str]) -> list[int]:
    async with FakePleo(seed=22, strict=True, api_key=API_KEY, faults=CLI_FAULTS) as fake:
        access, _ = fake.issue_token()
        secrets.add(access)
        job = fake.create_job(items=120)
        plan = job_plan(job.item_ids, 0.0, 0, 22)
        results = tmp_path / "results.jsonl"
        lines = []
        for update in plan.updates:
            line = {"accountingEntryId": update.accounting_entry_id, "status": update.status.value}
            if update.failure_reason_type is not None:
                line["failureReason"] = update.failure_reason or "unknown"
                line["failureReasonType"] = update.failure_reason_type.value
            lines.append(line)
        results.write_text("\n".join(map(_json, lines)) + "\n", encoding="utf-8")
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"accountingEntryId": "nope", "status": "successful"}\n', "utf-8")
        codes = []
        for env, args in (
            ({"PLEO_API_KEY": API_KEY}, ("push", job.id, str(results), "--complete")),
            ({"PLEO_API_KEY": API_KEY}, ("items", job.id)),
            ({"PLEO_API_KEY": API_KEY}, ("push", job.id, str(bad))),
            ({"PLEO_API_KEY": API_KEY + "-revoked"}, ("items", job.id)),
            ({"PLEO_ACCESS_TOKEN": access}, ("jobs",)),
        ):
            fake.expire_access_tokens()
            code, output = await _cli(fake, env, *args)
            codes.append(code)
            texts.append(output)
        secrets.add(API_KEY + "-revoked")
        return codes


def test_the_cli_prints_no_secret(tmp_path: Path, figures: Figures) -> None:
    """pleo-export push, items and jobs, with --debug, faults and refused credentials, print
    neither the API key nor the access token."""
    texts: list[str] = []
    secrets = {API_KEY}
    with instant_retries():
        codes = asyncio.run(_cli_runs(tmp_path, texts, secrets))
    assert codes[0] == 0, texts[0][-2000:]
    assert all(code != 0 for code in codes[2:]), codes
    assert _leaks(texts, secrets, figures) == []


def _json(value: object) -> str:
    import json

    return json.dumps(value)
