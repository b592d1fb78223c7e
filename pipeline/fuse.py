"""Fuse a second model's opinion into the main mask without importing neighbouring objects.

Opt-in (CutoutOptions.assist_model): on the development sets no rule we found tells a part of
the subject that ISNet missed (a plush toy's arm) from a separate object that merely touches it
(a table under a laptop, bins beside a bicycle stand) well enough to be a default; see
docs/quality.md for the measurements.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

# ISNet's background is very clean (mean ~1e-4); a region where it shows a faint response over
# much of its area is one it half-saw ("ghost"), not one it confidently rejected. Measured on the
# union of all regions U^2-Net-p would add: rescued plush/plant parts of the alphamatting.com set
# had 39-100 % of their pixels above 0.01, whole neighbouring objects in DIS5K 1-14 %.
GHOST_LEVEL = 0.01
MIN_GHOST_SHARE = 0.3
# Added regions rank below ISNet's own confident pixels (so max-F thresholds above this still
# see ISNet alone) and stay above 0.5 (so a cut at 0.5 includes them).
ADDED_CEILING = 0.6
# The local colour test: a region joins the subject only if its colours look more like the
# subject's next to it than like the background's next to it (within RING px). Measured: every
# DIS5K region the ghost test let through (a key ring's table, a cage's floor, playground sand)
# looked like the nearby background; the rescued plush/plant parts like the nearby subject.
RING = 25
COLOUR_BINS = 8


def colour_histogram(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Normalised 8x8x8 RGB histogram of the region's pixels."""
    index = (np.clip(image[region], 0.0, 0.999) * COLOUR_BINS).astype(np.int64)
    flat = (index[:, 0] * COLOUR_BINS + index[:, 1]) * COLOUR_BINS + index[:, 2]
    counts = np.bincount(flat, minlength=COLOUR_BINS ** 3).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def looks_like_subject(image: np.ndarray, region: np.ndarray, subject: np.ndarray, background: np.ndarray) -> bool:
    """Bhattacharyya similarity of the region's colours to the subject and background around it."""
    near = ndimage.binary_dilation(region, iterations=RING) & ~ndimage.binary_dilation(region, iterations=2)
    subject_ring, background_ring = subject & near, background & near & ~region
    if subject_ring.sum() < 20:
        return False
    colours = colour_histogram(image, region)
    to_subject = float(np.sqrt(colours * colour_histogram(image, subject_ring)).sum())
    if background_ring.sum() < 20:
        return True
    return to_subject > float(np.sqrt(colours * colour_histogram(image, background_ring)).sum())


def fuse_masks(main: np.ndarray, assist: np.ndarray, image: np.ndarray | None = None, reach: int = 5,
               min_area: float = 0.02, min_confidence: float = 0.7) -> np.ndarray:
    """Add what `assist` sees beyond `main` where it is attached to `main`'s subject and half-seen by it.

    Parameters
    ----------
    main, assist: (h, w) soft masks in [0, 1].
    image: (h, w, 3) RGB in [0, 1]; when given, a region must also look like the subject beside it.
    reach: pixels the kept region may extend past the connected component (soft edges).
    min_area: fraction of the image the added foreground must cover to be used at all.
    min_confidence: median assist-mask value the added foreground must reach.

    Returns
    -------
    (h, w) float32 fused mask in [0, 1].
    """
    if main.shape != assist.shape:
        raise ValueError(f"mask shapes differ: {main.shape} vs {assist.shape}")
    main = main.astype(np.float32)
    extra = np.maximum(assist - main, 0.0)
    labels, count = ndimage.label(np.maximum(main, assist) > 0.5)
    if count == 0:
        return main
    attached = np.zeros(count + 1, dtype=bool)
    attached[np.unique(labels[main > 0.5])] = True
    attached[0] = False
    reachable = ndimage.binary_dilation(attached[labels], iterations=reach)
    candidates, candidate_count = ndimage.label((main + extra * reachable > 0.5) & (main <= 0.5))
    if candidate_count == 0:
        return main
    ghost_share = ndimage.mean((main > GHOST_LEVEL).astype(np.float32), candidates, np.arange(1, candidate_count + 1))
    keep = np.concatenate([[False], np.asarray(ghost_share) >= MIN_GHOST_SHARE])
    if image is not None:
        subject, background = main > 0.5, main < 0.1
        for index, box in enumerate(ndimage.find_objects(candidates), start=1):
            if not keep[index]:
                continue
            window = tuple(slice(max(0, part.start - RING - 3), part.stop + RING + 3) for part in box)
            keep[index] = looks_like_subject(image[window], candidates[window] == index, subject[window],
                                             background[window])
    half_seen = keep[candidates]
    # Within a region, only the part near ISNet's faint response: a missed arm can touch a table.
    half_seen &= ndimage.binary_dilation(main > GHOST_LEVEL, iterations=2 * reach)
    if float(half_seen.mean()) < min_area or float(np.median(assist[half_seen])) < min_confidence:
        return main
    zone = ndimage.binary_dilation(half_seen, iterations=reach) & reachable
    added = np.minimum(main + extra * zone, np.maximum(main, ADDED_CEILING))
    return np.clip(added, 0.0, 1.0).astype(np.float32)
