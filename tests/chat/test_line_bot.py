"""LINE end to end: signed webhooks in, the real SDK calling a local LINE double, files served back."""
from __future__ import annotations

import re

import io
import threading
import time
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from app import create_app
from settings import Settings
from tests.channel_drivers import URL_IN_TEXT, check_line_message, flat_line_message, only_chinese, wait_until
from tests.conftest import LINE_SECRET, LINE_TOKEN, line_body, line_signature
from tests.doubles.line_platform import LinePlatformDouble


@pytest.fixture
def line_double():
    double = LinePlatformDouble(LINE_TOKEN).start()
    yield double
    double.stop()


def make_settings(tmp_path, double, **overrides) -> Settings:
    values = dict(data_dir=tmp_path / "var", public_base_url="https://cutout.test", line_channel_secret=LINE_SECRET,
                  line_channel_access_token=LINE_TOKEN, line_api_base_url=double.base_url, warm_up=False)
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def make_app(tmp_path, line_double, small_side_pipeline):
    apps = []

    def factory(**overrides):
        app = create_app(make_settings(tmp_path, line_double, **overrides), pipeline=small_side_pipeline)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        state = app.extensions["cutout"]
        state["worker"].stop()
        state["conversation"].io.shutdown(wait=True)


def post_webhook(client, body: bytes, signature: str | None = None):
    headers = {"Content-Type": "application/json"}
    if signature is not False:
        headers["X-Line-Signature"] = signature or line_signature(body)
    return client.post("/callback/line", data=body, headers=headers)


def fetch_result(client, url: str):
    assert url.startswith("https://cutout.test/r/")
    return client.get(urlsplit(url).path)


def send_photo(client, double, photo: bytes, fresh_token: bool = True, **changes):
    message_id = str(time.time_ns())
    double.add_content(message_id, photo)
    body, event = line_body("image_message.json", **{"message.id": message_id, **changes})
    if fresh_token:
        double.valid_reply_tokens.add(event["replyToken"])
    response = post_webhook(client, body)
    assert response.status_code == 200
    return event


def sent_to(double, user_id: str, count: int, timeout: float = 90.0):
    received = double.wait_for(lambda rs: len([r for r in rs if r.path.endswith(("/reply", "/push"))]) >= count, timeout)
    return [r for r in received if r.path.endswith(("/reply", "/push"))]


def test_photo_to_cutout_to_background_choice(make_app, line_double, portrait_jpeg):
    app = make_app()
    client = app.test_client()
    event = send_photo(client, line_double, portrait_jpeg)

    [reply] = sent_to(line_double, event["source"]["userId"], 1)
    assert reply.path == "/v2/bot/message/reply"
    assert reply.body["replyToken"] == event["replyToken"]
    [message] = reply.body["messages"]  # one Flex bubble: no image + raw-link text pair any more
    check_line_message(message)  # line-bot-sdk's models parse it and LINE's documented limits hold
    assert message["type"] == "flex" and message["altText"] == "去背完成！打開聊天室下載透明背景 PNG"
    bubble = message["contents"]
    card = flat_line_message(message)
    assert any(r.path == "/v2/bot/chat/loading/start" for r in line_double.received)
    assert any(r.path.endswith(f"/message/{event['message']['id']}/content") for r in line_double.received)

    original = fetch_result(client, card["image"])  # the hero's tap and the Download button: the real PNG
    assert original.status_code == 200 and original.headers["Content-Type"] == "image/png"
    assert [button[2] for button in card["buttons"] if button[1] == "url"] == [card["image"]]
    cutout = Image.open(io.BytesIO(original.data))
    assert cutout.mode == "RGBA"
    alpha = np.asarray(cutout)[:, :, 3]
    assert (alpha == 0).mean() > 0.2 and (alpha == 255).mean() > 0.2  # real background removed
    assert ((alpha > 10) & (alpha < 245)).mean() > 0.005  # soft hair edges, not a hard mask

    hero = bubble["hero"]
    preview = fetch_result(client, hero["url"])
    assert preview.headers["Content-Type"] == "image/jpeg" and len(preview.data) <= 1_000_000
    shown = Image.open(io.BytesIO(preview.data))
    assert shown.mode == "RGB" and max(shown.size) <= 1024
    width, height = map(int, hero["aspectRatio"].split(":"))
    assert abs(width / height - shown.width / shown.height) < 0.01  # the picture at its own shape

    assert not any(URL_IN_TEXT.search(text) for text in (card["text"], message["altText"]))
    items = message["quickReply"]["items"]
    assert 5 <= len(items) <= 13
    assert all(len(item["action"]["label"]) <= 20 for item in items)
    assert all(item["imageUrl"].startswith("https://cutout.test/icons/bg/") for item in items)
    icon = client.get(urlsplit(items[0]["imageUrl"]).path)
    assert icon.status_code == 200 and icon.headers["Content-Type"] == "image/png" and len(icon.data) < 20_000
    white = next(item for item in items if item["action"]["data"].startswith("bg=white"))

    body, postback = line_body("postback.json", **{"postback.data": white["action"]["data"]})
    line_double.valid_reply_tokens.add(postback["replyToken"])
    assert post_webhook(client, body).status_code == 200
    second = sent_to(line_double, postback["source"]["userId"], 2)[1]
    composite_message = second.body["messages"][0]
    check_line_message(composite_message)
    assert flat_line_message(composite_message)["title"] == "換好背景了：白底"
    composite = fetch_result(client, flat_line_message(composite_message)["image"])
    assert composite.headers["Content-Type"] == "image/jpeg"
    pixels = np.asarray(Image.open(io.BytesIO(composite.data)).convert("RGB"), dtype=np.float32)
    background = alpha < 5
    assert pixels[background].mean() > 245  # the old background became white
    assert pixels[alpha > 250].mean() < 235  # the subject is still there


