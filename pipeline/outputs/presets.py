"""Presets: a cutout turned into what a shop or a social post needs, defined once for every surface.

- product: a square canvas (default 2000x2000), the subject's visual box centred with an even
  margin (default 8 % of the side), on white or any background, optional contact shadow below.
  Every photo of a batch follows the same rule (the subject fills the canvas less the margin), so
  forty products come out the same size whatever the distance they were shot from.
- sticker: a LINE sticker (pipeline.outputs.sticker), plus the set's main and tab images.
- post (1080x1080 or 1080x1350) and story (1080x1920): the subject on a background (colour,
  gradient, image, or the blurred original), anchored bottom-centre by default.
- custom: any width x height, fit or fill, margin, position.

Pure: arrays in, arrays out (`compose_preset`); `render_preset` encodes them for the surfaces.
The parsers turn the text every surface receives ("2000", "1080x1350", "8%", "bottom") into
values, raising ValueError with a message fit to show.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from pipeline.outputs import compose
from pipeline.cutout import CutoutResult
from pipeline.outputs.placement import FITS, parse_position, place_with_margin
from pipeline.outputs.shadow import contact_shadow
from pipeline.outputs.sticker import DPI, MAX_FILE_BYTES, make_sticker, sticker_set
from pipeline.outputs.render import Background, Rendered, encode_rendered

PRESETS = ("product", "sticker", "post", "story", "custom")
POST_SIZES = ((1080, 1080), (1080, 1350))
STORY_SIZE = (1080, 1920)
MIN_SIDE, MAX_SIDE = 16, 4096
WHITE = Background("color", color=(1.0, 1.0, 1.0))
BLURRED_ORIGINAL = Background("blur")


@dataclass(frozen=True)
class PresetOptions:
    """What a preset makes. None fields take the preset's default (see DEFAULTS).

    size: (width, height) of the canvas. margin: a fraction of the canvas's shorter side (< 1) or
    pixels (>= 1). position: (x, y) fractions of the free space (0.5, 0.5 centre; 0.5, 1 bottom).
    fit: 'fit' (whole subject inside) or 'fill' (custom only: the box covered, the subject cut).
    shadow: a contact shadow below the subject. outline: the sticker's white die-cut outline.
    """

    name: str
    size: tuple[int, int] | None = None
    margin: float | None = None
    position: tuple[float, float] | None = None
    fit: str = "fit"
    shadow: bool = False
    outline: bool = True
    background: Background | None = None

    def resolved(self) -> PresetOptions:
        """The options with every default filled in; ValueError for anything the preset cannot do."""
        if self.name not in PRESETS:
            raise ValueError(f"unknown preset {self.name!r}; one of {', '.join(PRESETS)}")
        if self.fit not in FITS:
            raise ValueError(f"fit must be one of {', '.join(FITS)}")
        if self.name == "sticker":
            return self._sticker()
        if self.fit == "fill" and self.name != "custom":
            raise ValueError("fill is for the custom preset; the others always show the whole subject")
        values = {key: value for key, value in DEFAULTS[self.name].items() if getattr(self, key) is None}
        options = replace(self, **values)
        if options.size is None:
            raise ValueError("the custom preset needs a size (WIDTHxHEIGHT)")
        width, height = options.size
        if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
            raise ValueError(f"size must be {MIN_SIDE}..{MAX_SIDE} pixels on each side")
        if self.name == "product" and width != height:
            raise ValueError("the product preset is square: give one number (e.g. 2000)")
        if self.name == "post" and options.size not in POST_SIZES:
            raise ValueError("a post is 1080x1080 or 1080x1350")
        if self.name == "story" and options.size != STORY_SIZE:
            raise ValueError("a story is 1080x1920")
        if not (math.isfinite(options.margin) and options.margin >= 0):
            raise ValueError("the margin must be 0 or more")
        return options

    def _sticker(self) -> PresetOptions:
        fixed = {"size": self.size, "margin": self.margin, "position": self.position}
        given = [name for name, value in fixed.items() if value is not None]
        if given or self.fit != "fit":
            raise ValueError(f"a sticker follows LINE's fixed rules (at most 370x320, 10 px margin); "
                             f"it takes no {', '.join(given) or 'fit'}")
        if self.shadow:
            raise ValueError("a sticker has no shadow (LINE shows it on the chat's own background)")
        if self.background is not None and self.background.kind != "transparent":
            raise ValueError("a sticker's background must be transparent (LINE's rule)")
        return replace(self, background=Background("transparent"))


DEFAULTS: dict[str, dict] = {
    "product": {"size": (2000, 2000), "margin": 0.08, "position": (0.5, 0.5), "background": WHITE},
    "post": {"size": POST_SIZES[0], "margin": 0.06, "position": (0.5, 1.0), "background": BLURRED_ORIGINAL},
    "story": {"size": STORY_SIZE, "margin": 0.06, "position": (0.5, 1.0), "background": BLURRED_ORIGINAL},
    "custom": {"margin": 0.0, "position": (0.5, 0.5), "background": Background("transparent")},
}


def compose_preset(image: np.ndarray, foreground: np.ndarray, alpha: np.ndarray, options: PresetOptions
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """-> (colour (H, W, 3), alpha (H, W) or None for an opaque canvas); a mask background gives (alpha, None).

    image: the original photo (for the blurred-original background); foreground, alpha: the cutout.
    """
    colour, canvas_alpha, _ = compose_preset_placed(image, foreground, alpha, options)
    return colour, canvas_alpha


def compose_preset_placed(image: np.ndarray, foreground: np.ndarray, alpha: np.ndarray, options: PresetOptions
                          ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """compose_preset's arrays and the subject's alpha as placed on the canvas (no shadow)."""
    options = options.resolved()
    if options.name == "sticker":
        art = make_sticker(foreground, alpha, options.outline)
        return art.colour, art.alpha, art.alpha
    placed = place_with_margin(foreground, alpha, options.size, options.margin, options.position, options.fit)
    shadow = contact_shadow(placed.alpha) if options.shadow else None
    background = options.background
    if background.kind == "mask":
        return placed.alpha, None, placed.alpha
    if background.kind == "transparent":
        if shadow is None:
            return placed.foreground, placed.alpha, placed.alpha
        return (*compose.shadow_in_alpha(placed.foreground, placed.alpha, shadow), placed.alpha)
    canvas = canvas_background(background, image, alpha, placed.alpha.shape)
    if shadow is not None:
        canvas = compose.darken(canvas, shadow)
    return compose.over(placed.foreground, placed.alpha, canvas), None, placed.alpha


def canvas_background(background: Background, image: np.ndarray, alpha: np.ndarray, shape: tuple[int, int]
                      ) -> np.ndarray:
    if background.kind == "color":
        return compose.solid_background(shape, background.color)
    if background.kind == "gradient":
        return compose.gradient_background(shape, background.color, background.color2)
    if background.kind == "image":
        return compose.cover_fit(background.image, shape)
    # The blurred original, cover-fitted first: blurring a 12 MP photo to show it at 1080 wastes seconds.
    return compose.blurred_background(compose.cover_fit(image, shape), compose.cover_fit(alpha, shape))


def render_preset(result: CutoutResult, options: PresetOptions, fmt: str = "auto") -> Rendered:
    """The preset encoded: PNG where it has transparency (always for stickers), else JPEG unless asked."""
    options = options.resolved()
    if options.name == "sticker":
        return render_sticker_set(result, options.outline, fmt)["sticker"]
    colour, alpha, subject = compose_preset_placed(result.image, result.foreground, result.alpha, options)
    return encode_rendered(colour, alpha, fmt, subject=subject)


def render_sticker_set(result: CutoutResult, outline: bool = True, fmt: str = "auto") -> dict[str, Rendered]:
    """{'sticker', 'main', 'tab'} as PNGs that pass LINE's rules (ValueError for a JPEG request)."""
    if fmt not in ("auto", "png"):
        raise ValueError("LINE stickers are PNG files with transparency")
    images = sticker_set(result.foreground, result.alpha, outline)
    rendered = {name: encode_rendered(image.colour, image.alpha, "png", dpi=DPI) for name, image in images.items()}
    too_big = [name for name, item in rendered.items() if len(item.data) > MAX_FILE_BYTES]
    if too_big:  # 370x320 RGBA is at most 474 kB raw; this guards the rule, it cannot happen today
        raise ValueError(f"sticker files over LINE's 1 MB: {', '.join(too_big)}")
    return rendered


