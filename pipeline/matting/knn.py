"""Nonlocal (KNN) matting restricted to the unknown pixels: the second opinion beside closed-form.

Closed-form matting propagates alpha through 3x3 windows, so an unknown pixel learns only from
its surroundings; KNN matting (Chen et al., 2013) links each unknown pixel to the pixels of most
similar colour and position anywhere in the region, so a strand of hair learns from other
strands. Their errors differ: averaging the two beats either alone on the alphamatting.com set.

Only unknown pixels look for neighbours (the full method queries every pixel), which keeps the
cost to one k-d tree and a few hundred thousand queries.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse
from pymatting import cg, jacobi
from scipy.spatial import cKDTree

# (neighbours, weight of position against colour): many near-in-space neighbours, then a few
# colour twins from anywhere. These are the published method's settings.
NEIGHBOUR_PASSES: tuple[tuple[int, float], ...] = ((20, 2.0), (10, 0.1))


def knn_alpha(image: np.ndarray, is_fg: np.ndarray, is_unknown: np.ndarray) -> np.ndarray:
    """Solve KNN matting for the unknown pixels with known pixels held fixed.

    image: (h, w, 3) RGB in [0, 1]; is_fg, is_unknown: (h, w) boolean masks (the rest is background).
    Returns (h, w) float32 alpha in [0, 1].
    """
    height, width = is_unknown.shape
    alpha = is_fg.astype(np.float64).ravel()
    unknown_index = np.flatnonzero(is_unknown)
    if unknown_index.size == 0:
        return alpha.reshape(height, width).astype(np.float32)
    pixel_count = height * width
    ys, xs = np.divmod(np.arange(pixel_count), width)
    colours = image.reshape(-1, 3).astype(np.float32)
    rows, cols = [], []
    for neighbours, position_weight in NEIGHBOUR_PASSES:
        scale = position_weight / max(height, width, 2)
        features = np.column_stack([colours, xs * scale, ys * scale]).astype(np.float32)
        k = min(neighbours + 1, pixel_count)  # +1: a pixel finds itself first
        _, found = cKDTree(features).query(features[unknown_index], k=k, workers=-1)
        rows.append(np.repeat(unknown_index, k - 1))
        cols.append(np.asarray(found)[:, 1:].ravel())
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    affinity = scipy.sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(pixel_count, pixel_count))
    affinity = affinity + affinity.T  # symmetric, so the system below is positive definite

    unknown_rows = affinity[unknown_index]
    degree = np.asarray(unknown_rows.sum(axis=1)).ravel()
    # A hair of extra diagonal keeps clusters linked to no known pixel solvable.
    system = (scipy.sparse.diags(degree * (1.0 + 1e-6)) - unknown_rows[:, unknown_index]).tocsr()
    rhs = unknown_rows.dot(alpha)  # alpha is 0 at unknown pixels: only known ones count
    solution = cg(system, rhs, x0=np.full(unknown_index.size, 0.5), M=jacobi(system), rtol=1e-6, maxiter=2000)
    alpha[unknown_index] = np.clip(solution, 0.0, 1.0)
    return alpha.reshape(height, width).astype(np.float32)
