"""Where an authorisation's rotating OAuth tokens live when more than one process uses them
(docs/how-to/oauth2.md#shared-tokens).

Pleo rotates refresh tokens, and a spent one presented again revokes every token of the
authorisation. So replicas that share an authorisation must not each refresh with the refresh
token they started with. A store lets one of them refresh at a time: `OAuth2Auth.shared` holds
the store's lock across reading the pair, asking the token endpoint and saving the new pair,
and a process that finds a newer pair than its own takes it instead of refreshing.

* `FileTokenStore`: a JSON file, written whole and renamed into place, locked with the
  operating system's file lock (one host; not across NFS).
* `PostgresTokenStore`: a row of the `oauth_token` table in a `PostgresLedger`'s schema, under
  a transaction-scoped advisory lock (every host that reaches the database).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import tempfile
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ._auth import HeldTokens, TokenPair
from ._errors import InvalidInput, LedgerError
from ._postgres_ledger import PostgresLedger

if TYPE_CHECKING:
    import asyncpg

#: The first key of the advisory lock a token refresh holds ("PLEO" + 1; the schema's is "PLEO").
TOKEN_LOCK: Final = 0x504C454F + 1
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


class _Held:
    def __init__(self, pair: TokenPair | None) -> None:
        self.pair = pair
        self.saved: TokenPair | None = None

    async def save(self, pair: TokenPair) -> None:
        self.saved = pair


def _pair_document(pair: TokenPair) -> dict[str, Any]:
    return {
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "expires_in": pair.expires_in,
        "expires_at": None if pair.expires_at is None else pair.expires_at.isoformat(),
    }


def _pair_of(document: Any, where: str) -> TokenPair:
    try:
        access, refresh = document["access_token"], document["refresh_token"]
        expires_in, expires_at = document.get("expires_in"), document.get("expires_at")
        if not isinstance(access, str) or not isinstance(refresh, str):
            raise TypeError
        return TokenPair(
            access,
            refresh,
            expires_in if isinstance(expires_in, int) else None,
            None if expires_at is None else datetime.fromisoformat(expires_at),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise LedgerError(f"{where} does not hold a token pair this library wrote") from None


class FileTokenStore:
    """The pair in a JSON file, readable by its owner only, for the processes of one host.

    The file is replaced whole (written beside it, then renamed), so a crash leaves the old pair
    or the new one, never half of either. The lock is the operating system's on `<path>-lock`,
    released by the kernel if its holder dies.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if not isinstance(path, str | os.PathLike) or not str(path).strip():
            raise InvalidInput("path", path, "must be a file path")
        self.path = Path(path)
        self._in_process = asyncio.Lock()

    def __repr__(self) -> str:
        return f"FileTokenStore({str(self.path)!r})"

    @contextlib.asynccontextmanager
    async def exclusively(self) -> AsyncIterator[HeldTokens]:
        async with self._in_process:
            descriptor = await asyncio.to_thread(self._lock)
            try:
                held = _Held(await asyncio.to_thread(self._read))
                yield held
                if held.saved is not None:
                    await asyncio.to_thread(self._write, held.saved)
            finally:
                _unlock(descriptor)

    def _lock(self) -> int:
        lock_path = f"{self.path}-lock"
        try:
            descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise LedgerError(f"cannot open the token lock {lock_path}: {error}") from None
        try:
            _lock_blocking(descriptor)
        except BaseException:
            os.close(descriptor)
            raise
        return descriptor

    def _read(self) -> TokenPair | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as error:
            raise LedgerError(f"cannot read the token store {self.path}: {error}") from None
        try:
            document = json.loads(text)
        except ValueError:
            raise LedgerError(f"the token store {self.path} is not JSON") from None
        return _pair_of(document, f"the token store {self.path}")

    def _write(self, pair: TokenPair) -> None:
        directory = self.path.parent
        try:
            descriptor, temporary = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".tmp", dir=directory
            )
            try:
                with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                    json.dump(_pair_document(pair), file)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
            _sync_directory(directory)
        except OSError as error:
            raise LedgerError(f"cannot write the token store {self.path}: {error}") from None


