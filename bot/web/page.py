"""The web page's own routes: submit a photo, follow its progress, preview, composites, downloads.

    POST /page/jobs                      image_file | image_url -> 202 {id, state, position, ...}
    GET  /page/jobs/<id>                 {state: queued|segmenting|refining|saving|done|failed,
                                          position (photos ahead, while queued), errors (when failed)}
    GET  /page/jobs/<id>/original.jpg    the upload as a JPEG (HEIC and other formats browsers cannot show)
    GET  /page/jobs/<id>/view?bg=        the cutout at display size on a background (PNG when transparent)
    GET  /page/jobs/<id>/download?bg=&format=png|jpg   the full-size file, named after the upload
    GET  /page/jobs/<id>/view?preset=&size=&margin=&shadow=&bg=      a preset's live preview (<= 480 px)
    GET  /page/jobs/<id>/download?preset=...  the preset's file (teddy-product.png); sticker: a ZIP of
                                         LINE's 01.png, main.png, tab.png (bot.web.page_presets)
    POST /page/jobs/<id>/background      image_file -> {bg: "own-<hash>"}: the visitor's own background
    POST /page/zip                       {ids: [...], preset...} -> one ZIP of this page's photos

Writes need the page's signed pass (X-Page-Token) and count against the page's per-visitor quota
(CUTOUT_PAGE_RATE_LIMIT, shared with the page's use of the API); reads need the job id, a random
128-bit value only its page knows. A ZIP bundles several photos at once, so it needs both: the pass,
and every job sent with that same pass. Errors have the API's shape and Accept-Language-aware titles.
"""
from __future__ import annotations

import hashlib
import io
from urllib.parse import urlsplit

from flask import Blueprint, Response, jsonify, request, send_file

from bot.i18n import LANGUAGES
from bot.web.api_titles import localised_title
from bot.lane import WaitLane
from bot.web.page_jobs import PageJob, PageJobError, PageJobs, download_name, upload_stem
from bot.web.page_presets import (MAX_ZIP_JOBS, PageRequest, PresetRequestError, file_stem, files_zip,
                                  read_page_request, sticker_zip)
from bot.ratelimit import SlidingWindowLimiter
from bot.web.api import ApiError, as_api_error, error_response, has_page_pass, pick_source, read_input_image
from pipeline.cutout import CutoutOptions, Pipeline
from pipeline.stats import Metrics
from pipeline.worker import PipelineWorker
from settings import Settings
from storage.files import BlobNotFound
from storage.urls import UrlSigner


