"""Automatic trimap from a soft mask: definite foreground, definite background, unknown band.

The band is not one fixed erosion: each pixel's band radius grows with how soft the mask is in
its neighbourhood, so crisp product edges get a thin band and hair or fur a wide one.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from pipeline.blur import gaussian_blur

UNKNOWN = 0.5
DEEP_CONFIDENT = 0.75
DEEP_FACTOR = 1.0  # beyond one band radius from the subject's edge: interior


def make_trimap(
    mask: np.ndarray,
    low: float = 0.05,
    high: float = 0.95,
    min_band: float = 0.004,
    max_band: float = 0.03,
) -> np.ndarray:
    """Build a trimap with values 0 (background), 0.5 (unknown) and 1 (foreground).

    Parameters
    ----------
    mask: (h, w) soft mask in [0, 1].
    low, high: mask values below/above which a pixel may be definite background/foreground.
    min_band, max_band: the band radius, as a fraction of the image diagonal, for the crispest
        and the softest neighbourhoods.

    Returns
    -------
    (h, w) float32 trimap.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    height, width = mask.shape
    diagonal = float(np.hypot(height, width))
    soft = ((mask > low) & (mask < high)).astype(np.float32)
    # Share of soft pixels around each pixel, normalised so the softest neighbourhood gets 1.
    softness = gaussian_blur(soft, 0.02 * diagonal)
    softness /= max(float(softness.max()), 1e-6)
    radius = (min_band + (max_band - min_band) * softness) * diagonal
    radius = np.maximum(radius, 1.0)
    inside = distance_to_outside(mask > high)
    outside = distance_to_outside(mask < low)
    trimap = np.full(mask.shape, UNKNOWN, dtype=np.float32)
    trimap[inside > radius] = 1.0
    # Deep inside the subject a fairly confident mask (faces, clothes at 0.8..0.95) is foreground:
    # the model's doubt there is not about an edge, and leaving it unknown lets the solve speckle it.
    deep = distance_to_outside(mask > 0.5)
    trimap[(mask > DEEP_CONFIDENT) & (deep > DEEP_FACTOR * radius)] = 1.0
    trimap[outside > radius] = 0.0
    return trimap


def distance_to_outside(region: np.ndarray) -> np.ndarray:
    """Distance from each pixel of `region` to the nearest pixel outside it, in pixels.

    The mean of the chessboard and taxicab chamfer distances: exact along the axes and at most
    12 % long in between (1.5 instead of 1.41 along diagonals), at a third of the Euclidean
    transform's cost; plenty for sizing a band of tens of pixels.
    """
    chessboard = ndimage.distance_transform_cdt(region, metric="chessboard")
    taxicab = ndimage.distance_transform_cdt(region, metric="taxicab")
    return 0.5 * (chessboard + taxicab).astype(np.float32)


def split_trimap(trimap: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (is_foreground, is_background, is_unknown) boolean masks."""
    is_fg = trimap > 0.9
    is_bg = trimap < 0.1
    return is_fg, is_bg, ~(is_fg | is_bg)


# Matting reaches this far (fraction of the picture's diagonal) around a soft zone.
SOFT_ZONE_REACH = 0.01


def make_soft_zone_trimap(mask: np.ndarray, soft_zone: np.ndarray, reach: float = SOFT_ZONE_REACH) -> np.ndarray:
    """A trimap whose unknown band covers only the mask's soft zones (hair, fur), not crisp outlines.

    Parameters
    ----------
    mask: (h, w) soft mask in [0, 1].
    soft_zone: (h, w) bool, the wide grey zones (pipeline.edges.split_soft_regions(...).matter).

    Returns
    -------
    (h, w) float32 trimap: 0.5 where make_trimap is unknown and a soft zone is near; elsewhere
    the mask cut at 0.5 (crisp outlines are settled at full resolution, not by matting).
    """
    diagonal = float(np.hypot(*mask.shape))
    near = distance_to_outside(~soft_zone) <= reach * diagonal
    unknown = (make_trimap(mask) == UNKNOWN) & near
    return np.where(unknown, UNKNOWN, (mask > 0.5).astype(np.float32)).astype(np.float32)
