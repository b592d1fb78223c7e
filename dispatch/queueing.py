"""The web side of Celery dispatch: record the job, hand its id to the broker, answer at once."""
from __future__ import annotations

import logging
from concurrent.futures import Future

from bot.conversation import Conversation
from bot.events import PhotoReceived, event_from_dict

log = logging.getLogger(__name__)


class QueueingConversation(Conversation):
    """A Conversation whose jobs run in worker processes; everything else (accept, dedupe) is shared."""

    def dispatch(self, job_id: str) -> Future | None:
        from dispatch.celery_app import enqueue

        self.jobs.mark_enqueued(job_id)
        try:
            enqueue(job_id)
        except Exception:
            # The job is recorded: the sweep sends it once CUTOUT_REQUEUE_AFTER_S has passed.
            log.exception("could not enqueue job %s; the sweep will send it", job_id)
        # The chat shows "working" from now, not from when a worker gets to the photo; off the
        # webhook's thread, since it is a call to the platform.
        return self.io.submit(self._show_working, job_id)

    def _show_working(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        event = event_from_dict(job.payload) if job else None
        if isinstance(event, PhotoReceived) and event.channel in self.channels:
            self.channels[event.channel].start_loading(event)

    def resume(self) -> int:
        """Nothing to resume per process: the sweep (dispatch.sweep) finds jobs left behind."""
        return 0

    def resume_abandoned(self) -> int:
        return 0

    def broker_depth(self) -> int | None:
        from dispatch.celery_app import queue_depth

        return queue_depth()

    def workers_alive(self) -> int | None:
        from dispatch.celery_app import workers_alive

        return workers_alive()
