"""The pipeline thread: one per process, owns the models, fed by a bounded queue.

Work arrives as callables (a composite, a campaign preview) or as batchable items (cutouts):
consecutive items with the same batch key are taken together, up to `max_batch`, and run in one
call, so a GPU does one forward pass for several images. A lone item never waits: the worker
only waits up to `max_wait_s` for more when others were already queued. A batch may answer with
futures (work it handed to other threads, e.g. the GPU path's refinements): the worker then takes
the next batch at once and answers the tasks as those finish, with at most `overlap` batches still
finishing behind the one it works on. A full queue raises QueueFull at once so callers can tell the
user to retry. Verbs follow rq: work -> dequeue_job -> perform_job -> handle_job_success /
handle_job_failure; `work(burst=True)` drains and returns.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The pipeline queue is at capacity."""


@dataclass
class Task:
    function: Callable[[], Any] | None
    label: str
    batch_key: str | None = None
    item: Any = None
    run_batch: Callable[[list[Any]], list[Any]] | None = None
    future: Future = field(default_factory=Future)
    enqueued_at: float = field(default_factory=time.monotonic)


@dataclass
class WorkerStats:
    succeeded: int = 0
    failed: int = 0
    batches: int = 0
    batched_items: int = 0
    busy_s: float = 0.0
    last_wait_s: float = 0.0


def result_or_cancel(future: Future, timeout_s: float) -> Any:
    """The future's result; on timeout it is cancelled (still queued: the pipeline skips it instead
    of working for nobody) and the timeout raised."""
    try:
        return future.result(timeout=timeout_s)
    except FutureTimeout:
        future.cancel()
        raise


