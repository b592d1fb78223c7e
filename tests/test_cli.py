"""The `cutout` command, run as a user would run it."""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SMALL_SEGMENT_SIDE, jpeg_bytes, shared_image

CUTOUT = str(Path(sys.executable).parent / "cutout")


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CUTOUT, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


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
    done = run(str(photos), "-o", str(tmp_path / "out"), "--bg", "white", "-q", cwd=tmp_path,
               env={"CUTOUT_SEGMENT_SIDE": str(SMALL_SEGMENT_SIDE)})  # the batch's errors under test
    assert done.returncode == 1
    assert "broken.jpg" in done.stderr and "damaged" in done.stderr and "1 of 2 images failed" in done.stderr
    result = Image.open(tmp_path / "out" / "a.jpg")
    assert result.format == "JPEG" and result.mode == "RGB"


def test_clear_errors_for_bad_arguments(tmp_path):
    missing = run(str(tmp_path / "nope.jpg"), cwd=tmp_path)
    assert missing.returncode == 1 and "nope.jpg: no such file" in missing.stderr
    bad_bg = run(str(tmp_path / "nope.jpg"), "--bg", "not-a-colour", cwd=tmp_path)
    assert bad_bg.returncode == 2 and "bad --bg" in bad_bg.stderr


def test_models_fetch_names_what_was_tried(tmp_path):
    listed = run("models", "list", cwd=tmp_path)
    assert listed.returncode == 0 and "isnet" in listed.stdout and "MIT" in listed.stdout
    # With the cache pointed at an empty folder and registries made unreachable, the error says why.
    env_cmd = [CUTOUT, "models", "fetch", "isnet-small"]
    env = {**os.environ, "CUTOUT_CACHE_DIR": str(tmp_path / "empty"), "PATH": "/nonexistent",
           "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_NO_INDEX": "1"}
    failed = subprocess.run(env_cmd, capture_output=True, text=True, env=env, timeout=120)
    assert failed.returncode == 1
    assert "isnet-small" in failed.stderr and "npm" in failed.stderr and "CUTOUT_MODEL_DIR" in failed.stderr


# In-process runs of cli.main on the session's loaded models: each costs one cutout, not a model load.

@pytest.fixture
def cutout_main(small_side_pipeline, monkeypatch):
    import cli

    # The module, not the package's `cutout` function of the same name.
    cutout_module = sys.modules[type(small_side_pipeline).__module__]
    monkeypatch.setattr(cutout_module, "Pipeline", lambda **kwargs: small_side_pipeline)
    return cli.main


def small_photo(path: Path, name: str = "GT05", side: int = 160) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = jpeg_bytes(shared_image(name), side)
    if path.suffix.lower() == ".png":
        Image.open(io.BytesIO(data)).save(path, "PNG")
    else:
        path.write_bytes(data)
    return path


def stderr_segments(text: str) -> list[str]:
    """stderr split the way a terminal shows it: a carriage return starts the line over."""
    return re.split(r"[\r\n]", text)


def test_output_format_follows_the_extension_or_format(tmp_path, cutout_main, capsys):
    photo = small_photo(tmp_path / "photo.jpg")
    assert cutout_main([str(photo), "-o", str(tmp_path / "single.png"), "--bg", "white", "--no-matting"]) == 0
    on_white = Image.open(tmp_path / "single.png")
    assert on_white.format == "PNG" and on_white.mode == "RGB"
    assert cutout_main([str(photo), "-o", str(tmp_path / "x.jpg"), "--no-matting"]) == 0
    assert Image.open(tmp_path / "x.jpg").format == "JPEG"
    assert "note:" not in capsys.readouterr().err  # notes are for -v only

    assert cutout_main([str(photo), "-o", str(tmp_path / "clash.png"), "--format", "jpg"]) == 2
    assert "--format jpg does not match the output's extension .png" in capsys.readouterr().err
    assert cutout_main([str(photo), "-o", str(tmp_path / "photo.webp")]) == 2
    assert ".webp" in capsys.readouterr().err
    assert not (tmp_path / "clash.png").exists() and not (tmp_path / "photo.webp").exists()


def test_notes_print_only_with_verbose(tmp_path, cutout_main, capsys):
    photo = small_photo(tmp_path / "photo.jpg")
    assert cutout_main([str(photo), "-v"]) == 0
    assert f"cutout: {photo}: note: " in capsys.readouterr().err


