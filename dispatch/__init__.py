"""Dispatch: where an accepted job is worked on. The seam is `Conversation.dispatch(job_id)`.

- in-process (the embedded default): bot/conversation.Conversation hands the job to its IO lane
  and the pipeline thread of the same process; nothing here is imported.
- Celery (CUTOUT_QUEUE_URL=redis://... or amqp://...): web processes only verify, record and
  enqueue (`dispatch.queueing.QueueingConversation`); worker processes (`celery -A
  dispatch.celery_app worker`) load the models once and run each job through the same
  Conversation steps, synchronously (`dispatch.worker_runtime`), under a lease in the job table.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.conversation import Conversation
    from settings import Settings


def conversation_class(settings: "Settings") -> type["Conversation"]:
    """The Conversation a web process runs: the in-process one unless a queue is configured."""
    if not settings.queue_url:
        from bot.conversation import Conversation

        return Conversation
    from dispatch.queueing import QueueingConversation

    return QueueingConversation
