"""Refinement that knows when it applies: soft zones vs crisp outlines, half-seen vs separate objects,
the outline at the photo's resolution, and no harm on a real object photo (DIS5K dev)."""
from __future__ import annotations

import csv
import threading

import numpy as np
import pytest
from PIL import Image

from evaluation import metrics
from pipeline.cutout import CutoutOptions, Pipeline
from pipeline.decode import decode_image
from pipeline.edges import sharpen, split_soft_regions
from pipeline.fuse import ADDED_CEILING, fuse_masks
from pipeline.matting.trimap import UNKNOWN, make_soft_zone_trimap
from pipeline.upsample import guided_upsample, in_bands, resize_rows
from tests.conftest import ALPHAMATTING, loud_skip

DIS5K = ALPHAMATTING.parent / "dis5k_te_dev"


def two_squares() -> np.ndarray:
    """A crisp square (a 2 px bilinear step) on the left, a wide 30 px soft ramp on the right."""
    mask = np.zeros((200, 400), dtype=np.float32)
    mask[50:150, 20:120] = 1.0
    mask[50:150, 120] = 0.5
    mask[50:150, 250:350] = 1.0
    ramp = np.linspace(0.0, 1.0, 32, dtype=np.float32)[1:-1]
    mask[50:150, 220:250] = ramp[None, :]
    mask[50:150, 350:380] = ramp[None, ::-1]
    return mask


def test_a_crisp_step_is_an_outline_and_a_wide_ramp_is_soft_matter():
    regions = split_soft_regions(two_squares())
    assert regions.transition[100, 120] and not regions.matter[100, 120]
    assert regions.matter[100, 235] and not regions.transition[100, 235]
    assert not regions.matter[:, :200].any()


def test_soft_zone_trimap_leaves_crisp_outlines_to_the_mask():
    mask = two_squares()
    trimap = make_soft_zone_trimap(mask, split_soft_regions(mask).matter)
    assert (trimap[:, :200] != UNKNOWN).all()  # the crisp square is settled by the mask
    assert (trimap[100, 222:242] == UNKNOWN).all()  # the ramp (below its confident top) is for matting
    assert trimap[100, 70] == 1.0 and trimap[100, 190] == 0.0


def test_sharpen_is_monotone_and_keeps_the_ends_and_the_middle():
    values = np.linspace(0, 1, 1001, dtype=np.float32)
    sharp = sharpen(values)
    assert np.all(np.diff(sharp) > 0)  # rankings (max F) and the 0.5 cut (IoU) are kept
    assert abs(sharp[0]) < 1e-6 and abs(sharp[-1] - 1) < 1e-6 and abs(sharp[500] - 0.5) < 1e-6
    assert sharp[900] > 0.95 and sharp[100] < 0.05


def test_guided_upsample_puts_the_outline_on_the_photos_edge():
    # A dark disc on a light background at 2000 px; the working mask is 250 px and soft.
    size, small = 2000, 250
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - 1000.3) ** 2 + (xx - 990.7) ** 2 < 600 ** 2
    image = np.where(inside[..., None], [0.2, 0.3, 0.6], [0.9, 0.85, 0.8]).astype(np.float32)
    truth = inside.astype(np.float32)
    small_mask = np.asarray(Image.fromarray(truth, "F").resize((small, small), Image.BILINEAR))
    bilinear = np.asarray(Image.fromarray(small_mask, "F").resize((size, size), Image.BILINEAR))
    guided = guided_upsample(image, small_mask)
    assert metrics.boundary_mae(guided, truth) < 0.5 * metrics.boundary_mae(bilinear, truth)


def test_row_bands_match_a_whole_image_resize():
    small = np.random.default_rng(0).random((37, 53)).astype(np.float32)
    whole = np.asarray(Image.fromarray(small, "F").resize((530, 1111), Image.BILINEAR))
    band = resize_rows(small, 530, 1111, 512, 1024)
    assert np.abs(band - whole[512:1024]).max() < 1e-4


