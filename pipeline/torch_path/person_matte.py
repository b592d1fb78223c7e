"""The person matte on the torch device: pipeline.person_matte's twin for a batch of photos.

RVM runs through the ONNX interpreter (pipeline/torch_path/onnx_graph.py) in float32, as onnxruntime
runs it on the host, one forward pass per working-grid shape; the subjects' agreement is counted on
the device and read back once for the whole batch (each host read waits for the GPU).
"""
from __future__ import annotations

import threading
from pathlib import Path

import torch

from pipeline.person_matte import COARSE_SIDE
from pipeline.torch_path.graphs import GraphedForward, MemoryPool, graphs_enabled
from pipeline.torch_path.onnx_graph import OnnxGraphModule

# Photos per forward pass: RVM's refiner works at the photo's full working grid (16 channels each).
MAX_BATCH = 16


class TorchPersonMatter:
    """RVM (MobileNetV3) on the torch device: one pass from empty recurrent state per batch of photos,
    replayed from captured CUDA graphs on a GPU (pipeline/torch_path/graphs.py)."""

    def __init__(self, model_path: Path, device: str, cuda_graphs: bool | None = None) -> None:
        self.device = torch.device(device)
        self.module = OnnxGraphModule(model_path, output_name="pha").to(self.device).eval()
        self._use_graphs = self.device.type == "cuda" and (graphs_enabled() if cuda_graphs is None else cuda_graphs)
        self._passes: dict[tuple[int, int], GraphedForward] = {}  # one per working-grid shape (its ratio)
        self._pool = MemoryPool()  # the shapes' graphs run one at a time (the lock): one pool for all
        self._lock = threading.Lock()  # one module, whichever thread asks

    def _pass_for(self, height: int, width: int) -> GraphedForward:
        """The forward pass at one working-grid shape: its downsample ratio is a constant of the shape."""
        key = (height, width)
        if key not in self._passes:
            empty = torch.zeros((1, 1, 1, 1), device=self.device)
            ratio = torch.tensor([min(1.0, COARSE_SIDE / max(height, width))], dtype=torch.float32)  # host: a scale

            def forward(photos: torch.Tensor) -> torch.Tensor:
                return self.module(photos, r1i=empty, r2i=empty, r3i=empty, r4i=empty, downsample_ratio=ratio)

            self._passes[key] = GraphedForward(forward, self._use_graphs, MAX_BATCH, pool=self._pool)
        return self._passes[key]

    def matte(self, photos: torch.Tensor) -> torch.Tensor:
        """(B, h, w) alpha in [0, 1] for (B, 3, h, w) photos in [0, 1] of one shape (the working grid)."""
        with self._lock, torch.inference_mode():
            network = self._pass_for(*photos.shape[-2:])
            return network(photos.float().contiguous())[:, 0].clamp(0.0, 1.0)

    def warm(self, shapes: tuple[tuple[int, int], ...], max_batch: int = 1) -> None:
        """Run each working-grid shape once at each batch size a graph is captured for (up to
        `max_batch`), so cuDNN's kernel search and the captures happen at start-up, not in the first
        request of that shape (on an H100 the first 1 MP photos of a run took 3.8-3.9 s)."""
        for shape in shapes:
            for size in self._pass_for(*shape).batch_sizes(max_batch):
                self.matte(torch.zeros((size, 3, *shape), device=self.device))


def subject_agreements(masks: list[torch.Tensor], mattes: list[torch.Tensor]) -> list[list[float]]:
    """pipeline.person_matte.person_agreement for stacks: masks[g] and mattes[g] are (n, h, w); -> each
    stack's n agreements (0 where neither has a subject), with one read back from the device for all of them."""
    if not masks:
        return []
    counts = []
    for mask, matte in zip(masks, mattes):
        first, second = mask > 0.5, matte > 0.5
        counts.append(torch.stack([(first & second).sum(dim=(1, 2)), (first | second).sum(dim=(1, 2))], dim=1))
    both, union = torch.cat(counts).double().cpu().unbind(1)
    flat = [float(b / u) if u else 0.0 for b, u in zip(both.tolist(), union.tolist())]
    out, start = [], 0
    for mask in masks:
        out.append(flat[start:start + mask.shape[0]])
        start += mask.shape[0]
    return out
