"""The fleet (issue 17's "done when"): two web processes (gunicorn, as the Procfile starts them)
and two Celery worker processes (the Procfile's worker:, plus beat: for the sweep) against one
PostgreSQL, one Redis and one S3 store (moto), all real servers on loopback.

50 LINE users send a photo each, their webhooks spread over both web processes (some redelivered
to the other one); one worker process is killed with SIGKILL while it holds a job. Every user
gets exactly one cutout, and every result link works from either web process.
"""
from __future__ import annotations

import io
import json
import os
import re
import signal
import time

import psycopg
import requests
from PIL import Image

from dispatch.leases import owner_pid
from tests.conftest import LINE_SECRET, LINE_TOKEN, jpeg_bytes, line_body, line_signature, shared_image
from tests.doubles.line_platform import LinePlatformDouble
from tests.gunicorn_server import GunicornServer
from tests.servers.celery_worker import ProcfileProcess
from tests.servers.fixtures import postgres_server, postgres_url, redis_server, s3_env, s3_server  # noqa: F401

USERS = 50


def post(server: GunicornServer, body: bytes) -> requests.Response:
    return requests.post(server.base_url + "/callback/line", data=body, timeout=10,
                         headers={"Content-Type": "application/json", "X-Line-Signature": line_signature(body)})


RESULT_LINK = re.compile(r'https?://[^"\s]+/r/[A-Za-z0-9_.=-]+/[A-Za-z0-9_.-]+')


def result_links(record) -> list[str]:
    """Our signed result links in a message LINE accepted (whatever the message's form: image, Flex)."""
    return RESULT_LINK.findall(json.dumps(record.body))


def cutouts_per_user(double: LinePlatformDouble, token_users: dict[str, str]) -> dict[str, int]:
    """Results LINE accepted, per user (replies are matched to users by their token)."""
    counts: dict[str, int] = {}
    for record in double.delivered():
        if result_links(record):
            user = record.body.get("to") or token_users.get(record.body.get("replyToken"), "?")
            counts[user] = counts.get(user, 0) + 1
    return counts


def held_lease(database_url: str) -> tuple[str, int] | None:
    """A job a worker process is working on now, and that process's pid (from the lease's owner)."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        # Still before its files are stored: the cutout itself is ahead, so the kill lands mid-job.
        row = connection.execute("SELECT job_id, owner FROM job_leases JOIN jobs ON jobs.id = job_id"
                                 " WHERE owner IS NOT NULL AND lease_until > extract(epoch FROM now())"
                                 " AND jobs.result NOT LIKE '%\"stored\"%' LIMIT 1").fetchone()
    return (row[0], owner_pid(row[1])) if row else None


def test_fleet_gives_every_user_exactly_one_cutout_through_a_worker_kill(
        postgres_url, redis_server, s3_server, s3_env, tmp_path):
    double = LinePlatformDouble(LINE_TOKEN).start()
    env = {
        "LINE_CHANNEL_SECRET": LINE_SECRET, "LINE_CHANNEL_ACCESS_TOKEN": LINE_TOKEN,
        "LINE_API_BASE_URL": double.base_url, **s3_server.env(),
        "CUTOUT_DATABASE_URL": postgres_url, "CUTOUT_BLOB_URL": f"s3://{s3_server.new_bucket()}/fleet",
        "CUTOUT_QUEUE_URL": redis_server.url(), "CUTOUT_SIGNING_SECRET": "fleet-test-secret",
        "CUTOUT_RATE_LIMIT": "1000",
        # Delivery is under test, not quality: a quicker model pass, one core per worker.
        "CUTOUT_SEGMENT_SIDE": "320", "CUTOUT_THREADS": "1", "CUTOUT_LOADING_RENEW_S": "0",
        # Short leases and a frequent sweep, so a vanished worker's job comes back within seconds.
        "CUTOUT_LEASE_S": "6", "CUTOUT_SWEEP_EVERY_S": "2",
    }
    webs = [GunicornServer({**env, "CUTOUT_DATA_DIR": str(tmp_path / f"web{index}"), "GUNICORN_THREADS": "4"})
            for index in range(2)]
    env["PUBLIC_BASE_URL"] = webs[0].base_url  # one public address (a load balancer in production)
    workers = [ProcfileProcess("worker", {**env, "CUTOUT_DATA_DIR": str(tmp_path / f"worker{index}"),
                                          "CUTOUT_WORKER_NAME": f"cpu{index}"}) for index in range(2)]
    beat = ProcfileProcess("beat", {**env, "CUTOUT_DATA_DIR": str(tmp_path / "beat")})
    photo = jpeg_bytes(shared_image("GT05"), 256)  # ~1.3 s a cutout on one core
    token_users: dict[str, str] = {}
    users = [f"Ufleet{index:02d}" for index in range(USERS)]
    try:
        for process in (*workers, beat):  # first: their models load while the web processes start
            process.start()
        for web in webs:
            web.env["PUBLIC_BASE_URL"] = env["PUBLIC_BASE_URL"]
            web.start()
        for worker in workers:
            worker.wait_for_log(" ready.", 120)

        started = time.time()
        for index, user in enumerate(users):
            double.add_content(f"fleet{index}", photo)
            body, event = line_body("image_message.json", **{"message.id": f"fleet{index}", "source.userId": user})
            double.valid_reply_tokens.add(event["replyToken"])
            token_users[event["replyToken"]] = user
            assert post(webs[index % 2], body).status_code == 200
            if index % 10 == 0:  # LINE redelivers to whichever process the balancer picks
                assert post(webs[(index + 1) % 2], body).status_code == 200

        deadline = time.time() + 60
        victim = None
        while victim is None and time.time() < deadline:
            victim = held_lease(postgres_url)
            time.sleep(0.05)
        assert victim is not None, [worker.log_tail() for worker in workers]
        killed_job, pid = victim
        os.kill(pid, signal.SIGKILL)  # the worker process holding this job, mid-job

        deadline = time.time() + 150
        while time.time() < deadline and len(cutouts_per_user(double, token_users)) < USERS:
            time.sleep(0.5)
        elapsed = time.time() - started
        time.sleep(3)  # room for a duplicate to show up
        counts = cutouts_per_user(double, token_users)
        assert {user: counts.get(user, 0) for user in users} == {user: 1 for user in users}, \
            (elapsed, [worker.log_tail() for worker in workers])

        with psycopg.connect(postgres_url, autocommit=True) as connection:
            statuses = dict(connection.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
            attempts = connection.execute("SELECT attempts FROM jobs WHERE id = %s", (killed_job,)).fetchone()[0]
        assert statuses == {"finished": USERS}  # the redeliveries made no job
        assert attempts >= 2  # the killed job was started again elsewhere and finished there

        for url in [link for record in double.delivered() for link in result_links(record)][:6]:
            path = url.removeprefix(webs[0].base_url)
            bodies = [requests.get(web.base_url + path, timeout=10) for web in webs]
            assert [response.status_code for response in bodies] == [200, 200]
            assert bodies[0].content == bodies[1].content
            assert Image.open(io.BytesIO(bodies[1].content)).size[0] > 0
        metrics = requests.get(webs[1].base_url + "/metrics", timeout=10).text
        assert f'cutout_jobs{{state="finished"}} {USERS}' in metrics and "cutout_broker_queue_depth 0" in metrics
        assert "cutout_workers_alive 2" in metrics  # the killed pool process was replaced
        print(f"\nfleet: {USERS} photos through 2 web + 2 workers in {elapsed:.1f} s, one worker killed")
    finally:
        for process in (beat, *workers, *webs):
            process.stop()
        double.stop()