def test_forged_and_missing_signatures_are_refused(make_app, line_double):
    client = make_app().test_client()
    body, _ = line_body("text_message.json")
    assert post_webhook(client, body, signature=line_signature(body, "wrong-secret")).status_code == 400
    assert post_webhook(client, body, signature=False).status_code == 400
    time.sleep(0.3)
    assert line_double.messages_sent() == []


def test_redelivered_event_is_processed_once(make_app, line_double):
    client = make_app().test_client()
    body, event = line_body("text_message.json")
    line_double.valid_reply_tokens.add(event["replyToken"])
    for _ in range(3):
        assert post_webhook(client, body).status_code == 200
    sent_to(line_double, event["source"]["userId"], 1)
    time.sleep(0.5)
    assert len(line_double.messages_sent()) == 1
    assert "用法" in line_double.messages_sent()[0].body["messages"][0]["text"]


def metric(client, line: str) -> int:
    text = client.get("/metrics").get_data(as_text=True)
    found = re.search(re.escape(line) + r" (\d+)", text)
    return int(found.group(1)) if found else 0


def test_a_used_reply_token_falls_back_to_push_with_retry_key(make_app, line_double, caplog):
    client = make_app().test_client()
    # The token is not registered with the double: LINE answers 400 Invalid reply token, within
    # the minute LINE guarantees a token: it was used already.
    body, event = line_body("follow.json")
    with caplog.at_level("INFO", logger="bot.channels.line"):
        assert post_webhook(client, body).status_code == 200
        sent = sent_to(line_double, event["source"]["userId"], 2)
    assert [r.path for r in sent] == ["/v2/bot/message/reply", "/v2/bot/message/push"]
    push = sent[1]
    assert push.body["to"] == event["source"]["userId"]
    assert push.headers.get("X-Line-Retry-Key")
    assert "歡迎" in push.body["messages"][0]["text"]
    assert "reply token already used" in caplog.text
    assert wait_until(lambda: metric(client, 'cutout_chat_deliveries_total{channel="line",via="push",'
                                              'reason="token_used"}') == 1)


