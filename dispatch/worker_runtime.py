"""What a Celery worker process holds: the models, the stores, a Conversation that runs jobs now.

Built once per process (celery_app's worker_process_init; lazily for pools that have no child
processes), never per task: loading the models takes seconds and ~1.5 GB.
"""
from __future__ import annotations

import logging
from concurrent.futures import Future

from bot.campaigns import CampaignStore
from bot.channels.line import LineChannel
from bot.channels.messenger import MessengerChannel
from bot.conversation import Conversation
from bot.results import UrlBuilder
from dispatch.inline import InlineExecutor, InlinePipeline
from dispatch.leases import LeaseKeeper
from pipeline.cutout import Pipeline
from pipeline.stats import Metrics
from settings import Settings
from storage.jobs import JobStore
from storage.open import open_blob_store, open_job_store
from storage.urls import UrlSigner, signing_secret

log = logging.getLogger(__name__)


class WorkerConversation(Conversation):
    """Runs one job to its end on the calling thread (IO lane and pipeline are inline here)."""

    def _lease_keeper(self) -> None:
        return None  # WorkerRuntime.run holds the job's lease around the whole run

    def dispatch(self, job_id: str) -> Future | None:
        self._release(job_id)  # a job this process saw before (redelivered) is not "already active"
        return super().dispatch(job_id)


class WorkerRuntime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.jobs: JobStore = open_job_store(settings.database_url, settings.data_dir)
        self.blobs = blobs = open_blob_store(settings.blob_url, settings.data_dir)
        signer = UrlSigner(signing_secret(settings.signing_secret, settings.data_dir), settings.result_ttl_s)
        self.pipeline = Pipeline()
        self.conversation = WorkerConversation(
            settings, self.jobs, blobs, UrlBuilder(settings.public_base_url, signer), InlinePipeline(),
            self.pipeline, InlineExecutor(), metrics=Metrics(), campaigns=CampaignStore(self.jobs, blobs))
        for secret, channel_class in ((settings.line_channel_secret, LineChannel),
                                      (settings.messenger_app_secret, MessengerChannel)):
            if secret:
                self.conversation.register(channel_class(settings))
        self.leases = LeaseKeeper(self.jobs, settings.lease_s)

    def warm_up(self) -> None:
        self.pipeline.warm_up(self.conversation.options)
        self.conversation.caption_font()

    def run(self, job_id: str) -> str:
        """Run a job unless another live worker holds it; return what happened (for the task's log)."""
        if not self.leases.claim(job_id):
            return "held elsewhere"
        try:
            job = self.jobs.get(job_id)
            if job is None or job.status.value in ("finished", "failed"):
                return "already done" if job else "unknown job"
            self.conversation.dispatch(job_id)
            return self.jobs.get(job_id).status.value
        finally:
            self.leases.release(job_id)
