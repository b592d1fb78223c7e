"""Where ISNet is undecided deep inside what it drew, a second model's confident opinion decides.

ISNet sometimes draws a whole subject, or a large part of it, in mid grey: yarn strands, a shaggy
dog, a crowd of leaves (alphamatting.com GT27: 0.2-0.5 over most of the subject). The refinement
then has nothing confident to lean on and the grey part falls below the 0.5 cut. U²-Net-p, weaker
at outlines, is often sure about such regions. Its opinion is taken only where ISNet itself is
undecided (UNDECIDED_LOW <= mask < 0.5) at least UNDECIDED_DEPTH working-grid pixels from anything
ISNet calls background (so no outline and no neighbouring object next to the background moves),
and only where U²-Net-p is sure (>= SECOND_SURE); there the mask rises to U²-Net-p's value. And only
where that is a substantial part of the picture (MIN_RAISED_SHARE): scattered grey pixels inside a
subject are more often its own fine structure (a cage's mesh, a key's ring, measured on DIS5K dev:
0.0-0.6 % of those pictures, slightly worse) than a part ISNet could not decide (the yarn: 8.8 %).
Not asked where the person matte was heard: for a portrait that is the second opinion already
(on alphamatting.com's hair it would have asked U²-Net-p about hair it is not sure of).
Measured in docs/quality.md (session 16) on every development set.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from pipeline.edges import CONFIDENT_LOW

SECOND_OPINION_MODEL = "u2netp"
UNDECIDED_LOW = 0.15
UNDECIDED_DEPTH = 8
SECOND_SURE = 0.8
MIN_RAISED_SHARE = 0.01


def undecided(mask: np.ndarray, at_least: float = 0.0) -> np.ndarray:
    """(h, w) bool: ISNet's grey below its own cut, more than UNDECIDED_DEPTH px (Euclidean) from
    its confident background; nothing where even the grey is under `at_least` of the picture (the
    distance transform is then not worth its time)."""
    grey = (mask >= UNDECIDED_LOW) & (mask < 0.5)
    if not grey.any() or grey.mean() < at_least:
        return np.zeros_like(grey)
    background = mask <= CONFIDENT_LOW
    if not background.any():
        return grey
    return grey & (ndimage.distance_transform_edt(~background) > UNDECIDED_DEPTH)


def heed_second_opinion(mask: np.ndarray, second: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, float]:
    """The mask raised to `second` inside `region` where `second` is sure, if that is at least
    MIN_RAISED_SHARE of the picture; -> (mask, share of the picture raised: 0 where nothing was)."""
    raised = region & (second >= SECOND_SURE)
    if raised.mean() < MIN_RAISED_SHARE:
        return mask, 0.0
    return np.where(raised, np.maximum(mask, second), mask).astype(np.float32), float(raised.mean())
