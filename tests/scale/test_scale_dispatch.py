"""The dispatch seam: web processes only verify, record and enqueue (a real gunicorn, Redis and
PostgreSQL); a worker process runs a job only under its lease; the sweep finds what was left."""
from __future__ import annotations

import time

import requests

from bot.events import ImageSource, PhotoReceived
from dispatch.inline import InlineExecutor, InlinePipeline
from dispatch.sweep import requeue_abandoned
from settings import Settings
from storage.jobs import JobStatus
from storage.open import open_job_store
from tests.conftest import LINE_SECRET, LINE_TOKEN, line_body, line_signature
from tests.doubles.line_platform import LinePlatformDouble
from tests.gunicorn_server import GunicornServer
from tests.servers.fixtures import postgres_server, postgres_url, redis_server  # noqa: F401  (fixtures)


def post(server: GunicornServer, body: bytes) -> requests.Response:
    return requests.post(server.base_url + "/callback/line", data=body, timeout=10,
                         headers={"Content-Type": "application/json", "X-Line-Signature": line_signature(body)})


def web_process(tmp_path, database_url: str, queue_url: str, line_url: str = "http://127.0.0.1:9") -> GunicornServer:
    return GunicornServer({"CUTOUT_DATA_DIR": str(tmp_path / "var"), "LINE_CHANNEL_SECRET": LINE_SECRET,
                           "LINE_CHANNEL_ACCESS_TOKEN": LINE_TOKEN, "LINE_API_BASE_URL": line_url,
                           "CUTOUT_DATABASE_URL": database_url, "CUTOUT_QUEUE_URL": queue_url})


def test_web_process_records_and_enqueues_without_loading_models(tmp_path, postgres_url, redis_server):
    import redis

    double = LinePlatformDouble(LINE_TOKEN).start()
    server = web_process(tmp_path, postgres_url, redis_server.url(), double.base_url).start()
    try:
        body, event = line_body("image_message.json", **{"message.id": "q1"})
        started = time.monotonic()
        assert post(server, body).status_code == 200
        acked_s = time.monotonic() - started
        assert post(server, body).status_code == 200  # LINE's redelivery: no second job, no second message
        jobs = open_job_store(postgres_url, tmp_path)
        assert jobs.counts_by_status() == {"queued": 1}  # nobody works on it here
        assert redis.Redis.from_url(redis_server.url()).llen("cutout") == 1
        ready = requests.get(server.base_url + "/readyz", timeout=5).json()
        assert ready["broker_queue_depth"] == 1 and ready["models_loaded"]
        assert "onnxruntime" not in server.log_tail(100_000)  # the web process never loaded a model
        assert acked_s < 1.0
        # The user sees "working" while the photo waits for a worker; the web process fetched nothing.
        started_loading = "/v2/bot/chat/loading/start"
        received = double.wait_for(lambda rs: any(r.path == started_loading for r in rs), 10)
        assert [r.body["chatId"] for r in received if r.path == started_loading] == [event["source"]["userId"]]
        assert not any("/content" in r.path for r in double.received)
    finally:
        server.stop()
        double.stop()


def test_with_the_broker_down_the_job_is_kept_and_the_sweep_sends_it(tmp_path, postgres_url):
    server = web_process(tmp_path, postgres_url, "redis://127.0.0.1:9/0").start()  # nothing listens there
    try:
        body, _ = line_body("image_message.json", **{"message.id": "q2"})
        started = time.monotonic()
        assert post(server, body).status_code == 200  # the event is recorded: LINE must not resend it
        assert time.monotonic() - started < 3.0
        assert "could not enqueue job" in server.log_tail(100_000)
    finally:
        server.stop()
    jobs = open_job_store(postgres_url, tmp_path)
    [job] = jobs.resumable()
    sent: list[str] = []
    assert requeue_abandoned(jobs, sent.append, requeue_after_s=900) == []  # not yet: it may be in flight
    assert requeue_abandoned(jobs, sent.append, requeue_after_s=0) == [job.id] and sent == [job.id]
    assert requeue_abandoned(jobs, sent.append, requeue_after_s=0.5) == []  # just sent: waits again


def test_a_worker_runs_a_job_only_under_its_lease(tmp_path, postgres_url, small_side_pipeline):
    from dispatch.worker_runtime import WorkerRuntime
    from tests.conftest import jpeg_bytes, shared_image

    double = LinePlatformDouble(LINE_TOKEN).start()
    try:
        settings = Settings(data_dir=tmp_path / "var", database_url=postgres_url, warm_up=False,
                            line_channel_secret=LINE_SECRET, line_channel_access_token=LINE_TOKEN,
                            line_api_base_url=double.base_url, loading_renew_s=0)
        runtime = WorkerRuntime(settings)
        runtime.pipeline = runtime.conversation.pipeline = small_side_pipeline
        double.add_content("w1", jpeg_bytes(shared_image("GT05"), 256))
        event = PhotoReceived(channel="line", user_id="Uworker", event_id="E-w1", timestamp=time.time(),
                              reply_token="token-w1", source=ImageSource("line_content", "w1"))
        double.valid_reply_tokens.add("token-w1")
        job = runtime.jobs.create(event.type, event.channel, event.user_id, event.to_dict(), dedupe_key="line:E-w1")

        assert runtime.jobs.claim(job.id, "elsewhere:1", lease_s=60)
        assert runtime.run(job.id) == "held elsewhere" and runtime.jobs.get(job.id).status is JobStatus.QUEUED
        runtime.jobs.release(job.id, "elsewhere:1")
        assert runtime.run(job.id) == "finished"  # the whole job, to the reply, before run returns
        assert [r.path for r in double.delivered()].count("/v2/bot/message/reply") == 1
        assert runtime.run(job.id) == "already done"  # a redelivered message changes nothing
        assert [r.path for r in double.delivered()].count("/v2/bot/message/reply") == 1
        assert runtime.jobs.abandoned(requeue_after_s=0) == []
    finally:
        double.stop()


def test_inline_stand_ins_finish_before_returning_and_carry_failures():
    pipeline, executor = InlinePipeline(), InlineExecutor()
    assert pipeline.submit(lambda: 41 + 1).result(timeout=0) == 42
    assert pipeline.submit_batchable("cutout", 3, lambda items: [i * 2 for i in items]).result(timeout=0) == 6
    failed = pipeline.submit_batchable("cutout", 3, lambda items: [ValueError("no subject")])
    assert isinstance(failed.exception(timeout=0), ValueError)
    assert isinstance(executor.submit(lambda: 1 / 0).exception(timeout=0), ZeroDivisionError)
    seen: list[int] = []
    executor.submit(pipeline.submit(lambda: 5).add_done_callback, lambda f: seen.append(f.result()))
    assert seen == [5]  # callbacks run at once, as the Conversation's chain needs
