"""Credentials: API keys over HTTP Basic, bearer access tokens, and rotating refresh tokens
(docs/pleo-api.md#auth).

Secrets are compared in constant time and never put into messages.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta

import attrs

from . import _spec
from ._state import Clock


class OAuthError(Exception):
    """A refused token request: HTTP status and an RFC 6749 `error` code."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status = status
        self.error = error
        self.description = description


@attrs.frozen
class TokenPair:
    """What the token endpoint hands out."""

    access_token: str
    refresh_token: str
    expires_in: int


@attrs.define
class _RefreshToken:
    # Every refresh token descends from one authorisation; replay revokes the whole chain.
    chain: int
    active: bool = True


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _decode_basic(encoded: str) -> tuple[str, str] | None:
    try:
        text = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = text.partition(":")
    return (user, password) if colon else None


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """The (user, password) of a `Basic` Authorization header, if it is one."""
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    return _decode_basic(value.strip())


class TokenStore:
    """Access and refresh tokens, with expiry on the fake's clock and rotation on refresh."""

    def __init__(
        self, clock: Clock, *, access_lifetime: int = _spec.ACCESS_TOKEN_LIFETIME_SECONDS
    ) -> None:
        self._clock = clock
        self._access_lifetime = access_lifetime
        self._access: dict[str, datetime] = {}
        self._refresh: dict[str, _RefreshToken] = {}
        self._chains = 0

    def issue(self, *, chain: int | None = None) -> TokenPair:
        """A new access and refresh token; a new authorisation chain unless one is given."""
        if chain is None:
            self._chains += 1
            chain = self._chains
        access = secrets.token_urlsafe(24)
        refresh = secrets.token_urlsafe(24)
        self._access[access] = self._clock.now() + timedelta(seconds=self._access_lifetime)
        self._refresh[refresh] = _RefreshToken(chain=chain)
        return TokenPair(access, refresh, self._access_lifetime)

    def access_token_valid(self, token: str) -> bool:
        """Whether a bearer token was issued here and has not expired."""
        expires_at = self._access.get(token)
        return expires_at is not None and self._clock.now() < expires_at

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far expire now."""
        now = self._clock.now()
        for token in self._access:
            self._access[token] = min(self._access[token], now)

    def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate: the presented refresh token is spent, a new pair is issued in its chain.

        Presenting a spent token is a replay (docs/pleo-api.md#oauth2, TOKENS): every refresh token
        of that authorisation is revoked, so the legitimate holder must re-authorise too.
        """
        record = self._refresh.get(refresh_token)
        if record is None:
            raise OAuthError(400, "invalid_grant", "invalid_refresh_token: unknown refresh token")
        if not record.active:
            for other in self._refresh.values():
                if other.chain == record.chain:
                    other.active = False
            raise OAuthError(
                400,
                "invalid_grant",
                "invalid_refresh_token: refresh token already used; "
                "every refresh token of this authorisation is now revoked",
            )
        record.active = False
        return self.issue(chain=record.chain)


class Authenticator:
    """Decides whether an Authorization header may call /v3 (API key or bearer token)."""

    def __init__(self, api_key: str, tokens: TokenStore) -> None:
        self._api_key = api_key
        self._tokens = tokens

    def allows(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer":
            return bool(value) and self._tokens.access_token_valid(value)
        if scheme.lower() != "basic":
            return False
        decoded = _decode_basic(value)
        if decoded is not None:
            user, password = decoded
            # docs/pleo-api.md#api-keys: the key is the user name and the password is empty.
            return _same(user, self._api_key) and password == ""
        # The quickstart's shortcut: "Basic <key>", the key neither encoded nor followed by ":".
        return _same(value, self._api_key)


def client_allowed(
    clients: Mapping[str, str] | None, client_id: str | None, client_secret: str | None
) -> bool:
    """Whether OAuth client credentials are acceptable: any pair unless clients are configured."""
    if not client_id or client_secret is None:
        return False
    if clients is None:
        return True
    expected = clients.get(client_id)
    return expected is not None and _same(client_secret, expected)
