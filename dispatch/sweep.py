"""The periodic sweep: re-enqueue accepted jobs that nobody is working on.

Two ways a job is left behind in a fleet: its worker vanished mid-job (kill -9, OOM, a lost
machine: the lease in the job table stops being renewed and runs out), or its message never
reached a worker (the broker was down when the web process enqueued it, or lost it). Re-sending
is safe: a worker first claims the job's lease, and each step is keyed by the job id and skips
what the job table says is done, so a job that is being worked on or is finished is not redone.
"""
from __future__ import annotations

import logging
from typing import Callable

from storage.jobs import JobStore

log = logging.getLogger(__name__)


def requeue_abandoned(jobs: JobStore, enqueue: Callable[[str], None], requeue_after_s: float) -> list[str]:
    job_ids = jobs.abandoned(requeue_after_s)
    for job_id in job_ids:
        jobs.mark_enqueued(job_id)
        enqueue(job_id)
    if job_ids:
        log.warning("sweep re-enqueued %d abandoned jobs: %s", len(job_ids), ", ".join(job_ids[:20]))
    return job_ids
