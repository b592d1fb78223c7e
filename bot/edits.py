"""Editing a chat result: signed editor links, the engine on a cached grid, saved versions.

A result's edit source is what bot/results.store_cutout kept: the photo (the job's input), the
model's soft mask and the shipped alpha (8-bit PNGs). Marks always apply to that first alpha (the
client keeps the whole list: undo is dropping the last mark), so a saved version is the marks
plus the files they made; the job's `cutout` / `preview` / `chat` then point at the newest
version, which is what downloads and new backgrounds read (bot.conversation).

Editor links are signed with a key of their own (derived from the result-URL secret), so an
editor token opens nothing under /r/ and a file token opens no editor; they expire with the
result (its job's creation + CUTOUT_RESULT_TTL_S, when the sweeper deletes the files).
"""
from __future__ import annotations

import hashlib
import hmac
import io
import logging
import threading
import time
import uuid
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Callable, Iterator
from urllib.parse import urlencode

import numpy as np
from PIL import Image
from scipy import ndimage

from bot.results import grey_png, object_parts, read_grey_png, read_mask_png, store_cutout_files
from pipeline.cutout import CutoutResult, Pipeline
from pipeline.decode import decode_image
from pipeline.editing.edit import EditGrid, EditSource, edit_on_grid, marks_from_json, prepare, refine_alpha
from pipeline.outputs.render import encode_jpeg
from pipeline.worker import PipelineWorker
from settings import Settings
from storage.files import BlobNotFound, BlobStore
from storage.jobs import Job
from storage.urls import InvalidToken, UrlSigner

log = logging.getLogger(__name__)

EDIT_KIND = "edit"  # the job that sends a saved version back to the chat
WEB_CHANNEL = "web"  # results of the web page (bot.web.page_jobs.editable): no chat to send a version to
LINK_PURPOSE = b"cutout-editor-links"
# Editing grids kept in memory (each ~ the photo in 8 bits + a few grid-sized float maps).
CACHED_GRIDS = 3
# Below this stored alpha the stored PNG's colour is not the subject's: show the photo's instead.
COLOUR_FROM_CUTOUT = 0.02
# Saved versions per result: each is a few files and (on LINE) a billed push; a link holder
# pressing Save in a loop stops here.
MAX_VERSIONS = 20
# The second model a keep tap asks where the first saw nothing (pipeline.editing.edit), the photo's
# long side it is given (the model itself runs at 320 px), and how long a preview waits for it.
SECOND_OPINION_MODEL = "u2netp"
SECOND_OPINION_SIDE = 1024
SECOND_OPINION_TIMEOUT_S = 20.0
# Where a result's second opinion is kept once asked (next to its files, swept with them): a
# restart, another process or a grid the cache dropped reads it back instead of running the
# model again on the pipeline thread.
SECOND_OPINION_FILE = "second-opinion.png"


def second_opinion_from(pipeline: Pipeline, worker: PipelineWorker) -> Callable[[np.ndarray], np.ndarray]:
    """The editor's second opinion for keep taps the first model did not see: U^2-Net-p's soft mask
    for the photo, run on the pipeline thread (it owns the models)."""
    def ask(photo: np.ndarray) -> np.ndarray:
        height, width = photo.shape[:2]
        scale = min(1.0, SECOND_OPINION_SIDE / max(height, width))
        small = Image.fromarray(photo).resize((max(1, round(width * scale)), max(1, round(height * scale))),
                                              Image.BILINEAR)
        image = np.asarray(small, dtype=np.float32) / 255.0
        return worker.call(lambda: pipeline.segmenter(SECOND_OPINION_MODEL).predict_small(image),
                           "second opinion", SECOND_OPINION_TIMEOUT_S)
    return ask


class NotEditable(Exception):
    """The result is gone (expired or never a cutout): the editor says so."""


class TooManyVersions(Exception):
    """The result already has MAX_VERSIONS saved versions."""

    def __init__(self, job_id: str, limit: int) -> None:
        super().__init__(job_id)
        self.limit = limit


