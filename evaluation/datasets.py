"""The development sets' files (../shared/README.md): truths as greys, the object sets' manifests."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image


def load_grey(path: Path) -> np.ndarray:
    """(h, w) float32 in [0, 1] from a greyscale (or any) image file."""
    return np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0


def manifest_entries(root: Path, limit: int | None = None) -> list[dict[str, str]]:
    """The rows of a set's manifest.csv (id, image, gt_mask: paths relative to `root`), the first `limit`."""
    with open(root / "manifest.csv") as handle:
        return list(csv.DictReader(handle))[:limit]
