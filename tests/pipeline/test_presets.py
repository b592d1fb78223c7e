"""Presets checked pixel by pixel on real cutouts: product margins and centring, the contact
shadow's place, LINE's sticker rules and an unbroken outline, exact post/story/custom sizes."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from pipeline.cutout import CutoutOptions
from pipeline.decode import decode_image
from pipeline.outputs.placement import parse_position, place_in_box
from pipeline.outputs.presets import (PresetOptions, compose_preset, parse_margin, parse_size, render_preset,
                                      render_sticker_set)
from pipeline.outputs.sticker import add_outline
from pipeline.outputs.render import Background
from tests.conftest import SHARED_DATA, jpeg_bytes, loud_skip

# Four different subjects and shapes: a key (wide, thin), a shrimp (legs and feelers), a scooter
# (wheels, holes), two trolls with loose hair.
BATCH = ("dis5k_te_dev/image/te2-key-2168174621.jpg", "dis5k_te_dev/image/te3-shrimp-4827208991.jpg",
         "dis5k_te_dev/image/te3-scooter-286182579_.jpg", "alphamatting_training_lowres/input/GT04.png")
THRESHOLD = 0.05  # the visual box: alpha above this


@pytest.fixture(scope="module")
def batch(real_pipeline):
    """Real cutouts of small copies of the photos (one model run each for the whole module)."""
    results = []
    for name in BATCH:
        path = SHARED_DATA / name
        if not path.exists():
            loud_skip(f"evaluation data not found at {path} (../shared/data)")
        image = decode_image(jpeg_bytes(path, 360))
        result = real_pipeline.cutout(image, CutoutOptions(matting=name.endswith("GT04.png")))
        assert result.subject_found, name
        results.append(result)
    return results


def box_of(alpha: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) margins between the visual box and the canvas edges."""
    rows = np.flatnonzero((alpha > THRESHOLD).any(axis=1))
    cols = np.flatnonzero((alpha > THRESHOLD).any(axis=0))
    height, width = alpha.shape
    return int(cols[0]), int(rows[0]), int(width - 1 - cols[-1]), int(height - 1 - rows[-1])


def png_alpha(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))[:, :, 3].astype(np.float32) / 255


@pytest.mark.parametrize("margin", ["8%", "15%"])
def test_product_batch_centred_with_the_margin_on_every_photo(batch, margin):
    side = 2000
    tolerance = 0.01 * side
    for result in batch:
        options = PresetOptions("product", margin=parse_margin(margin), background=Background("transparent"))
        rendered = render_preset(result, options)
        alpha = png_alpha(rendered.data)
        assert alpha.shape == (side, side)
        left, top, right, bottom = box_of(alpha)
        assert abs(left - right) / 2 <= tolerance and abs(top - bottom) / 2 <= tolerance  # centred within 1 %
        wanted = parse_margin(margin) * side
        tight = min((left, right), (top, bottom), key=min)  # the dimension the subject fills
        assert all(abs(value - wanted) <= tolerance for value in tight), (tight, wanted)
        assert min(left, top, right, bottom) >= wanted - tolerance  # never closer to an edge than asked


def test_product_default_is_a_white_square_jpeg(batch):
    rendered = render_preset(batch[0], PresetOptions("product", size=(800, 800)))
    image = Image.open(io.BytesIO(rendered.data))
    assert image.format == "JPEG" and image.size == (800, 800)
    pixels = np.asarray(image.convert("RGB"))
    assert pixels[:20, :20].min() >= 250 and pixels[-20:, -20:].min() >= 250


def test_contact_shadow_only_below_the_subject(batch):
    for result in batch:
        options = dict(size=(1000, 1000))
        plain, _ = compose_preset(result.image, result.foreground, result.alpha, PresetOptions("product", **options))
        shaded, _ = compose_preset(result.image, result.foreground, result.alpha,
                                   PresetOptions("product", shadow=True, **options))
        placed, _ = compose_preset(result.image, result.foreground, result.alpha,
                                   PresetOptions("product", background=Background("mask"), **options))
        lowest_subject_row = np.flatnonzero((placed > THRESHOLD).any(axis=1))[-1]
        darker = (plain - shaded).max(axis=2) > 1 / 255
        rows = np.flatnonzero(darker.any(axis=1))
        assert rows.size, "no shadow drawn"
        assert rows.min() >= lowest_subject_row  # nothing darkened beside or above the subject
        assert (plain - shaded).max() > 0.2  # visibly there under the subject
        # Transparent output: the shadow is soft black in the alpha channel, in the same place.
        clear, clear_alpha = compose_preset(result.image, result.foreground, result.alpha,
                                            PresetOptions("product", shadow=True, background=Background("transparent"),
                                                          **options))
        added = np.flatnonzero(((clear_alpha - placed) > 1 / 255).any(axis=1))
        assert added.size and added.min() >= lowest_subject_row


