"""Drive one chat scenario on either platform: send a photo, read the replies, tap a choice."""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
import uuid
from urllib.parse import urlsplit

from tests.conftest import FIXTURES, LINE_SECRET, LINE_TOKEN, line_body, line_signature
from tests.doubles.graph_platform import GraphPlatformDouble
from tests.doubles.line_platform import LinePlatformDouble

MESSENGER_SECRET = "test-app-secret"
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

    def tap(self, client, data: str, user: str) -> None:
        body, event = line_body("postback.json", **{"postback.data": data, "source.userId": user})
        self.double.valid_reply_tokens.add(event["replyToken"])
        assert client.post("/callback/line", data=body, headers={"X-Line-Signature": line_signature(body)}).status_code == 200

    def conversation(self, count: int) -> list[dict]:
        """Messages the user saw, flattened: {'image': url} / {'text': ..., 'choices': [(label, data)]}."""
        self.double.wait_for(lambda rs: len(self._flat()) >= count)
        return self._flat()

    def _flat(self) -> list[dict]:
        out = []
        for record in self.double.delivered():
            for message in record.body["messages"]:
                items = (message.get("quickReply") or {}).get("items", [])
                choices = [(i["action"]["label"], i["action"]["data"]) for i in items]
                if message["type"] == "image":
                    out.append({"image": message["originalContentUrl"], "choices": choices})
                else:
                    out.append({"text": message["text"], "choices": choices})
        return out

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

    def tap(self, client, data: str, user: str) -> None:
        body, _ = messenger_body("quick_reply.json", user, quick_reply={"payload": data})
        self._post(client, body)

    def _post(self, client, body: bytes) -> None:
        response = client.post("/callback/messenger", data=body, content_type="application/json",
                               headers={"X-Hub-Signature-256": messenger_signature(body)})
        assert response.status_code == 200

    def conversation(self, count: int) -> list[dict]:
        self.double.wait_for(lambda d: len(d.messages()) >= count)
        out = []
        for record in self.double.messages():
            message = record.body["message"]
            choices = [(q["title"], q["payload"]) for q in message.get("quick_replies", [])]
            if "attachment" in message:
                out.append({"image": message["attachment"]["payload"]["url"], "choices": choices})
            else:
                out.append({"text": message["text"], "choices": choices})
        return out

    def stop(self) -> None:
        self.double.stop()


def local_path(url: str) -> str:
    return urlsplit(url).path
