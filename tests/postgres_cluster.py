"""A throwaway PostgreSQL cluster for the tests: initdb into a temporary directory, served on a
loopback port, stopped (and deleted) at the end. Standard library only, so that `.ci/run` can
start it with the system's Python before the virtual environment exists:

    python3 tests/postgres_cluster.py start DIR   # prints: export PLEO_TEST_POSTGRES_DSN=...
    python3 tests/postgres_cluster.py stop DIR

As root (CI machines), the server runs as the `postgres` user, since PostgreSQL refuses root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

#: For speed: the tests kill workers, never the server, so nothing needs to reach the disk.
SERVER_SETTINGS = (
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    " -c max_connections=300 -c listen_addresses=127.0.0.1"
)


class ClusterUnavailable(RuntimeError):
    """PostgreSQL's server programs are not installed, or the cluster would not start."""


def server_programs() -> Path:
    """The directory holding initdb and pg_ctl."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(os.path.realpath(on_path)).parent
    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(directory, "initdb")):
            return Path(directory)
    raise ClusterUnavailable(
        "PostgreSQL's server is not installed: apt-get install postgresql "
        "(or set PLEO_TEST_POSTGRES_DSN to a database the tests may use)"
    )


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start(directory: Path) -> str:
    """Create and start a cluster in `directory` (made if missing); returns its DSN."""
    programs = server_programs()
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(directory, user.pw_uid, user.pw_gid)
    data = directory / "data"
    run = _runner(directory)
    run([str(programs / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
         "--no-sync"])  # fmt: skip
    port = _free_port()
    run([str(programs / "pg_ctl"), "-D", str(data), "-l", str(directory / "server.log"), "-w",
         "-t", "60", "-o", f"-p {port} -k {directory} {SERVER_SETTINGS}", "start"])  # fmt: skip
    (directory / "port").write_text(str(port))
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def stop(directory: Path) -> None:
    """Stop the cluster in `directory` and delete it."""
    data = directory / "data"
    if (data / "postmaster.pid").exists():
        programs = server_programs()
        _runner(directory)([str(programs / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
    shutil.rmtree(directory, ignore_errors=True)


def _runner(directory: Path) -> Callable[[list[str]], None]:
    def run(command: list[str]) -> None:
        done = subprocess.run(
            _as_server_user(command), capture_output=True, text=True, cwd=directory, check=False
        )
        if done.returncode != 0:
            log = directory / "server.log"
            raise ClusterUnavailable(
                f"{Path(command[0]).name} failed ({done.returncode}): {done.stderr.strip()}"
                + (f"\n{log.read_text()[-2000:]}" if log.exists() else "")
            )

    return run


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print(f"usage: {argv[0]} start|stop DIR", file=sys.stderr)
        return 2
    directory = Path(argv[2])
    if argv[1] == "start":
        print(f"export PLEO_TEST_POSTGRES_DSN={start(directory)}")
    else:
        stop(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
