"""Start a Procfile process other than web (worker:, beat:) as a deployment would: through a shell,
in its own session, with its log in a file."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def procfile_line(name: str) -> str:
    line = next(l for l in (ROOT / "Procfile").read_text().splitlines() if l.startswith(f"{name}:"))
    return line.split(":", 1)[1].strip()


class ProcfileProcess:
    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        venv_bin = str(Path(sys.executable).parent)  # the venv's celery, whatever PATH says
        self.env = {**os.environ, **env, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")}
        self.process: subprocess.Popen | None = None
        self.log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)

    def start(self) -> "ProcfileProcess":
        self.process = subprocess.Popen(["bash", "-c", "exec " + procfile_line(self.name)], cwd=ROOT, env=self.env,
                                        start_new_session=True, stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def wait_for_log(self, text: str, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.log_tail(100_000):
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            time.sleep(0.3)
        raise RuntimeError(f"{self.name}: no {text!r} in its log after {timeout} s: {self.log_tail()}")

    def log_tail(self, characters: int = 3000) -> str:
        return Path(self.log.name).read_text(errors="replace")[-characters:]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        try:  # a pool child orphaned by a kill -9 of its parent
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, AttributeError, PermissionError):
            pass
