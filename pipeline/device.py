"""Which device runs the pipeline: CUTOUT_DEVICE = auto (default) | cpu | cuda | torch-cpu.

cpu: onnxruntime + NumPy/pymatting (what CI tests). cuda: the torch path on the GPU (needs the
[gpu] extra). torch-cpu: the torch path on the CPU, to check it against the onnxruntime path.
auto: cuda when torch is installed and sees a GPU, otherwise cpu.
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)
DEVICES = ("cpu", "cuda", "torch-cpu")


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_device(requested: str | None = None) -> str:
    choice = (requested or os.environ.get("CUTOUT_DEVICE") or "auto").lower()
    if choice == "auto":
        return "cuda" if cuda_available() else "cpu"
    if choice not in DEVICES:
        raise ValueError(f"CUTOUT_DEVICE must be auto, {', '.join(DEVICES)}; got {choice!r}")
    if choice == "cuda" and not cuda_available():
        log.warning("CUTOUT_DEVICE=cuda but no GPU is usable (torch missing or no CUDA): using the CPU path")
        return "cpu"
    return choice
