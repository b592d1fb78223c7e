"""The conversation's steps for photo sets (mixed into bot.conversation.Conversation).

Every photo of a set is cut out as its own job, but answers nothing on its own: when it ends
(finished or failed) it is marked done under the set's lock, and whoever ends the last photo (or
the album job's timer, once the wait is over) decides which photos the summary covers. The album
job then stores one ZIP and sends one carousel + summary card, through the same `_send` as every
answer (reply token or push with a retry key, delivery notes on the job), so it goes out once
through crashes; an unfinished album job resumes at boot like any other job. A photo that ends
after the decision (it arrived late) is answered on its own, as if it had come alone.

"Apply to all" (a background or a preset for the whole set) is one job: every photo's new
version on the pipeline thread, one ZIP, one carousel + card.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING

from bot import backgrounds
from bot.channels.cards import choice_fields
from bot.chat import albums
from bot.chat.albums import ALBUM_KIND, MEMBER_KIND
from bot.chat.presets import CHAT_PRESETS, file_stem, preset_options, scene_choice
from bot.chat.set_cards import succeeded
from bot.events import AlbumCollected, ChoiceMade, PhotoReceived, event_from_dict
from bot.i18n import say
from bot.replies import Text
from bot.results import load_stored_cutout, store_composite, store_preset, store_zip
from pipeline.outputs.sticker import set_entry_names
from storage.files import BlobNotFound
from storage.jobs import DuplicateJob, Job, JobStatus

if TYPE_CHECKING:
    from bot.conversation import Conversation as _Base
else:
    _Base = object

log = logging.getLogger(__name__)

SEND_LEASE_S = 300.0  # one sender per set at a time; a sender that died frees it after this
RUN_KIND = "run_photo"  # a set without index/total (LINE for Android <= 11.15): answered one by one


class PhotoSetSteps(_Base):
    # --- webhook thread ---------------------------------------------------------------------------
    def job_kind(self, event) -> tuple[str, str | None]:
        """(job kind, set key or None). A set's photos are not counted by the rate limit one by one:
        its album job counts once (a set without index/total: its first photo counts)."""
        if not isinstance(event, PhotoReceived) or not event.set_id:
            return event.type, None
        if 1 < event.set_total <= albums.MAX_SET and 1 <= event.set_index <= event.set_total:
            return MEMBER_KIND, albums.set_key(event.channel, event.user_id, event.set_id)
        if self.jobs.first_sighting(f"{event.channel}:set:{event.user_id}:{event.set_id}"):
            return event.type, None
        return RUN_KIND, None

    def join_album(self, key: str, event: PhotoReceived) -> None:
        """The set's first photo creates the album job. The photo's own job row (already recorded)
        is what makes it a member: nothing else is written for it."""
        album_event = AlbumCollected(event.channel, event.user_id, f"album:{key}", event.timestamp,
                                     event.reply_token, set_key=key, set_total=event.set_total)
        try:
            album = self.jobs.create(ALBUM_KIND, event.channel, event.user_id, album_event.to_dict(),
                                     dedupe_key=albums.album_dedupe_key(event.channel, key))
        except DuplicateJob:
            return
        self.dispatch(album.id)  # starts the wait for the rest of the set

    def requests_in_window(self, event) -> int:
        """Photos and sets this user sent in the rate-limit window (a set is one request)."""
        since = time.time() - self.settings.rate_limit_window_s
        return (self.jobs.count_recent(event.channel, event.user_id, since)
                + self.jobs.count_recent(event.channel, event.user_id, since, kind=ALBUM_KIND))

    # --- a photo of a set ends ------------------------------------------------------------------
    def album_takes(self, job: Job, error: str | None = None) -> bool:
        """Mark a set's photo done (failed when `error`) for the summary; False when the summary was
        decided without it (it arrived late): the caller answers it on its own."""
        event = event_from_dict(job.payload)
        key = albums.set_key(event.channel, event.user_id, event.set_id)
        ready = None
        with self.albums.locked(key):
            decided = self.albums.decided(key)
            if decided is not None and event.set_index not in decided:
                return False
            album = self.albums.album_job(event.channel, key)
            member = None if album is None else self.albums.members(album, event.set_total).get(event.set_index)
            if member is None or member.id != job.id:
                return False  # no album job was made for its set (a crash inside accept()): it stands alone
            if error is None:
                self.jobs.mark_finished(job.id, job.result)
            else:
                self.jobs.mark_failed(job.id, error, job.result)
            if decided is None:
                ready = self.albums.ready(album, event.set_total, self.settings.album_wait_s)
                if ready is not None:
                    self.albums.decide(key, ready)
        self._release(job.id)
        if ready is not None:
            self.dispatch(album.id)
        return True

    # --- the album job ------------------------------------------------------------------------------
    def process_album(self, job: Job) -> None:
        event: AlbumCollected = event_from_dict(job.payload)
        key = event.set_key
        decided = self.albums.decided(key)
        if decided is None:
            with self.albums.locked(key):
                decided = self.albums.decided(key)
                if decided is None:
                    decided = self.albums.ready(job, event.set_total, self.settings.album_wait_s)
                    if decided is not None:
                        self.albums.decide(key, decided)
        if decided is None:
            self._release(job.id)
            if self.albums.decided(key) is not None:  # the last photo decided while we looked
                self.dispatch(job.id)
            else:
                self.recheck_album_later(job)
            return
        self.deliver_album(job, event, decided)

    def recheck_album_later(self, job: Job, delay: float | None = None) -> None:
        """Look at the set again at the end of the wait (then every quarter wait), in case its last
        photos never come. A restart re-runs the album job at boot, which schedules this again."""
        wait = self.settings.album_wait_s
        if delay is None:
            left = job.created_at + wait - time.time()
            delay = left if left > 0 else max(1.0, wait / 4)
        timer = threading.Timer(delay + 0.05, self._recheck_album, (job.id,))
        timer.daemon = True
        timer.start()

    def _recheck_album(self, job_id: str) -> None:
        try:
            self.dispatch(job_id)
        except RuntimeError:  # the IO lane was shut down (the process is stopping): resumed at boot
            log.info("album job %s not rechecked: shutting down", job_id)

    def deliver_album(self, job: Job, event: AlbumCollected, decided: list[int]) -> None:
        """Store the set's ZIP once, then send the summary once (one sender at a time, across processes)."""
        name, owner = f"album-send:{event.set_key}", uuid.uuid4().hex
        if not self.jobs.claim(name, owner, SEND_LEASE_S):
            self._release(job.id)
            self.recheck_album_later(job, delay=SEND_LEASE_S / 10)
            return
        try:
            job = self.jobs.get(job.id)
            if job.status in (JobStatus.FINISHED, JobStatus.FAILED):
                return
            members = self.albums.members(job, event.set_total)
            if "items" not in job.result:
                done = [index for index in decided if succeeded(members[index])]
                if done:
                    files = [(f"{index:02d}.png", members[index].result["cutout"]) for index in done]
                    job.result["zip"] = store_zip(self.blobs, f"results/{job.id}/photos.zip", files)
                job.result["items"] = [[index, members[index].id] for index in done]
                self.jobs.update_result(job.id, job.result)
            channel = self.channels[event.channel]
            replies = self.set_cards.summary(job, event.set_total, members, decided, self.language(event),
                                             channel.max_carousel_cards)
            self._send(job, event, replies)
            self.jobs.mark_finished(job.id, job.result)
            if self.metrics:
                self.metrics.count(event.channel, "finished")
        finally:
            self.jobs.release(name, owner)
            self._release(job.id)

    # --- "apply to all" -------------------------------------------------------------------------------
    def process_set_choice(self, job: Job, event: ChoiceMade) -> None:
        """A background or preset for every photo of a summarised set: validated here, made on the
        pipeline thread (compute_set), answered by deliver()."""
        fields = choice_fields(event.data)
        album = self.jobs.get(fields.get("set", ""))
        if album is None or album.kind != ALBUM_KIND or album.user_id != event.user_id \
                or not album.result.get("items"):
            raise albums_error("unknown_choice")
        if "preset" in fields:
            if fields["preset"] not in CHAT_PRESETS:
                raise albums_error("unknown_choice")
            job.result.update(set_job=album.id, all_preset=fields["preset"], scene=self.scene(event))
        else:
            try:
                backgrounds.background_for(fields.get("bg", ""), self.settings.brand_colors)
            except (KeyError, ValueError):
                raise albums_error("unknown_choice") from None
            job.result.update(set_job=album.id, all_bg=fields["bg"])
            self.jobs.update_user_state(event.channel, event.user_id, background=fields["bg"])
        self.jobs.update_result(job.id, job.result)
        self.channels[event.channel].start_loading(event)
        self._submit(job.id, self.compute_set, event)

    def compute_set(self, job_id: str) -> None:
        """Pipeline thread: every photo's new version, then one ZIP of them all."""
        job = self.jobs.get(job_id)
        album = self.jobs.get(job.result["set_job"])
        items, files = [], []
        name = job.result.get("all_preset")
        options = preset_options(name, job.result["scene"], self.settings.brand_colors) if name else None
        for index, member_id in album.result["items"]:
            member = self.jobs.get(member_id)
            try:
                stored = load_stored_cutout(self.blobs, member.result["cutout"], member.result.get("input"))
            except BlobNotFound:
                raise albums_error("expired") from None
            if options is not None:
                keys = store_preset(stored, options, job.id, f"{index:02d}-{file_stem(name, options)}", self.blobs)
            else:
                choice = job.result["all_bg"]
                background = backgrounds.background_for(choice, self.settings.brand_colors)
                keys = store_composite(stored, background, job.id, f"{index:02d}-{choice}", self.blobs)
            items.append({"index": index, "source_job": member_id, **keys})
            files.append((keys["composite"].rsplit("/", 1)[-1], keys["composite"]))
        if name == "sticker" and items:  # a sticker set needs one main and one tab image: the first photo's
            first = items[0]["composite"].rsplit(".", 1)[0]
            keys = [key for _, key in files] + [f"{first}-main.png", f"{first}-tab.png"]
            files = list(zip(set_entry_names(len(items)), keys))  # named as LINE Creators Market asks
        zip_name = file_stem(name, options) if options is not None else job.result["all_bg"]
        job.result.update(set_items=items, zip=store_zip(self.blobs, f"results/{job.id}/{zip_name}.zip", files),
                          stored=True)
        self.jobs.update_result(job.id, job.result)

    def set_choice_replies(self, job: Job, event) -> list:
        album = self.jobs.get(job.result["set_job"])
        language = self.language(event)
        if "all_preset" in job.result:
            what = say(language, f"preset_{job.result['all_preset']}")
        else:
            what = backgrounds.choice_label(job.result["all_bg"], language, self.settings.brand_colors)
        channel = self.channels[event.channel]
        return self.set_cards.applied(job, album, what, language, channel.max_carousel_cards)

    def set_menu(self, fields: dict[str, str], user_id: str, language: str) -> list | None:
        """menu=backgrounds|sizes&set=<album job>: the choices for the whole set (None: not a set menu)."""
        if "set" not in fields:
            return None
        album = self.jobs.get(fields["set"])
        if album is not None and album.kind == ALBUM_KIND and album.user_id == user_id and album.result.get("items"):
            if fields.get("menu") == "sizes":
                return self.set_cards.sizes_menu(album.id, language)
            if fields.get("menu") == "backgrounds":
                return self.set_cards.backgrounds_menu(album.id, language)
        return [Text(say(language, "unknown_choice"))]

    def scene(self, event) -> str:
        """The background a post or story goes on: the user's last chosen one (bot.chat.presets)."""
        last = self.jobs.user_state(event.channel, event.user_id).get("background")
        return scene_choice(last, self.settings.brand_colors)


def albums_error(key: str) -> Exception:
    """bot.conversation.UserFacingError (imported late: that module mixes this one in)."""
    from bot.conversation import UserFacingError

    return UserFacingError(key)
