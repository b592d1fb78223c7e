"""The presets offered as chat buttons (商品圖, 做成貼圖, 貼文尺寸, 限動尺寸) and their icons.

What each makes is defined once in pipeline/outputs/presets.py; this module only chooses the chat's
options for them:
- product: 2000x2000 white square, 8 % margin, contact shadow (the pipeline's defaults + shadow);
- sticker: a LINE sticker (<= 370x320, even sides, die-cut outline) plus the set's main and tab images;
- post: 1080x1350 (the tallest feed post Instagram and Facebook show uncropped) and story:
  1080x1920, both on the user's last chosen opaque background, else the blurred original.
"""
from __future__ import annotations

import io
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFilter

from bot import backgrounds
from pipeline.outputs.presets import PresetOptions
from pipeline.outputs.render import Background

CHAT_PRESETS = ("product", "sticker", "post", "story")
POST_SIZE = (1080, 1350)
DEFAULT_SCENE = "blur"  # post and story before the user picked a background
ICON_PREFIX = "preset-"  # /icons/bg/preset-<name>.png, served with the background icons


def scene_choice(last_choice: str | None, brand_colors: tuple[str, ...]) -> str:
    """The background a post or story goes on: the last one the user chose when it is opaque
    (a mask or the transparent cutout is no scene), else the blurred original."""
    if not last_choice or last_choice in ("mask", "cutout"):
        return DEFAULT_SCENE
    try:
        backgrounds.background_for(last_choice, brand_colors)
    except (KeyError, ValueError):  # a brand colour that has since been removed
        return DEFAULT_SCENE
    return last_choice


def preset_options(name: str, scene: str, brand_colors: tuple[str, ...]) -> PresetOptions:
    """KeyError for a name the chat does not offer."""
    if name == "product":
        return PresetOptions("product", shadow=True)
    if name == "sticker":
        return PresetOptions("sticker")
    background: Background = backgrounds.background_for(scene, brand_colors)
    if name == "post":
        return PresetOptions("post", size=POST_SIZE, background=background)
    if name == "story":
        return PresetOptions("story", background=background)
    raise KeyError(name)


def file_stem(name: str, options: PresetOptions) -> str:
    """The downloaded file's name: 'product-2000x2000', 'story-1080x1920', 'line-sticker'."""
    if name == "sticker":
        return "line-sticker"
    width, height = options.resolved().size
    return f"{name}-{width}x{height}"


# --- icons (quick replies) -------------------------------------------------------------------
ICON_SIZE = backgrounds.ICON_SIZE
FRAMES = {"product": (1, 1), "post": (4, 5), "story": (9, 16)}


def icon_path(name: str) -> str:
    return f"{backgrounds.ICON_PATH}/{ICON_PREFIX}{name}.png"


@lru_cache(maxsize=8)
def icon_png(name: str) -> bytes:
    """A round icon like the backgrounds': the preset's frame shape, or a die-cut sticker (KeyError)."""
    if name not in CHAT_PRESETS:
        raise KeyError(name)
    scale = 4
    side = ICON_SIZE * scale
    icon = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    disc = Image.new("L", (side, side), 0)
    ImageDraw.Draw(disc).ellipse((3 * scale, 3 * scale, side - 3 * scale, side - 3 * scale), fill=255)
    fill = Image.new("RGBA", (side, side), (5, 128, 58, 255))  # the cards' green
    icon.paste(fill, (0, 0), disc)
    draw = ImageDraw.Draw(icon)
    if name == "sticker":  # a face with a thick white die-cut edge
        box = (side * 0.25, side * 0.25, side * 0.75, side * 0.75)
        draw.ellipse(box, fill=(255, 255, 255, 255))
        inset = side * 0.05
        draw.ellipse((box[0] + inset, box[1] + inset, box[2] - inset, box[3] - inset), fill=(250, 200, 60, 255))
    else:  # a white frame of the preset's shape with a dot for the subject
        w, h = FRAMES[name]
        height = side * 0.56
        width = height * w / h
        left, top = (side - width) / 2, (side - height) / 2
        draw.rectangle((left, top, left + width, top + height), fill=(255, 255, 255, 255))
        r = width * 0.22
        cx, cy = side / 2, top + height * (0.5 if name == "product" else 0.62)
        if name == "product":  # the contact shadow under the subject
            shadow = Image.new("RGBA", (side, side), (0, 0, 0, 0))
            ImageDraw.Draw(shadow).ellipse((cx - r, cy + r * 0.8, cx + r, cy + r * 1.2), fill=(0, 0, 0, 110))
            icon.alpha_composite(shadow.filter(ImageFilter.GaussianBlur(scale * 2)))
            draw = ImageDraw.Draw(icon)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(66, 133, 244, 255))
    icon = icon.resize((ICON_SIZE, ICON_SIZE), Image.LANCZOS)
    buffer = io.BytesIO()
    icon.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()
