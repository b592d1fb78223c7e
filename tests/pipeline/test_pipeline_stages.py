"""Each pipeline stage on real photos (alphamatting.com GT04 / GT01 with ground truth)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from evaluation import metrics
from pipeline.colour_prior import refine_mask_with_colour
from pipeline.cutout import CutoutOptions
from pipeline.decode import decode_image
from pipeline.fuse import fuse_masks
from pipeline.matting.closed_form import estimate_alpha, guided_filter
from pipeline.matting.foreground import estimate_foreground
from pipeline.matting.knn import knn_alpha
from pipeline.matting.trimap import make_trimap, split_trimap
from tests.conftest import ALPHAMATTING, shared_image


def load(name: str, max_side: int = 400):
    image = Image.open(shared_image(name)).convert("RGB")
    truth = Image.open(ALPHAMATTING / "gt_alpha" / f"{name}.png").convert("L")
    trimap = Image.open(ALPHAMATTING / "trimap1" / f"{name}.png").convert("L")
    size = image.size
    scale = max_side / max(size)
    new = (round(size[0] * scale), round(size[1] * scale))
    return (np.asarray(image.resize(new, Image.BILINEAR), dtype=np.float32) / 255,
            np.asarray(truth.resize(new, Image.BILINEAR), dtype=np.float32) / 255,
            np.asarray(trimap.resize(new, Image.NEAREST), dtype=np.float32) / 255)


@pytest.fixture(scope="module")
def troll():
    return load("GT04")


@pytest.fixture(scope="module")
def troll_mask(real_pipeline, troll):
    return real_pipeline.segmenter("isnet").predict(troll[0])


def test_segmentation_finds_the_subject_at_full_resolution(troll, troll_mask):
    image, truth, _ = troll
    assert troll_mask.shape == truth.shape and troll_mask.dtype == np.float32
    assert 0.0 <= troll_mask.min() and troll_mask.max() <= 1.0
    assert metrics.iou(troll_mask, truth) > 0.65  # measured 0.70: the green troll's hair is the hard part


def test_segmenter_handles_other_aspect_ratios(real_pipeline, troll):
    image, truth, _ = troll
    tall = np.ascontiguousarray(image[:, 40:220])  # the pink troll alone, portrait orientation
    mask = real_pipeline.segmenter("isnet").predict(tall)
    assert mask.shape == tall.shape[:2]
    assert metrics.iou(mask, truth[:, 40:220]) > 0.6


def test_isnet_freed_from_its_square_matches_the_native_graph_and_runs_at_the_photo_shape(real_pipeline, troll):
    from models import ensure_model, get_spec
    from pipeline.segment import Segmenter

    image, truth, _ = troll
    spec = get_spec("isnet")
    path = ensure_model(spec)
    native = Segmenter(spec, path, keep_aspect=False)
    assert native.size_multiple is None and native.network_size(600, 800) == (1024, 1024)
    photo = Segmenter(spec, path, keep_aspect=True)
    assert photo.size_multiple == 32  # ISNet's smallest resize target is 1024 / 32
    assert photo.network_size(600, 800) == (768, 1024)
    assert photo.network_size(1200, 900) == (1024, 768)
    assert photo.network_size(300, 3000) == (512, 1024)  # panoramas stretched no further than 2:1

    # Same weights, same square input: the rewritten graph computes what the original does.
    square_input = native.preprocess(image)
    same = photo.run_batch(square_input)[0]
    original = native.run_batch(square_input)[0]
    assert np.abs(same - original).mean() < 0.01

    photo_mask = photo.predict(image)
    assert photo.preprocess(image).shape[2:] == photo.network_size(*image.shape[:2]) != (1024, 1024)
    assert photo_mask.shape == image.shape[:2]
    assert metrics.iou(photo_mask, native.predict(image)) > 0.8
    assert metrics.iou(photo_mask, truth) > 0.65


def test_isnet_asks_at_the_square_when_the_photo_shape_finds_no_subject(real_pipeline, troll):
    from models import ensure_model, get_spec
    from pipeline.segment import Segmenter

    spec = get_spec("isnet")
    segmenter = Segmenter(spec, ensure_model(spec))
    asked: list[tuple[int, int]] = []
    predict_at = segmenter._predict_at
    segmenter._predict_at = lambda image, size, mirror=True: asked.append(size) or predict_at(image, size, mirror)

    segmenter.predict(troll[0])  # a subject: the photo shape is enough
    assert asked == [segmenter.network_size(*troll[0].shape[:2])]
    asked.clear()
    blank = np.full((600, 800, 3), 0.5, np.float32)  # nothing to find
    mask = segmenter.predict(blank)
    assert asked == [(768, 1024), (1024, 1024)]
    assert mask.shape == (600, 800) and float((mask > 0.5).mean()) < 0.05


def test_mixing_two_views_moves_only_what_the_first_doubts():
    from pipeline.segment import mix_views, subject_agreement

    first = np.array([[0.0, 1.0, 0.5, 0.9, 0.1]], np.float32)
    fine = np.array([[1.0, 0.0, 0.2, 1.0, 0.0]], np.float32)
    mixed = mix_views(first, fine)
    assert mixed[0, 0] == 0.0 and mixed[0, 1] == 1.0  # a sure first view stays, whatever the second says
    assert mixed[0, 2] == pytest.approx(0.2)  # where the first is undecided, the finer view decides
    assert 0.9 < mixed[0, 3] < 1.0 and 0.0 < mixed[0, 4] < 0.1  # a little doubt, a little move
    assert subject_agreement(first, fine) == pytest.approx(1 / 3)  # subjects {1, 3} and {0, 3}
    assert subject_agreement(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0


def test_a_large_photo_is_also_asked_at_the_finer_side_and_the_views_mixed(real_pipeline):
    from models import ensure_model, get_spec
    from pipeline.segment import Segmenter, mix_views, photo_shaped_size, resize_float

    spec = get_spec("isnet")
    assert spec.fine_side == 1152
    segmenter = Segmenter(spec, ensure_model(spec))
    asked: list[tuple[int, int]] = []
    predict_at = segmenter._predict_at
    segmenter._predict_at = lambda image, size, mirror=True: asked.append(size) or predict_at(image, size, mirror)

    small, _, _ = load("GT04", 1200)  # a 1 MP photo: the first view sees most of its pixels
    segmenter.predict_small(small)
    assert asked == [segmenter.network_size(*small.shape[:2])]
    asked.clear()
    large, truth, _ = load("GT04", 1600)
    notes: list[str] = []
    mask = segmenter.predict_small(large, notes=notes)
    assert len(notes) == 1 and "1152 px" in notes[0] and "mixed in" in notes[0]
    size, fine_size = segmenter.network_size(*large.shape[:2]), photo_shaped_size(*large.shape[:2], 1152, 32)
    assert asked == [size, fine_size] and fine_size[1] == 1152
    first, fine = predict_at(large, size, False), predict_at(large, fine_size, False)
    expected = mix_views(first, np.clip(resize_float(fine, size[1], size[0]), 0, 1))
    assert mask.shape == size and np.abs(mask - expected).max() < 1e-5
    assert metrics.iou(resize_float(mask, 1600, truth.shape[0]), truth) > 0.65

    # Views that disagree about what the subject is are not mixed: the first one stands.
    segmenter._predict_at = lambda image, asked_size, mirror=True: (1.0 - fine) if asked_size == fine_size else first
    notes.clear()
    assert np.array_equal(segmenter.predict_small(large, notes=notes), first)
    assert "disagreed" in notes[0] and "first view kept" in notes[0]
    one_view = Segmenter(spec, ensure_model(spec), fine_views=False)
    assert one_view.fine_side is None and np.abs(one_view.predict_small(large) - first).max() < 1e-5


def test_isnet_at_a_smaller_input_side_keeps_the_photo_shape(real_pipeline, troll):
    from models import ensure_model, get_spec
    from pipeline.segment import Segmenter

    image, truth, _ = troll
    spec = get_spec("isnet")
    smaller = Segmenter(spec, ensure_model(spec), input_side=768)
    assert smaller.input_size == (768, 768) and smaller.network_size(600, 800) == (576, 768)
    assert metrics.iou(smaller.predict(image), truth) > 0.65


def test_a_graph_without_constant_resize_sizes_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from models.free_input_size import GraphNotResizable, graph_with_free_input_size

    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 16, 16])], [scales])
    path = tmp_path / "scales.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(GraphNotResizable):
        graph_with_free_input_size(path, 8)


def test_u2netp_and_fusion_keep_only_attached_extras(real_pipeline, troll, troll_mask):
    assist = real_pipeline.segmenter("u2netp").predict(troll[0])
    assert assist.shape == troll_mask.shape
    stray = np.zeros_like(troll_mask)
    stray[:20, :20] = 1.0  # a blob far from the subject
    fused = fuse_masks(troll_mask, np.maximum(assist, stray))
    assert np.all(fused >= troll_mask - 1e-6)
    assert fused[:15, :15].max() < 0.5 or troll_mask[:15, :15].max() >= 0.5


def test_trimap_band_is_wider_where_the_mask_is_soft():
    mask = np.zeros((200, 400), dtype=np.float32)
    mask[50:150, 20:120] = 1.0  # crisp square on the left
    mask[50:150, 250:350] = 1.0  # fuzzy square on the right
    soft = np.linspace(0.0, 1.0, 30, dtype=np.float32)
    mask[50:150, 220:250] = soft[None, :]
    mask[50:150, 350:380] = soft[None, ::-1]
    trimap = make_trimap(mask)
    _, _, unknown = split_trimap(trimap)
    assert set(np.unique(trimap)) <= {0.0, 0.5, 1.0}
    assert unknown[100, :200].sum() < unknown[100, 200:].sum()
    assert trimap[100, 70] == 1.0 and trimap[100, 190] == 0.0 and trimap[100, 300] == 1.0


def test_trimap_counts_the_deep_interior_of_a_fairly_confident_mask_as_foreground():
    mask = np.zeros((200, 200), dtype=np.float32)
    mask[20:180, 20:180] = 0.85  # a model unsure about the inside of a big subject (a face, a sweater)
    trimap = make_trimap(mask)
    assert trimap[100, 100] == 1.0  # deep inside: foreground
    assert trimap[22, 100] == 0.5  # near the edge: still for the matting to decide
    assert trimap[5, 5] == 0.0


def test_a_subject_the_model_was_unsure_of_is_solid_inside_and_keeps_its_outline():
    from pipeline.edges import SOLID_DEPTH, settle_confident_interiors

    # A doll's dress the model drew at 0.88 all over, one soft stripe (a strand gap) inside it.
    mask = np.zeros((80, 80), np.float32)
    mask[10:70, 10:70] = 0.88
    mask[10:70, 40] = 0.3
    settled = settle_confident_interiors(mask)
    rows, cols = np.indices(mask.shape)
    to_cut = np.minimum.reduce([rows - 10, 69 - rows, cols - 10, 69 - cols, np.abs(cols - 40) - 1])
    deep = (mask >= 0.5) & (to_cut >= SOLID_DEPTH)
    assert deep.any() and (settled[deep] == 1.0).all()  # not 12 % see-through
    near = (mask >= 0.5) & (to_cut < SOLID_DEPTH)
    assert np.array_equal(settled[near], mask[near])  # the outline keeps the model's values (max F)
    assert (settled[:, 40][10:70] == 0.3).all()  # the gap stays a gap
    assert (settled[mask == 0] == 0).all()


def test_the_solid_reach_around_a_speck_is_round_not_a_square():
    from pipeline.edges import SOLID_DEPTH, settle_confident_interiors

    # A sweater drawn at 0.8 with one speck of its texture below the cut.
    mask = np.zeros((60, 60), np.float32)
    mask[5:55, 5:55] = 0.8
    mask[30, 30] = 0.4
    settled = settle_confident_interiors(mask)
    assert settled[30, 30 + SOLID_DEPTH] == 0.8  # within the reach straight along a row: kept
    # Diagonally 7 px each way is 9.9 px away: solid (a chessboard reach left a grey square there).
    assert settled[37, 37] == 1.0 and settled[23, 23] == 1.0
    assert settled[30, 30] == np.float32(0.4)


def test_matting_given_the_ground_truth_trimap_is_close_to_truth(troll):
    image, truth, trimap = troll
    alpha = estimate_alpha(image, trimap)
    region = (trimap > 0.1) & (trimap < 0.9)
    assert metrics.sad(alpha, truth, region) < 0.5 * metrics.sad(np.full_like(truth, 0.5), truth, region)
    assert np.all(alpha[trimap > 0.9] == 1.0) and np.all(alpha[trimap < 0.1] == 0.0)


def test_matting_at_capped_resolution_stays_close(troll):
    image, truth, trimap = troll
    full = estimate_alpha(image, trimap)
    capped = estimate_alpha(image, trimap, max_side=200)
    assert capped.shape == full.shape
    assert np.abs(capped - full).mean() < 0.03


def test_knn_matting_finds_colour_twins_far_from_the_known_region():
    rng = np.random.default_rng(1)
    red, blue = np.array([0.9, 0.1, 0.1]), np.array([0.1, 0.1, 0.9])
    image = np.empty((60, 90, 3), dtype=np.float32)
    image[:, :30], image[:, 60:] = red, blue
    # The unknown middle is a speckle of subject-red and background-blue pixels, 30 px from either side.
    speckle = rng.random((60, 30)) < 0.5
    image[:, 30:60] = np.where(speckle[..., None], red, blue)
    is_fg = np.zeros((60, 90), dtype=bool)
    is_fg[:, :30] = True
    is_unknown = np.zeros_like(is_fg)
    is_unknown[:, 30:60] = True
    alpha = knn_alpha(image, is_fg, is_unknown)[:, 30:60]
    assert alpha[speckle].mean() > 0.9 and alpha[~speckle].mean() < 0.1


def test_blending_in_knn_matting_lowers_the_error_given_a_trimap(troll):
    image, truth, trimap = troll
    region = (trimap > 0.1) & (trimap < 0.9)
    closed_form_only = estimate_alpha(image, trimap, nonlocal_weight=0.0)
    blended = estimate_alpha(image, trimap)
    assert metrics.sad(blended, truth, region) < metrics.sad(closed_form_only, truth, region)


def test_a_huge_unknown_band_is_solved_within_the_pixel_budget(troll):
    image, truth, trimap = troll
    region = (trimap > 0.1) & (trimap < 0.9)
    full = estimate_alpha(image, trimap, nonlocal_weight=0.0)
    budgeted = estimate_alpha(image, trimap, nonlocal_weight=0.0, max_unknown=int(region.sum()) // 4)
    assert np.abs(budgeted - full)[region].mean() < 0.05
    # Half resolution costs hair detail at this small size (measured 4.0 vs 2.8), but stays sane.
    assert metrics.sad(budgeted, truth, region) < 1.6 * metrics.sad(full, truth, region)


def test_refinement_beats_the_raw_mask_on_hair(troll, troll_mask):
    image, truth, _ = troll
    refined, reliability = refine_mask_with_colour(image, troll_mask)
    assert 0.0 <= reliability <= 1.0
    alpha = estimate_alpha(image, make_trimap(refined), prior=refined)
    assert metrics.sad(alpha, truth) < 0.9 * metrics.sad(troll_mask, truth)  # measured 14.7 vs 17.4


def test_guided_filter_preserves_edges():
    guide = np.zeros((50, 50), dtype=np.float32)
    guide[:, 25:] = 1.0
    blurry = np.clip(np.linspace(-1, 2, 50, dtype=np.float32), 0, 1)[None, :].repeat(50, 0)
    out = guided_filter(guide, blurry, radius=4, eps=1e-4)
    jump_out = out[:, 25] - out[:, 24]
    jump_in = blurry[:, 25] - blurry[:, 24]
    assert np.all(jump_out > 4 * jump_in)  # the transition snaps to the guide's edge


def test_foreground_estimation_removes_the_old_background_colour():
    rng = np.random.default_rng(0)
    height, width = 60, 80
    alpha = np.tile(np.linspace(0, 1, width, dtype=np.float32), (height, 1))
    fg_colour = np.array([0.9, 0.8, 0.1], np.float32)
    bg_colour = np.array([0.0, 0.2, 1.0], np.float32)
    image = alpha[:, :, None] * fg_colour + (1 - alpha[:, :, None]) * bg_colour
    image += rng.normal(0, 0.005, image.shape).astype(np.float32)
    foreground = estimate_foreground(np.clip(image, 0, 1), alpha)
    soft = (alpha > 0.2) & (alpha < 0.8)
    assert np.abs(foreground[soft] - fg_colour).mean() < 0.08
    assert np.abs(image[soft] - fg_colour).mean() > 0.2  # the naive colour was far off


def test_whole_cutout_on_a_hairy_portrait(real_pipeline, troll):
    image, truth, _ = troll
    result = real_pipeline.cutout(image, CutoutOptions())
    assert result.subject_found and result.alpha.shape == truth.shape
    assert metrics.sad(result.alpha, truth) < metrics.sad(result.mask, truth)
    partial = (result.alpha > 0.05) & (result.alpha < 0.95)
    assert partial.mean() > 0.01  # soft hair edges are kept
    assert {"segment", "matte", "outline", "foreground"} <= set(result.timings)
    assert any("matted soft zones" in note for note in result.notes)
    plain = real_pipeline.cutout(image, CutoutOptions(matting=False, full_resolution=False))
    assert np.allclose(plain.alpha, plain.mask)


def test_blank_image_has_no_subject(real_pipeline):
    blank = np.full((200, 300, 3), 0.5, dtype=np.float32)
    result = real_pipeline.cutout(blank, CutoutOptions())
    assert not result.subject_found or result.notes


def test_library_entry_point_decodes_and_cuts(real_pipeline):
    import pipeline

    image = decode_image(shared_image("GT01").read_bytes())
    image = image[::4, ::4]  # small: this checks the wiring, not the quality
    result = pipeline.cutout(image, CutoutOptions(matting=False))
    assert result.alpha.shape == image.shape[:2] and result.subject_found


def test_the_cpu_path_cuts_out_where_torch_is_not_installed(real_pipeline):
    """torch is the [gpu] extra: a CPU-only install (torch absent) must still build the pipeline and
    cut out. Run in a fresh interpreter where importing torch fails."""
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import sys; sys.modules['torch'] = None\n"  # `import torch` now raises ImportError
        "import numpy as np\n"
        "from pipeline.cutout import Pipeline\n"
        "image = np.zeros((96, 128, 3), np.float32); image[24:72, 32:96] = (0.9, 0.2, 0.1)\n"
        "result = Pipeline(device='cpu').cutout(image)\n"
        "print('cut', result.alpha.shape, 'torch' in sys.modules and sys.modules['torch'] is not None)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "cut (96, 128) False" in done.stdout
