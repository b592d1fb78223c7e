"""Messenger specifics: verification handshake, signatures, echoes, duplicates, retries, the 24 h window."""
from __future__ import annotations

import time

import pytest

from app import create_app
from settings import Settings
from tests.channel_drivers import MESSENGER_VERIFY, MessengerDriver, messenger_body, messenger_signature


@pytest.fixture
def setup(tmp_path, real_pipeline):
    driver = MessengerDriver()
    app = create_app(Settings(data_dir=tmp_path / "var", public_base_url="https://cutout.test", warm_up=False,
                              **driver.settings()), pipeline=real_pipeline)
    yield app.test_client(), driver
    app.extensions["cutout"]["worker"].stop()
    driver.stop()


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
