"""The conversation: one place decides what happens for every channel.

Webhook thread: `accept(events)` only records each event as a job (deduplicated on the platform's
event id) and hands it to the IO lane; it never waits on anything slow.
IO lane (a small thread pool): `process(job)` downloads photos, answers commands, and submits the
heavy part to the pipeline thread; `deliver(job)` sends the replies.
Pipeline thread: `compute_cutout` / `compute_composite` run the models and store the files.
Every step records its progress on the job, so a restart resumes where the process died.
Photos sent as a set are answered together (bot/chat/set_steps.py); the presets a result offers
(商品圖, 做成貼圖, 貼文尺寸, 限動尺寸) are made like composites (compute_preset).
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import Executor, Future
from dataclasses import dataclass

from bot import backgrounds
from bot.channels.base import Channel, SendError
from bot.channels.cards import ResultCards, choice_fields
from bot.chat.albums import ALBUM_KIND, MEMBER_KIND, AlbumBook
from bot.chat.presets import CHAT_PRESETS, file_stem, preset_options
from bot.chat.set_cards import SetCards
from bot.chat.edit_steps import EditSteps, is_fix_choice
from bot.chat.set_steps import PhotoSetSteps
from bot.edits import EDIT_KIND, EditLinks, Editor, second_opinion_from
from bot.events import ChoiceMade, Event, Followed, PhotoReceived, TextReceived, Unsupported, event_from_dict
from bot.fetch import FetchError
from bot.campaigns import Campaign, CampaignStore
from bot.i18n import EXIT_WORDS, HELP_WORDS, LANGUAGE_WORDS, LANGUAGES, say
from bot.replies import Reply, Text
from bot.results import UrlBuilder, load_stored_cutout, store_composite, store_cutout, store_poster, store_preset
from dispatch.leases import LeaseKeeper, owner_is_gone
from models import ModelUnavailableError, ensure_model, get_spec
from models.specs import CAPTION_FONT
from pipeline.cutout import CutoutOptions, CutoutResult, Pipeline
from pipeline.decode import ImageDecodeError, decode_image, format_megabytes
from pipeline.stats import Metrics
from pipeline.worker import PipelineWorker, QueueFull
from settings import Settings
from storage.files import BlobNotFound, LocalBlobStore
from storage.jobs import DuplicateJob, Job, JobStatus, SqliteJobStore

log = logging.getLogger(__name__)


class UserFacingError(Exception):
    """A failure the user is told about in their language: `key` names the message."""

    def __init__(self, key: str, **values: object) -> None:
        super().__init__(key)
        self.key = key
        self.values = values


RETRY_KEY_NAMESPACE = uuid.UUID("4f1c3f64-8a51-4b7e-9a55-2f0c1de0b7a1")


def retry_key(job_id: str, purpose: str) -> str:
    """A stable UUID per job and message purpose (LINE wants a UUID): a resend after a crash
    repeats the same key, so LINE answers 409 instead of delivering twice."""
    return str(uuid.uuid5(RETRY_KEY_NAMESPACE, f"{job_id}:{purpose}"))


class JobDeliveryLog:
    """A channel's delivery notes, kept on the job (result[purpose]) and written before returning."""

    def __init__(self, jobs: SqliteJobStore, job: Job, purpose: str) -> None:
        self.jobs, self.job, self.purpose = jobs, job, purpose

    def get(self, key: str, default=None):
        return self.job.result.get(self.purpose, {}).get(key, default)

    def record(self, **notes) -> None:
        self.job.result.setdefault(self.purpose, {}).update(notes)
        self.jobs.update_result(self.job.id, self.job.result)


FETCH_FAILURE_KEYS = {"too_large": "too_large_limit", "timeout": "fetch_timeout"}


def decode_failure(error: ImageDecodeError, settings: Settings) -> UserFacingError:
    """A decoder's failure as a message wholly in the user's language (the decoder's text is English)."""
    if error.reason == "too_large":
        return UserFacingError("too_large_limit", limit=format_megabytes(settings.max_image_bytes))
    if error.reason == "too_many_pixels":  # "4000 萬像素" / "40 megapixels"
        return UserFacingError("too_many_pixels", wan=f"{settings.max_image_pixels / 1e4:.0f}",
                               mp=f"{settings.max_image_pixels / 1e6:.0f}")
    return UserFacingError({"empty": "bad_image_empty", "unsupported": "bad_image_unsupported"}.get(
        error.reason, "bad_image_corrupt"))


