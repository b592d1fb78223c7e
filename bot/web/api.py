"""The web page (GET /) and the remove.bg-shaped HTTP API (POST /api/v1/removebg).

The page's own routes (photo jobs with progress, previews, server-rendered composites and
downloads) are in bot/web/page.py and bot/web/page_jobs.py; they share this module's validation and errors.

The API runs on the same pipeline thread as the chat bots: a request waits for its turn inside a
bounded lane (bot/lane.py), and a full lane or a full queue answers 503 + Retry-After at once.
Every parameter is validated before any download, decode or model work. Errors use remove.bg's
shape: {"errors": [{"title", "code"}]}.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import math
import secrets
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from html import escape as html_escape
from pathlib import Path

from flask import Blueprint, Response, jsonify, request, send_from_directory

from bot.web.api_outputs import ParameterError, read_output_params
from bot.web.api_titles import localised_title
from bot.backgrounds import BACKDROPS, backdrop
from bot.fetch import FetchError, fetch_url
from bot.lane import LaneFull, WaitLane
from bot.ratelimit import SlidingWindowLimiter
from pipeline.outputs import compose
from pipeline.cutout import CutoutOptions, Pipeline
from pipeline.decode import ImageDecodeError, decode_image, format_megabytes
from pipeline.outputs.presets import render_preset
from pipeline.outputs.region import back_on_photo, moved_subject, roi_box
from pipeline.outputs.render import Background, encode_jpeg, render
from pipeline.stats import Metrics
from pipeline.worker import PipelineWorker, QueueFull, result_or_cancel
from settings import Settings
from storage.urls import InvalidToken, UrlSigner

STATIC_DIR = Path(__file__).resolve().parent / "static"
PREVIEW_PIXELS = 625 * 400  # remove.bg's "preview" size: up to 0.25 megapixels
SIZE_VALUES = {"auto", "preview", "small", "regular", "medium", "hd", "full", "4k", "50mp"}
API_TIMEOUT_S = 180


class ApiError(Exception):
    def __init__(self, status: int, title: str, code: str, retry_after: int | None = None,
                 detail: str | None = None) -> None:
        super().__init__(title)
        self.status, self.title, self.code, self.retry_after = status, title, code, retry_after
        self.detail = detail  # remove.bg's optional third field: which parameter, and what it takes


def as_api_error(error: Exception, lane: WaitLane) -> ApiError | None:
    """The API's answer to a failure while serving a request (None: not one of ours, a 500)."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, LaneFull):
        return ApiError(503, "Too many API requests in progress; retry shortly", "busy", lane.retry_after_s)
    if isinstance(error, ImageDecodeError):
        status = {"too_large": 413, "too_many_pixels": 413, "unsupported": 415}.get(error.reason, 400)
        return ApiError(status, str(error), error.reason)
    if isinstance(error, QueueFull):
        return ApiError(503, "Too many images are queued; retry shortly", "queue_full", lane.retry_after_s)
    if isinstance(error, FutureTimeout):
        return ApiError(503, "Processing took too long; retry shortly", "timeout", lane.retry_after_s)
    return None


def error_response(error: ApiError) -> tuple[Response, int]:
    entry = {"title": localised_title(error.code, error.title), "code": error.code}
    response = jsonify(errors=[{**entry, "detail": error.detail} if error.detail else entry])
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(error.retry_after)
    return response, error.status


BOOLEAN_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False,
                 "off": False, "": False}


def boolean(values: dict, name: str) -> bool:
    word = values.get(name, "").strip().lower()
    if word not in BOOLEAN_WORDS:
        raise ApiError(400, f"Invalid {name} {word[:40]!r}: true or false", f"invalid_{name}")
    return BOOLEAN_WORDS[word]


# The page's pass: what it signs and how long a loaded page may keep using it.
PAGE_TOKEN_KEY = "page-pass"
PAGE_TOKEN_TTL_S = 6 * 3600


