"""Segmentation with torch (the GPU path): the same ISNet weights and input geometry as the CPU path, batched.

Chosen when CUTOUT_DEVICE=cuda, or automatically when torch sees a GPU (pipeline.device). Like the
onnxruntime Segmenter it runs ISNet at the photo's aspect ratio (long side 1024, the graph freed by
models/free_input_size) and asks again at the square where the photo shape found nothing, so the
GPU and CPU paths cut out the same thing. Photos of one network shape share a forward pass (a
phone's 4:3 photos all run at 1024x768); on CUDA the pass is fp16 and channels-last, cuDNN picks its
fastest kernels per shape, and small batches replay a captured CUDA graph, because at batch 1 the
interpreter's Python per operator would otherwise cost more than the GPU's work.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.free_input_size import GraphNotResizable, graph_with_free_input_size
from models.specs import ModelSpec
from pipeline.segment import EMPTY_MASK_SHARE, VIEW_AGREEMENT, mix_views, photo_shaped_size, view_note, wants_fine_view
from pipeline.torch_path.onnx_graph import OnnxGraphModule

log = logging.getLogger(__name__)

# Batches up to this size replay CUDA graphs (one per batch shape); larger ones keep the GPU busy
# enough that launching eagerly costs nothing measurable. CUTOUT_CUDA_GRAPHS=0 turns graphs off.
GRAPH_MAX_BATCH = 4
# Captured graphs kept (each holds its own activation memory): phone shapes x small batch sizes.
GRAPHS_KEPT = 12


def to_host(tensors: list[torch.Tensor]) -> list[np.ndarray]:
    """Device tensors -> float32 arrays with one transfer (one wait) for all of them."""
    if not tensors:
        return []
    flat = torch.cat([tensor.reshape(-1).float() for tensor in tensors]).cpu().numpy()
    arrays, offset = [], 0
    for tensor in tensors:
        arrays.append(flat[offset:offset + tensor.numel()].reshape(tuple(tensor.shape)))
        offset += tensor.numel()
    return arrays


def graphs_enabled() -> bool:
    return os.environ.get("CUTOUT_CUDA_GRAPHS", "1") != "0"


class TorchSegmenter:
    def __init__(self, spec: ModelSpec, model_path: Path, device: str = "cuda", keep_aspect: bool = True,
                 dtype: torch.dtype | None = None, cuda_graphs: bool | None = None, fine_views: bool = True) -> None:
        if spec.task != "salient":
            raise ValueError(f"model {spec.name} is a {spec.task} model, not a segmentation model")
        self.spec = spec
        self.device = torch.device(device)
        on_cuda = self.device.type == "cuda"
        self.dtype = dtype or (torch.float16 if on_cuda else torch.float32)
        self.input_size = spec.input_size
        self.size_multiple: int | None = None
        source: Path | bytes = model_path
        native_side = spec.input_size[0]
        if keep_aspect and spec.input_size == (native_side, native_side):
            try:
                free = graph_with_free_input_size(model_path, native_side)
                source, self.size_multiple = free.model, free.multiple
            except GraphNotResizable as error:
                log.info("%s runs at its native %d px square: %s", spec.name, native_side, error)
        self.keep_aspect = self.size_multiple is not None
        self.fine_side = spec.fine_side if fine_views and self.keep_aspect else None
        module = OnnxGraphModule(source).eval().to(self.device).to(self.dtype)
        if on_cuda:
            torch.backends.cudnn.benchmark = True  # one algorithm search per shape, then the fastest
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        self.mean = torch.tensor(spec.mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(spec.std, device=self.device).view(1, 3, 1, 1)
        self.use_graphs = on_cuda and (graphs_enabled() if cuda_graphs is None else cuda_graphs)
        self._graphs: OrderedDict[tuple[int, ...], tuple] = OrderedDict()
        self._lock = threading.Lock()

    def asks_twice(self, height: int, width: int) -> bool:
        """Whether a photo of this size is also asked at the finer side (as the CPU Segmenter)."""
        return wants_fine_view(height, width, self.input_size[0], self.fine_side)

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        if not self.keep_aspect:
            return self.input_size
        return photo_shaped_size(height, width, self.input_size[0], self.size_multiple or 1)

    # --- the network --------------------------------------------------------------------------
    def _network_input(self, images: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """(3, h, w) tensors in [0, 1] -> one normalised (n, 3, H, W) batch at `size` (PIL-like antialiased resize)."""
        batch = torch.cat([F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False,
                                         antialias=True) for image in images])
        batch = ((batch - self.mean) / self.std).to(self.dtype)
        if self.device.type == "cuda":
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The network's (n, 1, H, W) output in float32, values in [0, 1]."""
        with self._lock:
            if self.use_graphs and batch.shape[0] <= GRAPH_MAX_BATCH:
                output = self._replay(batch)
            else:
                output = self.module(batch)
            output = output.float()
        if self.spec.name.startswith("u2net"):  # U^2-Net's side output is min-max scaled per image (as rembg)
            low = output.amin(dim=(1, 2, 3), keepdim=True)
            high = output.amax(dim=(1, 2, 3), keepdim=True)
            output = (output - low) / (high - low).clamp_min(1e-6)
        return output.clamp(0, 1)

    def _replay(self, batch: torch.Tensor) -> torch.Tensor:
        key = tuple(batch.shape)
        captured = self._graphs.get(key)
        if captured is None:
            try:
                captured = self._capture(batch)
            except RuntimeError as error:  # a driver or op that cannot be captured: eager from now on
                log.warning("CUDA graph capture failed, running eagerly: %s", error)
                self.use_graphs = False
                return self.module(batch)
            self._graphs[key] = captured
            while len(self._graphs) > GRAPHS_KEPT:
                self._graphs.popitem(last=False)
        self._graphs.move_to_end(key)
        graph, static_input, static_output = captured
        static_input.copy_(batch)
        graph.replay()
        return static_output.clone()

    def _capture(self, batch: torch.Tensor) -> tuple:
        static_input = batch.clone()
        side_stream = torch.cuda.Stream()
        side_stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side_stream):  # warm-up off the capture: cuDNN's search must not be recorded
            for _ in range(2):
                self.module(static_input)
        torch.cuda.current_stream().wait_stream(side_stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_output = self.module(static_input)
        return graph, static_input, static_output

    def warm(self, shapes: tuple[tuple[int, int], ...] | None = None) -> None:
        """Run each network shape once at batch 1, so cuDNN's kernel search and the CUDA graph
        capture (~2 s per new shape on an H200, the first request's p99) happen at start-up.
        Default: a 4:3 phone photo's shapes, both ways round, at each side asked, and the square."""
        if shapes is None:
            shapes = self.phone_shapes(self.input_size[0])
            if self.fine_side:
                shapes = tuple(dict.fromkeys(shapes + self.phone_shapes(self.fine_side)))
        with torch.inference_mode():
            for shape in shapes:
                self._forward(torch.zeros(1, 3, *shape, device=self.device, dtype=self.dtype))

    def phone_shapes(self, side: int) -> tuple[tuple[int, int], ...]:
        """The network shapes a 4:3 phone photo is asked at with long side `side` (both ways round),
        and the square."""
        multiple = self.size_multiple or 1
        return tuple(dict.fromkeys([photo_shaped_size(4, 3, side, multiple), photo_shaped_size(3, 4, side, multiple),
                                    self.input_size]))

    # --- masks ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict_small_tensors(self, images: list[torch.Tensor], fine_views: bool = True,
                              notes: list[list[str]] | None = None) -> list[torch.Tensor]:
        """(3, h, w) tensors in [0, 1] on the device -> (H, W) masks at each photo's network size.

        Photos of one network shape share a forward pass. Where the photo shape found no subject
        the square is asked too, as on the CPU path, and its mask brought back to the photo's shape;
        large photos are also asked at the finer side and the views mixed as on the CPU path
        (`notes[i]` told what the finer view did for photo i).
        """
        masks, may_look_finer = self.first_views(images)
        fine = [index for index, may in enumerate(may_look_finer) if fine_views and may]
        if fine:
            self.mix_fine_views(images, masks, fine, notes)
        return masks

    @torch.inference_mode()
    def first_views(self, images: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[bool]]:
        """-> (each photo's first-view mask, whether the finer side may be asked too), as the CPU
        Segmenter.first_view: photos of one network shape share a forward pass."""
        sizes = [self.network_size(*image.shape[1:]) for image in images]
        masks = self._masks_at(images, sizes)
        # One reading of every mask's subject share: each host read waits for the GPU, and under load
        # each wait also gives the GIL away to the request threads (docs/performance.md).
        shares = torch.stack([(mask > 0.5).float().mean() for mask in masks]).tolist()  # type: ignore[union-attr]
        empty = [index for index, share in enumerate(shares)
                 if sizes[index] != self.input_size and share < EMPTY_MASK_SHARE]
        if empty:
            log.info("%s found no subject in %d photo(s) at their shape, asking at the square", self.spec.name, len(empty))
            output = self._forward(self._network_input([images[index] for index in empty], self.input_size))
            for row, index in enumerate(empty):
                square = F.interpolate(output[row:row + 1], size=sizes[index], mode="bilinear", align_corners=False)
                masks[index] = square[0, 0].clamp(0, 1)
        may_look_finer = [index not in empty and self.asks_twice(*image.shape[1:]) for index, image in enumerate(images)]
        return masks, may_look_finer  # type: ignore[return-value]

    def _masks_at(self, images: list[torch.Tensor], sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
        """Each photo's (H, W) mask at its size in `sizes`, one forward pass per distinct size."""
        masks: list[torch.Tensor | None] = [None] * len(images)
        for size in dict.fromkeys(sizes):
            members = [index for index, other in enumerate(sizes) if other == size]
            output = self._forward(self._network_input([images[index] for index in members], size))
            for row, index in enumerate(members):
                masks[index] = output[row, 0]
        return masks  # type: ignore[return-value]

    def mix_fine_views(self, images: list[torch.Tensor], masks: list[torch.Tensor], chosen: list[int],
                       notes: list[list[str]] | None = None) -> None:
        """The CPU path's view mixing on the device, for the photos `chosen`, in place in `masks`."""
        fine_sizes = [photo_shaped_size(*images[index].shape[1:], self.fine_side, self.size_multiple or 1)
                      for index in chosen]
        views = self._masks_at([images[index] for index in chosen], fine_sizes)
        mixed, agreements = [], []
        for index, view in zip(chosen, views):
            first = masks[index]
            # PIL's bilinear reduction (the CPU path's resize_float) averages like an antialiased resize.
            fine = F.interpolate(view[None, None], size=tuple(first.shape), mode="bilinear", align_corners=False,
                                 antialias=True)[0, 0].clamp(0, 1)
            a, b = first > 0.5, fine > 0.5
            union = (a | b).sum()
            agreements.append(torch.where(union > 0, (a & b).sum() / union.clamp_min(1), 1.0))  # as subject_agreement
            mixed.append(mix_views(first, fine))
        for index, agreement, mix in zip(chosen, torch.stack(agreements).tolist(), mixed):  # one host read
            if agreement >= VIEW_AGREEMENT:
                masks[index] = mix
            if notes is not None:
                notes[index].append(view_note(self.spec.name, self.fine_side, agreement))

    def upload(self, images: list[np.ndarray]) -> list[torch.Tensor]:
        """(h, w, 3) float arrays -> (3, h, w) float32 tensors on the device: on CUDA one pinned
        staging buffer and one copy for the whole batch, not a copy (and a wait) per photo."""
        arrays = [np.ascontiguousarray(image, dtype=np.float32) for image in images]
        if self.device.type != "cuda":
            return [torch.from_numpy(array).permute(2, 0, 1) for array in arrays]
        staging = torch.empty(sum(array.size for array in arrays), dtype=torch.float32, pin_memory=True)
        offset = 0
        for array in arrays:
            staging[offset:offset + array.size].copy_(torch.from_numpy(array).reshape(-1))
            offset += array.size
        flat = staging.to(self.device, non_blocking=True)
        tensors, offset = [], 0
        for array in arrays:
            tensors.append(flat[offset:offset + array.size].view(array.shape).permute(2, 0, 1))
            offset += array.size
        return tensors

    def predict_small_batch(self, images: list[np.ndarray], fine_views: bool = True,
                            notes: list[list[str]] | None = None) -> list[np.ndarray]:
        """(h, w, 3) RGB arrays in [0, 1] -> (H, W) float32 masks at each photo's network size."""
        with torch.inference_mode():
            masks = self.predict_small_tensors(self.upload(images), fine_views, notes)
            return to_host(masks)

    def predict_small(self, image: np.ndarray, flip_average: bool = False, fine_view: bool = True) -> np.ndarray:
        return _one_photo(lambda batch: self.predict_small_batch(batch, fine_view), image, flip_average)

    def predict_batch(self, images: list[np.ndarray], fine_views: bool = True) -> list[np.ndarray]:
        """(h, w, 3) RGB arrays in [0, 1] -> (h, w) float32 masks at each photo's size."""
        out = []
        with torch.inference_mode():
            for image, mask in zip(images, self.predict_small_tensors(self.upload(images), fine_views)):
                full = F.interpolate(mask[None, None], size=image.shape[:2], mode="bilinear", align_corners=False)
                out.append(full[0, 0].clamp(0, 1))
            return to_host(out)

    def predict(self, image: np.ndarray, flip_average: bool = False, fine_view: bool = True) -> np.ndarray:
        return _one_photo(lambda batch: self.predict_batch(batch, fine_view), image, flip_average)


def _one_photo(predict_many, image: np.ndarray, flip_average: bool) -> np.ndarray:
    """One photo's mask from a batch predictor; with flip_average, averaged with its mirror's."""
    if not flip_average:
        return predict_many([image])[0]
    masks = predict_many([image, np.ascontiguousarray(image[:, ::-1])])
    return 0.5 * (masks[0] + masks[1][:, ::-1])
