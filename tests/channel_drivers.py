"""Drive one chat scenario on either platform: send a photo, read the replies, tap a choice."""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import time
import uuid
from urllib.parse import urlsplit

from tests.conftest import FIXTURES, LINE_SECRET, LINE_TOKEN, line_body, line_signature
from tests.doubles.graph_platform import GraphPlatformDouble
from tests.doubles.line_platform import LinePlatformDouble

MESSENGER_SECRET = "test-app-secret"
PUBLIC_BASE_URL = "https://cutout.test"
MESSENGER_TOKEN = "test-page-token"
MESSENGER_VERIFY = "test-verify-token"


def messenger_signature(body: bytes, secret: str = MESSENGER_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def messenger_body(fixture: str, user: str = "7203456789012345", **message_changes) -> tuple[bytes, dict]:
    payload = json.loads((FIXTURES / "messenger" / fixture).read_text())
    item = copy.deepcopy(payload["entry"][0]["messaging"][0])
    item["timestamp"] = int(time.time() * 1000)
    if item["sender"]["id"] != payload["entry"][0]["id"]:
        item["sender"]["id"] = user
    for key in ("message", "postback"):
        if key in item:
            item[key]["mid"] = f"m_{uuid.uuid4().hex}"
            item[key].update(message_changes)
    payload["entry"][0]["messaging"] = [item]
    return json.dumps(payload).encode(), item


def chat_app(driver, tmp_path, pipeline, **overrides):
    """The embedded service (local files + SQLite under tmp_path/var) talking to `driver`'s platform
    double, on the tests' shared pipeline; `overrides` are Settings fields."""
    from app import create_app
    from settings import Settings

    settings = Settings(data_dir=tmp_path / "var", public_base_url=PUBLIC_BASE_URL, warm_up=False,
                        **driver.settings(), **overrides)
    return create_app(settings, pipeline=pipeline)


def stop_chat_app(app, driver=None) -> None:
    """Stop the app's pipeline thread, let its IO lane finish what is in flight, then the double."""
    app.extensions["cutout"]["worker"].stop()
    app.extensions["cutout"]["conversation"].io.shutdown(wait=True)
    if driver is not None:
        driver.stop()


class LineDriver:
    name = "line"

    def __init__(self) -> None:
        self.double = LinePlatformDouble(LINE_TOKEN).start()

    def settings(self) -> dict:
        return dict(line_channel_secret=LINE_SECRET, line_channel_access_token=LINE_TOKEN,
                    line_api_base_url=self.double.base_url)

    def send_photo(self, client, photo: bytes, user: str) -> None:
        message_id = str(time.time_ns())
        self.double.add_content(message_id, photo)
        body, event = line_body("image_message.json", **{"message.id": message_id, "source.userId": user})
        self.double.valid_reply_tokens.add(event["replyToken"])
        assert client.post("/callback/line", data=body, headers={"X-Line-Signature": line_signature(body)}).status_code == 200

    def send_album(self, client, photos: list[bytes], user: str, total: int | None = None,
                   numbered: bool = True) -> list[dict]:
        """Several photos sent at once: one webhook, one image event each, sharing an imageSet
        {id, index, total} (Messaging API reference, image message event). With `total` larger than
        the photos given, the set's last photos never arrive; `numbered=False` leaves out index and
        total, as LINE for Android 11.15 and older does. Returns the events."""
        set_id = uuid.uuid4().hex.upper() * 2
        events = []
        for index, photo in enumerate(photos, start=1):
            message_id = str(time.time_ns())
            self.double.add_content(message_id, photo)
            _, event = line_body("image_message.json", **{
                "message.id": message_id, "source.userId": user,
                "message.imageSet": {"id": set_id, "index": index, "total": total or len(photos)}
                if numbered else {"id": set_id}})
            self.double.valid_reply_tokens.add(event["replyToken"])
            events.append(event)
        body = json.dumps({"destination": "Uxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "events": events}).encode()
        assert client.post("/callback/line", data=body, headers={"X-Line-Signature": line_signature(body)}).status_code == 200
        return events

    def tap(self, client, data: str, user: str) -> None:
        body, event = line_body("postback.json", **{"postback.data": data, "source.userId": user})
        self.double.valid_reply_tokens.add(event["replyToken"])
        assert client.post("/callback/line", data=body, headers={"X-Line-Signature": line_signature(body)}).status_code == 200

    def conversation(self, count: int, timeout: float = 60.0) -> list[dict]:
        """Messages the user saw, flattened (see flat_line_message)."""
        self.double.wait_for(lambda rs: len(self._flat()) >= count, timeout)
        return self._flat()

    def _flat(self) -> list[dict]:
        return [flat_line_message(message) for record in self.double.delivered() for message in record.body["messages"]]

    def raw_messages(self) -> list[dict]:
        return [message for record in self.double.delivered() for message in record.body["messages"]]

    check = staticmethod(lambda message: check_line_message(message))

    def stop(self) -> None:
        self.double.stop()


class MessengerDriver:
    name = "messenger"

    def __init__(self) -> None:
        self.double = GraphPlatformDouble(MESSENGER_TOKEN).start()

    def settings(self) -> dict:
        return dict(messenger_app_secret=MESSENGER_SECRET, messenger_page_access_token=MESSENGER_TOKEN,
                    messenger_verify_token=MESSENGER_VERIFY, messenger_api_base_url=self.double.base_url,
                    fetch_allowlist=(self.double.host,))

    def send_photo(self, client, photo: bytes, user: str) -> None:
        url = self.double.add_image(f"{uuid.uuid4().hex}.jpg", photo)
        body, _ = messenger_body("image_message.json", user, attachments=[{"type": "image", "payload": {"url": url}}])
        self._post(client, body)

    def send_album(self, client, photos: list[bytes], user: str) -> None:
        """Several photos in one message: one messaging item with one attachment each."""
        urls = [self.double.add_image(f"{uuid.uuid4().hex}.jpg", photo) for photo in photos]
        body, _ = messenger_body("image_message.json", user,
                                 attachments=[{"type": "image", "payload": {"url": url}} for url in urls])
        self._post(client, body)

    def tap(self, client, data: str, user: str) -> None:
        body, _ = messenger_body("quick_reply.json", user, quick_reply={"payload": data})
        self._post(client, body)

    def _post(self, client, body: bytes) -> None:
        response = client.post("/callback/messenger", data=body, content_type="application/json",
                               headers={"X-Hub-Signature-256": messenger_signature(body)})
        assert response.status_code == 200

    def conversation(self, count: int, timeout: float = 60.0) -> list[dict]:
        self.double.wait_for(lambda d: len(d.messages()) >= count, timeout)
        return [flat_messenger_message(record.body["message"]) for record in self.double.messages()]

    def raw_messages(self) -> list[dict]:
        return [record.body["message"] for record in self.double.messages()]

    check = staticmethod(lambda message: check_messenger_message(message))

    def stop(self) -> None:
        self.double.stop()


def local_path(url: str) -> str:
    return urlsplit(url).path


# Flattened messages, the same on both platforms:
#   text:  {"text", "choices": [(label, data)], "icons": [url], "raw"}
#   image: {"image": file url, "choices", "icons", "raw"}
#   card:  {"card": True, "title", "subtitle", "text": title + subtitle, "image": the file a tap opens
#           (None for a menu card), "preview": the picture's URL, "buttons": [(label, "url" | "data", value)],
#           "choices", "icons", "raw"}
#   carousel: {"carousel": True, "cards": [card fields as above], "choices", "icons", "raw"}
def flat_line_message(message: dict) -> dict:
    items = (message.get("quickReply") or {}).get("items", [])
    out = {"choices": [(i["action"]["label"], i["action"]["data"]) for i in items],
           "icons": [i.get("imageUrl") for i in items], "raw": message}
    if message["type"] == "image":
        return {**out, "image": message["originalContentUrl"]}
    if message["type"] == "flex" and message["contents"]["type"] == "carousel":
        return {**out, "carousel": True, "cards": [_flat_bubble(b) for b in message["contents"]["contents"]],
                "alt_text": message["altText"]}
    if message["type"] == "flex":
        return {**out, **_flat_bubble(message["contents"]), "alt_text": message["altText"]}
    return {**out, "text": message["text"]}


def _flat_bubble(bubble: dict) -> dict:
    texts = [c["text"] for c in bubble["body"]["contents"] if c["type"] == "text"]
    hero = bubble.get("hero")
    buttons = [(a["label"], "url", a["uri"]) if a["type"] == "uri" else (a["label"], "data", a["data"])
               for a in (c["action"] for c in _flex_components(bubble.get("footer")) if c["type"] == "button")]
    return {"card": True, "title": texts[0], "subtitle": texts[1], "text": "\n".join(texts),
            "image": hero["action"]["uri"] if hero else None, "preview": hero["url"] if hero else None,
            "buttons": buttons}


def _flex_components(box: dict | None):
    for component in (box or {}).get("contents", []):
        yield component
        if component["type"] == "box":
            yield from _flex_components(component)


def flat_messenger_message(message: dict) -> dict:
    quick = message.get("quick_replies", [])
    out = {"choices": [(q["title"], q["payload"]) for q in quick], "icons": [q.get("image_url") for q in quick],
           "raw": message}
    attachment = message.get("attachment")
    if attachment is None:
        return {**out, "text": message["text"]}
    payload = attachment["payload"]
    if attachment["type"] == "image":
        return {**out, "image": payload["url"]}
    buttons_of = lambda holder: [(b["title"], "url", b["url"]) if b["type"] == "web_url" else  # noqa: E731
                                 (b["title"], "data", b["payload"]) for b in holder.get("buttons", [])]
    if payload["template_type"] == "button":
        title, _, subtitle = payload["text"].partition("\n")
        return {**out, "card": True, "title": title, "subtitle": subtitle, "text": payload["text"], "image": None,
                "preview": None, "buttons": buttons_of(payload)}
    cards = [{"card": True, "title": element["title"], "subtitle": element.get("subtitle", ""),
              "text": element["title"] + "\n" + element.get("subtitle", ""),
              "image": element.get("default_action", {}).get("url"), "preview": element.get("image_url"),
              "buttons": buttons_of(element)} for element in payload["elements"]]
    if len(cards) > 1:
        return {**out, "carousel": True, "cards": cards}
    return {**out, **cards[0]}


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# zh-TW texts: Chinese only, but for names people know in that form (brands, formats, the unit MB).
ALLOWED_LATIN = {"PNG", "JPEG", "WebP", "HEIC", "LINE", "Messenger", "MB", "Cutout", "Bot", "English", "ZIP"}


def only_chinese(text: str) -> bool:
    return set(re.findall(r"[A-Za-z]+", text)) <= ALLOWED_LATIN


# --- platform shape checks: what each platform documents, so a bad message fails here, not in the app --
URL_IN_TEXT = re.compile(r"https?://|www\.|/r/[A-Za-z0-9_-]{8,}")


def _subset(sent, parsed) -> bool:
    """Every field we sent survives the SDK's parse with the same value (unknown fields are dropped)."""
    if isinstance(sent, dict):
        return isinstance(parsed, dict) and all(k in parsed and _subset(v, parsed[k]) for k, v in sent.items())
    if isinstance(sent, list):
        return isinstance(parsed, list) and len(sent) == len(parsed) and all(map(_subset, sent, parsed))
    return sent == parsed


def _line_actions(node):
    if isinstance(node, dict):
        if "action" in node:
            yield node["action"]
        for value in node.values():
            yield from _line_actions(value)
    elif isinstance(node, list):
        for value in node:
            yield from _line_actions(value)


def check_line_message(message: dict) -> None:
    """A message as LINE's Messaging API reference documents it, parsed by line-bot-sdk v3's models."""
    from linebot.v3.messaging import FlexMessage, ImageMessage, TextMessage

    model = {"flex": FlexMessage, "text": TextMessage, "image": ImageMessage}[message["type"]]
    parsed = model.from_dict(message).to_dict()
    assert _subset(message, parsed), (message, parsed)
    items = (message.get("quickReply") or {}).get("items", [])
    assert len(items) <= 13
    for item in items:
        assert item["type"] == "action" and len(item["action"]["label"]) <= 20
        if "imageUrl" in item:
            assert item["imageUrl"].startswith("https://") and len(item["imageUrl"]) <= 1000
    for action in _line_actions(message.get("contents", {})):
        assert 1 <= len(action.get("label", "x")) <= 20, action
        if action["type"] == "uri":
            assert action["uri"].startswith("https://") and len(action["uri"]) <= 1000
        elif action["type"] == "postback":
            assert len(action["data"]) <= 300 and len(action.get("displayText", "")) <= 300
    if message["type"] == "text":
        assert not URL_IN_TEXT.search(message["text"]), message["text"]
    if message["type"] == "flex":
        assert 1 <= len(message["altText"]) <= 1500 and not URL_IN_TEXT.search(message["altText"])
        contents = message["contents"]
        if contents["type"] == "carousel":  # LINE: at most 12 bubbles and 50 KB of JSON
            assert 1 <= len(contents["contents"]) <= 12
            assert len(json.dumps(contents, ensure_ascii=False).encode()) <= 50_000
            for bubble in contents["contents"]:
                _check_bubble(bubble)
        else:
            _check_bubble(contents)


def _check_bubble(bubble: dict) -> None:
    assert bubble["type"] == "bubble"
    for component in _flex_components(bubble.get("body")):
        if component["type"] == "text":
            assert component["text"] and not URL_IN_TEXT.search(component["text"])
    hero = bubble.get("hero")
    if hero is not None:
        assert hero["type"] == "image" and hero["url"].startswith("https://") and len(hero["url"]) <= 2000
        width, height = map(int, hero["aspectRatio"].split(":"))
        assert 1 <= width <= 100000 and 1 <= height <= 100000 and height <= 3 * width
    footer_buttons = [c for c in _flex_components(bubble.get("footer")) if c["type"] == "button"]
    assert 1 <= len(footer_buttons) <= 3


def check_messenger_message(message: dict) -> None:
    """A message as Meta's Send API reference documents it (quick replies, generic and button templates)."""
    quick = message.get("quick_replies", [])
    assert len(quick) <= 13
    for item in quick:
        assert item["content_type"] == "text" and 1 <= len(item["title"]) <= 20 and len(item["payload"]) <= 1000
    if "text" in message:
        assert len(message["text"]) <= 2000 and not URL_IN_TEXT.search(message["text"]), message["text"]
        return
    attachment = message["attachment"]
    if attachment["type"] != "template":
        return
    payload = attachment["payload"]
    holders = [payload] if payload["template_type"] == "button" else payload["elements"]
    if payload["template_type"] == "button":
        assert len(payload["text"]) <= 640 and not URL_IN_TEXT.search(payload["text"])
    else:
        assert payload["template_type"] == "generic" and 1 <= len(payload["elements"]) <= 10
        assert payload.get("image_aspect_ratio", "horizontal") in ("horizontal", "square")
        for element in payload["elements"]:
            assert 1 <= len(element["title"]) <= 80 and len(element.get("subtitle", "")) <= 80
            assert not URL_IN_TEXT.search(element["title"] + element.get("subtitle", ""))
            assert element["image_url"].startswith("https://")
    for holder in holders:
        assert 1 <= len(holder["buttons"]) <= 3
        for button in holder["buttons"]:
            assert button["type"] in ("web_url", "postback") and 1 <= len(button["title"]) <= 20
            if button["type"] == "postback":
                assert len(button["payload"]) <= 1000
