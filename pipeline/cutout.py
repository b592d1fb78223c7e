"""The chain: image -> segment -> (colour prior) -> trimap -> matte -> foreground -> Result."""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from models import ensure_model, get_spec
from models.specs import DEFAULT_MODEL
from pipeline.colour_prior import refine_mask_with_colour
from pipeline.device import resolve_device
from pipeline.foreground import estimate_foreground
from pipeline.fuse import fuse_masks
from pipeline.matte import DEFAULT_MAX_SIDE, estimate_alpha
from pipeline.segment import Segmenter
from pipeline.trimap import make_trimap

log = logging.getLogger(__name__)

DEFAULT_ASSIST_MODEL = "u2netp"
# Below this share of soft (0.1..0.9) pixels a mask counts as crisp; measured on the 27
# alphamatting.com images: the one crisp mask (0.6 %) lost quality to matting, all others gained.
CRISP_MASK_SOFT_FRACTION = 0.008
# ISNet runs with its long side at the native 1024 and the photo's own aspect ratio
# (pipeline/segment.py). CUTOUT_SEGMENT_SIDE=768 shrinks that long side: ~1 s faster on two
# cores, but the 27 alphamatting.com images lose (automatic SAD mean 24.6 -> 27.0 at 768^2; at
# 896^2 the teddy's sweater goes 69 -> 143), so it is a speed-for-quality switch, not the default.


def default_segment_side() -> int | None:
    configured = os.environ.get("CUTOUT_SEGMENT_SIDE")
    return int(configured) if configured else None


def default_keep_aspect() -> bool:
    """CUTOUT_SEGMENT_SHAPE=square stretches every photo to the model's square, as it was trained."""
    return os.environ.get("CUTOUT_SEGMENT_SHAPE", "photo").lower() != "square"