if sys.platform == "win32":  # pragma: no cover - the tests run on Linux
    import msvcrt

    def _lock_blocking(descriptor: int) -> None:
        while True:
            try:
                msvcrt.locking(descriptor, msvcrt.LK_LOCK, 1)
                return
            except OSError:
                continue  # LK_LOCK gives up after 10 s; a refresh may take longer

    def _unlock(descriptor: int) -> None:
        try:
            os.lseek(descriptor, 0, os.SEEK_SET)
            msvcrt.locking(descriptor, msvcrt.LK_UNLCK, 1)
        finally:
            os.close(descriptor)

    def _sync_directory(directory: Path) -> None:
        return None

else:
    import fcntl

    def _lock_blocking(descriptor: int) -> None:
        fcntl.flock(descriptor, fcntl.LOCK_EX)

    def _unlock(descriptor: int) -> None:
        os.close(descriptor)  # closing the only descriptor lets go of the flock

    def _sync_directory(directory: Path) -> None:
        # The rename is durable only once the directory's entry is on disk.
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


_TABLE: Final = """
CREATE TABLE IF NOT EXISTS {s}.oauth_token (
    name text PRIMARY KEY,
    access_token text NOT NULL,
    refresh_token text NOT NULL,
    expires_in integer,
    expires_at timestamptz,
    saved_at timestamptz NOT NULL DEFAULT now()
)
"""
_SAVE: Final = (
    "INSERT INTO {s}.oauth_token AS token"
    " (name, access_token, refresh_token, expires_in, expires_at)"
    " VALUES ($1, $2, $3, $4, $5)"
    " ON CONFLICT (name) DO UPDATE SET access_token = EXCLUDED.access_token,"
    " refresh_token = EXCLUDED.refresh_token, expires_in = EXCLUDED.expires_in,"
    " expires_at = EXCLUDED.expires_at, saved_at = now()"
)


class PostgresTokenStore:
    """The pair in the `oauth_token` table of a `PostgresLedger`'s schema, as the row `name`
    (one per authorisation), for every replica that reaches the database.

    The table is created on first use beside the ledger's own tables; it is not part of the
    ledger's schema version, so no ledger migration touches it. The lock is an advisory lock
    held by the refresh's transaction: if its holder dies, the database lets it go.
    """

    def __init__(self, ledger: PostgresLedger, name: str = "default") -> None:
        if not isinstance(ledger, PostgresLedger):
            raise InvalidInput("ledger", type(ledger).__name__, "must be a PostgresLedger")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidInput(
                "name", name, "must be 1 to 100 letters, digits or the characters _ . : -"
            )
        self.ledger = ledger
        self.name = name
        self._table_ready = False

    def __repr__(self) -> str:
        return f"PostgresTokenStore(schema={self.ledger.schema!r}, name={self.name!r})"

    @contextlib.asynccontextmanager
    async def exclusively(self) -> AsyncIterator[HeldTokens]:
        ledger = self.ledger
        schema = ledger.schema
        errors = ledger._database_errors
        await ledger._connect()
        connection: asyncpg.pool.PoolConnectionProxy[Any]
        body_failed = False
        try:
            async with ledger._pool_or_raise().acquire() as connection:
                if not self._table_ready:
                    # In a transaction of its own: a refresh that fails rolls back only itself.
                    async with connection.transaction():
                        await connection.execute(
                            "SELECT pg_advisory_xact_lock($1, hashtext($2))", TOKEN_LOCK, schema
                        )
                        await connection.execute(_TABLE.format(s=schema))
                    self._table_ready = True
                async with connection.transaction():
                    await connection.execute(
                        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                        TOKEN_LOCK,
                        f"{schema}.{self.name}",
                    )
                    row = await connection.fetchrow(
                        f"SELECT access_token, refresh_token, expires_in, expires_at"
                        f" FROM {schema}.oauth_token WHERE name = $1",
                        self.name,
                    )
                    held = _Held(
                        None
                        if row is None
                        else TokenPair(
                            row["access_token"],
                            row["refresh_token"],
                            row["expires_in"],
                            row["expires_at"],
                        )
                    )
                    try:
                        yield held
                    except BaseException:
                        body_failed = True  # the refresh's own error, raised as it is
                        raise
                    if held.saved is not None:
                        pair = held.saved
                        await connection.execute(
                            _SAVE.format(s=schema),
                            self.name,
                            pair.access_token,
                            pair.refresh_token,
                            pair.expires_in,
                            pair.expires_at,
                        )
        except errors as error:
            if body_failed:
                raise
            self._table_ready = False
            raise ledger._failure("cannot reach the token store", error) from None
