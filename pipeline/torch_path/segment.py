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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.specs import ModelSpec
from pipeline.segment import (EMPTY_MASK_SHARE, VIEW_AGREEMENT, input_geometry, mix_views, photo_shaped_size, view_note,
                              wants_fine_view)
from pipeline.torch_path.graphs import GraphedForward, graphs_enabled
from pipeline.torch_path.onnx_graph import OnnxGraphModule

log = logging.getLogger(__name__)

# The largest batch one captured CUDA graph runs (larger batches run in slices of it); batches are
# padded up to the next power of two, so each network shape has at most 7 graphs (1 ... 64).
GRAPH_MAX_BATCH = 64
# Large photos (asked at the finer side too) come a few at a time: warm-up captures those shapes up to this batch.
FINE_WARM_BATCH = 8


def indices_by(keys) -> dict:
    """{key: the places it is at in `keys`}, in the order keys first appear: the batch's photos by size."""
    places: dict = {}
    for index, key in enumerate(keys):
        places.setdefault(key, []).append(index)
    return places


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


def view_agreements(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """pipeline.segment.subject_agreement over the last two dims, on the device (no host read): the IoU
    of the two masks' subjects cut at 0.5, 1 where neither has one."""
    a, b = first > 0.5, second > 0.5
    union = (a | b).sum(dim=(-2, -1))
    return torch.where(union > 0, (a & b).sum(dim=(-2, -1)) / union.clamp_min(1), 1.0)


class DevicePhotos(Sequence):
    """A batch's photos on the device, stacked by size: one (n, 3, h, w) tensor per photo size.

    The pipeline thread works on the stacks (a call per size, not per photo: each torch call gives
    the GIL away under load); `photos[i]` is photo i's (3, h, w) view, taken where it is used."""

    def __init__(self, groups: list[tuple[list[int], torch.Tensor]]) -> None:
        self.groups = groups
        self._where = {index: (stack, row) for indices, stack in groups for row, index in enumerate(indices)}

    @classmethod
    def of(cls, photos: Sequence[torch.Tensor]) -> DevicePhotos:
        """Stacked from separate (3, h, w) tensors (a copy per size)."""
        if isinstance(photos, DevicePhotos):
            return photos
        by_size = indices_by(tuple(photo.shape) for photo in photos)
        return cls([(indices, torch.stack([photos[index] for index in indices])) for indices in by_size.values()])

    def __len__(self) -> int:
        return len(self._where)

    def __getitem__(self, index):  # type: ignore[override]
        if index not in self._where:
            raise IndexError(index)
        stack, row = self._where[index]
        return stack[row]


@dataclass
class SizeGroup:
    """The photos of one size through segmentation, as stacks on the device."""

    indices: list[int]  # the photos' places in the batch
    photos: torch.Tensor  # (n, 3, h, w) in [0, 1]
    network_size: tuple[int, int]
    resized: torch.Tensor  # (n, 3, H, W) the photos at the network grid, float32
    masks: torch.Tensor  # (n, H, W) first-view masks in [0, 1]


class Row:
    """Row `row` of a device stack, as a handle: the view is taken where it is used (a refine
    thread), so the pipeline thread makes no torch call per photo."""

    __slots__ = ("stack", "row")

    def __init__(self, stack: torch.Tensor, row: int) -> None:
        self.stack, self.row = stack, row

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.stack.shape[1:])

    def get(self) -> torch.Tensor:
        return self.stack[self.row]


def resolved(value):
    """A Row's view, anything else as it is."""
    return value.get() if isinstance(value, Row) else value


class Rows:
    """Photo i's row of its size group's stack named `name`: read as a (H, W) view, written in place."""

    def __init__(self, groups: list[SizeGroup], name: str) -> None:
        self.name = name
        self._where = {index: (group, row) for group in groups for row, index in enumerate(group.indices)}

    def __len__(self) -> int:
        return len(self._where)

    def row(self, index: int) -> Row:
        group, row = self._where[index]
        return Row(getattr(group, self.name), row)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.row(index).get()

    def __setitem__(self, index: int, value: torch.Tensor) -> None:
        group, row = self._where[index]
        getattr(group, self.name)[row] = value


