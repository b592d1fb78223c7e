"""The GPU path, tested on the CPU: same masks as onnxruntime, same matting quality as pymatting."""
from __future__ import annotations

import numpy as np
import pytest

from evaluation import metrics
from pipeline.cutout import CutoutOptions, Pipeline
from pipeline.matting.closed_form import estimate_alpha
from pipeline.matting.trimap import make_trimap
from pipeline.segment import photo_shaped_size
from tests.conftest import SMALL_SEGMENT_SIDE
from tests.pipeline.test_pipeline_stages import load

torch = pytest.importorskip("torch", reason="torch not installed: the [gpu] extra is needed for the torch path")


@pytest.fixture(scope="module")
def torch_pipeline(real_pipeline):
    torch.set_num_threads(2)
    return Pipeline(device="torch-cpu")


@pytest.fixture(scope="module")
def cpu_pipeline(real_pipeline):
    return Pipeline()


# Where the two paths are compared with each other, not with a truth, both ask ISNet at the smaller
# side (the CPU path: conftest's small_side_pipeline).
@pytest.fixture(scope="module")
def small_side_torch(real_pipeline):
    torch.set_num_threads(2)
    return Pipeline(device="torch-cpu", segment_side=SMALL_SEGMENT_SIDE)


def test_torch_segmentation_matches_onnxruntime(small_side_pipeline, small_side_torch):
    images = [load(name, 320)[0] for name in ("GT04", "GT01")] + [load("GT01", 320)[0][:200]]  # two shapes
    theirs = small_side_pipeline.segmenter("isnet")
    ours = small_side_torch.segmenter("isnet")
    reference = [theirs.predict_small(image) for image in images]
    batched = ours.predict_small_batch(images)  # one forward pass per network shape
    assert {mask.shape for mask in batched} == {mask.shape for mask in reference} and len(set(m.shape for m in batched)) == 2
    for mine, other in zip(batched, reference):
        assert mine.shape == other.shape  # the same photo-shaped grid as the CPU path
        difference = np.abs(mine - other)
        # Input resizing differs slightly (torch antialiased bilinear vs PIL); the network is the same.
        assert difference.mean() < 0.01 and np.quantile(difference, 0.999) < 0.2


def test_torch_segmenter_mixes_the_finer_view_like_the_cpu_path(cpu_pipeline, torch_pipeline):
    large = load("GT04", 1600)[0]  # long side past 1.5x the first view's: asked at 1152 px too
    ours = torch_pipeline.segmenter("isnet")
    shapes: list[tuple[int, ...]] = []
    forward = ours._forward
    ours._forward = lambda batch: shapes.append(tuple(batch.shape[2:])) or forward(batch)
    notes: list[list[str]] = [[]]
    try:
        mine = ours.predict_small_batch([large], notes=notes)[0]
    finally:
        ours._forward = forward
    assert len(notes[0]) == 1 and "mixed in" in notes[0][0]
    assert shapes == [ours.network_size(*large.shape[:2]), photo_shaped_size(*large.shape[:2], 1152, 32)]
    theirs = cpu_pipeline.segmenter("isnet").predict_small(large)
    one_view = cpu_pipeline.segmenter("isnet")._predict_at(large, ours.network_size(*large.shape[:2]), mirror=False)
    assert mine.shape == theirs.shape
    difference = np.abs(mine - theirs)
    assert difference.mean() < 0.01 and np.quantile(difference, 0.999) < 0.2
    assert np.abs(theirs - one_view).mean() > 2 * difference.mean()  # the mix changed more than the paths differ


def test_interpreter_keeps_size_arithmetic_on_the_host_and_drops_spent_activations(torch_pipeline):
    module = torch_pipeline.segmenter("isnet").module
    # Only float weights move with the module; integer constants (Resize targets) and Resize's float
    # scales stay host tensors.
    assert all(buffer.is_floating_point() for buffer in module.buffers())
    assert module._host_constants and all(not t.is_floating_point() or name in module._scales
                                          for name, t in module._host_constants.items())
    produced = {outputs[0] for _, _, outputs, _ in module.nodes} - {module.output_name}
    read = {name for _, inputs, _, _ in module.nodes for name in inputs}
    released = {name for names in module._released_after for name in names}
    assert released == produced & read  # every intermediate is dropped after its last reader


