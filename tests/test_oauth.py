"""OAuth2Auth and BearerTokenAuth against the fake Pleo over TCP: single-flight refresh, rotation,
replay revocation, failed refreshes, argument checks, and secrets kept out of every text (R7, R15).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
from aiohttp import web

from pleo_export_async import (
    AuthenticationError,
    BearerTokenAuth,
    ExportJob,
    InvalidInput,
    OAuth2Auth,
    PleoExportClient,
    ReauthorizationRequired,
    TokenPair,
)
from pleo_export_async.testing import FakePleo

CLIENT_ID = "connector"
CLIENT_SECRET = "cs-9f3Kq2VbX7wL0pRt"
#: The HTTP Basic value that carries the client secret to the token endpoint.
CLIENT_BASIC = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode("ascii")
CONCURRENT_REQUESTS = 50
MAX_CONCURRENCY = 8


@pytest.fixture
async def oauth_fake() -> AsyncIterator[FakePleo]:
    async with FakePleo(seed=11, oauth_clients={CLIENT_ID: CLIENT_SECRET}) as server:
        yield server


def token_url(fake: FakePleo) -> str:
    return f"{fake.base_url}/oauth/token"


def oauth_for(
    fake: FakePleo,
    access_token: str,
    refresh_token: str,
    expires_at: datetime | None = None,
    **options: Any,
) -> OAuth2Auth:
    options.setdefault("token_url", token_url(fake))
    return OAuth2Auth(CLIENT_ID, CLIENT_SECRET, access_token, refresh_token, expires_at, **options)


def client_with(fake: FakePleo, auth: OAuth2Auth | BearerTokenAuth) -> PleoExportClient:
    return PleoExportClient(fake.base_url, auth=auth, max_concurrency=MAX_CONCURRENCY)


def token_calls(fake: FakePleo) -> int:
    return fake.journal.count(method="POST", path_prefix="/oauth/token")


def secret_forms(secrets: Iterable[str]) -> list[str]:
    """The secrets, plus the HTTP Basic value that carries the client secret."""
    return [*secrets, CLIENT_SECRET, CLIENT_BASIC]


def assert_no_secret(texts: Iterable[str], secrets: Iterable[str]) -> None:
    forms = secret_forms(secrets)
    for text in texts:
        for secret in forms:
            assert secret not in text, f"a secret appears in {text!r}"


def exception_texts(error: BaseException) -> list[str]:
    return [str(error), repr(error), repr(error.args), repr(vars(error))]


def record_texts(records: Iterable[logging.LogRecord]) -> list[str]:
    texts: list[str] = []
    for record in records:
        texts.append(record.getMessage())
        for value in vars(record).values():
            texts.extend((str(value), repr(value)))
    return texts


async def get_concurrently(client: PleoExportClient, job_id: str) -> list[ExportJob]:
    return await asyncio.gather(*(client.get_job(job_id) for _ in range(CONCURRENT_REQUESTS)))


# ---- single-flight refresh --------------------------------------------------------------------


async def test_an_expired_access_token_is_refreshed_once_for_fifty_concurrent_requests(
    oauth_fake: FakePleo,
) -> None:
    """Fifty concurrent requests that meet 401 cause exactly one refresh, all succeed, and
    on_tokens gets exactly one pair."""
    fake = oauth_fake
    access, refresh = fake.issue_token()
    fake.expire_access_tokens()
    job = fake.create_job(items=1)
    rotated: list[TokenPair] = []
    auth = oauth_for(fake, access, refresh, on_tokens=rotated.append)
    async with client_with(fake, auth) as client:
        jobs = await get_concurrently(client, job.id)
    assert [found.id for found in jobs] == [job.id] * CONCURRENT_REQUESTS
    assert token_calls(fake) == 1
    (pair,) = rotated
    assert pair.access_token != access
    assert pair.refresh_token != refresh
    answered_ok = [entry for entry in fake.journal.entries("GET") if entry.status == 200]
    assert len(answered_ok) == CONCURRENT_REQUESTS


@pytest.mark.parametrize(
    ("expires_in", "refresh_margin"),
    [(-5.0, 60.0), (-5.0, 0.0), (30.0, 60.0), (299.0, 300.0)],
    ids=["expired", "expired-no-margin", "within-margin", "within-large-margin"],
)
async def test_a_token_about_to_expire_is_refreshed_once_before_anything_is_sent(
    oauth_fake: FakePleo, expires_in: float, refresh_margin: float
) -> None:
    """An expires_at in the past or within refresh_margin makes the client refresh once, before
    its first request, for all fifty concurrent requests, so no request meets 401."""
    fake = oauth_fake
    access, refresh = fake.issue_token()
    job = fake.create_job(items=1)
    rotated: list[TokenPair] = []
    expires_at = datetime.now(UTC) + timedelta(seconds=expires_in)
    auth = oauth_for(
        fake, access, refresh, expires_at, on_tokens=rotated.append, refresh_margin=refresh_margin
    )
    async with client_with(fake, auth) as client:
        jobs = await get_concurrently(client, job.id)
    assert [found.id for found in jobs] == [job.id] * CONCURRENT_REQUESTS
    assert token_calls(fake) == 1
    first = fake.journal.requests[0]
    assert (first.method, first.path) == ("POST", "/oauth/token")
    statuses = [entry.status for entry in fake.journal.entries("GET")]
    assert statuses == [200] * CONCURRENT_REQUESTS
    assert len(rotated) == 1


async def test_a_token_far_from_expiry_is_not_refreshed(oauth_fake: FakePleo) -> None:
    """An expires_at beyond refresh_margin sends the requests with the token as it is."""
    fake = oauth_fake
    access, refresh = fake.issue_token()
    job = fake.create_job(items=1)
    rotated: list[TokenPair] = []
    expires_at = datetime.now(UTC) + timedelta(hours=1)
    auth = oauth_for(fake, access, refresh, expires_at, on_tokens=rotated.append)
    async with client_with(fake, auth) as client:
        await get_concurrently(client, job.id)
    assert token_calls(fake) == 0
    assert rotated == []


# ---- rotation and replay ----------------------------------------------------------------------


@pytest.mark.parametrize("b_knows_expiry", [False, True], ids=["401", "expires_at-past"])
async def test_a_reused_refresh_token_requires_reauthorisation_and_revokes_the_chain(
    oauth_fake: FakePleo, b_knows_expiry: bool
) -> None:
    """Refreshing with a spent refresh token raises ReauthorizationRequired after one token call,
    without retrying, and revokes the rotated refresh token of the legitimate holder too."""
    fake = oauth_fake
    access, original_refresh = fake.issue_token()
    fake.expire_access_tokens()
    job = fake.create_job(items=1)
    rotated_a: list[TokenPair] = []
    auth_a = oauth_for(fake, access, original_refresh, on_tokens=rotated_a.append)
    async with client_with(fake, auth_a) as client_a:
        await client_a.get_job(job.id)
        assert token_calls(fake) == 1
        (pair_a,) = rotated_a
        assert pair_a.refresh_token != original_refresh

        rotated_b: list[TokenPair] = []
        b_expires_at = datetime.now(UTC) - timedelta(minutes=1) if b_knows_expiry else None
        auth_b = oauth_for(fake, access, original_refresh, b_expires_at, on_tokens=rotated_b.append)
        gets_before_b = fake.journal.count(method="GET")
        async with client_with(fake, auth_b) as client_b:
            with pytest.raises(ReauthorizationRequired) as raised_b:
                await client_b.get_job(job.id)
        assert token_calls(fake) == 2
        assert fake.journal.count(method="GET") - gets_before_b == (0 if b_knows_expiry else 1)
        assert rotated_b == []
        assert_no_secret(exception_texts(raised_b.value), [access, original_refresh])

        fake.expire_access_tokens()
        gets_before_a = fake.journal.count(method="GET")
        with pytest.raises(ReauthorizationRequired) as raised_a:
            await client_a.get_job(job.id)
    assert token_calls(fake) == 3
    assert fake.journal.count(method="GET") - gets_before_a == 1
    assert len(rotated_a) == 1
    assert_no_secret(exception_texts(raised_a.value), [pair_a.access_token, pair_a.refresh_token])


async def test_each_refresh_sends_the_latest_rotated_refresh_token(oauth_fake: FakePleo) -> None:
    """A second refresh presents the refresh token of the first one, which the fake accepts."""
    fake = oauth_fake
    access, refresh = fake.issue_token()
    job = fake.create_job(items=1)
    rotated: list[TokenPair] = []
    auth = oauth_for(fake, access, refresh, on_tokens=rotated.append)
    async with client_with(fake, auth) as client:
        for _ in range(3):
            fake.expire_access_tokens()
            await client.get_job(job.id)
    assert token_calls(fake) == 3
    assert len(rotated) == 3
    assert len({pair.refresh_token for pair in rotated} | {refresh}) == 4


async def test_token_requests_authenticate_the_client_with_basic(oauth_fake: FakePleo) -> None:
    """A refresh refused for bad client credentials raises AuthenticationError, not
    ReauthorizationRequired, and shows no secret."""
    fake = oauth_fake
    access, refresh = fake.issue_token()
    fake.expire_access_tokens()
    job = fake.create_job(items=1)
    wrong_secret = "wrong-client-secret-5Yh"
    auth = OAuth2Auth(CLIENT_ID, wrong_secret, access, refresh, token_url=token_url(fake))
    async with client_with(fake, auth) as client:
        with pytest.raises(AuthenticationError) as raised:
            await client.get_job(job.id)
    assert not isinstance(raised.value, ReauthorizationRequired)
    assert token_calls(fake) == 1
    assert_no_secret(exception_texts(raised.value), [wrong_secret, access, refresh])


# ---- on_tokens -----------------------------------------------------------------------------------


async def test_a_coroutine_on_tokens_is_awaited_before_the_new_token_is_used(
    oauth_fake: FakePleo,
) -> None:
    """A coroutine on_tokens completes before any request carries the refreshed token, even a
    request started while it is still running."""
    fake = oauth_fake
    access, refresh = fake.issue_token()
    fake.expire_access_tokens()  # from now on only the refreshed token gets 200
    job = fake.create_job(items=1)
    entered = asyncio.Event()
    journal_length: dict[str, int] = {}
    stored: list[TokenPair] = []

    async def store(pair: TokenPair) -> None:
        journal_length["entered"] = len(fake.journal.requests)
        entered.set()
        await asyncio.sleep(0.1)  # a slow write to a secrets store
        stored.append(pair)
        journal_length["returned"] = len(fake.journal.requests)

    auth = oauth_for(fake, access, refresh, on_tokens=store)
    async with client_with(fake, auth) as client:

        async def request_while_storing() -> ExportJob:
            await entered.wait()
            return await client.get_job(job.id)

        late = asyncio.create_task(request_while_storing())
        jobs = await get_concurrently(client, job.id)
        jobs.append(await late)
    assert [found.id for found in jobs] == [job.id] * (CONCURRENT_REQUESTS + 1)
    assert len(stored) == 1
    assert token_calls(fake) == 1
    answered_ok = [entry for entry in fake.journal.entries("GET") if entry.status == 200]
    assert len(answered_ok) == CONCURRENT_REQUESTS + 1
    early = [entry.seq for entry in answered_ok if entry.seq <= journal_length["returned"]]
    assert early == [], (
        f"requests {early} carried the new token before on_tokens returned "
        f"(on_tokens ran while the journal went from {journal_length['entered']} "
        f"to {journal_length['returned']} requests)"
    )


async def test_a_coroutine_on_tokens_gets_the_pair_the_next_request_uses(
    oauth_fake: FakePleo,
) -> None:
    """A coroutine on_tokens receives the rotated pair, and the retried request succeeds only
    after it has recorded it."""
    fake = oauth_fake
    access, refresh = fake.issue_token()
    fake.expire_access_tokens()
    job = fake.create_job(items=1)
    stored: list[tuple[TokenPair, int]] = []

    async def store(pair: TokenPair) -> None:
        await asyncio.sleep(0)
        stored.append((pair, len(fake.journal.requests)))

    auth = oauth_for(fake, access, refresh, on_tokens=store)
    async with client_with(fake, auth) as client:
        await client.get_job(job.id)
    ((pair, length_when_stored),) = stored
    assert auth.authorization() == f"Bearer {pair.access_token}"
    methods_and_statuses = [(entry.method, entry.status) for entry in fake.journal.requests]
    assert methods_and_statuses == [("GET", 401), ("POST", 200), ("GET", 200)]
    assert length_when_stored == 2  # the successful GET came after on_tokens returned


async def test_the_token_pair_expires_at_comes_from_expires_in(oauth_fake: FakePleo) -> None:
    """TokenPair.expires_at is an aware datetime expires_in seconds after the refresh."""
    fake = oauth_fake
    access, refresh = fake.issue_token()
    fake.expire_access_tokens()
    job = fake.create_job(items=1)
    rotated: list[TokenPair] = []
    auth = oauth_for(fake, access, refresh, on_tokens=rotated.append)
    before = datetime.now(UTC)
    async with client_with(fake, auth) as client:
        await client.get_job(job.id)
    after = datetime.now(UTC)
    (pair,) = rotated
    assert pair.expires_in == 3600
    assert pair.expires_at is not None
    assert pair.expires_at.utcoffset() is not None
    assert pair.expires_at > after
    lifetime = timedelta(seconds=pair.expires_in)
    assert before + lifetime <= pair.expires_at <= after + lifetime


# ---- failed refreshes, against a token server of our own -------------------------------------


@attrs.define
class TokenServer:
    """A loopback token endpoint answering every refresh with `respond(form)`."""

    url: str
    forms: list[dict[str, str]]
    authorizations: list[str | None]


Responder = Callable[[dict[str, str]], web.Response]


@contextlib.asynccontextmanager
async def token_server(respond: Responder) -> AsyncIterator[TokenServer]:
    forms: list[dict[str, str]] = []
    authorizations: list[str | None] = []

    async def handle(request: web.Request) -> web.Response:
        form = dict(urllib.parse.parse_qsl(await request.text()))
        forms.append(form)
        authorizations.append(request.headers.get("Authorization"))
        return respond(form)

    app = web.Application()
    app.router.add_post("/oauth/token", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield TokenServer(f"http://{host}:{port}/oauth/token", forms, authorizations)
    finally:
        await runner.cleanup()


def _echoing_error(status: int) -> Responder:
    def respond(form: dict[str, str]) -> web.Response:
        return web.json_response(
            {
                "error": "server_error",
                "error_description": f"could not refresh {form.get('refresh_token')}",
            },
            status=status,
        )

    return respond


def _html(status: int) -> Responder:
    def respond(form: dict[str, str]) -> web.Response:
        return web.Response(
            status=status, text="<html><body>Bad gateway</body></html>", content_type="text/html"
        )

    return respond


def _empty(status: int) -> Responder:
    def respond(form: dict[str, str]) -> web.Response:
        return web.Response(status=status)

    return respond


def _ok_json(payload: object) -> Responder:
    def respond(form: dict[str, str]) -> web.Response:
        return web.json_response(payload)

    return respond


FAILED_REFRESHES: dict[str, Responder] = {
    "500-json": _echoing_error(500),
    "502-html": _html(502),
    "503-empty": _empty(503),
    "504-json": _echoing_error(504),
    "200-empty-object": _ok_json({}),
    "200-no-refresh-token": _ok_json({"access_token": "new-access-Qw7", "expires_in": 3600}),
    "200-no-access-token": _ok_json({"refresh_token": "new-refresh-Qw7", "expires_in": 3600}),
    "200-tokens-not-strings": _ok_json({"access_token": 1, "refresh_token": 2}),
    "200-a-list": _ok_json([]),
    "200-not-json": _html(200),
    "200-empty-body": _empty(200),
}


@pytest.mark.parametrize("case", sorted(FAILED_REFRESHES))
async def test_a_refresh_answered_with_5xx_or_without_tokens_raises_authentication_error(
    oauth_fake: FakePleo, case: str
) -> None:
    """A token endpoint answering 5xx, or 200 without both tokens, raises AuthenticationError
    (not ReauthorizationRequired) after one token call, showing no secret."""
    fake = oauth_fake
    access, refresh = fake.issue_token()
    fake.expire_access_tokens()
    job = fake.create_job(items=1)
    rotated: list[TokenPair] = []
    async with token_server(FAILED_REFRESHES[case]) as server:
        auth = oauth_for(fake, access, refresh, token_url=server.url, on_tokens=rotated.append)
        async with client_with(fake, auth) as client:
            with pytest.raises(AuthenticationError) as raised:
                await client.get_job(job.id)
    assert not isinstance(raised.value, ReauthorizationRequired)
    assert len(server.forms) == 1
    assert server.forms[0]["grant_type"] == "refresh_token"
    assert server.forms[0]["refresh_token"] == refresh
    assert server.authorizations[0] == f"Basic {CLIENT_BASIC}"
    assert fake.journal.count(method="GET") == 1
    assert rotated == []
    assert auth.authorization() == f"Bearer {access}"  # nothing half-replaced
    assert_no_secret(exception_texts(raised.value), [access, refresh])


@pytest.mark.parametrize("error_code", ["invalid_refresh_token", "invalid_grant", "INVALID_GRANT"])
async def test_a_refused_refresh_token_raises_reauthorization_required(
    oauth_fake: FakePleo, error_code: str
) -> None:
    """A 400 with error invalid_refresh_token or invalid_grant raises ReauthorizationRequired
    after one token call, and the description echoing the token is not shown."""
    fake = oauth_fake
    access, refresh = fake.issue_token()
    fake.expire_access_tokens()
    job = fake.create_job(items=1)

    def refuse(form: dict[str, str]) -> web.Response:
        description = f"refresh token {form.get('refresh_token')} was revoked"
        return web.json_response(
            {"error": error_code, "error_description": description}, status=400
        )

    async with token_server(refuse) as server:
        auth = oauth_for(fake, access, refresh, token_url=server.url)
        async with client_with(fake, auth) as client:
            with pytest.raises(ReauthorizationRequired) as raised:
                await client.get_job(job.id)
    assert len(server.forms) == 1
    assert fake.journal.count(method="GET") == 1
    assert_no_secret(exception_texts(raised.value), [access, refresh])


async def test_a_refresh_that_cannot_connect_raises_authentication_error(
    oauth_fake: FakePleo,
) -> None:
    """A token endpoint that refuses the connection raises AuthenticationError, showing no
    secret."""
    fake = oauth_fake
    access, refresh = fake.issue_token()
    fake.expire_access_tokens()
    job = fake.create_job(items=1)
    async with token_server(_empty(200)) as server:
        closed_url = server.url
    auth = oauth_for(fake, access, refresh, token_url=closed_url)
    async with client_with(fake, auth) as client:
        with pytest.raises(AuthenticationError) as raised:
            await client.get_job(job.id)
    assert not isinstance(raised.value, ReauthorizationRequired)
    assert_no_secret(exception_texts(raised.value), [access, refresh])


# ---- arguments --------------------------------------------------------------------------------

ACCESS = "acc-Hn2Lq8Zr5Tw1"
REFRESH = "ref-Pm4Xc6Vb9Ks3"


def _oauth_arguments(**changes: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "expires_at": None,
        "token_url": "https://auth.pleo.io/oauth/token",
    }
    arguments.update(changes)
    return arguments


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        ("client_id", {"client_id": ""}),
        ("client_secret", {"client_secret": ""}),
        ("client_secret", {"client_secret": "   "}),
        ("access_token", {"access_token": ""}),
        ("access_token", {"access_token": " \t"}),
        ("refresh_token", {"refresh_token": ""}),
        ("refresh_token", {"refresh_token": "\n"}),
        ("expires_at", {"expires_at": datetime(2030, 1, 1, 12, 0)}),
        ("expires_at", {"expires_at": "2030-01-01T12:00:00Z"}),
        ("token_url", {"token_url": "http://auth.example.com/oauth/token"}),
        ("token_url", {"token_url": "http://10.0.0.7:8080/oauth/token"}),
        ("token_url", {"token_url": "ftp://auth.example.com/oauth/token"}),
        ("refresh_margin", {"refresh_margin": -1}),
        ("refresh_margin", {"refresh_margin": -0.5}),
        ("refresh_margin", {"refresh_margin": float("nan")}),
        ("on_tokens", {"on_tokens": 42}),
        ("on_tokens", {"on_tokens": "store_tokens"}),
    ],
)
def test_bad_oauth_arguments_raise_invalid_input_naming_the_field_without_secrets(
    field: str, changes: dict[str, Any]
) -> None:
    """Each bad OAuth2Auth argument raises InvalidInput naming the field, with no secret shown."""
    with pytest.raises(InvalidInput) as raised:
        OAuth2Auth(**_oauth_arguments(**changes))
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}=")
    assert_no_secret(exception_texts(raised.value), [ACCESS, REFRESH])


@pytest.mark.parametrize("token", ["", "  "])
def test_an_empty_bearer_token_raises_invalid_input(token: str) -> None:
    """BearerTokenAuth refuses an empty access token with InvalidInput naming access_token."""
    with pytest.raises(InvalidInput) as raised:
        BearerTokenAuth(token)
    assert raised.value.field == "access_token"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/oauth/token", "http://localhost/oauth/token", "http://[::1]/t"]
)
def test_a_loopback_http_token_url_is_allowed(url: str) -> None:
    """A plain http token_url is accepted when it points at loopback."""
    OAuth2Auth(**_oauth_arguments(token_url=url))


# ---- secrets ------------------------------------------------------------------------------------


async def test_no_secret_appears_in_reprs_or_debug_logs_of_a_refresh(
    oauth_fake: FakePleo, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither repr(auth), repr(pair) nor any attribute of a DEBUG log record of a refresh shows
    the client secret, the old or the new tokens."""
    caplog.set_level(logging.DEBUG)
    fake = oauth_fake
    access, refresh = fake.issue_token()
    fake.expire_access_tokens()
    job = fake.create_job(items=1)
    rotated: list[TokenPair] = []
    auth = oauth_for(fake, access, refresh, on_tokens=rotated.append)
    repr_before = repr(auth)
    async with client_with(fake, auth) as client:
        await get_concurrently(client, job.id)
    (pair,) = rotated
    secrets = [access, refresh, pair.access_token, pair.refresh_token]
    assert_no_secret([repr_before, repr(auth), str(auth), repr(pair), str(pair)], secrets)
    assert "<redacted>" in repr(pair)
    assert any("refresh" in record.getMessage() for record in caplog.records)
    assert_no_secret(record_texts(caplog.records), secrets)


