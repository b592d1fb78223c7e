"""The chain: image -> segment -> soft zones matted -> full-resolution outline -> foreground -> Result.

Every refinement step decides from evidence in the photo and in the mask whether it applies, and
leaves the model's mask alone where it cannot tell (see docs/quality.md for the measurements):
- ISNet's mask is kept at the network's working grid (long side 1024, the photo's aspect).
- Where a person-matting network (RVM) sees the same subject, ISNet's doubtful pixels (hair) take
  its coverage (pipeline.person_matte); elsewhere it is not listened to.
- Wide grey zones of the mask (hair, fur, fuzz: pipeline.edges) are matted, and only when the
  photo's colours separate subject from background there (a colour model learned from the
  mask's confident pixels classifies them reliably); crisp outlines are not matted.
- The working alpha goes to full size with a guided upsample along the photo's own edges
  (pipeline.upsample), and crisp outlines are steepened there, so products keep hard edges.
- The foreground colour is solved at the working size and its correction applied at full size.
U^2-Net-p fusion and the colour prior remain as options, off by default: each helped the
alphamatting.com portraits and harmed object photos (DIS5K dev, SOD dev).
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
from scipy import ndimage

from models import ModelUnavailableError, ensure_model, get_spec
from models.specs import DEFAULT_MODEL
from pipeline.colour_prior import colour_probability, refine_mask_with_colour
from pipeline.device import resolve_device
from pipeline.edges import keep_model_side, settle_confident_interiors, sharpen, split_soft_regions, steepen_doubt
from pipeline.fuse import fuse_masks
from pipeline.matting.closed_form import DEFAULT_MAX_SIDE, estimate_alpha
from pipeline.matting.foreground import estimate_foreground
from pipeline.matting.trimap import UNKNOWN, make_soft_zone_trimap
from pipeline.person_matte import (PERSON_MODEL, PersonMatter, blend_person_matte, default_person_matte, listened,
                                   person_matte_if_agreeing)
from pipeline.second_opinion import MIN_RAISED_SHARE, SECOND_OPINION_MODEL, heed_second_opinion, undecided
from pipeline.segment import MIRRORED_MODELS, Segmenter, default_fine_views, default_mirror_views, resize_float
from pipeline.upsample import guided_upsample, in_bands, resize_rows

if TYPE_CHECKING:
    from pipeline.torch_path.person_matte import TorchPersonMatter

log = logging.getLogger(__name__)

# The refinement's grid for masks that come at full size: ISNet's native long side.
WORKING_LONG_SIDE = 1024
# The second model CutoutOptions.assist_model may name (fetched with the others by `cutout models fetch`).
ASSIST_MODEL = "u2netp"
# Soft zones smaller than this share of the picture are outline noise, not hair: no matting.
MIN_SOFT_ZONE_SHARE = 0.001
# Matting needs colours that tell subject from background (closed-form's colour-line model). Below
# this reliability of a colour model learned from the mask's own confident pixels the soft zones
# keep the model's values (SOD dev: matting without this gate lowered IoU on 13 of 196 photos).
MATTING_MIN_RELIABILITY = 0.9
# ISNet runs with its long side at the native 1024 and the photo's own aspect ratio
# (pipeline/segment.py). CUTOUT_SEGMENT_SIDE=768 shrinks that long side: ~1 s faster on two
# cores, at a measured quality cost, so it is a speed-for-quality switch, not the default.


def default_segment_side() -> int | None:
    configured = os.environ.get("CUTOUT_SEGMENT_SIDE")
    return int(configured) if configured else None


def default_refine_threads(device: str) -> int:
    """CUTOUT_REFINE_THREADS, else half the cores on a GPU host (an H200, session 26: 8 of 16 refined
    36.4 products/s, 16 refined 27.5; fewer threads leave the GIL to the pipeline thread) and one on the CPU."""
    configured = os.environ.get("CUTOUT_REFINE_THREADS")
    if configured:
        return max(1, int(configured))
    return max(1, (os.cpu_count() or 2) // 2) if device == "cuda" else 1


def default_overlap_batches() -> bool:
    """CUTOUT_OVERLAP_BATCHES=0: on the torch path the pipeline thread waits for a batch's refinements
    before it segments the next (Pipeline.start_cutout_batch)."""
    return os.environ.get("CUTOUT_OVERLAP_BATCHES", "1") != "0"


def default_second_opinion_ahead() -> bool:
    """CUTOUT_SECOND_OPINION_AHEAD=0: on the torch path each refinement asks U²-Net-p itself, eagerly,
    instead of the pipeline thread asking it for the batch (pipeline/torch_path/second_opinion.py)."""
    return os.environ.get("CUTOUT_SECOND_OPINION_AHEAD", "1") != "0"


def default_refine_streams() -> bool:
    """CUTOUT_REFINE_STREAMS=0: on a CUDA device every refine thread on torch's default stream, not
    each on its own (pipeline/torch_path/streams.py)."""
    return os.environ.get("CUTOUT_REFINE_STREAMS", "1") != "0"


def default_refine_stack() -> int:
    """CUTOUT_REFINE_STACK=N: the torch path refines photos of one size N at a time as one stack
    (pipeline/torch_path/chain.refine_stack_on_device), the stacks side by side in the refine pool.
    1, the default, refines photo by photo: on an H100 stacks were slower under load, a whole batch
    as one stack (session 12) and stacks of 4 with the refinement's graphs (session 16: 17.8 vs
    28.1 photos/s; docs/performance.md)."""
    return max(1, int(os.environ.get("CUTOUT_REFINE_STACK", "1")))


def default_keep_aspect() -> bool:
    """CUTOUT_SEGMENT_SHAPE=square stretches every photo to the model's square, as it was trained."""
    return os.environ.get("CUTOUT_SEGMENT_SHAPE", "photo").lower() != "square"


