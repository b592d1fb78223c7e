"""The mirror view (CUTOUT_MIRROR_VIEW=on): every view of ISNet also asked of the mirrored photo and
the two averaged where they agree on the subject; the second opinion's model is not mirrored."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.cutout import Pipeline
from pipeline.segment import default_mirror_views, photo_shaped_size, with_mirror
from tests.conftest import SMALL_SEGMENT_SIDE
from tests.pipeline.test_pipeline_stages import load


@pytest.fixture(scope="module")
def mirrored_pipeline(real_pipeline):
    return Pipeline(segment_side=SMALL_SEGMENT_SIDE, mirror_views=True)


def test_views_that_agree_are_averaged_and_two_answers_are_not_mixed():
    view = np.zeros((40, 40), np.float32)
    view[10:30, 10:30] = 0.9
    shifted = np.roll(view, 2, axis=1) * 0.8  # the same subject, two columns over: they agree (IoU 0.82)
    assert np.allclose(with_mirror(view, shifted), 0.5 * (view + shifted))
    elsewhere = np.roll(view, 15, axis=1)  # another subject (IoU 0.14): the view stands
    assert with_mirror(view, elsewhere) is view
    assert with_mirror(np.zeros_like(view), np.full_like(view, 0.4)).max() == pytest.approx(0.2)  # no subject in either


def test_isnet_asks_the_mirrored_photo_too_and_averages_the_two(mirrored_pipeline, small_side_pipeline, monkeypatch):
    monkeypatch.delenv("CUTOUT_MIRROR_VIEW", raising=False)
    image = load("GT02", 320)[0]
    plain = small_side_pipeline.segmenter("isnet")
    assert not plain.mirror_views and not Pipeline().mirror_views  # off on the CPU unless asked for
    mirrored = mirrored_pipeline.segmenter("isnet")
    assert mirrored.mirror_views and not mirrored_pipeline.segmenter("u2netp").mirror_views
    view = plain.predict_small(image)
    mirror = plain.predict_small(np.ascontiguousarray(image[:, ::-1]))[:, ::-1]
    both = mirrored.predict_small(image)
    assert np.abs(view - mirror).max() > 0.05  # the mirror tells something of its own...
    assert np.allclose(both, 0.5 * (view + mirror), atol=1e-5)  # ...and the two agree on the doll: averaged
    assert np.array_equal(mirrored.predict_small(image, mirror=False), view)  # the benchmark's one-pass raw mask
    monkeypatch.setenv("CUTOUT_MIRROR_VIEW", "on")
    assert Pipeline().mirror_views


def test_the_mirror_view_is_on_by_default_where_a_gpu_pays_for_it(monkeypatch):
    monkeypatch.delenv("CUTOUT_MIRROR_VIEW", raising=False)
    assert default_mirror_views("cuda") and not default_mirror_views("cpu")
    monkeypatch.setenv("CUTOUT_MIRROR_VIEW", "off")
    assert not default_mirror_views("cuda")
    monkeypatch.setenv("CUTOUT_MIRROR_VIEW", "on")
    assert default_mirror_views("cpu")


def test_a_large_photo_has_both_its_views_mirrored(real_pipeline, monkeypatch):
    segmenter = Pipeline(mirror_views=True).segmenter("isnet")
    asked: list[np.ndarray] = []

    def network(batch: np.ndarray) -> np.ndarray:
        # A stand-in for ISNet that calls the left half of what it is shown the subject: a photo and
        # its mirror then disagree (IoU 0), and the view stands.
        asked.append(batch)
        mask = np.zeros(batch.shape[2:], np.float32)
        mask[:, : batch.shape[3] // 2] = 0.9
        return mask[None]

    monkeypatch.setattr(segmenter, "run_batch", network)
    large = np.random.default_rng(0).random((1200, 1600, 3), dtype=np.float32)
    mask = segmenter.predict_small(large)
    first, fine = segmenter.network_size(1200, 1600), photo_shaped_size(1200, 1600, 1152, 32)
    assert [batch.shape[2:] for batch in asked] == [first, first, fine, fine]  # each view, then its mirror
    assert np.array_equal(asked[1], asked[0][..., ::-1]) and np.array_equal(asked[3], asked[2][..., ::-1])
    middle = first[1] // 2  # the views disagreed: not averaged (that would be 0.45 on both halves)
    assert mask[:, : middle - 4].min() > 0.85 and mask[:, middle + 4:].max() < 0.05


def test_the_torch_path_mirrors_in_the_same_forward_pass_and_agrees_with_the_cpu_path(mirrored_pipeline):
    torch = pytest.importorskip("torch", reason="torch not installed: the [gpu] extra is needed for the torch path")
    torch.set_num_threads(2)
    ours = Pipeline(device="torch-cpu", segment_side=SMALL_SEGMENT_SIDE, mirror_views=True).segmenter("isnet")
    rows: list[int] = []
    forward = ours._forward
    ours._forward = lambda batch: rows.append(batch.shape[0]) or forward(batch)
    images = [load(name, 320)[0] for name in ("GT04", "GT02")]  # two shapes; at 512 px the troll's mirror disagrees
    mine = ours.predict_small_batch(images)
    assert rows == [2, 2]  # one pass per network shape, each photo with its mirror
    plain = Pipeline(device="torch-cpu", segment_side=SMALL_SEGMENT_SIDE).segmenter("isnet")
    assert np.array_equal(ours.predict_small(images[1], mirror=False), plain.predict_small(images[1]))  # one pass
    assert rows[2:] == [1]
    for image, mask in zip(images, mine):
        theirs = mirrored_pipeline.segmenter("isnet").predict_small(image)
        difference = np.abs(mask - theirs)
        # Input resizing differs slightly (torch antialiased bilinear vs PIL); the network is the same.
        assert difference.mean() < 0.01 and np.quantile(difference, 0.999) < 0.2
