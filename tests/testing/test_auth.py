"""Authentication: API keys over Basic, bearer tokens, and the OAuth refresh grant."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp

from pleo_export_async.testing import FakePleo

from .helpers import call


def _basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def _get_jobs(fake: FakePleo, authorization: str | None) -> tuple[int, Any]:
    headers = {} if authorization is None else {"Authorization": authorization}
    async with aiohttp.ClientSession(fake.base_url, headers=headers) as session:
        return await call(session, "GET", "/v3/export-jobs")


async def _token_request(
    fake: FakePleo, form: dict[str, str], client: tuple[str, str] | None = ("app", "secret")
) -> tuple[int, Any]:
    headers = {} if client is None else {"Authorization": _basic(*client)}
    async with (
        aiohttp.ClientSession(fake.base_url, headers=headers) as session,
        session.post("/oauth/token", data=form) as response,
    ):
        return response.status, await response.json(content_type=None)


def _refresh_form(refresh_token: str) -> dict[str, str]:
    return {"grant_type": "refresh_token", "refresh_token": refresh_token}


async def test_api_key_as_basic_user_with_empty_password_is_accepted(fake_pleo: FakePleo) -> None:
    """Basic base64("<key>:") authenticates."""
    status, _ = await _get_jobs(fake_pleo, _basic(fake_pleo.api_key))
    assert status == 200


async def test_raw_api_key_after_basic_is_accepted(fake_pleo: FakePleo) -> None:
    """The quickstart shortcut "Basic <key>" (not encoded) authenticates."""
    status, _ = await _get_jobs(fake_pleo, f"Basic {fake_pleo.api_key}")
    assert status == 200


async def test_wrong_key_gets_401_without_echoing_credentials(fake_pleo: FakePleo) -> None:
    """A wrong API key gets 401 UNAUTHORIZED, and the message does not repeat the key."""
    status, body = await _get_jobs(fake_pleo, _basic("wrong-key-123"))
    assert status == 401
    assert body["type"] == "UNAUTHORIZED"
    assert "wrong-key-123" not in body["message"]
    assert fake_pleo.api_key not in body["message"]


async def test_key_with_a_password_is_refused(fake_pleo: FakePleo) -> None:
    """The API key is the user name and the password must be empty."""
    status, _ = await _get_jobs(fake_pleo, _basic(fake_pleo.api_key, "something"))
    assert status == 401


async def test_missing_or_unknown_scheme_gets_401(fake_pleo: FakePleo) -> None:
    """No Authorization header, or an unknown scheme, gets 401 UNAUTHORIZED."""
    for header in (None, f"Token {fake_pleo.api_key}", "Bearer", "Basic"):
        status, body = await _get_jobs(fake_pleo, header)
        assert (status, body["type"]) == (401, "UNAUTHORIZED"), header


async def test_issued_bearer_token_is_accepted(fake_pleo: FakePleo) -> None:
    """An access token from issue_token() authenticates as Bearer."""
    access, _ = fake_pleo.issue_token()
    status, _ = await _get_jobs(fake_pleo, f"Bearer {access}")
    assert status == 200


async def test_unknown_bearer_token_gets_401(fake_pleo: FakePleo) -> None:
    """A bearer token the fake never issued gets 401."""
    status, _ = await _get_jobs(fake_pleo, "Bearer not-a-token")
    assert status == 401


async def test_expire_access_tokens_makes_bearer_tokens_fail(fake_pleo: FakePleo) -> None:
    """After expire_access_tokens(), every access token issued so far gets 401."""
    access, _ = fake_pleo.issue_token()
    fake_pleo.expire_access_tokens()
    status, body = await _get_jobs(fake_pleo, f"Bearer {access}")
    assert (status, body["type"]) == (401, "UNAUTHORIZED")
    fresh, _ = fake_pleo.issue_token()
    assert (await _get_jobs(fake_pleo, f"Bearer {fresh}"))[0] == 200


async def test_access_token_expires_after_its_lifetime_on_the_clock(fake_pleo: FakePleo) -> None:
    """An access token stops working expires_in (3600) seconds later by the fake's clock."""
    access, _ = fake_pleo.issue_token()
    fake_pleo.advance_clock(3599)
    assert (await _get_jobs(fake_pleo, f"Bearer {access}"))[0] == 200
    fake_pleo.advance_clock(1)
    assert (await _get_jobs(fake_pleo, f"Bearer {access}"))[0] == 401


