"""OAuth2 tokens: refreshed before expiry and on a 401; each pair stored."""

import asyncio
import json
import tempfile
from pathlib import Path

from pleo_export_async import (
    OAuth2Auth,
    PleoExportClient,
    ReauthorizationRequired,
    TokenPair,
)
from pleo_export_async.testing import FakePleo

# From your secret store.
CLIENT_ID, CLIENT_SECRET = "my-integration", "its-client-secret"


class TokenFile:
    """Where the integration keeps its tokens (a database row, a vault)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, str]:
        tokens: dict[str, str] = json.loads(self.path.read_text())
        return tokens

    def save(self, pair: TokenPair) -> None:
        """`on_tokens`: gets every rotated pair before it is used. Store it now:
        the refresh token it replaces no longer works."""
        tokens = {
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token,
        }
        self.path.write_text(json.dumps(tokens))


async def export(base_url: str, token_url: str, store: TokenFile) -> None:
    tokens = store.load()
    auth = OAuth2Auth(
        CLIENT_ID,
        CLIENT_SECRET,
        tokens["access_token"],
        tokens["refresh_token"],
        # Or the aware datetime you stored: refreshed a minute before it.
        expires_at=None,
        on_tokens=store.save,
        # PRODUCTION_TOKEN_URL by default; STAGING_TOKEN_URL for staging.
        token_url=token_url,
    )
    try:
        async with PleoExportClient(base_url, auth=auth) as client:
            print(len([job async for job in client.jobs()]), "pending job(s)")
    except ReauthorizationRequired:
        print("refresh token refused: the company must connect the app again")


async def main() -> None:
    async with FakePleo(oauth_clients={CLIENT_ID: CLIENT_SECRET}) as pleo:
        pleo.create_job(items=10, status="pending")
        # What the OAuth consent flow gave you:
        access_token, refresh_token = pleo.issue_token()
        with tempfile.TemporaryDirectory() as directory:
            store = TokenFile(Path(directory) / "tokens.json")
            first = {
                "access_token": access_token,
                "refresh_token": refresh_token,
            }
            store.path.write_text(json.dumps(first))
            token_url = f"{pleo.base_url}/oauth/token"
            await export(pleo.base_url, token_url, store)
            # An hour later: Pleo answers 401 to the old access token.
            pleo.expire_access_tokens()
            # One refresh, the new pair stored, then the request again.
            await export(pleo.base_url, token_url, store)
            assert store.load()["refresh_token"] != refresh_token


if __name__ == "__main__":
    asyncio.run(main())
