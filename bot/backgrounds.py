"""The backgrounds offered in chat: ids, labels and how to build each one.

The bundled backdrops are drawn in code (studio grey, sunset, mint) so the project ships no
image assets with unclear licences.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from bot.i18n import say
from pipeline.compose import parse_color
from pipeline.render import Background

BACKDROP_SIZE = (1280, 1280)


def _radial(inner: tuple[float, float, float], outer: tuple[float, float, float]) -> np.ndarray:
    height, width = BACKDROP_SIZE
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    distance = np.hypot((ys - height * 0.45) / height, (xs - width / 2) / width) / 0.75
    t = np.clip(distance, 0, 1)[:, :, None]
    return (1 - t) * np.asarray(inner, np.float32) + t * np.asarray(outer, np.float32)


def _vertical(top: tuple[float, float, float], bottom: tuple[float, float, float]) -> np.ndarray:
    height, width = BACKDROP_SIZE
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    column = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)
    return np.broadcast_to(column, (height, width, 3)).copy()


@lru_cache(maxsize=None)
def backdrop(name: str) -> np.ndarray:
    if name == "studio":
        return _radial((0.93, 0.93, 0.93), (0.55, 0.56, 0.58))
    if name == "sunset":
        return _vertical((0.99, 0.72, 0.42), (0.55, 0.27, 0.52))
    if name == "mint":
        return _radial((0.86, 0.97, 0.92), (0.47, 0.78, 0.70))
    raise KeyError(name)


BACKDROPS = ("studio", "sunset", "mint")


def background_for(choice: str, brand_colors: tuple[str, ...]) -> Background:
    """Map a choice id ('white', 'brand1', 'blur', 'studio', 'mask', '#ff8800') to a Background."""
    if choice == "white":
        return Background("color", color=(1.0, 1.0, 1.0))
    if choice == "black":
        return Background("color", color=(0.0, 0.0, 0.0))
    if choice.startswith("brand") and choice[5:].isdigit():
        index = int(choice[5:]) - 1
        if not 0 <= index < len(brand_colors):
            raise KeyError(choice)
        return Background("color", color=parse_color(brand_colors[index]))
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
    brands = [f"brand{n}" for n in range(1, len(brand_colors) + 1)][:4]
    return ["white", "black", *brands, "blur", *BACKDROPS, "mask"]


def choice_label(choice: str, language: str) -> str:
    if choice.startswith("brand"):
        return say(language, "bg_brand", n=choice[5:])
    return say(language, f"bg_{choice}")
