"""The web page's photos: cut out in the background while the page polls where each one is.

POST /page/jobs answers as soon as the photo is read, decoded and stored (202 and a job id); the
pipeline thread works on it like on any other cutout (its own batch key, so it can report its
stages), and GET /page/jobs/<id> says where it is: queued (with how many photos are ahead),
segmenting, refining, saving, done, or failed with a remove.bg-shaped error. Files live in the
blob store and are swept with the other results after CUTOUT_RESULT_TTL_S:

    inputs/page-<id>/upload          the bytes as sent (the full-size blur needs the original)
    inputs/page-<id>/bg-<hash>.jpg   a background image the visitor chose
    results/page-<id>/original.jpg   the upload as a JPEG <= VIEW_SIDE: the page's "before" (and the
                                     only preview of HEIC and other formats browsers cannot show)
    results/page-<id>/cutout.png     the full-size transparent PNG
    results/page-<id>/view.png       the same at original.jpg's size: the page's "after"
    results/page-<id>/edit-mask.png  the model's soft mask (16-bit), for the editor's taps
    results/page-<id>/state.json     where the job is, for a process that did not run it
    results/page-<id>/<view|full>-<background>.<png|jpg>   composites, rendered on first request
    results/page-<id>/preset-<preview|full>-<tag>.<png|jpg|zip>   preset renders (bot.web.page_presets)

Composites are rendered here from the stored files (pipeline.outputs.render), so every browser gets the
same pixels: the blur is the pipeline's own (WebKit has no canvas filter), and opaque.

Fixing a photo in the editor (bot.web.editor) goes through a job-table record made on the first
request for the editor's link (`editable`: kind "page-edit", channel "web", its files the ones above);
each version saved there is what the page's views and downloads then draw (`edited`), under
`v<n>-` names beside the first version's.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import threading
import time
import unicodedata
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from bot.backgrounds import background_for
from bot.edits import WEB_CHANNEL
from bot.results import load_stored_cutout, mask_png
from pipeline.outputs.compose import to_rgba_uint8
from pipeline.cutout import CutoutOptions, CutoutResult, Pipeline
from pipeline.decode import decode_image, image_to_uint8
from bot.web.page_presets import PageRequest, preview_options
from pipeline.outputs import png
from pipeline.outputs.presets import render_preset, render_sticker_set
from pipeline.outputs.render import Background, Rendered, encode_jpeg, render
from pipeline.stats import Metrics
from pipeline.worker import PipelineWorker
from settings import Settings
from storage.files import BlobNotFound
from storage.jobs import DuplicateJob, Job

log = logging.getLogger(__name__)

VIEW_SIDE = 1280  # what the page shows (before, after, backgrounds); downloads are full size
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
BACKGROUND_ID = re.compile(r"^own-[0-9a-f]{12}$")
FINAL_STATES = ("done", "failed")
KEEP_IN_MEMORY_S = 3600  # finished jobs are then answered from state.json
LOST_AFTER_S = 600  # a job still unfinished on disk this long after its process stopped answering
PAGE_EDIT_KIND = "page-edit"  # the job-table record the editor works on for a page photo
NO_SUBJECT_TITLE = ("Could not identify foreground in image: send a photo with a clear subject "
                    "(a product, a person, a pet)")


class PageJobError(Exception):
    """A failure the page shows as remove.bg's error shape: HTTP status, English title, code."""

    def __init__(self, status: int, title: str, code: str) -> None:
        super().__init__(title)
        self.status, self.title, self.code = status, title, code


@dataclass
class PageJob:
    id: str
    name: str  # the upload's name without extension, safe for a file name
    width: int
    height: int
    state: str = "queued"
    future: Future | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    error: dict | None = None  # {"status", "title", "code"}
    owner: str = ""  # a digest of the page pass that sent it: only that page may bundle it in a ZIP

    @property
    def view_size(self) -> tuple[int, int]:
        return view_size(self.width, self.height)

    def record(self) -> dict:
        """What state.json keeps: enough for any process to answer the status and name the files."""
        return {"id": self.id, "name": self.name, "width": self.width, "height": self.height,
                "state": self.state, "created": self.created, "error": self.error, "owner": self.owner}


def version_tag(version: int) -> str:
    """The prefix of an edited version's renders ('' for the first version's)."""
    return f"v{version}-" if version else ""


def fast_png(image: Image.Image) -> bytes:
    """PNG bytes from the pipeline's encoder (every core, level 1), as the API's and chat's cutouts."""
    return png.encode(np.asarray(image))