def test_torch_matting_matches_the_cpu_solver(troll_small):
    image, truth, _ = troll_small
    from pipeline.torch_path.matte import estimate_alpha_torch

    mask = (truth > 0.5).astype(np.float32) * 0.9 + 0.05  # a plausible soft mask
    trimap = make_trimap(mask)
    cpu = estimate_alpha(image, trimap, prior=mask)
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a))
    ours = estimate_alpha_torch(as_tensor(image.transpose(2, 0, 1)), as_tensor(trimap), as_tensor(mask)).numpy()
    assert abs(metrics.sad(ours, truth) - metrics.sad(cpu, truth)) <= 0.05 * metrics.sad(cpu, truth) + 0.2


@pytest.fixture(scope="module")
def troll_small():
    return load("GT04", 240)


def test_whole_torch_pipeline_on_cpu(small_side_torch, small_side_pipeline, troll_small):
    image, truth, _ = troll_small
    ours = small_side_torch.cutout_batch([image, image[:, ::-1].copy()], CutoutOptions())
    reference = small_side_pipeline.cutout(image, CutoutOptions())
    assert len(ours) == 2 and ours[0].alpha.shape == truth.shape
    assert metrics.sad(ours[0].alpha, truth) < 1.1 * metrics.sad(reference.alpha, truth) + 0.5
    single = small_side_torch.cutout(image, CutoutOptions())
    assert np.abs(single.alpha - ours[0].alpha).mean() < 1e-3  # batching changes nothing per image
    mirrored_error = np.abs(ours[1].alpha[:, ::-1] - ours[0].alpha).mean()
    assert mirrored_error < np.abs(ours[1].alpha - ours[0].alpha).mean()  # results stay with their images
    assert ours[0].foreground.shape == image.shape


def test_batch_refined_side_by_side_gives_the_same_cutouts(troll_small):
    image, _, _ = troll_small
    images = [image, image[:, ::-1].copy(), image[::-1].copy()]
    alone = Pipeline(refine_threads=1, segment_side=SMALL_SEGMENT_SIDE).cutout_batch(images, CutoutOptions())
    side_by_side = Pipeline(refine_threads=3, segment_side=SMALL_SEGMENT_SIDE)
    assert side_by_side._refine_pool() is not None
    together = side_by_side.cutout_batch(images, CutoutOptions())
    for one, other in zip(alone, together):  # in order, and unchanged by the threads
        assert np.array_equal(one.alpha, other.alpha) and np.array_equal(one.foreground, other.foreground)


def test_compose_rgba_on_device():
    from pipeline.torch_path.matte import compose_rgba_torch

    foreground = torch.ones(3, 4, 5) * 0.5
    alpha = torch.zeros(4, 5)
    alpha[1:3, 1:4] = 1.0
    rgba = compose_rgba_torch(foreground, alpha)
    assert rgba.shape == (4, 5, 4) and rgba.dtype == torch.uint8
    assert rgba[0, 0].tolist() == [0, 0, 0, 0] and rgba[1, 1].tolist() == [128, 128, 128, 255]