def test_bands_side_by_side_cover_every_row_once_and_report_failures():
    seen, threads = [], set()
    written = np.zeros(1111, dtype=np.int32)

    def work(top: int, bottom: int) -> None:
        seen.append((top, bottom))
        threads.add(threading.current_thread().name)
        written[top:bottom] += 1

    in_bands(1111, work)
    assert sorted(seen) == [(0, 512), (512, 1024), (1024, 1111)] and (written == 1).all()
    assert all(name.startswith("bands") for name in threads)  # on the band threads, not this one

    def broken(top: int, bottom: int) -> None:
        if top:
            raise ValueError("band failed")

    with pytest.raises(ValueError, match="band failed"):
        in_bands(1111, broken)


def test_fusion_adds_only_regions_isnet_half_saw_and_ranks_them_below_its_own():
    main = np.zeros((200, 200), dtype=np.float32)
    main[60:140, 20:100] = 1.0  # the subject
    assist = main.copy()
    assist[60:140, 100:140] = 1.0  # a missed part, half-seen by the main model
    main[60:140, 100:140] = 0.05
    assist[60:140, 140:190] = 1.0  # a touching object the main model firmly rejected
    fused = fuse_masks(main, assist, min_area=0.01)
    assert 0.5 < fused[100, 120] <= ADDED_CEILING + 1e-6
    assert fused[100, 170] < 0.01
    assert np.all(fused[60:140, 20:100] == 1.0)


