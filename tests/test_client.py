"""The client's public surface, credentials (R7), input checks (R14) and secrecy (R15)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

import pleo_export_async
from helpers import client_for, successful_updates
from pleo_export_async import (
    PRODUCTION_BASE_URL,
    STAGING_BASE_URL,
    ApiKeyAuth,
    AuthenticationError,
    BearerTokenAuth,
    InvalidInput,
    JobStatus,
    OAuth2Auth,
    PleoExportClient,
    ReauthorizationRequired,
    TokenPair,
)
from pleo_export_async.testing import FakePleo

pytestmark = pytest.mark.usefixtures("instant")

PUBLIC_API = {
    "PRODUCTION_BASE_URL",
    "PRODUCTION_TOKEN_URL",
    "STAGING_BASE_URL",
    "STAGING_TOKEN_URL",
    "ApiError",
    "ApiKeyAuth",
    "AuthenticationError",
    "BearerTokenAuth",
    "CompletionOutcome",
    "ConflictingUpdates",
    "ExportItem",
    "ExportJob",
    "ExportJobItem",
    "FileTokenStore",
    "FinalEventRecord",
    "HeldTokens",
    "IncompleteJob",
    "InvalidInput",
    "ItemErrorKind",
    "ItemFailureReasonType",
    "ItemStatus",
    "ItemUpdate",
    "ItemUpdateErrorType",
    "JobEvent",
    "JobFailureReasonType",
    "JobFinished",
    "JobLeased",
    "JobLedger",
    "JobNotFound",
    "JobRun",
    "JobStateConflict",
    "JobStatus",
    "LeaseLost",
    "Ledger",
    "LedgerError",
    "MemoryLedger",
    "MissingContraAccounts",
    "OAuth2Auth",
    "PermissionDenied",
    "PleoExportClient",
    "PleoExportError",
    "PostgresLedger",
    "PostgresTokenStore",
    "Progress",
    "ReauthorizationRequired",
    "Rejection",
    "RequestStats",
    "RetryPolicy",
    "SqliteLedger",
    "TokenPair",
    "TokenStore",
    "TransportError",
    "UnexpectedResponse",
    "UpdateReport",
    "WebhookSubscription",
    "WebhookSubscriptions",
    "__version__",
}


def test_the_exported_names_are_exactly_the_public_api() -> None:
    """`__all__` lists the public API, no more and no less, and every name resolves."""
    assert set(pleo_export_async.__all__) == PUBLIC_API
    for name in PUBLIC_API:
        assert getattr(pleo_export_async, name) is not None
    # pytest's assertion rewriting (our plugin is a pytest11 entry point) adds "@py_*" names.
    public_attributes = {
        name for name in vars(pleo_export_async) if not name.startswith(("_", "@"))
    }
    assert public_attributes <= PUBLIC_API | {"testing"}


def test_production_is_the_default_base_url() -> None:
    """Without a base URL the client talks to Pleo's production host."""
    client = PleoExportClient(auth=ApiKeyAuth("k"))
    assert client.base_url == PRODUCTION_BASE_URL == "https://external.pleo.io"
    assert STAGING_BASE_URL == "https://external.staging.pleo.io"


@pytest.mark.parametrize(
    "url",
    ["http://external.pleo.io", "http://10.0.0.5:8080", "ftp://127.0.0.1", "external.pleo.io"],
)
def test_plain_http_is_refused_unless_it_is_loopback(url: str) -> None:
    """A base URL that would send credentials in clear text is refused, naming the field."""
    with pytest.raises(InvalidInput) as raised:
        PleoExportClient(url, auth=ApiKeyAuth("k"))
    assert raised.value.field == "base_url"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:2"])
def test_loopback_http_is_allowed(url: str) -> None:
    """The fake server on loopback may use plain http."""
    assert PleoExportClient(url, auth=ApiKeyAuth("k")).base_url == url


@pytest.mark.parametrize(
    ("option", "value"),
    [("batch_size", 0), ("batch_size", 101), ("max_concurrency", 0), ("timeout", -1)],
)
def test_bad_client_options_name_the_field(option: str, value: int) -> None:
    """Out-of-range options raise InvalidInput naming the option and its value."""
    with pytest.raises(InvalidInput) as raised:
        PleoExportClient(auth=ApiKeyAuth("k"), **{option: value})  # type: ignore[arg-type]
    assert raised.value.field == option
    assert str(value) in str(raised.value)


@pytest.mark.parametrize("job_id", ["../../v3/export-jobs", "not-a-uuid", "", "1234"])
async def test_a_job_id_that_is_not_a_uuid_is_refused_before_any_request(
    fake: FakePleo, job_id: str
) -> None:
    """A job ID can never change the URL path: anything but a UUID raises InvalidInput."""
    async with client_for(fake) as client:
        with pytest.raises(InvalidInput) as raised:
            client.job(job_id)
    assert raised.value.field == "job_id"
    assert fake.journal.requests == []


def test_uuid_ids_are_normalised() -> None:
    """Upper-case UUIDs are accepted and sent in canonical lower case."""
    client = PleoExportClient(auth=ApiKeyAuth("k"))
    run = client.job("6F1C0B8E-1D2A-4C3B-9E4F-5A6B7C8D9E0F")
    assert run.job_id == "6f1c0b8e-1d2a-4c3b-9e4f-5a6b7c8d9e0f"


