"""The fleet under load: webhook acks with hundreds of photos queued, and throughput per worker count.

    python scripts/bench_fleet.py [--queued 200] [--photos 30] [--workers 1,2]

Loopback only, bounded, stops by itself. Starts PostgreSQL, Redis and moto's S3 server (as the
tests do, tests/servers/), a LINE platform double, two web processes (the Procfile's web:) and
Celery workers (worker:, one pool process each, CUTOUT_THREADS=1 so one worker is one core).
1. Acks: one worker; `--queued` photo webhooks posted from 4 threads over both web processes,
   then 50 more at 5/s while they wait: ack latency percentiles of each phase (target p99 < 100 ms).
2. Throughput: for each worker count, a fresh database and queue; after a warm-up photo per
   worker, `--photos` photos (480 px chat photos, 4 alphamatting portraits in turn) are posted at
   once and timed until LINE has every reply: images/min.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.conftest import ALPHAMATTING, LINE_SECRET, LINE_TOKEN, jpeg_bytes, line_body, line_signature  # noqa: E402
from tests.doubles.line_platform import LinePlatformDouble  # noqa: E402
from tests.gunicorn_server import GunicornServer  # noqa: E402
from tests.servers.celery_worker import ProcfileProcess  # noqa: E402
from tests.servers.postgres import PostgresServer  # noqa: E402
from tests.servers.redis import RedisServer  # noqa: E402
from tests.servers.s3 import S3Server  # noqa: E402

PHOTOS = ["GT05", "GT01", "GT04", "GT13"]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


class Fleet:
    def __init__(self, postgres: PostgresServer, redis: RedisServer, s3: S3Server, workers: int, folder: Path):
        self.double = LinePlatformDouble(LINE_TOKEN).start()
        self.env = {
            "LINE_CHANNEL_SECRET": LINE_SECRET, "LINE_CHANNEL_ACCESS_TOKEN": LINE_TOKEN,
            "LINE_API_BASE_URL": self.double.base_url, **s3.env(), "CUTOUT_DATABASE_URL": postgres.new_database(),
            "CUTOUT_BLOB_URL": f"s3://{s3.new_bucket()}/bench", "CUTOUT_QUEUE_URL": redis.url(),
            "CUTOUT_SIGNING_SECRET": "bench", "CUTOUT_RATE_LIMIT": "100000", "CUTOUT_THREADS": "1",
            "CUTOUT_LOADING_RENEW_S": "0", "CUTOUT_QUEUE_SIZE": "1000",
        }
        self.webs = [GunicornServer({**self.env, "CUTOUT_DATA_DIR": str(folder / f"web{i}")}) for i in range(2)]
        self.env["PUBLIC_BASE_URL"] = self.webs[0].base_url
        self.workers = [ProcfileProcess("worker", {**self.env, "CUTOUT_DATA_DIR": str(folder / f"worker{i}"),
                                                   "CUTOUT_WORKER_NAME": f"bench{i}"}) for i in range(workers)]
        self.sent = 0
        self.redis_url = redis.url()
        import redis as redis_client

        redis_client.Redis.from_url(self.redis_url).flushdb()  # no messages left from an earlier fleet

    def start(self) -> "Fleet":
        for worker in self.workers:
            worker.start()
        for web in self.webs:
            web.env["PUBLIC_BASE_URL"] = self.env["PUBLIC_BASE_URL"]
            web.start()
        for worker in self.workers:
            worker.wait_for_log(" ready.", 180)
        return self

    def post_photo(self, photo: bytes) -> float:
        """Post one signed photo webhook to the next web process; return the ack time in seconds."""
        self.sent += 1
        index = self.sent
        self.double.add_content(f"b{index}", photo)
        body, event = line_body("image_message.json", **{"message.id": f"b{index}", "source.userId": f"U{index}"})
        self.double.valid_reply_tokens.add(event["replyToken"])
        started = time.perf_counter()
        response = requests.post(self.webs[index % 2].base_url + "/callback/line", data=body, timeout=30,
                                 headers={"Content-Type": "application/json", "X-Line-Signature": line_signature(body)})
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, response.text
        return elapsed

    def replies(self) -> int:
        return len([r for r in self.double.delivered() if r.path in ("/v2/bot/message/reply", "/v2/bot/message/push")])

    def wait_replies(self, count: int, timeout: float) -> None:
        deadline = time.time() + timeout
        while self.replies() < count and time.time() < deadline:
            time.sleep(0.2)
        if self.replies() < count:
            raise RuntimeError(f"{self.replies()} of {count} replies after {timeout} s")

    def queued(self) -> int:
        import redis

        return redis.Redis.from_url(self.redis_url).llen("cutout")

    def stop(self) -> None:
        for process in (*self.workers, *self.webs):
            process.stop()
        self.double.stop()


def photos() -> list[bytes]:
    return [jpeg_bytes(ALPHAMATTING / "input" / f"{name}.png") for name in PHOTOS]


def measure_acks(fleet: Fleet, queued: int) -> dict[str, list[float]]:
    images = photos()
    with ThreadPoolExecutor(4) as pool:
        burst = list(pool.map(lambda i: fleet.post_photo(images[i % len(images)]), range(queued)))
    waiting = fleet.queued()
    steady = []
    for index in range(50):  # LINE-like arrivals while the backlog waits
        steady.append(fleet.post_photo(images[index % len(images)]))
        time.sleep(max(0.0, 0.2 - steady[-1]))
    return {"burst": burst, "steady": steady, "waiting": [waiting, fleet.queued()]}


def measure_throughput(fleet: Fleet, count: int) -> float:
    images = photos()
    for _ in fleet.workers:  # one warm-up each: models are loaded, caches are warm
        fleet.post_photo(images[0])
    fleet.wait_replies(len(fleet.workers), 300)
    before = fleet.replies()
    started = time.time()
    for index in range(count):
        fleet.post_photo(images[index % len(images)])
    fleet.wait_replies(before + count, 900)
    return count / (time.time() - started) * 60


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queued", type=int, default=200)
    parser.add_argument("--photos", type=int, default=30)
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    pg_folder = Path(tempfile.mkdtemp(prefix="bench-fleet-pg-"))
    postgres, redis, s3 = PostgresServer(pg_folder).start(), RedisServer(folder).start(), S3Server().start()
    print(f"bench_fleet {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", flush=True)
    try:
        fleet = Fleet(postgres, redis, s3, 1, folder / "acks").start()
        try:
            acks = measure_acks(fleet, args.queued)
        finally:
            fleet.stop()
        for phase in ("burst", "steady"):
            values = [v * 1000 for v in acks[phase]]
            print(f"acks {phase}: n={len(values)} p50 {statistics.median(values):.1f} ms"
                  f" p99 {percentile(values, 0.99):.1f} ms max {max(values):.1f} ms", flush=True)
        print(f"queued on the broker after the burst / after the steady phase: {acks['waiting']}", flush=True)
        for workers in (int(n) for n in args.workers.split(",")):
            fleet = Fleet(postgres, redis, s3, workers, folder / f"w{workers}").start()
            try:
                rate = measure_throughput(fleet, args.photos)
            finally:
                fleet.stop()
            print(f"throughput with {workers} worker(s): {rate:.1f} images/min ({args.photos} photos)", flush=True)
    finally:
        s3.stop()
        redis.stop()
        postgres.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
