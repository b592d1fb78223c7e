"""The pipeline thread: one per process, owns the models, fed by a bounded queue.

Work arrives as callables (a cutout for a chat job, an API request, a composite); each returns a
Future. A full queue raises QueueFull at once so callers can tell the user to retry instead of
letting requests pile up. Verbs follow rq: work -> dequeue_job -> perform_job ->
handle_job_success / handle_job_failure; `work(burst=True)` drains the queue and returns (tests).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The pipeline queue is at capacity."""


@dataclass
class Task:
    function: Callable[[], Any]
    label: str
    future: Future = field(default_factory=Future)
    enqueued_at: float = field(default_factory=time.monotonic)


@dataclass
class WorkerStats:
    succeeded: int = 0
    failed: int = 0
    busy_s: float = 0.0
    last_wait_s: float = 0.0


class PipelineWorker:
    def __init__(self, queue_size: int = 32, name: str = "pipeline") -> None:
        self.queue: queue.Queue[Task | None] = queue.Queue(maxsize=queue_size)
        self.name = name
        self.stats = WorkerStats()
        self._thread: threading.Thread | None = None
        self._in_flight = 0
        self._lock = threading.Lock()

    # --- producer side ----------------------------------------------------------------------
    def submit(self, function: Callable[[], Any], label: str = "task") -> Future:
        task = Task(function, label)
        try:
            self.queue.put_nowait(task)
        except queue.Full:
            raise QueueFull(f"{self.name} queue is full ({self.queue.maxsize} waiting)") from None
        return task.future

    @property
    def depth(self) -> int:
        """Tasks waiting plus the one being worked on."""
        return self.queue.qsize() + self._in_flight

    @property
    def saturated(self) -> bool:
        return self.queue.full()

    # --- the thread ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self.work, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread and self._thread.is_alive():
            self.queue.put(None)
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    def work(self, burst: bool = False) -> int:
        """Process tasks until stopped (or, in burst mode, until the queue is empty)."""
        done = 0
        while True:
            task = self.dequeue_job(block=not burst)
            if task is None:
                return done
            self.perform_job(task)
            done += 1

    def dequeue_job(self, block: bool) -> Task | None:
        try:
            task = self.queue.get(block=block)
        except queue.Empty:
            return None
        if task is not None:
            with self._lock:
                self._in_flight += 1
        return task

    def perform_job(self, task: Task) -> None:
        started = time.monotonic()
        self.stats.last_wait_s = started - task.enqueued_at
        if not task.future.set_running_or_notify_cancel():
            self._finish()
            return
        try:
            value = task.function()
        except BaseException as error:  # the thread must survive any one task
            self.handle_job_failure(task, error)
        else:
            self.handle_job_success(task, value)
        finally:
            self.stats.busy_s += time.monotonic() - started
            self._finish()

    def _finish(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def handle_job_success(self, task: Task, value: Any) -> None:
        self.stats.succeeded += 1
        task.future.set_result(value)

    def handle_job_failure(self, task: Task, error: BaseException) -> None:
        self.stats.failed += 1
        log.exception("pipeline task %s failed", task.label, exc_info=error)
        task.future.set_exception(error)
