"""Start the service exactly as the Procfile says, on a free port, for end-to-end tests and benchmarks."""
from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def procfile_command() -> list[str]:
    line = next(l for l in (ROOT / "Procfile").read_text().splitlines() if l.startswith("web:"))
    command = shlex.split(line.split(":", 1)[1])
    if command[0] == "gunicorn":  # the venv's gunicorn, whatever PATH says
        command[0] = str(Path(sys.executable).parent / "gunicorn")
    return command


class GunicornServer:
    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.env = {**os.environ, "HOST": "127.0.0.1", **env, "PORT": str(self.port)}
        self.process: subprocess.Popen | None = None
        # The server's log goes to a file: a pipe nobody reads would block gunicorn once full.
        self.log = tempfile.NamedTemporaryFile(prefix="gunicorn-", suffix=".log", delete=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout: float = 120.0, wait_ready: bool = True) -> "GunicornServer":
        # Its own session: kill() can then end the master and its workers at once, like a crash.
        self.process = subprocess.Popen(procfile_command(), cwd=ROOT, env=self.env, start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + ready_timeout
        path = "/readyz" if wait_ready else "/healthz"
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_tail()}")
            try:
                if requests.get(self.base_url + path, timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("gunicorn did not become ready")

    def log_tail(self, characters: int = 2000) -> str:
        return Path(self.log.name).read_text(errors="replace")[-characters:]

    def kill(self) -> None:
        """kill -9 the master and every worker: a crash, no graceful shutdown of anything."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