class PipelineWorker:
    def __init__(self, queue_size: int = 32, name: str = "pipeline", max_batch: int = 1,
                 max_wait_s: float = 0.0, overlap: int = 1) -> None:
        self.capacity = queue_size
        self.name = name
        self.max_batch = max(1, max_batch)
        self.max_wait_s = max_wait_s
        self.overlap = max(0, overlap)
        self._finishing = 0  # batches whose results are still being finished by other threads
        self.stats = WorkerStats()
        self._stats_lock = threading.Lock()
        self._tasks: deque[Task | None] = deque()
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self._in_flight = 0

    # --- producer side ----------------------------------------------------------------------
    def submit(self, function: Callable[[], Any], label: str = "task") -> Future:
        return self._put(Task(function, label))

    def submit_batchable(self, batch_key: str, item: Any, run_batch: Callable[[list[Any]], list[Any]],
                         label: str = "batch item") -> Future:
        """Queue `item`; `run_batch(items) -> results` runs once for a group of same-key items."""
        return self._put(Task(None, label, batch_key, item, run_batch))

    def _put(self, task: Task) -> Future:
        with self._condition:
            if len(self._tasks) >= self.capacity:
                raise QueueFull(f"{self.name} queue is full ({self.capacity} waiting)")
            self._tasks.append(task)
            self._condition.notify_all()
        return task.future

    @property
    def depth(self) -> int:
        """Tasks waiting plus the ones being worked on."""
        return len(self._tasks) + self._in_flight

    def position(self, future: Future) -> int | None:
        """How many tasks are ahead of `future`'s (queued before it, plus those being worked on).

        None once it has left the queue (running or done) or was never queued here.
        """
        with self._condition:
            for index, task in enumerate(self._tasks):
                if task is not None and task.future is future:
                    return index + self._in_flight
        return None

    @property
    def saturated(self) -> bool:
        return len(self._tasks) >= self.capacity

    # --- the thread ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self.work, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread and self._thread.is_alive():
            with self._condition:
                self._tasks.appendleft(None)
                self._condition.notify_all()
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    def call(self, function: Callable[[], Any], label: str, timeout_s: float) -> Any:
        """`function()` on the pipeline thread, waited for; run in place when already on it (a
        task asking for more model work must not queue behind itself) or when no thread runs."""
        if threading.current_thread() is self._thread or not self.alive:
            return function()
        return result_or_cancel(self.submit(function, label), timeout_s)

    def work(self, burst: bool = False) -> int:
        """Process tasks until stopped (or, in burst mode, until the queue is empty and every batch
        handed off has finished)."""
        done = 0
        while True:
            self._wait_for_finishing(self.overlap)
            tasks = self.dequeue_job(block=not burst)
            if not tasks:
                if burst:
                    self._wait_for_finishing(0)
                return done
            self.perform_job(tasks)
            done += len(tasks)

    def _wait_for_finishing(self, at_most: int) -> None:
        """Until at most `at_most` batches are still finishing on other threads."""
        with self._condition:
            while self._finishing > at_most:
                self._condition.wait()

    def dequeue_job(self, block: bool) -> list[Task]:
        """The next task, plus queued tasks of the same batch key (up to max_batch)."""
        with self._condition:
            while not self._tasks:
                if not block:
                    return []
                self._condition.wait()
            first = self._tasks.popleft()
            if first is None:
                return []
            tasks = [first]
            if first.batch_key is not None and self.max_batch > 1:
                deadline = time.monotonic() + self.max_wait_s
                waited = False
                while len(tasks) < self.max_batch:
                    same = [t for t in self._tasks if t is not None and t.batch_key == first.batch_key]
                    for task in same[: self.max_batch - len(tasks)]:
                        self._tasks.remove(task)
                        tasks.append(task)
                    remaining = deadline - time.monotonic()
                    # Wait for stragglers only under load (others were queued); a lone item goes now.
                    if len(tasks) >= self.max_batch or len(tasks) == 1 or remaining <= 0 or waited:
                        break
                    self._condition.wait(remaining)
                    waited = True
            self._in_flight += len(tasks)
            return tasks

    def perform_job(self, tasks: list[Task]) -> None:
        started = time.monotonic()
        self.stats.last_wait_s = started - tasks[0].enqueued_at
        live = [task for task in tasks if task.future.set_running_or_notify_cancel()]
        handed_off = 0
        try:
            if not live:
                return
            if live[0].batch_key is None:
                self._run_single(live[0])
            else:
                handed_off = self._run_batch(live)
        finally:
            self.stats.busy_s += time.monotonic() - started
            with self._condition:
                self._in_flight -= len(tasks) - handed_off

    def _run_single(self, task: Task) -> None:
        try:
            value = task.function()
        except BaseException as error:  # the thread must survive any one task
            self.handle_job_failure(task, error)
        else:
            self.handle_job_success(task, value)

    def _run_batch(self, tasks: list[Task]) -> int:
        """-> how many of the tasks were handed off (answered by futures still running)."""
        self.stats.batches += 1
        self.stats.batched_items += len(tasks)
        try:
            results = tasks[0].run_batch([task.item for task in tasks])
            if len(results) != len(tasks):
                raise RuntimeError(f"batch returned {len(results)} results for {len(tasks)} items")
        except BaseException as error:
            for task in tasks:
                self.handle_job_failure(task, error)
            return 0
        later = [(task, value) for task, value in zip(tasks, results) if isinstance(value, Future)]
        for task, value in zip(tasks, results):
            if isinstance(value, BaseException):
                self.handle_job_failure(task, value)
            elif not isinstance(value, Future):
                self.handle_job_success(task, value)
        if later:
            self._finish_later(later)
        return len(later)

    def _finish_later(self, later: list[tuple[Task, Future]]) -> None:
        """Each task answered when its future is; the batch counts as finishing until the last is."""
        unfinished = len(later)
        with self._condition:
            self._finishing += 1

        def finished(task: Task, future: Future) -> None:
            nonlocal unfinished
            try:
                error = future.exception()
            except BaseException as cancelled:  # cancelled: the pool shut down under it
                error = cancelled
            if error is None:
                self.handle_job_success(task, future.result())
            else:
                self.handle_job_failure(task, error)
            with self._condition:
                unfinished -= 1
                self._in_flight -= 1
                if unfinished == 0:
                    self._finishing -= 1
                self._condition.notify_all()

        for task, future in later:
            future.add_done_callback(lambda done, task=task: finished(task, done))

    def handle_job_success(self, task: Task, value: Any) -> None:
        with self._stats_lock:  # refine threads answer handed-off tasks side by side
            self.stats.succeeded += 1
        task.future.set_result(value)

    def handle_job_failure(self, task: Task, error: BaseException) -> None:
        with self._stats_lock:
            self.stats.failed += 1
        log.error("pipeline task %s failed: %s", task.label, error, exc_info=error)
        task.future.set_exception(error)