def test_every_sticker_file_passes_line_rules(batch):
    for result in batch:
        files = render_sticker_set(result)
        for name, rendered in files.items():
            image = Image.open(io.BytesIO(rendered.data))
            assert image.format == "PNG" and image.mode == "RGBA", name
            assert len(rendered.data) <= 1_000_000, name
            assert image.info.get("dpi", (0, 0))[0] >= 71.9, name
            alpha = np.asarray(image)[:, :, 3]
            assert (alpha == 0).any() and (alpha == 255).any(), name  # transparent background, visible subject
        sticker = Image.open(io.BytesIO(files["sticker"].data))
        width, height = sticker.size
        assert width <= 370 and height <= 320 and width % 2 == 0 and height % 2 == 0
        assert width == 370 or height == 320 or width >= 368 or height >= 318  # as large as LINE allows
        alpha = np.asarray(sticker)[:, :, 3]
        inner = np.zeros_like(alpha, bool)
        inner[10:-10, 10:-10] = True
        assert alpha[~inner].max() == 0  # 10 px transparent margin on every side
        main = np.asarray(Image.open(io.BytesIO(files["main"].data)))
        assert main.shape[:2] == (240, 240) and main[:10, :, 3].max() == main[-10:, :, 3].max() == 0
        assert main[:, :10, 3].max() == main[:, -10:, 3].max() == 0  # the main image keeps 10 px clear too
        assert Image.open(io.BytesIO(files["tab"].data)).size == (96, 74)
    with pytest.raises(ValueError, match="PNG"):
        render_sticker_set(batch[0], fmt="jpg")


def test_die_cut_outline_is_unbroken_and_follows_the_alpha(batch):
    width = 6
    for result in batch:
        placed = place_in_box(result.foreground, result.alpha, (370, 320), (17, 17, 336, 286))
        outlined = add_outline(placed.foreground, placed.alpha, width)
        solid = placed.alpha > 0.5
        distance = ndimage.distance_transform_edt(~solid)
        # No gap: every pixel up to width - 1 px from the subject is opaque outline (or subject).
        assert (outlined.alpha[distance <= width - 1] > 0.5).all()
        # Follows the alpha: nothing beyond the outline's width from the subject.
        assert outlined.alpha[(distance > width + 1) & (placed.alpha < 0.02)].max(initial=0) < 0.02
        # The ring is white, and the outline joins pieces but never splits any.
        ring = (outlined.alpha > 0.5) & (placed.alpha < 0.02)
        assert outlined.colour[ring].min() > 0.95
        _, pieces_before = ndimage.label(solid, np.ones((3, 3)))
        _, pieces_after = ndimage.label(outlined.alpha > 0.5, np.ones((3, 3)))
        assert 1 <= pieces_after <= pieces_before
        # The ring around each outlined piece is one closed band: it has no opening to the outside.
        filled = ndimage.binary_fill_holes(outlined.alpha > 0.5)
        assert (filled & ~(outlined.alpha > 0.5) & (distance <= width - 1)).sum() == 0


