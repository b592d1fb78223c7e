"""Which parts of a soft mask are a crisp outline and which are soft matter (hair, fur, fuzz).

A segmentation mask is mid-grey for two different reasons. Along the outline of a solid object
the mask steps from 0 to 1 over a pixel or two of the network's grid: that greyness is only
resolution, and the true edge is hard. Over hair, fur or a fuzzy plant the mask stays mid-grey
across a wide zone: that is real partial coverage (or real doubt), where matting has work to do.
The width of the grey zone, measured from the nearest confident pixel on each side, tells them
apart without knowing what the photo shows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

CONFIDENT_LOW = 0.05
CONFIDENT_HIGH = 0.95
# A grey pixel with confident background and confident foreground both within this many
# working-size pixels (measured along the grid: a bilinear step of ISNet's output is 2-3 px
# wide) is part of an outline, not of a soft zone.
TRANSITION_WIDTH = 4
# How steep the outline is made: the monotone map 0.5 + 0.5 tanh(k (a - 0.5)) / tanh(k / 2).
# Monotone, so thresholds and rankings (IoU, max F) are kept while grey residue goes.
SHARPNESS = 4.0
# The 8-bit values either side of the 0.5 cut: what keep_model_side leaves a flipped pixel at.
SIDE_FLOOR = 128 / 255
SIDE_CEILING = 127 / 255


@dataclass
class SoftRegions:
    transition: np.ndarray  # (h, w) bool: grey pixels of a crisp outline
    matter: np.ndarray  # (h, w) bool: grey pixels of a wide soft zone

    @property
    def matter_share(self) -> float:
        return float(self.matter.mean())


def split_soft_regions(mask: np.ndarray, width: int = TRANSITION_WIDTH) -> SoftRegions:
    """Classify a soft mask's grey pixels into outline transitions and soft matter.

    Parameters
    ----------
    mask: (h, w) soft mask in [0, 1] at working resolution.
    width: the widest grey step (confident bg to confident fg, in pixels) that counts as an outline.
    """
    soft = (mask > CONFIDENT_LOW) & (mask < CONFIDENT_HIGH)
    if not (mask >= CONFIDENT_HIGH).any() or not (mask <= CONFIDENT_LOW).any():
        # No confident side to step to: the grey is doubt, not an outline (and the distance
        # transforms below would answer -1 everywhere).
        return SoftRegions(transition=np.zeros(mask.shape, dtype=bool), matter=soft)
    to_fg = ndimage.distance_transform_cdt(mask < CONFIDENT_HIGH, metric="chessboard")
    to_bg = ndimage.distance_transform_cdt(mask > CONFIDENT_LOW, metric="chessboard")
    transition = soft & (to_fg + to_bg <= width)
    return SoftRegions(transition=transition, matter=soft & ~transition)


def sharpen(alpha: np.ndarray, sharpness: float = SHARPNESS) -> np.ndarray:
    """The monotone steepening used on crisp outlines: 0 -> 0, 0.5 -> 0.5, 1 -> 1."""
    return (0.5 + 0.5 * np.tanh(sharpness * (alpha - 0.5)) / np.tanh(sharpness / 2)).astype(np.float32)


def steepen_doubt(alpha: np.ndarray, sharpness: float = SHARPNESS) -> np.ndarray:
    """Steepen values inside (CONFIDENT_LOW, CONFIDENT_HIGH) towards those bounds, never past them.

    For soft zones the colours could not settle: the model's doubt becomes more decided, yet no
    doubtful pixel overtakes a confident one, so every ranking (max F at 256 thresholds) is kept;
    a steepening over the whole range ties confident values into the end bins (SOD max F -0.008).
    """
    out = alpha.astype(np.float32, copy=True)
    inside = (out > CONFIDENT_LOW) & (out < CONFIDENT_HIGH)
    span = CONFIDENT_HIGH - CONFIDENT_LOW
    out[inside] = CONFIDENT_LOW + span * sharpen((out[inside] - CONFIDENT_LOW) / span, sharpness)
    return out


# Confident pixels this many working-grid pixels away from any doubt are settled to exactly 0 or 1.
SETTLED_DEPTH = 2
# Subject pixels (>= 0.5) this many working-grid pixels inside the outline are settled to exactly 1
# (the gate: alphamatting.com SAD 37.63 -> 35.13, SOD dev MAE .1075 -> .1055, DIS5K dev .0208 ->
# .0202, no photo >10 % worse than before; max F ties a little; 16 px gains less; docs/quality.md).
# Measured as a Euclidean distance: a chessboard reach left a grey square around every speck the
# model put below 0.5 inside a doubtful subject (a sweater's texture), so cutouts showed rectangles.
# The background side is left alone: its faint values are strands and hair tips far from the
# cut (alphamatting.com worse) and other objects' ghosts (SOD dev max F .880 -> .852).
SOLID_DEPTH = 8


def keep_model_side(matted: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The matte's values, never on the other side of 0.5 than the model's mask.

    Matting knows colours, the model knows objects. Where they disagree about which side a pixel
    is on, the model was right more often on the development photos (SOD dev: the matte moved the
    0.5 crossing the wrong way on 20 photos, the right way on 4), so the matte may only say how
    much of the pixel is covered within the side the model chose: a pixel the model calls subject
    stays at least half covered (PNG 128), one it calls background at most 127/255.
    """
    subject = mask >= 0.5
    return np.where(subject, np.maximum(matted, SIDE_FLOOR), np.minimum(matted, SIDE_CEILING)).astype(np.float32)


def settle_confident_interiors(alpha: np.ndarray, depth: int = SETTLED_DEPTH,
                               solid_depth: int = SOLID_DEPTH) -> np.ndarray:
    """Exactly 1 inside the subject and 0 in the background, away from the outline.

    The model says 0.97 or 0.99 deep inside a bottle; shipped as is, the product would be 3 %
    see-through (PNG alpha 247). Pixels next to the outline keep their values: that is where
    the ranking of values carries information (max F). The subject is also solid wherever it is
    more than `solid_depth` pixels (Euclidean) inside its outline (the 0.5 cut), however unsure
    the model was there (a doll's dress at 0.88): partial cover belongs to outlines and strands,
    which are within that reach of the background.
    """
    settled = alpha.astype(np.float32, copy=True)
    inside = ndimage.distance_transform_cdt(alpha >= CONFIDENT_HIGH, metric="chessboard") > depth
    outside = ndimage.distance_transform_cdt(alpha <= CONFIDENT_LOW, metric="chessboard") > depth
    subject = alpha >= 0.5
    # No pixel below the cut: nothing to measure from, so nothing more settles (as cdt's -1 does above).
    solid = ndimage.distance_transform_edt(subject) > solid_depth if not subject.all() else np.zeros_like(subject)
    settled[inside | solid] = 1.0
    settled[outside] = 0.0
    return settled