def test_an_old_reply_token_is_still_used_while_line_takes_it(make_app, line_double, caplog):
    client = make_app().test_client()
    # Two minutes old: past LINE's guaranteed minute, but LINE still takes it: a free reply, no push.
    body, event = line_body("text_message.json", timestamp=int((time.time() - 120) * 1000))
    line_double.valid_reply_tokens.add(event["replyToken"])
    assert post_webhook(client, body).status_code == 200
    assert wait_until(lambda: routes(line_double) == [("reply", 200)])
    assert wait_until(lambda: metric(client, 'cutout_chat_deliveries_total{channel="line",via="reply",reason=""}') == 1)

    # Expired at LINE: the reply is refused, the push follows, and the log says why.
    body, event = line_body("text_message.json", timestamp=int((time.time() - 120) * 1000),
                            **{"source.userId": "Uexpired"})
    with caplog.at_level("INFO", logger="bot.channels.line"):
        assert post_webhook(client, body).status_code == 200
        assert wait_until(lambda: routes(line_double)[1:] == [("reply", 400), ("push", 200)])
    assert re.search(r"reply token expired after 1[12]\d s; pushing instead", caplog.text)
    assert wait_until(lambda: metric(client, 'cutout_chat_deliveries_total{channel="line",via="push",'
                                              'reason="token_expired"}') == 1)


def test_corrupt_image_gets_a_clear_answer(make_app, line_double):
    client = make_app().test_client()
    event = send_photo(client, line_double, b"\xff\xd8\xff\xe0 this is not really a jpeg")
    [reply] = sent_to(line_double, event["source"]["userId"], 1)
    text = reply.body["messages"][0]["text"]
    assert "無法讀取" in text
    # Wholly in the user's language: no English decoder message leaks into the zh-TW text.
    assert only_chinese(text), text
    assert wait_until(lambda: app_jobs(client).counts_by_status().get("failed") == 1)


def test_non_image_message_gets_a_hint_and_language_switch_works(make_app, line_double):
    client = make_app().test_client()
    body, event = line_body("sticker_message.json")
    line_double.valid_reply_tokens.add(event["replyToken"])
    assert post_webhook(client, body).status_code == 200
    sent_to(line_double, event["source"]["userId"], 1)  # answered before the switch: in zh-TW
    body2, event2 = line_body("text_message.json", **{"message.text": "English"})
    line_double.valid_reply_tokens.add(event2["replyToken"])
    assert post_webhook(client, body2).status_code == 200
    sent = sent_to(line_double, event["source"]["userId"], 2)
    texts = sorted(r.body["messages"][0]["text"] for r in sent)
    assert any("照片" in t for t in texts) and any("Switched to English" in t for t in texts)


def test_queue_full_tells_the_user_to_retry(make_app, line_double, portrait_jpeg):
    app = make_app(queue_size=1)
    state = app.extensions["cutout"]
    blocker_started, release = __import__("threading").Event(), __import__("threading").Event()
    state["worker"].submit(lambda: (blocker_started.set(), release.wait(30)))  # occupies the thread
    blocker_started.wait(5)
    state["worker"].submit(lambda: None)  # fills the one queue slot
    client = app.test_client()
    event = send_photo(client, line_double, portrait_jpeg)
    [reply] = sent_to(line_double, event["source"]["userId"], 1)
    release.set()
    assert "排隊" in reply.body["messages"][0]["text"]
    assert wait_until(lambda: state["jobs"].counts_by_status().get("failed") == 1)


def test_flood_is_rate_limited(make_app, line_double):
    app = make_app(rate_limit_count=2)
    client = app.test_client()
    events = [send_photo(client, line_double, b"not an image") for _ in range(4)]
    sent = sent_to(line_double, events[0]["source"]["userId"], 4)
    texts = [r.body["messages"][0]["text"] for r in sent]
    assert sum("太快" in t for t in texts) >= 1


