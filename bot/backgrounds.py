"""The backgrounds offered in chat: ids, the words customers see, their icons, how to build each one.

The bundled backdrops are drawn in code (studio grey, sunset, mint) so the project ships no
image assets with unclear licences; the quick-reply icons are drawn in code too.

Brand colours come from CUTOUT_BRAND_COLORS; an entry may carry the name customers should see,
after an equals sign: "#e60012=年節紅,#0068b7". Without a name the colour is named after its hue
("品牌紅" / "Brand red"), in the user's language.
"""
from __future__ import annotations

import colorsys
import io
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from bot.i18n import say
from pipeline.outputs.compose import parse_color
from pipeline.outputs.render import Background

BACKDROP_SIZE = (1280, 1280)
MAX_BRAND_COLORS = 4
ICON_SIZE = 96  # LINE shows quick-reply icons at 24 px; 96 stays sharp on 4x screens
ICON_PATH = "/icons/bg"  # served by bot.channels.icons


def _radial(inner: tuple[float, float, float], outer: tuple[float, float, float],
            size: tuple[int, int] = BACKDROP_SIZE) -> np.ndarray:
    height, width = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    distance = np.hypot((ys - height * 0.45) / height, (xs - width / 2) / width) / 0.75
    t = np.clip(distance, 0, 1)[:, :, None]
    return (1 - t) * np.asarray(inner, np.float32) + t * np.asarray(outer, np.float32)


def _vertical(top: tuple[float, float, float], bottom: tuple[float, float, float],
              size: tuple[int, int] = BACKDROP_SIZE) -> np.ndarray:
    height, width = size
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    column = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)
    return np.broadcast_to(column, (height, width, 3)).copy()


def _draw_backdrop(name: str, size: tuple[int, int]) -> np.ndarray:
    if name == "studio":
        return _radial((0.93, 0.93, 0.93), (0.55, 0.56, 0.58), size)
    if name == "sunset":
        return _vertical((0.99, 0.72, 0.42), (0.55, 0.27, 0.52), size)
    if name == "mint":
        return _radial((0.86, 0.97, 0.92), (0.47, 0.78, 0.70), size)
    raise KeyError(name)


@lru_cache(maxsize=None)
def backdrop(name: str) -> np.ndarray:
    return _draw_backdrop(name, BACKDROP_SIZE)


BACKDROPS = ("studio", "sunset", "mint")


def brand_entry(entry: str) -> tuple[str, str]:
    """'#e60012=年節紅' -> ('#e60012', '年節紅'); '#0068b7' -> ('#0068b7', '')."""
    colour, _, name = entry.partition("=")
    return colour.strip(), name.strip()


def brand_color(choice: str, brand_colors: tuple[str, ...]) -> str:
    """The configured colour of 'brand1'… (KeyError when there is no such brand colour)."""
    if not (choice.startswith("brand") and choice[5:].isdigit()):
        raise KeyError(choice)
    index = int(choice[5:]) - 1
    if not 0 <= index < min(len(brand_colors), MAX_BRAND_COLORS):
        raise KeyError(choice)
    return brand_entry(brand_colors[index])[0]


def background_for(choice: str, brand_colors: tuple[str, ...]) -> Background:
    """Map a choice id ('white', 'brand1', 'blur', 'studio', 'mask', '#ff8800') to a Background."""
    if choice == "white":
        return Background("color", color=(1.0, 1.0, 1.0))
    if choice == "black":
        return Background("color", color=(0.0, 0.0, 0.0))
    if choice.startswith("brand") and choice[5:].isdigit():
        return Background("color", color=parse_color(brand_color(choice, brand_colors)))
    if choice == "blur":
        return Background("blur")
    if choice == "mask":
        return Background("mask")
    if choice == "cutout":
        return Background("transparent")
    if choice in BACKDROPS:
        return Background("image", image=backdrop(choice))
    if choice.startswith("#"):
        return Background("color", color=parse_color(choice))
    raise KeyError(choice)


def choice_ids(brand_colors: tuple[str, ...]) -> list[str]:
    """The backgrounds offered under a result, the most used first (a phone shows about five):
    white (shop listings, ID-style photos), the blurred original (portraits keep their place),
    the page's brand colours, black, the drawn backdrops, and the mask for designers last."""
    brands = [f"brand{n}" for n in range(1, min(len(brand_colors), MAX_BRAND_COLORS) + 1)
              if _is_colour(brand_entry(brand_colors[n - 1])[0])]
    return ["white", "blur", *brands, "black", *BACKDROPS, "mask"]


def _is_colour(value: str) -> bool:
    try:
        parse_color(value)
    except ValueError:
        return False
    return True


HUE_NAMES = (  # (upper bound of the hue in degrees, name key)
    (15, "red"), (40, "orange"), (65, "yellow"), (165, "green"), (195, "teal"),
    (255, "blue"), (290, "purple"), (340, "pink"), (360, "red"),
)


def colour_word(colour: str) -> str:
    """A plain colour word for a configured colour: 'red', 'blue', 'grey'…"""
    r, g, b = parse_color(colour)
    hue, lightness, saturation = colorsys.rgb_to_hls(r, g, b)
    if saturation < 0.15 or lightness < 0.08 or lightness > 0.95:
        return "white" if lightness > 0.9 else "black" if lightness < 0.15 else "grey"
    degrees = hue * 360
    return next(name for bound, name in HUE_NAMES if degrees < bound)


