"""The web page (GET /) and the remove.bg-shaped HTTP API (POST /api/v1/removebg).

The API runs on the same pipeline thread as the chat bots: a request waits for its turn, and a
full queue answers 503 at once. Errors use remove.bg's shape: {"errors": [{"title", "code"}]}.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from flask import Blueprint, Response, jsonify, request, send_from_directory

from bot.backgrounds import BACKDROPS, backdrop
from bot.fetch import FetchError, fetch_url
from pipeline import compose
from pipeline.cutout import CutoutOptions, Pipeline
from pipeline.decode import ImageDecodeError, decode_image
from pipeline.render import Background, encode_jpeg, render
from pipeline.stats import Metrics
from pipeline.worker import PipelineWorker, QueueFull
from settings import Settings

STATIC_DIR = Path(__file__).resolve().parent / "static"
PREVIEW_PIXELS = 625 * 400  # remove.bg's "preview" size: up to 0.25 megapixels
SIZE_VALUES = {"auto", "preview", "small", "regular", "medium", "hd", "full", "4k", "50mp"}
API_TIMEOUT_S = 180


class ApiError(Exception):
    def __init__(self, status: int, title: str, code: str) -> None:
        super().__init__(title)
        self.status, self.title, self.code = status, title, code


def error_response(error: ApiError) -> tuple[Response, int]:
    return jsonify(errors=[{"title": error.title, "code": error.code}]), error.status


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


class SlidingWindowLimiter:
    """At most `limit` calls per `window_s` per client; in memory (a limit need not survive restarts)."""

    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        self.limit, self.window_s = limit, window_s
        self.calls: dict[str, deque[float]] = defaultdict(deque)
        self.lock = threading.Lock()

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        with self.lock:
            calls = self.calls[client]
            while calls and calls[0] < now - self.window_s:
                calls.popleft()
            if len(calls) >= self.limit:
                return False
            calls.append(now)
            return True


def web_blueprint(settings: Settings, pipeline: Pipeline, worker: PipelineWorker, metrics: Metrics,
                  options: CutoutOptions) -> Blueprint:
    blueprint = Blueprint("web", __name__)
    limiter = SlidingWindowLimiter(settings.api_rate_limit)

    @blueprint.get("/")
    def page():
        return send_from_directory(STATIC_DIR, "index.html")

    @blueprint.get("/static/<path:name>")
    def static_file(name: str):
        return send_from_directory(STATIC_DIR, name)

    @blueprint.get("/backdrops/<name>.jpg")
    def backdrop_image(name: str):
        if name not in BACKDROPS:
            return jsonify(errors=[{"title": "Unknown backdrop", "code": "not_found"}]), 404
        response = Response(encode_jpeg(backdrop(name), quality=88), mimetype="image/jpeg")
        response.headers["Cache-Control"] = "public, max-age=86400"
        return response

    @blueprint.get("/api/v1/openapi.json")
    def openapi():
        return jsonify(openapi_document(settings))

    @blueprint.post("/api/v1/removebg")
    def removebg():
        try:
            client = authorise(settings)
            if not limiter.allow(client):
                raise ApiError(429, "Rate limit exceeded", "rate_limit_exceeded")
            data = read_input_image(settings)
            params = read_params()
            background = read_background(settings)
            image = decode_image(data, settings.max_image_bytes, settings.max_image_pixels)
            image = downscale_for_size(image, params["size"])
            future = worker.submit_batchable("cutout", image, lambda images: pipeline.cutout_batch(images, options), "api")
            result = future.result(timeout=API_TIMEOUT_S)
            rendered, timings = render_result(result, params, background), result.timings
        except ApiError as error:
            metrics.count("api", error.code)
            return error_response(error)
        except ImageDecodeError as error:
            metrics.count("api", error.reason)
            status = {"too_large": 413, "too_many_pixels": 413, "unsupported": 415}.get(error.reason, 400)
            return error_response(ApiError(status, str(error), error.reason))
        except QueueFull:
            metrics.count("api", "queue_full")
            return error_response(ApiError(503, "Too many images are queued; retry shortly", "queue_full"))
        except FutureTimeout:
            metrics.count("api", "timeout")
            return error_response(ApiError(503, "Processing took too long; retry shortly", "timeout"))
        metrics.count("api", "finished")
        metrics.observe(timings)
        headers = {"X-Width": str(rendered.width), "X-Height": str(rendered.height), "X-Type": "auto"}
        if "application/json" in request.headers.get("Accept", ""):
            return jsonify(data={"result_b64": base64.b64encode(rendered.data).decode("ascii"),
                                 "content_type": rendered.content_type}), 200, headers
        return Response(rendered.data, mimetype=rendered.content_type, headers=headers)

    return blueprint


def authorise(settings: Settings) -> str:
    """-> a client id for rate limiting; raises 403 when keys are configured and none matches."""
    given = request.headers.get("X-Api-Key", "")
    if settings.api_keys:
        if not any(hmac.compare_digest(given.encode(), key.encode()) for key in settings.api_keys):
            raise ApiError(403, "Missing or invalid API key (X-Api-Key)", "auth_failed")
        return f"key:{given}"
    return f"ip:{request.remote_addr}"


def form_values() -> dict:
    """Parameters from a form (multipart / urlencoded) or a JSON body, as remove.bg accepts both."""
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, "The JSON body must be an object", "invalid_json")
        return {key: ("true" if value is True else "false" if value is False else str(value))
                for key, value in body.items() if value is not None}
    return request.values.to_dict()


def read_input_image(settings: Settings) -> bytes:
    upload = request.files.get("image_file")
    if upload is not None and upload.filename != "":
        data = upload.read(settings.max_image_bytes + 1)
        if len(data) > settings.max_image_bytes:
            raise ApiError(413, f"File too large (limit {settings.max_image_bytes // 1_000_000} MB)", "file_too_large")
        return data
    encoded = form_values().get("image_file_b64")
    if encoded:
        try:
            return base64.b64decode(encoded.split(",", 1)[-1], validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "image_file_b64 is not valid base64", "invalid_b64") from None
    url = form_values().get("image_url")
    if url:
        return fetch_or_error(url, settings)
    raise ApiError(400, "No image given: send image_file, image_file_b64 or image_url", "missing_source")


def fetch_or_error(url: str, settings: Settings) -> bytes:
    try:
        return fetch_url(url, settings.max_image_bytes, settings.fetch_timeout_s, settings.fetch_allowlist)
    except FetchError as error:
        status = 413 if error.reason == "too_large" else 400
        raise ApiError(status, f"Failed to download image_url: {error}", f"url_{error.reason}") from None


def read_params() -> dict:
    values = form_values()
    size = values.get("size", "auto").lower()
    fmt = values.get("format", "auto").lower()
    channels = values.get("channels", "rgba").lower()
    if size not in SIZE_VALUES:
        raise ApiError(400, f"Invalid size {size!r}: preview, full or auto", "invalid_size")
    if fmt not in ("png", "jpg", "auto"):
        raise ApiError(400, f"Invalid format {fmt!r}: png, jpg or auto", "invalid_format")
    if channels not in ("rgba", "alpha"):
        raise ApiError(400, f"Invalid channels {channels!r}: rgba or alpha", "invalid_channels")
    margin_text = values.get("crop_margin", "0").strip()
    try:
        margin = float(margin_text[:-1]) / 100 if margin_text.endswith("%") else float(margin_text.removesuffix("px"))
    except ValueError:
        raise ApiError(400, f"Invalid crop_margin {margin_text!r}", "invalid_crop_margin") from None
    if margin < 0 or (margin_text.endswith("%") and margin > 0.5):
        raise ApiError(400, "crop_margin out of range", "invalid_crop_margin")
    return {"size": size, "format": fmt, "channels": channels, "crop": truthy(values.get("crop")),
            "crop_margin": margin if margin_text != "0" else 0.0, "shadow": truthy(values.get("add_shadow"))}


def read_background(settings: Settings) -> Background | None:
    color = form_values().get("bg_color")
    upload = request.files.get("bg_image_file")
    url = form_values().get("bg_image_url")
    try:
        if upload is not None and upload.filename != "":
            return Background("image", image=decode_image(upload.read(settings.max_image_bytes + 1),
                                                          settings.max_image_bytes, settings.max_image_pixels))
        if url:
            return Background("image", image=decode_image(fetch_or_error(url, settings), settings.max_image_bytes,
                                                          settings.max_image_pixels))
    except ImageDecodeError as error:
        raise ApiError(400, f"Invalid background image: {error}", "invalid_bg_image") from None
    if color:
        try:
            return Background("color", color=compose.parse_color(color))
        except ValueError:
            raise ApiError(400, f"Invalid bg_color {color!r}", "invalid_bg_color") from None
    return None


def downscale_for_size(image, size: str):
    """remove.bg's size=preview (and its small/regular aliases): at most 0.25 megapixels."""
    if size not in ("preview", "small", "regular"):
        return image
    height, width = image.shape[:2]
    scale = (PREVIEW_PIXELS / (height * width)) ** 0.5
    if scale >= 1:
        return image
    from pipeline.segment import resize_float

    return resize_float(image, max(1, round(width * scale)), max(1, round(height * scale)))


