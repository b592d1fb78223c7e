"""Encode a CutoutResult into the files users receive: PNG cutouts, masks, composites, previews."""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from pipeline.outputs import compose, png
from pipeline.cutout import CutoutResult
from pipeline.decode import image_to_uint8

BACKGROUND_KINDS = ("transparent", "mask", "color", "gradient", "image", "blur")


@dataclass(frozen=True)
class Background:
    """What goes behind the subject. `image` is an (h, w, 3) float array for kind 'image'."""

    kind: str = "transparent"
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    color2: tuple[float, float, float] = (0.8, 0.8, 0.8)
    image: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.kind not in BACKGROUND_KINDS:
            raise ValueError(f"unknown background {self.kind!r}; one of {', '.join(BACKGROUND_KINDS)}")
        if self.kind == "image" and self.image is None:
            raise ValueError("background kind 'image' needs an image")

    @property
    def needs_alpha(self) -> bool:
        return self.kind == "transparent"


@dataclass(frozen=True)
class Rendered:
    data: bytes
    content_type: str
    width: int
    height: int
    # The subject's alpha as placed in this image (no shadow), for `foreground`; None where unknown.
    subject: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def foreground(self) -> compose.Box | None:
        """Where the subject lies in this image (remove.bg's X-Foreground-* headers): found when asked,
        so renders nobody asks it of (chat cards, the page's files) do not pay for it."""
        return None if self.subject is None else compose.subject_box(self.subject, margin=0)

    @property
    def extension(self) -> str:
        return {"image/png": "png", "image/jpeg": "jpg"}[self.content_type]


def render_array(
    result: CutoutResult, background: Background, crop: bool = False, crop_margin: float = 0.05,
    shadow: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """-> (RGB or grey array in [0, 1], alpha or None) for the requested background."""
    colour, alpha, _ = render_placed(result, background, crop, crop_margin, shadow)
    return colour, alpha


def render_placed(
    result: CutoutResult, background: Background, crop: bool = False, crop_margin: float = 0.05,
    shadow: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """render_array's arrays and the subject's alpha as placed in them (cropped, no shadow)."""
    alpha, foreground, original = result.alpha, result.foreground, result.image
    if crop:
        box = compose.subject_box(alpha, crop_margin)
        alpha, foreground, original = box.apply(alpha), box.apply(foreground), box.apply(original)
    return (*_on_background(alpha, foreground, original, background, shadow), alpha)


def _on_background(alpha: np.ndarray, foreground: np.ndarray, original: np.ndarray, background: Background,
                   shadow: bool) -> tuple[np.ndarray, np.ndarray | None]:
    if background.kind == "mask":
        return alpha, None
    if background.kind == "transparent":
        if shadow:
            return compose.shadow_in_alpha(foreground, alpha, compose.drop_shadow(alpha))
        return foreground, alpha
    shape = alpha.shape
    if background.kind == "color":
        canvas = compose.solid_background(shape, background.color)
    elif background.kind == "gradient":
        canvas = compose.gradient_background(shape, background.color, background.color2)
    elif background.kind == "image":
        canvas = compose.cover_fit(background.image, shape)
    else:  # blur
        canvas = compose.blurred_background(original, alpha)
    if shadow:
        canvas = compose.with_shadow(canvas, alpha)
    return compose.over(foreground, alpha, canvas), None


def encode_png(colour: np.ndarray, alpha: np.ndarray | None, dpi: int | None = None) -> bytes:
    if colour.ndim == 2:
        pixels = image_to_uint8(colour)
    elif alpha is not None:
        pixels = compose.to_rgba_uint8(colour, alpha)
    else:
        pixels = image_to_uint8(colour)
    # Deflate level 1 on every core (pipeline/outputs/png.py): a 12 MP RGBA cutout in 0.12 s instead
    # of Pillow's 0.46 s (level 1, one core) on two cores, ~3 % more bytes.
    return png.encode(pixels, dpi=dpi)


def encode_jpeg(colour: np.ndarray, quality: int = 90, max_bytes: int | None = None, max_side: int | None = None) -> bytes:
    image = Image.fromarray(image_to_uint8(colour))
    if max_side and max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.LANCZOS)
    while True:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=quality, optimize=True)
        if max_bytes is None or buffer.tell() <= max_bytes or quality <= 40:
            if max_bytes is not None and buffer.tell() > max_bytes:
                image.thumbnail((image.width * 3 // 4, image.height * 3 // 4), Image.LANCZOS)
                continue
            return buffer.getvalue()
        quality -= 10


def render(
    result: CutoutResult, background: Background = Background(), fmt: str = "auto", crop: bool = False,
    crop_margin: float = 0.05, shadow: bool = False,
) -> Rendered:
    """Render and encode. fmt 'auto' gives PNG where transparency is needed, JPEG otherwise."""
    colour, alpha, subject = render_placed(result, background, crop, crop_margin, shadow)
    return encode_rendered(colour, alpha, fmt, subject=subject)


def encode_rendered(colour: np.ndarray, alpha: np.ndarray | None, fmt: str = "auto", dpi: int | None = None,
                    subject: np.ndarray | None = None) -> Rendered:
    """Encode render_array-shaped arrays (a grey array is a mask). fmt 'auto': PNG where transparency is needed.

    subject: the subject's alpha as placed in this image (without shadows), for Rendered.foreground;
    by default the image's own alpha or mask."""
    if subject is None:
        subject = colour if colour.ndim == 2 else alpha
    if fmt == "auto":
        fmt = "png" if alpha is not None or colour.ndim == 2 else "jpg"
    if fmt == "png":
        data, content_type = encode_png(colour, alpha, dpi), "image/png"
    elif fmt in ("jpg", "jpeg"):
        if alpha is not None:  # JPEG has no alpha: show the cutout on white
            colour = compose.over(colour, alpha, compose.solid_background(alpha.shape, (1.0, 1.0, 1.0)))
        data, content_type = encode_jpeg(colour), "image/jpeg"
    else:
        raise ValueError(f"unknown format {fmt!r}; png, jpg or auto")
    return Rendered(data, content_type, colour.shape[1], colour.shape[0], subject)


def checkerboard_preview(result: CutoutResult, max_side: int = 1024, max_bytes: int = 1_000_000) -> bytes:
    """An opaque JPEG of the cutout on a checkerboard: chat apps show PNG transparency as black."""
    colour, alpha = render_array(result, Background("transparent"))
    board = compose.checkerboard(alpha.shape)
    return encode_jpeg(compose.over(colour, alpha, board), quality=85, max_bytes=max_bytes, max_side=max_side)