def test_folder_collisions_get_unique_names(tmp_path, cutout_main, capsys):
    photos = tmp_path / "photos"
    small_photo(photos / "a.jpg", "GT01", 160)
    small_photo(photos / "a.png", "GT02", 120)
    small_photo(photos / "a-2.jpg", "GT05", 100)  # owns the name a-2.png, so the clash takes a-3
    assert cutout_main([str(photos), "-o", str(tmp_path / "out"), "-q", "--no-matting"]) == 0
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["a-2.png", "a-3.png", "a.png"]
    assert max(Image.open(out / "a.png").size) == 160  # from a.jpg, first in order
    assert max(Image.open(out / "a-3.png").size) == 120  # from a.png
    assert max(Image.open(out / "a-2.png").size) == 100  # from a-2.jpg


def test_folder_run_says_where_it_writes(tmp_path, cutout_main, capsys, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 nope")
    monkeypatch.chdir(tmp_path)
    assert cutout_main(["photos", "-q"]) == 1
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "writing" in line] == [
        f"cutout: writing 1 image to {tmp_path / 'cutouts'}"]
    assert cutout_main(["photos", "-o", "elsewhere", "-q"]) == 1
    assert f"cutout: writing 1 image to {tmp_path / 'elsewhere'}\n" in capsys.readouterr().err


def test_error_lines_stay_out_of_the_progress_bar(tmp_path, cutout_main, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("one.jpg", "two.jpg"):
        (photos / name).write_bytes(b"\xff\xd8\xff\xe0 nope")
    assert cutout_main([str(photos), "-o", str(tmp_path / "out")]) == 1  # no -q: the bar is drawn
    segments = stderr_segments(capsys.readouterr().err)
    assert any("%|" in segment for segment in segments), "the progress bar was not drawn"
    for name in ("one.jpg", "two.jpg"):
        lines = [segment for segment in segments if name in segment]
        assert lines and all(line.startswith(f"cutout: {photos / name}: ") for line in lines), lines
    assert not [segment for segment in segments if "%|" in segment and "cutout:" in segment]


def test_no_subject_is_a_failure(tmp_path, cutout_main, capsys):
    blank = tmp_path / "blank.jpg"
    Image.new("RGB", (120, 90), (128, 128, 128)).save(blank, "JPEG")
    assert cutout_main([str(blank), "-o", str(tmp_path / "out.png")]) == 1
    err = capsys.readouterr().err
    assert f"cutout: {blank}: no subject found" in err and "1 of 1 images failed" in err
    assert not (tmp_path / "out.png").exists()


def test_recursive_keeps_sub_folders(tmp_path, cutout_main, capsys):
    photos = tmp_path / "photos"
    small_photo(photos / "top.jpg", side=100)
    small_photo(photos / "shoes" / "red" / "left.jpg", side=100)
    small_photo(photos / ".thumbs" / "skip.jpg", side=100)
    assert cutout_main([str(photos), "-o", str(tmp_path / "flat"), "-q", "--no-matting"]) == 0
    assert [p.relative_to(tmp_path / "flat").as_posix() for p in sorted((tmp_path / "flat").rglob("*.png"))] == [
        "top.png"]
    # The output folder inside the input folder is not read back as input.
    out = photos / "cutouts"
    assert cutout_main([str(photos), "-r", "-o", str(out), "-q", "--no-matting"]) == 0
    assert [p.relative_to(out).as_posix() for p in sorted(out.rglob("*.png"))] == [
        "shoes/red/left.png", "top.png"]
    assert "writing 2 images" in capsys.readouterr().err


def test_parallel_jobs_share_one_pipeline(tmp_path, cutout_main, small_side_pipeline, monkeypatch, capsys):
    photos = tmp_path / "photos"
    small_photo(photos / "a.jpg", "GT05", 120)
    small_photo(photos / "b.jpg", "GT02", 120)
    assert cutout_main([str(photos), "-o", str(tmp_path / "serial"), "-q", "--no-matting"]) == 0

    # With -j 2 the first two files must be in the shared pipeline at the same moment.
    meet = threading.Barrier(2, timeout=60)
    plain = small_side_pipeline.cutout

    def cutout_together(*args, **kwargs):
        meet.wait()
        return plain(*args, **kwargs)

    monkeypatch.setattr(small_side_pipeline, "cutout", cutout_together)
    assert cutout_main([str(photos), "-o", str(tmp_path / "parallel"), "-q", "--no-matting", "-j", "2"]) == 0
    for name in ("a.png", "b.png"):
        serial = np.asarray(Image.open(tmp_path / "serial" / name), dtype=np.int16)
        parallel = np.asarray(Image.open(tmp_path / "parallel" / name), dtype=np.int16)
        assert serial.shape == parallel.shape and np.abs(serial - parallel).max() <= 1

    assert cutout_main([str(photos), "-j", "0"]) == 2
    assert "-j" in capsys.readouterr().err
    assert "-j N" in subprocess.run([CUTOUT, "--help"], capture_output=True, text=True).stdout