@dataclass(frozen=True)
class CutoutOptions:
    """What the pipeline does to one image.

    assist_model: a second, different model whose mask is fused in (see pipeline.fuse): ISNet
        and U^2-Net-p miss different parts of hard subjects (plants, yarn, plush). None disables it.
    colour_prior: settle mid-grey mask regions with the photo's own colours.
    matting: refine edges with closed-form matting in an automatic trimap's unknown band.
    """

    model: str = DEFAULT_MODEL
    assist_model: str | None = DEFAULT_ASSIST_MODEL
    colour_prior: bool = True
    matting: bool = True
    foreground: bool = True
    matting_max_side: int = DEFAULT_MAX_SIDE


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
                 keep_aspect: bool | None = None) -> None:
        """segment_side: long side of the segmentation input, below the model's native side (None: native).

        keep_aspect: segment at the photo's aspect ratio rather than the stretched square (None: default).
        """
        self.model_dir = model_dir
        self.cache_dir = cache_dir
        self.threads = threads
        self.device = resolve_device(device)
        self.segment_side = segment_side or default_segment_side()
        self.keep_aspect = default_keep_aspect() if keep_aspect is None else keep_aspect
        self._segmenters: dict[str, Segmenter] = {}
        self._lock = threading.Lock()

    @property
    def uses_torch(self) -> bool:
        return self.device in ("cuda", "torch-cpu")

    def segmenter(self, name: str) -> Segmenter:
        with self._lock:
            if name not in self._segmenters:
                spec = get_spec(name)
                path = ensure_model(spec, self.model_dir, self.cache_dir)
                if self.uses_torch:
                    from pipeline.segment_torch import TorchSegmenter

                    self._segmenters[name] = TorchSegmenter(spec, path, "cuda" if self.device == "cuda" else "cpu")
                else:
                    self._segmenters[name] = Segmenter(spec, path, self.threads, input_side=self.segment_side,
                                                         keep_aspect=self.keep_aspect)
            return self._segmenters[name]

    def warm_up(self, options: CutoutOptions = CutoutOptions()) -> None:
        """Load every model `options` needs, so the first user does not wait for it."""
        self.segmenter(options.model)
        if options.assist_model:
            self.segmenter(options.assist_model)

    def cutout(self, image: np.ndarray, options: CutoutOptions = CutoutOptions()) -> CutoutResult:
        return self.cutout_batch([image], options)[0]

    def cutout_batch(self, images: list[np.ndarray], options: CutoutOptions = CutoutOptions()) -> list[CutoutResult]:
        """Cut out several images; segmentation runs as one batch (one forward pass on a GPU)."""
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"expected an (h, w, 3) RGB image, got shape {image.shape}")
        images = [np.clip(image, 0.0, 1.0).astype(np.float32) for image in images]
        started = time.perf_counter()
        masks = self._predict_all(options.model, images)
        fused = masks
        if options.assist_model:
            assists = self._predict_all(options.assist_model, images)
            fused = [fuse_masks(mask, assist) for mask, assist in zip(masks, assists)]
        seconds = (time.perf_counter() - started) / len(images)
        return [self._refine(image, mask, alpha, options, {"segment": seconds})
                for image, mask, alpha in zip(images, masks, fused)]

    def _predict_all(self, name: str, images: list[np.ndarray]) -> list[np.ndarray]:
        segmenter = self.segmenter(name)
        if hasattr(segmenter, "predict_batch"):
            return segmenter.predict_batch(images)
        return [segmenter.predict(image) for image in images]

    def _refine(self, image: np.ndarray, mask: np.ndarray, alpha: np.ndarray, options: CutoutOptions,
                timings: dict[str, float]) -> CutoutResult:
        notes: list[str] = []
        crisp = float(((alpha > 0.1) & (alpha < 0.9)).mean()) < CRISP_MASK_SOFT_FRACTION
        if crisp and (options.colour_prior or options.matting):
            # A nearly binary mask means hard edges (products, objects): matting would only soften them.
            notes.append("mask already crisp: kept as is, no colour prior or matting")
            options = replace(options, colour_prior=False, matting=False)

        if options.colour_prior:
            started = time.perf_counter()
            alpha, reliability = refine_mask_with_colour(image, alpha)
            timings["colour_prior"] = time.perf_counter() - started
            if reliability < 0.2:
                notes.append(f"colour prior barely used: colours do not separate subject (reliability {reliability:.2f})")

        if options.matting:
            started = time.perf_counter()
            try:
                trimap = make_trimap(alpha)
                if self.uses_torch:
                    alpha = self._matte_torch(image, trimap, alpha)
                else:
                    alpha = estimate_alpha(image, trimap, prior=alpha, max_side=options.matting_max_side)
            except (ValueError, MemoryError, ArithmeticError) as error:
                # Not silent: the job records that this cutout is the model's mask, and why.
                notes.append(f"matting skipped, model mask used: {error}")
                log.warning("matting skipped: %s", error)
            timings["matte"] = time.perf_counter() - started

        if options.foreground:
            started = time.perf_counter()
            foreground = self._foreground_torch(image, alpha) if self.uses_torch else estimate_foreground(image, alpha)
            timings["foreground"] = time.perf_counter() - started
        else:
            foreground = image
        return CutoutResult(image, mask, alpha.astype(np.float32), foreground, timings, notes)

    def _torch_device(self):
        import torch

        return torch.device("cuda" if self.device == "cuda" else "cpu")

    def _matte_torch(self, image: np.ndarray, trimap: np.ndarray, prior: np.ndarray) -> np.ndarray:
        import torch

        from pipeline.matte_torch import estimate_alpha_torch

        device = self._torch_device()
        as_tensor = lambda array: torch.from_numpy(np.ascontiguousarray(array)).to(device)
        alpha = estimate_alpha_torch(as_tensor(image.transpose(2, 0, 1)), as_tensor(trimap), as_tensor(prior))
        return alpha.cpu().numpy()

    def _foreground_torch(self, image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        import torch

        from pipeline.matte_torch import estimate_foreground_torch

        device = self._torch_device()
        foreground = estimate_foreground_torch(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).to(device),
                                               torch.from_numpy(np.ascontiguousarray(alpha)).to(device))
        return foreground.cpu().numpy().transpose(1, 2, 0).astype(np.float32)


_default_pipeline: Pipeline | None = None
_default_lock = threading.Lock()


def default_pipeline() -> Pipeline:
    global _default_pipeline
    with _default_lock:
        if _default_pipeline is None:
            _default_pipeline = Pipeline()
        return _default_pipeline


def cutout(image: np.ndarray, options: CutoutOptions = CutoutOptions()) -> CutoutResult:
    """Library entry point: cut the subject out of an (h, w, 3) RGB image in [0, 1]."""
    return default_pipeline().cutout(image, options)