def _blobby_mask(seed: int, shape=(120, 160)) -> np.ndarray:
    """A soft mask with crisp outlines, a wide grey zone and confident interiors."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    mask = np.clip(1.6 - np.hypot(ys - 60, xs - 70) / 30, 0, 1)  # a disc with a soft rim
    mask[:, 120:] = np.clip((xs[:, 120:] - 130) / 3, 0, 1)  # a crisp step
    mask[10:30, 10:50] = rng.uniform(0.2, 0.8, (20, 40))  # a wide grey zone
    return mask.astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1])
def test_device_soft_regions_and_settling_match_the_numpy_steps(seed):
    from pipeline import edges
    from pipeline.torch_path import refine as on_device

    mask = _blobby_mask(seed)
    regions = edges.split_soft_regions(mask)
    transition, matter = on_device.split_soft_regions(torch.from_numpy(mask))
    assert np.array_equal(transition.numpy(), regions.transition) and np.array_equal(matter.numpy(), regions.matter)
    assert regions.transition.any() and regions.matter.any()
    settled = on_device.settle_confident_interiors(torch.from_numpy(mask)).numpy()
    assert np.array_equal(settled, edges.settle_confident_interiors(mask))
    unsure = np.where(mask > 0.5, 0.8, mask * 0.5).astype(np.float32)  # a subject drawn grey inside
    settled = on_device.settle_confident_interiors(torch.from_numpy(unsure)).numpy()
    assert np.array_equal(settled, edges.settle_confident_interiors(unsure)) and (settled == 1.0).any()
    # A doubtful, textured subject: specks below the cut, whose reach is a disk on both paths.
    speckled = np.where(np.random.default_rng(seed).random(mask.shape) < 0.003, 0.4, 0.8).astype(np.float32)
    settled = on_device.settle_confident_interiors(torch.from_numpy(speckled)).numpy()
    assert np.array_equal(settled, edges.settle_confident_interiors(speckled)) and (settled == 1.0).any()
    whole = np.full((20, 20), 0.97, np.float32)  # nothing to measure from: nothing settles, as scipy's -1
    assert np.array_equal(on_device.settle_confident_interiors(torch.from_numpy(whole)).numpy(), whole)
    from scipy import ndimage

    assert np.array_equal(on_device.dilate_cross(torch.from_numpy(regions.transition), 2).numpy(),
                          ndimage.binary_dilation(regions.transition, iterations=2))


def test_device_guided_upsample_matches_the_numpy_one(troll_small):
    from pipeline.torch_path import refine as on_device
    from pipeline.upsample import guided_coefficients, guided_upsample

    image, truth, _ = troll_small
    small_h, small_w = image.shape[0] // 2, image.shape[1] // 2
    from pipeline.segment import resize_float

    small_image = np.clip(resize_float(image, small_w, small_h), 0, 1)
    small_alpha = np.clip(resize_float(truth, small_w, small_h), 0, 1)
    chw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))
    ours_a, ours_b = on_device.guided_coefficients(chw(small_image), torch.from_numpy(small_alpha))
    theirs_a, theirs_b = guided_coefficients(small_image, small_alpha)
    assert np.allclose(ours_a.numpy().transpose(1, 2, 0), theirs_a, atol=2e-3)
    assert np.allclose(ours_b.numpy(), theirs_b, atol=2e-3)
    ours = on_device.guided_upsample(chw(image), chw(small_image), torch.from_numpy(small_alpha)).numpy()
    theirs = guided_upsample(image, small_alpha, small_image=small_image)
    assert np.abs(ours - theirs).mean() < 2e-3 and np.quantile(np.abs(ours - theirs), 0.999) < 0.05


def test_device_refinement_cuts_out_like_the_numpy_chain(torch_pipeline, cpu_pipeline):
    """The whole refinement on the device against the NumPy one, from the same model mask."""
    from pipeline.segment import resize_float

    for name in ("GT04", "GT01"):
        image, truth, _ = load(name, 600)
        mask = cpu_pipeline.segmenter("isnet").predict_small(image)
        small = np.clip(resize_float(mask, mask.shape[1] // 2, mask.shape[0] // 2), 0, 1)  # a grid below the photo's
        for model_mask in (mask, small):
            ours = torch_pipeline._refine(image, model_mask, None, CutoutOptions(), {})
            theirs = cpu_pipeline._refine(image, model_mask, None, CutoutOptions(), {})
            assert ours.alpha.shape == theirs.alpha.shape == truth.shape and ours.foreground.shape == image.shape
            # The two matting solvers differ a little (see test_torch_matting_matches_the_cpu_solver).
            assert abs(metrics.sad(ours.alpha, truth) - metrics.sad(theirs.alpha, truth)) <= 0.05 * metrics.sad(theirs.alpha, truth) + 0.3
            assert abs(metrics.iou(ours.alpha, truth) - metrics.iou(theirs.alpha, truth)) < 0.01
            assert [n.split("(")[0] for n in ours.notes] == [n.split("(")[0] for n in theirs.notes]
            # Without matting every step is the same arithmetic: the alphas agree pixel by pixel.
            unmatted = CutoutOptions(matting=False)
            ours = torch_pipeline._refine(image, model_mask, None, unmatted, {})
            theirs = cpu_pipeline._refine(image, model_mask, None, unmatted, {})
            difference = np.abs(ours.alpha - theirs.alpha)
            assert difference.mean() < 2e-3 and np.quantile(difference, 0.999) < 0.05


def test_warm_runs_each_shape_once(torch_pipeline):
    segmenter = torch_pipeline.segmenter("isnet")
    shapes = []
    original = segmenter._forward
    segmenter._forward = lambda batch: shapes.append(tuple(batch.shape)) or original(batch)
    try:
        segmenter.warm(((64, 96), (96, 64)))
    finally:
        segmenter._forward = original
    assert shapes == [(1, 3, 64, 96), (1, 3, 96, 64)]


def test_phone_shapes_are_what_a_phone_photo_is_asked_at(torch_pipeline):
    segmenter = torch_pipeline.segmenter("isnet")
    side = segmenter.input_size[0]
    shapes = segmenter.phone_shapes(side)
    assert set(shapes[:2]) == {segmenter.network_size(3000, 4000), segmenter.network_size(4000, 3000)}
    assert shapes[-1] == segmenter.input_size


def test_the_person_matte_warms_each_working_shape(torch_pipeline):
    matter = torch_pipeline.person_matter()
    seen = []
    original = matter.module.forward
    matter.module.forward = lambda x, **inputs: seen.append(tuple(x.shape)) or original(x, **inputs)
    try:
        matter.warm(((64, 96), (96, 64)))
    finally:
        del matter.module.forward
    assert seen == [(1, 3, 64, 96), (1, 3, 96, 64)]


def test_device_refinement_takes_the_second_opinion_like_the_numpy_chain(torch_pipeline, cpu_pipeline):
    """GT27's yarn, drawn grey by ISNet: the device chain asks U²-Net-p (through the torch
    interpreter) where the NumPy chain asks onnxruntime's, and decides the same strands."""
    image, truth, _ = load("GT27", 800)
    mask = cpu_pipeline.segmenter("isnet").predict_small(image)
    ours = torch_pipeline._refine(image, mask, None, CutoutOptions(), {})
    theirs = cpu_pipeline._refine(image, mask, None, CutoutOptions(), {})
    assert any(note.startswith("u2netp decided") for note in ours.notes)
    assert [n.split(" ")[0] for n in ours.notes] == [n.split(" ")[0] for n in theirs.notes]
    assert abs(metrics.sad(ours.alpha, truth) - metrics.sad(theirs.alpha, truth)) <= 0.05 * metrics.sad(theirs.alpha, truth)
    assert abs(metrics.iou(ours.alpha, truth) - metrics.iou(theirs.alpha, truth)) < 0.01
    assert metrics.sad(ours.alpha, truth) < metrics.sad(mask_at(mask, truth.shape), truth)