async def test_no_secret_appears_in_debug_logs_of_failed_refreshes(
    oauth_fake: FakePleo, caplog: pytest.LogCaptureFixture
) -> None:
    """DEBUG log records of a refused and of a failed refresh show no secret."""
    caplog.set_level(logging.DEBUG)
    fake = oauth_fake
    access, refresh = fake.issue_token()
    fake.expire_access_tokens()
    job = fake.create_job(items=1)
    async with token_server(_echoing_error(500)) as server:
        failing = oauth_for(fake, access, refresh, token_url=server.url)
        async with client_with(fake, failing) as client:
            with pytest.raises(AuthenticationError):
                await client.get_job(job.id)
    refused = oauth_for(fake, access, "never-issued-refresh-Jd8")
    async with client_with(fake, refused) as client:
        with pytest.raises(ReauthorizationRequired):
            await client.get_job(job.id)
    assert_no_secret(record_texts(caplog.records), [access, refresh, "never-issued-refresh-Jd8"])


def test_reprs_of_credentials_and_pairs_show_no_secret() -> None:
    """repr and str of OAuth2Auth, BearerTokenAuth and TokenPair show no secret."""
    auth = OAuth2Auth(**_oauth_arguments())
    bearer = BearerTokenAuth(ACCESS)
    pair = TokenPair(ACCESS, REFRESH, 3600, datetime.now(UTC) + timedelta(hours=1))
    texts = [repr(auth), str(auth), repr(bearer), str(bearer), repr(pair), str(pair)]
    assert_no_secret(texts, [ACCESS, REFRESH])