class EditLinks:
    """Signed, expiring editor links for one result each (LINE: a LIFF URL when LINE_LIFF_ID is set)."""

    def __init__(self, settings: Settings, signer: UrlSigner, jobs) -> None:
        self.settings, self.jobs = settings, jobs
        secret = hmac.new(signer.secret, LINK_PURPOSE, hashlib.sha256).digest()
        self.signer = UrlSigner(secret, settings.result_ttl_s)

    def expires_at(self, job: Job) -> float:
        return job.created_at + self.settings.result_ttl_s

    def token(self, job: Job, now: float | None = None) -> str:
        """The result's editor token: it expires with the result, so a second request for the link
        gives the same link. `now` is unused (kept for callers that pass it)."""
        return self.signer.sign(f"edit:{job.id}", expires_at=self.expires_at(job))

    def job_id(self, token: str, now: float | None = None) -> str:
        """The result's job id (raises storage.urls.InvalidToken / ExpiredToken)."""
        key = self.signer.verify(token, now=now)
        if not key.startswith("edit:"):
            raise InvalidToken("not an editor link")
        return key[len("edit:"):]

    def url(self, job_id: str, language: str) -> str | None:
        """The link a card's Edit button opens; None when the result cannot be edited (expired)."""
        job = self.jobs.get(job_id)
        if job is None or "cutout" not in job.result or "input" not in job.result \
                or self.expires_at(job) <= time.time() + 60:
            return None
        query = {"t": self.token(job)}
        if language != self.settings.default_language:
            query["lang"] = language
        if job.channel == "line" and self.settings.line_liff_id:
            # The LIFF endpoint is {PUBLIC_BASE_URL}/edit; LINE passes the query on to it (as
            # liff.state on the first load), which bot.web.editor reads without the LIFF SDK.
            return f"https://liff.line.me/{self.settings.line_liff_id}?{urlencode(query)}"
        lang = f"?lang={language}" if "lang" in query else ""
        return f"{self.settings.public_base_url}/edit/{query['t']}{lang}"


