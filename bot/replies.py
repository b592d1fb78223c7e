"""Channel-free replies: what we say back. Channels translate these into platform messages."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Choice:
    label: str  # short button text (LINE quick reply <= 20 chars, Messenger <= 20)
    data: str  # what comes back in ChoiceMade.data


@dataclass(frozen=True)
class Text:
    text: str
    choices: tuple[Choice, ...] = ()  # quick-reply buttons under this message


@dataclass(frozen=True)
class Image:
    url: str  # the real file (transparent PNG, or JPEG for opaque composites)
    preview_url: str  # an opaque JPEG <= 1 MB: chat apps show PNG transparency as black
    choices: tuple[Choice, ...] = ()


Reply = Text | Image
