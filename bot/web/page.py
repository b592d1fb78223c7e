"""The web page's own routes: submit a photo, follow its progress, preview, composites, downloads.

    POST /page/jobs                      image_file | image_url -> 202 {id, state, position, ...}
    GET  /page/jobs/<id>                 {state: queued|segmenting|refining|saving|done|failed,
                                          position (photos ahead, while queued), errors (when failed)}
    GET  /page/jobs/<id>/original.jpg    the upload as a JPEG (HEIC and other formats browsers cannot show)
    GET  /page/jobs/<id>/view?bg=        the cutout at display size on a background (PNG when transparent)
    GET  /page/jobs/<id>/download?bg=&format=png|jpg   the full-size file, named after the upload
    POST /page/jobs/<id>/background      image_file -> {bg: "own-<hash>"}: the visitor's own background

Writes need the page's signed pass (X-Page-Token) and count against the page's per-visitor quota
(CUTOUT_PAGE_RATE_LIMIT, shared with the page's use of the API); reads need the job id, a random
128-bit value only its page knows. Errors have the API's shape and Accept-Language-aware titles.
"""
from __future__ import annotations

import io
from urllib.parse import urlsplit

from flask import Blueprint, Response, jsonify, request, send_file

from bot.web.api_titles import localised_title
from bot.lane import WaitLane
from bot.web.page_jobs import PageJob, PageJobError, PageJobs, download_name, upload_stem
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
        holder["jobs"] = shared["page_jobs"] = PageJobs(settings, pipeline, worker, options, shared["blobs"], metrics)

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
                job = holder["jobs"].submit(data, source_name(source))
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

    @blueprint.get("/page/jobs/<job_id>/original.jpg")
    def page_job_original(job_id: str):
        try:
            data = holder["jobs"].original(job_or_404(job_id))
        except BlobNotFound:
            return error_response(ApiError(410, "This photo has expired; send it again", "expired"))
        except ApiError as error:
            return error_response(error)
        return image_response(data, "image/jpeg")

    @blueprint.get("/page/jobs/<job_id>/view")
    def page_job_view(job_id: str):
        try:
            job = finished(job_id)
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
