"""An operating-system lock on a file beside a ledger (the Ledgers layer, docs/architecture.md):
one holder at a time, released by the kernel when the holder closes it or dies, even by SIGKILL.

It locks `<ledger>-lock`, never the SQLite file itself: closing any descriptor of a database
file drops the POSIX locks SQLite holds on it in this process. The holder writes its pid and
host into the lock file, so that the one refused can say who holds it. On Windows the same is
done with `msvcrt.locking`; elsewhere with `fcntl.flock`, which does not reach across NFS.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
from typing import Any, Final

from ._errors import LedgerError

SUFFIX: Final = "-lock"


class FileLock:
    """Held from `acquire()` until `release()`; a second holder, in any process, is refused."""

    def __init__(self, ledger_path: str) -> None:
        self.ledger_path = ledger_path
        self.path = ledger_path + SUFFIX
        self._descriptor: int | None = None

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def acquire(self) -> None:
        """Take the lock, or raise `LedgerError` naming the holder's pid and host."""
        if self._descriptor is not None:
            return
        try:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise LedgerError(f"cannot lock ledger {self.ledger_path}: {error}") from None
        try:
            _lock(descriptor)
        except OSError:
            holder = _read_holder(descriptor)
            os.close(descriptor)
            raise LedgerError(
                f"ledger {self.ledger_path} is open in another process ({holder}): one process "
                "per ledger file, or a second writer could send what the first one recorded; "
                "stop it first, or use PostgresLedger for several processes"
            ) from None
        try:
            _write_holder(descriptor)
        except OSError as error:
            _unlock(descriptor)
            os.close(descriptor)
            raise LedgerError(f"cannot lock ledger {self.ledger_path}: {error}") from None
        self._descriptor = descriptor

    def release(self) -> None:
        """Let the lock go; the lock file stays (removing it would race a new holder)."""
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(descriptor, 0)
            _unlock(descriptor)
        os.close(descriptor)


def _write_holder(descriptor: int) -> None:
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    os.ftruncate(descriptor, 0)
    os.lseek(descriptor, 0, os.SEEK_SET)
    os.write(descriptor, json.dumps(holder).encode())


def _read_holder(descriptor: int) -> str:
    """What the lock file says of its holder ("pid 123 on host h, since ..."), if it says."""
    try:
        os.lseek(descriptor, 0, os.SEEK_SET)
        holder: Any = json.loads(os.read(descriptor, 4096) or b"{}")
    except (OSError, ValueError):
        holder = {}
    if not isinstance(holder, dict) or "pid" not in holder:
        return "its holder did not say which"
    return f"pid {holder.get('pid')} on host {holder.get('host')}, since {holder.get('since')}"


if sys.platform == "win32":  # pragma: no cover - the CI runs on Linux
    import msvcrt

    # A byte far past the holder's details: Windows locks are mandatory, and the one refused
    # must still read who holds it.
    _LOCKED_BYTE = 2**30

    def _lock(descriptor: int) -> None:
        os.lseek(descriptor, _LOCKED_BYTE, os.SEEK_SET)
        msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)

    def _unlock(descriptor: int) -> None:
        os.lseek(descriptor, _LOCKED_BYTE, os.SEEK_SET)
        msvcrt.locking(descriptor, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(descriptor: int) -> None:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(descriptor: int) -> None:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