def test_restart_resumes_a_pending_job(tmp_path, line_double, small_side_pipeline, portrait_jpeg):
    from bot.events import ImageSource, PhotoReceived
    from storage.jobs import SqliteJobStore

    settings = make_settings(tmp_path, line_double)
    # A job accepted by a process that died before doing anything with it.
    jobs = SqliteJobStore(settings.data_dir / "jobs.sqlite3")
    line_double.add_content("4242", portrait_jpeg)
    event = PhotoReceived("line", "Urestart", "evt-restart", time.time() - 300, "stale-token", ImageSource("line_content", "4242"))
    job = jobs.create("photo", "line", "Urestart", event.to_dict(), dedupe_key="line:evt-restart")
    jobs.mark_started(job.id)

    app = create_app(settings, pipeline=small_side_pipeline)
    try:
        sent = sent_to(line_double, "Urestart", 1)
        # The reply token is long gone: LINE refuses it, the card is pushed.
        assert wait_until(lambda: routes(line_double) == [("reply", 400), ("push", 200)])
        assert line_double.delivered()[0].body["messages"][0]["type"] == "flex"
        jobs_after = app.extensions["cutout"]["jobs"]
        assert wait_until(lambda: jobs_after.get(job.id).status.value == "finished")
    finally:
        app.extensions["cutout"]["worker"].stop()


def test_processes_sharing_the_job_table_take_each_job_once(tmp_path, line_double, small_side_pipeline, portrait_jpeg):
    """Several gunicorn workers (GUNICORN_WORKERS > 1) share one job table and each resumes at boot.
    A job a dead process left behind is answered once, whichever worker boots; one a live process
    holds is left to it; one whose holder died on this host is taken at once; one whose holder
    (another host) stopped renewing its lease is taken when the lease runs out."""
    import os
    import socket
    import subprocess

    from bot.events import ImageSource, PhotoReceived
    from storage.jobs import SqliteJobStore

    settings = make_settings(tmp_path, line_double, lease_s=2.0)
    jobs = SqliteJobStore(settings.data_dir / "jobs.sqlite3")
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid no process has any more
    host = socket.gethostname()

    def accepted(name: str, holder: str | None = None, lease_s: float = 60.0):
        line_double.add_content(name, portrait_jpeg)
        event = PhotoReceived("line", f"U{name}", f"evt-{name}", time.time() - 300, "stale-token",
                              ImageSource("line_content", name))
        job = jobs.create("photo", "line", f"U{name}", event.to_dict(), dedupe_key=f"line:evt-{name}")
        jobs.mark_started(job.id)
        if holder:
            assert jobs.claim(job.id, holder, lease_s)
        return job

    left = accepted("left")  # its process died before it took a lease
    held = accepted("held", holder=f"{host}:{os.getpid()}:alive")  # a live sibling works on it
    orphaned = accepted("orphaned", holder=f"{host}:{gone.pid}:boot")  # its holder died on this host
    stale = accepted("stale", holder="another-host:7:boot", lease_s=1.0)  # not renewed since

    apps = [create_app(settings, pipeline=small_side_pipeline) for _ in range(2)]  # two workers, booting together
    try:
        taken = [left, orphaned, stale]
        assert wait_until(lambda: all(jobs.get(job.id).status.value == "finished" for job in taken), 120)
        time.sleep(1.0)  # anything sent twice would be on its way by now
        pushes = [r.body["to"] for r in line_double.messages_sent() if r.path.endswith("/push") and r.status == 200]
        assert sorted(pushes) == ["Uleft", "Uorphaned", "Ustale"]
        assert all(jobs.get(job.id).attempts == 2 for job in taken)  # the dead process's start + one more
        assert jobs.get(held.id).status.value == "started" and jobs.get(held.id).attempts == 1
        assert jobs.lease_holder(held.id)[0] == f"{host}:{os.getpid()}:alive"
        assert all(jobs.lease_holder(job.id) is None for job in taken)  # released when done
    finally:
        for app in apps:
            app.extensions["cutout"]["worker"].stop()
            app.extensions["cutout"]["conversation"].io.shutdown(wait=True)


def test_a_stopping_process_leaves_the_job_it_could_not_start_to_the_others(make_app):
    """Dispatching after the IO lane shut down (the process is stopping) fails without keeping the
    job's lease: a sibling process or the next boot takes the job at once."""
    app = make_app()
    conversation, jobs = app.extensions["cutout"]["conversation"], app.extensions["cutout"]["jobs"]
    job = jobs.create("photo", "line", "Ustopping", {}, dedupe_key="line:evt-stopping")
    conversation.io.shutdown(wait=True)
    with pytest.raises(RuntimeError):
        conversation.dispatch(job.id)
    assert jobs.lease_holder(job.id) is None and jobs.claim(job.id, "sibling", 60)


