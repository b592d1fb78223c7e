"""The cutout chain after segmentation on the torch device: Pipeline._refine's steps, decisions
and notes, with the torch twins of the stages (pipeline/torch_path/refine.py, matte.py).

The matting gate (the colour model's reliability, the soft-zone trimap) stays in NumPy at working
size, where it is cheap, and is Pipeline._matte_soft_zones itself. Every host read of a device
value waits for the GPU (and, under load, for the GIL: docs/performance.md), so the decisions are
read together, once each, and the outputs come back in two transfers.
"""
from __future__ import annotations

import threading
import time
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import torch

from pipeline.matting.trimap import split_trimap
from pipeline.outputs.compose import subject_box
from pipeline.person_matte import blend_person_matte
from pipeline.torch_path import refine as on_device
from pipeline.torch_path.graphs import GraphedSteps, graphs_enabled
from pipeline.torch_path.matte import estimate_alpha_torch, estimate_foreground_torch

if TYPE_CHECKING:
    from pipeline.cutout import CutoutOptions, CutoutResult, Pipeline
    from pipeline.torch_path.segment import SizeGroup


def _on(device: str, array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def at_working_grid(photos: torch.Tensor, masks: torch.Tensor, work: tuple[int, int],
                    small_images: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 3, h, w) photos and (n, H, W) masks at the working grid `work`, as (n, 3, *work) and
    (n, *work); small_images: the photos there already, where made (Pipeline.segment's person matte)."""
    if small_images is None or tuple(small_images.shape[-2:]) != work:
        small_images = photos if tuple(photos.shape[-2:]) == work else \
            on_device.resize(photos, *work, antialias=True).clamp(0, 1)
    small_masks = masks if tuple(masks.shape[-2:]) == work else \
        on_device.resize(masks, *work, antialias=True).clamp(0, 1)
    return small_images, small_masks


def working_stacks(pipeline: Pipeline, group: SizeGroup) -> tuple[torch.Tensor, torch.Tensor]:
    """A torch size group's photos and first-view masks at its working grid (at_working_grid); where
    that grid is the network's, the photos resized for ISNet are those photos already."""
    work = pipeline.working_size(group.photos.shape[2:], tuple(group.masks.shape[1:]))
    resized = group.resized.clamp(0, 1) if work == group.network_size != tuple(group.photos.shape[2:]) else None
    return at_working_grid(group.photos, group.masks, work, resized)


def refine_on_device(pipeline: Pipeline, image: np.ndarray, mask, options: CutoutOptions,
                     timings: dict[str, float], photo: torch.Tensor | None = None,
                     person: np.ndarray | torch.Tensor | None = None,
                     small_image: torch.Tensor | None = None, asked=None) -> CutoutResult:
    """One photo's cutout from its model mask: refine_stack_on_device on a stack of one. mask: (H, W)
    array or device tensor at the network's grid; photo: `image` already on the device as (3, h, w), if
    the caller has it; person: the person matte at the working grid; small_image: the photo at the
    working grid on the device, where made already (both from Pipeline.segment); asked: the second
    opinion asked ahead (torch_path.second_opinion.Asked), None where the refinement asks it itself.
    `timings` gets the stages' seconds and is the result's."""
    from pipeline.torch_path.segment import resolved

    device = pipeline.torch_device
    # Rows of the batch's device stacks (Pipeline.segment) become views here, in the refine thread.
    mask, person, small_image = resolved(mask), resolved(person), resolved(small_image)
    with torch.inference_mode():
        if photo is None:
            photo = _on(device, image).permute(2, 0, 1)
        mask = (mask if isinstance(mask, torch.Tensor) else _on(device, mask)).to(device)
        if person is not None:
            person = person.to(device) if isinstance(person, torch.Tensor) else _on(device, person)
    result = refine_stack_on_device(pipeline, [image], photo[None], mask[None], options,
                                    None if small_image is None else small_image[None],
                                    None if person is None else person[None], [person is not None],
                                    asked=None if asked is None else [asked])[0]
    timings.update(result.timings)
    result.timings = timings
    return result


# Photo pixels refined in one pass of refine_stack_on_device: its full-size intermediates for 8 photos
# of 12 MP (~100 M pixels) take ~10 GB of GPU memory; a larger stack is refined in slices.
PIXELS_PER_PASS = 100_000_000


def refine_stack_on_device(pipeline: Pipeline, images: list[np.ndarray], photos: torch.Tensor, masks: torch.Tensor,
                           options: CutoutOptions, small_images: torch.Tensor | None = None,
                           persons: torch.Tensor | None = None, heard: list[bool] | None = None,
                           pool=None, asked: list | None = None) -> list[CutoutResult]:
    """The refinement (Pipeline._refine's steps) for a stack of photos of one size, every step on the
    whole stack: under load
    each torch call gives the GIL away (docs/performance.md), and one photo's refinement is ~900 of
    them. images: the (h, w, 3) photos; photos: the same on the device, (n, 3, h, w); masks: (n, H, W)
    model masks; small_images: the photos at the working grid, where made already; persons: (n, h', w')
    person mattes at the working grid, listened to where heard[i]. Photos with soft zones to matte are
    matted one by one (the NumPy gate, Pipeline._matte_soft_zones), side by side in `pool`. asked: each
    photo's second opinion asked ahead on the pipeline thread (torch_path.second_opinion.Asked); None:
    asked here, where a photo's decisions call for it."""
    rows = max(1, PIXELS_PER_PASS // (images[0].shape[0] * images[0].shape[1]))
    results: list[CutoutResult] = []
    for start in range(0, len(images), rows):
        part = slice(start, start + rows)
        results += _refine_stack(pipeline, images[part], photos[part], masks[part], options,
                                 None if small_images is None else small_images[part],
                                 None if persons is None else persons[part],
                                 [False] * len(images[part]) if heard is None else heard[part], pool,
                                 None if asked is None else asked[part])
    return results


def _refine_stack(pipeline: Pipeline, images: list[np.ndarray], photos: torch.Tensor, masks: torch.Tensor,
                  options: CutoutOptions, small_images: torch.Tensor | None, persons: torch.Tensor | None,
                  heard: list[bool], pool, asked: list | None = None) -> list[CutoutResult]:
    from pipeline.cutout import MIN_SOFT_ZONE_SHARE, CutoutResult

    count = len(images)
    notes: list[list[str]] = [[] for _ in images]
    timings: list[dict[str, float]] = [{} for _ in images]
    height, width = images[0].shape[:2]
    work = pipeline.working_size(images[0].shape, tuple(masks.shape[1:]))
    at_full_size = work == (height, width)
    steps = refinement_steps(photos.device)
    with torch.inference_mode():
        listened = None
        if persons is not None and any(heard):
            listened = torch.tensor(heard, device=photos.device)[:, None, None]
        else:
            persons = None
        # The photo is needed here only where the caller has no working-grid copy of it.
        needs_photos = small_images is None or tuple(small_images.shape[-2:]) != work
        small_images, small_masks, alpha, transition, matter, decisions = steps.run(
            f"decide at {work}", partial(_decide, work),
            (photos if needs_photos else None, masks, small_images, persons, listened),
            read=lambda outputs: (*(output.clone() for output in outputs[:-1]), outputs[-1].tolist()))
        # The person matte, where heard, is a portrait's second opinion already. Asked ahead, the
        # pipeline thread's answers stand (the same question on the same mask).
        if asked is None:
            unsure = [i for i, (_, _, doubt) in enumerate(decisions) if doubt and not heard[i]]
            answers = None
        else:
            unsure = [i for i, one in enumerate(asked) if one.answer is not None]
            answers = [asked[i].answer for i in unsure]
        if unsure:  # rare: a few portraits and objects in a hundred
            alpha, transition, matter, decisions = _heed_second_opinion(pipeline, small_images, alpha, transition,
                                                                        matter, decisions, unsure, notes, timings,
                                                                        answers)
        matted = torch.zeros_like(matter)
        to_matte = [i for i, (share, _, _) in enumerate(decisions)
                    if options.matting and share >= MIN_SOFT_ZONE_SHARE]
        if to_matte:
            started = time.perf_counter()
            alpha, matted = _matte_photos(pipeline, small_images, alpha, matter, matted, to_matte, options, notes, pool)
            for i in to_matte:
                timings[i]["matte"] = (time.perf_counter() - started) / len(to_matte)

        started = time.perf_counter()
        has_transition = torch.tensor([bool(seen) for _, seen, _ in decisions], device=alpha.device)[:, None, None]
        full_alphas, raws, foregrounds = steps.run(
            f"finish {options.full_resolution} {options.foreground}",
            partial(_finish, options.full_resolution, options.foreground),
            (photos, small_images, small_masks, alpha, transition, matter, matted, has_transition),
            read=lambda outputs: (*outputs[0].cpu().numpy(),  # alpha and raw mask in one transfer
                                  list(images) if outputs[1] is None else list(outputs[1].cpu().numpy())))
        finish_seconds = (time.perf_counter() - started) / count
    results = []
    for i, image in enumerate(images):
        timings[i]["outline_foreground"] = finish_seconds
        if options.full_resolution:
            notes[i].append(f"outline refined at {width}x{height} from the {work[1]}x{work[0]} working grid"
                            if not at_full_size else "outline steepened where the mask steps crisply")
        results.append(CutoutResult(image, raws[i], full_alphas[i], foregrounds[i], timings[i], notes[i]))
    return results


def _heed_second_opinion(pipeline: Pipeline, small_images: torch.Tensor, alpha: torch.Tensor,
                         transition: torch.Tensor, matter: torch.Tensor, decisions: list, asked: list[int],
                         notes: list[list[str]], timings: list[dict[str, float]], answers: list | None = None) -> tuple:
    """Pipeline._second_opinion for the stack's photos `asked` (ISNet undecided deep inside what it
    drew): U²-Net-p's confident opinion taken there, the soft regions and decisions made again.
    answers: U²-Net-p's masks at the working grid for those photos, asked ahead on the pipeline
    thread (Rows); None: asked here, eagerly, beside the refine threads (no capture can be made here)."""
    from pipeline.second_opinion import MIN_RAISED_SHARE, SECOND_OPINION_MODEL, SECOND_SURE
    from pipeline.torch_path.segment import DevicePhotos, resolved

    started = time.perf_counter()
    work = tuple(alpha.shape[-2:])
    if answers is not None:  # Rows; of one stack (the stack's photos are of one size): one call, not one a photo
        same = all(answer.stack is answers[0].stack for answer in answers)
        second = answers[0].stack[[answer.row for answer in answers]] if same else \
            torch.stack([resolved(answer) for answer in answers])
    else:
        segmenter = pipeline.second_opinion_segmenter()
        if segmenter is None:
            return alpha, transition, matter, decisions
        # The stack's photos are of one size: one group in, its stack of masks out (no call per photo).
        groups, _ = segmenter.first_view_groups(DevicePhotos([(list(range(len(asked))), small_images[asked])]))
        second = on_device.resize(groups[0].masks, *work).clamp(0, 1)
    chosen = alpha[asked]
    raised = on_device.undecided(chosen) & (second >= SECOND_SURE)
    shares = raised.float().mean(dim=(-2, -1)).tolist()
    for row, share in zip(asked, shares):  # asked ahead: the pipeline thread's share is added by the caller
        timings[row]["second_opinion"] = (time.perf_counter() - started) / len(asked)
    heeded = [place for place, share in enumerate(shares) if share >= MIN_RAISED_SHARE]
    if not heeded:
        return alpha, transition, matter, decisions
    rows = [asked[place] for place in heeded]
    alpha, transition, matter, decisions = alpha.clone(), transition.clone(), matter.clone(), list(decisions)
    alpha[rows] = torch.where(raised[heeded], torch.maximum(chosen[heeded], second[heeded]), chosen[heeded])
    # Only the raised photos' soft regions change, and with them what the host reads of their zones.
    transition[rows], matter[rows] = on_device.split_soft_regions(alpha[rows])
    for row, place, zones in zip(rows, heeded, _zone_decisions(transition[rows], matter[rows]).tolist()):
        decisions[row] = [*zones, decisions[row][2]]
        notes[row].append(f"{SECOND_OPINION_MODEL} decided {shares[place]:.1%} of the picture where ISNet was undecided")
    return alpha, transition, matter, decisions


def _decide(work: tuple[int, int], photos: torch.Tensor | None, masks: torch.Tensor,
            small_images: torch.Tensor | None, persons: torch.Tensor | None,
            listened: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """The refinement's first step, on the device alone (a CUDA graph can replay it): the stack at
    the working grid, the person matte blended in where listened, the soft regions split, and the
    decisions the host reads (_decisions).
    -> (small_images, small_masks, alpha, transition, matter, decisions (n, 3))."""
    small_images, small_masks = at_working_grid(photos, masks, work, small_images)
    alpha = small_masks
    if persons is not None:
        alpha = torch.where(listened, blend_person_matte(alpha, persons), alpha)
    transition, matter = on_device.split_soft_regions(alpha)
    return small_images, small_masks, alpha, transition, matter, _decisions(alpha, transition, matter)


def _decisions(alpha: torch.Tensor, transition: torch.Tensor, matter: torch.Tensor) -> torch.Tensor:
    """(n, 3): each photo's share of soft zone to matte, whether it has a transition, whether ISNet
    is undecided over enough of the picture deep inside what it drew (the second opinion is asked)."""
    from pipeline.second_opinion import MIN_RAISED_SHARE

    undecided_share = on_device.undecided(alpha).float().mean(dim=(-2, -1))
    return torch.cat([_zone_decisions(transition, matter), (undecided_share >= MIN_RAISED_SHARE).float()[:, None]], 1)


def _zone_decisions(transition: torch.Tensor, matter: torch.Tensor) -> torch.Tensor:
    """(n, 2): each photo's share of soft zone to matte, whether it has a transition."""
    return torch.stack([matter.float().mean(dim=(-2, -1)), transition.flatten(-2).any(-1).float()], 1)


def _finish(full_resolution: bool, with_foreground: bool, photos: torch.Tensor, small_images: torch.Tensor,
            small_masks: torch.Tensor, alpha: torch.Tensor, transition: torch.Tensor, matter: torch.Tensor,
            matted: torch.Tensor, has_transition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The refinement after matting, on the device alone: outline to full size, foreground colours.
    -> ((2, n, H, W): the full-size alpha and the raw mask at full size, (n, H, W, 3) foreground or None)."""
    height, width = photos.shape[-2:]
    crisp = on_device.dilate_cross(transition, 1) & ~matter & ~matted
    doubt = matter & ~matted & has_transition
    if full_resolution:
        alpha = on_device.settle_confident_interiors(alpha)
    full_alpha = on_device.to_full_size(photos, small_images, alpha, crisp, doubt, full_resolution)
    foreground = None
    if with_foreground:
        small_foreground = estimate_foreground_torch(small_images, alpha)
        foreground = on_device.foreground_at_full_size(photos, small_images, small_foreground, full_alpha)
        foreground = foreground.permute(0, 2, 3, 1).contiguous()
    raw = small_masks if tuple(small_masks.shape[-2:]) == (height, width) else \
        on_device.resize(small_masks, height, width).clamp(0, 1)
    return torch.stack([full_alpha.float(), raw.float()]), foreground


_STEPS: dict[str, GraphedSteps] = {}
_STEPS_LOCK = threading.Lock()


def capture_wanted_refinements(device: str) -> None:
    """Before a batch on the torch device: the refinement's wanted captures (GraphedSteps.capture_wanted,
    which waits for the refinements at work in the process to end first)."""
    refinement_steps(torch.device(device)).capture_wanted()


def refinement_steps(device: torch.device) -> GraphedSteps:
    """The process's refinement steps on `device`: replayed from CUDA graphs on a GPU (unless
    CUTOUT_CUDA_GRAPHS=0), eager elsewhere."""
    with _STEPS_LOCK:  # one GPU a process: keyed by the device's type ("cuda" and "cuda:0" alike)
        if device.type not in _STEPS:
            _STEPS[device.type] = GraphedSteps(device.type == "cuda" and graphs_enabled())
        return _STEPS[device.type]


def _matte_photos(pipeline: Pipeline, small_images: torch.Tensor, alpha: torch.Tensor, matter: torch.Tensor,
                  matted: torch.Tensor, chosen: list[int], options: CutoutOptions, notes: list[list[str]],
                  pool) -> tuple[torch.Tensor, torch.Tensor]:
    """Pipeline._matte_soft_zones for the stack's photos `chosen` (their inputs brought to the host
    in three transfers), side by side in `pool`; -> (alpha, matted) with theirs written in."""
    device = alpha.device
    host_images = small_images[chosen].permute(0, 2, 3, 1).cpu().numpy()
    host_alpha, host_matter = alpha[chosen].cpu().numpy(), matter[chosen].cpu().numpy()

    def matte(place: int) -> tuple[np.ndarray, np.ndarray]:
        return pipeline._matte_soft_zones(host_images[place], host_alpha[place], host_matter[place], options,
                                          notes[chosen[place]])

    places = range(len(chosen))
    answers = list(pool.map(matte, places)) if pool is not None and len(chosen) > 1 else [matte(p) for p in places]
    alpha, matted = alpha.clone(), matted.clone()
    alpha[chosen] = torch.from_numpy(np.stack([a for a, _ in answers]).astype(np.float32, copy=False)).to(device)
    matted[chosen] = torch.from_numpy(np.stack([m for _, m in answers])).to(device)
    return alpha, matted


def matte_on_device(device: str, image: np.ndarray, trimap: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """pipeline.matting.closed_form.estimate_alpha's job for the torch path: closed-form matting by conjugate
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
