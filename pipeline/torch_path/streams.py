"""Each refine thread's device work on a CUDA stream of its own.

On one stream (torch's default for every thread) the GPU runs the work of the pipeline thread and
of all 16 refine threads in the order it was launched, and every host read (`.tolist()`, `.cpu()`)
waits for everything launched before it by any thread: a refinement's small kernels queue behind
the next batch's forward pass, and the pipeline thread's read of its masks waits behind every
refinement's matting steps. With a stream per refine thread, those kernels overlap on the GPU and a
read waits only for its own thread's work.

Ordering across streams is made explicit, the allocator's way (torch.cuda streams semantics):
- the pipeline thread records `handoff()` after a batch's segmentation; a refinement's stream waits
  for that event before it touches the batch's tensors;
- a refinement's stream is synchronised when it ends, before its thread leaves DEVICE_GATE.working()
  (a capture then never overlaps a refinement's kernels) and before the batch's tensors, made on the
  pipeline thread's stream, can be freed and reused by that stream.
Off the GPU (the CPU path, torch on the CPU) both are no-ops. Off with CUTOUT_REFINE_STREAMS=0
(pipeline.cutout.default_refine_streams).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import torch


class RefineStreams:
    """One stream per thread that asks, made on first use. priority: CUDA's stream priority (lower
    is sooner; -1: the refinements' small kernels go ahead of a batch's forward pass when both wait)."""

    def __init__(self, device: torch.device | str, priority: int = -1) -> None:
        self.device = torch.device(device)
        self.priority = priority
        self._mine = threading.local()

    @property
    def active(self) -> bool:
        return self.device.type == "cuda"

    def handoff(self) -> torch.cuda.Event | None:
        """An event after the work launched so far on this thread's stream (the pipeline thread's
        segmentation of a batch): what each of its refinements waits for."""
        if not self.active:
            return None
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        return event

    def stream(self) -> torch.cuda.Stream:
        stream = getattr(self._mine, "stream", None)
        if stream is None:
            stream = torch.cuda.Stream(self.device, priority=self.priority)
            self._mine.stream = stream
        return stream

    @contextmanager
    def own_stream(self, after: torch.cuda.Event | None):
        """The block's device work on this thread's stream, after `after`; finished when it returns."""
        if not self.active:
            yield
            return
        stream = self.stream()
        if after is not None:
            stream.wait_event(after)
        try:
            with torch.cuda.stream(stream):
                yield
        finally:
            stream.synchronize()