class Editor:
    """The engine for chat results: previews on a cached grid, saves as new versions."""

    def __init__(self, settings: Settings, jobs, blobs: BlobStore, cached: int = CACHED_GRIDS,
                 second_opinion: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        """second_opinion: photo (H, W, 3) uint8 -> a second model's soft mask (see second_opinion_from)."""
        self.settings, self.jobs, self.blobs = settings, jobs, blobs
        self.second_opinion = second_opinion
        self._cache: "OrderedDict[str, EditGrid]" = OrderedDict()
        self._cached = cached
        self._lock = threading.Lock()
        # One engine call per result at a time: a grid's memo of replays is not thread-safe, and
        # a page whose next preview overtakes the last must not corrupt it.
        self._grid_locks: dict[str, threading.Lock] = {}

    # --- loading --------------------------------------------------------------------------------
    def job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None or "cutout" not in job.result or "input" not in job.result:
            raise NotEditable(job_id)
        original = job.result.get("original", {}).get("cutout", job.result["cutout"])
        if not self.blobs.exists(job.result["input"]) or not self.blobs.exists(original):
            raise NotEditable(job_id)
        return job

    def loaded(self, job: Job) -> EditGrid:
        """The result's editing grid, kept for the next preview (a few results per process)."""
        with self._lock:
            if job.id in self._cache:
                self._cache.move_to_end(job.id)
                return self._cache[job.id]
        loaded = self._load(job)
        with self._lock:
            self._cache[job.id] = loaded
            while len(self._cache) > self._cached:
                self._cache.popitem(last=False)
        return loaded

    @contextmanager
    def using(self, job: Job) -> Iterator[EditGrid]:
        with self._lock:
            lock = self._grid_locks.setdefault(job.id, threading.Lock())
            if len(self._grid_locks) > 64 * self._cached:  # forget locks of results long out of the cache
                for stale in [key for key in self._grid_locks if key not in self._cache and key != job.id]:
                    del self._grid_locks[stale]
        with lock:
            yield self.loaded(job)

    def _original_rgba(self, job: Job) -> np.ndarray:
        """(H, W, 4) uint8: the first version's PNG (its colours are the pipeline's foreground estimate)."""
        original = job.result.get("original", {}).get("cutout", job.result["cutout"])
        return np.asarray(Image.open(io.BytesIO(self.blobs.get(original))).convert("RGBA"))

    def _load(self, job: Job) -> EditGrid:
        result = job.result
        rgba = self._original_rgba(job)
        photo = decode_image(self.blobs.get(result["input"]), max_bytes=1 << 31, max_pixels=1 << 31)
        if photo.shape[:2] != rgba.shape[:2]:
            raise NotEditable(job.id)
        image = np.round(photo * 255.0).astype(np.uint8)  # a quarter of the float photo's memory
        del photo
        if "edit_alpha" in result and self.blobs.exists(result["edit_alpha"]):
            alpha = read_grey_png(self.blobs.get(result["edit_alpha"]))
        else:  # stored before the editor existed: the PNG's own alpha
            alpha = np.ascontiguousarray(rgba[:, :, 3])
        mask = read_mask_png(self.blobs.get(result["edit_mask"])) \
            if "edit_mask" in result and self.blobs.exists(result["edit_mask"]) else alpha.astype(np.float32) / 255.0
        return prepare(EditSource(image=image, mask=mask, alpha=alpha,
                                  second_opinion=self._kept_second_opinion(job, image)))

    def _kept_second_opinion(self, job: Job, image: np.ndarray) -> Callable[[], np.ndarray] | None:
        """The result's second opinion: read back when any process asked it before, else asked
        now and kept with the result's files. Both ways give the same 8-bit values, so an edit
        never depends on which process answered it."""
        ask = self.second_opinion
        if ask is None:
            return None
        key = f"results/{job.id}/{SECOND_OPINION_FILE}"

        def kept_or_asked() -> np.ndarray:
            try:
                stored = self.blobs.get(key)
            except BlobNotFound:  # never asked (or swept): ask
                stored = None
            except Exception as error:  # the store unreachable: ask
                log.warning("kept second opinion for %s unreadable: %s", job.id, error)
                stored = None
            if stored is None:
                stored = grey_png(ask(image))
                try:
                    self.blobs.put(key, stored)
                except Exception as error:  # keeping it saves a model run later; this edit has its answer
                    log.warning("second opinion for %s not kept: %s", job.id, error)
            return read_grey_png(stored).astype(np.float32) / 255.0
        return kept_or_asked

    # --- what the page shows --------------------------------------------------------------------
    def display_size(self, job: Job) -> tuple[int, int]:
        """(width, height) of the page's pictures: the editing grid's."""
        height, width = self.loaded(job).shape
        return width, height

    def opening(self, job: Job) -> None:
        """The editor page opens on this result: its grid is loaded and the second opinion asked in
        the background (~0.3 s on the pipeline thread), while the person looks for the first tap."""
        with self.using(job) as grid:
            grid.ask_second_ahead()

    def photo_jpeg(self, job: Job) -> bytes:
        grid = self.loaded(job)
        return encode_jpeg(grid.image, quality=88, max_bytes=1_500_000)

    def alpha_png(self, job: Job, marks: list[dict] | None) -> bytes:
        """The alpha after `marks` on the editing grid, as an 8-bit greyscale PNG."""
        with self.using(job) as grid:
            full_h, full_w = grid.full_shape
            parsed = marks_from_json(marks or [], full_w, full_h)
            alpha = edit_on_grid(grid, parsed) if parsed else grid.alpha
        return grey_png(alpha)

    def main_only_marks(self, job: Job) -> list[dict]:
        """"Keep the main object only": an erase tap inside each sizeable part but the largest
        (the engine drops a separate part whole). [] when the cutout is one object."""
        grid = self.loaded(job)
        labels, parts, step = object_parts(grid.alpha)
        full_h, full_w = grid.full_shape
        scale_y, scale_x = full_h / grid.shape[0], full_w / grid.shape[1]
        marks = []
        for label in parts[1:]:
            # The part's deepest point: a tap there is inside it whatever its shape.
            depth = ndimage.distance_transform_edt(labels == label)
            y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
            marks.append({"type": "tap", "mode": "erase",
                          "x": min(full_w - 1, round((x * step + step / 2) * scale_x, 1)),
                          "y": min(full_h - 1, round((y * step + step / 2) * scale_y, 1))})
        return marks

    # --- saving ---------------------------------------------------------------------------------
    def save(self, job_id: str, marks: list[dict]) -> dict[str, Any]:
        """Apply `marks` at full size, store the files as the result's next version and point the
        result at them; return the version ({number, cutout, preview, chat, marks}).

        Versions are numbered in the job store's own transaction, so saves in several processes (or
        the chat's 只留主體 beside the editor) never share a number or lose each other. When the newest
        version already holds these marks (Save pressed twice, in two tabs), that version comes back
        with "repeated": True and nothing new is stored or sent."""
        job = self.job(job_id)
        newest = self._newest_version(job.result)
        if newest is not None and newest["marks"] == marks:
            return {**newest, "repeated": True}
        if len(job.result.get("versions", [])) >= MAX_VERSIONS:
            raise TooManyVersions(job_id, MAX_VERSIONS)
        with self.using(job) as grid:
            full_h, full_w = grid.full_shape
            alpha = refine_alpha(grid, marks_from_json(marks, full_w, full_h))
        source = grid.source
        photo = source.image.astype(np.float32) / 255.0
        stored_alpha = source.alpha.astype(np.float32) / 255.0 if source.alpha.dtype == np.uint8 else source.alpha
        colour = np.where((stored_alpha >= COLOUR_FROM_CUTOUT)[:, :, None],
                          self._original_rgba(job)[:, :, :3].astype(np.float32) / 255.0, photo)
        result = CutoutResult(image=photo, mask=source.mask, alpha=alpha, foreground=colour)
        # The files first, in a folder of their own (a save in another process may be numbering the
        # same version right now); the version number only when the job's result takes them.
        keys = store_cutout_files(result, f"results/{job.id}/edit-{uuid.uuid4().hex[:12]}", self.blobs)
        saved: dict[str, Any] = {}

        def add_version(stored: dict[str, Any]) -> dict[str, Any] | None:
            newest = self._newest_version(stored)
            if newest is not None and newest["marks"] == marks:
                saved.update(newest, repeated=True)
                return None
            versions = list(stored.get("versions", []))
            if len(versions) >= MAX_VERSIONS:
                raise TooManyVersions(job_id, MAX_VERSIONS)
            version = {"number": len(versions) + 1, **keys, "marks": marks}
            stored.setdefault("original", {name: stored[name] for name in ("cutout", "preview", "chat")
                                           if name in stored})
            stored.update(keys, versions=[*versions, version])
            saved.update(version)
            return stored

        try:
            if self.jobs.change_result(job.id, add_version) is None and not saved:
                raise NotEditable(job_id)  # the job is gone (swept) since it was read
        except Exception:
            self._forget_files(keys)
            raise
        if saved.get("repeated"):
            self._forget_files(keys)
        return saved

    @staticmethod
    def _newest_version(result: dict[str, Any]) -> dict[str, Any] | None:
        versions = result.get("versions") or []
        return versions[-1] if versions else None

    def _forget_files(self, keys: dict[str, str]) -> None:
        """Delete a save's files that no version points at (the sweeper would, a day later)."""
        for key in set(keys.values()):
            try:
                self.blobs.delete(key)
            except Exception:  # noqa: BLE001 - the sweeper removes what this could not
                log.warning("could not delete unused edit file %s", key, exc_info=True)
