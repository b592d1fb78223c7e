"""Studio shots: the development sets' subjects on plain backgrounds, the photo most sellers send.

Fan pages mostly send products photographed on a white or pastel sweep, with a soft shadow under
them; none of the three development sets looks like that. This set is made from them: each SOD dev
and DIS5K dev subject that could be a product (within the frame, not scenery running along it) is
pasted, the photo's pixels under its binary truth with a one-pixel soft edge, on one of a few plain
studio colours; a blurred contact shadow is laid under it (background, not subject: the truth is the
subject's mask alone) and a little sensor noise is added.
Deterministic: the same photo always becomes the same studio shot.

The alphamatting.com subjects (dolls, plush toys, a plant: soft truths, hair and fur) make a second
part, composited as a matte is: their foreground colours (estimated from the photo under the truth's
alpha) over the studio colour by the truth's own alpha, so the strands stay strands.

    python -m evaluation.benchmark --sets studio
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageFilter

from evaluation.datasets import load_grey, manifest_entries
from pipeline.decode import decode_image

# White, light grey, warm paper, pale blue: the sweeps product photos are shot on.
STUDIO_BACKGROUNDS = ((1.0, 1.0, 1.0), (0.93, 0.93, 0.93), (0.96, 0.92, 0.86), (0.85, 0.90, 0.96))
# Photos are shot at up to this long side here: a 24 MP DIS5K photo would take the set past minutes.
STUDIO_MAX_SIDE = 2000
SHADOW_DARKNESS = 0.35
NOISE = 0.01
# Subjects smaller than this share of the picture are not a product shot.
MIN_SUBJECT_SHARE = 0.005
# Nor are truths that run along the frame (a hillside, a wall, a house the frame cuts): a product shot
# shows its subject within the picture, touching at most this share of the picture's edge.
MAX_EDGE_SHARE = 0.1
SOURCES = (("dis5k", "dis5k_te_dev"), ("sod", "sod_dev"))


def _grey(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.round(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8), "L")


def _as_float(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32) / 255.0


def contact_shadow(truth: np.ndarray) -> np.ndarray:
    """(h, w) darkening in [0, SHADOW_DARKNESS]: the subject's silhouette squashed to a sixth of its
    height, set under its lowest row and a little to the right, and blurred."""
    height, width = truth.shape
    rows = np.flatnonzero(truth.any(axis=1))
    flat = _grey(truth).resize((width, max(1, height // 6)), Image.BILINEAR)
    canvas = Image.new("L", (width, height))
    top = min(height - flat.height, int(rows[-1]) - flat.height // 2)
    canvas.paste(flat, (round(width * 0.03), max(0, top)))
    return _as_float(canvas.filter(ImageFilter.GaussianBlur(max(2, width // 80)))) * SHADOW_DARKNESS


def _studio_background(shape: tuple[int, int], subject: np.ndarray, index: int) -> np.ndarray:
    """(h, w, 3) studio colour `index` (mod the palette), darkened by the subject's contact shadow."""
    colour = np.asarray(STUDIO_BACKGROUNDS[index % len(STUDIO_BACKGROUNDS)], dtype=np.float32)
    return np.broadcast_to(colour, (*shape, 3)) * (1.0 - contact_shadow(subject))[..., None]


def _with_noise(photo: np.ndarray, index: int) -> np.ndarray:
    noise = np.random.default_rng(index).normal(0.0, NOISE, photo.shape).astype(np.float32)
    return np.clip(photo + noise, 0.0, 1.0)


def studio_matte_shot(image: np.ndarray, alpha: np.ndarray, index: int) -> np.ndarray:
    """A soft-truth subject (image and its true alpha, both in [0, 1]) on studio background `index`:
    foreground colours over the studio colour by `alpha`. Returns the photo; the truth is `alpha`."""
    from pipeline.matting.foreground import estimate_foreground

    foreground = estimate_foreground(image, alpha)
    background = _studio_background(alpha.shape, (alpha > 0.5).astype(np.float32), index)
    cover = alpha[..., None].astype(np.float32)
    return _with_noise(foreground * cover + background * (1.0 - cover), index)


def studio_shot(image: np.ndarray, truth: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
    """The subject of `image` (where `truth` > 0.5) on studio background `index` (mod the palette).

    image: (h, w, 3) RGB in [0, 1]; truth: (h, w) in [0, 1]. Both are first brought to at most
    STUDIO_MAX_SIDE. Returns (photo (h', w', 3) float32 in [0, 1], truth (h', w') float32 in {0, 1}).
    """
    height, width = truth.shape
    scale = min(1.0, STUDIO_MAX_SIDE / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = _as_float(Image.fromarray(np.round(image * 255).astype(np.uint8)).resize(size, Image.LANCZOS))
        truth = _as_float(_grey(truth).resize(size, Image.BILINEAR))
    subject = (truth > 0.5).astype(np.float32)
    # A one-pixel soft edge, as a real lens draws it: a hard paste would be aliased.
    cover = _as_float(_grey(subject).filter(ImageFilter.GaussianBlur(0.7)))[..., None]
    background = _studio_background(subject.shape, subject, index)
    return _with_noise(image.astype(np.float32) * cover + background * (1.0 - cover), index), subject


def looks_like_a_product(truth: np.ndarray) -> bool:
    """A subject that could be shot as a product: not a speck, not scenery running along the frame."""
    subject = truth > 0.5
    edge = np.concatenate([subject[0], subject[-1], subject[:, 0], subject[:, -1]])
    return float(subject.mean()) >= MIN_SUBJECT_SHARE and float(edge.mean()) <= MAX_EDGE_SHARE


def studio_samples(data: Path, limit: int | None = None) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(id, studio photo, truth) for the subjects of DIS5K dev and SOD dev that look like a product
    (`limit` photos read per source)."""
    index = 0
    for source, folder in SOURCES:
        for entry in manifest_entries(data / folder, limit):
            truth = load_grey(data / folder / entry["gt_mask"])
            if not looks_like_a_product(truth):
                continue
            image = decode_image((data / folder / entry["image"]).read_bytes(), max_bytes=1 << 30, max_pixels=1 << 30)
            if truth.shape != image.shape[:2]:
                continue
            photo, subject = studio_shot(image, truth, index)
            index += 1
            yield f"{source}:{entry['id']}", photo, subject


def studio_matte_samples(data: Path, limit: int | None = None) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(id, studio photo, soft truth) for the alphamatting.com subjects (`limit` photos)."""
    root = data / "alphamatting_training_lowres"
    for index, path in enumerate(sorted((root / "input").glob("*.png"))[:limit]):
        image = _as_float(Image.open(path).convert("RGB"))
        alpha = load_grey(root / "gt_alpha" / path.name)
        yield path.stem, studio_matte_shot(image, alpha, index), alpha