def web_blueprint(settings: Settings, pipeline: Pipeline, worker: PipelineWorker, metrics: Metrics,
                  options: CutoutOptions, lane: WaitLane, signer: UrlSigner) -> Blueprint:
    blueprint = Blueprint("web", __name__)
    limiter = SlidingWindowLimiter(settings.api_rate_limit)
    page_limiter = SlidingWindowLimiter(settings.page_rate_limit)
    # Link previews (LINE, Messenger, Facebook) need absolute URLs: the public base URL, set once.
    page_html = ((STATIC_DIR / "index.html").read_text(encoding="utf-8")
                 .replace("__PUBLIC_BASE_URL__", html_escape(settings.public_base_url))
                 .replace("__MAX_MB__", format_megabytes(settings.max_image_bytes))
                 .replace("__RESULT_DAYS__", str(max(1, settings.result_ttl_s // 86400))))

    @blueprint.get("/")
    def page():
        # A signed, expiring pass in the page itself: with CUTOUT_API_KEYS set the API still serves
        # the page's visitors (each with its own quota) without handing them a key.
        # A random part makes each page load's pass its own: photos bundled into a ZIP must come
        # from the same pass, so two visitors loading the page in the same second stay apart.
        token = signer.sign(f"{PAGE_TOKEN_KEY}:{secrets.token_urlsafe(12)}", ttl_s=PAGE_TOKEN_TTL_S)
        html = page_html.replace('name="cutout-page-token" content=""', f'name="cutout-page-token" content="{token}"', 1)
        response = Response(html, mimetype="text/html")
        response.headers["Cache-Control"] = "no-store"  # the pass expires
        return response

    @blueprint.get("/static/<path:name>")
    def static_file(name: str):
        return send_from_directory(STATIC_DIR, name, max_age=3600)

    @blueprint.get("/favicon.ico")
    def favicon():
        return send_from_directory(STATIC_DIR, "favicon.ico", max_age=86400)

    from bot.web.page import add_page_routes  # here: bot.page builds on this module's helpers

    add_page_routes(blueprint, settings, pipeline, worker, metrics, options, lane, signer, page_limiter)

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
            client = authorise(settings, signer)
            quota = page_limiter if client.startswith("page:") else limiter
            if not quota.allow(client):
                raise ApiError(429, "Rate limit exceeded", "rate_limit_exceeded", quota.retry_after(client))
            # The lane is entered before the body is read: slow uploads, decoding and the wait for
            # the pipeline all count against it, so API requests can never hold every server thread.
            with lane.enter():
                rendered, timings = cut_out_request(settings, pipeline, worker, options)
        except (LaneFull, ApiError, ImageDecodeError, QueueFull, FutureTimeout) as error:
            api_error = as_api_error(error, lane)
            metrics.count("api", "lane_full" if isinstance(error, LaneFull) else api_error.code)
            return error_response(api_error)
        metrics.count("api", "finished")
        metrics.observe(timings)
        return image_response(rendered)

    from bot.web.refine import add_refine_route  # builds on this module's helpers

    add_refine_route(blueprint, settings, pipeline, worker, metrics, options, lane, signer, limiter, page_limiter)
    return blueprint


def image_response(rendered) -> Response | tuple:
    """The image as remove.bg answers it: raw bytes, or JSON with base64 when the client asks; the
    result's size, where the subject lies in it, and the credits charged (none: there are no credits)."""
    headers = {"X-Width": str(rendered.width), "X-Height": str(rendered.height), "X-Type": "auto",
               "X-Credits-Charged": "0"}
    placement = foreground_placement(rendered)
    headers.update({f"X-Foreground-{name.title()}": str(value) for name, value in placement.items()})
    if "application/json" in request.headers.get("Accept", ""):
        return jsonify(data={"result_b64": base64.b64encode(rendered.data).decode("ascii"),
                             "content_type": rendered.content_type,
                             **{f"foreground_{name}": value for name, value in placement.items()}}), 200, headers
    return Response(rendered.data, mimetype=rendered.content_type, headers=headers)


def foreground_placement(rendered) -> dict[str, int]:
    """{top, left, width, height} of the subject in the result image, in its pixels ({} if unknown)."""
    box = rendered.foreground
    if box is None:
        return {}
    return {side: getattr(box, side) for side in FOREGROUND_SIDES}


def cut_out_request(settings: Settings, pipeline: Pipeline, worker: PipelineWorker, options: CutoutOptions):
    """Validate everything, then download/decode, then wait for the pipeline; -> (rendered, timings)."""
    values = form_values()
    params = read_params(values)  # every parameter checked before any download or model work
    source = pick_source(values)
    data = read_input_image(settings, source)
    background = read_background(settings, values)
    image = decode_image(data, settings.max_image_bytes, settings.max_image_pixels)
    decoded_shape = image.shape[:2]
    image = downscale_for_size(image, params["size"])
    photo, roi = image, photo_roi(params["outputs"].roi, decoded_shape, image.shape[:2])
    image = roi.apply(image) if roi else image  # the model sees the region of interest alone
    future = worker.submit_batchable("cutout", image, lambda images: pipeline.start_cutout_batch(images, options), "api")
    result = result_or_cancel(future, API_TIMEOUT_S)
    if not result.subject_found:
        # remove.bg's answer for a photo without a foreground: a 400, not an empty transparent PNG.
        raise ApiError(400, "Could not identify foreground in image: send a photo with a clear subject "
                            "(a product, a person, a pet)", "unknown_foreground")
    if roi:
        result = back_on_photo(result, photo, roi)
    return render_result(result, params, background), result.timings


def authorise(settings: Settings, signer: UrlSigner) -> str:
    """-> a client id for rate limiting; raises 403 when keys are configured and none matches.

    The page's visitors carry the page's signed pass instead of a key (client id "page:<address>").
    """
    given = request.headers.get("X-Api-Key", "")
    if settings.api_keys and any(hmac.compare_digest(given.encode(), key.encode()) for key in settings.api_keys):
        return f"key:{given}"
    if has_page_pass(signer):
        return f"page:{request.remote_addr}"
    if settings.api_keys:
        raise ApiError(403, "Missing or invalid API key (X-Api-Key)", "auth_failed")
    return f"ip:{request.remote_addr}"


def has_page_pass(signer: UrlSigner) -> bool:
    token = request.headers.get("X-Page-Token", "")
    if not token:
        return False
    try:
        return signer.verify(token).startswith(PAGE_TOKEN_KEY + ":")
    except InvalidToken:
        return False


def form_values() -> dict:
    """Parameters from a form (multipart / urlencoded) or a JSON body, as remove.bg accepts both."""
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, "The JSON body must be an object", "invalid_json")
        return {key: ("true" if value is True else "false" if value is False else str(value))
                for key, value in body.items() if value is not None}
    return request.values.to_dict()


def pick_source(values: dict) -> tuple[str, object]:
    """Which of image_file / image_file_b64 / image_url was sent (checked before any download)."""
    upload = request.files.get("image_file")
    if upload is not None and upload.filename != "":
        return "file", upload
    if values.get("image_file_b64"):
        return "b64", values["image_file_b64"]
    if values.get("image_url"):
        return "url", values["image_url"]
    raise ApiError(400, "No image given: send image_file, image_file_b64 or image_url", "missing_source")


def read_input_image(settings: Settings, source: tuple[str, object]) -> bytes:
    kind, value = source
    limit = settings.max_image_bytes
    if kind == "file":
        data = value.read(limit + 1)
        if len(data) > limit:
            raise ApiError(413, f"File too large (limit {format_megabytes(limit)})", "file_too_large")
        return data
    if kind == "b64":
        try:
            data = base64.b64decode(value.split(",", 1)[-1], validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "image_file_b64 is not valid base64", "invalid_b64") from None
        if len(data) > limit:
            raise ApiError(413, f"File too large (limit {format_megabytes(limit)})", "file_too_large")
        return data
    return fetch_or_error(value, settings, "image_url")


def fetch_or_error(url: str, settings: Settings, field: str) -> bytes:
    try:
        return fetch_url(url, settings.max_image_bytes, settings.fetch_timeout_s, settings.fetch_allowlist)
    except FetchError as error:
        status = 413 if error.reason == "too_large" else 400
        prefix = {"image_url": "url", "bg_image_url": "bg_url"}[field]
        raise ApiError(status, f"Failed to download {field}: {error}", f"{prefix}_{error.reason}") from None


MAX_MARGIN_PX = 500  # remove.bg's limits: 500 px, or 50 % of the subject box
MAX_MARGIN_FRACTION = 0.5


def read_params(values: dict) -> dict:
    size = values.get("size", "auto").lower()
    fmt = values.get("format", "auto").lower()
    channels = values.get("channels", "rgba").lower()
    if size not in SIZE_VALUES:
        raise ApiError(400, f"Invalid size {size[:40]!r}: preview, full or auto", "invalid_size")
    if fmt not in ("png", "jpg", "auto"):
        raise ApiError(400, f"Invalid format {fmt[:40]!r}: png, jpg or auto", "invalid_format")
    if channels not in ("rgba", "alpha"):
        raise ApiError(400, f"Invalid channels {channels[:40]!r}: rgba or alpha", "invalid_channels")
    color = values.get("bg_color")
    if color:
        try:
            compose.parse_color(color)
        except ValueError:
            raise ApiError(400, f"Invalid bg_color {color[:40]!r}", "invalid_bg_color") from None
    crop = boolean(values, "crop")
    has_background = bool(color or values.get("bg_image_url") or request.files.get("bg_image_file"))
    try:
        outputs = read_output_params(values, set(request.files), crop, fmt, has_background, channels == "alpha")
    except ParameterError as error:
        raise ApiError(400, error.title, error.code, detail=error.detail) from None
    return {"size": size, "format": fmt, "channels": channels, "crop": crop, "outputs": outputs,
            "crop_margin": read_margin(values.get("crop_margin", "0")), "shadow": boolean(values, "add_shadow")}


def photo_roi(roi, decoded: tuple[int, int], shape: tuple[int, int]) -> compose.Box | None:
    """The region of interest (pixels of the photo as sent) on the photo as cut out (size=preview shrinks it)."""
    if roi is None:
        return None
    try:
        box = roi_box(roi, decoded[1], decoded[0])
    except ValueError as error:
        raise ApiError(400, f"Invalid roi: {error}", "invalid_roi", detail=f"roi: {error}") from None
    fy, fx = shape[0] / decoded[0], shape[1] / decoded[1]
    return compose.Box(round(box.top * fy), round(box.left * fx), max(round(box.bottom * fy), round(box.top * fy) + 1),
                       max(round(box.right * fx), round(box.left * fx) + 1))


def read_margin(text: str) -> float:
    """'30', '30px' -> pixels (an int >= 1 or 0); '10%' -> a fraction of the subject box (< 1)."""
    text = text.strip().lower()
    percent = text.endswith("%")
    try:
        number = float(text[:-1] if percent else text.removesuffix("px"))
    except ValueError:
        raise ApiError(400, f"Invalid crop_margin {text[:40]!r}: e.g. 30px or 10%", "invalid_crop_margin") from None
    # float() accepts 'nan', 'inf' and '1e400' (= inf): refuse them here, before any model work.
    limit = MAX_MARGIN_FRACTION * 100 if percent else MAX_MARGIN_PX
    if not math.isfinite(number) or not 0 <= number <= limit:
        raise ApiError(400, f"crop_margin must be 0..{limit:g}{'%' if percent else 'px'}", "invalid_crop_margin")
    return number / 100 if percent else float(round(number))


def read_background(settings: Settings, values: dict) -> Background | None:
    upload = request.files.get("bg_image_file")
    url = values.get("bg_image_url")
    try:
        if upload is not None and upload.filename != "":
            data = upload.read(settings.max_image_bytes + 1)
            return Background("image", image=decode_image(data, settings.max_image_bytes, settings.max_image_pixels))
        if url:
            return Background("image", image=decode_image(fetch_or_error(url, settings, "bg_image_url"),
                                                          settings.max_image_bytes, settings.max_image_pixels))
    except ImageDecodeError as error:
        raise ApiError(400, f"Invalid background image: {error}", "invalid_bg_image") from None
    color = values.get("bg_color")
    return Background("color", color=compose.parse_color(color)) if color else None


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
    outputs = params["outputs"]
    if outputs.preset is not None:  # the preset's own background unless bg_* or channels say otherwise
        preset = replace(outputs.preset, background=background) if background else outputs.preset
        return render_preset(result, preset, params["format"])
    if outputs.moves_subject:
        result = moved_subject(result, outputs.scale, outputs.position)
    return render(result, background or Background("transparent"), fmt=params["format"],
                  crop=params["crop"], crop_margin=params["crop_margin"] or 0.0, shadow=params["shadow"])


FOREGROUND_SIDES = ("top", "left", "width", "height")


def image_result_schema(description: str) -> dict:
    """The OpenAPI 200 answer of an image route: the image, or JSON; remove.bg's headers either way."""
    integer, string = {"type": "integer"}, {"type": "string"}
    headers = {"X-Width": ("Width of the result image", integer), "X-Height": ("Height of the result image", integer),
               "X-Type": ("Detected foreground type (always auto)", string),
               "X-Credits-Charged": ("Credits charged for this call (always 0: there are no credits)", string),
               **{f"X-Foreground-{side.title()}": (f"The subject's {side} in the result image, in its pixels", integer)
                  for side in FOREGROUND_SIDES}}
    data = {"result_b64": string, "content_type": string, **{f"foreground_{side}": integer for side in FOREGROUND_SIDES}}
    return {"description": description,
            "headers": {name: {"description": text, "schema": schema} for name, (text, schema) in headers.items()},
            "content": {"image/png": {}, "image/jpeg": {}, "application/json": {"schema": {
                "type": "object", "properties": {"data": {"type": "object", "properties": data}}}}}}


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
        "add_shadow": {"type": "boolean", "default": False,
                       "description": "a soft drop shadow; with a preset, a contact shadow below the subject"},
        "scale": {**string, "default": "original",
                  "description": "the subject's size relative to the image, 10%..100%, or original; implies "
                                 "position=center unless given"},
        "position": {**string, "default": "original",
                     "description": "original, center, or 'x%' / 'x% y%' (0% left/top .. 100% right/bottom); "
                                    "with a preset also bottom or top (no original)"},
        "roi": {**string, "default": "0% 0% 100% 100%",
                "description": "region of interest 'x1 y1 x2 y2' in px or %: only what lies inside can be the subject"},
        "type": {"type": "string", "enum": ["auto"], "default": "auto"},
        "type_level": {"type": "string", "enum": ["none"]},
        "semitransparency": {"type": "boolean", "enum": [True], "default": True},
        "preset": {"type": "string", "enum": ["product", "sticker", "post", "story", "custom"],
                   "description": "product: square on white, subject centred with an even margin; sticker: LINE "
                                  "sticker PNG (<= 370x320, even size, 10 px margin); post: 1080x1080 or 1080x1350; "
                                  "story: 1080x1920 (both on the blurred original unless bg_*); custom: canvas_size"},
        "canvas_size": {**string, "description": "with preset: 2000 (square) or WIDTHxHEIGHT (e.g. 1080x1350)"},
        "margin": {**string, "description": "with preset: 8% (of the canvas's shorter side) or 40px"},
        "fit": {"type": "string", "enum": ["fit", "fill"], "default": "fit",
                "description": "with preset=custom: the whole subject inside, or the canvas filled"},
        "outline": {"type": "boolean", "default": True, "description": "with preset=sticker: white die-cut outline"},
    }
    error = {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}}}
    from bot.web.refine import refine_openapi_path

    document = {
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
                "200": image_result_schema("The result image (or JSON with result_b64 when Accept: application/json)"),
                "400": error, "403": error, "413": error, "415": error, "429": error, "503": error}}}},
        "components": {"schemas": {"Errors": {"type": "object", "properties": {"errors": {"type": "array", "items": {
            "type": "object", "properties": {"title": string, "code": string, "detail": string}}}}}}},
    }
    document["paths"]["/api/v1/refine"] = refine_openapi_path(properties, error, string, bool(settings.api_keys))
    return document
