"""Facebook Messenger channel: Meta's webhook in, the Graph Send API out (plain HTTP, no SDK).

GET /callback/messenger answers Meta's subscription check; POST verifies X-Hub-Signature-256
(HMAC-SHA256 of the raw body with the app secret, constant-time compare; 403 otherwise), turns
every messaging item of every entry into events and returns at once.
Results go out as generic templates (picture, title, subtitle, up to three buttons: web_url for
the download, postbacks for the menus); a set's results one generic template of up to 10 elements
(Meta's limit); quick replies carry colour icons (image_url). A message with several photos is a set:
its attachments become PhotoReceived with set_id (the message id), set_index and set_total.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time

import requests
from flask import Blueprint, abort, request

from bot.channels.base import AcceptEvents, Delivery, DeliveryLog, SendError
from bot.events import ChoiceMade, Event, Followed, ImageSource, PhotoReceived, TextReceived, Unsupported
from bot.fetch import fetch_url
from bot.replies import Card, Carousel, Choice, Image, Link, Reply
from settings import Settings

log = logging.getLogger(__name__)

STANDARD_WINDOW_S = 24 * 3600  # Meta's standard messaging window after the user's last message
MAX_QUICK_REPLIES = 13
TITLE_LIMIT = 20  # quick reply and button titles
CARD_TEXT_LIMIT = 80  # generic template title and subtitle
BUTTON_TEXT_LIMIT = 640  # button template text
MAX_BUTTONS = 3
MAX_GENERIC_ELEMENTS = 10
SEND_ATTEMPTS = 4
RATE_LIMIT_CODES = {4, 17, 32, 613}  # Graph API throttling error codes
GET_STARTED = "GET_STARTED"


class MessengerChannel:
    name = "messenger"
    max_carousel_cards = MAX_GENERIC_ELEMENTS

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        self.settings = settings
        self.session = session or requests.Session()
        self.send_url = (f"{settings.messenger_api_base_url}/{settings.messenger_graph_version}/me/messages")

    # --- inbound ------------------------------------------------------------------------------
    def blueprint(self, accept: AcceptEvents) -> Blueprint:
        blueprint = Blueprint("messenger", __name__)

        @blueprint.get("/callback/messenger")
        def verify():
            token = request.args.get("hub.verify_token", "")
            expected = self.settings.messenger_verify_token
            if (request.args.get("hub.mode") == "subscribe" and expected
                    and hmac.compare_digest(token.encode(), expected.encode())):
                return request.args.get("hub.challenge", ""), 200, {"Content-Type": "text/plain"}
            abort(403)

        @blueprint.post("/callback/messenger")
        def callback():
            body = request.get_data()
            if not self.signature_valid(body, request.headers.get("X-Hub-Signature-256", "")):
                log.warning("Messenger webhook with a bad or missing signature refused")
                abort(403)
            try:
                payload = json.loads(body)
                if not isinstance(payload, dict):
                    raise MalformedBody("the body must be a JSON object")
                if payload.get("object") != "page":
                    abort(404)
                events = self.translate(payload)
            except ValueError as error:  # bad JSON or MalformedBody: nothing is accepted
                log.warning("Messenger webhook body refused: %s", error)
                abort(400, f"malformed body: {error}")
            accept(events)
            return "EVENT_RECEIVED"

        return blueprint

    def signature_valid(self, body: bytes, header: str) -> bool:
        if not self.settings.messenger_app_secret or not header.startswith("sha256="):
            return False
        expected = hmac.new(self.settings.messenger_app_secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(header[len("sha256="):].encode(), expected.encode())

    def translate(self, payload: dict) -> list[Event]:
        """Every messaging item of every entry -> events; MalformedBody when a field has the wrong type."""
        events: list[Event] = []
        for entry in _items(payload, "entry"):
            for item in _items(entry, "messaging"):
                events.extend(self._translate_item(item))
        return events

    def _translate_item(self, item: dict) -> list[Event]:
        user_id = _get(_get(item, "sender", dict, {}), "id", str)
        if not user_id:
            return []
        timestamp = _get(item, "timestamp", (int, float), time.time() * 1000) / 1000.0
        message = _get(item, "message", dict)
        if message is not None:
            if message.get("is_echo"):
                return []  # our own messages, echoed back by Meta
            mid = _get(message, "mid", str) or f"{user_id}-{timestamp}"
            common = dict(channel=self.name, user_id=user_id, timestamp=timestamp)
            quick = _get(message, "quick_reply", dict)
            if quick:
                return [ChoiceMade(**common, event_id=mid, data=_get(quick, "payload", str, ""))]
            attachments = _items(message, "attachments")
            if attachments:
                events: list[Event] = []
                photos = sum(1 for attachment in attachments if _get(attachment, "type", str, "") == "image"
                             and _get(_get(attachment, "payload", dict, {}), "url", str))
                photo_index = 0
                for index, attachment in enumerate(attachments):
                    event_id = f"{mid}:{index}"
                    url = _get(_get(attachment, "payload", dict, {}), "url", str)
                    kind = _get(attachment, "type", str, "unknown")
                    if kind == "image" and url:
                        photo_index += 1
                        in_set = dict(set_id=mid, set_index=photo_index, set_total=photos) if photos > 1 else {}
                        events.append(PhotoReceived(**common, event_id=event_id, source=ImageSource("url", url),
                                                    **in_set))
                    else:
                        events.append(Unsupported(**common, event_id=event_id, kind=kind))
                return events
            text = _get(message, "text", str)
            if text is not None:
                return [TextReceived(**common, event_id=mid, text=text)]
            return [Unsupported(**common, event_id=mid, kind="unknown")]
        postback = _get(item, "postback", dict)
        if postback is not None:
            event_id = _get(postback, "mid", str) or f"postback-{user_id}-{item.get('timestamp')}"
            ref = _get(_get(postback, "referral", dict, {}), "ref", str, "")
            data = _get(postback, "payload", str, "")
            if data == GET_STARTED:
                return [Followed(self.name, user_id, event_id, timestamp, ref=ref)]
            return [ChoiceMade(self.name, user_id, event_id, timestamp, data=data)]
        referral = _get(item, "referral", dict)
        if referral is not None:
            event_id = f"referral-{user_id}-{item.get('timestamp')}"
            return [Followed(self.name, user_id, event_id, timestamp, ref=_get(referral, "ref", str, ""))]
        return []

    def fetch_image(self, source: ImageSource) -> bytes:
        return fetch_url(source.ref, self.settings.max_image_bytes, self.settings.fetch_timeout_s,
                         self.settings.fetch_allowlist)

    # --- outbound -------------------------------------------------------------------------------
    def start_loading(self, event: Event) -> None:
        try:
            self._post({"recipient": {"id": event.user_id}, "sender_action": "typing_on"}, attempts=1)
        except SendError as error:
            log.info("Messenger typing indicator failed: %s", error)

    def can_send(self, event: Event) -> bool:
        return time.time() - event.timestamp < STANDARD_WINDOW_S

    def send(self, event: Event, replies: list[Reply], retry_key: str, log: DeliveryLog) -> Delivery:
        # The Send API has no idempotency key: count the messages Meta accepted, so a resend after
        # a restart continues after them instead of repeating them.
        done = log.get("messages_sent", 0)
        for index, reply in enumerate(replies[done:], start=done):
            message = to_messenger_message(reply)
            self._post({"recipient": {"id": event.user_id}, "messaging_type": "RESPONSE", "message": message})
            log.record(messages_sent=index + 1)
        return Delivery("send")

    def _post(self, body: dict, attempts: int = SEND_ATTEMPTS) -> None:
        params = {"access_token": self.settings.messenger_page_access_token}
        for attempt in range(1, attempts + 1):
            try:
                response = self.session.post(self.send_url, params=params, json=body,
                                             timeout=self.settings.platform_timeout_s)
            except requests.RequestException as error:
                status, detail = 0, type(error).__name__
            else:
                if response.status_code == 200:
                    return
                status, detail = response.status_code, response.text[:200]
                code = _graph_error_code(response)
                if status < 500 and status != 429 and code not in RATE_LIMIT_CODES:
                    raise SendError(f"Messenger send refused: HTTP {status} {detail}")
            if attempt < attempts:
                time.sleep(0.25 * 2**attempt)
        log.error("Messenger send gave up after %d attempts: HTTP %s %s", attempts, status, detail)
        raise SendError(f"Messenger send failed after {attempts} attempts: HTTP {status}")


class MalformedBody(ValueError):
    """A signed webhook body whose fields do not have the types Meta documents."""


def _get(container: dict, name: str, kind: type | tuple[type, ...], default=None):
    """container[name] when present and of `kind` (bools are not numbers); None/absent -> default."""
    value = container.get(name)
    if value is None:
        return default
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise MalformedBody(f"{name!r} has the wrong type ({type(value).__name__})")
    return value


def _items(container: dict, name: str) -> list[dict]:
    """container[name] as a list of objects ([] when absent)."""
    items = _get(container, name, list, [])
    if not all(isinstance(item, dict) for item in items):
        raise MalformedBody(f"{name!r} must be a list of objects")
    return items


def _graph_error_code(response: requests.Response) -> int | None:
    try:
        return int(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


def quick_replies(choices: tuple[Choice, ...]) -> list[dict]:
    items = []
    for choice in choices[:MAX_QUICK_REPLIES]:
        item = {"content_type": "text", "title": choice.label[:TITLE_LIMIT], "payload": choice.data}
        if choice.icon_url:
            item["image_url"] = choice.icon_url
        items.append(item)
    return items


def button(item: Choice | Link) -> dict:
    if isinstance(item, Link):
        return {"type": "web_url", "url": item.url, "title": item.label[:TITLE_LIMIT]}
    return {"type": "postback", "title": item.label[:TITLE_LIMIT], "payload": item.data}


def card_attachment(card: Card) -> dict:
    """A card with a picture: a generic template (one element); without: a button template."""
    buttons = [button(item) for item in card.buttons[:MAX_BUTTONS]]
    if card.edit is not None and len(buttons) == MAX_BUTTONS:
        # Three buttons at most: the editor takes New background's place (the backgrounds are the
        # card's quick replies, and More offers them again). Tall: the editor needs the room.
        buttons[1] = {**button(card.edit), "webview_height_ratio": "tall"}
    if card.picture is None:
        text = f"{card.title}\n{card.subtitle}"[:BUTTON_TEXT_LIMIT]
        return {"type": "template", "payload": {"template_type": "button", "text": text, "buttons": buttons}}
    picture = card.picture
    element = {"title": card.title[:CARD_TEXT_LIMIT], "subtitle": card.subtitle[:CARD_TEXT_LIMIT],
               "image_url": picture.url, "buttons": buttons}
    if picture.open_url:
        element["default_action"] = {"type": "web_url", "url": picture.open_url}
    # Messenger crops the picture to 1.91:1 ("horizontal") or 1:1: the nearer one keeps most of it.
    ratio = "horizontal" if picture.width >= 1.5 * picture.height else "square"
    return {"type": "template", "payload": {"template_type": "generic", "image_aspect_ratio": ratio,
                                            "elements": [element]}}


def carousel_attachment(carousel: Carousel) -> dict:
    """Cards side by side: one generic template, every element cropped the same way."""
    elements = [card_attachment(card)["payload"]["elements"][0] for card in carousel.cards[:MAX_GENERIC_ELEMENTS]
                if card.picture is not None]
    first = next(card.picture for card in carousel.cards if card.picture is not None)
    ratio = "horizontal" if first.width >= 1.5 * first.height else "square"
    return {"type": "template", "payload": {"template_type": "generic", "image_aspect_ratio": ratio,
                                            "elements": elements}}


def to_messenger_message(reply: Reply) -> dict:
    if isinstance(reply, Carousel):
        message: dict = {"attachment": carousel_attachment(reply)}
    elif isinstance(reply, Card):
        message: dict = {"attachment": card_attachment(reply)}
    elif isinstance(reply, Image):
        # Messenger shows one URL; the real PNG keeps the transparency users download.
        message = {"attachment": {"type": "image", "payload": {"url": reply.url, "is_reusable": True}}}
    else:
        message = {"text": reply.text[:2000]}
    if reply.choices:
        message["quick_replies"] = quick_replies(reply.choices)
    return message
