"""OAuth2 tokens shared by replicas (`OAuth2Auth.shared` with a `TokenStore`), against the fake
Pleo's token endpoint over TCP, which rotates refresh tokens and revokes an authorisation whose
spent refresh token is presented again: processes that share a store refresh one at a time, a
newer pair in the store is taken instead of refreshing, and the seed is used only once (R7, R15).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from test_oauth import CLIENT_ID, CLIENT_SECRET, assert_no_secret, token_calls, token_url

from pleo_export_async import (
    FileTokenStore,
    InvalidInput,
    LedgerError,
    OAuth2Auth,
    PleoExportClient,
    PostgresLedger,
    PostgresTokenStore,
    ReauthorizationRequired,
    TokenStore,
)
from pleo_export_async.testing import FakePleo

REPLICAS = 4


@pytest.fixture
async def oauth_fake() -> AsyncIterator[FakePleo]:
    async with FakePleo(seed=23, oauth_clients={CLIENT_ID: CLIENT_SECRET}) as server:
        yield server


StoreMaker = Callable[[], contextlib.AbstractAsyncContextManager[TokenStore]]


@pytest.fixture(params=["file", "postgres"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreMaker:
    """Makes a store of its own for each replica, every one over the same tokens: a file, or
    a row of one PostgreSQL schema reached through a ledger of the replica's own."""
    if request.param == "file":

        @contextlib.asynccontextmanager
        async def file_store() -> AsyncIterator[TokenStore]:
            yield FileTokenStore(tmp_path / "tokens.json")

        return file_store
    dsn = request.getfixturevalue("postgres_dsn")
    schema = request.getfixturevalue("postgres_schema")

    @contextlib.asynccontextmanager
    async def postgres_store() -> AsyncIterator[TokenStore]:
        async with PostgresLedger(dsn, schema=schema) as ledger:
            yield PostgresTokenStore(ledger)

    return postgres_store


def shared_auth(fake: FakePleo, store: TokenStore, seed: str | None = None) -> OAuth2Auth:
    return OAuth2Auth.shared(
        CLIENT_ID, CLIENT_SECRET, store, refresh_token=seed, token_url=token_url(fake)
    )


async def replicas_read_a_job(
    fake: FakePleo, new_store: StoreMaker, seed: str | None, replicas: int = REPLICAS
) -> list[OAuth2Auth]:
    """`replicas` clients, each with its own store over the same tokens, read one job at once,
    20 requests each; the credentials they ended with."""
    job_id = fake.create_job(items=1).id
    async with contextlib.AsyncExitStack() as stack:
        auths = []
        clients = []
        for _ in range(replicas):
            store = await stack.enter_async_context(new_store())
            auth = shared_auth(fake, store, seed)
            auths.append(auth)
            clients.append(
                await stack.enter_async_context(PleoExportClient(fake.base_url, auth=auth))
            )
        await asyncio.gather(*(client.get_job(job_id) for client in clients for _ in range(20)))
    return auths


async def test_replicas_sharing_a_store_refresh_once_and_each_reads_the_new_pair(
    oauth_fake: FakePleo, new_store: StoreMaker
) -> None:
    """Four replicas starting at once with the same seed make one token request between them:
    the first refreshes with the seed, the others read its pair from the store; none presents
    the spent seed (which would revoke the authorisation)."""
    _, seed = oauth_fake.issue_token()
    auths = await replicas_read_a_job(oauth_fake, new_store, seed)
    assert token_calls(oauth_fake) == 1
    assert len({auth.authorization() for auth in auths}) == 1


async def test_after_pleo_expires_the_tokens_the_replicas_refresh_once_more(
    oauth_fake: FakePleo, new_store: StoreMaker
) -> None:
    """When every access token is refused (401), the replicas, each with its own stale pair,
    refresh once between them, and all go on with the one new pair."""
    _, seed = oauth_fake.issue_token()
    job_id = oauth_fake.create_job(items=1).id
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        auths = []
        for _ in range(REPLICAS):
            store = await stack.enter_async_context(new_store())
            auths.append(shared_auth(oauth_fake, store, seed))
            clients.append(
                await stack.enter_async_context(
                    PleoExportClient(oauth_fake.base_url, auth=auths[-1])
                )
            )
        await asyncio.gather(*(client.get_job(job_id) for client in clients))
        assert token_calls(oauth_fake) == 1
        oauth_fake.expire_access_tokens()
        jobs = await asyncio.gather(
            *(client.get_job(job_id) for client in clients for _ in range(10))
        )
    assert {job.id for job in jobs} == {job_id}
    assert token_calls(oauth_fake) == 2
    assert len({auth.authorization() for auth in auths}) == 1


async def test_a_restart_reads_the_stored_pair_and_never_sends_the_spent_seed(
    oauth_fake: FakePleo, new_store: StoreMaker
) -> None:
    """A replica started again with the same (now spent) seed takes the stored pair: the
    authorisation is not revoked, and its next refresh rotates the stored refresh token."""
    _, seed = oauth_fake.issue_token()
    await replicas_read_a_job(oauth_fake, new_store, seed, replicas=1)
    await replicas_read_a_job(oauth_fake, new_store, seed, replicas=1)
    assert token_calls(oauth_fake) == 1
    oauth_fake.expire_access_tokens()
    await replicas_read_a_job(oauth_fake, new_store, seed, replicas=2)
    assert token_calls(oauth_fake) == 2


