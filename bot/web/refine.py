"""POST /api/v1/refine: a photo plus the editor's marks -> the corrected cutout (issue 16).

For integrators who run their own editor: the same photo parameters and outputs as
/api/v1/removebg, plus `marks` (pipeline.editing.edit's JSON marks, in the pixels of the photo as sent).
The photo is cut out as /api/v1/removebg would, then the marks are applied by the editing engine
on the pipeline's thread; the answer is the corrected cutout.
"""
from __future__ import annotations

import json
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import numpy as np
from flask import Blueprint, request

from bot.edits import second_opinion_from
from pipeline.cutout import CutoutOptions, CutoutResult, Pipeline
from pipeline.decode import ImageDecodeError, decode_image
from pipeline.editing.edit import MAX_MARKS, EditSource, MarkError, Mark, Stroke, Tap, marks_from_json, refine_alpha
from pipeline.worker import PipelineWorker, QueueFull, result_or_cancel


def read_marks() -> Any:
    """The `marks` list: a JSON array in a JSON body, or a JSON string in a form field."""
    from bot.web.api import ApiError

    if request.is_json:
        body = request.get_json(silent=True)
        marks = body.get("marks") if isinstance(body, dict) else None
    else:
        text = request.values.get("marks")
        try:
            marks = json.loads(text) if text else None
        except json.JSONDecodeError:
            raise ApiError(400, "marks is not valid JSON", "invalid_marks") from None
    if marks is None:
        raise ApiError(400, "No marks given: send marks, a JSON list of taps and strokes", "missing_marks")
    return marks


def scaled(marks: list[Mark], factor: float) -> list[Mark]:
    """Marks on the photo as sent -> on the photo as cut out (size=preview shrinks it)."""
    if factor == 1.0:
        return marks
    return [Tap(m.x * factor, m.y * factor, m.keep) if isinstance(m, Tap) else
            Stroke(tuple((x * factor, y * factor) for x, y in m.points), m.radius * factor, m.keep) for m in marks]


def refine_request(settings, pipeline: Pipeline, worker: PipelineWorker, options: CutoutOptions):
    """Validate everything, cut the photo out, apply the marks; -> (rendered, timings)."""
    from bot.web import api

    marks_json = read_marks()
    values = api.form_values()
    values.pop("marks", None)
    params = api.read_params(values)
    if params["outputs"].roi is not None:
        raise api.ApiError(400, "roi is not available with refine: marks say what the subject is", "roi_with_marks")
    source = api.pick_source(values)
    data = api.read_input_image(settings, source)
    background = api.read_background(settings, values)
    image = decode_image(data, settings.max_image_bytes, settings.max_image_pixels)
    sent_h, sent_w = image.shape[:2]
    try:
        marks = marks_from_json(marks_json, sent_w, sent_h)
    except MarkError as error:
        raise api.ApiError(400, f"Invalid marks: {error}", "invalid_marks") from None
    image = api.downscale_for_size(image, params["size"])
    marks = scaled(marks, image.shape[1] / sent_w)
    future = worker.submit_batchable("cutout", image, lambda images: pipeline.start_cutout_batch(images, options), "api")
    result = result_or_cancel(future, api.API_TIMEOUT_S)
    # The engine on the pipeline's thread too: it owns the CPU-heavy work.
    # Already on the pipeline thread there: the second opinion runs in place (worker.call).
    second = second_opinion_from(pipeline, worker)
    source = EditSource(result.image, result.mask, result.alpha,
                        second_opinion=lambda: second(np.round(result.image * 255.0).astype(np.uint8)))
    edit = worker.submit(lambda: refine_alpha(source, marks), "api")
    alpha = result_or_cancel(edit, api.API_TIMEOUT_S)
    # Straight colour: pixels the shipped alpha left clear still hold the photo's colour.
    refined = CutoutResult(result.image, result.mask, alpha, result.foreground, result.timings, result.notes)
    if not refined.subject_found:
        raise api.ApiError(400, "The marks leave no subject in the image", "empty_cutout")
    return api.render_result(refined, params, background), result.timings


def add_refine_route(blueprint: Blueprint, settings, pipeline: Pipeline, worker: PipelineWorker, metrics,
                     options: CutoutOptions, lane, signer, limiter, page_limiter) -> None:
    from bot.lane import LaneFull
    from bot.web import api

    @blueprint.post("/api/v1/refine")
    def refine():
        try:
            client = api.authorise(settings, signer)
            quota = page_limiter if client.startswith("page:") else limiter
            if not quota.allow(client):
                raise api.ApiError(429, "Rate limit exceeded", "rate_limit_exceeded", quota.retry_after(client))
            with lane.enter():
                rendered, timings = refine_request(settings, pipeline, worker, options)
        except (LaneFull, api.ApiError, ImageDecodeError, QueueFull, FutureTimeout) as error:
            api_error = api.as_api_error(error, lane)
            metrics.count("api", "lane_full" if isinstance(error, LaneFull) else api_error.code)
            return api.error_response(api_error)
        metrics.count("api", "refined")
        metrics.observe(timings)
        return api.image_response(rendered)


MARKS_SCHEMA = {
    "type": "array", "maxItems": MAX_MARKS,
    "description": "Taps and brush strokes in the pixels of the photo as sent, applied in order (a later mark wins "
                   "where marks overlap). In a form, the same list as a JSON string.",
    "items": {"type": "object", "required": ["type", "mode"], "properties": {
        "type": {"type": "string", "enum": ["tap", "stroke"],
                 "description": "tap: select (keep) or drop (erase) the region under the point; stroke: a brush"},
        "mode": {"type": "string", "enum": ["keep", "erase"]},
        "x": {"type": "number"}, "y": {"type": "number"},
        "points": {"type": "array", "items": {"type": "array", "items": {"type": "number"}, "minItems": 2,
                                              "maxItems": 2}, "description": "stroke: [[x, y], ...]"},
        "radius": {"type": "number", "description": "stroke: brush radius in pixels"}}},
}


def refine_openapi_path(properties: dict, error: dict, string: dict, api_key_required: bool) -> dict:
    """The OpenAPI path item for /api/v1/refine (removebg's photo and output parameters + marks)."""
    from bot.web import api

    excluded = {"roi"}
    form = {k: v for k, v in properties.items() if k not in excluded}
    form["marks"] = MARKS_SCHEMA
    plain = {k: v for k, v in form.items() if v.get("format") != "binary"}
    return {"post": {
        "summary": "Correct a cutout with taps and brush strokes",
        "description": "Cuts the photo out as /api/v1/removebg does, then applies the marks: a keep tap selects "
                       "the object under it, an erase tap drops it (a separate object whole), strokes force "
                       "subject or background under the brush while hair beside them stays soft.",
        "parameters": [{"name": "X-Api-Key", "in": "header", "required": api_key_required, "schema": string}],
        "requestBody": {"required": True, "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["marks"], "properties": form}},
            "application/json": {"schema": {"type": "object", "required": ["marks"], "properties": plain}}}},
        "responses": {
            "200": api.image_result_schema("The corrected cutout (or JSON with result_b64 when Accept: application/json)"),
            "400": error, "403": error, "413": error, "429": error, "503": error}}}