def mask_at(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from pipeline.segment import resize_float

    return np.clip(resize_float(mask, shape[1], shape[0]), 0, 1)


def test_a_smaller_segmentation_side_is_honoured_as_on_the_cpu_path(real_pipeline):
    """CUTOUT_SEGMENT_SIDE (Pipeline(segment_side=...)) shrinks the network input on both paths alike,
    and a shrunk first view is never followed by the finer one."""
    ours = Pipeline(device="torch-cpu", segment_side=512).segmenter("isnet")
    theirs = Pipeline(segment_side=512).segmenter("isnet")
    for height, width in ((3000, 4000), (4000, 3000), (225, 320)):
        assert ours.network_size(height, width) == theirs.network_size(height, width)
        assert max(ours.network_size(height, width)) == 512
    assert ours.fine_side is None and theirs.fine_side is None and not ours.asks_twice(3000, 4000)


def test_reading_convergence_every_few_steps_stops_matting_where_every_step_would(troll_small, monkeypatch):
    from pipeline.torch_path import matte

    image, truth, _ = troll_small
    mask = (truth > 0.5).astype(np.float32) * 0.9 + 0.05
    trimap = make_trimap(mask)
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a))
    inputs = (as_tensor(image.transpose(2, 0, 1)), as_tensor(trimap))
    for prior in (as_tensor(mask), None):  # one level with the prior, three without
        every_step = matte.estimate_alpha_torch(*inputs, prior, tolerance=1e-3)
        monkeypatch.setattr(matte, "CPU_CHECK_EVERY", 16)  # as on a GPU: up to 15 steps past convergence
        every_16 = matte.estimate_alpha_torch(*inputs, prior, tolerance=1e-3)
        monkeypatch.setattr(matte, "CPU_CHECK_EVERY", 1)
        assert torch.equal(every_step, every_16)
        more_steps = matte.estimate_alpha_torch(*inputs, prior, tolerance=1e-4)
        assert not torch.equal(every_step, more_steps)  # the steps past convergence would have moved it