def test_credentials_never_appear_in_reprs() -> None:
    """repr of credentials, token pairs and the client shows no secret."""
    api_key = ApiKeyAuth("very-secret-key")
    bearer = BearerTokenAuth("secret-access")
    oauth = OAuth2Auth("id", "secret-cs", "secret-access", "secret-refresh")
    pair = TokenPair("secret-access", "secret-refresh", 3600)
    client = PleoExportClient(auth=oauth)
    texts = [repr(api_key), repr(bearer), repr(oauth), repr(pair), repr(client), str(client)]
    for text in texts:
        assert "secret" not in text
        assert "<redacted>" in text or "PleoExportClient" in text


async def test_a_refused_api_key_raises_at_once_without_leaking_it(
    fake: FakePleo, caplog: pytest.LogCaptureFixture
) -> None:
    """401 for an API key raises AuthenticationError after one request; the key is nowhere."""
    caplog.set_level(logging.DEBUG)
    job = fake.create_job(items=2)
    wrong_key = "wrong-key-0123456789"
    async with PleoExportClient(fake.base_url, auth=ApiKeyAuth(wrong_key)) as client:
        with pytest.raises(AuthenticationError) as raised:
            await client.job(job.id).update(successful_updates(job.item_ids))
    assert raised.value.status == 401
    assert fake.journal.count(method="PUT") == 1
    assert wrong_key not in str(raised.value)
    assert all(wrong_key not in record.getMessage() for record in caplog.records)


@pytest.fixture
async def oauth_fake() -> AsyncIterator[FakePleo]:
    async with FakePleo(seed=3, oauth_clients={"connector": "client-secret"}) as server:
        yield server


async def test_an_expired_token_is_refreshed_once_for_all_senders(oauth_fake: FakePleo) -> None:
    """On 401 the OAuth2 access token is refreshed once, however many batches hit it, and the
    rotated pair is handed to on_tokens; every update still lands exactly once."""
    fake = oauth_fake
    access, refresh = fake.issue_token()
    rotated: list[TokenPair] = []
    auth = OAuth2Auth(
        "connector",
        "client-secret",
        access,
        refresh,
        on_tokens=rotated.append,
        token_url=f"{fake.base_url}/oauth/token",
    )
    job = fake.create_job(items=800)
    async with PleoExportClient(fake.base_url, auth=auth, max_concurrency=8) as client:
        run = client.job(job.id)
        await run.update(successful_updates(job.item_ids[:100]))
        fake.expire_access_tokens()
        report = await run.update(successful_updates(job.item_ids))
    assert len(report.acknowledged) == 700
    assert fake.journal.count(method="POST", path_prefix="/oauth/token") == 1
    (pair,) = rotated
    assert pair.refresh_token != refresh
    assert pair.access_token != access
    assert pair.expires_at is not None
    assert fake.journal.resent_after_ack() == {}


async def test_a_refused_refresh_token_requires_reauthorisation(oauth_fake: FakePleo) -> None:
    """When the refresh token is refused, the update raises ReauthorizationRequired, an
    AuthenticationError, after one try, and the token appears in no message."""
    fake = oauth_fake
    access, _ = fake.issue_token()
    auth = OAuth2Auth(
        "connector",
        "client-secret",
        access,
        "not-a-real-refresh-token",
        token_url=f"{fake.base_url}/oauth/token",
    )
    fake.expire_access_tokens()
    job = fake.create_job(items=3)
    async with PleoExportClient(fake.base_url, auth=auth) as client:
        with pytest.raises(ReauthorizationRequired) as raised:
            await client.job(job.id).update(successful_updates(job.item_ids))
    assert isinstance(raised.value, AuthenticationError)
    assert "not-a-real-refresh-token" not in str(raised.value)
    assert fake.journal.count(method="POST", path_prefix="/oauth/token") == 1


async def test_a_bearer_token_without_refresh_raises_on_401(oauth_fake: FakePleo) -> None:
    """A plain bearer token that expired raises AuthenticationError without retrying."""
    fake = oauth_fake
    access, _ = fake.issue_token()
    fake.expire_access_tokens()
    job = fake.create_job(items=3)
    async with PleoExportClient(fake.base_url, auth=BearerTokenAuth(access)) as client:
        with pytest.raises(AuthenticationError):
            await client.job(job.id).update(successful_updates(job.item_ids))
    assert fake.journal.count(method="PUT") == 1


async def test_jobs_yields_the_requested_statuses_oldest_first(fake: FakePleo) -> None:
    """jobs() filters by status and orders by creation time, as Pleo says to process them."""
    created = []
    for _ in range(3):
        created.append(fake.create_job(items=1, status="pending").id)
        fake.advance_clock(60)
    fake.create_job(items=1, status="completed")
    async with client_for(fake) as client:
        jobs = [job async for job in client.jobs(statuses=[JobStatus.PENDING])]
    assert [job.id for job in jobs] == created
    assert {job.status for job in jobs} == {"pending"}
