"""A network's forward pass replayed from captured CUDA graphs at every batch size.

Under load the pipeline thread shares its process's GIL with the request threads, and every torch
call gives the GIL away and waits to take it back (docs/performance.md: 2-6 ms a call beside 32
busy threads). Run eagerly, ISNet's interpreter makes ~600 such calls per forward pass and RVM's
~300; replayed from a captured graph a pass is three (copy in, replay, copy out), whatever its
batch. A batch is padded up to the next captured size (1, 2, 4, ... `max_batch`), so a handful of
graphs per network shape serve every batch; they share one memory pool (they never run at once: a
lock orders them, and each output is copied out before the next replay), so the activation memory
is the largest graph's, not their sum. Where graphs are off (the CPU, CUTOUT_CUDA_GRAPHS=0) or a
capture fails, the pass runs eagerly.
"""
from __future__ import annotations

import functools
import logging
import os
import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Callable

import torch

log = logging.getLogger(__name__)

# One capture at a time in the process: captures are rare (a new shape), and the refine threads' and
# the pipeline thread's captures then need not share the allocator's capture bookkeeping.
_CAPTURING = threading.Lock()


class QuietGate:
    """Device work and captures kept apart: on an H100 a capture made while refine threads worked
    eagerly beside it was invalidated (docs/performance.md, session 16). Refinements hold `working()`,
    many at once; a capture holds `quiet()`, alone: it waits for the work in progress to end, and work
    asked for meanwhile waits for the capture (a capture is rare: a new photo shape). A thread waiting
    for quiet must hold nothing a refinement waits for (GraphedForward's lock is safe: the networks
    asked from refinements, the second opinion's, are not captured)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._working = 0
        self._quiet_asked = 0
        self._quiet = False
        self._this_thread = threading.local()

    @contextmanager
    def working(self):
        with self._changed:
            while self._quiet or self._quiet_asked:
                self._changed.wait()
            self._working += 1
        self._this_thread.depth = getattr(self._this_thread, "depth", 0) + 1
        try:
            yield
        finally:
            self._this_thread.depth -= 1
            with self._changed:
                self._working -= 1
                self._changed.notify_all()

    def held_here(self) -> bool:
        """Whether this thread is inside working(): it must not wait for quiet (it would wait for itself)."""
        return getattr(self._this_thread, "depth", 0) > 0

    @contextmanager
    def quiet(self):
        if self.held_here():
            raise RuntimeError("a capture asked for inside device work")
        with self._changed:
            self._quiet_asked += 1
            try:
                while self._working or self._quiet:
                    self._changed.wait()
            finally:
                self._quiet_asked -= 1
            self._quiet = True
        try:
            yield
        finally:
            with self._changed:
                self._quiet = False
                self._changed.notify_all()


# The process's one gate: one GPU a process.
DEVICE_GATE = QuietGate()


class MemoryPool:
    """One CUDA graph memory pool, made when the first graph is captured into it."""

    def __init__(self) -> None:
        self._handle = None

    def handle(self):
        if self._handle is None:
            self._handle = torch.cuda.graph_pool_handle()
        return self._handle


def graphs_enabled() -> bool:
    return os.environ.get("CUTOUT_CUDA_GRAPHS", "1") != "0"


def padded_size(count: int, max_batch: int) -> int:
    """The captured batch size a batch of `count` (<= max_batch) runs at: the next power of two."""
    size = 1
    while size < count:
        size *= 2
    return min(size, max_batch)


class GraphedForward:
    """forward(batch) -> output, eagerly or by replaying a graph captured for the batch's padded shape.

    `forward` must not read device values on the host (it could not be captured) and must answer
    each item of a batch independently of the others (padding rows hold stale inputs)."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], enabled: bool, max_batch: int = 64,
                 kept: int = 48, pool: MemoryPool | None = None) -> None:
        """pool: a MemoryPool shared with other GraphedForwards that never run at the same time."""
        self.forward = forward
        self.enabled = enabled
        self.max_batch = max_batch
        self.kept = kept
        self._captured: OrderedDict[tuple, tuple] = OrderedDict()
        self.pool = pool or MemoryPool()
        self._lock = threading.Lock()
        self._used = None  # an event after the last replay's copies (graphs._Instance.used)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        with self._lock:
            if not self.enabled:
                return self.forward(batch)
            if batch.shape[0] <= self.max_batch:
                return self._replay(batch)
            return torch.cat([self._replay(batch[start:start + self.max_batch])
                              for start in range(0, batch.shape[0], self.max_batch)])

    def batch_sizes(self, largest: int) -> list[int]:
        """The batch sizes warming up to `largest` should run: each captured size up to it, or one
        batch of 1 where graphs are off (cuDNN's search per shape is all there is to warm)."""
        if not self.enabled:
            return [1]
        return sorted({padded_size(count, self.max_batch) for count in range(1, max(1, largest) + 1)})

    @property
    def captured_shapes(self) -> list[tuple]:
        return list(self._captured)

    def _replay(self, batch: torch.Tensor) -> torch.Tensor:
        count = batch.shape[0]
        key = (padded_size(count, self.max_batch), *batch.shape[1:], batch.dtype, _layout(batch))
        captured = self._captured.get(key)
        if captured is None:
            if DEVICE_GATE.held_here():  # asked from inside a refinement: eager now, captured by a later pass
                return self.forward(batch)
            try:
                with DEVICE_GATE.quiet():  # no refinement at work beside the capture
                    captured = self._capture(batch, key[0])
            except RuntimeError as error:  # a driver or an op that cannot be captured: eager from now on
                log.warning("CUDA graph capture failed, running eagerly: %s", error)
                _clear_error()
                self.enabled = False
                self._captured.clear()
                return self.forward(batch)
            self._captured[key] = captured
            while len(self._captured) > self.kept:
                self._captured.popitem(last=False)
        self._captured.move_to_end(key)
        replay, static_input, static_output = captured
        _wait_for(self._used)  # the last replay's copies, launched on another thread's stream
        static_input[:count].copy_(batch)
        replay()
        answer = static_output[:count].clone()
        self._used = _recorded_after((static_input,))
        return answer

    def _capture(self, batch: torch.Tensor, size: int) -> tuple:
        """-> (replay, static input, static output) for batches padded to `size`."""
        static_input = torch.zeros((size, *batch.shape[1:]), dtype=batch.dtype, device=batch.device)
        if _layout(batch) == "channels_last":
            static_input = static_input.contiguous(memory_format=torch.channels_last)
        static_input[:batch.shape[0]].copy_(batch)
        replay, static_output = _warm_and_capture(lambda: self.forward(static_input), self.pool.handle())
        return replay, static_input, static_output


