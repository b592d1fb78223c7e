"""The GPU path, tested on the CPU: same masks as onnxruntime, same matting quality as pymatting."""
from __future__ import annotations

import numpy as np
import pytest

from evaluation import metrics
from pipeline.cutout import CutoutOptions, Pipeline
from pipeline.matte import estimate_alpha
from pipeline.trimap import make_trimap
from tests.pipeline.test_pipeline_stages import load

torch = pytest.importorskip("torch", reason="torch not installed: the [gpu] extra is needed for the torch path")


@pytest.fixture(scope="module")
def torch_pipeline(real_pipeline):
    torch.set_num_threads(2)
    return Pipeline(device="torch-cpu")


@pytest.fixture(scope="module")
def cpu_pipeline(real_pipeline):
    return Pipeline()


def test_torch_segmentation_matches_onnxruntime(cpu_pipeline, torch_pipeline):
    images = [load(name, 320)[0] for name in ("GT04", "GT01")] + [load("GT01", 320)[0][:200]]  # two shapes
    theirs = cpu_pipeline.segmenter("isnet")
    ours = torch_pipeline.segmenter("isnet")
    reference = [theirs.predict_small(image) for image in images]
    batched = ours.predict_small_batch(images)  # one forward pass per network shape
    assert {mask.shape for mask in batched} == {mask.shape for mask in reference} and len(set(m.shape for m in batched)) == 2
    for mine, other in zip(batched, reference):
        assert mine.shape == other.shape  # the same photo-shaped grid as the CPU path
        difference = np.abs(mine - other)
        # Input resizing differs slightly (torch antialiased bilinear vs PIL); the network is the same.
        assert difference.mean() < 0.01 and np.quantile(difference, 0.999) < 0.2


def test_interpreter_keeps_size_arithmetic_on_the_host_and_drops_spent_activations(torch_pipeline):
    module = torch_pipeline.segmenter("isnet").module
    # Only float weights move with the module; integer constants (Resize targets) stay host tensors.
    assert all(buffer.is_floating_point() for buffer in module.buffers())
    assert module._host_constants and all(not t.is_floating_point() for t in module._host_constants.values())
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


def test_whole_torch_pipeline_on_cpu(torch_pipeline, cpu_pipeline, troll_small):
    image, truth, _ = troll_small
    ours = torch_pipeline.cutout_batch([image, image[:, ::-1].copy()], CutoutOptions())
    reference = cpu_pipeline.cutout(image, CutoutOptions())
    assert len(ours) == 2 and ours[0].alpha.shape == truth.shape
    assert metrics.sad(ours[0].alpha, truth) < 1.1 * metrics.sad(reference.alpha, truth) + 0.5
    single = torch_pipeline.cutout(image, CutoutOptions())
    assert np.abs(single.alpha - ours[0].alpha).mean() < 1e-3  # batching changes nothing per image
    mirrored_error = np.abs(ours[1].alpha[:, ::-1] - ours[0].alpha).mean()
    assert mirrored_error < np.abs(ours[1].alpha - ours[0].alpha).mean()  # results stay with their images
    assert ours[0].foreground.shape == image.shape


def test_batch_refined_side_by_side_gives_the_same_cutouts(troll_small):
    image, _, _ = troll_small
    images = [image, image[:, ::-1].copy(), image[::-1].copy()]
    alone = Pipeline(refine_threads=1).cutout_batch(images, CutoutOptions())
    side_by_side = Pipeline(refine_threads=3)
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
