"""Salient-object segmentation: RGB image -> soft foreground mask at full resolution."""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from models.input_side import GraphNotResizable, graph_at_input_side
from models.specs import ModelSpec

log = logging.getLogger(__name__)


def resize_float(array: np.ndarray, width: int, height: int, resample=Image.BILINEAR) -> np.ndarray:
    """Resize a float (h, w) or (h, w, c) array with PIL, channel by channel, keeping float precision."""
    if array.ndim == 2:
        return np.asarray(Image.fromarray(array.astype(np.float32), "F").resize((width, height), resample))
    return np.stack([resize_float(array[:, :, c], width, height, resample) for c in range(array.shape[2])], axis=2)


def default_thread_count() -> int:
    configured = os.environ.get("CUTOUT_THREADS")
    return int(configured) if configured else max(1, os.cpu_count() or 1)


class Segmenter:
    """One onnxruntime session for one salient-object model, reused for every image.

    ISNet was trained on images stretched to 1024x1024, so we stretch the same way and resize the
    mask back to the original aspect ratio; with `flip_average` the mirrored image is predicted
    too and the two masks are averaged (a cheap test-time augmentation that steadies edges).
    """

    def __init__(self, spec: ModelSpec, model_path: Path, threads: int | None = None,
                 input_side: int | None = None) -> None:
        """input_side: run a square fixed-size model rewritten for this smaller side (larger: native)."""
        import onnxruntime as ort  # imported here so the CLI's --help stays fast

        if spec.task != "salient":
            raise ValueError(f"model {spec.name} is a {spec.task} model, not a segmentation model")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_thread_count()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.spec = spec
        self.input_size = spec.input_size
        model: str | bytes = str(model_path)
        native_side = spec.input_size[0]
        if input_side and input_side < native_side and spec.input_size == (native_side, native_side):
            try:
                model = graph_at_input_side(model_path, native_side, input_side)
                self.input_size = (input_side, input_side)
            except GraphNotResizable as error:
                log.warning("%s runs at its native %d px: %s", spec.name, native_side, error)
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self._lock = threading.Lock()  # one run at a time: the session already uses every core

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """(h, w, 3) RGB in [0, 1] -> (1, 3, H, W) float32 network input."""
        net_h, net_w = self.input_size
        resized = resize_float(image, net_w, net_h)
        normalised = (resized - np.float32(self.spec.mean)) / np.float32(self.spec.std)
        return np.ascontiguousarray(normalised.transpose(2, 0, 1)[None], dtype=np.float32)

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """(n, 3, H, W) network input -> (n, H, W) masks in [0, 1] at network resolution."""
        with self._lock:
            output = self.session.run([self.output_name], {self.input_name: batch})[0][:, 0]
        if self.spec.name.startswith("u2net"):
            # U^2-Net's side output is not calibrated: rembg min-max scales it per image.
            low = output.min(axis=(1, 2), keepdims=True)
            high = output.max(axis=(1, 2), keepdims=True)
            output = (output - low) / np.maximum(high - low, 1e-6)
        return np.clip(output, 0.0, 1.0).astype(np.float32)

    def predict(self, image: np.ndarray, flip_average: bool = False) -> np.ndarray:
        """(h, w, 3) RGB in [0, 1] -> (h, w) soft mask in [0, 1]."""
        height, width = image.shape[:2]
        net_input = self.preprocess(image)
        if flip_average:
            both = np.concatenate([net_input, net_input[:, :, :, ::-1]], axis=0)
            masks = self.run_batch(np.ascontiguousarray(both))
            mask = 0.5 * (masks[0] + masks[1][:, ::-1])
        else:
            mask = self.run_batch(net_input)[0]
        return np.clip(resize_float(mask, width, height), 0.0, 1.0)
