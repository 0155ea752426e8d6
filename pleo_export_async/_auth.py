"""Credentials for the Export API (rules R7 and R15).

* `ApiKeyAuth`: HTTP Basic with the API key as user name and an empty password.
* `BearerTokenAuth`: an OAuth access token; refreshable when it is given a refresh token and the
  client's credentials. Refresh tokens rotate: each refresh hands the new pair to `on_refresh`.

No credential appears in a repr, a log record or an exception message.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
import attrs

from ._errors import AuthenticationError, InvalidInput

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

    async def refresh(self, session: aiohttp.ClientSession, stale_generation: int) -> None:
        """Replace the credential, unless another task already did since `stale_generation`."""
        ...


def require_safe_url(field: str, url: str) -> str:
    """`url` without a trailing slash; plain http is refused unless it points at loopback."""
    parts = urlsplit(url)
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

    def authorization(self) -> str:
        return self._header

    async def refresh(self, session: aiohttp.ClientSession, stale_generation: int) -> None:
        raise AssertionError("an API key cannot be refreshed")

    def __repr__(self) -> str:
        return "ApiKeyAuth(api_key=<redacted>)"


@attrs.frozen(repr=False)
class TokenPair:
    """A rotated pair of OAuth tokens, as handed to `on_refresh`. Store the refresh token."""

    access_token: str
    refresh_token: str
    expires_in: int | None = None

    def __repr__(self) -> str:
        return (
            "TokenPair(access_token=<redacted>, refresh_token=<redacted>, "
            f"expires_in={self.expires_in})"
        )


class BearerTokenAuth:
    """An OAuth 2.0 access token, sent as `Authorization: Bearer ...`.

    Given `refresh_token`, `client_id` and `client_secret`, a 401 makes the client refresh the
    token once (one refresh at a time for the whole client) at `token_url` and retry; each new
    pair goes to `on_refresh` (sync or async), since the old refresh token stops working.
    """

    def __init__(
        self,
        access_token: str,
        *,
        refresh_token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        token_url: str = PRODUCTION_TOKEN_URL,
        on_refresh: Callable[[TokenPair], Awaitable[None] | None] | None = None,
    ) -> None:
        if not isinstance(access_token, str) or not access_token.strip():
            raise InvalidInput("access_token", "<redacted>", "must be a non-empty string")
        if refresh_token is not None and not (client_id and client_secret):
            raise InvalidInput(
                "client_id", client_id, "a refresh token needs client_id and client_secret"
            )
        self._access_token = access_token
        self._refresh_token = refresh_token
        self._client_id = client_id
        self._client_secret = client_secret
        self._token_url = require_safe_url("token_url", token_url)
        self._on_refresh = on_refresh
        self._generation = 0
        self._lock = asyncio.Lock()

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def refreshable(self) -> bool:
        return self._refresh_token is not None

    def authorization(self) -> str:
        return f"Bearer {self._access_token}"

    async def refresh(self, session: aiohttp.ClientSession, stale_generation: int) -> None:
        async with self._lock:
            if self._generation != stale_generation:
                return  # another request refreshed while this one waited
            assert self._refresh_token is not None
            assert self._client_id is not None
            assert self._client_secret is not None
            form = {"grant_type": "refresh_token", "refresh_token": self._refresh_token}
            client_auth = _basic_authorization(self._client_id, self._client_secret)
            try:
                async with session.post(
                    self._token_url, data=form, headers={"Authorization": client_auth}
                ) as response:
                    status = response.status
                    payload = await response.json(content_type=None) if status == 200 else None
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                raise AuthenticationError(
                    401, "TOKEN_REFRESH_FAILED", f"token refresh failed: {type(error).__name__}"
                ) from None
            if status != 200 or not isinstance(payload, dict):
                raise AuthenticationError(
                    status, "TOKEN_REFRESH_FAILED", "the refresh token was refused; re-authorise"
                )
            access, refresh = payload.get("access_token"), payload.get("refresh_token")
            if not isinstance(access, str) or not isinstance(refresh, str):
                raise AuthenticationError(
                    status, "TOKEN_REFRESH_FAILED", "the token response lacks the tokens"
                )
            expires_in = payload.get("expires_in")
            self._access_token, self._refresh_token = access, refresh
            self._generation += 1
            logger.info("access token refreshed", extra={"token_generation": self._generation})
            if self._on_refresh is not None:
                result = self._on_refresh(
                    TokenPair(access, refresh, expires_in if isinstance(expires_in, int) else None)
                )
                if result is not None:
                    await result

    def __repr__(self) -> str:
        return f"BearerTokenAuth(access_token=<redacted>, refreshable={self.refreshable})"
