"""Shared fixtures: the real pipeline (real models via onnxruntime), real photos, app factories."""
from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import io
import json
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
ALPHAMATTING = SHARED_DATA / "alphamatting_training_lowres"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

LINE_SECRET = "test-line-channel-secret"
LINE_TOKEN = "test-access-token"


def loud_skip(reason: str) -> None:
    print(f"\n*** SKIPPED: {reason} ***", file=sys.stderr)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def real_pipeline():
    from models import ModelUnavailableError
    from pipeline.cutout import Pipeline

    pipeline = Pipeline()
    try:
        pipeline.warm_up()
    except ModelUnavailableError as error:
        loud_skip(f"models unavailable, model tests cannot run: {error}")
    return pipeline


# ISNet's long side for tests of delivery (chat, page, API) and of one path against another (torch
# vs onnxruntime): the same models and code, asked at a smaller input (the shipped
# CUTOUT_SEGMENT_SIDE setting), so a cutout costs ~0.9 s instead of ~1.8 s on two cores. Cutout
# quality is tested at the native side with `real_pipeline`.
SMALL_SEGMENT_SIDE = 512


@pytest.fixture(scope="session")
def small_side_pipeline(real_pipeline):
    """The real pipeline at SMALL_SEGMENT_SIDE, for tests of what is delivered (or of one path against
    another), not of how well."""
    from pipeline.cutout import Pipeline

    pipeline = Pipeline(segment_side=SMALL_SEGMENT_SIDE)
    pipeline.warm_up()
    return pipeline


def shared_image(name: str) -> Path:
    path = ALPHAMATTING / "input" / f"{name}.png"
    if not path.exists():
        loud_skip(f"evaluation data not found at {ALPHAMATTING} (../shared/data)")
    return path


def jpeg_bytes(path: Path, max_side: int = 480) -> bytes:
    image = Image.open(path).convert("RGB")
    image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def portrait_jpeg() -> bytes:
    """GT04: two trolls with loose pink and green hair, the hard case we sell."""
    return jpeg_bytes(shared_image("GT04"))


@pytest.fixture(scope="session")
def portrait_truth() -> np.ndarray:
    shared_image("GT04")
    truth = Image.open(ALPHAMATTING / "gt_alpha" / "GT04.png").convert("L")
    truth.thumbnail((480, 480))
    return np.asarray(truth, dtype=np.float32) / 255.0


def tampered(token: str) -> str:
    """`token` with its last two characters changed, never to what they already were (a signature
    ending in "xx" made `token[:-2] + "xx"` the genuine link: CI run of 2026-11-27 17:58)."""
    return token[:-2] + ("yy" if token.endswith("xx") else "xx")


def line_signature(body: bytes, secret: str = LINE_SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def line_body(fixture: str, **changes) -> tuple[bytes, dict]:
    """A LINE webhook body from a recorded fixture, with a fresh timestamp and event id."""
    payload = json.loads((FIXTURES / "line" / fixture).read_text())
    event = copy.deepcopy(payload["events"][0])
    event["timestamp"] = int(time.time() * 1000)
    event["webhookEventId"] = uuid.uuid4().hex.upper()[:26]
    if "replyToken" in event:
        event["replyToken"] = uuid.uuid4().hex
    for key, value in changes.items():
        target = event
        *path, last = key.split(".")
        for part in path:
            target = target[part]
        target[last] = value
    payload["events"] = [event]
    return json.dumps(payload).encode(), event


@pytest.fixture(params=["line", "messenger"])
def driver(request):
    """One chat platform double and its scenario helpers; tests using it run once per platform."""
    from tests.channel_drivers import LineDriver, MessengerDriver

    instance = {"line": LineDriver, "messenger": MessengerDriver}[request.param]()
    yield instance
    instance.stop()
