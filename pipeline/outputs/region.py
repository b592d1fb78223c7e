"""remove.bg's region of interest and subject placement, applied to a cutout.

roi "x1 y1 x2 y2": only what lies inside the rectangle can be the subject; everything outside
is background. The model runs on the rectangle alone (so the subject is found among what the
caller pointed at), and the result is put back on the photo's own canvas.
"""
from __future__ import annotations

import math

import numpy as np

from pipeline.outputs.compose import Box
from pipeline.cutout import CutoutResult
from pipeline.outputs.placement import place_like_remove_bg

Coordinate = tuple[float, bool]  # (value, is a percentage)


def parse_roi(text: str) -> tuple[Coordinate, Coordinate, Coordinate, Coordinate]:
    """'x1 y1 x2 y2', each 'N px', 'Npx', 'N%' or a bare number of pixels. Raises ValueError."""
    parts = text.strip().lower().split()
    if len(parts) != 4:
        raise ValueError("roi needs four values: x1 y1 x2 y2 (e.g. '10% 10% 90% 90%' or '0px 0px 400px 300px')")
    coordinates = []
    for part in parts:
        percent = part.endswith("%")
        try:
            value = float(part[:-1] if percent else part.removesuffix("px"))
        except ValueError:
            raise ValueError(f"not a roi coordinate: {part[:20]!r}") from None
        if not math.isfinite(value) or value < 0 or (percent and value > 100):
            raise ValueError(f"roi coordinates are 0..100% or 0 px and up: {part[:20]!r}")
        coordinates.append((value, percent))
    (x1, _), (y1, _), (x2, _), (y2, _) = coordinates
    if coordinates[0][1] == coordinates[2][1] and x2 <= x1 or coordinates[1][1] == coordinates[3][1] and y2 <= y1:
        raise ValueError("roi: x2 must be right of x1 and y2 below y1")
    return tuple(coordinates)  # type: ignore[return-value]


def roi_box(roi: tuple[Coordinate, ...], width: int, height: int) -> Box:
    """The rectangle in pixels of a width x height photo, clipped to it; ValueError when nothing is left."""
    def pixels(coordinate: Coordinate, side: int) -> int:
        value, percent = coordinate
        return min(side, max(0, round(value * side / 100 if percent else value)))

    left, top = pixels(roi[0], width), pixels(roi[1], height)
    right, bottom = pixels(roi[2], width), pixels(roi[3], height)
    if right - left < 2 or bottom - top < 2:
        raise ValueError(f"the roi leaves no part of the {width}x{height} photo")
    return Box(top, left, bottom, right)


def back_on_photo(result: CutoutResult, photo: np.ndarray, box: Box) -> CutoutResult:
    """A cutout of the region `box` of `photo`, put back on the whole photo (clear outside the box)."""
    alpha = np.zeros(photo.shape[:2], np.float32)
    alpha[box.top:box.bottom, box.left:box.right] = result.alpha
    mask = np.zeros(photo.shape[:2], np.float32)
    mask[box.top:box.bottom, box.left:box.right] = result.mask
    foreground = photo.astype(np.float32, copy=True)
    foreground[box.top:box.bottom, box.left:box.right] = result.foreground
    return CutoutResult(image=photo, mask=mask, alpha=alpha, foreground=foreground, timings=result.timings,
                        notes=result.notes)


def moved_subject(result: CutoutResult, scale: float | None, position: tuple[float, float] | None) -> CutoutResult:
    """remove.bg's scale / position: the subject resized and moved on the photo's own canvas.

    The photo behind a moved subject has no meaning, so `image` holds the moved subject itself
    (the API offers no blurred-original background; colours and images are laid behind as usual).
    """
    placed = place_like_remove_bg(result.foreground, result.alpha, scale, position)
    return CutoutResult(image=placed.foreground, mask=placed.alpha, alpha=placed.alpha,
                        foreground=placed.foreground, timings=result.timings, notes=result.notes)