def at_view_size(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The image at the page's view size (view.png's)."""
    return image if image.size == size else image.resize(size, Image.LANCZOS)


def view_size(width: int, height: int) -> tuple[int, int]:
    scale = min(1.0, VIEW_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def upload_stem(filename: str) -> str:
    """'IMG_0042.HEIC' -> 'IMG_0042'; '我的 照片.jpg' -> '我的-照片'; anything unusable -> 'photo'."""
    base = re.split(r"[/\\]", filename or "")[-1]
    if "." in base[1:]:
        base = base.rsplit(".", 1)[0]
    base = re.sub(r"[^\w\-]+", "-", unicodedata.normalize("NFC", base)).strip("-_.")[:60]
    return base or "photo"


def download_name(stem: str, background: str, extension: str) -> str:
    """troll-cutout.png (transparent), troll-cutout.jpg (on white), troll-cutout-blur.jpg, ..."""
    if background in ("transparent", "cutout"):
        return f"{stem}-cutout.{extension}"
    return f"{stem}-cutout-{background_slug(background)}.{extension}"


def background_slug(background: str) -> str:
    return re.sub(r"[^a-z0-9-]", "", background.lower()) or "bg"


class PageJobs:
    def __init__(self, settings: Settings, pipeline: Pipeline, worker: PipelineWorker, options: CutoutOptions,
                 blobs, metrics: Metrics, jobs=None) -> None:
        """jobs: the job table, for photos fixed in the editor (None: no editor)."""
        self.settings, self.pipeline, self.worker, self.options = settings, pipeline, worker, options
        self.blobs, self.metrics, self.jobs = blobs, metrics, jobs
        self._jobs: dict[str, PageJob] = {}
        self._lock = threading.Lock()
        # Encoding and storing the files happens here, never on the pipeline thread.
        self._io = ThreadPoolExecutor(max_workers=2, thread_name_prefix="page-io")

    # --- keys ---------------------------------------------------------------------------------
    @staticmethod
    def key(job_id: str, name: str, folder: str = "results") -> str:
        return f"{folder}/page-{job_id}/{name}"

    # --- submit ---------------------------------------------------------------------------------
    def submit(self, data: bytes, filename: str, owner: str = "") -> PageJob:
        """Decode, store the upload and its preview, queue the cutout. Raises ImageDecodeError, QueueFull."""
        image = decode_image(data, self.settings.max_image_bytes, self.settings.max_image_pixels)
        height, width = image.shape[:2]
        job = PageJob(uuid.uuid4().hex, upload_stem(filename), width, height, owner=owner)
        self.blobs.put(self.key(job.id, "upload", "inputs"), data)
        preview = at_view_size(Image.fromarray(image_to_uint8(image)), job.view_size)
        buffer = io.BytesIO()
        preview.save(buffer, "JPEG", quality=85, optimize=True)
        self.blobs.put(self.key(job.id, "original.jpg"), buffer.getvalue())
        self._save_state(job)

        def run_batch(items: list[tuple[PageJob, np.ndarray]]) -> list:
            def on_stage(index: int, stage: str) -> None:
                items[index][0].state = stage
                items[index][0].started = items[index][0].started or time.time()

            return self.pipeline.start_cutout_batch([item for _, item in items], self.options, on_stage=on_stage)

        job.future = self.worker.submit_batchable("page", (job, image), run_batch, f"page {job.id}")
        with self._lock:
            self._forget_old()
            self._jobs[job.id] = job
        job.future.add_done_callback(lambda done: self._io.submit(self._finish, job, done))
        return job

    def _finish(self, job: PageJob, done: Future) -> None:
        error: dict | None = None
        try:
            failure = done.exception()
            if failure is not None:
                log.error("page job %s failed on the pipeline: %s", job.id, failure)
                raise PageJobError(500, "Internal server error", "internal_error")
            result: CutoutResult = done.result()
            if not result.subject_found:
                raise PageJobError(400, NO_SUBJECT_TITLE, "unknown_foreground")
            job.state = "saving"
            self._store_result(job, result)
            self.metrics.count("page", "finished")
            self.metrics.observe(result.timings)
        except PageJobError as failure:
            error = {"status": failure.status, "title": failure.title, "code": failure.code}
            self.metrics.count("page", failure.code)
        except Exception:
            log.exception("page job %s: storing the result failed", job.id)
            error = {"status": 500, "title": "Internal server error", "code": "internal_error"}
            self.metrics.count("page", "internal_error")
        self._settle(job, "failed" if error else "done", error)

    def _settle(self, job: PageJob, state: str, error: dict | None) -> None:
        """Writes the final state.json before this process reports it: a page told "done" here may ask
        another process next, which must not find the job still queued."""
        job.future = None  # the result's arrays (4 full-size copies) are not kept in memory
        try:
            self.blobs.put(self.key(job.id, "state.json"), json.dumps({**job.record(), "state": state,
                                                                        "error": error}).encode())
        finally:
            job.state, job.error = state, error

    def _store_result(self, job: PageJob, result: CutoutResult) -> None:
        # One RGBA image for both files.
        rgba = Image.fromarray(to_rgba_uint8(result.foreground, result.alpha), "RGBA")
        self.blobs.put(self.key(job.id, "cutout.png"), fast_png(rgba))
        self.blobs.put(self.key(job.id, "view.png"), fast_png(at_view_size(rgba, job.view_size)))
        self.blobs.put(self.key(job.id, "edit-mask.png"), mask_png(result.mask))

    def _save_state(self, job: PageJob) -> None:
        self.blobs.put(self.key(job.id, "state.json"), json.dumps(job.record()).encode())

    def _forget_old(self) -> None:
        cutoff = time.time() - KEEP_IN_MEMORY_S
        for job_id in [j.id for j in self._jobs.values() if j.state in FINAL_STATES and j.created < cutoff]:
            del self._jobs[job_id]

    # --- status ---------------------------------------------------------------------------------
    def get(self, job_id: str) -> PageJob | None:
        """The job, from this process's memory or from its state.json; None when unknown or swept."""
        if not JOB_ID.match(job_id or ""):
            return None
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None:
            return job
        try:
            record = json.loads(self.blobs.get(self.key(job_id, "state.json")))
        except (BlobNotFound, ValueError):
            return None
        job = PageJob(record["id"], record["name"], record["width"], record["height"], record["state"],
                      created=record["created"], error=record.get("error"), owner=record.get("owner", ""))
        if job.state not in FINAL_STATES and time.time() - job.created > LOST_AFTER_S:
            # Queued in a process that has since stopped (a restart): it will never finish.
            job.state = "failed"
            job.error = {"status": 503, "title": "The photo was lost in a server restart; send it again",
                         "code": "job_lost"}
        return job

    def status(self, job: PageJob) -> dict:
        body = {"id": job.id, "state": job.state, "name": job.name, "width": job.width, "height": job.height,
                "elapsed_s": round(time.time() - job.created, 1)}
        if job.state == "done":
            body["version"] = self.edited(job)[0]  # the page redraws when the editor saved a new one
        future = job.future
        if job.state == "queued" and future is not None:
            position = self.worker.position(future)
            if position is not None:
                body["position"] = position  # photos ahead of this one (0: it is next)
        return body

    # --- the editor ---------------------------------------------------------------------------------
    def editable(self, job: PageJob) -> Job | None:
        """The job-table record the editor opens for this photo, made on first use (None: no editor)."""
        if self.jobs is None:
            return None
        dedupe = f"web:{PAGE_EDIT_KIND}:{job.id}"
        found = self.jobs.find(dedupe)
        if found is not None:
            return found
        try:
            # Made at the photo's time, so its link expires with the photo's files.
            record = self.jobs.create(PAGE_EDIT_KIND, WEB_CHANNEL, job.owner or "page", {"page_job": job.id},
                                      dedupe_key=dedupe, now=job.created)
        except DuplicateJob:  # another request made it first
            return self.jobs.find(dedupe)
        result = {"page_job": job.id, "cutout": self.key(job.id, "cutout.png"),
                  "input": self.key(job.id, "upload", "inputs"), "stored": True}
        if self.blobs.exists(self.key(job.id, "edit-mask.png")):
            result["edit_mask"] = self.key(job.id, "edit-mask.png")
        self.jobs.mark_finished(record.id, result)
        return self.jobs.get(record.id)

    def edited(self, job: PageJob) -> tuple[int, str | None]:
        """(the newest version saved in the editor, its full-size cutout's key); (0, None) if never saved."""
        if self.jobs is None:
            return 0, None
        record = self.jobs.find(f"web:{PAGE_EDIT_KIND}:{job.id}")
        versions = record.result.get("versions", []) if record is not None else []
        return (len(versions), record.result["cutout"]) if versions else (0, None)

    def _version_view(self, job: PageJob, version: int, cutout_key: str) -> bytes:
        """view.png of an edited version (made from its full-size cutout on first use)."""
        key = self.key(job.id, f"v{version}-view.png")
        try:
            return self.blobs.get(key)
        except BlobNotFound:
            pass
        data = fast_png(at_view_size(Image.open(io.BytesIO(self.blobs.get(cutout_key))).convert("RGBA"), job.view_size))
        self.blobs.put(key, data)
        return data

    # --- files ----------------------------------------------------------------------------------
    def original(self, job: PageJob) -> bytes:
        return self.blobs.get(self.key(job.id, "original.jpg"))

    def add_background(self, job: PageJob, data: bytes) -> str:
        """Store a background image of the visitor's own; -> its id for `render` ('own-<hash>')."""
        image = decode_image(data, self.settings.max_image_bytes, self.settings.max_image_pixels)
        background_id = "own-" + hashlib.sha256(data).hexdigest()[:12]
        key = self.key(job.id, f"bg-{background_id[4:]}.jpg", "inputs")
        if not self.blobs.exists(key):
            self.blobs.put(key, encode_jpeg(image, quality=90, max_side=4096))
        return background_id

    def background(self, job: PageJob, choice: str) -> Background:
        """'transparent', a chat choice ('white', 'blur', 'studio', '#ff8800', ...) or 'own-<hash>'."""
        if choice == "transparent":
            return Background("transparent")
        if BACKGROUND_ID.match(choice):
            try:
                data = self.blobs.get(self.key(job.id, f"bg-{choice[4:]}.jpg", "inputs"))
            except BlobNotFound:
                raise PageJobError(404, "That background image is gone; choose it again", "background_not_found") from None
            return Background("image", image=decode_image(data, max_bytes=1 << 31, max_pixels=1 << 31))
        try:
            return background_for(choice, self.settings.brand_colors)
        except (KeyError, ValueError):
            raise PageJobError(400, f"Unknown background {choice[:40]!r}", "invalid_bg") from None

    def render(self, job: PageJob, choice: str, fmt: str, full: bool) -> tuple[bytes, str]:
        """The cutout on `choice` as PNG or JPEG bytes -> (data, content type); cached in the store."""
        background = self.background(job, choice)  # checked before anything is read or drawn
        scope = "full" if full else "view"
        version, cutout_key = self.edited(job)
        if background.kind == "transparent" and fmt == "png":
            if version:
                return (self.blobs.get(cutout_key) if full else self._version_view(job, version, cutout_key)), "image/png"
            return self.blobs.get(self.key(job.id, "cutout.png" if full else "view.png")), "image/png"
        cached = self.key(job.id, f"{version_tag(version)}{scope}-{background_slug(choice)}.{fmt}")
        content_type = "image/png" if fmt == "png" else "image/jpeg"
        try:
            return self.blobs.get(cached), content_type
        except BlobNotFound:
            pass
        result = self._stored_result(job, full, (version, cutout_key))
        rendered = render(result, background, fmt=fmt)
        self.blobs.put(cached, rendered.data)
        return rendered.data, rendered.content_type

    def _stored_result(self, job: PageJob, full: bool, edited: tuple[int, str | None]) -> CutoutResult:
        """The cutout to draw from: `edited` (PageJobs.edited) names the editor's newest version, else the first."""
        version, cutout_key = edited
        if full:
            return load_stored_cutout(self.blobs, cutout_key or self.key(job.id, "cutout.png"),
                                      self.key(job.id, "upload", "inputs"))
        view = self._version_view(job, version, cutout_key) if version else self.blobs.get(self.key(job.id, "view.png"))
        rgba = np.asarray(Image.open(io.BytesIO(view)).convert("RGBA"), dtype=np.float32) / 255.0
        original = np.asarray(Image.open(io.BytesIO(self.original(job))).convert("RGB"), dtype=np.float32) / 255.0
        alpha = rgba[:, :, 3]
        return CutoutResult(image=original, mask=alpha, alpha=alpha, foreground=rgba[:, :, :3])

    # --- presets (bot.web.page_presets reads the page's words) ------------------------------------
    def render_preset(self, job: PageJob, request: PageRequest, preview: bool) -> Rendered:
        """The photo in a preset's shape; preview: the same at most PREVIEW_SIDE, from the view-size files.

        Cached in the store like the composites (a slider's values come back as the visitor moves it).
        """
        edited = self.edited(job)
        cached = self.key(job.id, f"{version_tag(edited[0])}preset-{'preview' if preview else 'full'}-{request.cache_tag()}")
        for content_type, extension in (("image/png", "png"), ("image/jpeg", "jpg")):
            if self.blobs.exists(f"{cached}.{extension}"):
                data = self.blobs.get(f"{cached}.{extension}")
                width, height = Image.open(io.BytesIO(data)).size
                return Rendered(data, content_type, width, height)
        result = self._stored_result(job, not preview, edited)
        options = preview_options(request.preset) if preview else request.preset
        rendered = render_preset(result, options, request.fmt)
        self.blobs.put(f"{cached}.{rendered.extension}", rendered.data)
        return rendered

    def sticker_files(self, job: PageJob) -> dict[str, bytes]:
        """{'sticker', 'main', 'tab'}: the LINE set's three PNGs of this photo (from the full-size cutout)."""
        names = ("sticker", "main", "tab")
        edited = self.edited(job)
        keys = {name: self.key(job.id, f"{version_tag(edited[0])}line-{name}.png") for name in names}
        if all(self.blobs.exists(key) for key in keys.values()):
            return {name: self.blobs.get(key) for name, key in keys.items()}
        rendered = render_sticker_set(self._stored_result(job, True, edited))
        for name in names:
            self.blobs.put(keys[name], rendered[name].data)
        return {name: rendered[name].data for name in names}
