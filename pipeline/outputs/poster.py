"""Campaign posters: the cutout placed on a branded canvas with frame, logo and caption.

Pure: arrays and a font path in, an RGB float array out. Layers, bottom to top: background
(cover-fit image or colour), subject (fit into its box, anchored bottom-centre by default),
frame overlay (RGBA, stretched to the canvas), logo (RGBA), caption text.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.outputs import compose
from pipeline.outputs.placement import place_in_box
from pipeline.segment import resize_float

ANCHORS = ("bottom-center", "center", "top-center")
# Each anchor as (x, y) fractions of the free space in the subject box.
ANCHOR_POSITIONS = {"bottom-center": (0.5, 1.0), "center": (0.5, 0.5), "top-center": (0.5, 0.0)}
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


@dataclass(frozen=True)
class PosterLayout:
    """Sizes are fractions of the canvas, so a layout works for any canvas size."""

    canvas: tuple[int, int] = (1080, 1080)  # (width, height)
    subject_box: tuple[float, float, float, float] = (0.1, 0.15, 0.8, 0.85)  # x, y, width, height
    anchor: str = "bottom-center"
    min_scale: float = 0.05
    max_scale: float = 4.0
    logo_corner: str = "top-right"
    logo_width: float = 0.2
    caption_y: float = 0.06  # caption centre, from the top
    caption_size: float = 0.055  # font size as a fraction of canvas height
    caption_color: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if self.anchor not in ANCHORS:
            raise ValueError(f"anchor must be one of {', '.join(ANCHORS)}")
        if self.logo_corner not in CORNERS:
            raise ValueError(f"logo_corner must be one of {', '.join(CORNERS)}")
        width, height = self.canvas
        if not (64 <= width <= 4096 and 64 <= height <= 4096):
            raise ValueError("canvas must be between 64 and 4096 pixels on each side")
        x, y, w, h = self.subject_box
        if not (0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= 1.0001 and y + h <= 1.0001):
            raise ValueError("subject_box must lie inside the canvas (fractions 0..1)")
        if not 0 < self.min_scale <= self.max_scale:
            raise ValueError("need 0 < min_scale <= max_scale")

    def box_pixels(self) -> tuple[int, int, int, int]:
        width, height = self.canvas
        x, y, w, h = self.subject_box
        return round(x * width), round(y * height), max(1, round(w * width)), max(1, round(h * height))


def place_subject(foreground: np.ndarray, alpha: np.ndarray, layout: PosterLayout
                  ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """-> (canvas-sized foreground, canvas-sized alpha, the subject's (left, top, width, height))."""
    placed = place_in_box(foreground, alpha, layout.canvas, layout.box_pixels(), ANCHOR_POSITIONS[layout.anchor],
                          scale_limits=(layout.min_scale, layout.max_scale))
    return placed.foreground, placed.alpha, (placed.left, placed.top, placed.width, placed.height)


def compose_poster(
    foreground: np.ndarray,
    alpha: np.ndarray,
    layout: PosterLayout,
    background: np.ndarray | tuple[float, float, float],
    frame: np.ndarray | None = None,
    logo: np.ndarray | None = None,
    caption: str = "",
    font_path: str | None = None,
) -> np.ndarray:
    """Build the poster.

    Parameters
    ----------
    foreground, alpha: the cutout, (h, w, 3) and (h, w) in [0, 1].
    background: an (H, W, 3) image (cover-fitted) or an RGB colour.
    frame, logo: optional (h, w, 4) RGBA overlays in [0, 1].
    caption: optional text (Traditional Chinese needs a CJK font at `font_path`).

    Returns
    -------
    (canvas height, canvas width, 3) float32 RGB in [0, 1].
    """
    width, height = layout.canvas
    if isinstance(background, np.ndarray):
        canvas = compose.cover_fit(background, (height, width))
    else:
        canvas = compose.solid_background((height, width), background)
    subject_fg, subject_alpha, _ = place_subject(foreground, alpha, layout)
    canvas = compose.over(subject_fg, subject_alpha, canvas)
    if frame is not None:
        frame_scaled = np.clip(resize_float(frame, width, height, Image.BICUBIC), 0, 1)
        canvas = compose.over(frame_scaled[:, :, :3], frame_scaled[:, :, 3], canvas)
    if logo is not None:
        canvas = _paste_logo(canvas, logo, layout)
    if caption:
        canvas = _draw_caption(canvas, caption, layout, font_path)
    return np.clip(canvas, 0, 1).astype(np.float32)


def _paste_logo(canvas: np.ndarray, logo: np.ndarray, layout: PosterLayout) -> np.ndarray:
    height, width = canvas.shape[:2]
    logo_w = max(1, round(layout.logo_width * width))
    logo_h = max(1, round(logo.shape[0] * logo_w / logo.shape[1]))
    logo_h = min(logo_h, height // 2)
    scaled = np.clip(resize_float(logo, logo_w, logo_h, Image.BICUBIC), 0, 1)
    margin = round(0.03 * width)
    top = margin if layout.logo_corner.startswith("top") else height - logo_h - margin
    left = margin if layout.logo_corner.endswith("left") else width - logo_w - margin
    region = canvas[top:top + logo_h, left:left + logo_w]
    canvas[top:top + logo_h, left:left + logo_w] = compose.over(scaled[:, :, :3], scaled[:, :, 3], region)
    return canvas


def _draw_caption(canvas: np.ndarray, caption: str, layout: PosterLayout, font_path: str | None) -> np.ndarray:
    height, width = canvas.shape[:2]
    size = max(8, round(layout.caption_size * height))
    font = ImageFont.truetype(font_path, size) if font_path else ImageFont.load_default(size)
    image = Image.fromarray((canvas * 255 + 0.5).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    fill = tuple(round(c * 255) for c in layout.caption_color)
    outline = (0, 0, 0) if sum(layout.caption_color) > 1.5 else (255, 255, 255)
    stroke = max(1, size // 12)
    # Shrink long captions until they fit the canvas width.
    while draw.textlength(caption, font=font) > 0.92 * width and size > 8:
        size = int(size * 0.9)
        font = ImageFont.truetype(font_path, size) if font_path else ImageFont.load_default(size)
        stroke = max(1, size // 12)
    draw.text((width / 2, layout.caption_y * height), caption, font=font, fill=fill, anchor="mm",
              stroke_width=stroke, stroke_fill=outline)
    return np.asarray(image, dtype=np.float32) / 255.0