# ---- bearer tokens ------------------------------------------------------------------------------


async def test_a_bearer_token_refused_with_401_raises_at_once_without_a_refresh(
    oauth_fake: FakePleo,
) -> None:
    """BearerTokenAuth meeting 401 raises AuthenticationError after one request, with no call to
    the token endpoint and no token in the message."""
    fake = oauth_fake
    access, _ = fake.issue_token()
    fake.expire_access_tokens()
    job = fake.create_job(items=1)
    async with client_with(fake, BearerTokenAuth(access)) as client:
        with pytest.raises(AuthenticationError) as raised:
            await client.get_job(job.id)
    assert raised.value.status == 401
    assert not isinstance(raised.value, ReauthorizationRequired)
    assert fake.journal.count(method="GET") == 1
    assert token_calls(fake) == 0
    assert_no_secret(exception_texts(raised.value), [access])


async def test_a_valid_bearer_token_is_sent_as_it_is(oauth_fake: FakePleo) -> None:
    """BearerTokenAuth with a valid token gets answers without any token call."""
    fake = oauth_fake
    access, _ = fake.issue_token()
    job = fake.create_job(items=1)
    async with client_with(fake, BearerTokenAuth(access)) as client:
        jobs = await get_concurrently(client, job.id)
    assert [found.id for found in jobs] == [job.id] * CONCURRENT_REQUESTS
    assert token_calls(fake) == 0
