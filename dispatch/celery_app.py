"""The Celery application: `celery -A dispatch.celery_app worker` (and `beat` for the sweep).

Configured from the same environment as the web processes (settings.py). Delivery guarantees:
acks_late + reject_on_worker_lost put a job's message back when its worker process dies; a
prefetch of 1 keeps queued jobs on the broker, where any free worker can take them; the job
table's lease (dispatch/leases.py) makes a redelivered job run once; the beat-scheduled sweep
re-enqueues jobs whose worker vanished without the broker noticing. CPU workers: prefork, one
process per core pair (onnxruntime already uses 2 threads per image). GPU workers: one process
per GPU (`--pool solo`).
"""
from __future__ import annotations

import logging

from celery import Celery
from celery.signals import worker_process_init
from kombu.exceptions import ChannelError

from settings import Settings

log = logging.getLogger(__name__)

QUEUE = "cutout"
CONTROL_QUEUE = "cutout-control"
settings = Settings.from_env()
settings.data_dir.mkdir(parents=True, exist_ok=True)  # beat keeps its schedule file there
app = Celery("cutout", broker=settings.queue_url or "memory://")
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue=QUEUE,
    # The sweep has its own queue: behind a backlog of photos it would come too late.
    task_routes={"cutout.sweep": {"queue": CONTROL_QUEUE}, "cutout.expire_results": {"queue": CONTROL_QUEUE}},
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    # A web process publishing to a broker that is down gives up within a second or two: the
    # job is already recorded, the webhook must be answered, and the sweep sends it later.
    broker_connection_timeout=2,
    task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
    # A pool process loads the models before it reports up (seconds, more on a busy machine);
    # Celery's default 4 s would kill it again and again.
    worker_proc_alive_timeout=300,
    # Redis redelivers a message unacknowledged this long; jobs take seconds, and the lease
    # keeps a redelivered one from running twice while its first worker still works.
    broker_transport_options={"visibility_timeout": 3600},
    beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
    beat_schedule={
        "requeue-abandoned-jobs": {"task": "cutout.sweep", "schedule": settings.sweep_every_s},
        "delete-expired-results": {"task": "cutout.expire_results", "schedule": 3600.0},
    },
)

_runtime = None


def runtime():
    """This process's WorkerRuntime (models loaded), built on first use."""
    global _runtime
    if _runtime is None:
        from dispatch.worker_runtime import WorkerRuntime

        _runtime = WorkerRuntime(Settings.from_env())
        if _runtime.settings.warm_up:
            _runtime.warm_up()
    return _runtime


@worker_process_init.connect
def load_models(**_) -> None:
    """Each pool process loads the models before its first task, not during it."""
    runtime()


@app.task(name="cutout.process_job")
def process_job(job_id: str) -> str:
    outcome = runtime().run(job_id)
    log.info("job %s: %s", job_id, outcome)
    return outcome


@app.task(name="cutout.sweep")
def sweep() -> int:
    from dispatch.sweep import requeue_abandoned

    return len(requeue_abandoned(runtime().jobs, enqueue, settings.requeue_after_s))


@app.task(name="cutout.expire_results")
def expire_results() -> int:
    from storage.retention import expire

    return expire(runtime().blobs, runtime().jobs, settings)


def enqueue(job_id: str) -> None:
    process_job.apply_async((job_id,), queue=QUEUE)


def queue_depth() -> int | None:
    """Messages waiting on the broker (not counting the ones workers hold), or None if unreachable."""
    try:
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=1)  # health pages must answer
            return connection.default_channel.queue_declare(QUEUE, passive=True).message_count
    except ChannelError as error:
        if "NOT_FOUND" in str(error):  # Redis drops an empty list: no queue is an empty queue
            return 0
        log.warning("broker queue depth unavailable: %s", error)
        return None
    except Exception as error:
        log.warning("broker queue depth unavailable: %s", error)
        return None


def workers_alive(timeout_s: float = 0.5) -> int | None:
    """Worker processes that answered a broadcast ping within `timeout_s`, or None if unreachable."""
    try:
        return len(app.control.ping(timeout=timeout_s) or [])
    except Exception as error:
        log.warning("worker ping unavailable: %s", error)
        return None
