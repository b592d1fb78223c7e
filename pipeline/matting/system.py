"""The closed-form matting system (Levin et al.) on the unknown pixels only.

Both solves (pipeline.matting.closed_form's trimap, the editor's reopened band) need the matting Laplacian's
rows of the unknown pixels: L_uu, and L_uk times the known pixels' alpha for the right-hand side.
pymatting's `cf_laplacian` builds the rows of every pixel in the box (25 float64 values and 25
int64 indices each) and the caller then slices the unknown ones out. In a running service a 1 MP
portrait's hair band (80k unknown pixels in a 260k px box) spent 0.25-0.3 s there, most of it
allocating and faulting in the 100 MB and copying the slices; the arithmetic is ~30 ms. Here each
unknown pixel's row is summed directly from the 3x3 windows that hold it, and the known pixels'
columns go straight into the right-hand side. The arithmetic follows pymatting's operation by
operation, so the system is the same to the last bit (tests/pipeline/test_matting_system.py).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse
from numba import njit
from scipy import ndimage

WINDOW_AREA = 9.0  # 3x3 windows (radius 1), the only size either solve uses


def unknown_system(image: np.ndarray, unknown: np.ndarray, known_alpha: np.ndarray, epsilon: float
                   ) -> tuple[scipy.sparse.csr_matrix, np.ndarray]:
    """-> (L_uu as CSR, -L_uk @ alpha_k): the matting Laplacian restricted to the unknown pixels
    (raster order) and the known pixels' pull on them.

    image: (h, w, 3) RGB in [0, 1]; unknown: (h, w) bool; known_alpha: (h, w) alpha of the known
    pixels (values under `unknown` are not read). Windows lie wholly inside the image, as in
    pymatting, so a caller passes a box with 2 px around its unknown pixels where the photo has them.
    """
    height, width = unknown.shape
    image = np.ascontiguousarray(image, dtype=np.float64)
    row_of = np.full((height, width), -1, dtype=np.int64)
    count = int(unknown.sum())
    row_of[unknown] = np.arange(count)
    # Windows holding an unknown pixel: their centres are the unknown pixels' 3x3 neighbours.
    needed = ndimage.binary_dilation(unknown, structure=np.ones((3, 3), dtype=bool))
    # Only the needed windows are written and read: np.empty leaves the other pages untouched.
    means = np.empty((height, width, 3), dtype=np.float64)
    inverses = np.empty((height, width, 6), dtype=np.float64)
    _window_statistics(image, epsilon, needed, means, inverses)
    values = np.zeros((count, 25), dtype=np.float64)
    columns = np.full((count, 25), -1, dtype=np.int64)
    rhs = np.zeros(count, dtype=np.float64)
    _unknown_rows(image, np.ascontiguousarray(known_alpha, dtype=np.float64), row_of, means, inverses,
                  values, columns, rhs)
    keep = columns >= 0
    indptr = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(keep.sum(axis=1), out=indptr[1:])
    matrix = scipy.sparse.csr_matrix((values[keep], columns[keep], indptr), shape=(count, count))
    return matrix, rhs


@njit("void(f8[:, :, ::1], f8, b1[:, ::1], f8[:, :, ::1], f8[:, :, ::1])", cache=True, nogil=True)
def _window_statistics(image, epsilon, needed, means, inverses):
    """For each needed window (centre at least 1 px inside): its mean colour and the inverse of its
    regularised covariance (m00 m01 m02 m11 m12 m22), as pymatting computes them."""
    height, width, _ = image.shape
    c = np.empty((3, 3, 3))
    for y in range(1, height - 1):
        for x in range(1, width - 1):
            if not needed[y, x]:
                continue
            for channel in range(3):
                total = 0.0
                for dy in range(3):
                    for dx in range(3):
                        total += image[y + dy - 1, x + dx - 1, channel]
                means[y, x, channel] = total / WINDOW_AREA
                for dy in range(3):
                    for dx in range(3):
                        c[dy, dx, channel] = image[y + dy - 1, x + dx - 1, channel] - means[y, x, channel]
            a00, a01, a02, a11, a12, a22 = epsilon, 0.0, 0.0, epsilon, 0.0, epsilon
            for dy in range(3):
                for dx in range(3):
                    a00 += c[dy, dx, 0] * c[dy, dx, 0]
                    a01 += c[dy, dx, 0] * c[dy, dx, 1]
                    a02 += c[dy, dx, 0] * c[dy, dx, 2]
                    a11 += c[dy, dx, 1] * c[dy, dx, 1]
                    a12 += c[dy, dx, 1] * c[dy, dx, 2]
                    a22 += c[dy, dx, 2] * c[dy, dx, 2]
            a00 /= WINDOW_AREA
            a01 /= WINDOW_AREA
            a02 /= WINDOW_AREA
            a11 /= WINDOW_AREA
            a12 /= WINDOW_AREA
            a22 /= WINDOW_AREA
            # Minus the determinant, and the cofactors over it: pymatting's exact arithmetic.
            det = a00 * a12 * a12 + a01 * a01 * a22 + a02 * a02 * a11 - a00 * a11 * a22 - 2 * a01 * a02 * a12
            inv_det = 1.0 / det
            inverses[y, x, 0] = (a12 * a12 - a11 * a22) * inv_det
            inverses[y, x, 1] = (a01 * a22 - a02 * a12) * inv_det
            inverses[y, x, 2] = (a02 * a11 - a01 * a12) * inv_det
            inverses[y, x, 3] = (a02 * a02 - a00 * a22) * inv_det
            inverses[y, x, 4] = (a00 * a12 - a01 * a02) * inv_det
            inverses[y, x, 5] = (a01 * a01 - a00 * a11) * inv_det


@njit("void(f8[:, :, ::1], f8[:, ::1], i8[:, ::1], f8[:, :, ::1], f8[:, :, ::1], f8[:, ::1], i8[:, ::1], f8[::1])",
      cache=True, nogil=True)
def _unknown_rows(image, known_alpha, row_of, means, inverses, values, columns, rhs):
    """Row of each unknown pixel i: the sum over the windows holding i (centres in raster order, as
    pymatting adds them) of delta_ij - (1 + c_i' M c_j) / 9 for the window's pixels j. Unknown j
    are the row's entries (5x5 neighbourhood, raster order = column order); known j feed -L_ij a_j
    into the right-hand side, summed in the same order a CSR product would."""
    height, width, _ = image.shape
    local = np.zeros((5, 5))
    for yi in range(height):
        for xi in range(width):
            row = row_of[yi, xi]
            if row < 0:
                continue
            local[:, :] = 0.0
            for cy in range(yi - 1, yi + 2):
                if cy < 1 or cy >= height - 1:
                    continue
                for cx in range(xi - 1, xi + 2):
                    if cx < 1 or cx >= width - 1:
                        continue
                    mean = means[cy, cx]
                    m = inverses[cy, cx]
                    s = image[yi, xi, 0] - mean[0]
                    t = image[yi, xi, 1] - mean[1]
                    u = image[yi, xi, 2] - mean[2]
                    c0 = m[0] * s + m[1] * t + m[2] * u
                    c1 = m[1] * s + m[3] * t + m[4] * u
                    c2 = m[2] * s + m[4] * t + m[5] * u
                    for dyj in range(3):
                        for dxj in range(3):
                            yj = cy + dyj - 1
                            xj = cx + dxj - 1
                            temp = (c0 * (image[yj, xj, 0] - mean[0]) + c1 * (image[yj, xj, 1] - mean[1])
                                    + c2 * (image[yj, xj, 2] - mean[2]))
                            diagonal = 1.0 if (yj == yi and xj == xi) else 0.0
                            local[yj - yi + 2, xj - xi + 2] += diagonal - (1 + temp) / WINDOW_AREA
            pull = 0.0
            for dy in range(5):
                yj = yi + dy - 2
                if yj < 0 or yj >= height:
                    continue
                for dx in range(5):
                    xj = xi + dx - 2
                    if xj < 0 or xj >= width:
                        continue
                    column = row_of[yj, xj]
                    if column >= 0:
                        values[row, dy * 5 + dx] = local[dy, dx]
                        columns[row, dy * 5 + dx] = column
                    else:
                        pull += local[dy, dx] * known_alpha[yj, xj]
            rhs[row] = -pull
