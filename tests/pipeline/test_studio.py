"""Studio shots: a development subject on a plain background, with a shadow that is not subject."""
from __future__ import annotations

import numpy as np

from evaluation.studio import STUDIO_BACKGROUNDS, STUDIO_MAX_SIDE, studio_shot


def a_photo(height: int = 300, width: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """A textured red subject (a disc standing on the lower half) in a busy green scene."""
    rng = np.random.default_rng(3)
    image = np.zeros((height, width, 3), dtype=np.float32)
    image[..., 1] = 0.4 + 0.3 * rng.random((height, width))
    yy, xx = np.mgrid[:height, :width]
    truth = (((yy - height * 0.55) / (height * 0.3)) ** 2 + ((xx - width / 2) / (width * 0.2)) ** 2 <= 1).astype(np.float32)
    image[truth > 0.5] = (0.8, 0.1, 0.1)
    return image, truth


def test_the_subject_keeps_its_pixels_and_the_scene_becomes_the_studio_colour():
    image, truth = a_photo()
    photo, subject = studio_shot(image, truth, index=2)
    assert photo.shape == image.shape and photo.dtype == np.float32
    np.testing.assert_array_equal(subject, truth)
    inside = np.argwhere(truth > 0.5)[len(np.argwhere(truth > 0.5)) // 2]
    assert np.allclose(photo[tuple(inside)], (0.8, 0.1, 0.1), atol=0.05)
    corner = photo[:40, :40].reshape(-1, 3).mean(axis=0)  # far from the subject and its shadow
    assert np.allclose(corner, STUDIO_BACKGROUNDS[2], atol=0.01)
    assert photo[..., 1][truth < 0.5].std() < 0.1  # the busy green scene is gone


def test_the_shadow_darkens_the_floor_under_the_subject_but_is_not_subject():
    image, truth = a_photo()
    photo, subject = studio_shot(image, truth, index=0)  # on white
    lowest = int(np.flatnonzero(truth.any(axis=1))[-1])
    below = photo[lowest + 4:lowest + 10, 150:250].mean()
    assert below < 0.9 and subject[lowest + 4:].sum() == 0
    assert photo[:20].mean() > 0.97  # the white sweep above the subject is untouched


def test_the_same_photo_always_makes_the_same_shot_and_large_photos_are_brought_down():
    image, truth = a_photo()
    first, _ = studio_shot(image, truth, index=5)
    again, _ = studio_shot(image, truth, index=5)
    other, _ = studio_shot(image, truth, index=6)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    big_image, big_truth = a_photo(1500, 2600)
    photo, subject = studio_shot(big_image, big_truth, index=0)
    assert max(photo.shape[:2]) == STUDIO_MAX_SIDE and photo.shape[:2] == subject.shape
    assert set(np.unique(subject)) == {0.0, 1.0}


def test_only_subjects_within_the_frame_make_a_product_shot():
    from evaluation.studio import looks_like_a_product

    _, disc = a_photo()
    assert looks_like_a_product(disc)
    hillside = np.zeros((300, 400), dtype=np.float32)
    hillside[200:] = 1.0  # runs along the bottom and both sides of the frame
    assert not looks_like_a_product(hillside)
    speck = np.zeros((300, 400), dtype=np.float32)
    speck[150:152, 200:202] = 1.0
    assert not looks_like_a_product(speck)
    on_the_floor = disc.copy()
    on_the_floor[-1, 180:220] = 1.0  # a product standing on the frame's bottom edge is still one
    assert looks_like_a_product(on_the_floor)


def test_simulated_users_edit_studio_shots_written_once_as_photos(real_pipeline, tmp_path, capsys):
    from evaluation import interactive
    from tests.conftest import shared_image

    shared_image("GT01")  # skips loudly without ../shared
    arguments = ["--sets", "studio", "--limit", "1", "--masks", str(tmp_path / "none"), "--cache", str(tmp_path),
                 "--max-marks", "2"]
    assert interactive.main(arguments) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| studio shots |"))
    cells = [cell.strip().strip("*") for cell in row.strip("|").split("|")]
    assert cells[1] == "2"  # the first product-like subject of DIS5K dev and of SOD dev
    assert 0.0 <= float(cells[2]) <= 2.0 and 0.5 < float(cells[7]) <= 1.0  # NoC within the cap; a real cutout's IoU
    assert 0 <= int(cells[6]) <= 2  # photos the outline alone keeps below 0.90
    photos = sorted(p.name for p in (tmp_path / "studio-photos").glob("*.png"))
    assert len(photos) == 4 and sum(name.endswith("_truth.png") for name in photos) == 2
    assert interactive.main(arguments) == 0  # the second run reads the written shots and cached cutouts back
    assert len(list((tmp_path / "studio-photos").glob("*.png"))) == 4


def test_a_soft_subject_is_matted_onto_the_sweep_by_its_own_alpha():
    from evaluation.studio import studio_matte_shot

    height, width = 120, 160
    image = np.zeros((height, width, 3), dtype=np.float32)
    image[..., 1] = 0.6  # a green backdrop behind the subject
    alpha = np.zeros((height, width), dtype=np.float32)
    alpha[30:90, 40:120] = 1.0
    alpha[30:90, 120:130] = 0.5  # a band of strands, half covering
    image[alpha == 1.0] = (0.9, 0.2, 0.1)
    image[alpha == 0.5] = 0.5 * np.array((0.9, 0.2, 0.1)) + 0.5 * np.array((0.0, 0.6, 0.0))
    photo = studio_matte_shot(image, alpha, index=0)  # on white
    assert np.allclose(photo[60, 80], (0.9, 0.2, 0.1), atol=0.05)
    assert np.allclose(photo[5, 5], (1.0, 1.0, 1.0), atol=0.04)
    strands = photo[60, 122:128].mean(axis=0)
    # Half the subject's red over half the white sweep, not over the old green: the strands move with it.
    assert np.allclose(strands, 0.5 * np.array((0.9, 0.2, 0.1)) + 0.5, atol=0.08)