def dis5k_photo(name: str, max_side: int = 1400) -> tuple[np.ndarray, np.ndarray]:
    manifest = DIS5K / "manifest.csv"
    if not manifest.exists():
        loud_skip(f"DIS5K dev not found at {DIS5K} (../shared/data)")
    entry = next(e for e in csv.DictReader(open(manifest)) if e["id"] == name)
    image = decode_image((DIS5K / entry["image"]).read_bytes(), max_pixels=1 << 30)
    truth = np.asarray(Image.open(DIS5K / entry["gt_mask"]).convert("L"), dtype=np.float32) / 255 > 0.5
    step = max(1, max(image.shape[:2]) // max_side)
    return np.ascontiguousarray(image[::step, ::step]), truth[::step, ::step].astype(np.float32)


@pytest.mark.parametrize("name", ["te1-eyeglasses-4795824433", "te3-tablechair-2867809346"])
def test_an_object_photo_is_not_made_worse_than_the_models_mask(real_pipeline: Pipeline, name):
    # Both were ruined by the old chain (U^2-Net-p imported the table / the case: IoU 0.93 -> 0.31).
    image, truth = dis5k_photo(name)
    result = real_pipeline.cutout(image, CutoutOptions(foreground=False))
    assert metrics.iou(result.alpha, truth) >= metrics.iou(result.mask, truth) - 0.01
    assert metrics.mae(result.alpha, truth) <= metrics.mae(result.mask, truth)
    assert metrics.boundary_mae(result.alpha, truth) < metrics.boundary_mae(result.mask, truth)


def test_a_mask_without_a_confident_subject_has_no_outline_to_steepen():
    doubtful = np.zeros((100, 100), dtype=np.float32)
    doubtful[30:70, 30:70] = 0.6  # the model is unsure of everything it sees
    regions = split_soft_regions(doubtful)
    assert not regions.transition.any() and regions.matter[50, 50]


def test_fusion_refuses_a_half_seen_region_whose_colours_match_the_background_beside_it():
    main = np.zeros((200, 200), dtype=np.float32)
    main[60:140, 20:100] = 1.0
    main[60:140, 100:140] = 0.05  # half-seen by the main model
    assist = np.maximum(main, 0.0)
    assist[60:140, 20:140] = 1.0
    image = np.full((200, 200, 3), 0.8, dtype=np.float32)  # light floor
    image[60:140, 20:100] = [0.6, 0.1, 0.1]  # a red subject
    like_floor = fuse_masks(main, assist, image, min_area=0.01)
    assert like_floor[100, 120] < 0.1  # the extra region is the floor's colour: left out
    image[60:140, 100:140] = [0.6, 0.1, 0.1]  # now it is red like the subject
    like_subject = fuse_masks(main, assist, image, min_area=0.01)
    assert like_subject[100, 120] > 0.5


def test_doubt_is_steepened_without_overtaking_confident_values():
    from pipeline.edges import CONFIDENT_HIGH, CONFIDENT_LOW, steepen_doubt

    values = np.linspace(0, 1, 1001, dtype=np.float32)
    steep = steepen_doubt(values)
    assert np.all(np.diff(steep) >= 0)
    inside = (values > CONFIDENT_LOW) & (values < CONFIDENT_HIGH)
    assert np.all(steep[~inside] == values[~inside])  # confident values untouched
    assert steep[inside].min() >= CONFIDENT_LOW and steep[inside].max() <= CONFIDENT_HIGH
    assert steep[800] > values[800] and steep[200] < values[200]  # doubt leans to its side


def test_a_window_of_rows_and_columns_matches_a_whole_image_resize():
    small = np.random.default_rng(1).random((40, 60)).astype(np.float32)
    whole = np.asarray(Image.fromarray(small, "F").resize((600, 1000), Image.BILINEAR))
    piece = resize_rows(small, 600, 1000, 512, 1000, 130, 420)
    assert np.abs(piece - whole[512:1000, 130:420]).max() < 1e-4


@pytest.mark.parametrize("shape", [(1, 1), (2, 5), (37, 64)])
@pytest.mark.parametrize("radius", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_box_mean_is_scipys_reflecting_uniform_filter(shape, radius, dtype):
    from scipy import ndimage

    from pipeline.blur import box_mean

    array = np.random.default_rng(radius).random(shape).astype(dtype)
    ours, theirs = box_mean(array, radius), ndimage.uniform_filter(array, 2 * radius + 1, mode="reflect")
    assert ours.dtype == theirs.dtype == dtype and ours.shape == theirs.shape
    assert np.allclose(ours, theirs, atol=1e-6)


def test_cofactor_solve_matches_numpy():
    from pipeline.upsample import solve_symmetric_3x3

    rng = np.random.default_rng(2)
    base = rng.random((5, 7, 3, 3)).astype(np.float32)
    sigma = base @ base.transpose(0, 1, 3, 2) + 1e-2 * np.eye(3, dtype=np.float32)
    rhs = rng.random((5, 7, 3)).astype(np.float32)
    upper = {(i, j): sigma[..., i, j] for i in range(3) for j in range(i, 3)}
    expected = np.linalg.solve(sigma, rhs[..., None])[..., 0]
    assert np.allclose(solve_symmetric_3x3(upper, rhs), expected, rtol=1e-3, atol=1e-3)


def test_matting_refines_coverage_but_never_overturns_the_models_side():
    from pipeline.edges import SIDE_CEILING, SIDE_FLOOR, keep_model_side

    # A red subject on blue; the model reaches 30 px into the blue with a soft zone it calls subject
    # (0.9 -> 0.6), which the colours say is background, then a doubtful tail (0.4 -> 0.06).
    image = np.zeros((120, 240, 3), dtype=np.float32)
    image[:, :100] = (0.9, 0.1, 0.1)
    image[:, 100:] = (0.1, 0.2, 0.9)
    image += np.random.default_rng(3).normal(0, 0.02, image.shape).astype(np.float32)
    image = np.clip(image, 0, 1)
    mask = np.zeros((120, 240), dtype=np.float32)
    mask[:, :100] = 1.0
    mask[:, 100:130] = np.linspace(0.9, 0.6, 30, dtype=np.float32)[None, :]
    mask[:, 130:160] = np.linspace(0.4, 0.06, 30, dtype=np.float32)[None, :]
    regions = split_soft_regions(mask)
    notes: list[str] = []
    alpha, matted = Pipeline(device="cpu")._matte_soft_zones(image, mask, regions.matter,
                                                                  CutoutOptions(), notes)
    assert matted[:, 115:158].all(), notes  # the colours were trusted: the zone was matted
    assert (alpha[:, 115:130] >= SIDE_FLOOR - 1e-6).all()  # ... yet stays on the model's side
    assert (alpha[:, 130:158] <= SIDE_CEILING + 1e-6).all()
    # The matte did want to cross the model's 0.5 here: the clamp is what holds it.
    assert np.isclose(alpha[:, 115:158], SIDE_FLOOR).any() or np.isclose(alpha[:, 115:158], SIDE_CEILING).any()
    assert np.array_equal(keep_model_side(np.float32([0.2, 0.9]), np.float32([0.7, 0.3])),
                          np.float32([SIDE_FLOOR, SIDE_CEILING]))
