"""Where a cut-out subject goes on a new canvas: its visual box, a scale rule, a position.

Pure: float arrays in [0, 1] in, canvas-sized arrays out. The subject is measured by its visual
bounding box (alpha above VISUAL_THRESHOLD), not by the photo it came from, so a product shot on
a wide table and one shot close up end up the same size on the canvas.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipeline.outputs import compose
from pipeline.segment import resize_float

# Alpha above this counts as "seen": faint matting haze around the subject does not widen its box.
VISUAL_THRESHOLD = 0.05
FITS = ("fit", "fill")
# Named positions, as fractions of the free space (0 = left/top edge, 1 = right/bottom edge), the
# way CSS background-position and remove.bg's position="x% y%" read them.
NAMED_POSITIONS = {"center": (0.5, 0.5), "bottom": (0.5, 1.0), "top": (0.5, 0.0)}


@dataclass(frozen=True)
class Placed:
    """A subject on a canvas: foreground (H, W, 3), alpha (H, W), and its scaled visual box."""

    foreground: np.ndarray
    alpha: np.ndarray
    left: int
    top: int
    width: int
    height: int


def visual_box(alpha: np.ndarray) -> compose.Box:
    return compose.subject_box(alpha, margin=0, threshold=VISUAL_THRESHOLD)


def parse_position(text: str) -> tuple[float, float]:
    """'center' | 'bottom' | 'top' | 'x%' | 'x% y%' -> (x, y) fractions in [0, 1]. Raises ValueError."""
    word = text.strip().lower()
    if word in NAMED_POSITIONS:
        return NAMED_POSITIONS[word]
    parts = word.split()
    if not 1 <= len(parts) <= 2 or not all(part.endswith("%") for part in parts):
        raise ValueError(f"not a position: {text[:40]!r} (center, bottom, top, 'x%' or 'x% y%')")
    try:
        values = [float(part[:-1]) for part in parts]
    except ValueError:
        raise ValueError(f"not a position: {text[:40]!r}") from None
    if not all(math.isfinite(v) and 0 <= v <= 100 for v in values):
        raise ValueError(f"position percentages must be 0%..100%: {text[:40]!r}")
    return values[0] / 100, values[-1] / 100


def place_in_box(
    foreground: np.ndarray,
    alpha: np.ndarray,
    canvas: tuple[int, int],
    box: tuple[int, int, int, int],
    position: tuple[float, float] = (0.5, 0.5),
    fit: str = "fit",
    scale_limits: tuple[float, float] = (0.0, math.inf),
) -> Placed:
    """Scale the subject's visual box into `box` (x, y, w, h) on a (width, height) canvas.

    fit: the whole subject inside the box; fill: the box covered, the subject cut at the canvas
    edge. The scale is clipped to `scale_limits`; `position` places the scaled subject in the
    box's free space (a subject larger than its box overhangs it evenly, then is clipped).
    """
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}")
    visual = visual_box(alpha)
    subject_fg, subject_alpha = visual.apply(foreground), visual.apply(alpha)
    box_x, box_y, box_w, box_h = box
    sub_h, sub_w = subject_alpha.shape
    pick = min if fit == "fit" else max
    scale = float(np.clip(pick(box_w / sub_w, box_h / sub_h), *scale_limits))
    new_w, new_h = max(1, round(sub_w * scale)), max(1, round(sub_h * scale))
    left = box_x + math.floor(position[0] * (box_w - new_w))
    top = box_y + math.floor(position[1] * (box_h - new_h))
    return paste(subject_fg, subject_alpha, canvas, left, top, new_w, new_h)


def paste(subject_fg: np.ndarray, subject_alpha: np.ndarray, canvas: tuple[int, int],
          left: int, top: int, new_w: int, new_h: int) -> Placed:
    """The subject resized to new_w x new_h with its top-left at (left, top), clipped to the canvas."""
    width, height = canvas
    scaled_fg = np.clip(resize_float(subject_fg, new_w, new_h, Image.BICUBIC), 0, 1)
    scaled_alpha = np.clip(resize_float(subject_alpha, new_w, new_h, Image.BICUBIC), 0, 1)
    canvas_fg = np.zeros((height, width, 3), np.float32)
    canvas_alpha = np.zeros((height, width), np.float32)
    src_top, src_left = max(0, -top), max(0, -left)
    dst_top, dst_left = max(0, top), max(0, left)
    rows = min(new_h - src_top, height - dst_top)
    cols = min(new_w - src_left, width - dst_left)
    if rows > 0 and cols > 0:
        canvas_fg[dst_top:dst_top + rows, dst_left:dst_left + cols] = scaled_fg[src_top:src_top + rows, src_left:src_left + cols]
        canvas_alpha[dst_top:dst_top + rows, dst_left:dst_left + cols] = scaled_alpha[src_top:src_top + rows, src_left:src_left + cols]
    return Placed(canvas_fg, canvas_alpha, left, top, new_w, new_h)


def margin_pixels(margin: float, canvas: tuple[int, int]) -> int:
    """A margin given as a fraction of the canvas's shorter side (< 1) or in pixels (>= 1)."""
    return int(round(margin)) if margin >= 1 else round(margin * min(canvas))


def place_with_margin(
    foreground: np.ndarray,
    alpha: np.ndarray,
    canvas: tuple[int, int],
    margin: float,
    position: tuple[float, float] = (0.5, 0.5),
    fit: str = "fit",
) -> Placed:
    """The subject in the canvas less an even margin on every side.

    A subject the photo cut at its bottom edge (a half-length portrait) that is anchored at the
    bottom stands on the canvas's bottom edge: a floating torso looks wrong.
    """
    width, height = canvas
    pad = margin_pixels(margin, canvas)
    if 2 * pad >= min(width, height):
        raise ValueError("the margin leaves no room for the subject")
    bottom_pad = 0 if position[1] >= 1 and cut_at_bottom(alpha) else pad
    box = (pad, pad, width - 2 * pad, height - pad - bottom_pad)
    return place_in_box(foreground, alpha, canvas, box, position, fit)


def cut_at_bottom(alpha: np.ndarray) -> bool:
    return bool((alpha[-1] > 0.5).mean() > 0.02)


def place_like_remove_bg(foreground: np.ndarray, alpha: np.ndarray, scale: float | None,
                         position: tuple[float, float] | None) -> Placed:
    """remove.bg's `scale` and `position` on the photo's own canvas.

    scale: the subject's visual box fitted into that fraction of the canvas (None: its own size);
    position: (x, y) fractions of the free space, None: where it was (about its box's centre).
    """
    height, width = alpha.shape
    visual = visual_box(alpha)
    sub_w, sub_h = visual.right - visual.left, visual.bottom - visual.top
    factor = 1.0 if scale is None else min(scale * width / sub_w, scale * height / sub_h)
    new_w, new_h = max(1, round(sub_w * factor)), max(1, round(sub_h * factor))
    if position is None:
        centre_x, centre_y = (visual.left + visual.right) / 2, (visual.top + visual.bottom) / 2
        left, top = round(centre_x - new_w / 2), round(centre_y - new_h / 2)
    else:
        left = math.floor(position[0] * (width - new_w))
        top = math.floor(position[1] * (height - new_h))
    return paste(visual.apply(foreground), visual.apply(alpha), (width, height), left, top, new_w, new_h)
