"""Thread pools each process makes for itself.

A ThreadPoolExecutor inherited through fork (gunicorn's workers are forked from the master) has no
threads behind it in the child: work submitted there waits forever. A ProcessThreads hands out a
pool made in the calling process.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor


class ProcessThreads:
    """A lazily made ThreadPoolExecutor, remade in a process that did not make it (after fork)."""

    def __init__(self, workers: int, name: str) -> None:
        self.workers, self.name = workers, name
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def get(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=self.name)
                self._pid = os.getpid()
            return self._pool
