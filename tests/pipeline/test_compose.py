"""Compositing, previews, crops, shadows and encoding, checked pixel-wise."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipeline.outputs import compose
from pipeline.cutout import CutoutResult
from pipeline.outputs.render import Background, checkerboard_preview, render


@pytest.fixture
def disc() -> CutoutResult:
    ys, xs = np.mgrid[0:100, 0:160]
    distance = np.hypot(ys - 50, xs - 80)
    alpha = np.clip(30 - distance, 0, 1).astype(np.float32)  # a disc with a 1 px soft edge
    foreground = np.zeros((100, 160, 3), np.float32)
    foreground[:] = (0.9, 0.1, 0.1)
    image = foreground * alpha[:, :, None] + (1 - alpha[:, :, None]) * np.float32([0, 0.8, 0])
    return CutoutResult(image=image, mask=alpha, alpha=alpha, foreground=foreground)


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_parse_color_forms():
    assert compose.parse_color("#ff0000") == (1.0, 0.0, 0.0)
    assert compose.parse_color("00ff00") == (0.0, 1.0, 0.0)
    assert compose.parse_color("0,0,255") == (0.0, 0.0, 1.0)
    assert compose.parse_color("white") == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError):
        compose.parse_color("not-a-colour")


def test_transparent_png_keeps_straight_alpha(disc):
    rendered = render(disc, Background("transparent"))
    rgba = decode(rendered.data)
    assert rendered.content_type == "image/png" and rgba.shape == (100, 160, 4)
    assert rgba[50, 80].tolist() == [230, 26, 26, 255]
    assert rgba[0, 0, 3] == 0 and rgba[0, 0, :3].tolist() == [0, 0, 0]
    edge = rgba[71, 101]  # distance 29.7 from the centre: alpha 0.3
    assert 0 < edge[3] < 255 and edge[0] == 230  # not premultiplied: colour stays full on soft pixels


def test_colour_gradient_image_and_blur_backgrounds(disc):
    white = decode(render(disc, Background("color", color=(1, 1, 1))).data).astype(int)
    assert white.shape == (100, 160, 3) and white[0, 0].min() > 250 and white[50, 80, 0] > 200
    gradient = decode(render(disc, Background("gradient", color=(0, 0, 0), color2=(1, 1, 1)), fmt="png").data)
    assert gradient[0, 0].max() < 10 and gradient[-1, 0].min() > 245
    backdrop = np.zeros((10, 10, 3), np.float32)
    backdrop[:, :, 2] = 1.0
    blue = decode(render(disc, Background("image", image=backdrop), fmt="png").data)
    assert blue[0, 0].tolist() == [0, 0, 255]
    blurred = compose.blurred_background(disc.image, disc.alpha)
    # Under the subject the blur carries background green, not the subject's red.
    assert blurred[50, 80, 1] > blurred[50, 80, 0]


def test_mask_crop_and_shadow(disc):
    mask = decode(render(disc, Background("mask")).data)
    assert mask.ndim == 2 and mask[50, 80] == 255 and mask[0, 0] == 0
    cropped = render(disc, Background("transparent"), crop=True, crop_margin=5)
    assert (cropped.width, cropped.height) == (69, 69)  # 59 px of subject + 5 px each side
    shadowed = decode(render(disc, Background("color", color=(1, 1, 1)), shadow=True, fmt="png").data).astype(int)
    plain = decode(render(disc, Background("color", color=(1, 1, 1)), fmt="png").data).astype(int)
    assert shadowed[85, 90].sum() < plain[85, 90].sum()  # darker below-right of the subject
    transparent_shadow = decode(render(disc, Background("transparent"), shadow=True).data)
    assert transparent_shadow[85, 90, 3] > 0


def test_checkerboard_preview_is_an_opaque_small_jpeg(disc):
    data = checkerboard_preview(disc, max_bytes=1_000_000)
    preview = Image.open(io.BytesIO(data))
    assert preview.format == "JPEG" and preview.mode == "RGB" and len(data) <= 1_000_000
    pixels = np.asarray(preview).astype(int)
    assert len(np.unique(pixels[:20, :40].sum(axis=2) // 30)) >= 2  # the checkerboard shows


def test_cover_fit_fills_without_distortion():
    wide = np.zeros((10, 40, 3), np.float32)
    wide[:, 15:25] = 1.0  # a white band in the middle
    fitted = compose.cover_fit(wide, (20, 20))
    assert fitted.shape == (20, 20, 3) and fitted[:, 10].mean() > 0.9


def test_rgba_bytes_are_the_same_from_every_band_of_rows():
    from pipeline.outputs.compose import to_rgba_uint8

    rng = np.random.default_rng(7)
    foreground = rng.uniform(-0.1, 1.1, (1300, 40, 3)).astype(np.float32)  # three bands of rows, converted side by side
    alpha = rng.uniform(-0.1, 1.1, (1300, 40)).astype(np.float32)
    alpha[::7] = 0.0
    rgba = to_rgba_uint8(foreground, alpha)
    expected_alpha = np.floor(np.clip(alpha, 0, 1) * 255 + 0.5).astype(np.uint8)  # rounded half up
    expected_colour = np.floor(np.clip(foreground, 0, 1) * 255 + 0.5).astype(np.uint8)
    expected_colour[expected_alpha == 0] = 0  # fully transparent pixels carry no colour
    assert np.array_equal(rgba[:, :, 3], expected_alpha) and np.array_equal(rgba[:, :, :3], expected_colour)
