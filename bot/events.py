"""Channel-free events: what a user did, whatever app they did it in.

Events are stored as job payloads (to survive restarts), so each converts to and from a dict.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ImageSource:
    """Where a photo's bytes are: a platform content id, or a URL to fetch with limits."""

    kind: str  # "line_content" | "url" | "blob"
    ref: str  # message id, URL, or blob key


@dataclass(frozen=True)
class Event:
    channel: str
    user_id: str
    event_id: str  # the platform's id, for deduplication
    timestamp: float  # when the platform says it happened (unix seconds)
    reply_token: str | None = None

    @property
    def type(self) -> str:
        return EVENT_TYPES_BY_CLASS[type(self)]

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **asdict(self)}


@dataclass(frozen=True)
class PhotoReceived(Event):
    source: ImageSource = field(default_factory=lambda: ImageSource("blob", ""))
    # Several photos sent at once (LINE imageSet, one Messenger message with several attachments):
    # the set's id, this photo's place in it (1-based) and the set's size; 0 when unknown.
    set_id: str = ""
    set_index: int = 0
    set_total: int = 0


@dataclass(frozen=True)
class TextReceived(Event):
    text: str = ""


@dataclass(frozen=True)
class ChoiceMade(Event):
    """A tap on a button we offered (LINE postback, Messenger quick reply / postback)."""

    data: str = ""


@dataclass(frozen=True)
class Followed(Event):
    """The user added the bot (LINE follow) or pressed Get Started (Messenger)."""

    ref: str = ""  # campaign entry point, if any


@dataclass(frozen=True)
class Unsupported(Event):
    kind: str = ""  # what the user sent: "video", "sticker", "audio", ...


@dataclass(frozen=True)
class AlbumCollected(Event):
    """Not something the user did: the job that answers a set of photos with one summary.

    Created with the first photo of the set to arrive (its reply token, if LINE still takes it).
    """

    set_key: str = ""  # bot.chat.albums.set_key(channel, user, set id)
    set_total: int = 0


EVENT_CLASSES = {
    "photo": PhotoReceived,
    "text": TextReceived,
    "choice": ChoiceMade,
    "follow": Followed,
    "unsupported": Unsupported,
    "album": AlbumCollected,
}
EVENT_TYPES_BY_CLASS = {cls: name for name, cls in EVENT_CLASSES.items()}


def event_from_dict(data: dict[str, Any]) -> Event:
    data = dict(data)
    cls = EVENT_CLASSES[data.pop("type")]
    if cls is PhotoReceived and isinstance(data.get("source"), dict):
        data["source"] = ImageSource(**data["source"])
    return cls(**data)
