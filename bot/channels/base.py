"""The Channel protocol: what every chat platform adapter offers the conversation.

Channels translate; they never decide. `parse` turns a verified webhook into typed events,
`send` turns our replies into platform calls (choosing reply vs push is the channel's business).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from flask import Blueprint

from bot.events import Event, ImageSource
from bot.replies import Reply

AcceptEvents = Callable[[list[Event]], int]


class SendError(RuntimeError):
    """The platform refused or never answered, after the channel's own retries."""


@dataclass(frozen=True)
class Delivery:
    """How `send` delivered: for metrics (cutout_chat_deliveries_total) and the logs.

    via: "reply" (LINE's free reply token), "push" (LINE push, billed against the monthly quota)
    or "send" (Messenger's Send API). reason: why a LINE reply token was not used ("no_token",
    "token_expired", "token_used"), or how an earlier attempt's reply was settled
    ("delivered_earlier", "maybe_delivered"); "" for a plain reply or send.
    """

    via: str
    reason: str = ""


class DeliveryLog(Protocol):
    """Notes on one delivery, stored on the job before `record` returns.

    A channel records what it is about to do before a call whose outcome a crash could hide
    (e.g. LINE's reply), so that after a restart it can tell "not sent" from "maybe sent".
    """

    def get(self, key: str, default: Any = None) -> Any:
        """A note recorded by an earlier attempt (possibly by a process that has since died)."""

    def record(self, **notes: Any) -> None:
        """Store notes durably before returning."""


class Channel(Protocol):
    name: str
    max_carousel_cards: int  # cards one carousel message may hold (LINE 12 bubbles, Messenger 10 elements)

    def blueprint(self, accept: AcceptEvents) -> Blueprint:
        """Flask routes for the platform's webhook; verified events go to `accept`."""

    def fetch_image(self, source: ImageSource) -> bytes:
        """The bytes of a photo the user sent (raises bot.fetch.FetchError on failure)."""

    def start_loading(self, event: Event) -> None:
        """Show the user that we are working (best effort, never raises)."""

    def can_send(self, event: Event) -> bool:
        """False when the platform's rules forbid answering this event now."""

    def send(self, event: Event, replies: list[Reply], retry_key: str, log: DeliveryLog) -> Delivery:
        """Deliver replies to the user who caused `event` exactly once, even when called again for
        the same delivery after a crash: `retry_key` is stable per delivery, `log` holds the notes
        of earlier attempts (raises SendError)."""
