"""LINE stickers: the cutout fitted to LINE's sticker rules, with an optional white die-cut outline.

LINE Creators Market, Creation Guidelines for stickers (creator.line.me/en/guideline/sticker/;
read 2026-11-25 through its zh-TW text "製作準則 - LINE Creators Market" as quoted at
vocus.cc/article/amp/600d92a7fd89780001c0bc48, and creator.line.me/en/guideline/animationsticker/
for the main and tab sizes, which both pages share):
  - sticker images: at most W 370 x H 320 px, PNG, transparent background, width and height even
    (LINE shrinks them automatically), each file under 1 MB, RGB colour, 72 dpi or more;
  - about 10 px of empty margin between the artwork and the image's edge;
  - one main image of W 240 x H 240 px and one chat tab image of W 96 x H 74 px, PNG.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipeline.outputs.placement import paste, visual_box

STICKER_MAX = (370, 320)  # (width, height)
MAIN_SIZE = (240, 240)
TAB_SIZE = (96, 74)
STICKER_MARGIN = 10
MAX_FILE_BYTES = 1_000_000
DPI = 72
OUTLINE_PX = 6  # on a full-size sticker; main and tab images get it scaled down with them
OUTLINE_COLOUR = (1.0, 1.0, 1.0)


def set_entry_names(count: int) -> list[str]:
    """The file names LINE Creators Market asks for in a sticker set: 01.png, 02.png, ... for the
    stickers, then main.png and tab.png."""
    return [f"{number:02d}.png" for number in range(1, count + 1)] + ["main.png", "tab.png"]


@dataclass(frozen=True)
class StickerImage:
    """Straight colour (h, w, 3) and alpha (h, w), in [0, 1]."""

    colour: np.ndarray
    alpha: np.ndarray


def die_cut_outline(alpha: np.ndarray, width: float) -> np.ndarray:
    """The subject's silhouette grown by `width` px with round corners, anti-aliased: (h, w) in [0, 1].

    Grown by exact Euclidean distance from the opaque part, so the outline follows every curve at
    an even width and never breaks; the 1 px ramp at its edge keeps it smooth once scaled.
    """
    solid = alpha > 0.5
    if not solid.any():
        return np.zeros_like(alpha)
    distance = ndimage.distance_transform_edt(~solid)
    return np.clip(width + 0.5 - distance, 0.0, 1.0).astype(np.float32)


def add_outline(foreground: np.ndarray, alpha: np.ndarray, width: float) -> StickerImage:
    """The subject over a white outline layer (the `over` operator, kept as straight colour)."""
    outline = die_cut_outline(alpha, width)
    combined = alpha + outline * (1.0 - alpha)
    white = np.asarray(OUTLINE_COLOUR, np.float32)
    colour = (foreground * alpha[:, :, None] + white * (outline * (1.0 - alpha))[:, :, None])
    colour = colour / np.maximum(combined, 1e-6)[:, :, None]
    return StickerImage(np.clip(colour, 0, 1).astype(np.float32), combined.astype(np.float32))


def sticker_artwork(foreground: np.ndarray, alpha: np.ndarray, box: tuple[int, int], outline_px: float
                    ) -> StickerImage:
    """The subject scaled to fit (w, h) with its outline, on a canvas just that big."""
    width, height = box
    pad = math.ceil(outline_px) + 1 if outline_px > 0 else 0
    visual = visual_box(alpha)
    sub_w, sub_h = visual.right - visual.left, visual.bottom - visual.top
    scale = min((width - 2 * pad) / sub_w, (height - 2 * pad) / sub_h)
    new_w, new_h = max(1, round(sub_w * scale)), max(1, round(sub_h * scale))
    placed = paste(visual.apply(foreground), visual.apply(alpha), (new_w + 2 * pad, new_h + 2 * pad),
                   pad, pad, new_w, new_h)
    if outline_px <= 0:
        return StickerImage(placed.foreground, placed.alpha)
    return add_outline(placed.foreground, placed.alpha, outline_px)


def make_sticker(foreground: np.ndarray, alpha: np.ndarray, outline: bool = True) -> StickerImage:
    """A sticker image: as large as LINE allows, 10 px clear on every side, even width and height."""
    max_w, max_h = STICKER_MAX
    art = sticker_artwork(foreground, alpha, (max_w - 2 * STICKER_MARGIN, max_h - 2 * STICKER_MARGIN),
                          OUTLINE_PX if outline else 0)
    art_h, art_w = art.alpha.shape
    width, height = even_up(art_w + 2 * STICKER_MARGIN), even_up(art_h + 2 * STICKER_MARGIN)
    return centred(art, (width, height))


def make_icon(foreground: np.ndarray, alpha: np.ndarray, size: tuple[int, int], outline: bool = True
              ) -> StickerImage:
    """The set's main image (240x240) or chat tab image (96x74): exactly `size`, the artwork centred."""
    width, height = size
    # The main image keeps the full 10 px; the tiny tab image a margin scaled down with it.
    margin = STICKER_MARGIN if size == MAIN_SIZE else max(2, round(STICKER_MARGIN * height / STICKER_MAX[1]))
    outline_px = max(1.0, OUTLINE_PX * min(width, height) / min(STICKER_MAX)) if outline else 0
    art = sticker_artwork(foreground, alpha, (width - 2 * margin, height - 2 * margin), outline_px)
    return centred(art, size)


def centred(art: StickerImage, size: tuple[int, int]) -> StickerImage:
    width, height = size
    art_h, art_w = art.alpha.shape
    left, top = (width - art_w) // 2, (height - art_h) // 2
    colour = np.zeros((height, width, 3), np.float32)
    alpha = np.zeros((height, width), np.float32)
    colour[top:top + art_h, left:left + art_w] = art.colour
    alpha[top:top + art_h, left:left + art_w] = art.alpha
    return StickerImage(colour, alpha)


def even_up(value: int) -> int:
    return value + (value % 2)


def sticker_set(foreground: np.ndarray, alpha: np.ndarray, outline: bool = True) -> dict[str, StickerImage]:
    """{'sticker', 'main', 'tab'}: the three images a LINE sticker set needs from one subject."""
    return {"sticker": make_sticker(foreground, alpha, outline),
            "main": make_icon(foreground, alpha, MAIN_SIZE, outline),
            "tab": make_icon(foreground, alpha, TAB_SIZE, outline)}