def add_page_routes(blueprint: Blueprint, settings: Settings, pipeline: Pipeline, worker: PipelineWorker,
                    metrics: Metrics, options: CutoutOptions, lane: WaitLane, signer: UrlSigner,
                    page_limiter: SlidingWindowLimiter) -> None:
    holder: dict[str, PageJobs] = {}

    @blueprint.record_once
    def attach(state) -> None:
        # The app's blob store (whichever backend it is), known once the blueprint is registered.
        shared = state.app.extensions["cutout"]
        holder["jobs"] = shared["page_jobs"] = PageJobs(settings, pipeline, worker, options, shared["blobs"], metrics,
                                                        shared.get("jobs"))
        conversation = shared.get("conversation")
        holder["links"] = getattr(conversation, "edit_links", None)  # the chat's editor links serve the page too

    def visitor() -> str:
        """The page's visitor id for the quota; 403 without the page's pass."""
        if not has_page_pass(signer):
            raise ApiError(403, "This page has expired; reload it", "auth_failed")
        return f"page:{request.remote_addr}"

    def counted(client: str) -> None:
        if not page_limiter.allow(client):
            raise ApiError(429, "Rate limit exceeded", "rate_limit_exceeded", page_limiter.retry_after(client))

    def failure(error: Exception):
        if isinstance(error, PageJobError):
            error = ApiError(error.status, error.title, error.code)
        if isinstance(error, PresetRequestError):
            error = ApiError(400, error.title, error.code)
        api_error = as_api_error(error, lane)
        if api_error is None:
            raise error
        metrics.count("page", api_error.code)
        return error_response(api_error)

    def job_or_404(job_id: str) -> PageJob:
        job = holder["jobs"].get(job_id)
        if job is None:
            raise ApiError(404, "No such photo: it has expired or never existed; send it again", "job_not_found")
        return job

    def finished(job_id: str) -> PageJob:
        job = job_or_404(job_id)
        if job.state != "done":
            raise ApiError(409, "The cutout is not ready", "not_ready")
        return job

    @blueprint.post("/page/jobs")
    def submit_page_job():
        try:
            counted(visitor())
            with lane.enter():  # the upload is read and decoded inside the lane, like the API's
                values = request.values.to_dict()
                source = pick_source(values)
                data = read_input_image(settings, source)
                job = holder["jobs"].submit(data, source_name(source), pass_owner())
        except Exception as error:  # noqa: BLE001 - failure() re-raises what is not an API error
            return failure(error)
        return jsonify(holder["jobs"].status(job)), 202

    @blueprint.get("/page/jobs/<job_id>")
    def page_job_status(job_id: str):
        try:
            job = job_or_404(job_id)
        except ApiError as error:
            return error_response(error)
        body = holder["jobs"].status(job)
        if job.error:
            body["errors"] = [{"title": localised_title(job.error["code"], job.error["title"]),
                               "code": job.error["code"]}]
            body["status"] = job.error["status"]
        response = jsonify(body)
        response.headers["Cache-Control"] = "no-store"
        return response

    @blueprint.post("/page/jobs/<job_id>/edit")
    def page_job_edit(job_id: str):
        """The editor's signed link for this page's photo; only the page that sent it is given one."""
        try:
            visitor()
            job = finished(job_id)
            if job.owner != pass_owner():
                raise ApiError(403, "This photo was sent from another page", "not_yours")
            record = holder["jobs"].editable(job)
            body = request.get_json(silent=True)
            wanted = body.get("lang") if isinstance(body, dict) else None
            language = wanted if wanted in LANGUAGES else settings.default_language
            url = holder["links"].url(record.id, language) if record is not None and holder["links"] else None
            if url is None:
                raise ApiError(410, "This photo has expired; send it again", "expired")
        except Exception as error:  # noqa: BLE001
            return failure(error)
        response = jsonify(url=url)
        response.headers["Cache-Control"] = "no-store"
        return response

    @blueprint.get("/page/jobs/<job_id>/original.jpg")
    def page_job_original(job_id: str):
        try:
            data = holder["jobs"].original(job_or_404(job_id))
        except BlobNotFound:
            return error_response(ApiError(410, "This photo has expired; send it again", "expired"))
        except ApiError as error:
            return error_response(error)
        return image_response(data, "image/jpeg")

    def preset_request(job: PageJob, values: dict) -> PageRequest:
        return read_page_request(values, lambda choice: holder["jobs"].background(job, choice))

    @blueprint.get("/page/jobs/<job_id>/view")
    def page_job_view(job_id: str):
        try:
            job = finished(job_id)
            if request.args.get("preset", "original") != "original":  # the picker's live preview
                rendered = holder["jobs"].render_preset(job, preset_request(job, request.args.to_dict()), preview=True)
                return image_response(rendered.data, rendered.content_type)
            choice = request.args.get("bg", "transparent")
            fmt = "png" if choice == "transparent" else "jpg"
            data, content_type = holder["jobs"].render(job, choice, fmt, full=False)
        except BlobNotFound:
            return error_response(ApiError(410, "This photo has expired; send it again", "expired"))
        except Exception as error:  # noqa: BLE001
            return failure(error)
        return image_response(data, content_type)

    @blueprint.get("/page/jobs/<job_id>/download")
    def page_job_download(job_id: str):
        if request.args.get("preset", "original") != "original":
            return page_job_preset_download(job_id)
        try:
            job = finished(job_id)
            choice = request.args.get("bg", "transparent")
            fmt = request.args.get("format", "png" if choice == "transparent" else "jpg").lower()
            if fmt not in ("png", "jpg"):
                raise ApiError(400, f"Invalid format {fmt[:40]!r}: png or jpg", "invalid_format")
            with lane.enter():  # full-size renders hold a few copies of the photo: bounded like API work
                data, content_type = holder["jobs"].render(job, choice, fmt, full=True)
        except BlobNotFound:
            return error_response(ApiError(410, "This photo has expired; send it again", "expired"))
        except Exception as error:  # noqa: BLE001
            return failure(error)
        response = send_file(io.BytesIO(data), mimetype=content_type, as_attachment=True,
                             download_name=download_name(job.name, choice, fmt), max_age=0)
        response.headers["Cache-Control"] = "private, max-age=3600"
        return response

    def page_job_preset_download(job_id: str):
        try:
            job = finished(job_id)
            asked = preset_request(job, request.args.to_dict())
            with lane.enter():
                data, content_type, extension = preset_file(job, asked)
        except BlobNotFound:
            return error_response(ApiError(410, "This photo has expired; send it again", "expired"))
        except Exception as error:  # noqa: BLE001
            return failure(error)
        return attachment(data, content_type, f"{file_stem(job.name, asked)}.{extension}")

    def preset_file(job: PageJob, asked: PageRequest) -> tuple[bytes, str, str]:
        """-> (data, content type, extension): a sticker is LINE's set of three files in a ZIP."""
        if asked.name == "sticker":
            return sticker_zip([holder["jobs"].sticker_files(job)]), "application/zip", "zip"
        if asked.preset is None:
            choice = asked.bg or "transparent"
            fmt = asked.fmt if asked.fmt != "auto" else "png" if choice == "transparent" else "jpg"
            data, content_type = holder["jobs"].render(job, choice, fmt, full=True)
            return data, content_type, fmt
        rendered = holder["jobs"].render_preset(job, asked, preview=False)
        return rendered.data, rendered.content_type, rendered.extension

    @blueprint.post("/page/zip")
    def page_zip():
        """Several photos of this page in one preset, as one ZIP (LINE's set layout for stickers)."""
        try:
            visitor()
            values = request.get_json(silent=True)
            if not isinstance(values, dict) or not isinstance(values.get("ids"), list) or not values["ids"]:
                raise ApiError(400, "Send a JSON object with ids: the photos to bundle", "missing_ids")
            ids = list(dict.fromkeys(str(job_id) for job_id in values["ids"]))
            if len(ids) > MAX_ZIP_JOBS:
                raise ApiError(400, f"At most {MAX_ZIP_JOBS} photos in one ZIP", "too_many_ids")
            owner = pass_owner()
            jobs = [finished(job_id) for job_id in ids]
            if any(job.owner != owner for job in jobs):  # ids from another page (or leaked) are never bundled
                raise ApiError(403, "Only the photos sent from this page can be bundled", "not_your_photo")
            settings_of = {key: str(value) for key, value in values.items() if key != "ids" and value is not None}
            asked = [preset_request(job, settings_of) for job in jobs]
            with lane.enter():
                if asked[0].name == "sticker":
                    data = sticker_zip([holder["jobs"].sticker_files(job) for job in jobs])
                else:
                    entries = []
                    for job, each in zip(jobs, asked):
                        content, _, extension = preset_file(job, each)
                        entries.append((f"{file_stem(job.name, each)}.{extension}", content))
                    data = files_zip(entries)
        except BlobNotFound:
            return error_response(ApiError(410, "A photo has expired; send it again", "expired"))
        except Exception as error:  # noqa: BLE001
            return failure(error)
        name = "line-stickers.zip" if asked[0].name == "sticker" else f"cutouts-{len(jobs)}.zip"
        return attachment(data, "application/zip", name)

    @blueprint.post("/page/jobs/<job_id>/background")
    def page_job_background(job_id: str):
        try:
            counted(visitor())
            job = finished(job_id)
            upload = request.files.get("image_file")
            if upload is None or upload.filename == "":
                raise ApiError(400, "No image given: send image_file", "missing_source")
            with lane.enter():
                background = holder["jobs"].add_background(job, read_input_image(settings, ("file", upload)))
        except Exception as error:  # noqa: BLE001
            return failure(error)
        return jsonify(bg=background)


def source_name(source: tuple[str, object]) -> str:
    kind, value = source
    if kind == "file":
        return upload_stem(value.filename)
    if kind == "url":
        return upload_stem(urlsplit(str(value)).path)
    return "photo"


def image_response(data: bytes, content_type: str) -> Response:
    response = Response(data, mimetype=content_type)
    response.headers["Cache-Control"] = "private, max-age=3600"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def pass_owner() -> str:
    """A digest of the page pass this request carries: the jobs it sends belong to that page."""
    return hashlib.sha256(request.headers.get("X-Page-Token", "").encode()).hexdigest()[:32]


def attachment(data: bytes, content_type: str, name: str) -> Response:
    response = send_file(io.BytesIO(data), mimetype=content_type, as_attachment=True, download_name=name, max_age=0)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response
