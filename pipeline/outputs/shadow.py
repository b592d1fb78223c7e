"""A soft contact shadow: the subject standing on a surface, the shade only below it.

Unlike compose.drop_shadow (the whole silhouette cast down and to the right), a contact shadow
is a flat, blurred band under the subject's footprint, so a product on white reads as standing
on the table and nothing darkens beside or above it.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from pipeline.outputs.placement import VISUAL_THRESHOLD

FOOTPRINT_SHARE = 0.04  # the lowest 4 % of the subject's height is what touches the ground


def contact_shadow(alpha: np.ndarray, opacity: float = 0.35, spread: float = 0.05) -> np.ndarray:
    """(h, w) shadow strength in [0, opacity], zero on every row above the subject's lowest visible row.

    alpha: the subject as placed on the canvas. spread: the shadow's horizontal softness as a
    fraction of the subject's width (its depth below the subject is a third of that).
    """
    seen_rows = np.flatnonzero((alpha > VISUAL_THRESHOLD).any(axis=1))
    shadow = np.zeros(alpha.shape, np.float32)
    if seen_rows.size == 0:
        return shadow
    top, bottom = int(seen_rows[0]), int(seen_rows[-1])
    band = alpha[max(top, bottom - max(1, round(FOOTPRINT_SHARE * (bottom - top + 1)))):bottom + 1]
    footprint = band.max(axis=0)
    seen_cols = np.flatnonzero(footprint > VISUAL_THRESHOLD)
    width = int(seen_cols[-1] - seen_cols[0] + 1)
    sigma_x = max(1.0, spread * width)
    sigma_y = max(1.0, sigma_x / 3)
    # A blurred line is separable: the footprint blurred along the row times a Gaussian falloff
    # downwards, which costs two 1-D passes instead of a 2-D blur of the canvas.
    across = ndimage.gaussian_filter1d(footprint.astype(np.float32), sigma_x, mode="constant")
    rows = min(alpha.shape[0] - bottom, int(4 * sigma_y) + 1)
    down = np.exp(-0.5 * (np.arange(rows, dtype=np.float32) / sigma_y) ** 2)
    peak = float(across.max())
    if peak > 0:
        shadow[bottom:bottom + rows] = np.outer(down, across) * (opacity / peak)
    return shadow