@dataclass(frozen=True)
class CutoutOptions:
    """What the pipeline does to one image.

    assist_model: a second model whose extra regions are fused in where ISNet half-saw them
        (pipeline.fuse); helps plush toys and plants, can import touching objects. None: off.
    colour_prior: settle mid-grey mask regions with the photo's own colours (off by default:
        it grew neighbouring objects on object photos).
    matting: closed-form matting in the mask's soft zones, where the colours allow it.
    full_resolution: finish the alpha at the photo's resolution: confident interiors settled to
        exactly 0 / 1, guided upsample, crisp edges; False gives the plain bilinear upsample.
    person_matte: ask the person-matting network where it sees the same subject (pipeline.person_matte;
        also needs the Pipeline's person_matte switch).
    """

    model: str = DEFAULT_MODEL
    assist_model: str | None = None
    colour_prior: bool = False
    matting: bool = True
    foreground: bool = True
    full_resolution: bool = True
    matting_max_side: int = DEFAULT_MAX_SIDE
    person_matte: bool = True


@dataclass
class Segmented:
    """One photo after Pipeline.segment."""

    mask: object  # (H, W) model mask at the network grid: an array, or a device tensor on the torch path
    person: object  # the person matte at the working grid where it sees the mask's subject, else None
    person_seconds: float = 0.0
    small_image: object = None  # the photo at the working grid, where made already (on the device on the torch path)
    asked: object = None  # torch path: the second opinion asked ahead (torch_path.second_opinion.Asked), or None


@dataclass
class CutoutResult:
    image: np.ndarray  # (h, w, 3) RGB in [0, 1]
    mask: np.ndarray  # (h, w) the segmentation model's own soft mask
    alpha: np.ndarray  # (h, w) final alpha
    foreground: np.ndarray  # (h, w, 3) straight foreground colour
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # fallbacks taken, with their reasons

    @property
    def subject_found(self) -> bool:
        """False when nothing in the photo stood out as a subject."""
        return float((self.alpha > 0.5).mean()) > 0.001


