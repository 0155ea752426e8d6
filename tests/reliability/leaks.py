"""What a process holds: its file descriptors, its TCP sockets to a port, and the memory the
library itself has allocated (tracemalloc, counting only allocations made in its own code)."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path
from typing import Final

_LIBRARY: Final = str(Path(__file__).resolve().parents[2] / "pleo_export_async")
_FILTERS: Final = (
    tracemalloc.Filter(True, os.path.join(_LIBRARY, "*")),
    tracemalloc.Filter(False, os.path.join(_LIBRARY, "testing", "*")),
)


def open_fds() -> set[int]:
    """The file descriptors this process has open."""
    return {int(name) for name in os.listdir("/proc/self/fd")}


def _tcp_sockets() -> dict[str, tuple[int, int]]:
    """inode -> (local port, remote port) of every TCP socket of the machine (IPv4 and IPv6)."""
    found: dict[str, tuple[int, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            found[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16))
    return found


def sockets_to(port: int) -> int:
    """How many sockets this process has open to `port` on some host: a client's connections."""
    inodes = []
    for fd in open_fds():
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.append(target[len("socket:[") : -1])
    table = _tcp_sockets()
    return sum(1 for inode in inodes if inode in table and table[inode][1] == port)


def library_bytes() -> int:
    """Bytes currently allocated by the library's own code (not its fake), once tracemalloc runs."""
    snapshot = tracemalloc.take_snapshot().filter_traces(_FILTERS)
    return sum(stat.size for stat in snapshot.statistics("filename"))