def parse_size(text: str) -> tuple[int, int]:
    """'2000' -> (2000, 2000); '1080x1350' -> (1080, 1350). Raises ValueError."""
    parts = text.strip().lower().replace("×", "x").split("x")
    if len(parts) not in (1, 2) or not all(part.strip().isdigit() for part in parts):
        raise ValueError(f"not a size: {text[:40]!r} (e.g. 2000 or 1080x1350)")
    width, height = int(parts[0]), int(parts[-1])
    return width, height


def parse_length(text: str, name: str) -> tuple[float, bool]:
    """'8%' -> (8.0, True); '40px' or '40' -> (40.0, False). ValueError for anything else, nan and inf too."""
    word = text.strip().lower()
    percent = word.endswith("%")
    try:
        number = float(word[:-1] if percent else word.removesuffix("px"))
    except ValueError:
        raise ValueError(f"not a {name}: {text[:40]!r} (e.g. 8% or 40px)") from None
    if not math.isfinite(number) or number < 0:  # float() reads 'nan', 'inf' and '1e400'
        raise ValueError(f"{name} must be a finite number of 0 or more: {text[:40]!r}")
    return number, percent


def parse_margin(text: str) -> float:
    """'8%' -> 0.08 (of the canvas's shorter side); '40px' or '40' -> 40.0 pixels. Raises ValueError."""
    number, percent = parse_length(text, "margin")
    if percent:
        if number >= 50:
            raise ValueError("a margin of 50% or more leaves no room for the subject")
        return number / 100
    if 0 < number < 1:
        raise ValueError("a pixel margin is a whole number of pixels (use % for a share of the canvas)")
    return float(round(number))


__all__ = ["PRESETS", "PresetOptions", "compose_preset", "render_preset", "render_sticker_set",
           "parse_size", "parse_margin", "parse_position"]