def choice_label(choice: str, language: str, brand_colors: tuple[str, ...] = ()) -> str:
    """The words a customer sees on the button (<= 20 characters)."""
    if choice.startswith("brand") and choice[5:].isdigit():
        return brand_label(choice, language, brand_colors)
    return say(language, f"bg_{choice}")


def brand_label(choice: str, language: str, brand_colors: tuple[str, ...]) -> str:
    """The configured name, else "品牌紅" / "Brand red"; a second brand colour of the same hue is
    numbered ("品牌藍 2")."""
    index = int(choice[5:])
    colour, name = brand_entry(brand_colors[index - 1]) if 1 <= index <= len(brand_colors) else ("", "")
    if name:
        return name[:20]
    if not _is_colour(colour):  # the configuration changed since the button was offered
        return say(language, "bg_brand_plain")
    word = colour_word(colour)
    same = [n for n in range(1, index + 1)
            if not brand_entry(brand_colors[n - 1])[1] and _is_colour(brand_entry(brand_colors[n - 1])[0])
            and colour_word(brand_entry(brand_colors[n - 1])[0]) == word]
    label = say(language, "bg_brand", colour=say(language, f"colour_{word}"))
    return label if len(same) <= 1 else f"{label} {len(same)}"


# --- icons ------------------------------------------------------------------------------------
def icon_path(choice: str, brand_colors: tuple[str, ...]) -> str:
    """The app path of a choice's icon; brand icons name their colour so a new colour is a new URL."""
    path = f"{ICON_PATH}/{choice}.png"
    if choice.startswith("brand"):
        path += "?c=" + brand_color(choice, brand_colors).lstrip("#").lower()
    return path


def icon_png(choice: str, brand_colors: tuple[str, ...]) -> bytes:
    """A small square PNG for the choice's quick reply (KeyError for an unknown choice)."""
    if choice.startswith("brand"):
        rgb = parse_color(brand_color(choice, brand_colors))
        return _icon(("colour", tuple(round(c * 255) for c in rgb)))
    known = {"white": ("colour", (255, 255, 255)), "black": ("colour", (0, 0, 0)), "blur": ("blur",),
             "mask": ("mask",), "cutout": ("cutout",), **{name: ("backdrop", name) for name in BACKDROPS}}
    return _icon(known[choice])


@lru_cache(maxsize=64)
def _icon(kind: tuple) -> bytes:
    scale = 4  # drawn large, then shrunk: smooth circle edges
    side = ICON_SIZE * scale
    inset = 3 * scale
    box = (inset, inset, side - inset, side - inset)
    if kind[0] == "colour":
        fill = Image.new("RGB", (side, side), kind[1])
    elif kind[0] == "backdrop":
        fill = Image.fromarray((_draw_backdrop(kind[1], (side, side)) * 255).round().astype(np.uint8))
    elif kind[0] == "blur":
        fill = Image.new("RGB", (side, side), (120, 170, 200))
        draw = ImageDraw.Draw(fill)
        for (x, y, r), colour in zip(((0.25, 0.3, 0.3), (0.75, 0.35, 0.28), (0.5, 0.8, 0.35)),
                                     ((250, 200, 90), (90, 180, 120), (200, 110, 160))):
            draw.ellipse(((x - r) * side, (y - r) * side, (x + r) * side, (y + r) * side), fill=colour)
        fill = fill.filter(ImageFilter.GaussianBlur(side / 10))
    elif kind[0] == "mask":
        fill = Image.new("RGB", (side, side), (0, 0, 0))
        _silhouette(ImageDraw.Draw(fill), side, (255, 255, 255))
    else:  # cutout: the subject on a checkerboard
        fill = Image.new("RGB", (side, side), (255, 255, 255))
        draw = ImageDraw.Draw(fill)
        cell = side // 6
        for y in range(0, side, cell):
            for x in range(0, side, cell):
                if (x // cell + y // cell) % 2:
                    draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=(204, 204, 204))
        _silhouette(draw, side, (66, 133, 244))
    alpha = Image.new("L", (side, side), 0)
    ImageDraw.Draw(alpha).ellipse(box, fill=255)
    icon = fill.convert("RGBA")
    icon.putalpha(alpha)
    if kind[0] in ("colour", "cutout") and (kind[0] == "cutout" or sum(kind[1]) > 600):
        ImageDraw.Draw(icon).ellipse(box, outline=(170, 170, 170, 255), width=2 * scale)  # white on white
    icon = icon.resize((ICON_SIZE, ICON_SIZE), Image.LANCZOS)
    buffer = io.BytesIO()
    icon.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def _silhouette(draw: ImageDraw.ImageDraw, side: int, colour: tuple[int, int, int]) -> None:
    """A head and shoulders."""
    draw.ellipse((side * 0.36, side * 0.2, side * 0.64, side * 0.48), fill=colour)
    draw.ellipse((side * 0.2, side * 0.52, side * 0.8, side * 1.05), fill=colour)
