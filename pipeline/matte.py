"""Alpha matting inside the trimap's unknown band.

Closed-form matting (Levin et al.) with one change that matters for automatic trimaps: a weak,
confidence-weighted prior towards the segmentation mask. Plain closed-form needs every unknown
pixel to be settled by the Laplacian alone, which fails (or drifts) when the unknown region is
huge; the prior keeps such regions near the model's opinion while the Laplacian still sharpens
edges and hair where the image has the evidence. The diagonal term also makes the system much
better conditioned, so conjugate gradients converge in fewer steps.

Big images are solved at a capped working resolution and the alpha is brought back to full size
with a guided filter on the full-resolution image, so the cost stays bounded.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse
from PIL import Image
from scipy import ndimage

from pipeline.segment import resize_float
from pipeline.trimap import split_trimap

DEFAULT_MAX_SIDE = 1024


def estimate_alpha(
    image: np.ndarray,
    trimap: np.ndarray,
    prior: np.ndarray | None = None,
    prior_weight: float = 1e-2,
    max_side: int = DEFAULT_MAX_SIDE,
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

    Returns
    -------
    (h, w) float32 alpha in [0, 1]; definite pixels keep their trimap value.
    """
    if image.shape[:2] != trimap.shape:
        raise ValueError(f"image {image.shape[:2]} and trimap {trimap.shape} differ in size")
    height, width = trimap.shape
    scale = min(1.0, max_side / max(height, width))
    if scale >= 1.0:
        return _solve(image, trimap, prior, prior_weight)

    small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
    small_image = np.clip(resize_float(image, small_w, small_h, Image.BILINEAR), 0, 1)
    small_trimap = resize_float(trimap, small_w, small_h, Image.NEAREST)
    small_prior = None if prior is None else resize_float(prior, small_w, small_h, Image.BILINEAR)
    small_alpha = _solve(small_image, small_trimap, small_prior, prior_weight)
    upsampled = np.clip(resize_float(small_alpha, width, height, Image.BILINEAR), 0, 1)
    refined = guided_filter(image.mean(axis=2), upsampled, radius=max(2, round(2 / scale)), eps=1e-4)
    is_fg, is_bg, _ = split_trimap(trimap)
    refined[is_fg] = 1.0
    refined[is_bg] = 0.0
    return np.clip(refined, 0.0, 1.0).astype(np.float32)


def _solve(
    image: np.ndarray, trimap: np.ndarray, prior: np.ndarray | None, prior_weight: float
) -> np.ndarray:
    from pymatting import cf_laplacian, cg, ichol

    is_fg, is_bg, is_unknown = split_trimap(trimap)
    alpha = np.where(is_fg, 1.0, 0.0).astype(np.float64)
    if not is_unknown.any():
        return alpha.astype(np.float32)
    if prior is None:
        # Plain closed-form matting: the trimap alone constrains the solve.
        if not (is_fg.any() and is_bg.any()):
            raise ValueError("trimap has no definite foreground or no definite background")
        prior, prior_weight = np.full(trimap.shape, 0.5), 0.0
    is_known = ~is_unknown
    laplacian = cf_laplacian(image.astype(np.float64), epsilon=1e-7, radius=1, is_known=is_known)
    unknown_index = is_unknown.ravel()
    known_index = is_known.ravel()
    laplacian_uu = laplacian[unknown_index][:, unknown_index]
    laplacian_uk = laplacian[unknown_index][:, known_index]
    prior_u = prior.ravel()[unknown_index].astype(np.float64)
    # Confident prior values (near 0 or 1) pull harder than doubtful ones (near 0.5).
    weight = prior_weight * (0.9 * (2.0 * prior_u - 1.0) ** 2 + 0.1)
    system = (laplacian_uu + scipy.sparse.diags(weight + 1e-9)).tocsr()
    rhs = -laplacian_uk.dot(alpha.ravel()[known_index]) + weight * prior_u
    solution = cg(system, rhs, x0=prior_u, M=ichol(system), rtol=1e-6, maxiter=2000)
    alpha.ravel()[unknown_index] = np.clip(solution, 0.0, 1.0)
    return alpha.astype(np.float32)


def box_mean(array: np.ndarray, radius: int) -> np.ndarray:
    return ndimage.uniform_filter(array, size=2 * radius + 1, mode="reflect")


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
