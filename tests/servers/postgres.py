"""A throwaway PostgreSQL cluster: initdb + pg_ctl in a temporary folder on a free port.

PostgreSQL refuses to run as root, so as root (CI, these machines) the cluster belongs to the
`postgres` account that Debian's package creates, and the commands run through runuser.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from tests.servers.ports import free_port_in_range


def find_binaries() -> Path | None:
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


class PostgresServer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.binaries = find_binaries()
        self.port = 0
        self.as_user: list[str] = []

    def _run(self, *command: str) -> None:
        subprocess.run([*self.as_user, *command], check=True, capture_output=True, timeout=60)

    def start(self) -> "PostgresServer":
        if self.binaries is None:
            raise FileNotFoundError("PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql")
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.folder, "postgres", "postgres")
        data = self.folder / "data"
        self._run(str(self.binaries / "initdb"), "-D", str(data), "-U", "cutout", "--auth=trust",
                  "-E", "UTF8", "--no-sync")
        self.port = free_port_in_range()
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
                   " -c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        self._run(str(self.binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                  str(self.folder / "server.log"), "-w", "-t", "60", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://cutout@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database on this server (one per test keeps tests apart)."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if self.port:
            subprocess.run([*self.as_user, str(self.binaries / "pg_ctl"), "-D", str(self.folder / "data"),
                            "-m", "immediate", "stop"], capture_output=True, timeout=60)
            self.port = 0