def _layout(batch: torch.Tensor) -> str:
    if batch.dim() == 4 and batch.shape[1] > 1 and batch.is_contiguous(memory_format=torch.channels_last) \
            and not batch.is_contiguous():
        return "channels_last"
    return "contiguous"


def _signature(value) -> tuple | None:
    """What a captured graph's input must match: shape, dtype and layout (None: no tensor)."""
    if value is None:
        return None
    return (tuple(value.shape), value.dtype, _layout(value))


class _Instance:
    """One capture of a step: its replay and static buffers, used by one thread at a time. used: an
    event after its last user's work, on that user's stream (refine threads may each have their own,
    pipeline/torch_path/streams.py): the next user's stream waits for it before writing the buffers."""

    __slots__ = ("replay", "inputs", "outputs", "used")

    def __init__(self, replay: Callable[[], None], inputs: tuple, outputs: tuple) -> None:
        self.replay, self.inputs, self.outputs = replay, inputs, outputs
        self.used = None


def _wait_for(event) -> None:
    """This thread's stream waits for `event` (a previous user's work on another stream), if any."""
    if event is not None:
        torch.cuda.current_stream().wait_event(event)


def _recorded_after(tensors) -> object | None:
    """An event after the work launched so far on this thread's stream, where `tensors` are on a GPU."""
    first = next((tensor for tensor in tensors if tensor is not None), None)
    if first is None or first.device.type != "cuda":
        return None
    event = torch.cuda.Event()
    event.record(torch.cuda.current_stream(first.device))
    return event


