"""The pipeline worker: bounded queue, burst mode, dynamic batching without waiting when idle."""
from __future__ import annotations

import threading
import time

import pytest

from pipeline.worker import PipelineWorker, QueueFull


def test_burst_mode_batches_queued_items_and_keeps_order():
    worker = PipelineWorker(queue_size=10, max_batch=3)
    calls = []

    def run_batch(items):
        calls.append(list(items))
        return [item * 10 for item in items]

    futures = [worker.submit_batchable("cutout", n, run_batch) for n in range(5)]
    plain = worker.submit(lambda: "composite")
    assert worker.work(burst=True) == 6
    assert calls == [[0, 1, 2], [3, 4]]
    assert [f.result() for f in futures] == [0, 10, 20, 30, 40] and plain.result() == "composite"
    assert worker.stats.batches == 2 and worker.stats.batched_items == 5


def test_a_failing_batch_fails_each_item_and_the_thread_survives():
    worker = PipelineWorker(queue_size=4, max_batch=4)
    futures = [worker.submit_batchable("cutout", n, lambda items: 1 / 0) for n in range(2)]
    after = worker.submit(lambda: "still alive")
    worker.work(burst=True)
    assert all(isinstance(f.exception(), ZeroDivisionError) for f in futures)
    assert after.result() == "still alive"


def test_queue_bound():
    worker = PipelineWorker(queue_size=2)
    worker.submit(lambda: None)
    worker.submit(lambda: None)
    with pytest.raises(QueueFull):
        worker.submit(lambda: None)


def test_a_lone_request_does_not_wait_for_a_batch():
    worker = PipelineWorker(queue_size=8, max_batch=16, max_wait_s=2.0)
    worker.start()
    try:
        started = time.monotonic()
        future = worker.submit_batchable("cutout", 1, lambda items: items)
        assert future.result(timeout=5) == 1
        assert time.monotonic() - started < 0.5  # far below the 2 s batching window
    finally:
        worker.stop()


def test_under_load_items_wait_briefly_to_share_a_batch():
    worker = PipelineWorker(queue_size=16, max_batch=8, max_wait_s=0.3)
    gate = threading.Event()
    sizes = []
    worker.submit(lambda: gate.wait(5))  # keeps the thread busy while the queue fills
    futures = [worker.submit_batchable("cutout", n, lambda items: (sizes.append(len(items)), items)[1]) for n in range(3)]
    worker.start()
    try:
        time.sleep(0.05)
        late = worker.submit_batchable("cutout", 99, lambda items: (sizes.append(len(items)), items)[1])
        gate.set()
        assert [f.result(timeout=5) for f in futures] == [0, 1, 2] and late.result(timeout=5) == 99
        assert sizes[0] == 4  # the late item joined the batch already queued
    finally:
        worker.stop()


def test_call_runs_on_the_pipeline_thread_and_in_place_when_already_there():
    worker = PipelineWorker()
    worker.start()
    try:
        assert worker.call(lambda: threading.current_thread().name, "which", 5.0) == worker.name
        # A task that asks for more model work (the refine API's second opinion) must not wait on
        # the queue behind itself: it runs in place.
        nested = worker.submit(lambda: worker.call(lambda: threading.current_thread().name, "inner", 5.0))
        assert nested.result(timeout=5.0) == worker.name
    finally:
        worker.stop()
    stopped = PipelineWorker()  # no thread (tests, burst mode): the caller runs it
    assert stopped.call(lambda: 42, "inline", 1.0) == 42


def test_a_batch_answered_with_futures_lets_the_next_batch_start_and_resolves_as_they_finish():
    """The GPU path hands a batch's refinements to other threads: the worker segments the next batch
    meanwhile, with at most `overlap` batches finishing behind the one it works on."""
    from concurrent.futures import Future

    worker = PipelineWorker(queue_size=10, max_batch=2, overlap=1)
    handed: list[list[Future]] = []
    started: list[list[int]] = []

    def run_batch(items):
        started.append(list(items))
        if items[0] == "fail":
            return [ValueError("bad photo")]
        futures = [Future() for _ in items]
        handed.append(futures)
        return futures

    worker.start()
    try:
        first = [worker.submit_batchable("cutout", n, run_batch) for n in (1, 2)]
        deadline = time.monotonic() + 5
        while len(started) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        second = [worker.submit_batchable("cutout", n, run_batch) for n in (3, 4)]
        third = [worker.submit_batchable("cutout", n, run_batch) for n in (5, 6)]
        while len(started) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert started == [[1, 2], [3, 4]]  # the second began before the first finished; the third waits
        assert worker.depth == 6 and not any(f.done() for f in first + second)
        handed[0][0].set_result("one")
        handed[0][1].set_exception(RuntimeError("refinement failed"))
        assert first[0].result(5) == "one" and isinstance(first[1].exception(5), RuntimeError)
        while len(started) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert started[2] == [5, 6]  # the first batch finished: the third may start
        for future, value in zip(handed[1] + handed[2], "abcd"):
            future.set_result(value)
        assert [f.result(5) for f in second + third] == ["a", "b", "c", "d"]
        failing = worker.submit_batchable("cutout", "fail", run_batch)
        assert isinstance(failing.exception(5), ValueError)  # values and errors still answer at once
        while worker.depth and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.depth == 0 and worker.stats.failed == 2 and worker.stats.succeeded == 5
    finally:
        worker.stop()


def test_burst_mode_returns_only_once_handed_off_batches_have_finished():
    from concurrent.futures import ThreadPoolExecutor

    worker = PipelineWorker(queue_size=10, max_batch=4)
    with ThreadPoolExecutor(2) as pool:
        slow = lambda item: (time.sleep(0.2), item * 2)[1]
        futures = [worker.submit_batchable("cutout", n, lambda items: [pool.submit(slow, i) for i in items])
                   for n in range(3)]
        assert worker.work(burst=True) == 3
        assert all(f.done() for f in futures) and [f.result() for f in futures] == [0, 2, 4]