def test_batches_overlapping_on_the_pipeline_thread_give_the_same_cutouts(small_side_torch, troll_small):
    """start_cutout_batch segments on the calling (pipeline) thread and refines in the pool: its
    futures answer as cutout_batch does, each with its own photo; the CPU path answers in place."""
    from concurrent.futures import Future

    image, _, _ = troll_small
    photos = [image, image[:, ::-1].copy()]  # one size: one batch, refined side by side
    expected = small_side_torch.cutout_batch(photos)
    handed = small_side_torch.start_cutout_batch(photos)
    assert all(isinstance(one, Future) for one in handed)
    for future, reference in zip(handed, expected):
        assert np.array_equal(future.result(30).alpha, reference.alpha)
    in_place = Pipeline(device="cpu").start_cutout_batch([image[:120].copy()], CutoutOptions())
    assert not isinstance(in_place[0], Future) and in_place[0].alpha.shape == (120, image.shape[1])


def test_the_second_opinion_is_asked_ahead_on_the_pipeline_thread_with_the_same_answer(torch_pipeline):
    """GT27's yarn asks U²-Net-p. Asked ahead (the default), the second model runs on the thread
    that segments the batch, once per network shape, and the refine threads only take its answer;
    the cutouts are those of each refinement asking it itself (to the network's rounding: photos of
    one shape share a forward pass ahead, each has its own later)."""
    import threading

    yarn = load("GT27", 800)[0]
    plain = load("GT04", 320)[0]
    second = torch_pipeline.second_opinion_segmenter()
    forward = second._forward
    askers: list[str] = []
    second._forward = lambda batch: askers.append(threading.current_thread().name) or forward(batch)
    try:
        answers = {}
        for ahead in (False, True):
            torch_pipeline.second_opinion_ahead = ahead
            askers.clear()
            results = [future.result(120) for future in torch_pipeline.start_cutout_batch([yarn, plain])]
            answers[ahead] = (results, list(askers))
    finally:
        del second._forward
        torch_pipeline.second_opinion_ahead = True
    (asked_later, later_threads), (asked_ahead, ahead_threads) = answers[False], answers[True]
    asked = [index for index, later in enumerate(asked_later) if "second_opinion" in later.timings]
    assert 0 in asked and len(later_threads) == len(asked)  # each refinement that asked, once
    assert all(name.startswith("refine") for name in later_threads)
    assert ahead_threads == [threading.current_thread().name] * len(ahead_threads)
    assert 1 <= len(ahead_threads) <= len(asked)  # one pass per network shape, not per photo
    assert any(note.startswith("u2netp decided") for note in asked_ahead[0].notes)
    for index, (ahead, later) in enumerate(zip(asked_ahead, asked_later)):
        assert ("second_opinion_ahead" in ahead.timings) == (index in asked)
        difference = np.abs(ahead.alpha - later.alpha)
        assert difference.mean() < 1e-4 and (difference > 2 / 255).mean() < 1e-3 and ahead.notes == later.notes


def test_a_second_opinion_that_fails_ahead_leaves_the_batch_cut_out_with_isnet_alone(torch_pipeline, caplog):
    """The second opinion is optional: if U²-Net-p fails on the pipeline thread, the batch's photos are
    still cut out (ISNet's undecided regions as drawn, as with the model unavailable) and it is logged."""
    yarn = load("GT27", 800)[0]
    second = torch_pipeline.second_opinion_segmenter()
    second.first_view_groups = lambda photos: (_ for _ in ()).throw(RuntimeError("CUDA error: out of memory"))
    try:
        result = torch_pipeline.cutout_batch([yarn])[0]
    finally:
        del second.first_view_groups
    assert result.subject_found and not any(note.startswith("u2netp decided") for note in result.notes)
    assert "second opinion failed" in caplog.text
