"""The API's output parameters: presets, and remove.bg's scale, position and roi, read strictly.

remove.bg's documentation (api.remove.bg/v1.0/removebg, as its client libraries quote it):
  scale     "Scales the subject relative to the total image size. Can be any value from '10%' to
            '100%', or 'original' (default). Scaling the subject implies position=center (unless
            specified otherwise)."
  position  "Positions the subject within the image canvas. Can be 'original' (default unless
            scale is given), 'center' (default when scale is given) or a value from '0%' to
            '100%' (both horizontal and vertical) or two values (horizontal, vertical)."
  roi       "Region of interest: only contents of this rectangular region can be detected as
            foreground. Everything outside is considered background and will be removed. The
            rectangle is defined as two x/y coordinates in the format 'x1 y1 x2 y2'. The
            coordinates can be in absolute pixels (suffix 'px') or relative to the width/height
            of the image (suffix '%'). By default, the whole image ('0% 0% 100% 100%')."
Ours: preset (product | sticker | post | story | custom) with canvas_size, margin, fit, outline.
Every parameter name we do not know, and every remove.bg value we do not honour, is a 400:
a request is never answered as if a parameter had not been sent.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.outputs.placement import parse_position
from pipeline.outputs.presets import PRESETS, PresetOptions, parse_margin, parse_size
from pipeline.outputs.region import Coordinate, parse_roi
from pipeline.outputs.render import Background

REMOVE_BG_PARAMETERS = {
    "image_file", "image_file_b64", "image_url", "size", "type", "type_level", "format", "roi", "crop",
    "crop_margin", "scale", "position", "channels", "add_shadow", "semitransparency", "bg_color",
    "bg_image_url", "bg_image_file",
}
PRESET_PARAMETERS = {"preset", "canvas_size", "margin", "fit", "outline"}
# remove.bg parameters we accept only at the value that describes what we do anyway.
ONLY_VALUE = {
    "type": ("auto", "we find the subject on our own: type=auto only"),
    "type_level": ("none", "we do not classify the foreground: type_level=none only"),
    "semitransparency": ("true", "edges and hair are always semi-transparent: semitransparency=true only"),
}
BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class ParameterError(ValueError):
    """A parameter refused: remove.bg's error fields (the API answers it as a 400)."""

    def __init__(self, code: str, title: str, detail: str) -> None:
        super().__init__(title)
        self.code, self.title, self.detail = code, title, detail


@dataclass(frozen=True)
class OutputParams:
    preset: PresetOptions | None = None  # resolved, background still to be set from bg_*/channels
    scale: float | None = None  # remove.bg scale as a fraction; None: original
    position: tuple[float, float] | None = None  # None: where the subject was
    roi: tuple[Coordinate, Coordinate, Coordinate, Coordinate] | None = None

    @property
    def moves_subject(self) -> bool:
        return self.scale is not None or self.position is not None


def refuse(name: str, value: str, why: str) -> ParameterError:
    return ParameterError(f"invalid_{name}", f"Invalid {name} {value[:40]!r}: {why}", f"{name}={value[:40]}: {why}")


def read_output_params(values: dict, file_fields: set[str], crop: bool, fmt: str, has_background: bool,
                       mask: bool = False) -> OutputParams:
    """Check every parameter name and the output parameters' values; -> OutputParams. Raises ParameterError."""
    unknown = sorted((set(values) | file_fields) - REMOVE_BG_PARAMETERS - PRESET_PARAMETERS)
    if unknown:
        names = ", ".join(name[:40] for name in unknown[:5])
        raise ParameterError("unknown_parameter", f"Unknown parameter: {names}",
                             f"not a parameter of this API: {names} (see /api/v1/openapi.json)")
    for name, (allowed, why) in ONLY_VALUE.items():
        given = values.get(name, allowed).strip().lower()
        if given != allowed:
            raise refuse(name, given, why)
    scale = read_scale(values.get("scale", "original"))
    position = read_position(values.get("position"), scale)
    roi = read_roi(values.get("roi"))
    preset = read_preset(values, Background("mask") if mask else Background("color") if has_background else None,
                         fmt)
    if crop and (scale is not None or position is not None or preset is not None):
        which = "preset" if preset is not None else "scale/position"
        raise ParameterError("invalid_crop", f"crop does not combine with {which}",
                             f"crop=true cuts the canvas to the subject, which undoes {which}: send one or the other")
    if preset is not None and scale is not None:
        raise ParameterError("invalid_scale", "scale does not combine with preset: use margin",
                             "a preset sizes the subject by its margin (e.g. margin=8%)")
    return OutputParams(preset, scale, None if preset is not None else position, roi)


def read_scale(text: str) -> float | None:
    word = text.strip().lower()
    if word == "original":
        return None
    try:
        percent = float(word.removesuffix("%")) if word.endswith("%") else float("nan")
    except ValueError:
        percent = float("nan")
    if not 10 <= percent <= 100:  # nan fails too
        raise refuse("scale", word, "10% to 100%, or original")
    return percent / 100


def read_position(text: str | None, scale: float | None) -> tuple[float, float] | None:
    """None for 'original'; remove.bg's default is original, or center once scale is given."""
    word = (text or ("center" if scale is not None else "original")).strip().lower()
    if word == "original":
        return None
    try:
        return parse_position(word)
    except ValueError as error:
        raise refuse("position", word, f"original, center, bottom, 'x%' or 'x% y%' ({error})") from None


def read_roi(text: str | None) -> tuple[Coordinate, Coordinate, Coordinate, Coordinate] | None:
    if text is None or not text.strip():
        return None
    try:
        return parse_roi(text)
    except ValueError as error:
        raise refuse("roi", text.strip(), str(error)) from None


def read_preset(values: dict, background: Background | None, fmt: str) -> PresetOptions | None:
    """The preset options; `background` is a stand-in of the kind asked for (checked before any download)."""
    name = values.get("preset", "").strip().lower()
    if not name:
        extra = sorted(PRESET_PARAMETERS & set(values) - {"preset"})
        if extra:
            raise ParameterError("invalid_preset", f"{', '.join(extra)} need a preset",
                                 f"{', '.join(extra)} shape a preset's canvas: add preset=product|sticker|post|story|custom")
        return None
    if name not in PRESETS:
        raise refuse("preset", name, " | ".join(PRESETS))
    try:
        size = parse_size(values["canvas_size"]) if values.get("canvas_size") else None
        margin = parse_margin(values["margin"]) if values.get("margin") else None
    except ValueError as error:
        field = "canvas_size" if "size" in str(error) else "margin"
        raise refuse(field, values.get(field, ""), str(error)) from None
    fit = values.get("fit", "fit").strip().lower()
    outline = values.get("outline", "true").strip().lower()
    if outline not in BOOLEANS:
        raise refuse("outline", outline, "true or false")
    position = values.get("position", "").strip().lower()
    try:
        options = PresetOptions(
            name, size=size, margin=margin, fit=fit, outline=BOOLEANS[outline],
            position=parse_position(position) if position and position != "original" else None,
            shadow=BOOLEANS.get(values.get("add_shadow", "").strip().lower(), False),
            background=background,
        ).resolved()
    except ValueError as error:
        raise refuse("preset", name, str(error)) from None
    if position == "original":
        raise refuse("position", position, "a preset places the subject: center, bottom, top or 'x% y%'")
    if name == "sticker" and fmt == "jpg":
        raise refuse("format", fmt, "LINE stickers are PNG files with transparency")
    return options
