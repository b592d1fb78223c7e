"""The web page's presets: its query parameters read into PresetOptions, previews, file names, ZIPs.

The page asks for a finished photo in a preset's shape:

    preset   original | product | sticker | post | story | custom  (absent: original)
    size     product: one number (2000); post: 1080x1080 | 1080x1350; custom: WIDTHxHEIGHT
    margin   '8%' or '40px'          shadow  1 | 0          position  center | bottom | 'x% y%'
    bg       a page background ('white', 'blur', '#ff8800', 'own-<hash>'); absent: the preset's own
             (white for product, the blurred original for post and story, transparent for custom)

What each preset makes is pipeline.outputs.presets's; this module only reads the page's words, and
scales a request down for the live preview (same rule, a canvas of at most PREVIEW_SIDE).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from bot.results import zip_bytes
from pipeline.outputs.placement import parse_position
from pipeline.outputs.presets import PRESETS, PresetOptions, parse_margin, parse_size
from pipeline.outputs.sticker import set_entry_names

PREVIEW_SIDE = 480
PAGE_PRESETS = ("original",) + PRESETS
FORMATS = ("auto", "png", "jpg")
FLAGS = {"1": True, "true": True, "on": True, "0": False, "false": False, "off": False, "": False}
MAX_ZIP_JOBS = 50


class PresetRequestError(ValueError):
    """A parameter the page sent that no preset takes: (code, English title) for a 400."""

    def __init__(self, code: str, title: str) -> None:
        super().__init__(title)
        self.code, self.title = code, title


@dataclass(frozen=True)
class PageRequest:
    """A page's ask: which preset (None: the photo's own size), which background, which format."""

    preset: PresetOptions | None
    bg: str | None  # a page background id, None: the preset's own
    fmt: str  # auto | png | jpg

    @property
    def name(self) -> str:
        return self.preset.name if self.preset else "original"

    def cache_tag(self) -> str:
        """A short, stable name for the stored render of this request."""
        text = repr((self.preset and replace(self.preset, background=None), self.bg, self.fmt))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_page_request(args: dict, background_of) -> PageRequest:
    """The page's query (or JSON) values -> PageRequest. background_of(bg) -> Background (raises for unknown ones).

    Raises PresetRequestError for anything a preset cannot do, before anything is read or drawn.
    """
    name = str(args.get("preset") or "original").strip().lower()
    if name not in PAGE_PRESETS:
        raise PresetRequestError("invalid_preset", f"Invalid preset {name[:40]!r}: {' | '.join(PAGE_PRESETS)}")
    fmt = str(args.get("format") or "auto").strip().lower().replace("jpeg", "jpg")
    if fmt not in FORMATS:
        raise PresetRequestError("invalid_format", f"Invalid format {fmt[:40]!r}: png or jpg")
    bg = str(args.get("bg") or "").strip() or None
    if name == "original":
        return PageRequest(None, bg, fmt)
    if name == "sticker":
        if fmt == "jpg":
            raise PresetRequestError("invalid_format", "LINE stickers are PNG files with transparency")
        bg = None  # LINE's rule: a sticker is transparent
    shadow = str(args.get("shadow") or "").strip().lower()
    if shadow not in FLAGS:
        raise PresetRequestError("invalid_shadow", f"Invalid shadow {shadow[:40]!r}: 1 or 0")
    shaped = name != "sticker"  # a sticker's canvas is LINE's: the page's size controls do not apply
    try:
        size = parse_size(str(args["size"])) if args.get("size") and shaped else None
        margin = parse_margin(str(args["margin"])) if args.get("margin") and shaped else None
        position = parse_position(str(args["position"])) if args.get("position") and shaped else None
        options = PresetOptions(name, size=size, margin=margin, position=position, shadow=FLAGS[shadow] and shaped,
                                background=background_of(bg) if bg else None).resolved()
    except ValueError as error:
        raise PresetRequestError("invalid_preset", f"Invalid {name} preset: {error}") from None
    return PageRequest(options, bg, fmt)


def preview_options(options: PresetOptions) -> PresetOptions:
    """The same preset on a canvas of at most PREVIEW_SIDE: the same placement rule, scaled down."""
    if options.name == "sticker":
        return options  # a sticker is at most 370x320 already
    width, height = options.size
    scale = min(1.0, PREVIEW_SIDE / max(width, height))
    margin = options.margin if options.margin < 1 else max(1.0, round(options.margin * scale))
    # 'custom' takes any size: post and story are checked against their exact sizes above.
    return PresetOptions("custom", size=(max(16, round(width * scale)), max(16, round(height * scale))),
                         margin=margin, position=options.position, shadow=options.shadow,
                         background=options.background).resolved()


def file_stem(upload: str, request: PageRequest) -> str:
    """teddy-product, teddy-post, teddy-custom-800x600; the photo's own size: teddy-cutout."""
    if request.preset is None:
        return f"{upload}-cutout"
    if request.name == "custom":
        width, height = request.preset.size
        return f"{upload}-custom-{width}x{height}"
    return f"{upload}-{request.name}"


def sticker_zip(sticker_files: list[dict[str, bytes]]) -> bytes:
    """One LINE sticker set: the stickers, then the first subject's main and tab images."""
    data = [files["sticker"] for files in sticker_files] + [sticker_files[0]["main"], sticker_files[0]["tab"]]
    return zip_bytes(list(zip(set_entry_names(len(sticker_files)), data)))


def files_zip(entries: list[tuple[str, bytes]]) -> bytes:
    """Files named after their uploads; a repeated name gets -2, -3, ... before its extension."""
    taken: set[str] = set()
    return zip_bytes([(unique_name(name, taken), data) for name, data in entries])


def unique_name(name: str, taken: set[str]) -> str:
    stem, dot, extension = name.rpartition(".")
    candidate, number = name, 1
    while candidate.lower() in taken:
        number += 1
        candidate = f"{stem}-{number}{dot}{extension}"
    taken.add(candidate.lower())
    return candidate


__all__ = ["PageRequest", "PresetRequestError", "read_page_request", "preview_options", "file_stem",
           "sticker_zip", "files_zip", "PREVIEW_SIDE", "MAX_ZIP_JOBS"]
