"""Webhooks and health checks while API clients saturate the pipeline, through gunicorn.

    python scripts/bench_load.py [--clients 8] [--seconds 60] [--rate 5]

Loopback only, bounded, stops by itself: starts a LINE platform double and the service as the
Procfile does; `--clients` threads post photos to /api/v1/removebg back to back (honouring
Retry-After) while signed LINE webhooks arrive at `--rate` per second and /healthz is polled,
for `--seconds`. Prints webhook ack and /healthz latency percentiles and every API answer by
status. Targets (issue 13): ack p99 < 100 ms, /healthz p99 < 50 ms, every API request answered
200, or 503 with Retry-After, within its deadline. Exit status 1 when a target is missed.
"""
from __future__ import annotations

import argparse
import random
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.conftest import ALPHAMATTING, LINE_SECRET, LINE_TOKEN, jpeg_bytes, line_body, line_signature  # noqa: E402
from tests.doubles.line_platform import LinePlatformDouble  # noqa: E402
from tests.gunicorn_server import GunicornServer  # noqa: E402

API_DEADLINE_S = 200  # the server's own wait is 180 s; a client gives up a little later
ACK_TARGET_MS, HEALTH_TARGET_MS = 100, 50


def loopback_port() -> int:
    for port in random.sample(range(18000, 19000), 100):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 18000-18999")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


class Load:
    def __init__(self, base_url: str, photo: bytes, seconds: float) -> None:
        self.base_url, self.photo = base_url, photo
        self.until = time.monotonic() + seconds
        self.lock = threading.Lock()
        self.acks: list[float] = []
        self.ack_failures: Counter = Counter()
        self.health: list[float] = []
        self.api: Counter = Counter()
        self.api_seconds: list[float] = []
        self.api_problems: list[str] = []

    def api_client(self) -> None:
        while time.monotonic() < self.until:
            started = time.monotonic()
            try:
                response = requests.post(self.base_url + "/api/v1/removebg", files={"image_file": ("p.jpg", self.photo)},
                                         data={"size": "auto"}, timeout=API_DEADLINE_S)
            except requests.RequestException as error:
                with self.lock:
                    self.api[f"no answer ({type(error).__name__})"] += 1
                continue
            elapsed = time.monotonic() - started
            retry_after = response.headers.get("Retry-After")
            with self.lock:
                self.api[str(response.status_code)] += 1
                if response.status_code == 200:
                    self.api_seconds.append(elapsed)
                elif response.status_code != 503 or not retry_after:
                    self.api_problems.append(f"{response.status_code} {response.text[:120]}")
            if response.status_code == 503 and retry_after:
                time.sleep(min(float(retry_after), max(0.0, self.until - time.monotonic())))

    def webhook(self, index: int) -> None:
        body, _ = line_body("text_message.json", **{"source.userId": f"Uload{index % 50:03d}", "message.text": "help"})
        started = time.monotonic()
        try:
            response = requests.post(self.base_url + "/callback/line", data=body, timeout=10,
                                     headers={"Content-Type": "application/json", "X-Line-Signature": line_signature(body)})
            status = response.status_code
        except requests.RequestException as error:
            status = type(error).__name__
        elapsed = time.monotonic() - started
        with self.lock:
            if status == 200:
                self.acks.append(elapsed)
            else:
                self.ack_failures[str(status)] += 1

    def webhooks(self, rate: float) -> None:
        """Fire at a fixed rate; each post on its own thread, so one slow ack delays no other."""
        with ThreadPoolExecutor(max_workers=32) as pool:
            index, next_at = 0, time.monotonic()
            while next_at < self.until:
                time.sleep(max(0.0, next_at - time.monotonic()))
                pool.submit(self.webhook, index)
                index += 1
                next_at += 1.0 / rate

    def health_checks(self, rate: float = 10.0) -> None:
        while time.monotonic() < self.until:
            started = time.monotonic()
            try:
                ok = requests.get(self.base_url + "/healthz", timeout=10).status_code == 200
            except requests.RequestException:
                ok = False
            elapsed = time.monotonic() - started
            with self.lock:
                self.health.append(elapsed if ok else float("inf"))
            time.sleep(max(0.0, 1.0 / rate - elapsed))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=5, help="LINE webhooks per second")
    args = parser.parse_args()

    started_at = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    photo = jpeg_bytes(ALPHAMATTING / "input" / "GT04.png", 800)
    double = LinePlatformDouble(LINE_TOKEN).start()
    data_dir = tempfile.mkdtemp(prefix="cutout-load-")
    server = GunicornServer({"CUTOUT_DATA_DIR": data_dir, "LINE_CHANNEL_SECRET": LINE_SECRET,
                             "LINE_CHANNEL_ACCESS_TOKEN": LINE_TOKEN, "LINE_API_BASE_URL": double.base_url,
                             "CUTOUT_RATE_LIMIT": "100000", "CUTOUT_API_RATE_LIMIT": "100000"})
    server.port = loopback_port()
    server.env.update(HOST="127.0.0.1", PORT=str(server.port), PUBLIC_BASE_URL=server.base_url)
    server.start()
    try:
        load = Load(server.base_url, photo, args.seconds)
        threads = [threading.Thread(target=load.api_client) for _ in range(args.clients)]
        threads += [threading.Thread(target=load.webhooks, args=(args.rate,)), threading.Thread(target=load.health_checks)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(args.seconds + API_DEADLINE_S + 30)  # bounded even if the server hangs
    finally:
        server.stop()
        double.stop()

    ack_p50, ack_p99 = percentile(load.acks, 0.5) * 1000, percentile(load.acks, 0.99) * 1000
    health_p50, health_p99 = percentile(load.health, 0.5) * 1000, percentile(load.health, 0.99) * 1000
    over_2s = sum(1 for value in load.acks if value > 2.0)
    print(f"{started_at}: {args.clients} API clients, LINE webhooks at {args.rate}/s for {args.seconds:.0f} s, "
          f"gunicorn {server.env.get('GUNICORN_THREADS', '8')} threads")
    print(f"webhook ack: n={len(load.acks)} p50 {ack_p50:.1f} ms, p99 {ack_p99:.1f} ms, max "
          f"{max(load.acks, default=0) * 1000:.1f} ms, over 2 s: {over_2s}, failed: {dict(load.ack_failures)}")
    print(f"/healthz: n={len(load.health)} p50 {health_p50:.1f} ms, p99 {health_p99:.1f} ms")
    print(f"API answers: {dict(sorted(load.api.items()))}; 200 took p50 {percentile(load.api_seconds, 0.5):.1f} s, "
          f"max {max(load.api_seconds, default=0):.1f} s")
    for problem in load.api_problems[:5]:
        print(f"  unexpected API answer: {problem}")
    ok = (ack_p99 < ACK_TARGET_MS and health_p99 < HEALTH_TARGET_MS and not load.ack_failures
          and not load.api_problems and all(key in ("200", "503") for key in load.api))
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
