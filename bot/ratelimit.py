"""Per-client sliding-window limits, in memory (a limit need not survive restarts)."""
from __future__ import annotations

import math
import threading
import time
from collections import deque


class SlidingWindowLimiter:
    """At most `limit` events per `window_s` per client."""

    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        self.limit, self.window_s = limit, window_s
        self.calls: dict[str, deque[float]] = {}
        self.lock = threading.Lock()

    def _trim(self, client: str, now: float) -> deque[float]:
        calls = self.calls.get(client, deque())
        while calls and calls[0] <= now - self.window_s:
            calls.popleft()
        if not calls:
            self.calls.pop(client, None)  # forget idle clients: the table stays as small as the live set
        return calls

    def _append(self, client: str, calls: deque[float], now: float) -> None:
        calls.append(now)
        self.calls[client] = calls

    def allow(self, client: str) -> bool:
        """Count one event for `client`; False (not counted) when the window is already full."""
        now = time.monotonic()
        with self.lock:
            calls = self._trim(client, now)
            if len(calls) >= self.limit:
                return False
            self._append(client, calls, now)
            return True

    def record(self, client: str) -> None:
        """Count one event whatever the window holds (e.g. a failed login)."""
        now = time.monotonic()
        with self.lock:
            self._append(client, self._trim(client, now), now)

    def blocked(self, client: str) -> bool:
        with self.lock:
            return len(self._trim(client, time.monotonic())) >= self.limit

    def retry_after(self, client: str) -> int:
        """Whole seconds until `client` may try again (at least 1)."""
        now = time.monotonic()
        with self.lock:
            calls = self._trim(client, now)
            if len(calls) < self.limit:
                return 1
            # The oldest event that must leave the window before one more fits.
            oldest = calls[len(calls) - self.limit]
            return max(1, math.ceil(oldest + self.window_s - now))
