"""Keep a process's job leases alive while it works: one thread per process renews them all.

Celery workers (dispatch.worker_runtime) and the web processes of the embedded default (several
gunicorn workers on one job table: bot.conversation) both work under them.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from storage.jobs import JobStore

log = logging.getLogger(__name__)


def process_owner() -> str:
    """Names this process's boot in the job table (host:pid:boot), so a vanished one can be told apart."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_pid(owner: str) -> int | None:
    """The process id in a process_owner() name (None for names of another shape)."""
    parts = owner.split(":")
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


def owner_is_gone(owner: str) -> bool:
    """True when `owner` is a process of this host that no longer runs: its leases hold nothing.

    Another host's process is never called gone here; its leases run out when it stops renewing.
    """
    host, pid = owner.split(":", 1)[0], owner_pid(owner)
    if host != socket.gethostname() or pid is None or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        pass
    return False


class LeaseKeeper:
    def __init__(self, jobs: JobStore, lease_s: float) -> None:
        self.jobs = jobs
        self.lease_s = lease_s
        self.owner = process_owner()
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def claim(self, job_id: str) -> bool:
        if not self.jobs.claim(job_id, self.owner, self.lease_s):
            return False
        with self._lock:
            self._held.add(job_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._renew_forever, name="leases", daemon=True)
                self._thread.start()
        return True

    def release(self, job_id: str) -> None:
        with self._lock:
            self._held.discard(job_id)
        self.jobs.release(job_id, self.owner)

    def _renew_forever(self) -> None:
        stop = threading.Event()
        while not stop.wait(self.lease_s / 3):  # two renewals may fail before the lease runs out
            with self._lock:
                held = list(self._held)
            for job_id in held:
                try:
                    self.jobs.renew(job_id, self.owner, self.lease_s)
                except Exception:
                    log.exception("could not renew the lease on job %s", job_id)
