"""Matting and segmentation error measures (alphamatting.com / Deep Image Matting definitions).

All alphas are float arrays in [0, 1]. `region` (bool, same shape) restricts a measure to the
trimap's unknown area; without it the whole image counts.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def _region(alpha: np.ndarray, region: np.ndarray | None) -> np.ndarray:
    return np.ones(alpha.shape, dtype=bool) if region is None else region


def sad(alpha: np.ndarray, truth: np.ndarray, region: np.ndarray | None = None) -> float:
    """Sum of absolute differences / 1000."""
    return float(np.abs(alpha - truth)[_region(alpha, region)].sum() / 1000.0)


def mse(alpha: np.ndarray, truth: np.ndarray, region: np.ndarray | None = None) -> float:
    """Mean squared error over the region."""
    return float(((alpha - truth) ** 2)[_region(alpha, region)].mean())


def _gradient_magnitude(alpha: np.ndarray, sigma: float) -> np.ndarray:
    gx = ndimage.gaussian_filter(alpha, sigma, order=(0, 1))
    gy = ndimage.gaussian_filter(alpha, sigma, order=(1, 0))
    return np.sqrt(gx * gx + gy * gy)


def gradient_error(
    alpha: np.ndarray, truth: np.ndarray, region: np.ndarray | None = None, sigma: float = 1.4
) -> float:
    """Sum of squared differences of Gaussian-derivative gradient magnitudes / 1000."""
    diff = _gradient_magnitude(alpha.astype(np.float64), sigma) - _gradient_magnitude(
        truth.astype(np.float64), sigma
    )
    return float((diff**2)[_region(alpha, region)].sum() / 1000.0)


def connectivity_error(
    alpha: np.ndarray, truth: np.ndarray, region: np.ndarray | None = None, step: float = 0.1
) -> float:
    """Rhemann et al.'s connectivity error / 1000 (4-connectivity, threshold step 0.1)."""
    thresholds = np.arange(0.0, 1.0 + step / 2, step)
    level = -np.ones(alpha.shape)
    for index in range(1, len(thresholds)):
        both = (alpha >= thresholds[index]) & (truth >= thresholds[index])
        labels, count = ndimage.label(both)
        omega = np.zeros(alpha.shape, dtype=bool)
        if count:
            sizes = np.bincount(labels.ravel())[1:]
            omega = labels == (np.argmax(sizes) + 1)
        newly_cut = (level == -1) & ~omega
        level[newly_cut] = thresholds[index - 1]
    level[level == -1] = 1.0
    alpha_d = alpha - level
    truth_d = truth - level
    alpha_phi = 1 - alpha_d * (alpha_d >= 0.15)
    truth_phi = 1 - truth_d * (truth_d >= 0.15)
    return float(np.abs(alpha_phi - truth_phi)[_region(alpha, region)].sum() / 1000.0)


def mae(mask: np.ndarray, truth: np.ndarray) -> float:
    return float(np.abs(mask - truth).mean())


def max_f_measure(mask: np.ndarray, truth: np.ndarray, beta2: float = 0.3, steps: int = 256) -> float:
    """Best F-measure over `steps` thresholds of a soft mask against a binary truth."""
    positive = truth > 0.5
    scores = mask.ravel()
    order_hist_pos = np.histogram(scores[positive.ravel()], bins=steps, range=(0, 1))[0]
    order_hist_all = np.histogram(scores, bins=steps, range=(0, 1))[0]
    # Cumulative from the top bin down: predicted positives at threshold >= bin start.
    true_pos = np.cumsum(order_hist_pos[::-1])
    predicted = np.cumsum(order_hist_all[::-1])
    precision = true_pos / np.maximum(predicted, 1)
    recall = true_pos / max(positive.sum(), 1)
    f = (1 + beta2) * precision * recall / np.maximum(beta2 * precision + recall, 1e-12)
    return float(f.max())


def iou(mask: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> float:
    predicted = mask >= threshold
    positive = truth > 0.5
    union = (predicted | positive).sum()
    return float((predicted & positive).sum() / union) if union else 1.0


def boundary_mae(mask: np.ndarray, truth: np.ndarray, width: int = 10) -> float:
    """MAE within `width` px of the true edge: how well the outline itself is placed and resolved."""
    inside = truth > 0.5
    band = ndimage.binary_dilation(inside, iterations=width) & ~ndimage.binary_erosion(inside, iterations=width, border_value=1)
    return float(np.abs(mask - truth)[band].mean()) if band.any() else 0.0