async def test_refresh_rotates_tokens(fake_pleo: FakePleo) -> None:
    """A refresh returns a new working access token and a new refresh token."""
    _, refresh = fake_pleo.issue_token()
    status, body = await _token_request(fake_pleo, _refresh_form(refresh))
    assert status == 200
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["refresh_token"] != refresh
    assert (await _get_jobs(fake_pleo, f"Bearer {body['access_token']}"))[0] == 200
    status, second = await _token_request(fake_pleo, _refresh_form(body["refresh_token"]))
    assert status == 200
    assert second["refresh_token"] not in (refresh, body["refresh_token"])


async def test_reusing_a_refresh_token_is_refused_and_revokes_its_chain(
    fake_pleo: FakePleo,
) -> None:
    """A spent refresh token gets invalid_grant and revokes the tokens issued after it."""
    _, first = fake_pleo.issue_token()
    _, rotated = await _token_request(fake_pleo, _refresh_form(first))
    status, body = await _token_request(fake_pleo, _refresh_form(first))
    assert (status, body["error"]) == (400, "invalid_grant")
    status, body = await _token_request(fake_pleo, _refresh_form(rotated["refresh_token"]))
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_replay_does_not_revoke_other_authorisations(fake_pleo: FakePleo) -> None:
    """Replay protection revokes only the chain of the replayed token."""
    _, first = fake_pleo.issue_token()
    _, other = fake_pleo.issue_token()
    await _token_request(fake_pleo, _refresh_form(first))
    await _token_request(fake_pleo, _refresh_form(first))
    status, _ = await _token_request(fake_pleo, _refresh_form(other))
    assert status == 200


async def test_unknown_refresh_token_is_invalid_grant(fake_pleo: FakePleo) -> None:
    """A refresh token the fake never issued gets 400 invalid_grant."""
    status, body = await _token_request(fake_pleo, _refresh_form("made-up"))
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_client_credentials_may_be_form_parameters(fake_pleo: FakePleo) -> None:
    """client_id and client_secret in the form body authenticate the client too."""
    _, refresh = fake_pleo.issue_token()
    form = {**_refresh_form(refresh), "client_id": "app", "client_secret": "secret"}
    status, _ = await _token_request(fake_pleo, form, client=None)
    assert status == 200


async def test_token_request_without_client_credentials_is_invalid_client(
    fake_pleo: FakePleo,
) -> None:
    """A token request with no client authentication gets 401 invalid_client."""
    _, refresh = fake_pleo.issue_token()
    status, body = await _token_request(fake_pleo, _refresh_form(refresh), client=None)
    assert (status, body["error"]) == (401, "invalid_client")


async def test_configured_oauth_clients_are_checked() -> None:
    """With oauth_clients given, only those client id/secret pairs may refresh."""
    async with FakePleo(oauth_clients={"app": "right"}) as fake:
        _, refresh = fake.issue_token()
        status, body = await _token_request(fake, _refresh_form(refresh), ("app", "wrong"))
        assert (status, body["error"]) == (401, "invalid_client")
        status, _ = await _token_request(fake, _refresh_form(refresh), ("app", "right"))
        assert status == 200


async def test_unsupported_grant_and_missing_refresh_token(fake_pleo: FakePleo) -> None:
    """Other grant types get unsupported_grant_type; no refresh_token gets invalid_request."""
    status, body = await _token_request(fake_pleo, {"grant_type": "password"})
    assert (status, body["error"]) == (400, "unsupported_grant_type")
    status, body = await _token_request(fake_pleo, {"grant_type": "refresh_token"})
    assert (status, body["error"]) == (400, "invalid_request")


async def test_token_requests_are_journalled_with_secrets_redacted(fake_pleo: FakePleo) -> None:
    """The journal records token requests but never the refresh token or client secret."""
    _, refresh = fake_pleo.issue_token()
    form = {**_refresh_form(refresh), "client_id": "app", "client_secret": "s3cret"}
    await _token_request(fake_pleo, form, client=None)
    [entry] = fake_pleo.journal.entries("POST", "/oauth/token")
    assert entry.status == 200
    assert entry.body["grant_type"] == "refresh_token"
    assert entry.body["client_id"] == "app"
    assert refresh not in repr(entry.body)
    assert "s3cret" not in repr(entry.body)


async def test_repr_does_not_show_the_api_key() -> None:
    """FakePleo's repr never includes the API key."""
    fake = FakePleo(api_key="super-secret-key")
    assert "super-secret-key" not in repr(fake)
