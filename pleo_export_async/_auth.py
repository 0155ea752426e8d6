"""Credentials for the Export API (rules R7 and R15).

* `ApiKeyAuth`: HTTP Basic with the API key as user name and an empty password.
* `BearerTokenAuth`: an access token as it is, never refreshed (a 401 raises).
* `OAuth2Auth`: an OAuth 2.0 access token with its refresh token, refreshed a little before it
  expires and on a 401, one refresh at a time. Refresh tokens rotate (docs/pleo-api.md#oauth2):
  each refresh hands the new pair to `on_tokens`, and a refused refresh token raises
  `ReauthorizationRequired`.

No credential appears in a repr, a log record or an exception message.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import ipaddress
import logging
import math
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
import attrs

from ._checks import function
from ._errors import AuthenticationError, InvalidInput, ReauthorizationRequired

PRODUCTION_TOKEN_URL = "https://auth.pleo.io/oauth/token"
STAGING_TOKEN_URL = "https://auth.staging.pleo.io/oauth/token"

logger = logging.getLogger("pleo_export_async")


class Credential(Protocol):
    """What the transport needs of a credential."""

    @property
    def generation(self) -> int:
        """Bumped at each change, so a 401 on an older credential does not refresh it twice."""
        ...

    def authorization(self) -> str:
        """The value of the Authorization header."""
        ...

    @property
    def refreshable(self) -> bool: ...

    @property
    def needs_refresh(self) -> bool:
        """Whether to refresh before the next request (the token is about to expire)."""
        ...

    async def refresh(self, session: aiohttp.ClientSession, stale_generation: int) -> None:
        """Replace the credential, unless another task already did since `stale_generation`."""
        ...


class HeldTokens(Protocol):
    """The stored pair while the store's lock is held."""

    @property
    def pair(self) -> TokenPair | None:
        """The pair last saved, or None if none was."""
        ...

    async def save(self, pair: TokenPair) -> None:
        """Keep `pair` durably before the lock is let go. Raises `LedgerError` if it cannot."""
        ...


class TokenStore(Protocol):
    """A rotated pair of tokens, shared by every process of one authorisation."""

    def exclusively(self) -> AbstractAsyncContextManager[HeldTokens]:
        """Hold the store's lock, against every other holder in any process, until the block
        ends; raises `LedgerError` if the store cannot be reached."""
        ...