class TorchSegmenter:
    def __init__(self, spec: ModelSpec, model_path: Path, device: str = "cuda", keep_aspect: bool = True,
                 dtype: torch.dtype | None = None, cuda_graphs: bool | None = None, fine_views: bool = True,
                 input_side: int | None = None, mirror_views: bool = False) -> None:
        """input_side: long side of the network input, below the native side (as the CPU Segmenter's).
        mirror_views: every view also asked of the mirrored photo, in the same forward pass (as the CPU
        Segmenter's, pipeline.segment.with_mirror)."""
        if spec.task != "salient":
            raise ValueError(f"model {spec.name} is a {spec.task} model, not a segmentation model")
        self.spec = spec
        self.mirror_views = mirror_views
        self.device = torch.device(device)
        on_cuda = self.device.type == "cuda"
        self.dtype = dtype or (torch.float16 if on_cuda else torch.float32)
        geometry = input_geometry(spec, model_path, input_side, keep_aspect, fine_views)
        self.input_size, self.size_multiple = geometry.input_size, geometry.size_multiple
        self.keep_aspect, self.fine_side = geometry.keep_aspect, geometry.fine_side
        module = OnnxGraphModule(geometry.model).eval().to(self.device).to(self.dtype)
        if on_cuda:
            torch.backends.cudnn.benchmark = True  # one algorithm search per shape, then the fastest
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        self.mean = torch.tensor(spec.mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(spec.std, device=self.device).view(1, 3, 1, 1)
        use_graphs = on_cuda and (graphs_enabled() if cuda_graphs is None else cuda_graphs)
        self.network = GraphedForward(self.module, use_graphs, GRAPH_MAX_BATCH)  # also orders the threads asking

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
        return self._normalised(batch)

    def _normalised(self, resized: torch.Tensor) -> torch.Tensor:
        """(n, 3, H, W) photos in [0, 1] at the network grid -> the network's input."""
        batch = ((resized - self.mean) / self.std).to(self.dtype)
        if self.device.type == "cuda":
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The network's (n, 1, H, W) output in float32, values in [0, 1]."""
        output = self.network(batch).float()
        if self.spec.name.startswith("u2net"):  # U^2-Net's side output is min-max scaled per image (as rembg)
            low = output.amin(dim=(1, 2, 3), keepdim=True)
            high = output.amax(dim=(1, 2, 3), keepdim=True)
            output = (output - low) / (high - low).clamp_min(1e-6)
        return output.clamp(0, 1)

    def _views(self, batch: torch.Tensor, mirror: bool = True) -> torch.Tensor:
        """`_forward`, and with mirror_views (unless mirror=False) each photo's mask averaged with its
        mirror's where the two agree on the subject (the CPU path's with_mirror): one forward pass of
        twice the rows, no host read."""
        if not (mirror and self.mirror_views):
            return self._forward(batch)
        count = batch.shape[0]
        both = torch.cat([batch, batch.flip(-1)])
        if self.device.type == "cuda":
            both = both.contiguous(memory_format=torch.channels_last)
        both = self._forward(both)
        view, mirror = both[:count], both[count:].flip(-1)
        agreed = (view_agreements(view, mirror) >= VIEW_AGREEMENT)[..., None, None]  # (n, 1, 1, 1)
        return torch.where(agreed, 0.5 * (view + mirror), view)

    def warm(self, shapes: tuple[tuple[int, int], ...] | None = None, max_batch: int = 1) -> None:
        """Run each network shape once at each batch size up to `max_batch` that a graph is captured for,
        so cuDNN's kernel search and the CUDA graph captures (~2 s per new shape on an H200, the first
        request's p99) happen at start-up. Default shapes: a 4:3 phone photo's, both ways round, and
        the square; and at the finer side (large photos) up to batch FINE_WARM_BATCH."""
        plan = [(shape, max_batch) for shape in (shapes or self.phone_shapes(self.input_size[0]))]
        if shapes is None and self.fine_side:
            plan += [(shape, min(max_batch, FINE_WARM_BATCH)) for shape in self.phone_shapes(self.fine_side)]
        with torch.inference_mode():
            for shape, largest in plan:
                # With mirror views every pass has twice the rows (`_views`).
                for size in self.network.batch_sizes(largest * (2 if self.mirror_views else 1)):
                    self._forward(torch.zeros(size, 3, *shape, device=self.device, dtype=self.dtype))

    def phone_shapes(self, side: int) -> tuple[tuple[int, int], ...]:
        """The network shapes a 4:3 phone photo is asked at with long side `side` (both ways round),
        and the square."""
        multiple = self.size_multiple or 1
        return tuple(dict.fromkeys([photo_shaped_size(4, 3, side, multiple), photo_shaped_size(3, 4, side, multiple),
                                    self.input_size]))

    # --- masks ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict_small_tensors(self, images: Sequence[torch.Tensor], fine_views: bool = True,
                              notes: list[list[str]] | None = None, mirror: bool = True) -> list[torch.Tensor]:
        """(3, h, w) tensors in [0, 1] on the device -> (H, W) masks at each photo's network size.

        Photos of one network shape share a forward pass. Where the photo shape found no subject
        the square is asked too, as on the CPU path, and its mask brought back to the photo's shape;
        large photos are also asked at the finer side and the views mixed as on the CPU path
        (`notes[i]` told what the finer view did for photo i). mirror=False: no mirrored views, even
        with mirror_views on (as the CPU Segmenter's).
        """
        photos = DevicePhotos.of(images)
        groups, may_look_finer = self.first_view_groups(photos, mirror)
        masks = Rows(groups, "masks")
        fine = [index for index, may in enumerate(may_look_finer) if fine_views and may]
        if fine:
            self.mix_fine_views(photos, masks, fine, notes, mirror)
        return [masks[index] for index in range(len(photos))]

    @torch.inference_mode()
    def first_view_groups(self, photos: DevicePhotos, mirror: bool = True) -> tuple[list[SizeGroup], list[bool]]:
        """Each photo's first view, as the CPU Segmenter.first_view, on stacks: -> (the photos' size
        groups with their first-view masks, whether each photo may be asked at the finer side too).
        A few torch calls per photo size and one forward pass per network shape, whatever the number
        of photos."""
        groups = []
        for indices, stack in photos.groups:
            size = self.network_size(*stack.shape[2:])
            resized = F.interpolate(stack.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
            groups.append(SizeGroup(indices, stack, size, resized, masks=None))  # type: ignore[arg-type]
        for places in indices_by(group.network_size for group in groups).values():
            members = [groups[place] for place in places]
            resized = members[0].resized if len(members) == 1 else torch.cat([group.resized for group in members])
            output = self._views(self._normalised(resized), mirror)[:, 0]
            for group, masks in zip(members, output.split([len(group.indices) for group in members])):
                group.masks = masks
        # One reading of every mask's subject share: each host read waits for the GPU, and under load
        # each wait also gives the GIL away to the request threads (docs/performance.md).
        shares = torch.cat([(group.masks > 0.5).float().mean(dim=(1, 2)) for group in groups]).tolist()
        order = [(group, row, index) for group in groups for row, index in enumerate(group.indices)]
        empty = [(group, row, index) for (group, row, index), share in zip(order, shares)
                 if group.network_size != self.input_size and share < EMPTY_MASK_SHARE]
        if empty:
            log.info("%s found no subject in %d photo(s) at their shape, asking at the square", self.spec.name, len(empty))
            output = self._views(self._network_input([group.photos[row] for group, row, _ in empty], self.input_size),
                                 mirror)
            for place, (group, row, _) in enumerate(empty):
                square = F.interpolate(output[place:place + 1], size=group.network_size, mode="bilinear",
                                       align_corners=False)
                group.masks[row] = square[0, 0].clamp(0, 1)
        asked_again = {index for _, _, index in empty}
        may_look_finer = [False] * len(photos)
        for group in groups:
            for index in group.indices:
                may_look_finer[index] = index not in asked_again and self.asks_twice(*group.photos.shape[2:])
        return groups, may_look_finer

    def _masks_at(self, images: list[torch.Tensor], sizes: list[tuple[int, int]],
                  mirror: bool = True) -> list[torch.Tensor]:
        """Each photo's (H, W) mask at its size in `sizes`, one forward pass per distinct size."""
        masks: list[torch.Tensor | None] = [None] * len(images)
        for size, members in indices_by(sizes).items():
            output = self._views(self._network_input([images[index] for index in members], size), mirror)
            for row, index in enumerate(members):
                masks[index] = output[row, 0]
        return masks  # type: ignore[return-value]

    def mix_fine_views(self, images: Sequence[torch.Tensor], masks, chosen: list[int],
                       notes: list[list[str]] | None = None, mirror: bool = True) -> None:
        """The CPU path's view mixing on the device, for the photos `chosen`, in place in `masks`
        (a list of (H, W) tensors, or Rows of the size groups' stacks)."""
        fine_sizes = [photo_shaped_size(*images[index].shape[1:], self.fine_side, self.size_multiple or 1)
                      for index in chosen]
        views = self._masks_at([images[index] for index in chosen], fine_sizes, mirror)
        mixed, agreements = [], []
        for index, view in zip(chosen, views):
            first = masks[index]
            # PIL's bilinear reduction (the CPU path's resize_float) averages like an antialiased resize.
            fine = F.interpolate(view[None, None], size=tuple(first.shape), mode="bilinear", align_corners=False,
                                 antialias=True)[0, 0].clamp(0, 1)
            agreements.append(view_agreements(first, fine))
            mixed.append(mix_views(first, fine))
        for index, agreement, mix in zip(chosen, torch.stack(agreements).tolist(), mixed):  # one host read
            if agreement >= VIEW_AGREEMENT:
                masks[index] = mix
            if notes is not None:
                notes[index].append(view_note(self.spec.name, self.fine_side, agreement))

    def upload(self, images: list[np.ndarray]) -> DevicePhotos:
        """(h, w, 3) float arrays -> the photos on the device, stacked by size as (n, 3, h, w) float32:
        on CUDA one pinned staging buffer and one copy per size, not a copy (and a wait) per photo."""
        groups = []
        for shape, indices in indices_by(tuple(image.shape) for image in images).items():
            if self.device.type == "cuda":
                staging = torch.empty((len(indices), *shape), dtype=torch.float32, pin_memory=True)
                np.stack([images[index] for index in indices], out=staging.numpy())
                stack = staging.to(self.device, non_blocking=True)
            else:
                stack = torch.from_numpy(np.stack([images[index] for index in indices]).astype(np.float32, copy=False))
            groups.append((indices, stack.permute(0, 3, 1, 2)))
        return DevicePhotos(groups)

    def predict_small_batch(self, images: list[np.ndarray], fine_views: bool = True,
                            notes: list[list[str]] | None = None, mirror: bool = True) -> list[np.ndarray]:
        """(h, w, 3) RGB arrays in [0, 1] -> (H, W) float32 masks at each photo's network size."""
        with torch.inference_mode():
            masks = self.predict_small_tensors(self.upload(images), fine_views, notes, mirror)
            return to_host(masks)

    def predict_small(self, image: np.ndarray, fine_view: bool = True, mirror: bool = True) -> np.ndarray:
        return self.predict_small_batch([image], fine_view, mirror=mirror)[0]

    def predict_batch(self, images: list[np.ndarray], fine_views: bool = True, mirror: bool = True) -> list[np.ndarray]:
        """(h, w, 3) RGB arrays in [0, 1] -> (h, w) float32 masks at each photo's size."""
        out = []
        with torch.inference_mode():
            masks = self.predict_small_tensors(self.upload(images), fine_views, mirror=mirror)
            for image, mask in zip(images, masks):
                full = F.interpolate(mask[None, None], size=image.shape[:2], mode="bilinear", align_corners=False)
                out.append(full[0, 0].clamp(0, 1))
            return to_host(out)

    def predict(self, image: np.ndarray, fine_view: bool = True, mirror: bool = True) -> np.ndarray:
        return self.predict_batch([image], fine_view, mirror)[0]

