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

import logging
import os
import threading
from collections import OrderedDict
from typing import Callable

import torch

log = logging.getLogger(__name__)


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
            try:
                captured = self._capture(batch, key[0])
            except RuntimeError as error:  # a driver or an op that cannot be captured: eager from now on
                log.warning("CUDA graph capture failed, running eagerly: %s", error)
                self.enabled = False
                self._captured.clear()
                return self.forward(batch)
            self._captured[key] = captured
            while len(self._captured) > self.kept:
                self._captured.popitem(last=False)
        self._captured.move_to_end(key)
        replay, static_input, static_output = captured
        static_input[:count].copy_(batch)
        replay()
        return static_output[:count].clone()

    def _capture(self, batch: torch.Tensor, size: int) -> tuple:
        """-> (replay, static input, static output) for batches padded to `size`."""
        static_input = torch.zeros((size, *batch.shape[1:]), dtype=batch.dtype, device=batch.device)
        if _layout(batch) == "channels_last":
            static_input = static_input.contiguous(memory_format=torch.channels_last)
        static_input[:batch.shape[0]].copy_(batch)
        side_stream = torch.cuda.Stream()
        side_stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side_stream):  # warm-up off the capture: cuDNN's search must not be recorded
            for _ in range(2):
                self.forward(static_input)
        torch.cuda.current_stream().wait_stream(side_stream)
        graph = torch.cuda.CUDAGraph()
        # thread_local: a refine thread launching work meanwhile is not an error in this capture.
        with torch.cuda.graph(graph, pool=self.pool.handle(), capture_error_mode="thread_local"):
            static_output = self.forward(static_input)
        return graph.replay, static_input, static_output


def _layout(batch: torch.Tensor) -> str:
    if batch.dim() == 4 and batch.shape[1] > 1 and batch.is_contiguous(memory_format=torch.channels_last) \
            and not batch.is_contiguous():
        return "channels_last"
    return "contiguous"
