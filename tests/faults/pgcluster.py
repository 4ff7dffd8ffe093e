"""A throwaway PostgreSQL cluster of the test's own, to restart under running processes.

Set up like scripts/postgres.sh (initdb, trust auth on loopback, owned by the `postgres`
user when we are root, since PostgreSQL refuses to run as root), but in a temporary
directory on a free port, so the shared cluster other test runs use is never touched.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def server_binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayCluster:
    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="careline-faults-pg-"))
        self.data = self.root / "data"
        self.as_owner: list[str] = []
        if os.geteuid() == 0:
            pwd.getpwnam("postgres")  # KeyError: run scripts/postgres.sh once to create it
            shutil.chown(self.root, "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgres://careline@127.0.0.1:{self.port}/careline"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.as_owner, str(self.bin / tool), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
        )

    def _pg_ctl(self, action: str, *args: str) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
            "-o", options, "-w", *args, action,
        )  # fmt: skip

    def create(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "careline", "--auth=trust", "-E", "UTF8")
        self._pg_ctl("start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "careline", "careline")

    def restart(self) -> None:
        """What an operator's `pg_ctl restart -m fast` does: every connection is cut."""
        self._pg_ctl("restart", "-m", "fast")

    def destroy(self) -> None:
        try:
            self._pg_ctl("stop", "-m", "immediate")
        except subprocess.CalledProcessError:
            pass  # never started, or already gone
        shutil.rmtree(self.root, ignore_errors=True)