def routes(double) -> list[tuple[str, int]]:
    """("reply" | "push", LINE's status) for every message call so far, answered ones only."""
    return [(r.path.rsplit("/", 1)[-1], r.status) for r in double.messages_sent() if r.status]


def test_every_error_text_is_wholly_in_the_users_language():
    from bot.conversation import UserFacingError, decode_failure
    from bot.i18n import ERROR_KEYS, MESSAGES, say
    from pipeline.decode import ImageDecodeError

    settings = Settings()
    values = {}
    for reason in ("too_large", "too_many_pixels"):
        failure = decode_failure(ImageDecodeError(reason, "English detail"), settings)
        assert isinstance(failure, UserFacingError)
        values.update(failure.values)
    assert set(ERROR_KEYS) <= set(MESSAGES["zh-TW"]) and set(ERROR_KEYS) <= set(MESSAGES["en"])
    for key in ERROR_KEYS:
        chinese, english = say("zh-TW", key, **values), say("en", key, **values)
        assert only_chinese(chinese), (key, chinese)
        assert not re.search(r"[\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef]", english), (key, english)
        assert not URL_IN_TEXT.search(chinese + english)
        # ... and says what to do next: send again, send another, wait, shrink, or type help.
        assert re.search(r"請|輸入", chinese), (key, chinese)
        assert re.search(r"[Pp]lease|[Tt]ry|[Tt]ype|[Ss]end", english), (key, english)
    assert "4000 萬像素" in say("zh-TW", "too_many_pixels", **values)


class MemoryLog(dict):
    """A DeliveryLog kept in a dict: what a job would hold across restarts."""

    def record(self, **notes) -> None:
        self.update(notes)


def app_jobs(client):
    return client.application.extensions["cutout"]["jobs"]


def test_damaged_files_get_the_cant_read_answer(make_app, line_double):
    from tests.damaged_files import DAMAGED_KINDS, damaged_file

    client = make_app().test_client()
    for number, kind in enumerate(DAMAGED_KINDS):
        send_photo(client, line_double, damaged_file(kind), **{"source.userId": f"Udamaged{number}"})
    sent = sent_to(line_double, "any", len(DAMAGED_KINDS))
    assert all("無法讀取" in r.body["messages"][0]["text"] for r in sent)
    assert wait_until(lambda: app_jobs(client).counts_by_status().get("failed") == len(DAMAGED_KINDS))


def test_a_stalled_line_api_costs_the_timeout_not_minutes(tmp_path, line_double):
    from bot.channels.base import SendError
    from bot.channels.line import LineChannel
    from bot.events import TextReceived
    from bot.replies import Text

    channel = LineChannel(make_settings(tmp_path, line_double, platform_timeout_s=0.5))
    line_double.stall_s = {"/v2/bot/message/push": 100.0, "/v2/bot/chat/loading/start": 100.0}
    event = TextReceived("line", "Ustalled", "evt-stalled", time.time() - 300, None, text="help")
    started = time.monotonic()
    channel.start_loading(event)  # best effort: gives up quietly
    assert time.monotonic() - started < 3
    with pytest.raises(SendError):
        channel.send(event, [Text("hello")], "retry-key-stalled", MemoryLog())
    elapsed = time.monotonic() - started
    assert elapsed < 8, elapsed  # 3 push attempts of 0.5 s plus back-off, not 3 x 100 s
    assert len([r for r in line_double.received if r.path == "/v2/bot/message/push"]) == 3


def test_a_photo_download_past_the_deadline_gets_a_clear_answer(make_app, line_double, portrait_jpeg):
    client = make_app(fetch_timeout_s=2).test_client()
    line_double.add_content("slow-photo", portrait_jpeg)
    line_double.delay_s["/v2/bot/message/slow-photo/content"] = 30.0  # LINE's content host stalls
    body, event = line_body("image_message.json", **{"message.id": "slow-photo"})
    line_double.valid_reply_tokens.add(event["replyToken"])
    started = time.monotonic()
    assert post_webhook(client, body).status_code == 200
    [reply] = sent_to(line_double, event["source"]["userId"], 1, timeout=15)
    assert "下載照片花太久了" in reply.body["messages"][0]["text"]
    assert time.monotonic() - started < 6


