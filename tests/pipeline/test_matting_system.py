"""The unknown pixels' matting system equals the rows pymatting's full Laplacian gives."""
from __future__ import annotations

import numpy as np
import pytest
from pymatting import cf_laplacian

from pipeline.matting.system import unknown_system


def sliced_pymatting(image: np.ndarray, unknown: np.ndarray, known_alpha: np.ndarray, epsilon: float):
    laplacian = cf_laplacian(image, epsilon=epsilon, radius=1, is_known=~unknown)
    rows, others = unknown.ravel(), ~unknown.ravel()
    return laplacian[rows][:, rows], -laplacian[rows][:, others].dot(known_alpha.ravel()[others])


@pytest.mark.parametrize("seed", [0, 1])
def test_the_system_is_pymatting_s_to_the_last_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Smooth colours with a sharp edge, flat patches (near-singular windows) and noise.
    height, width = 37, 52
    image = np.zeros((height, width, 3))
    image[:, : width // 2] = (0.9, 0.2, 0.1)
    image[:, width // 2:] = (0.1, 0.3, 0.8)
    image[10:30] += rng.random((20, width, 3)) * 0.2
    unknown = rng.random((height, width)) < 0.3
    unknown[0, :5] = True  # at the picture's edge, where fewer windows hold a pixel
    unknown[-3:, -3:] = True
    known_alpha = rng.random((height, width))
    matrix, rhs = unknown_system(image, unknown, known_alpha, epsilon=1e-7)
    expected_matrix, expected_rhs = sliced_pymatting(image, unknown, known_alpha, 1e-7)
    assert matrix.shape == expected_matrix.shape == (unknown.sum(),) * 2
    assert (matrix != expected_matrix).nnz == 0
    assert np.array_equal(rhs, expected_rhs)
    assert matrix.nnz > 5 * unknown.sum()  # neighbours, not a diagonal


def test_no_unknown_pixel_is_an_empty_system() -> None:
    matrix, rhs = unknown_system(np.zeros((8, 8, 3)), np.zeros((8, 8), dtype=bool), np.zeros((8, 8)), 1e-7)
    assert matrix.shape == (0, 0) and rhs.shape == (0,)
