"""Run-now stand-ins for the IO lane and the pipeline thread, for Celery worker processes.

A worker process runs one job at a time on the task's own thread: every step a Conversation
would hand to its thread pool or pipeline thread runs at once, in order, and the job has reached
its end (finished, failed) when the task returns. Same verbs as the real ones, so the
Conversation's code is unchanged.
"""
from __future__ import annotations

import logging
from concurrent.futures import Executor, Future
from typing import Any, Callable

log = logging.getLogger(__name__)


def _completed(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
    future: Future = Future()
    future.set_running_or_notify_cancel()
    try:
        future.set_result(function(*args, **kwargs))
    except BaseException as error:  # a future carries the failure, as a pool's would
        future.set_exception(error)
    return future


class InlineExecutor(Executor):
    def submit(self, fn, /, *args, **kwargs) -> Future:  # type: ignore[override]
        future = _completed(fn, *args, **kwargs)
        if future.exception() is not None:  # nobody waits on these futures: say what failed
            log.error("step %s failed", getattr(fn, "__name__", fn), exc_info=future.exception())
        return future


class InlinePipeline:
    """PipelineWorker's producer side, run on the caller's thread (one job per process at a time)."""

    capacity = 1
    depth = 0
    saturated = False
    alive = True

    def submit(self, function: Callable[[], Any], label: str = "task") -> Future:
        return _completed(function)

    def submit_batchable(self, batch_key: str, item: Any, run_batch: Callable[[list[Any]], list[Any]],
                         label: str = "batch item") -> Future:
        def run_one() -> Any:
            value = run_batch([item])[0]
            if isinstance(value, Future):  # finished on another thread (Pipeline.start_cutout_batch)
                value = value.result()
            if isinstance(value, BaseException):
                raise value
            return value

        return _completed(run_one)