async def test_an_empty_store_without_a_seed_requires_reauthorisation_and_asks_pleo_nothing(
    oauth_fake: FakePleo, new_store: StoreMaker
) -> None:
    """With nothing stored and no refresh_token given, the first request raises
    ReauthorizationRequired before any token request or API call."""
    async with new_store() as store:
        auth = shared_auth(oauth_fake, store)
        async with PleoExportClient(oauth_fake.base_url, auth=auth) as client:
            with pytest.raises(ReauthorizationRequired, match="holds no tokens"):
                await client.get_job(oauth_fake.create_job(items=1).id)
    assert token_calls(oauth_fake) == 0
    assert oauth_fake.journal.count(path_prefix="/v3/") == 0


async def test_a_refused_refresh_token_is_not_stored_and_raises_reauthorization_required(
    oauth_fake: FakePleo, new_store: StoreMaker
) -> None:
    """A seed Pleo does not know raises ReauthorizationRequired, and the store stays empty, so
    the next start with a good seed works."""
    async with new_store() as store:
        auth = shared_auth(oauth_fake, store, "not-a-refresh-token-pleo-issued")
        async with PleoExportClient(oauth_fake.base_url, auth=auth) as client:
            with pytest.raises(ReauthorizationRequired):
                await client.get_job(oauth_fake.create_job(items=1).id)
        async with store.exclusively() as held:
            assert held.pair is None
    _, seed = oauth_fake.issue_token()
    await replicas_read_a_job(oauth_fake, new_store, seed, replicas=1)


async def test_a_stored_pair_about_to_expire_is_refreshed_rather_than_taken(
    oauth_fake: FakePleo, new_store: StoreMaker
) -> None:
    """A replica that finds in the store a pair whose access token expires within the refresh
    margin refreshes with its refresh token instead of sending the dying access token."""
    _, seed = oauth_fake.issue_token()
    await replicas_read_a_job(oauth_fake, new_store, seed, replicas=1)
    async with new_store() as store:
        auth = OAuth2Auth.shared(
            CLIENT_ID,
            CLIENT_SECRET,
            store,
            token_url=token_url(oauth_fake),
            refresh_margin=3600 + 60,  # every pair the fake issues is within the margin
        )
        async with PleoExportClient(oauth_fake.base_url, auth=auth) as client:
            await client.get_job(oauth_fake.create_job(items=1).id)
    assert token_calls(oauth_fake) == 2


def leftover_temporaries(directory: Path) -> list[str]:
    return [path.name for path in directory.iterdir() if path.name.endswith(".tmp")]


async def test_the_token_file_is_the_owners_alone_and_holds_the_latest_pair(
    oauth_fake: FakePleo, tmp_path: Path
) -> None:
    """FileTokenStore writes its file with mode 0600, replaced whole, holding the pair the
    client uses now; its repr shows the path and no token."""
    path = tmp_path / "tokens.json"
    _, seed = oauth_fake.issue_token()
    store = FileTokenStore(path)
    auth = shared_auth(oauth_fake, store, seed)
    async with PleoExportClient(oauth_fake.base_url, auth=auth) as client:
        await client.get_job(oauth_fake.create_job(items=1).id)
        oauth_fake.expire_access_tokens()
        await client.get_job(oauth_fake.create_job(items=1).id)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    document: dict[str, Any] = json.loads(path.read_text())
    assert auth.authorization() == f"Bearer {document['access_token']}"
    assert leftover_temporaries(tmp_path) == []
    assert_no_secret(
        [repr(store), repr(auth)], [document["access_token"], document["refresh_token"], seed]
    )


async def test_a_token_file_that_is_not_a_pair_raises_ledger_error_without_its_text(
    oauth_fake: FakePleo, tmp_path: Path
) -> None:
    """A token file someone else wrote raises LedgerError naming the file, and nothing is sent
    to Pleo."""
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"access": "sekrit-value-1"}))
    auth = shared_auth(oauth_fake, FileTokenStore(path), "seed")
    async with PleoExportClient(oauth_fake.base_url, auth=auth) as client:
        with pytest.raises(LedgerError, match=r"tokens\.json") as raised:
            await client.get_job(oauth_fake.create_job(items=1).id)
    assert "sekrit-value-1" not in str(raised.value)
    assert token_calls(oauth_fake) == 0


def test_bad_arguments_of_shared_raise_invalid_input_naming_the_field(tmp_path: Path) -> None:
    """A store without exclusively(), an empty seed and an empty client id are refused at
    construction, each naming its field, the seed shown redacted."""
    with pytest.raises(InvalidInput, match="store"):
        OAuth2Auth.shared(CLIENT_ID, CLIENT_SECRET, object())  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="refresh_token") as raised:
        OAuth2Auth.shared(
            CLIENT_ID, CLIENT_SECRET, FileTokenStore(tmp_path / "t"), refresh_token=" "
        )
    assert "<redacted>" in str(raised.value)
    with pytest.raises(InvalidInput, match="client_id"):
        OAuth2Auth.shared("", CLIENT_SECRET, FileTokenStore(tmp_path / "t"))
    with pytest.raises(InvalidInput, match="ledger"):
        PostgresTokenStore(object())  # type: ignore[arg-type]
