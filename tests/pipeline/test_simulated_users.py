"""evaluation.interactive's measures: the outline bound and the mask as the product stores it."""
from __future__ import annotations

import numpy as np

from evaluation.interactive import as_stored, outline_bound


def square(shape, top, left, side):
    region = np.zeros(shape, dtype=bool)
    region[top:top + side, left:left + side] = True
    return region


def test_an_outline_a_pixel_off_is_out_of_reach_but_a_missed_region_is_not():
    shape = (120, 120)
    truth = square(shape, 40, 40, 20)  # a small subject: its rim is a large share of it
    # The cutout one pixel inside the truth's outline all round: IoU 324/400.
    tight = square(shape, 41, 41, 18).astype(np.float32)
    assert outline_bound(tight, truth.astype(np.float32), reach=2.0) < 0.90
    assert outline_bound(tight, truth.astype(np.float32), reach=0.5) == 1.0
    # The cutout exact but for a missed second subject far from it: marks can fix that.
    both = truth | square(shape, 80, 80, 30)
    assert outline_bound(truth.astype(np.float32), both.astype(np.float32), reach=2.0) > 0.90
    # ... and a background blob the cutout took, likewise.
    extra = (truth | square(shape, 5, 5, 25)).astype(np.float32)
    assert outline_bound(extra, truth.astype(np.float32), reach=2.0) > 0.90


def test_the_simulation_reads_the_models_faint_response_as_the_product_keeps_it():
    mask = np.array([[0.00001, 0.004, 0.5, 1.0]], dtype=np.float16)
    stored = as_stored(mask)
    assert stored.dtype == np.float32
    assert np.abs(stored - mask.astype(np.float32)).max() < 1e-4
    assert stored[0, 1] > 100 * stored[0, 0] > 0.0
