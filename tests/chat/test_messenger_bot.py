"""Messenger specifics: verification handshake, signatures, echoes, duplicates, retries, the 24 h window."""
from __future__ import annotations

import time

import pytest

from settings import Settings
from tests.channel_drivers import (MESSENGER_VERIFY, MessengerDriver, chat_app, check_messenger_message,
                                   messenger_body, messenger_signature, only_chinese, stop_chat_app, wait_until)


@pytest.fixture
def setup(tmp_path, small_side_pipeline):
    driver = MessengerDriver()
    app = chat_app(driver, tmp_path, small_side_pipeline)
    yield app.test_client(), driver
    stop_chat_app(app, driver)


def post(client, body: bytes, signature: str | None = None):
    headers = {} if signature is False else {"X-Hub-Signature-256": signature or messenger_signature(body)}
    return client.post("/callback/messenger", data=body, content_type="application/json", headers=headers)


def test_subscription_handshake(setup):
    client, _ = setup
    ok = client.get(f"/callback/messenger?hub.mode=subscribe&hub.verify_token={MESSENGER_VERIFY}&hub.challenge=1158201444")
    assert ok.status_code == 200 and ok.data == b"1158201444"
    assert client.get("/callback/messenger?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1").status_code == 403


def test_forged_signature_echo_and_duplicate(setup):
    client, driver = setup
    body, _ = messenger_body("get_started.json")
    assert post(client, body, signature=messenger_signature(body, "not-the-secret")).status_code == 403
    assert post(client, body, signature=False).status_code == 403
    assert post(client, messenger_body("echo.json")[0]).status_code == 200
    for _ in range(2):
        assert post(client, body).status_code == 200  # Meta redelivers: processed once
    driver.double.wait_for(lambda d: len(d.messages()) >= 1)
    time.sleep(0.5)
    [greeting] = driver.double.messages()
    assert "歡迎" in greeting.body["message"]["text"]
    assert greeting.body["messaging_type"] == "RESPONSE"


def test_bad_image_and_retry_after_server_errors(setup):
    client, driver = setup
    driver.double.fail_next = [(500, {"error": {"message": "temporary", "code": 2}}),
                               (400, {"error": {"message": "(#613) Calls to this api have exceeded the rate limit.", "code": 613}})]
    url = driver.double.add_image("broken.jpg", b"\xff\xd8 not a jpeg")
    body, _ = messenger_body("image_message.json", attachments=[{"type": "image", "payload": {"url": url}},
                                                                {"type": "video", "payload": {"url": url}}])
    assert post(client, body).status_code == 200
    driver.double.wait_for(lambda d: len(d.messages()) >= 2)
    texts = sorted(m.body["message"]["text"] for m in driver.double.messages())
    assert any("無法讀取" in t for t in texts) and any("只看得懂照片" in t for t in texts)
    assert all(only_chinese(t) for t in texts), texts  # no English reason inside the Chinese answer
    for message in driver.double.messages():
        check_messenger_message(message.body["message"])
    assert [r.status for r in driver.double.received if "message" in r.body][:2] == [500, 400]


def test_outside_the_24_hour_window_nothing_is_sent(setup):
    client, driver = setup
    body, _ = messenger_body("get_started.json")
    import json

    payload = json.loads(body)
    payload["entry"][0]["messaging"][0]["timestamp"] = int((time.time() - 25 * 3600) * 1000)
    old = json.dumps(payload).encode()
    assert post(client, old).status_code == 200
    time.sleep(1.0)
    assert driver.double.messages() == []


@pytest.mark.parametrize("payload", [
    [], None, 5, "page",
    {"object": "page", "entry": "not a list"},
    {"object": "page", "entry": ["an entry as a string"]},
    {"object": "page", "entry": [{"messaging": 7}]},
    {"object": "page", "entry": [{"messaging": [{"sender": "7203456789012345"}]}]},
    {"object": "page", "entry": [{"messaging": [{"sender": {"id": "1"}, "timestamp": "soon", "message": {"text": "x"}}]}]},
    {"object": "page", "entry": [{"messaging": [{"sender": {"id": "1"}, "message": {"attachments": {"type": "image"}}}]}]},
    {"object": "page", "entry": [{"messaging": [{"sender": {"id": "1"}, "message": {"attachments": [{"payload": "x"}]}}]}]},
    {"object": "page", "entry": [{"messaging": [{"sender": {"id": "1"}, "message": {"quick_reply": {"payload": 3}}}]}]},
    {"object": "page", "entry": [{"messaging": [{"sender": {"id": "1"}, "postback": ["GET_STARTED"]}]}]},
])
def test_signed_but_malformed_bodies_answer_400(setup, payload):
    import json

    client, driver = setup
    body = json.dumps(payload).encode()
    response = post(client, body)
    assert response.status_code == 400 and response.get_json()["errors"][0]["code"] == "bad_request"
    assert client.application.extensions["cutout"]["jobs"].counts_by_status() == {}


def test_a_resend_continues_after_the_messages_meta_accepted(tmp_path):
    from bot.channels.messenger import MessengerChannel
    from bot.events import TextReceived
    from bot.replies import Text

    driver = MessengerDriver()
    try:
        channel = MessengerChannel(Settings(data_dir=tmp_path, **driver.settings()))
        event = TextReceived("messenger", "7203456789012345", "mid-1", time.time(), None, text="hi")

        class Log(dict):
            def record(self, **notes):
                self.update(notes)

        notes = Log(messages_sent=1)  # a process died after Meta accepted the first of two messages
        channel.send(event, [Text("first"), Text("second")], "unused-retry-key", notes)
        assert [m.body["message"]["text"] for m in driver.double.messages()] == ["second"]
        assert notes["messages_sent"] == 2
    finally:
        driver.stop()


@pytest.fixture
def slow_setup(tmp_path, small_side_pipeline):
    driver = MessengerDriver()
    app = chat_app(driver, tmp_path, small_side_pipeline, loading_renew_s=0.2)
    yield app, driver
    stop_chat_app(app, driver)


def test_the_typing_indicator_is_renewed_for_a_slow_job_and_the_card_follows(slow_setup, portrait_jpeg):
    import threading

    app, driver = slow_setup
    client = app.test_client()
    gate = threading.Event()
    app.extensions["cutout"]["worker"].submit(gate.wait, label="a slow job ahead in the queue")
    driver.send_photo(client, portrait_jpeg, user="7203456789000001")
    typing = lambda: [r for r in driver.double.received if r.body.get("sender_action") == "typing_on"]  # noqa: E731
    assert wait_until(lambda: len(typing()) >= 3)  # renewed while the photo waits behind the slow job
    gate.set()
    [card] = driver.conversation(1)
    message = driver.double.messages()[0].body["message"]
    check_messenger_message(message)
    payload = message["attachment"]["payload"]
    assert payload["template_type"] == "generic" and payload["image_aspect_ratio"] in ("square", "horizontal")
    buttons = payload["elements"][0]["buttons"]  # Download, Edit cutout (a tall webview), More
    assert [button["type"] for button in buttons] == ["web_url", "web_url", "postback"]
    assert buttons[1]["webview_height_ratio"] == "tall" and "/edit/" in buttons[1]["url"]
    assert card["image"] == payload["elements"][0]["buttons"][0]["url"]
    assert all(item["image_url"].startswith("https://cutout.test/icons/bg/") for item in message["quick_replies"])
