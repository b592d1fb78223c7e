"""Webhook latency under load, and exactly-once delivery across a restart, through gunicorn.

    python scripts/bench_webhook.py [--photos 20] [--pings 300]

Starts a LINE platform double and the service as the Procfile does, sends N photos (one user
each), then measures webhook round trips for text events while the photos are processed; then
stops the server mid-work, starts it again, and checks that every photo got exactly one cutout.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.conftest import ALPHAMATTING, LINE_SECRET, LINE_TOKEN, jpeg_bytes, line_body, line_signature  # noqa: E402
from tests.doubles.line_platform import LinePlatformDouble  # noqa: E402
from tests.gunicorn_server import GunicornServer  # noqa: E402


def post(server: GunicornServer, body: bytes) -> float:
    started = time.perf_counter()
    response = requests.post(server.base_url + "/callback/line", data=body, timeout=10,
                             headers={"Content-Type": "application/json", "X-Line-Signature": line_signature(body)})
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.status_code
    return elapsed


def image_deliveries(double: LinePlatformDouble) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in double.delivered():
        if record.body["messages"][0]["type"] == "image":
            user = record.body.get("to") or record.headers.get("X-User", "")
            user = user or double.reply_users.get(record.body.get("replyToken"), "?")
            counts[user] = counts.get(user, 0) + 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--pings", type=int, default=300)
    args = parser.parse_args()
    double = LinePlatformDouble(LINE_TOKEN).start()
    double.reply_users = {}
    images = sorted((ALPHAMATTING / "input").glob("*.png"))
    data_dir = tempfile.mkdtemp(prefix="cutout-bench-")
    env = {"CUTOUT_DATA_DIR": data_dir, "LINE_CHANNEL_SECRET": LINE_SECRET, "LINE_CHANNEL_ACCESS_TOKEN": LINE_TOKEN,
           "LINE_API_BASE_URL": double.base_url, "CUTOUT_RATE_LIMIT": "1000"}
    server = GunicornServer(env)
    server.env["PUBLIC_BASE_URL"] = server.base_url
    server.start()
    users = []
    for index in range(args.photos):
        message_id = f"photo{index}"
        double.add_content(message_id, jpeg_bytes(images[index % len(images)], 800))
        user = f"Ubench{index:04d}"
        users.append(user)
        body, event = line_body("image_message.json", **{"message.id": message_id, "source.userId": user})
        double.valid_reply_tokens.add(event["replyToken"])
        double.reply_users[event["replyToken"]] = user
        post(server, body)

    latencies = []
    for index in range(args.pings):
        body, event = line_body("text_message.json", **{"source.userId": f"Uping{index}"})
        latencies.append(post(server, body))
        time.sleep(0.02)
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1000
    done_before = sum(image_deliveries(double).values())
    print(f"webhook latency with {args.photos} photos in flight: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
          f"max {latencies[-1] * 1000:.1f} ms over {len(latencies)} requests; "
          f"{done_before} cutouts delivered meanwhile")

    server.stop()  # mid-work: the rest must survive the restart
    print(f"server stopped with {sum(image_deliveries(double).values())}/{args.photos} cutouts delivered")
    server = GunicornServer(env)
    server.env["PUBLIC_BASE_URL"] = server.base_url
    server.start()
    deadline = time.time() + 600
    while time.time() < deadline and len(image_deliveries(double)) < args.photos:
        time.sleep(1)
    counts = image_deliveries(double)
    server.stop()
    double.stop()
    missing = [u for u in users if counts.get(u, 0) == 0]
    twice = [u for u in users if counts.get(u, 0) > 1]
    print(f"after restart: {len(counts)}/{args.photos} users got a cutout; missing {missing}; delivered twice {twice}")
    return 0 if not missing and not twice else 1


if __name__ == "__main__":
    sys.exit(main())
