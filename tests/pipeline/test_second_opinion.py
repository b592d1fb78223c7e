"""The second opinion where ISNet is undecided deep inside what it drew: only there, only where
U²-Net-p is sure, the same on the torch path; and the real thing on the yarn photo (GT27)."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.cutout import CutoutOptions
from pipeline.second_opinion import MIN_RAISED_SHARE, SECOND_SURE, UNDECIDED_DEPTH, heed_second_opinion, undecided
from tests.pipeline.test_pipeline_stages import load


def grey_subject() -> np.ndarray:
    """A confident square with a wide grey (0.3) block inside it and a grey rim along its outline."""
    mask = np.zeros((120, 200), dtype=np.float32)
    mask[20:100, 20:180] = 1.0
    mask[40:80, 60:140] = 0.3  # deep inside: undecided
    mask[20:100, 180:186] = 0.3  # the outline's grey rim, next to the background
    return mask


def test_only_grey_deep_inside_the_subject_is_undecided():
    region = undecided(grey_subject())
    assert region[60, 100] and region[40:80, 60:140].all()
    assert not region[:, 178:].any()  # within UNDECIDED_DEPTH of the background: an outline, not doubt
    assert not region[grey_subject() >= 0.5].any() and not region[grey_subject() <= 0.05].any()


def test_the_second_opinion_raises_only_undecided_pixels_it_is_sure_of():
    mask = grey_subject()
    second = np.full(mask.shape, 0.9, dtype=np.float32)
    second[:, :100] = 0.6  # unsure on the left half
    raised, share = heed_second_opinion(mask, second, undecided(mask))
    assert raised[60, 120] == pytest.approx(0.9) and raised[60, 80] == pytest.approx(0.3)
    assert np.array_equal(raised[:, 178:], mask[:, 178:])  # the rim is left as ISNet drew it
    assert np.array_equal(raised[mask >= 0.5], mask[mask >= 0.5]) and share == pytest.approx(40 * 40 / mask.size)
    unchanged, none = heed_second_opinion(mask, np.full(mask.shape, SECOND_SURE - 0.01, np.float32), undecided(mask))
    assert none == 0.0 and unchanged is mask
    speck = np.zeros(mask.shape, dtype=bool)
    speck[60, 100:100 + int(MIN_RAISED_SHARE * mask.size) - 1] = True  # just under a substantial part
    assert heed_second_opinion(mask, second, undecided(mask) & speck)[1] == 0.0


def test_the_torch_twin_finds_the_same_undecided_pixels():
    torch = pytest.importorskip("torch", reason="torch not installed: the [gpu] extra is needed for the torch path")
    from pipeline.torch_path.refine import undecided as undecided_torch

    generator = np.random.default_rng(3)
    masks = [grey_subject(), np.clip(generator.random((90, 130)) * 1.2 - 0.1, 0, 1).astype(np.float32)]
    masks[1][20:70, 30:100] = 0.3
    assert UNDECIDED_DEPTH == 8
    for mask in masks:
        assert np.array_equal(undecided_torch(torch.from_numpy(mask)).numpy(), undecided(mask))


def test_yarn_isnet_drew_grey_is_decided_by_the_second_opinion(real_pipeline):
    """GT27: ISNet drew most of the yarn strands 0.2-0.5; U²-Net-p is sure of them."""
    image, truth, _ = load("GT27", 800)  # its own size: at 400 px ISNet itself decides most strands
    result = real_pipeline.cutout(image, CutoutOptions())
    assert any("u2netp decided" in note for note in result.notes)
    subject = truth > 0.9
    assert (result.alpha[subject] >= 0.5).mean() > (result.mask[subject] >= 0.5).mean() + 0.1