def require_safe_url(field: str, url: str) -> str:
    """`url` without a trailing slash; plain http is refused unless it points at loopback."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        # Shown without them: the error is for a log, and credentials go in `auth`.
        shown = parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()
        raise InvalidInput(
            field, shown, "must not hold a user name or password; pass credentials as auth="
        )
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInput(field, url, "must be an absolute https:// URL")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise InvalidInput(
            field,
            url,
            "plain http:// would expose credentials; use https:// (http only for loopback)",
        )
    return url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _basic_authorization(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class ApiKeyAuth:
    """An API key, sent as HTTP Basic: the key is the user name, the password is empty."""

    __slots__ = ("_header",)

    def __init__(self, api_key: str) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise InvalidInput("api_key", "<redacted>", "must be a non-empty string")
        self._header = _basic_authorization(api_key, "")

    @property
    def generation(self) -> int:
        return 0

    @property
    def refreshable(self) -> bool:
        return False

    @property
    def needs_refresh(self) -> bool:
        return False

    def authorization(self) -> str:
        return self._header

    async def refresh(self, session: aiohttp.ClientSession, stale_generation: int) -> None:
        """Never called: an API key is not refreshable. Raises `AssertionError` if it is."""
        raise AssertionError("an API key cannot be refreshed")

    def __repr__(self) -> str:
        return "ApiKeyAuth(api_key=<redacted>)"


@attrs.frozen(repr=False)
class TokenPair:
    """A rotated pair of OAuth tokens, as handed to `on_tokens`. Store the refresh token: the
    one it replaces no longer works."""

    access_token: str
    refresh_token: str
    expires_in: int | None = None
    #: When the access token expires (from `expires_in`), or None when Pleo did not say.
    expires_at: datetime | None = None

    def __repr__(self) -> str:
        return (
            "TokenPair(access_token=<redacted>, refresh_token=<redacted>, "
            f"expires_in={self.expires_in}, expires_at={self.expires_at!r})"
        )


class BearerTokenAuth:
    """An access token, sent as `Authorization: Bearer ...` and never refreshed: when Pleo
    refuses it (401) the request raises `AuthenticationError`. Use `OAuth2Auth` to refresh."""

    __slots__ = ("_access_token",)

    def __init__(self, access_token: str) -> None:
        if not isinstance(access_token, str) or not access_token.strip():
            raise InvalidInput("access_token", "<redacted>", "must be a non-empty string")
        self._access_token = access_token

    @property
    def generation(self) -> int:
        return 0

    @property
    def refreshable(self) -> bool:
        return False

    @property
    def needs_refresh(self) -> bool:
        return False

    def authorization(self) -> str:
        return f"Bearer {self._access_token}"

    async def refresh(self, session: aiohttp.ClientSession, stale_generation: int) -> None:
        """Never called: a bare token is not refreshable, and a 401 raises
        `AuthenticationError` instead. Raises `AssertionError` if it is."""
        raise AssertionError("a bare bearer token cannot be refreshed")

    def __repr__(self) -> str:
        return "BearerTokenAuth(access_token=<redacted>)"


#: OAuth error codes that mean the authorisation is gone: a user must authorise again.
_REAUTHORISE = frozenset({"invalid_grant", "invalid_refresh_token"})


class OAuth2Auth:
    """OAuth 2.0 for an integration: the access token and the refresh token that renews it.

        auth = OAuth2Auth(client_id, client_secret, access_token, refresh_token, expires_at,
                          on_tokens=store_tokens)

    The access token is refreshed `refresh_margin` seconds before `expires_at` (an aware
    datetime, or None when unknown) and whenever Pleo answers 401; however many requests are
    waiting, one refresh is made, at `token_url` with the client's credentials in HTTP Basic.
    Each rotated pair goes to `on_tokens` (a function or a coroutine function) before any
    request uses it: persist it, because the old refresh token is spent.

    A refresh Pleo refuses with `invalid_grant` or `invalid_refresh_token` raises
    `ReauthorizationRequired` at once: the refresh token expired, was revoked, or was used
    twice (which revokes every token of the authorisation). Any other failed refresh raises
    `AuthenticationError`.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        access_token: str,
        refresh_token: str,
        expires_at: datetime | None = None,
        *,
        on_tokens: Callable[[TokenPair], Awaitable[None] | None] | None = None,
        token_url: str = PRODUCTION_TOKEN_URL,
        refresh_margin: float = 60.0,
    ) -> None:
        for field, value in (
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("access_token", access_token),
            ("refresh_token", refresh_token),
        ):
            if not isinstance(value, str) or not value.strip():
                shown = value if field == "client_id" else "<redacted>"
                raise InvalidInput(field, shown, "must be a non-empty string")
        if expires_at is not None and (
            not isinstance(expires_at, datetime) or expires_at.utcoffset() is None
        ):
            raise InvalidInput("expires_at", expires_at, "must be a timezone-aware datetime")
        if not isinstance(refresh_margin, int | float) or not refresh_margin >= 0:
            raise InvalidInput("refresh_margin", refresh_margin, "must be seconds, 0 or more")
        if on_tokens is not None:
            function("on_tokens", on_tokens, of="a TokenPair")
        self._client_id = client_id
        self._client_authorization = _basic_authorization(client_id, client_secret)
        self._access_token = access_token
        self._refresh_token = refresh_token
        self._refresh_at = (
            math.inf if expires_at is None else expires_at.timestamp() - float(refresh_margin)
        )
        self._refresh_margin = float(refresh_margin)
        self._token_url = require_safe_url("token_url", token_url)
        self._on_tokens = on_tokens
        self._generation = 0
        self._lock = asyncio.Lock()
        self._store: TokenStore | None = None
        self._seed: str | None = None
        self._read_from_store = False

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def refreshable(self) -> bool:
        return True

    @property
    def needs_refresh(self) -> bool:
        return time.time() >= self._refresh_at

    def authorization(self) -> str:
        return f"Bearer {self._access_token}"

    @classmethod
    def shared(
        cls,
        client_id: str,
        client_secret: str,
        store: TokenStore,
        *,
        refresh_token: str | None = None,
        on_tokens: Callable[[TokenPair], Awaitable[None] | None] | None = None,
        token_url: str = PRODUCTION_TOKEN_URL,
        refresh_margin: float = 60.0,
    ) -> OAuth2Auth:
        """OAuth 2.0 with the tokens kept in `store`, shared by every process (replica) of one
        authorisation, so that they refresh it one at a time and none presents a spent refresh
        token (which would revoke the authorisation).

        The pair is read from the store before the first request. `refresh_token` seeds an
        empty store: the authorisation's refresh token as the code exchange gave it; once the
        store holds a pair, it is ignored, being spent. Each refresh holds the store's lock
        from reading the pair to saving the new one; a process that finds a newer pair there
        than its own takes it instead of refreshing.

        Raises `ReauthorizationRequired` on the first request when the store is empty and no
        `refresh_token` was given, as when Pleo refuses the stored one.
        """
        if refresh_token is not None and (
            not isinstance(refresh_token, str) or not refresh_token.strip()
        ):
            raise InvalidInput("refresh_token", "<redacted>", "must be a non-empty string")
        exclusively = getattr(store, "exclusively", None)
        if not callable(exclusively):
            raise InvalidInput(
                "store", type(store).__name__, "must be a TokenStore (with exclusively())"
            )
        # The placeholders are never sent: with no pair read yet, the first request refreshes,
        # which reads the store first.
        auth = cls(
            client_id,
            client_secret,
            "not-read-yet",
            refresh_token or "not-read-yet",
            on_tokens=on_tokens,
            token_url=token_url,
            refresh_margin=refresh_margin,
        )
        auth._store = store
        auth._seed = refresh_token
        auth._refresh_at = -math.inf
        return auth

    async def refresh(self, session: aiohttp.ClientSession, stale_generation: int) -> None:
        """Replace the access token with a new one from `token_url`, once however many
        requests ask at the same time (the client calls it; a connector need not).

        Nothing is done if another task refreshed since `stale_generation`. The rotated pair
        goes to `on_tokens` (and to the store, for `shared`) before any request uses it.

        Raises `ReauthorizationRequired` when the refresh token is refused (`invalid_grant`,
        `invalid_refresh_token`): a user must authorise the integration again.
        Raises `AuthenticationError` when the refresh fails otherwise: the token endpoint
        cannot be reached or answers another error, or its answer lacks the tokens.
        Whatever `on_tokens` raises is raised too, after the new pair is taken into use
        (Pleo has spent the old refresh token already).
        """
        async with self._lock:
            if self._generation != stale_generation:
                return  # another request refreshed while this one waited
            if self._store is None:
                pair = await self._exchange(session, self._refresh_token)
                try:
                    await self._hand_over(pair)
                finally:
                    # Kept even if storing failed: Pleo has spent the old refresh token.
                    self._take(pair, "access token refreshed")
                return
            await self._refresh_shared(session, self._store)

    async def _refresh_shared(self, session: aiohttp.ClientSession, store: TokenStore) -> None:
        fresh: TokenPair | None = None
        try:
            async with store.exclusively() as held:
                stored = held.pair
                # A pair newer than this process's (none read yet, or another process
                # refreshed) is taken as it is, unless it too is about to expire.
                newer = stored is not None and (
                    not self._read_from_store or stored.refresh_token != self._refresh_token
                )
                if stored is not None and newer and not self._expiring(stored):
                    self._read_from_store = True
                    self._take(stored, "access token read from the token store")
                    return
                refresh_token = stored.refresh_token if stored is not None else self._seed
                if refresh_token is None:
                    raise ReauthorizationRequired(
                        401,
                        "NO_STORED_TOKENS",
                        "the token store holds no tokens and no refresh_token was given: "
                        "authorise the integration and seed the store",
                    )
                fresh = await self._exchange(session, refresh_token)
                # Saved before the lock is let go: the next holder must see the unspent token.
                await held.save(fresh)
        except BaseException:
            if fresh is not None:
                # Pleo has spent the old refresh token: the new pair is used all the same.
                self._read_from_store = True
                self._take(fresh, "access token refreshed, but the token store failed")
            raise
        assert fresh is not None
        self._read_from_store = True
        try:
            await self._hand_over(fresh)
        finally:
            self._take(fresh, "access token refreshed")

    def _expiring(self, pair: TokenPair) -> bool:
        if pair.expires_at is None:
            return False
        return time.time() >= pair.expires_at.timestamp() - self._refresh_margin

    async def _exchange(self, session: aiohttp.ClientSession, refresh_token: str) -> TokenPair:
        """The pair the token endpoint gives for `refresh_token` (which it then spends)."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        headers = {"Authorization": self._client_authorization}
        try:
            async with session.post(self._token_url, data=form, headers=headers) as response:
                status = response.status
                payload = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise AuthenticationError(
                401, "TOKEN_REFRESH_FAILED", f"token refresh failed: {type(error).__name__}"
            ) from None
        answer = payload if isinstance(payload, dict) else {}
        if status != 200:
            error_code = answer.get("error")
            if isinstance(error_code, str) and error_code.lower() in _REAUTHORISE:
                raise ReauthorizationRequired(
                    status,
                    error_code,
                    "the refresh token was refused: a user must authorise the integration again",
                )
            raise AuthenticationError(
                status, "TOKEN_REFRESH_FAILED", f"token refresh answered HTTP {status}"
            )
        access, refresh = answer.get("access_token"), answer.get("refresh_token")
        if not isinstance(access, str) or not isinstance(refresh, str):
            raise AuthenticationError(
                status, "TOKEN_REFRESH_FAILED", "the token response lacks the tokens"
            )
        expires_in = answer.get("expires_in")
        lifetime = expires_in if isinstance(expires_in, int) and expires_in > 0 else None
        expires_at = None
        if lifetime is not None:
            expires_at = datetime.now(UTC) + timedelta(seconds=lifetime)
        return TokenPair(access, refresh, lifetime, expires_at)

    async def _hand_over(self, pair: TokenPair) -> None:
        # The caller stores the pair before any request uses it: if the process dies right
        # after, the stored refresh token is the one that still works.
        if self._on_tokens is not None:
            result = self._on_tokens(pair)
            if inspect.isawaitable(result):
                await result

    def _take(self, pair: TokenPair, what: str) -> None:
        self._access_token, self._refresh_token = pair.access_token, pair.refresh_token
        self._refresh_at = (
            math.inf
            if pair.expires_at is None
            else pair.expires_at.timestamp() - self._refresh_margin
        )
        self._generation += 1
        logger.info(what, extra={"token_generation": self._generation})

    def __repr__(self) -> str:
        return f"OAuth2Auth(client_id={self._client_id!r}, credentials=<redacted>)"
