"""The conversation's steps for edited cutouts (mixed into bot.conversation.Conversation).

Two ways a result gets a new version (bot/edits.py stores it and points the result at it):
- the editor page's Save: the page calls `send_edited`, which records an `edit` job for the
  user's chat and sends the corrected cutout there (LINE: a push, as the page holds no reply
  token; Messenger: the Send API), as the usual result card with the background choices;
- the card's 只留主體 quick reply (fix=main&job=...): the largest object alone, made on the
  pipeline thread and answered like a background choice.
Both answers are ordinary jobs: sent once through crashes (retry key, delivery notes), resumed at boot.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from bot.channels.cards import choice_fields
from bot.edits import EDIT_KIND, NotEditable
from bot.events import ChoiceMade, event_from_dict
from storage.jobs import DuplicateJob, Job

if TYPE_CHECKING:
    from bot.conversation import Conversation as _Base
else:
    _Base = object

log = logging.getLogger(__name__)

VERSION_FIELDS = ("cutout", "preview", "chat")


def is_fix_choice(event) -> bool:
    return isinstance(event, ChoiceMade) and choice_fields(event.data).get("fix") == "main"


class EditSteps(_Base):
    # --- the editor page saved a version ------------------------------------------------------------
    def send_edited(self, source_id: str, version: int) -> str | None:
        """Record the job that sends version `version` of `source_id` to its chat and start it;
        the job's id (None when that version was sent already)."""
        source = self.jobs.get(source_id)
        if source is None or source.channel not in self.channels:
            return None
        original = event_from_dict(source.payload)
        # No reply token (the page is no chat event: LINE needs a push); the photo's timestamp keeps
        # Messenger's standard window honest (it counts from the user's last message).
        event = ChoiceMade(source.channel, source.user_id, f"edit-{source.id}-{version}", original.timestamp,
                           data=urlencode({"edited": source.id, "v": version}))
        try:
            job = self.jobs.create(EDIT_KIND, event.channel, event.user_id, event.to_dict(),
                                   dedupe_key=f"{event.channel}:{event.event_id}")
        except DuplicateJob:
            return None
        self.dispatch(job.id)
        return job.id

    def process_edited(self, job: Job) -> None:
        """IO lane: an `edit` job copies its version's files from the result it edits, then answers."""
        fields = choice_fields(event_from_dict(job.payload).data)
        source = self.jobs.get(fields.get("edited", ""))
        versions = source.result.get("versions", []) if source is not None else []
        number = int(fields.get("v", "0") or 0)
        if not 1 <= number <= len(versions) or not self.blobs.exists(versions[number - 1]["cutout"]):
            from bot.conversation import UserFacingError

            raise UserFacingError("expired")
        self._record_version(job, source, versions[number - 1])
        self.deliver(job.id)

    def _record_version(self, job: Job, source: Job, version: dict) -> None:
        job.result.update({name: version[name] for name in VERSION_FIELDS if name in version},
                          edited=source.id, version=version["number"], stored=True)
        self.jobs.update_result(job.id, job.result)

    # --- 只留主體 from the chat ---------------------------------------------------------------------------
    def process_fix(self, job: Job, event: ChoiceMade) -> None:
        from bot.conversation import UserFacingError

        source = self.jobs.get(choice_fields(event.data).get("job", ""))
        if source is None or source.user_id != event.user_id or "cutout" not in source.result:
            raise UserFacingError("unknown_choice")
        if not self.blobs.exists(source.result["cutout"]):
            raise UserFacingError("expired")
        job.result["source_job"] = source.id
        self.jobs.update_result(job.id, job.result)
        self.channels[event.channel].start_loading(event)
        self._submit(job.id, self.compute_main_only, event)

    def compute_main_only(self, job_id: str) -> None:
        """Pipeline thread: erase every sizeable part but the largest, saved as the result's next version."""
        from bot.conversation import UserFacingError

        job = self.jobs.get(job_id)
        source_id = job.result["source_job"]
        try:
            marks = self.editor.main_only_marks(self.editor.job(source_id))
            version = self.editor.save(source_id, marks)
        except NotEditable:
            raise UserFacingError("expired") from None
        self._record_version(job, self.jobs.get(source_id), version)
