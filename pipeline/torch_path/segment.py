"""Segmentation with torch (the GPU path): the same ISNet weights, batched, fp16 + channels-last on CUDA.

Chosen when CUTOUT_DEVICE=cuda, or automatically when torch sees a GPU (pipeline.device).
On a CPU it runs in fp32 and matches the onnxruntime path at the square input (tests check the
difference). Unlike the onnxruntime path it keeps ISNet's stretched 1024^2 square for every photo:
one shape per batch is what makes batches of 64 fast on a GPU.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.specs import ModelSpec
from pipeline.torch_path.onnx_graph import OnnxGraphModule


class TorchSegmenter:
    def __init__(self, spec: ModelSpec, model_path: Path, device: str = "cuda") -> None:
        if spec.task != "salient":
            raise ValueError(f"model {spec.name} is a {spec.task} model, not a segmentation model")
        self.spec = spec
        self.device = torch.device(device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        module = OnnxGraphModule(model_path).eval().to(self.device).to(self.dtype)
        if self.device.type == "cuda":
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        self.mean = torch.tensor(spec.mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(spec.std, device=self.device).view(1, 3, 1, 1)
        self._lock = threading.Lock()

    @torch.inference_mode()
    def predict_tensors(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        """(3, h, w) float tensors in [0, 1] on the device -> (h, w) masks, one forward pass for all."""
        net_h, net_w = self.spec.input_size
        batch = torch.cat([F.interpolate(image[None].float(), size=(net_h, net_w), mode="bilinear",
                                         align_corners=False, antialias=True) for image in images])
        batch = ((batch - self.mean) / self.std).to(self.dtype)
        if self.device.type == "cuda":
            batch = batch.contiguous(memory_format=torch.channels_last)
        with self._lock:
            output = self.module(batch).float()
        if self.spec.name.startswith("u2net"):
            low = output.amin(dim=(1, 2, 3), keepdim=True)
            high = output.amax(dim=(1, 2, 3), keepdim=True)
            output = (output - low) / (high - low).clamp_min(1e-6)
        masks = []
        for index, image in enumerate(images):
            mask = F.interpolate(output[index:index + 1], size=image.shape[1:], mode="bilinear", align_corners=False)
            masks.append(mask[0, 0].clamp(0, 1))
        return masks

    def predict_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """(h, w, 3) RGB arrays in [0, 1] -> (h, w) float32 masks."""
        tensors = [torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).to(self.device) for image in images]
        return [mask.cpu().numpy().astype(np.float32) for mask in self.predict_tensors(tensors)]

    def predict(self, image: np.ndarray, flip_average: bool = False) -> np.ndarray:
        if flip_average:
            masks = self.predict_batch([image, np.ascontiguousarray(image[:, ::-1])])
            return 0.5 * (masks[0] + masks[1][:, ::-1])
        return self.predict_batch([image])[0]