def render_result(result, params: dict, background: Background | None):
    if params["channels"] == "alpha":
        background = Background("mask")
    return render(result, background or Background("transparent"), fmt=params["format"],
                  crop=params["crop"], crop_margin=params["crop_margin"] or 0.0, shadow=params["shadow"])


def openapi_document(settings: Settings) -> dict:
    string = {"type": "string"}
    properties = {
        "image_file": {"type": "string", "format": "binary", "description": "The photo (JPEG, PNG, WebP, HEIC)"},
        "image_file_b64": {**string, "description": "The photo, base64-encoded"},
        "image_url": {**string, "description": "https URL of the photo"},
        "size": {"type": "string", "enum": ["auto", "preview", "full"], "default": "auto"},
        "format": {"type": "string", "enum": ["auto", "png", "jpg"], "default": "auto"},
        "channels": {"type": "string", "enum": ["rgba", "alpha"], "default": "rgba"},
        "bg_color": {**string, "description": "hex (81d4fa, #ff8800) or colour name"},
        "bg_image_file": {"type": "string", "format": "binary"},
        "bg_image_url": string,
        "crop": {"type": "boolean", "default": False},
        "crop_margin": {**string, "description": "px (30, 30px) or percent (10%)", "default": "0"},
        "add_shadow": {"type": "boolean", "default": False},
    }
    error = {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Cutout Bot API", "version": "1.0.0",
                 "description": "Background removal with hair-level matting, remove.bg-compatible parameters."},
        "servers": [{"url": settings.public_base_url}],
        "paths": {"/api/v1/removebg": {"post": {
            "summary": "Remove the background of an image",
            "parameters": [{"name": "X-Api-Key", "in": "header", "required": bool(settings.api_keys), "schema": string}],
            "requestBody": {"required": True, "content": {
                "multipart/form-data": {"schema": {"type": "object", "properties": properties}},
                "application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": {
                    k: v for k, v in properties.items() if v.get("format") != "binary"}}},
                "application/json": {"schema": {"type": "object", "properties": {
                    k: v for k, v in properties.items() if v.get("format") != "binary"}}}}},
            "responses": {
                "200": {"description": "The result image (or JSON with result_b64 when Accept: application/json)",
                        "content": {"image/png": {}, "image/jpeg": {}, "application/json": {"schema": {
                            "type": "object", "properties": {"data": {"type": "object", "properties": {
                                "result_b64": string, "content_type": string}}}}}}},
                "400": error, "403": error, "413": error, "415": error, "429": error, "503": error}}}},
        "components": {"schemas": {"Errors": {"type": "object", "properties": {"errors": {"type": "array", "items": {
            "type": "object", "properties": {"title": string, "code": string}}}}}}},
    }
