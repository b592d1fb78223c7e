"""Foreground colour estimation: remove the old background's colour from semi-transparent pixels."""
from __future__ import annotations

import numpy as np


def estimate_foreground(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Solve image = alpha * F + (1 - alpha) * B for F with pymatting's multilevel method.

    Parameters
    ----------
    image: (h, w, 3) RGB in [0, 1].
    alpha: (h, w) in [0, 1].

    Returns
    -------
    (h, w, 3) float32 foreground colours in [0, 1] (straight, not premultiplied).
    """
    from pymatting import estimate_foreground_ml

    if image.shape[:2] != alpha.shape:
        raise ValueError(f"image {image.shape[:2]} and alpha {alpha.shape} differ in size")
    foreground = estimate_foreground_ml(image.astype(np.float64), alpha.astype(np.float64))
    return np.clip(foreground, 0.0, 1.0).astype(np.float32)