def fetch_failure(error: FetchError, settings: Settings) -> UserFacingError:
    """A failed photo download -> what the user is told, in their language (no English reasons)."""
    log.info("photo download failed (%s): %s", error.reason, error)
    return UserFacingError(FETCH_FAILURE_KEYS.get(error.reason, "fetch_failed"),
                           limit=format_megabytes(settings.max_image_bytes))


def shows_progress(event: PhotoReceived) -> bool:
    """One "working" animation per chat, not one per photo of a set: the set's first photo starts
    it and its last photo (usually the last cut out) keeps renewing it until the summary."""
    return event.set_index <= 1 or event.set_index == event.set_total


class LaneClosed(RuntimeError):
    """The IO lane is shut down (this process is stopping): a job can no longer be started here."""


@dataclass
class Conversation(PhotoSetSteps, EditSteps):
    settings: Settings
    jobs: SqliteJobStore
    blobs: LocalBlobStore
    urls: UrlBuilder
    worker: PipelineWorker
    pipeline: Pipeline
    io: Executor
    options: CutoutOptions = CutoutOptions()
    metrics: Metrics | None = None
    campaigns: CampaignStore | None = None
    font_path: str | None = None  # CJK font for campaign captions (see caption_font)

    def __post_init__(self) -> None:
        self.channels: dict[str, Channel] = {}
        self.booted_at = time.time()
        # Jobs this process is already working on: resume() must not start them a second time.
        self._active: set[str] = set()
        self._active_lock = threading.Lock()
        # Several processes on one job table (GUNICORN_WORKERS > 1) each work on a job only under
        # its lease, so a job is never worked on (or answered) by two of them at once.
        self.leases = self._lease_keeper()
        # The editor (bot/edits.py): its links on result cards, its engine shared with the page.
        self.edit_links = EditLinks(self.settings, self.urls.signer, self.jobs)
        self.editor = Editor(self.settings, self.jobs, self.blobs,
                             second_opinion=second_opinion_from(self.pipeline, self.worker))
        self.cards = ResultCards(self.settings, self.blobs, self.urls, self.edit_links)
        self.set_cards = SetCards(self.cards)
        self.albums = AlbumBook(self.jobs, self.blobs)

    def register(self, channel: Channel) -> None:
        self.channels[channel.name] = channel

    # --- webhook thread -------------------------------------------------------------------------
    def accept(self, events: list[Event]) -> int:
        """Record and enqueue events; redeliveries are dropped. Returns how many were new."""
        accepted = 0
        for event in events:
            kind, album_key = self.job_kind(event)
            try:
                job = self.jobs.create(kind, event.channel, event.user_id, event.to_dict(),
                                       dedupe_key=f"{event.channel}:{event.event_id}")
            except DuplicateJob:
                log.info("%s event %s redelivered; already handled", event.channel, event.event_id)
                continue
            accepted += 1
            if album_key is not None:
                self.join_album(album_key, event)
            self.dispatch(job.id)
        return accepted

    def _lease_keeper(self) -> LeaseKeeper | None:
        return LeaseKeeper(self.jobs, self.settings.lease_s)

    def dispatch(self, job_id: str) -> Future | None:
        with self._active_lock:
            if job_id in self._active:
                return None
            self._active.add(job_id)
        try:
            return self.io.submit(self._guarded, self.process, job_id)
        except RuntimeError as error:  # the executor refuses work once shut down: leave the job to others
            self._release(job_id)
            raise LaneClosed(f"job {job_id} not started: the IO lane is shut down") from error

    def _release(self, job_id: str) -> None:
        with self._active_lock:
            self._active.discard(job_id)
        if self.leases is not None:
            self.leases.release(job_id)

    def resume(self) -> int:
        """At boot: re-dispatch jobs accepted before this process started but never finished,
        unless another live process holds them."""
        return self._take_over([job for job in self.jobs.resumable() if job.created_at < self.booted_at],
                               unheld_too=True)

    def resume_abandoned(self) -> int:
        """Every lease period: jobs whose holder stopped renewing its lease or died (another
        process of this job table; a job nobody ever held waits for the next boot)."""
        return self._take_over(self.jobs.resumable(), unheld_too=False)

    def _take_over(self, pending: list[Job], unheld_too: bool) -> int:
        taken = 0
        for job in pending:
            holder = self.jobs.lease_holder(job.id) if self.leases is not None else None
            if holder is None:
                if not unheld_too:
                    continue
            elif holder[0] == self.leases.owner:
                continue  # ours, in progress
            elif owner_is_gone(holder[0]):
                self.jobs.release(job.id, holder[0])
            elif holder[1] >= time.time():
                continue  # a live process works on it
            if self.dispatch(job.id) is not None:
                log.info("resuming %s job %s (%s)", job.kind, job.id, job.status.value)
                taken += 1
        return taken

    # --- IO lane --------------------------------------------------------------------------------
    def _guarded(self, step, job_id: str) -> None:
        """Run one step; any failure is recorded on the job and told to the user, never swallowed."""
        try:
            step(job_id)
        except UserFacingError as error:
            self._fail(job_id, error.key, error.key, **error.values)
        except Exception as error:
            log.exception("job %s failed in %s", job_id, getattr(step, "__name__", "a step"))
            self._fail(job_id, f"{type(error).__name__}: {error}", "failed")

    def process(self, job_id: str) -> None:
        # The lease is claimed here on the IO lane, not in dispatch: a webhook's request writes only its job.
        if self.leases is not None and not self.leases.claim(job_id):
            with self._active_lock:  # another live process works on it
                self._active.discard(job_id)
            return
        job = self.jobs.get(job_id)
        if job is None or job.status in (JobStatus.FINISHED, JobStatus.FAILED):
            self._release(job_id)
            return
        self.jobs.mark_started(job_id)
        event = event_from_dict(job.payload)
        if job.kind == ALBUM_KIND:
            self.process_album(job)
        elif job.kind == EDIT_KIND:  # the editor page saved a version: send it to the chat
            self.process_edited(job)
        elif job.result.get("stored"):  # resumed after the files were made: only the reply is left
            self.deliver(job_id)
        elif isinstance(event, PhotoReceived):
            self._process_photo(job, event)
        elif is_fix_choice(event):  # 只留主體 (bot/chat/edit_steps.py)
            self.process_fix(job, event)
        elif isinstance(event, ChoiceMade) and "set" in choice_fields(event.data) \
                and {"bg", "preset"} & set(choice_fields(event.data)):
            self.process_set_choice(job, event)
        elif isinstance(event, ChoiceMade) and {"bg", "preset"} & set(choice_fields(event.data)):
            self._process_choice(job, event)
        else:
            self._send(job, event, self.answer(event))
            self.jobs.mark_finished(job_id, job.result)
            self._release(job_id)

    def answer(self, event: Event) -> list[Reply]:
        """Replies that need no pipeline work: greetings, help, language, campaigns, hints."""
        language = self.language(event)
        campaign = self._campaign_trigger(event)
        if campaign is not None:
            return [Text(self.join_campaign(campaign, event, language))]
        if isinstance(event, Followed):
            return [Text(say(language, "greeting"))]
        if isinstance(event, ChoiceMade):
            return self.menu(event, language)
        if isinstance(event, TextReceived) and event.text.strip().lower() in EXIT_WORDS:
            self.jobs.update_user_state(event.channel, event.user_id, campaign=None, campaign_until=0)
            return [Text(say(language, "campaign_left"))]
        if isinstance(event, Unsupported):
            return [Text(say(language, "unsupported"))]
        if isinstance(event, TextReceived):
            word = event.text.strip().lower()
            if word in LANGUAGE_WORDS:
                language = LANGUAGE_WORDS[word]
                self.jobs.update_user_state(event.channel, event.user_id, language=language)
                return [Text(say(language, "language_set") + "\n" + say(language, "help"))]
            if word in HELP_WORDS:
                return [Text(say(language, "help"))]
            return [Text(say(language, "fallback_text"))]
        return []

    def menu(self, event: ChoiceMade, language: str) -> list[Reply]:
        """A result card's New background / More / help buttons (see bot/channels/cards.py)."""
        fields = choice_fields(event.data)
        set_menu = self.set_menu(fields, event.user_id, language)
        if set_menu is not None:
            return set_menu
        source = self.jobs.get(fields.get("job", "")) if fields.get("job") else None
        if fields.get("menu") not in ("backgrounds", "more", "help") or source is None \
                or source.user_id != event.user_id or "cutout" not in source.result:
            return [Text(say(language, "unknown_choice"))]
        if fields["menu"] == "help":
            return [Text(say(language, "help"))]
        if not self.blobs.exists(source.result["cutout"]):
            return [Text(say(language, "expired"))]
        if fields["menu"] == "backgrounds":
            return self.cards.backgrounds_menu(source.id, language)
        return self.cards.more_menu(source, language)

    # --- campaigns ----------------------------------------------------------------------------------
    def _campaign_trigger(self, event: Event) -> Campaign | None:
        if self.campaigns is None:
            return None
        if isinstance(event, TextReceived):
            return self.campaigns.match_keyword(event.text)
        if isinstance(event, ChoiceMade):
            return self.campaigns.match_postback(event.data)
        if isinstance(event, Followed):
            return self.campaigns.match_ref(event.ref)
        return None

    def caption_font(self) -> str | None:
        """The CJK caption font's path, fetched once; None (Latin-only captions) when unavailable."""
        if self.font_path is None:
            try:
                self.font_path = str(ensure_model(get_spec(CAPTION_FONT)))
            except ModelUnavailableError as error:
                log.error("caption font unavailable, captions fall back to a Latin-only font: %s", error)
        return self.font_path

    def join_campaign(self, campaign: Campaign, event: Event, language: str) -> str:
        self.campaigns.join(campaign, event.channel, event.user_id)
        self.jobs.update_user_state(event.channel, event.user_id, campaign=campaign.slug,
                                    campaign_until=time.time() + campaign.state_ttl_s)
        return campaign.prompt or say(language, "campaign_joined", title=campaign.title)

    def current_campaign(self, event: Event) -> Campaign | None:
        """The campaign this user is in (joined, not expired, still active), if any."""
        if self.campaigns is None:
            return None
        state = self.jobs.user_state(event.channel, event.user_id)
        if not state.get("campaign") or state.get("campaign_until", 0) < time.time():
            return None
        campaign = self.campaigns.get(state["campaign"])
        return campaign if campaign is not None and campaign.active() else None

    def language(self, event: Event) -> str:
        language = self.jobs.user_state(event.channel, event.user_id).get("language")
        return language if language in LANGUAGES else self.settings.default_language

    def _process_photo(self, job: Job, event: PhotoReceived) -> None:
        channel = self.channels[event.channel]
        input_key = job.result.get("input")
        if not input_key:
            if self.requests_in_window(event) > self.settings.rate_limit_count:
                raise UserFacingError("rate_limited")
            if shows_progress(event):
                channel.start_loading(event)
            try:
                data = channel.fetch_image(event.source)
            except FetchError as error:
                raise fetch_failure(error, self.settings) from None
            input_key = self.blobs.put(f"inputs/{job.id}", data)
            job.result["input"] = input_key
            campaign = self.current_campaign(event)
            if campaign is not None:
                job.result["campaign"] = campaign.slug
            self.jobs.update_result(job.id, job.result)
        self._submit_cutout(job.id, event if shows_progress(event) else None)

    def _process_choice(self, job: Job, event: ChoiceMade) -> None:
        fields = choice_fields(event.data)
        source = self.jobs.get(fields.get("job", ""))
        choice = fields.get("bg", "")
        if source is None or source.user_id != event.user_id or "cutout" not in source.result:
            raise UserFacingError("unknown_choice")
        if "preset" in fields:
            self._process_preset(job, event, source, fields["preset"])
            return
        try:
            backgrounds.background_for(choice, self.settings.brand_colors)
        except KeyError:
            raise UserFacingError("unknown_choice") from None
        if not self.blobs.exists(source.result["cutout"]):
            raise UserFacingError("expired")
        job.result.update(source_job=source.id, choice=choice)
        self.jobs.update_result(job.id, job.result)
        self.jobs.update_user_state(event.channel, event.user_id, background=choice)  # posts and stories use it
        self.channels[event.channel].start_loading(event)
        self._submit(job.id, self.compute_composite, event)

    def _process_preset(self, job: Job, event: ChoiceMade, source: Job, name: str) -> None:
        if name not in CHAT_PRESETS:
            raise UserFacingError("unknown_choice")
        if not self.blobs.exists(source.result["cutout"]):
            raise UserFacingError("expired")
        # The scene is fixed now, so a resumed job makes the same picture.
        job.result.update(source_job=source.id, preset=name, scene=self.scene(event))
        self.jobs.update_result(job.id, job.result)
        self.channels[event.channel].start_loading(event)
        self._submit(job.id, self.compute_preset, event)

    def _submit(self, job_id: str, compute, event: Event | None = None) -> None:
        try:
            future = self.worker.submit(lambda: compute(job_id), label=f"{compute.__name__} {job_id}")
        except QueueFull:
            raise UserFacingError("busy") from None
        self._keep_loading(event, future)
        future.add_done_callback(lambda done: self._after_compute(job_id, done))

    def _keep_loading(self, event: Event | None, future: Future) -> None:
        """Renew the channel's "working" animation until the job's work is done.

        LINE shows it for at most the seconds asked (we ask 20) and hides it when a message
        arrives; a photo queued behind others would otherwise sit there with no sign of life.
        """
        interval = self.settings.loading_renew_s
        if event is None or interval <= 0:
            return
        channel = self.channels[event.channel]
        deadline = time.monotonic() + self.settings.loading_max_s

        def renew() -> None:
            if future.done() or time.monotonic() > deadline:
                return
            channel.start_loading(event)
            schedule()

        def schedule() -> None:
            timer = threading.Timer(interval, renew)
            timer.daemon = True
            timer.start()

        schedule()

    def _after_compute(self, job_id: str, done: Future) -> None:
        error = done.exception()
        if error is None:
            self.dispatch_delivery(job_id)
        elif isinstance(error, UserFacingError):
            self.io.submit(self._fail, job_id, error.key, error.key, **error.values)
        else:
            self.io.submit(self._fail, job_id, f"{type(error).__name__}: {error}", "failed")

    def dispatch_delivery(self, job_id: str) -> None:
        self.io.submit(self._guarded, self.deliver, job_id)

    # --- pipeline thread ----------------------------------------------------------------------------
    def _submit_cutout(self, job_id: str, event: Event | None = None) -> None:
        """Decode here (IO lane), cut out on the pipeline thread (batched with other photos)."""
        job = self.jobs.get(job_id)
        try:
            image = decode_image(self.blobs.get(job.result["input"]), self.settings.max_image_bytes,
                                 self.settings.max_image_pixels)
        except ImageDecodeError as error:
            raise decode_failure(error, self.settings) from None
        try:
            future = self.worker.submit_batchable(
                "cutout", image, lambda images: self.pipeline.start_cutout_batch(images, self.options), label=f"cutout {job_id}")
        except QueueFull:
            raise UserFacingError("busy") from None
        self._keep_loading(event, future)
        future.add_done_callback(lambda done: self._after_cutout(job_id, done))

    def _after_cutout(self, job_id: str, done: Future) -> None:
        if done.exception() is not None:
            self._after_compute(job_id, done)
            return
        self.io.submit(self._guarded, lambda jid: self.store_cutout_result(jid, done.result()), job_id)

    def store_cutout_result(self, job_id: str, result) -> None:
        """IO lane: encode and store the files (and a campaign poster), then reply."""
        job = self.jobs.get(job_id)
        if not result.subject_found:
            raise UserFacingError("no_subject")
        if self.metrics:
            self.metrics.observe(result.timings)
        job.result.update(store_cutout(result, job.id, self.blobs), notes=result.notes,
                          timings={k: round(v, 3) for k, v in result.timings.items()})
        campaign = self.campaigns.get(job.result["campaign"]) if self.campaigns and "campaign" in job.result else None
        if campaign is not None:
            poster = self.campaigns.render(campaign, result.foreground, result.alpha, self.caption_font())
            job.result.update(store_poster(poster, job.id, self.blobs))
            self.campaigns.count(campaign.slug, "photos")
        job.result["stored"] = True
        self.jobs.update_result(job.id, job.result)
        self.deliver(job_id)

    def _source_cutout(self, job: Job) -> CutoutResult:
        """The cutout a follow-up job (composite, preset) works from; expired when its files are gone."""
        source = self.jobs.get(job.result["source_job"])
        try:
            return load_stored_cutout(self.blobs, source.result["cutout"], source.result.get("input"))
        except BlobNotFound:
            raise UserFacingError("expired") from None

    def compute_composite(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        stored = self._source_cutout(job)
        background = backgrounds.background_for(job.result["choice"], self.settings.brand_colors)
        job.result.update(store_composite(stored, background, job.id, job.result["choice"], self.blobs), stored=True)
        self.jobs.update_result(job.id, job.result)

    def compute_preset(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        stored = self._source_cutout(job)
        name = job.result["preset"]
        options = preset_options(name, job.result["scene"], self.settings.brand_colors)
        job.result.update(store_preset(stored, options, job.id, file_stem(name, options), self.blobs), stored=True)
        self.jobs.update_result(job.id, job.result)

    # --- replies ------------------------------------------------------------------------------------
    def deliver(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job.status in (JobStatus.FINISHED, JobStatus.FAILED):
            return
        if job.kind == MEMBER_KIND and self.album_takes(job):
            return  # the set's summary answers it
        event = event_from_dict(job.payload)
        self._send(job, event, self.result_replies(job, event))
        self.jobs.mark_finished(job_id, job.result)
        self._release(job_id)
        if "poster" in job.result and self.campaigns is not None:
            self.campaigns.count(job.result["campaign"], "composites")
        if self.metrics:
            self.metrics.count(event.channel, "finished")

    def result_replies(self, job: Job, event: Event) -> list[Reply]:
        if "set_items" in job.result:
            return self.set_choice_replies(job, event)
        campaign_title = None
        if "poster" in job.result:
            campaign = self.campaigns.get(job.result["campaign"]) if self.campaigns else None
            campaign_title = campaign.title if campaign else None
        return self.cards.result(job, self.language(event), campaign_title)

    def _send(self, job: Job, event: Event, replies: list[Reply], purpose: str = "delivery") -> None:
        """Send once per job and purpose: the retry key and the delivery notes survive restarts."""
        if not replies:
            return
        channel = self.channels[event.channel]
        if not channel.can_send(event):
            log.warning("%s: not allowed to answer job %s now; reply dropped", event.channel, job.id)
            return
        delivery = channel.send(event, replies, retry_key(job.id, purpose), JobDeliveryLog(self.jobs, job, purpose))
        if self.metrics is not None and delivery is not None:
            self.metrics.count_delivery(event.channel, delivery.via, delivery.reason)

    def _fail(self, job_id: str, error: str, message_key: str, **values: object) -> None:
        job = self.jobs.get(job_id)
        if job is None:
            return
        if job.kind == MEMBER_KIND and job.status in (JobStatus.FINISHED, JobStatus.FAILED):
            log.error("job %s: %s after its set took it; the set's summary answers it", job_id, error)
            return
        if job.kind == MEMBER_KIND:
            job.result["failure_key"] = message_key  # the set's summary lists it in the user's language
            if self.album_takes(job, error=error):
                if self.metrics:
                    self.metrics.count(job.channel, message_key)
                return
        self.jobs.mark_failed(job_id, error, job.result)
        self._release(job_id)
        if self.metrics:
            self.metrics.count(job.channel, message_key)
        event = event_from_dict(job.payload)
        if job.result.get("delivery", {}).get("reply_attempted"):
            # The result itself may have reached the user; "something went wrong" would then be false.
            log.error("job %s: not telling the user about %s: its result may have been delivered", job_id, error)
            return
        try:
            self._send(job, event, [Text(say(self.language(event), message_key, **values))], purpose="failure")
        except (SendError, KeyError) as send_error:
            log.error("job %s: could not tell the user about %s: %s", job_id, error, send_error)
