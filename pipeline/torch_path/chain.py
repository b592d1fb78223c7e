"""The cutout chain after segmentation on the torch device: Pipeline._refine's steps, decisions
and notes, with the torch twins of the stages (pipeline/torch_path/refine.py, matte.py).

The matting gate (the colour model's reliability, the soft-zone trimap) stays in NumPy at working
size, where it is cheap, and is Pipeline._matte_soft_zones itself. Every host read of a device
value waits for the GPU (and, under load, for the GIL: docs/performance.md), so the decisions are
read together, once each, and the outputs come back in two transfers.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from pipeline.outputs.compose import subject_box
from pipeline.person_matte import blend_person_matte
from pipeline.torch_path import refine as on_device
from pipeline.torch_path.matte import estimate_alpha_torch, estimate_foreground_torch
from pipeline.trimap import split_trimap

if TYPE_CHECKING:
    from pipeline.cutout import CutoutOptions, CutoutResult, Pipeline


def _on(device: str, array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def working_views(device: str, image: np.ndarray, mask, photo: torch.Tensor | None, work_h: int, work_w: int,
                  small_image: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(photo (3, h, w), photo at the working grid, mask at the working grid) on the device.
    small_image: the photo at the working grid, where made already (Pipeline.segment's person matte)."""
    if photo is None:
        photo = _on(device, image).permute(2, 0, 1)
    if small_image is None or tuple(small_image.shape[1:]) != (work_h, work_w):
        small_image = photo if tuple(photo.shape[1:]) == (work_h, work_w) else \
            on_device.resize(photo, work_h, work_w, antialias=True).clamp(0, 1)
    small_mask = (mask if isinstance(mask, torch.Tensor) else _on(device, mask)).to(device)
    if tuple(small_mask.shape) != (work_h, work_w):
        small_mask = on_device.resize(small_mask, work_h, work_w, antialias=True).clamp(0, 1)
    return photo, small_image, small_mask


def refine_on_device(pipeline: Pipeline, image: np.ndarray, mask, options: CutoutOptions,
                     timings: dict[str, float], photo: torch.Tensor | None = None,
                     person: np.ndarray | torch.Tensor | None = None,
                     small_image: torch.Tensor | None = None) -> CutoutResult:
    """One photo's cutout from its model mask. mask: (H, W) array or device tensor at the network's
    grid; photo: `image` already on the device as (3, h, w), if the caller has it; person: the person
    matte at the working grid; small_image: the photo at the working grid on the device, where
    made already (both from Pipeline.segment)."""
    from pipeline.cutout import MIN_SOFT_ZONE_SHARE, CutoutResult

    from pipeline.torch_path.segment import resolved

    notes: list[str] = []
    device = pipeline.torch_device
    # Rows of the batch's device stacks (Pipeline.segment) become views here, in the refine thread.
    mask, person, small_image = resolved(mask), resolved(person), resolved(small_image)
    height, width = image.shape[:2]
    work_h, work_w = pipeline.working_size(image.shape, tuple(mask.shape))
    at_full_size = (work_h, work_w) == (height, width)
    with torch.inference_mode():
        photo, small_image, small_mask = working_views(device, image, mask, photo, work_h, work_w, small_image)
        alpha = small_mask
        if person is not None:
            person = person.to(device) if isinstance(person, torch.Tensor) else _on(device, person)
            alpha = blend_person_matte(alpha, person)
        transition, matter = on_device.split_soft_regions(alpha)
        matted = torch.zeros_like(matter)
        matter_share, has_transition = torch.stack([matter.float().mean(), transition.any().float()]).tolist()
        if options.matting and matter_share >= MIN_SOFT_ZONE_SHARE:
            started = time.perf_counter()
            host_alpha, host_matted = pipeline._matte_soft_zones(
                small_image.permute(1, 2, 0).cpu().numpy(), alpha.cpu().numpy(), matter.cpu().numpy(), options, notes)
            alpha, matted = _on(device, host_alpha), _on(device, host_matted)
            timings["matte"] = time.perf_counter() - started

        started = time.perf_counter()
        crisp = on_device.dilate_cross(transition, 1) & ~matter & ~matted
        doubt = matter & ~matted if has_transition else torch.zeros_like(matted)
        if options.full_resolution:
            alpha = on_device.settle_confident_interiors(alpha)
        full_alpha = on_device.to_full_size(photo, small_image, alpha, crisp, doubt, options.full_resolution)
        if photo.is_cuda:
            torch.cuda.synchronize()  # the stage's time is the GPU's, not the launches'
        timings["outline"] = time.perf_counter() - started
        if options.full_resolution:
            notes.append(f"outline refined at {width}x{height} from the {work_w}x{work_h} working grid"
                         if not at_full_size else "outline steepened where the mask steps crisply")

        foreground = image
        if options.foreground:
            started = time.perf_counter()
            small_foreground = estimate_foreground_torch(small_image, alpha)
            foreground = on_device.foreground_at_full_size(photo, small_image, small_foreground, full_alpha)
            foreground = foreground.permute(1, 2, 0).contiguous().cpu().numpy()
            timings["foreground"] = time.perf_counter() - started
        raw = small_mask if at_full_size else on_device.resize(small_mask, height, width).clamp(0, 1)
        full_alpha, raw = torch.stack([full_alpha.float(), raw.float()]).cpu().numpy()  # one transfer
    return CutoutResult(image, raw, full_alpha, foreground, timings, notes)


def matte_on_device(device: str, image: np.ndarray, trimap: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """pipeline.matte.estimate_alpha's job for the torch path: closed-form matting by conjugate
    gradients, solved in the unknown band's bounding box (+2 px, the 3x3 windows' reach) as on
    the CPU: exact for closed-form matting, and the steps touch only that box."""
    is_fg, _, is_unknown = split_trimap(trimap)
    alpha = is_fg.astype(np.float32)
    if not is_unknown.any():
        return alpha
    box = subject_box(is_unknown, margin=2, threshold=0.5)
    solved = estimate_alpha_torch(_on(device, box.apply(image).transpose(2, 0, 1)), _on(device, box.apply(trimap)),
                                  _on(device, box.apply(prior)))
    box.apply(alpha)[...] = solved.cpu().numpy()
    return alpha


def foreground_on_device(device: str, image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blur-fusion foreground colours (h, w, 3) for an (h, w, 3) photo and its (h, w) alpha."""
    foreground = estimate_foreground_torch(_on(device, image.transpose(2, 0, 1)), _on(device, alpha))
    return foreground.cpu().numpy().transpose(1, 2, 0).astype(np.float32)