def test_a_reply_that_may_have_been_sent_is_never_sent_twice(tmp_path, line_double):
    from bot.channels.line import LineChannel
    from bot.events import TextReceived
    from bot.replies import Text

    channel = LineChannel(make_settings(tmp_path, line_double, platform_timeout_s=0.5))

    def event(name: str, age_s: float = 0.0) -> TextReceived:
        line_double.valid_reply_tokens.add(f"token-{name}")
        return TextReceived("line", f"U{name}", f"evt-{name}", time.time() - age_s, f"token-{name}", text="hi")

    def deliveries(user: str) -> list:
        time.sleep(0.1)
        return [r for r in line_double.delivered() if r.body.get("to") == user
                or r.body.get("replyToken") == f"token-{user[1:]}"]

    # LINE takes longer than our timeout but delivers: the retry with the same token finds it spent.
    line_double.delay_s["/v2/bot/message/reply"] = 1.0
    timed_out = MemoryLog()
    channel.send(event("slow"), [Text("one")], "00000000-0000-4000-8000-000000000001", timed_out)
    assert timed_out["reply_outcome"] == "sent_before" and len(deliveries("Uslow")) == 1
    line_double.delay_s.clear()

    # A restarted process finds "reply attempted" and a fresh token that LINE already used.
    spent = event("spent")
    channel.send(spent, [Text("two")], "00000000-0000-4000-8000-000000000002", MemoryLog())
    again = MemoryLog(reply_attempted=True)
    channel.send(spent, [Text("two")], "00000000-0000-4000-8000-000000000002", again)
    assert again["reply_outcome"] == "sent_before" and len(deliveries("Uspent")) == 1

    # ... or a token that never reached LINE: the same reply goes out now, once.
    unsent = MemoryLog(reply_attempted=True)
    channel.send(event("unsent"), [Text("three")], "00000000-0000-4000-8000-000000000003", unsent)
    assert unsent["reply_outcome"] == "sent" and len(deliveries("Uunsent")) == 1

    # Past LINE's guaranteed minute and refused: maybe it was sent; it counts as sent, nothing is pushed.
    stale = MemoryLog(reply_attempted=True)
    stale_event = event("stale", age_s=120)
    line_double.valid_reply_tokens.discard("token-stale")  # expired (or spent: LINE cannot tell us which)
    channel.send(stale_event, [Text("four")], "00000000-0000-4000-8000-000000000004", stale)
    assert stale["reply_outcome"] == "maybe_sent" and deliveries("Ustale") == []
    # ... but while LINE still takes the old token, the first attempt never arrived: it goes out now, once.
    late = MemoryLog(reply_attempted=True)
    channel.send(event("late", age_s=120), [Text("five")], "00000000-0000-4000-8000-000000000005", late)
    assert late["reply_outcome"] == "sent" and len(deliveries("Ulate")) == 1
    assert not [r for r in line_double.received if r.path.endswith("/push")]


def test_the_loading_animation_is_renewed_until_the_answer(make_app, line_double, portrait_jpeg):
    app = make_app(loading_renew_s=0.2)  # LINE shows each call for 20 s; renewed fast here to see it
    client = app.test_client()
    worker = app.extensions["cutout"]["worker"]
    gate = threading.Event()
    worker.submit(gate.wait, label="a slow job ahead in the queue")  # our photo waits behind it
    event = send_photo(client, line_double, portrait_jpeg)
    user = event["source"]["userId"]
    loading_calls = lambda: [r for r in line_double.received  # noqa: E731
                             if r.path == "/v2/bot/chat/loading/start" and r.body["chatId"] == user]
    assert wait_until(lambda: len(loading_calls()) >= 3)  # renewed while the photo waits
    gate.set()
    sent_to(line_double, user, 1)
    settled = len(loading_calls())
    time.sleep(0.6)
    assert len(loading_calls()) <= settled + 1  # and stops once the answer is on its way
