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
from pipeline.torch_path.onnx_graph import OnnxGraphModule

# Photos per forward pass: RVM's refiner works at the photo's full working grid (16 channels each).
MAX_BATCH = 16


class TorchPersonMatter:
    """RVM (MobileNetV3) on the torch device: one pass from empty recurrent state per batch of photos."""

    def __init__(self, model_path: Path, device: str) -> None:
        self.device = torch.device(device)
        self.module = OnnxGraphModule(model_path, output_name="pha").to(self.device).eval()
        self._lock = threading.Lock()  # one module, whichever thread asks

    def matte(self, photos: torch.Tensor) -> torch.Tensor:
        """(B, h, w) alpha in [0, 1] for (B, 3, h, w) photos in [0, 1] of one shape (the working grid)."""
        height, width = photos.shape[-2:]
        empty = torch.zeros((1, 1, 1, 1), device=self.device)
        ratio = torch.tensor([min(1.0, COARSE_SIDE / max(height, width))], dtype=torch.float32)  # host: a scale
        parts = []
        with self._lock, torch.inference_mode():
            for start in range(0, photos.shape[0], MAX_BATCH):
                alpha = self.module(photos[start:start + MAX_BATCH].float(), r1i=empty, r2i=empty, r3i=empty,
                                    r4i=empty, downsample_ratio=ratio)
                parts.append(alpha[:, 0].clamp(0.0, 1.0))
        return torch.cat(parts)

    def warm(self, shapes: tuple[tuple[int, int], ...]) -> None:
        """Run each working-grid shape once, so cuDNN's kernel search happens at start-up, not in the
        first request of that shape (on an H100 the first 1 MP photos of a run took 3.8-3.9 s)."""
        for shape in shapes:
            self.matte(torch.zeros((1, 3, *shape), device=self.device))


def subject_agreements(masks: list[torch.Tensor], mattes: list[torch.Tensor]) -> list[float]:
    """pipeline.segment.subject_agreement for each pair, read back from the device at once."""
    if not masks:
        return []
    counts = []
    for mask, matte in zip(masks, mattes):
        first, second = mask > 0.5, matte > 0.5
        counts.append(torch.stack([(first & second).sum(), (first | second).sum()]))
    both, union = torch.stack(counts).double().cpu().unbind(1)
    return [float(b / u) if u else 1.0 for b, u in zip(both.tolist(), union.tolist())]