@pytest.mark.parametrize("name,size", [("post", (1080, 1080)), ("post", (1080, 1350)), ("story", (1080, 1920))])
def test_post_and_story_sizes_exact_and_anchored_at_the_bottom(batch, name, size):
    result = batch[1]
    for background in (None, Background("color", color=(0.2, 0.4, 0.9)),
                       Background("gradient", color=(1, 1, 1), color2=(0, 0, 0)),
                       Background("image", image=np.full((50, 80, 3), 0.3, np.float32))):
        rendered = render_preset(result, PresetOptions(name, size=size, background=background))
        assert Image.open(io.BytesIO(rendered.data)).size == size and rendered.content_type == "image/jpeg"
    alpha, _ = compose_preset(result.image, result.foreground, result.alpha,
                              PresetOptions(name, size=size, background=Background("mask")))
    left, top, right, bottom = box_of(alpha)
    margin = round(0.06 * min(size))
    assert abs(bottom - margin) <= 2 and top >= margin - 2  # bottom-centre: on the bottom margin
    assert abs(left - right) <= 0.01 * size[0]
    centred, _ = compose_preset(result.image, result.foreground, result.alpha,
                                PresetOptions(name, size=size, position=(0.5, 0.5), background=Background("mask")))
    _, top, _, bottom = box_of(centred)
    assert abs(top - bottom) <= 0.01 * size[1]


def test_portrait_cut_by_the_photo_stands_on_the_canvas_edge():
    alpha = np.zeros((200, 100), np.float32)
    alpha[60:, 30:70] = 1.0  # a torso running off the bottom of the photo
    foreground = np.ones((200, 100, 3), np.float32)
    placed, _ = compose_preset(foreground, foreground, alpha,
                               PresetOptions("story", background=Background("mask")))
    assert box_of(placed)[3] == 0


def test_custom_fit_fill_margin_and_position(batch):
    result = batch[0]  # the key: much wider than tall
    mask = Background("mask")
    fitted, _ = compose_preset(result.image, result.foreground, result.alpha,
                               PresetOptions("custom", size=(300, 300), margin=20, background=mask))
    left, top, right, bottom = box_of(fitted)
    assert fitted.shape == (300, 300) and abs(left - 20) <= 2 and abs(right - 20) <= 2 and top > 40
    filled, _ = compose_preset(result.image, result.foreground, result.alpha,
                               PresetOptions("custom", size=(300, 300), fit="fill", background=mask))
    assert (filled[:, 150] > 0.5).any() and box_of(filled)[1] <= 2 and box_of(filled)[3] <= 2
    corner, _ = compose_preset(result.image, result.foreground, result.alpha,
                               PresetOptions("custom", size=(400, 300), margin=10, position=parse_position("100% 0%"),
                                             background=mask))
    left, top, right, bottom = box_of(corner)
    assert abs(right - 10) <= 2 and abs(top - 10) <= 2
    transparent = render_preset(result, PresetOptions("custom", size=(320, 200)))
    assert Image.open(io.BytesIO(transparent.data)).mode == "RGBA"


def test_text_parsers_and_refusals():
    assert parse_size("2000") == (2000, 2000) and parse_size("1080x1350") == (1080, 1350)
    assert parse_margin("8%") == 0.08 and parse_margin("40px") == 40 and parse_margin("0") == 0
    assert parse_position("bottom") == (0.5, 1.0) and parse_position("25% 75%") == (0.25, 0.75)
    for bad in ("big", "10x", "1080x1350x2", "-5"):
        with pytest.raises(ValueError):
            parse_size(bad)
    for bad in ("nan%", "inf", "60%", "0.5", "-3", "8 %%"):
        with pytest.raises(ValueError):
            parse_margin(bad)
    for bad in ("left", "120%", "10% 20% 30%", "50"):
        with pytest.raises(ValueError):
            parse_position(bad)
    for options, message in [(PresetOptions("poster"), "unknown preset"),
                             (PresetOptions("post", size=(1000, 1000)), "1080x1080 or 1080x1350"),
                             (PresetOptions("story", size=(1080, 1080)), "1080x1920"),
                             (PresetOptions("product", size=(2000, 1000)), "square"),
                             (PresetOptions("custom"), "needs a size"),
                             (PresetOptions("custom", size=(8, 8)), "16..4096"),
                             (PresetOptions("sticker", size=(370, 320)), "fixed rules"),
                             (PresetOptions("sticker", shadow=True), "no shadow"),
                             (PresetOptions("sticker", background=Background("color")), "transparent"),
                             (PresetOptions("product", fit="fill"), "custom preset"),
                             (PresetOptions("custom", size=(100, 100), margin=50), "no room")]:
        with pytest.raises(ValueError, match=message):
            compose_preset(np.zeros((10, 10, 3), np.float32), np.zeros((10, 10, 3), np.float32),
                           np.pad(np.ones((4, 4), np.float32), 3), options)
