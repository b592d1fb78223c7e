"""Alpha matting inside the trimap's unknown band.

Closed-form matting (Levin et al.) with one change that matters for automatic trimaps: a weak,
confidence-weighted prior towards the segmentation mask. Plain closed-form needs every unknown
pixel to be settled by the Laplacian alone, which fails (or drifts) when the unknown region is
huge; the prior keeps such regions near the model's opinion while the Laplacian still sharpens
edges and hair where the image has the evidence. The diagonal term also makes the system much
better conditioned, so conjugate gradients converge in fewer steps.

Given a trimap and no prior (a user's or a benchmark's trimap), the closed-form solution is
blended with KNN matting (pipeline.matting.knn), whose nonlocal errors differ from closed-form's
local ones. Either way, alpha within a few percent of 0 or 1 is snapped there.

Cost grows with the number of unknown pixels, so the solve runs at a working resolution capped
both by the long side and by an unknown-pixel budget (a 1 MP portrait whose band is a third of
the picture would otherwise cost ~5 s on two cores); the alpha is brought back to full size with
a guided filter on the full-resolution image. Closed-form only solves the band's bounding box.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse
from PIL import Image

from pipeline.blur import box_mean
from pipeline.matting.knn import knn_alpha
from pipeline.matting.system import unknown_system
from pipeline.matting.trimap import split_trimap
from pipeline.outputs.compose import subject_box
from pipeline.segment import resize_float

# The alphamatting.com set is solved at its own size (<= 800 px); a 1 MP photo is solved at
# ~0.5 MP and guided-filter upsampled, which keeps its matting under ~1 s on two cores.
DEFAULT_MAX_SIDE = 800
# Unknown pixels solved at most; beyond this the solve runs downscaled (~0.5 s on two cores).
# On the 27 alphamatting.com images (0.5 MP) 80k changes nothing (SAD mean 24.59 -> 24.56);
# 50k starts to cost detail on fine hair (GT02 1.3 -> 2.2).
DEFAULT_MAX_UNKNOWN = 80_000
# ichol's drop tolerance: 1e-3 halves the factorisation time of pymatting's 1e-4 default and
# changes the solution by < 1e-4 (CG then takes 7 steps instead of 3).
ICHOL_DISCARD = 1e-3
# Share of the nonlocal (KNN) solution in the unknown band when no model prior is given. Given
# the alphamatting.com Trimap1, closed-form alone scores SAD 5.31, KNN alone 5.57, two parts
# closed-form to one part KNN 5.08. With a model prior (the automatic pipeline) the prior is the
# second opinion: KNN there made the 27 worse (mean 24.6 -> 25.0, bonsai 79 -> 92) and slower.
NONLOCAL_WEIGHT = 1 / 3
# Alpha within this of 0 or 1 is a solver's residue, not translucency: snap it and stretch the
# rest (Trimap1 SAD 5.08 -> 4.87; leaves no faint haze over the background of a cutout).
SNAP = 0.03


def estimate_alpha(
    image: np.ndarray,
    trimap: np.ndarray,
    prior: np.ndarray | None = None,
    prior_weight: float = 1e-2,
    max_side: int = DEFAULT_MAX_SIDE,
    max_unknown: int | None = DEFAULT_MAX_UNKNOWN,
    nonlocal_weight: float | None = None,
    snap: float = SNAP,
) -> np.ndarray:
    """Estimate alpha in the unknown region of `trimap`.

    Parameters
    ----------
    image: (h, w, 3) RGB in [0, 1].
    trimap: (h, w) with 0 = background, 1 = foreground, anything else unknown.
    prior: optional (h, w) soft mask in [0, 1] that unknown pixels are weakly pulled towards.
    prior_weight: strength of that pull for a confident prior value (0 or 1); a prior value of 0.5
        pulls ten times less.
    max_side: solve at most at this long side; larger images are solved downscaled.
    max_unknown: solve at most this many unknown pixels (None: no budget); more are solved downscaled.
    nonlocal_weight: share of KNN matting blended into the closed-form solution (0: closed-form
        only; None: NONLOCAL_WEIGHT without a prior, 0 with one).
    snap: unknown alpha within this of 0 or 1 becomes 0 or 1, the range between is stretched.

    Returns
    -------
    (h, w) float32 alpha in [0, 1]; definite pixels keep their trimap value.
    """
    if image.shape[:2] != trimap.shape:
        raise ValueError(f"image {image.shape[:2]} and trimap {trimap.shape} differ in size")
    height, width = trimap.shape
    is_fg, is_bg, is_unknown = split_trimap(trimap)
    scale = min(1.0, max_side / max(height, width))
    if max_unknown:
        scale = min(scale, (max_unknown / max(int(is_unknown.sum()), 1)) ** 0.5)
    if nonlocal_weight is None:
        nonlocal_weight = NONLOCAL_WEIGHT if prior is None else 0.0
    if scale >= 1.0:
        alpha = _solve_at_working_size(image, trimap, prior, prior_weight, nonlocal_weight)
        return _snap(alpha, is_unknown, snap)

    small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
    small_image = np.clip(resize_float(image, small_w, small_h, Image.BILINEAR), 0, 1)
    small_trimap = resize_float(trimap, small_w, small_h, Image.NEAREST)
    small_prior = None if prior is None else resize_float(prior, small_w, small_h, Image.BILINEAR)
    small_alpha = _solve_at_working_size(small_image, small_trimap, small_prior, prior_weight, nonlocal_weight)
    upsampled = np.clip(resize_float(small_alpha, width, height, Image.BILINEAR), 0, 1)
    refined = guided_filter(image.mean(axis=2), upsampled, radius=max(2, round(2 / scale)), eps=1e-4)
    refined[is_fg] = 1.0
    refined[is_bg] = 0.0
    return _snap(np.clip(refined, 0.0, 1.0).astype(np.float32), is_unknown, snap)


def snap_values(values, snap: float):
    """Alpha within `snap` of 0 or 1 goes there, the rest is stretched; NumPy arrays or torch tensors."""
    return ((values - snap) / (1.0 - 2.0 * snap)).clip(0.0, 1.0)


def _snap(alpha: np.ndarray, is_unknown: np.ndarray, snap: float) -> np.ndarray:
    if snap > 0:
        alpha[is_unknown] = snap_values(alpha[is_unknown], snap)
    return alpha


def _solve_at_working_size(
    image: np.ndarray, trimap: np.ndarray, prior: np.ndarray | None, prior_weight: float, nonlocal_weight: float
) -> np.ndarray:
    """Closed-form in the band's bounding box, blended with KNN matting over the whole picture.

    The box (plus the 2 px the 3x3 windows reach) is exact for closed-form: pixels further away
    share no matting window with an unknown pixel. KNN looks for colour twins everywhere.
    """
    is_fg, is_bg, is_unknown = split_trimap(trimap)
    alpha = is_fg.astype(np.float32)
    if not is_unknown.any():
        return alpha
    if prior is None and not (is_fg.any() and is_bg.any()):
        raise ValueError("trimap has no definite foreground or no definite background")
    box = subject_box(is_unknown, margin=2, threshold=0.5)
    solved = _solve(box.apply(image), box.apply(trimap), None if prior is None else box.apply(prior), prior_weight)
    box.apply(alpha)[...] = solved
    if nonlocal_weight > 0:
        alpha = (1.0 - nonlocal_weight) * alpha + nonlocal_weight * knn_alpha(image, is_fg, is_unknown)
    return alpha


def _solve(
    image: np.ndarray, trimap: np.ndarray, prior: np.ndarray | None, prior_weight: float
) -> np.ndarray:
    from pymatting import cg, ichol, jacobi

    is_fg, is_bg, is_unknown = split_trimap(trimap)
    alpha = np.where(is_fg, 1.0, 0.0).astype(np.float64)
    if not is_unknown.any():
        return alpha.astype(np.float32)
    if prior is None:
        # Plain closed-form matting: the trimap alone constrains the solve.
        prior, prior_weight = np.full(trimap.shape, 0.5), 0.0
    laplacian_uu, pull = unknown_system(image, is_unknown, alpha, epsilon=1e-7)
    unknown_index = is_unknown.ravel()
    prior_u = prior.ravel()[unknown_index].astype(np.float64)
    # Confident prior values (near 0 or 1) pull harder than doubtful ones (near 0.5).
    weight = prior_weight * (0.9 * (2.0 * prior_u - 1.0) ** 2 + 0.1)
    system = (laplacian_uu + scipy.sparse.diags(weight + 1e-9)).tocsr()
    rhs = pull + weight * prior_u
    if prior_weight > 0:
        # The prior's diagonal makes the system well conditioned: Jacobi-preconditioned CG from
        # the prior reaches 1e-4 (mean change < 1e-3 of alpha) in less time than factorising.
        preconditioner, tolerance = jacobi(system), 1e-4
    else:
        preconditioner, tolerance = ichol(system, discard_threshold=ICHOL_DISCARD), 1e-6
    solution = cg(system, rhs, x0=prior_u, M=preconditioner, rtol=tolerance, maxiter=2000)
    alpha.ravel()[unknown_index] = np.clip(solution, 0.0, 1.0)
    return alpha.astype(np.float32)


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with a grey guide: edge-aware smoothing of `source` by `guide`."""
    guide = guide.astype(np.float32)
    source = source.astype(np.float32)
    mean_i = box_mean(guide, radius)
    mean_p = box_mean(source, radius)
    cov_ip = box_mean(guide * source, radius) - mean_i * mean_p
    var_i = box_mean(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_mean(a, radius) * guide + box_mean(b, radius)