class GraphedSteps:
    """step(*tensors) -> tuple of tensors, eagerly or replayed from a graph captured for the inputs'
    shapes: the refinement's ~900 torch calls a photo become a few copies and one replay.

    Captures are made only at a quiet moment (`capture_wanted`, called by the pipeline thread before
    a batch; it waits for the refinements at work to end, DEVICE_GATE): on an H100 a capture made
    while refine threads ran eagerly beside it was invalidated. Until then a shape runs eagerly; it
    is wanted once seen `capture_after` times (a photo size seen once is not worth a capture). The
    refine threads call the steps side by side, so a shape gets several captures (`instances`, fewer for large photos:
    each holds its own memory pool, as two may be between a replay and the reading of their outputs
    at once); a thread finding every capture of its shape busy waits for one. The least recently
    used shapes are dropped beyond `kept`. `step` must not read device values on the host, and a
    None input stays None (it is part of the key)."""

    def __init__(self, enabled: bool, instances: int = 4, pixels_per_instance_budget: int = 16_000_000,
                 capture_after: int = 2, kept: int = 12) -> None:
        self.enabled = enabled
        self.instances = instances
        self.pixels_budget = pixels_per_instance_budget
        self.capture_after = capture_after
        self.kept = kept
        self._free: OrderedDict[tuple, list[_Instance]] = OrderedDict()
        self._made: dict[tuple, int] = {}
        self._seen: dict[tuple, int] = {}
        self._wanted: dict[tuple, tuple[Callable[..., tuple], tuple]] = {}  # key -> (step, inputs to capture with)
        self._changed = threading.Condition()

    def run(self, name: str, step: Callable[..., tuple], inputs: tuple, read: Callable[[tuple], object]):
        """read(step(*inputs)): `read` takes what it keeps (clones, host copies) from the outputs
        while they are this thread's, before another replay may overwrite them."""
        if not self.enabled:
            return read(step(*inputs))
        key = (name, *(_signature(value) for value in inputs))
        instance = self._take(key, step, inputs)
        if instance is None:
            return read(step(*inputs))
        try:
            _wait_for(instance.used)
            for static, value in zip(instance.inputs, inputs):
                if static is not None:
                    static.copy_(value)
            instance.replay()
            return read(instance.outputs)
        finally:
            instance.used = _recorded_after(instance.inputs)
            self._give_back(key, instance)

    def capture_wanted(self) -> int:
        """Capture the shapes wanted since the last call, as many captures each as its limit allows,
        once the device work in progress has ended (DEVICE_GATE). -> captures made."""
        with self._changed:
            if not self._wanted:
                return 0
        with DEVICE_GATE.quiet():
            return self._capture_wanted()

    def _capture_wanted(self) -> int:
        with self._changed:
            wanted, self._wanted = self._wanted, {}
        made = 0
        for key, (step, inputs) in wanted.items():
            with self._changed:
                if not self.enabled:
                    return made
                missing = self._limit(inputs) - self._made.get(key, 0)
            for _ in range(missing):
                try:
                    instance = self._capture(step, inputs)
                except RuntimeError as error:  # an op or driver that cannot be captured: eager from now on
                    log.warning("CUDA graph capture of %s failed, running eagerly: %s", key[0], error)
                    _clear_error()
                    with self._changed:
                        self.enabled = False
                        self._free.clear()
                        self._made.clear()
                        self._changed.notify_all()
                    return made
                made += 1
                with self._changed:
                    self._free.setdefault(key, []).append(instance)
                    self._made[key] = self._made.get(key, 0) + 1
                    self._changed.notify_all()
            with self._changed:
                self._drop_least_used()
        return made

    def captures(self) -> dict[tuple, int]:
        """Captures made per key (for tests and the benchmark)."""
        with self._changed:
            return dict(self._made)

    def _take(self, key: tuple, step: Callable[..., tuple], inputs: tuple) -> _Instance | None:
        """A free capture of `key` (waiting while all are busy), or None: run eagerly."""
        with self._changed:
            if len(self._seen) > 4 * self.kept + 256:  # sizes seen once pile up in a service: forget them
                self._seen = {seen: count for seen, count in self._seen.items() if seen in self._free}
            self._seen[key] = self._seen.get(key, 0) + 1
            while self.enabled and self._made.get(key, 0):
                free = self._free.get(key)
                if free:
                    self._free.move_to_end(key)
                    return free.pop()
                self._changed.wait()
            if self.enabled and self._seen[key] >= self.capture_after and key not in self._wanted:
                # Inputs kept for the capture: a step's static inputs must hold real values for its warm-up.
                self._wanted[key] = (step, tuple(None if value is None else value.clone() for value in inputs))
            return None

    def _give_back(self, key: tuple, instance: _Instance) -> None:
        with self._changed:
            if self.enabled and key in self._free:
                self._free[key].append(instance)
            self._changed.notify_all()

    def _limit(self, inputs: tuple) -> int:
        pixels = max((value.shape[-2] * value.shape[-1] * (value.shape[0] if value.dim() > 2 else 1)
                      for value in inputs if value is not None and value.dim() >= 2), default=1)
        return max(1, min(self.instances, self.pixels_budget // max(1, pixels)))

    def _drop_least_used(self) -> None:
        """Beyond `kept` shapes, the least recently used shape whose captures are all free goes."""
        while len(self._free) > self.kept:
            for key, free in self._free.items():
                if len(free) == self._made.get(key, 0):
                    del self._free[key]
                    self._made.pop(key, None)
                    self._seen.pop(key, None)
                    break
            else:
                return

    def _capture(self, step: Callable[..., tuple], inputs: tuple) -> _Instance:
        static_inputs = tuple(None if value is None else value.clone() for value in inputs)
        replay, static_outputs = _warm_and_capture(lambda: step(*static_inputs))  # a memory pool of its own
        return _Instance(replay, static_inputs, static_outputs)


def _warm_and_capture(run: Callable[[], object], pool=None) -> tuple[Callable[[], None], object]:
    """run() captured as a CUDA graph -> (replay, what run returned: the graph's static outputs).
    Warmed up twice on a side stream first: cuDNN's search must not be recorded."""
    side_stream = _side_stream()
    side_stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side_stream):
        for _ in range(2):
            run()
    torch.cuda.current_stream().wait_stream(side_stream)
    graph = torch.cuda.CUDAGraph()
    # thread_local: another thread's calls meanwhile are not this capture's errors.
    with _CAPTURING, torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
        outputs = run()
    return graph.replay, outputs


@functools.cache
def _side_stream():
    """One stream for the warm-ups before captures, kept: torch.cuda.Stream() hands out a pool of 32
    streams in turn, and a warm-up must never land on the stream a capture is recording."""
    return torch.cuda.Stream()


def _clear_error() -> None:
    """After a failed capture: wait for the device, so the error is not reported to the next launch."""
    if not torch.cuda.is_available():
        return
    try:
        torch.cuda.synchronize()
    except RuntimeError:  # the capture's error, reported once here
        pass
