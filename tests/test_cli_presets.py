"""`cutout --preset ...` over a folder, run in-process on the session's models as a user would call it."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SHARED_DATA, jpeg_bytes, loud_skip

PHOTOS = {"key.jpg": "dis5k_te_dev/image/te2-key-2168174621.jpg", "boat.jpg": "sod_dev/image/100075.jpg",
          "troll.jpg": "alphamatting_training_lowres/input/GT01.png"}


@pytest.fixture
def cutout_main(small_side_pipeline, monkeypatch):
    import cli

    cutout_module = sys.modules[type(small_side_pipeline).__module__]
    monkeypatch.setattr(cutout_module, "Pipeline", lambda **kwargs: small_side_pipeline)
    return cli.main


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, source in PHOTOS.items():
        path = SHARED_DATA / source
        if not path.exists():
            loud_skip(f"evaluation data not found at {path} (../shared/data)")
        (folder / name).write_bytes(jpeg_bytes(path, 240))
    return folder


def visual_margins(alpha: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero((alpha > 0.05).any(axis=1))
    cols = np.flatnonzero((alpha > 0.05).any(axis=0))
    return int(cols[0]), int(rows[0]), alpha.shape[1] - 1 - int(cols[-1]), alpha.shape[0] - 1 - int(rows[-1])


def test_product_preset_over_a_folder(tmp_path, photos, cutout_main, capsys):
    out = tmp_path / "shop"
    assert cutout_main([str(photos), "-o", str(out), "-q", "--no-matting", "--preset", "product", "--size", "600",
                        "--margin", "10%", "--shadow"]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["boat.jpg", "key.jpg", "troll.jpg"]  # products on white: JPEGs
    for name in written:
        image = Image.open(out / name)
        assert image.format == "JPEG" and image.size == (600, 600)
        assert np.asarray(image.convert("RGB"))[:15, :15].min() >= 250  # white corners
    assert cutout_main([str(photos), "-o", str(tmp_path / "x"), "--preset", "product", "--bg", "transparent"]) == 2
    assert "bad --bg" in capsys.readouterr().err  # not a colour: refused before any work
    # The placed subject's mask: centred, the tight side exactly the 10 % margin from the edge.
    mask = tmp_path / "mask.png"
    assert cutout_main([str(photos / "key.jpg"), "-o", str(mask), "--no-matting", "--preset", "custom",
                        "--size", "600x400", "--margin", "10%", "--mask"]) == 0
    alpha = np.asarray(Image.open(mask), dtype=np.float32) / 255
    assert alpha.shape == (400, 600)
    left, top, right, bottom = visual_margins(alpha)
    assert abs(left - right) <= 4 and abs(top - bottom) <= 4
    assert abs(min(left, top) - 40) <= 4  # 10 % of the shorter side (400)


def test_sticker_preset_writes_a_line_set(tmp_path, photos, cutout_main):
    (photos / "boat.jpg").unlink()
    (photos / "main.jpg").write_bytes((photos / "troll.jpg").read_bytes())  # a photo named like the set's file
    (photos / "troll.jpg").unlink()
    out = tmp_path / "stickers"
    assert cutout_main([str(photos), "-o", str(out), "-q", "--no-matting", "--preset", "sticker"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["key.png", "main-2.png", "main.png", "tab.png"]
    assert Image.open(out / "main.png").size == (240, 240) and Image.open(out / "tab.png").size == (96, 74)
    for name in ("key.png", "main-2.png"):
        image = Image.open(out / name)
        width, height = image.size
        assert image.mode == "RGBA" and width <= 370 and height <= 320 and width % 2 == height % 2 == 0
        assert (out / name).stat().st_size <= 1_000_000


def test_post_story_sizes_and_bad_preset_arguments(tmp_path, photos, cutout_main, capsys):
    single = photos / "troll.jpg"
    assert cutout_main([str(single), "-o", str(tmp_path / "story.jpg"), "--no-matting", "--preset", "story"]) == 0
    assert Image.open(tmp_path / "story.jpg").size == (1080, 1920)
    assert cutout_main([str(single), "-o", str(tmp_path / "post.png"), "--no-matting", "--preset", "post",
                        "--size", "1080x1350", "--bg", "#336699", "--position", "center"]) == 0
    post = Image.open(tmp_path / "post.png")
    assert post.size == (1080, 1350) and post.mode == "RGB"
    capsys.readouterr()
    for args, message in [(["--size", "2000"], "need --preset"),
                          (["--preset", "post", "--size", "1000"], "1080x1080 or 1080x1350"),
                          (["--preset", "product", "--margin", "lots"], "not a margin"),
                          (["--preset", "product", "--position", "left"], "not a position"),
                          (["--preset", "product", "--crop"], "--crop does not combine"),
                          (["--preset", "sticker", "--shadow"], "no shadow"),
                          (["--preset", "sticker", "-o", str(tmp_path / "s.jpg")], "PNG")]:
        assert cutout_main([str(single), *args]) == 2, args
        assert message in capsys.readouterr().err, args
    assert not (tmp_path / "s.jpg").exists()
