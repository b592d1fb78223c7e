"""Channel-free replies: what we say back. Channels translate these into platform messages.

A result is a `Card` (LINE: a Flex bubble; Messenger: a generic or button template): its picture,
a short headline and up to three short buttons. Long links only ever sit behind a `Link` button,
never in a message's text.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Choice:
    """A button whose tap comes back to us as ChoiceMade(data)."""

    label: str  # short button text (LINE quick reply/button <= 20 chars, Messenger <= 20)
    data: str  # what comes back in ChoiceMade.data
    icon_url: str = ""  # a square PNG shown before a quick reply's label (LINE imageUrl, Messenger image_url)


@dataclass(frozen=True)
class Link:
    """A button that opens a URL (a download); the URL itself is never shown."""

    label: str
    url: str


Button = Choice | Link


@dataclass(frozen=True)
class Text:
    text: str
    choices: tuple[Choice, ...] = ()  # quick-reply buttons under this message


@dataclass(frozen=True)
class Image:
    url: str  # the real file (transparent PNG, or JPEG for opaque composites)
    preview_url: str  # an opaque JPEG <= 1 MB: chat apps show PNG transparency as black
    choices: tuple[Choice, ...] = ()


@dataclass(frozen=True)
class Picture:
    """A card's picture: an opaque JPEG/PNG <= 1024 px a side, <= 1 MB (LINE Flex's image limits)."""

    url: str
    width: int
    height: int
    open_url: str = ""  # what a tap on the picture opens (the full-size file)


@dataclass(frozen=True)
class Card:
    title: str  # one short line (Messenger: <= 80 chars)
    subtitle: str  # one more line (Messenger: <= 80 chars)
    alt_text: str  # what notifications and the chat list show (LINE altText)
    buttons: tuple[Button, ...]  # at most 3 (Messenger's limit); the first is the main one
    picture: Picture | None = None  # none: a menu card (LINE bubble without hero; Messenger button template)
    choices: tuple[Choice, ...] = ()  # quick replies under the card
    # Opens the cutout's editor (LINE: a link under the card's text; Messenger: a tall webview
    # button in place of New background, whose choices ride along as quick replies anyway).
    edit: Link | None = None


@dataclass(frozen=True)
class Carousel:
    """Several result cards side by side (LINE: a Flex carousel, <= 12 bubbles; Messenger: a generic
    template, <= 10 elements). The cards' own quick replies are not shown; the carousel's are."""

    cards: tuple[Card, ...]
    alt_text: str
    choices: tuple[Choice, ...] = ()


Reply = Text | Image | Card | Carousel
