"""A bounded lane for request threads that block on slow work (the pipeline).

gunicorn's gthread worker has a fixed number of threads; an API request that waits for its cutout
holds one for seconds. Without a bound, a handful of API clients hold them all and LINE's webhooks
(2 s to answer) and /healthz queue behind them. The lane admits at most `capacity` such waits and
answers the rest at once (503 + Retry-After) instead of letting them queue for a thread.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator


class LaneFull(Exception):
    """Every slot of the lane is taken; the caller should answer 503 with Retry-After."""


class WaitLane:
    def __init__(self, capacity: int, retry_after_s: int = 5) -> None:
        self.capacity = max(1, capacity)
        self.retry_after_s = retry_after_s
        self._slots = threading.BoundedSemaphore(self.capacity)
        self._lock = threading.Lock()
        self.busy = 0

    @contextmanager
    def enter(self) -> Iterator[None]:
        """Hold one slot for the block; raise LaneFull at once (never wait) when none is free."""
        if not self._slots.acquire(blocking=False):
            raise LaneFull(f"all {self.capacity} slots are busy")
        with self._lock:
            self.busy += 1
        try:
            yield
        finally:
            with self._lock:
                self.busy -= 1
            self._slots.release()