class Pipeline:
    """Holds the loaded models (one inference session each per process) and runs the chain."""

    def __init__(self, model_dir: Path | str | None = None, cache_dir: Path | str | None = None,
                 threads: int | None = None, device: str | None = None, segment_side: int | None = None,
                 keep_aspect: bool | None = None, refine_threads: int | None = None,
                 fine_views: bool | None = None, person_matte: bool | None = None,
                 refine_stack: int | None = None, overlap_batches: bool | None = None,
                 second_opinion_ahead: bool | None = None, refine_streams: bool | None = None,
                 mirror_views: bool | None = None) -> None:
        """segment_side: long side of the segmentation input, below the model's native side (None: native).

        keep_aspect: segment at the photo's aspect ratio rather than the stretched square (None: default).
        refine_threads: images of one batch refined side by side (None: CUTOUT_REFINE_THREADS, else
        half the cores on the GPU path and one on the CPU path).
        fine_views: large photos also asked at the model's finer side (None: CUTOUT_FINE_VIEW, on).
        person_matte: the person matte's second opinion on hair (None: CUTOUT_PERSON_MATTE, on).
        refine_stack: on the torch path, photos of one size refined together as a stack (None:
            CUTOUT_REFINE_STACK, 1: photo by photo).
        overlap_batches: on the torch path, start_cutout_batch hands a batch's refinements to the
            refine pool and returns, so the next batch is segmented meanwhile (None:
            CUTOUT_OVERLAP_BATCHES, on).
        second_opinion_ahead: on the torch path, the second opinion is asked on the pipeline thread for
            the whole batch, from a replayed graph (pipeline/torch_path/second_opinion.py; None:
            CUTOUT_SECOND_OPINION_AHEAD, on), instead of eagerly by each refinement that needs it.
        refine_streams: on a CUDA device, each refine thread's work on a stream of its own
            (pipeline/torch_path/streams.py; None: CUTOUT_REFINE_STREAMS, on), not all on one.
        mirror_views: the main model also asked of each photo's mirror image, the two views averaged
            where they agree (pipeline.segment.with_mirror; None: CUTOUT_MIRROR_VIEW, else on with a
            CUDA device, off on the CPU): better cutouts on every development set for one more
            network pass per view, which the CPU's speed budget cannot pay.
        """
        self.model_dir = model_dir
        self.cache_dir = cache_dir
        self.threads = threads
        self.device = resolve_device(device)
        self.segment_side = segment_side or default_segment_side()
        self.keep_aspect = default_keep_aspect() if keep_aspect is None else keep_aspect
        self.fine_views = default_fine_views() if fine_views is None else fine_views
        self.mirror_views = default_mirror_views(self.device) if mirror_views is None else mirror_views
        self.person_matte = default_person_matte() if person_matte is None else person_matte
        self._segmenters: dict[str, Segmenter] = {}
        self._person_matter: PersonMatter | TorchPersonMatter | None = None
        self._second_opinion_unavailable = False
        self._lock = threading.Lock()
        self.refine_threads = default_refine_threads(self.device) if refine_threads is None else refine_threads
        self.refine_stack = default_refine_stack() if refine_stack is None else max(1, refine_stack)
        self.overlap_batches = default_overlap_batches() if overlap_batches is None else overlap_batches
        self.second_opinion_ahead = self.uses_torch and (default_second_opinion_ahead() if second_opinion_ahead is None
                                                         else second_opinion_ahead)
        self.refine_streams = self.device == "cuda" and (default_refine_streams() if refine_streams is None
                                                         else refine_streams)
        self._streams = None  # RefineStreams, made on the first refinement on a CUDA device
        self._pool: ThreadPoolExecutor | None = None

    @property
    def uses_torch(self) -> bool:
        return self.device in ("cuda", "torch-cpu")

    def segmenter(self, name: str) -> Segmenter:
        with self._lock:
            if name not in self._segmenters:
                spec = get_spec(name)
                path = ensure_model(spec, self.model_dir, self.cache_dir)
                mirrored = self.mirror_views and name in MIRRORED_MODELS
                if self.uses_torch:
                    from pipeline.torch_path.segment import TorchSegmenter

                    # Graphs for the main model and the second opinion asked ahead (both asked on the
                    # pipeline thread, where captures wait for a quiet moment); a model asked from the
                    # refine threads runs eagerly (a capture beside their work fails).
                    graphed = name == DEFAULT_MODEL or (name == SECOND_OPINION_MODEL and self.second_opinion_ahead)
                    self._segmenters[name] = TorchSegmenter(spec, path, self.torch_device, keep_aspect=self.keep_aspect,
                                                            fine_views=self.fine_views, input_side=self.segment_side,
                                                            cuda_graphs=None if graphed else False,
                                                            mirror_views=mirrored)
                else:
                    self._segmenters[name] = Segmenter(spec, path, self.threads, input_side=self.segment_side,
                                                         keep_aspect=self.keep_aspect, fine_views=self.fine_views,
                                                         mirror_views=mirrored)
            return self._segmenters[name]

    def person_matter(self) -> PersonMatter | TorchPersonMatter | None:
        """The person-matting network, loaded once (on the torch device for the torch path); None when
        switched off or not obtainable."""
        if not self.person_matte:
            return None
        with self._lock:
            if self._person_matter is None:
                try:
                    path = ensure_model(get_spec(PERSON_MODEL), self.model_dir, self.cache_dir)
                except ModelUnavailableError as error:
                    # Not a failure: cutouts go on with ISNet alone (logged once, switched off).
                    log.warning("person matte unavailable, hair from ISNet alone: %s", error)
                    self.person_matte = False
                    return None
                if self.uses_torch:
                    from pipeline.torch_path.person_matte import TorchPersonMatter

                    self._person_matter = TorchPersonMatter(path, self.torch_device)
                else:
                    self._person_matter = PersonMatter(path, self.threads)
            return self._person_matter

    def second_opinion_segmenter(self) -> Segmenter | None:
        """U²-Net-p for pipeline.second_opinion (on the torch device for the torch path); None when not
        obtainable: not a failure, ISNet's undecided regions are then kept as drawn (logged once)."""
        if self._second_opinion_unavailable:
            return None
        try:
            return self.segmenter(SECOND_OPINION_MODEL)
        except ModelUnavailableError as error:
            log.warning("second opinion unavailable, ISNet's undecided regions kept: %s", error)
            self._second_opinion_unavailable = True
            return None

    def warm_up(self, options: CutoutOptions = CutoutOptions(), max_batch: int = 1) -> None:
        """Load every model `options` needs, so the first user does not wait for it (on a GPU, also
        the per-shape kernel search and CUDA graph captures for phone photos' shapes, at every batch
        size up to `max_batch`: the pipeline thread's batch size)."""
        segmenter = self.segmenter(options.model)
        matter = self.person_matter() if options.person_matte else None
        if self.device == "cuda" and hasattr(segmenter, "warm"):
            segmenter.warm(max_batch=max_batch)
            if matter is not None and hasattr(matter, "warm"):  # the person matte runs at the first view's grid
                matter.warm(segmenter.phone_shapes(segmenter.input_size[0]), max_batch=max_batch)
        if options.assist_model:
            self.segmenter(options.assist_model)
        second = self.second_opinion_segmenter()  # asked now and then: loaded now, not in a user's request
        if self.device == "cuda" and self.second_opinion_ahead and second is not None and hasattr(second, "warm"):
            # Asked ahead for a batch's undecided photos (a few in a batch): captured at start-up for
            # the phone shapes, not at a quiet moment made under load.
            second.warm(second.phone_shapes(second.input_size[0]), max_batch=max_batch)

    def cutout(self, image: np.ndarray, options: CutoutOptions = CutoutOptions()) -> CutoutResult:
        return self.cutout_batch([image], options)[0]

    def cutout_batch(self, images: list[np.ndarray], options: CutoutOptions = CutoutOptions(),
                     on_stage: Callable[[int, str], None] | None = None) -> list[CutoutResult]:
        """Cut out several images; segmentation runs as one batch (one forward pass on a GPU).

        on_stage(index, stage) is told when image `index` enters "segmenting" and "refining"
        (for progress displays; it must be quick and must not raise).
        """
        self._before_batch(images, options)
        return self._cut_out(images, options, on_stage)

    def start_cutout_batch(self, images: list[np.ndarray], options: CutoutOptions = CutoutOptions(),
                           on_stage: Callable[[int, str], None] | None = None) -> list[CutoutResult | Future]:
        """cutout_batch for the pipeline thread (PipelineWorker resolves futures as they finish).

        On the torch device the batch is segmented here and each photo's refinement handed to the
        refine pool; their futures come back at once, so the pipeline thread segments the next batch
        while this one is refined. Elsewhere (the CPU path, stacks, overlap off) the results themselves.
        """
        if not (self.overlap_batches and self.refine_stack == 1 and self._refines_on_device(options)):
            return self.cutout_batch(images, options, on_stage)
        self._before_batch(images, options)
        return self._cut_out(images, options, on_stage, later=True)

    def _before_batch(self, images: list[np.ndarray], options: CutoutOptions) -> None:
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"expected an (h, w, 3) RGB image, got shape {image.shape}")
        if self._refines_on_device(options):
            from pipeline.torch_path.chain import capture_wanted_refinements

            capture_wanted_refinements(self.torch_device)  # the refinement's CUDA graphs, at a quiet moment

    def _device_work(self, on_device: bool):
        """Around a refinement on the torch device: no CUDA graph is captured beside it (graphs.DEVICE_GATE)."""
        if not on_device:
            return contextlib.nullcontext()
        from pipeline.torch_path.graphs import DEVICE_GATE

        return DEVICE_GATE.working()

    def _cut_out(self, images: list[np.ndarray], options: CutoutOptions,
                 on_stage: Callable[[int, str], None] | None, later: bool = False) -> list:
        """later: each photo's refinement submitted to the refine pool, its future returned."""
        report = on_stage or (lambda index, stage: None)
        for index in range(len(images)):
            report(index, "segmenting")
        images = [self._as_unit_float(image) for image in images]
        started = time.perf_counter()
        on_device = self._refines_on_device(options)
        photos: list = [None] * len(images)
        segment_notes: list[list[str]] = [[] for _ in images]  # what the finer view and the person matte did
        if on_device:  # photos go to the device once; masks stay there for the refinement
            photos = self.segmenter(options.model).upload(images)
            if self.refine_stack > 1 and hasattr(self.segmenter(options.model), "first_view_groups"):
                return self._cut_out_stacks(images, photos, options, segment_notes, report, started)
        segmented = self.segment(images, options, segment_notes, photos if on_device else None)
        on_own_stream = self._refinement_streams(on_device)
        assists: list[np.ndarray | None] = [None] * len(images)
        if options.assist_model:
            assists = self._predict_small_all(options.assist_model, images)
        seconds = (time.perf_counter() - started - sum(one.person_seconds for one in segmented)) / len(images)

        def refine(index: int) -> CutoutResult:
            report(index, "refining")
            one = segmented[index]
            timings = {"segment": seconds}
            if one.person_seconds:
                timings["person_matte"] = one.person_seconds
            if one.asked is not None and one.asked.seconds:
                timings["second_opinion_ahead"] = one.asked.seconds
            with self._device_work(on_device), on_own_stream():
                result = self._refine(images[index], one.mask, assists[index], options, timings, photos[index],
                                      person=one.person, small_image=one.small_image, asked=one.asked)
            result.notes[:0] = segment_notes[index]
            return result

        if later:
            pool = self._refine_pool(at_least_one=True)
            return [pool.submit(refine, index) for index in range(len(images))]
        pool = self._refine_pool() if len(images) > 1 else None
        if pool is None:
            return [refine(index) for index in range(len(images))]
        return list(pool.map(refine, range(len(images))))

    def _cut_out_stacks(self, images: list[np.ndarray], photos, options: CutoutOptions,
                        segment_notes: list[list[str]], report: Callable[[int, str], None],
                        started: float) -> list[CutoutResult]:
        """cutout_batch on the torch device with the refinement on stacks (refine_stack > 1): the photos
        of one size are refined `refine_stack` at a time, every step on the whole stack
        (pipeline/torch_path/chain.refine_stack_on_device), the stacks side by side in the refine pool."""
        import torch

        from pipeline.torch_path.chain import refine_stack_on_device

        with torch.inference_mode():
            groups, persons, small_images, took = self._segment_stacks(images, options, segment_notes, photos)
            asked = self._second_opinions_ahead(groups, persons, small_images, True)
        on_own_stream = self._refinement_streams(True)
        seconds = (time.perf_counter() - started - took) / len(images)
        stacks = []  # (the group, its rows) per stack
        for group in groups:
            rows = list(range(len(group.indices)))
            stacks += [(group, rows[start:start + self.refine_stack]) for start in range(0, len(rows), self.refine_stack)]

        def refine(stack, matting_pool=None) -> list[CutoutResult]:
            group, rows = stack
            indices = [group.indices[row] for row in rows]
            for index in indices:
                report(index, "refining")
            part = slice(rows[0], rows[-1] + 1)
            heard = [persons[index] is not None for index in indices]
            person_stack = next((persons[index].stack for index in indices if persons[index] is not None), None)
            first_small = small_images[indices[0]]
            with self._device_work(True), on_own_stream():
                return refine_stack_on_device(
                    self, [images[index] for index in indices], group.photos[part], group.masks[part], options,
                    first_small.stack[part] if first_small else None,
                    None if person_stack is None else person_stack[part], heard, matting_pool,
                    None if asked[indices[0]] is None else [asked[index] for index in indices])

        # Stacks side by side in the refine pool; a lone stack mattes its photos side by side there instead.
        pool = self._refine_pool()
        if pool is not None and len(stacks) > 1:
            refined = list(pool.map(refine, stacks))
        else:
            refined = [refine(stack, pool) for stack in stacks]
        results: list = [None] * len(images)
        for (group, rows), stack_results in zip(stacks, refined):
            for row, result in zip(rows, stack_results):
                index = group.indices[row]
                timings = {"segment": seconds}
                if took:
                    timings["person_matte"] = took / len(images)
                result.timings = {**timings, **result.timings}
                result.notes[:0] = segment_notes[index]
                results[index] = result
        return results

    def segment(self, images: list[np.ndarray], options: CutoutOptions, notes: list[list[str]],
                photos: list | None = None) -> list[Segmented]:
        """Each photo's model mask, and the person matte's opinion on it.

        The first view; then the person matte, listened to where it sees the same subject; then, for
        large photos it did not settle, the finer view (pipeline.segment: hair is the person matte's
        where it applies; on alphamatting.com's six such photos asked as large ones the finer view
        added nothing on top of it, docs/quality.md). photos: `images` already on the device (the
        torch path), whose masks then stay there. notes[i] is told what the views and the person
        matte did for photo i.
        """
        segmenter = self.segmenter(options.model)
        if hasattr(segmenter, "first_view_groups"):  # the torch segmenter: one forward pass per network shape
            import torch

            from pipeline.torch_path.segment import Rows, resolved, to_host

            with torch.inference_mode():
                groups, persons, small_images, took = self._segment_stacks(images, options, notes, photos)
                asked = self._second_opinions_ahead(groups, persons, small_images, photos is not None)
                rows = Rows(groups, "masks")
                masks = [rows.row(index) for index in range(len(images))]
                if photos is None:  # refined on the host: masks and person mattes come back
                    masks = to_host([resolved(mask) for mask in masks])
                    persons = [None if p is None else resolved(p).cpu().numpy() for p in persons]
                    small_images = [None] * len(images)
            seconds = took / max(1, len(images))
            return [Segmented(mask, person, seconds, small_image, one_asked)
                    for mask, person, small_image, one_asked in zip(masks, persons, small_images, asked)]
        segmented = []
        for image, photo_notes in zip(images, notes):
            # The photo at the working grid, once: ISNet's input, the person matte's and the refinement's.
            small_image = at_size(image, self.working_size(image.shape, segmenter.network_size(*image.shape[:2])))
            mask, may_look_finer = segmenter.first_view(image, resized=small_image)
            person, took = self.person_opinion(image, mask, options, photo_notes, small_image=small_image)
            if may_look_finer and person is None:
                mask = segmenter.finer_look(image, mask, notes=photo_notes)
            segmented.append(Segmented(mask, person, took, small_image))
        return segmented

    def _segment_stacks(self, images: list[np.ndarray], options: CutoutOptions, notes: list[list[str]],
                        photos=None) -> tuple[list, list, list, float]:
        """Pipeline.segment on the torch device, kept as stacks of photos by size (pipeline/torch_path/
        segment.py: a few torch calls per photo size, none per photo). -> (the size groups, with
        their masks after the finer view; each photo's person matte as a Row or None; each photo at
        the working grid as a Row or None; the person matte's seconds)."""
        from pipeline.torch_path.segment import DevicePhotos, Rows

        segmenter = self.segmenter(options.model)
        device_photos = DevicePhotos.of(photos if photos is not None else segmenter.upload(images))
        groups, may_look_finer = segmenter.first_view_groups(device_photos)
        persons, small_images, took = self._person_opinions_on_device(groups, options, notes)
        finer = [index for index, may in enumerate(may_look_finer) if may and persons[index] is None]
        if finer:
            segmenter.mix_fine_views(device_photos, Rows(groups, "masks"), finer, notes)
        return groups, persons, small_images, took

    def _second_opinions_ahead(self, groups: list, persons: list, small_images: list, on_device: bool) -> list:
        """Each photo's second opinion asked on the pipeline thread (torch_path.second_opinion.ask_ahead)
        where the refinement runs on the device and asking ahead is on; else None each (asked later)."""
        count = sum(len(group.indices) for group in groups)
        if not (on_device and self.second_opinion_ahead):
            return [None] * count
        from pipeline.torch_path.second_opinion import ask_ahead

        return ask_ahead(self, groups, persons, small_images)

    def person_opinion(self, image: np.ndarray, mask: np.ndarray, options: CutoutOptions, notes: list[str],
                       small_image: np.ndarray | None = None) -> tuple[np.ndarray | None, float]:
        """-> (the person matte at the working grid where its subject is the mask's, else None; seconds).
        small_image: the photo at the working grid, where the caller has it."""
        matter = self.person_matter() if options.person_matte else None
        if matter is None:
            return None, 0.0
        started = time.perf_counter()
        work_h, work_w = self.working_size(image.shape, tuple(mask.shape))
        if small_image is None or small_image.shape[:2] != (work_h, work_w):
            small_image = at_size(image, (work_h, work_w))
        person = person_matte_if_agreeing(matter, small_image, at_size(mask, (work_h, work_w)), notes)
        return person, time.perf_counter() - started

    def _person_opinions_on_device(self, groups: list, options: CutoutOptions,
                                   notes: list[list[str]]) -> tuple[list, list, float]:
        """person_opinion for the torch path, on the segmenter's size groups (a few torch calls per
        photo size, one RVM pass per working-grid shape). -> (each photo's person matte at the
        working grid as a Row of the device stack, or None; each photo at the working grid as a Row,
        for the refinement, or None when the person matte is not asked; seconds)."""
        count = sum(len(group.indices) for group in groups)
        matter = self.person_matter() if options.person_matte else None
        if matter is None:
            return [None] * count, [None] * count, 0.0
        import torch

        from pipeline.torch_path.chain import working_stacks
        from pipeline.torch_path.person_matte import subject_agreements
        from pipeline.torch_path.segment import Row, indices_by

        started = time.perf_counter()
        views = [working_stacks(self, group) for group in groups]  # (photos, masks) at each group's working grid
        mattes: list = [None] * len(groups)
        for places in indices_by(tuple(small_images.shape[1:]) for small_images, _ in views).values():
            stacked = views[places[0]][0] if len(places) == 1 else torch.cat([views[place][0] for place in places])
            for place, matte in zip(places, matter.matte(stacked).split([len(groups[p].indices) for p in places])):
                mattes[place] = matte
        agreements = subject_agreements([small_masks for _, small_masks in views], mattes)
        persons: list = [None] * count
        small_images: list = [None] * count
        for group, (small, _), matte, group_agreements in zip(groups, views, mattes, agreements):
            for row, (index, agreement) in enumerate(zip(group.indices, group_agreements)):
                persons[index] = listened(Row(matte, row), agreement, notes[index])
                small_images[index] = Row(small, row)
        return persons, small_images, time.perf_counter() - started

    def _refinement_streams(self, on_device: bool) -> Callable[[], contextlib.AbstractContextManager]:
        """Called on the pipeline thread once a batch is segmented: -> a context for each of the batch's
        refinements, its device work on its thread's own stream after the segmentation
        (pipeline/torch_path/streams.py); a context that does nothing where streams are off."""
        streams = self._refine_streams(on_device)
        if streams is None:
            return contextlib.nullcontext
        ready = streams.handoff()
        return lambda: streams.own_stream(ready)

    def _refine_streams(self, on_device: bool):
        """RefineStreams where refinements run on a CUDA device with streams on (None elsewhere)."""
        if not (on_device and self.refine_streams):
            return None
        from pipeline.torch_path.streams import RefineStreams

        with self._lock:
            if self._streams is None:
                self._streams = RefineStreams(self.torch_device)
            return self._streams

    def _refine_pool(self, at_least_one: bool = False) -> ThreadPoolExecutor | None:
        """Threads that refine a batch's images side by side (None: one after another, unless
        at_least_one: a batch finished off the pipeline thread, start_cutout_batch).

        The refinement is mostly NumPy/SciPy work that leaves the GIL; on a GPU host the pipeline
        thread would otherwise refine a batch of 64 on one core while the others idle. On the CPU
        path onnxruntime already uses every core, so one at a time stays the default there.
        """
        threads = self.refine_threads
        if threads <= 1 and not at_least_one:
            return None
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="refine")
            return self._pool

    @staticmethod
    def _as_unit_float(image: np.ndarray) -> np.ndarray:
        """float32 in [0, 1], copying only when needed (a 40 MP photo is 480 MB per copy)."""
        image = image.astype(np.float32, copy=False)
        if float(image.min()) < 0.0 or float(image.max()) > 1.0:
            image = np.clip(image, 0.0, 1.0)
        return image

    def _predict_small_all(self, name: str, images: list[np.ndarray]) -> list[np.ndarray]:
        """Masks at the segmenter's working grid (the network's, at the photo's aspect)."""
        segmenter = self.segmenter(name)
        if hasattr(segmenter, "predict_small_batch"):  # the torch path: one forward pass per network shape
            return segmenter.predict_small_batch(images)
        return [segmenter.predict_small(image) for image in images]

    @staticmethod
    def working_size(image_shape: tuple[int, ...], mask_shape: tuple[int, ...]) -> tuple[int, int]:
        """(height, width) the refinement runs at: the network's grid, or the photo's if smaller."""
        height, width = image_shape[:2]
        if tuple(mask_shape[:2]) == (height, width):
            # A full-size mask (the editor's, made from a stored alpha): the native grid's size.
            scale = min(1.0, WORKING_LONG_SIDE / max(height, width))
            return max(1, round(height * scale)), max(1, round(width * scale))
        if mask_shape[0] * mask_shape[1] >= height * width:
            return height, width
        return mask_shape[0], mask_shape[1]

    def _refine(self, image: np.ndarray, mask, assist: np.ndarray | None, options: CutoutOptions,
                timings: dict[str, float], photo=None, person: np.ndarray | None = None,
                small_image: np.ndarray | None = None, asked=None) -> CutoutResult:
        """One photo's cutout from its model mask. On the torch path (pipeline/torch_path/chain.py) the
        mask may be a device tensor and `photo` the image already on the device. person: the person
        matte at the working grid, where it sees the mask's subject; small_image: the photo at the
        working grid, where the caller has it; asked: the second opinion asked ahead, on the torch
        path (all from Pipeline.segment)."""
        if self._refines_on_device(options):
            from pipeline.torch_path.chain import refine_on_device

            return refine_on_device(self, image, mask, options, timings, photo, person, small_image, asked)
        notes: list[str] = []
        height, width = image.shape[:2]
        work_h, work_w = self.working_size(image.shape, mask.shape)
        at_full_size = (work_h, work_w) == (height, width)
        if small_image is None or small_image.shape[:2] != (work_h, work_w):
            small_image = at_size(image, (work_h, work_w))
        small_mask = at_size(mask, (work_h, work_w))
        alpha = small_mask if person is None else blend_person_matte(small_mask, person).astype(np.float32)
        if person is None:  # the person matte, where heard, is a portrait's second opinion already
            alpha = self._second_opinion(small_image, alpha, notes, timings)

        if assist is not None:
            fused = fuse_masks(alpha, at_size(assist, alpha.shape), small_image)
            added = float((fused > alpha + 0.01).mean())
            if added > 0:
                notes.append(f"{options.assist_model} added {added:.1%} of the picture where ISNet half-saw it")
            alpha = fused

        if options.colour_prior:
            started = time.perf_counter()
            alpha, reliability = refine_mask_with_colour(small_image, alpha)
            timings["colour_prior"] = time.perf_counter() - started

        regions = split_soft_regions(alpha)
        matted = np.zeros(alpha.shape, dtype=bool)
        if options.matting and regions.matter_share >= MIN_SOFT_ZONE_SHARE:
            started = time.perf_counter()
            alpha, matted = self._matte_soft_zones(small_image, alpha, regions.matter, options, notes)
            timings["matte"] = time.perf_counter() - started

        started = time.perf_counter()
        crisp = ndimage.binary_dilation(regions.transition, iterations=1) & ~regions.matter & ~matted
        # Soft zones left unmatted are the model's doubt; steepened within the grey range only where
        # the mask has confident sides to lean on (a wholly doubtful mask is left as drawn).
        doubt = regions.matter & ~matted if regions.transition.any() else np.zeros_like(matted)
        if options.full_resolution:
            alpha = settle_confident_interiors(alpha)
        full_alpha = self._to_full_size(image, small_image, alpha, crisp, doubt, options.full_resolution)
        timings["outline"] = time.perf_counter() - started
        if options.full_resolution:
            notes.append(f"outline refined at {width}x{height} from the {work_w}x{work_h} working grid"
                         if not at_full_size else "outline steepened where the mask steps crisply")

        if options.foreground:
            started = time.perf_counter()
            foreground = self._foreground(image, small_image, alpha, full_alpha)
            timings["foreground"] = time.perf_counter() - started
        else:
            foreground = image
        raw = small_mask if at_full_size else np.clip(resize_float(small_mask, width, height), 0.0, 1.0)
        return CutoutResult(image, raw, full_alpha, foreground, timings, notes)

    def _second_opinion(self, small_image: np.ndarray, alpha: np.ndarray, notes: list[str],
                        timings: dict[str, float]) -> np.ndarray:
        """alpha with U²-Net-p's confident opinion taken where ISNet is undecided deep inside what it
        drew (pipeline.second_opinion); the second model runs only where that region is large enough."""
        region = undecided(alpha, at_least=MIN_RAISED_SHARE)
        if region.mean() < MIN_RAISED_SHARE:  # too little to raise, whatever the second model says
            return alpha
        started = time.perf_counter()
        segmenter = self.second_opinion_segmenter()
        if segmenter is None:
            return alpha
        second = at_size(segmenter.predict_small(small_image), alpha.shape)
        alpha, share = heed_second_opinion(alpha, second, region)
        timings["second_opinion"] = time.perf_counter() - started
        if share:
            notes.append(f"{SECOND_OPINION_MODEL} decided {share:.1%} of the picture where ISNet was undecided")
        return alpha

    @property
    def torch_device(self) -> str:
        """Where the torch path runs: "cuda" or "cpu" (torch-cpu)."""
        return "cuda" if self.device == "cuda" else "cpu"

    def _refines_on_device(self, options: CutoutOptions) -> bool:
        """The torch path refines on its device, except for the opt-in fusion and colour prior."""
        return self.uses_torch and not options.assist_model and not options.colour_prior

    def _matte_soft_zones(self, image: np.ndarray, alpha: np.ndarray, soft_zone: np.ndarray,
                          options: CutoutOptions, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Matting inside the soft zones, where the colours can settle them; -> (alpha, matted pixels)."""
        untouched = np.zeros(alpha.shape, dtype=bool)
        _, reliability = colour_probability(image, alpha)
        if reliability < MATTING_MIN_RELIABILITY:
            notes.append(f"soft zones kept as the model drew them: colours do not separate subject and "
                         f"background (reliability {reliability:.2f})")
            return alpha, untouched
        trimap = make_soft_zone_trimap(alpha, soft_zone)
        unknown = trimap == UNKNOWN
        try:
            if self.uses_torch:
                from pipeline.torch_path.chain import matte_on_device

                matted = matte_on_device(self.torch_device, image, trimap, alpha)
            else:
                matted = estimate_alpha(image, trimap, prior=alpha, max_side=options.matting_max_side)
        except (ValueError, MemoryError, ArithmeticError) as error:
            # Not silent: the job records that this cutout is the model's mask, and why.
            notes.append(f"matting skipped, model mask used: {error}")
            log.warning("matting skipped: %s", error)
            return alpha, untouched
        notes.append(f"matted soft zones ({unknown.mean():.1%} of the picture)")
        # The matte refines coverage within the model's decision; it never overturns it.
        matted = keep_model_side(matted, alpha)
        return np.where(unknown, matted, alpha).astype(np.float32), unknown

    @staticmethod
    def _to_full_size(image: np.ndarray, small_image: np.ndarray, alpha: np.ndarray, crisp: np.ndarray,
                      doubt: np.ndarray, full_resolution: bool) -> np.ndarray:
        """The working alpha at the photo's size: outline guided by the photo, crisp edges steepened,
        doubt steepened within the grey range."""
        height, width = image.shape[:2]
        if alpha.shape == (height, width):
            full = alpha.astype(np.float32, copy=True)
            if full_resolution:
                full[crisp] = sharpen(full[crisp])
                full[doubt] = steepen_doubt(full[doubt])
            return full
        if not full_resolution:
            return np.clip(resize_float(alpha, width, height), 0.0, 1.0)
        full = guided_upsample(image, alpha, small_image=small_image)
        crisp_weight, doubt_weight = crisp.astype(np.float32), doubt.astype(np.float32)
        any_doubt = bool(doubt.any())

        def steepen_band(top: int, bottom: int) -> None:
            band = full[top:bottom]
            weight = np.clip(resize_rows(crisp_weight, width, height, top, bottom), 0.0, 1.0)
            band += weight * (sharpen(band) - band)
            if any_doubt:
                weight = np.clip(resize_rows(doubt_weight, width, height, top, bottom), 0.0, 1.0)
                band += weight * (steepen_doubt(band) - band)

        in_bands(height, steepen_band)
        return full

    def _foreground(self, image: np.ndarray, small_image: np.ndarray, alpha: np.ndarray,
                    full_alpha: np.ndarray) -> np.ndarray:
        """Foreground colours: solved at the working size, the correction applied at full size.

        Only partly transparent pixels differ from the photo, and the old background's tint
        varies slowly, so a working-size solve carries the information at a bounded cost.
        """
        if self.uses_torch:
            from pipeline.torch_path.chain import foreground_on_device

            small = foreground_on_device(self.torch_device, small_image, alpha)
        else:
            small = estimate_foreground(small_image, alpha)
        if small.shape[:2] == image.shape[:2]:
            return small
        height, width = image.shape[:2]
        correction = small - small_image
        foreground = np.empty_like(image)  # copied band by band below: a 12 MP copy is ~0.1 s on one core

        def correct_band(top: int, bottom: int) -> None:
            foreground[top:bottom] = image[top:bottom]
            partial = (full_alpha[top:bottom] > 0.0) & (full_alpha[top:bottom] < 1.0)
            columns = np.flatnonzero(partial.any(axis=0))
            if columns.size == 0:
                return
            left, right = int(columns[0]), int(columns[-1]) + 1
            partial = partial[:, left:right]
            band = foreground[top:bottom, left:right]
            for channel in range(3):
                shift = resize_rows(correction[..., channel], width, height, top, bottom, left, right)
                band[..., channel] = np.where(partial, np.clip(band[..., channel] + shift, 0.0, 1.0), band[..., channel])

        in_bands(height, correct_band)
        return foreground

_default_pipeline: Pipeline | None = None
_default_lock = threading.Lock()


def at_size(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A photo or mask in [0, 1] at (height, width), bilinearly: itself when it is that size."""
    if array.shape[:2] == tuple(size):
        return array
    return np.clip(resize_float(array, size[1], size[0]), 0.0, 1.0)


def default_pipeline() -> Pipeline:
    global _default_pipeline
    with _default_lock:
        if _default_pipeline is None:
            _default_pipeline = Pipeline()
        return _default_pipeline


def cutout(image: np.ndarray, options: CutoutOptions = CutoutOptions()) -> CutoutResult:
    """Library entry point: cut the subject out of an (h, w, 3) RGB image in [0, 1]."""
    return default_pipeline().cutout(image, options)
