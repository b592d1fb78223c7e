"""The full LINE flow through gunicorn started as the Procfile starts it, over real HTTP."""
from __future__ import annotations

import io
import time

import numpy as np
import requests
from PIL import Image

from tests.channel_drivers import flat_line_message
from tests.conftest import (LINE_SECRET, LINE_TOKEN, SMALL_SEGMENT_SIDE, jpeg_bytes, line_body, line_signature,
                            shared_image)
from storage.jobs import SqliteJobStore
from tests.doubles.line_platform import LinePlatformDouble
from tests.gunicorn_server import GunicornServer


def post(server, body: bytes):
    return requests.post(server.base_url + "/callback/line", data=body, timeout=5,
                         headers={"Content-Type": "application/json", "X-Line-Signature": line_signature(body)})


def test_photo_and_background_tap_through_gunicorn(tmp_path, portrait_jpeg, real_pipeline):
    double = LinePlatformDouble(LINE_TOKEN).start()
    server = GunicornServer({
        "CUTOUT_DATA_DIR": str(tmp_path / "var"), "LINE_CHANNEL_SECRET": LINE_SECRET,
        "LINE_CHANNEL_ACCESS_TOKEN": LINE_TOKEN, "LINE_API_BASE_URL": double.base_url,
        "PUBLIC_BASE_URL": "http://127.0.0.1:0",  # replaced below once the port is known
    })
    server.env["PUBLIC_BASE_URL"] = server.base_url
    server.start()
    try:
        double.add_content("9001", portrait_jpeg)
        body, event = line_body("image_message.json", **{"message.id": "9001"})
        double.valid_reply_tokens.add(event["replyToken"])
        assert post(server, body).status_code == 200
        assert post(server, line_body("image_message.json")[0][:-2] + b"}}").status_code == 400

        received = double.wait_for(lambda rs: any(r.path == "/v2/bot/message/reply" for r in rs), 120)
        reply = next(r for r in received if r.path == "/v2/bot/message/reply")
        [card_message] = reply.body["messages"]  # the result card (a Flex bubble)
        png = requests.get(flat_line_message(card_message)["image"], timeout=10)
        assert png.headers["Content-Type"] == "image/png"
        alpha = np.asarray(Image.open(io.BytesIO(png.content)))[:, :, 3]
        assert 0.2 < (alpha > 128).mean() < 0.8

        choice = next(i for i in card_message["quickReply"]["items"] if i["action"]["data"].startswith("bg=blur"))
        body, postback = line_body("postback.json", **{"postback.data": choice["action"]["data"]})
        double.valid_reply_tokens.add(postback["replyToken"])
        assert post(server, body).status_code == 200
        received = double.wait_for(lambda rs: len([r for r in rs if r.path == "/v2/bot/message/reply"]) >= 2, 60)
        composite_message = [r for r in received if r.path == "/v2/bot/message/reply"][1].body["messages"][0]
        composite = requests.get(flat_line_message(composite_message)["image"], timeout=10)
        assert composite.headers["Content-Type"] == "image/jpeg"
        assert Image.open(io.BytesIO(composite.content)).size == (alpha.shape[1], alpha.shape[0])
        assert requests.get(server.base_url + "/r/forged.token/cutout.png", timeout=5).status_code == 404
    finally:
        server.stop()
        double.stop()


def jobs_of(jobs) -> list:
    rows = jobs.connection().execute("SELECT id FROM jobs").fetchall()
    return [jobs.get(row[0]) for row in rows]


def image_deliveries(double: LinePlatformDouble, token_users: dict[str, str]) -> dict[str, int]:
    """Cutout cards LINE accepted, per user (replies are matched to users by their token)."""
    counts: dict[str, int] = {}
    for record in double.delivered():
        first = record.body["messages"][0]
        if first["type"] == "flex" and "hero" in first["contents"]:
            user = record.body.get("to") or token_users.get(record.body.get("replyToken"), "?")
            counts[user] = counts.get(user, 0) + 1
    return counts


def test_kill_9_while_slow_replies_are_in_flight_gives_each_user_exactly_one_cutout(tmp_path, real_pipeline):
    double = LinePlatformDouble(LINE_TOKEN).start()
    double.delay_s["/v2/bot/message/reply"] = 5.0  # LINE delivers at once but answers 5 s later
    env = {"CUTOUT_DATA_DIR": str(tmp_path / "var"), "LINE_CHANNEL_SECRET": LINE_SECRET,
           "LINE_CHANNEL_ACCESS_TOKEN": LINE_TOKEN, "LINE_API_BASE_URL": double.base_url,
           "CUTOUT_SEGMENT_SIDE": str(SMALL_SEGMENT_SIDE)}  # delivery is under test, not quality
    photo = jpeg_bytes(shared_image("GT04"), 320)
    token_users: dict[str, str] = {}
    users = [f"Ukill{index}" for index in range(10)]
    server = GunicornServer(env)
    server.env["PUBLIC_BASE_URL"] = server.base_url
    server.start()
    try:
        for index, user in enumerate(users):
            double.add_content(f"kill{index}", photo)
            body, event = line_body("image_message.json", **{"message.id": f"kill{index}", "source.userId": user})
            double.valid_reply_tokens.add(event["replyToken"])
            token_users[event["replyToken"]] = user
            assert post(server, body).status_code == 200
        # Kill while LINE holds accepted replies whose answers the process has not seen yet.
        double.wait_for(lambda rs: len([r for r in rs if r.path == "/v2/bot/message/reply"]) >= 2, 150)
        server.kill()
        in_flight = len([r for r in double.received if r.path == "/v2/bot/message/reply"])

        server = GunicornServer(env)
        server.env["PUBLIC_BASE_URL"] = server.base_url
        server.start()
        deadline = time.time() + 240
        while time.time() < deadline and len(image_deliveries(double, token_users)) < len(users):
            time.sleep(0.5)
        time.sleep(1.5)  # room for a duplicate to show up
        counts = image_deliveries(double, token_users)
        assert in_flight >= 2
        assert {user: counts.get(user, 0) for user in users} == {user: 1 for user in users}, server.log_tail()
        jobs = SqliteJobStore(tmp_path / "var" / "jobs.sqlite3")
        outcomes = [job.result.get("delivery", {}).get("reply_outcome") for job in jobs_of(jobs)]
        # The killed process had replies out: the restarted one found them sent instead of pushing again.
        assert any(outcome in ("sent_before", "maybe_sent") for outcome in outcomes), outcomes
    finally:
        server.stop()
        double.stop()
