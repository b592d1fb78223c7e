"""The person matte's second opinion (pipeline.person_matte), with the real RVM model on real photos."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from evaluation import metrics
from models import ModelUnavailableError
from pipeline.cutout import CutoutOptions, Pipeline
from pipeline.person_matte import blend_person_matte, default_person_matte, person_agreement
from tests.conftest import loud_skip
from tests.pipeline.test_pipeline_stages import load


@pytest.fixture(scope="module", autouse=True)
def person_model(real_pipeline):
    from models import ensure_model, get_spec

    try:
        return ensure_model(get_spec("rvm"))
    except ModelUnavailableError as error:
        loud_skip(f"the person-matting model is unavailable, its tests cannot run: {error}")


@pytest.fixture(scope="module")
def troll():
    # At the set's own 800 px: the subjects agree by IoU 0.87 there (0.73 at 400 px, where RVM's
    # coarse pass sees the whole photo and its subject shrinks: then it is rightly not listened to).
    return load("GT04", 800)


def test_blend_moves_only_doubt_and_never_clears_what_the_person_matte_does_not_see():
    mask = np.array([0.0, 1.0, 0.5, 0.5, 0.6, 0.4], dtype=np.float32)
    person = np.array([0.9, 0.0, 0.9, 0.3, 0.0, 0.01], dtype=np.float32)
    blended = blend_person_matte(mask, person)
    assert blended[0] == 0.0 and blended[1] == 1.0  # ISNet sure: unchanged, whatever RVM says
    assert blended[2] == pytest.approx(0.9)  # ISNet at 0.5: RVM's coverage (hair)
    assert blended[3] == pytest.approx(0.3)  # RVM's partial coverage may thin ISNet's grey
    # RVM sees nothing where ISNet half-saw something (a bag in a lap): ISNet's value stands.
    assert blended[4] == pytest.approx(0.6) and blended[5] == pytest.approx(0.4)


def test_blend_is_the_same_on_torch_tensors():
    torch = pytest.importorskip("torch", reason="torch not installed: the [gpu] extra is needed for the torch path")
    rng = np.random.default_rng(3)
    mask, person = rng.random((2, 40, 50), dtype=np.float32)
    ours = blend_person_matte(torch.from_numpy(mask), torch.from_numpy(person)).numpy()
    np.testing.assert_allclose(ours, blend_person_matte(mask, person), atol=1e-6)


def test_the_troll_s_hair_comes_denser_and_its_error_drops(real_pipeline, troll):
    image, truth, _ = troll
    with_person = real_pipeline.cutout(image, CutoutOptions())
    without = real_pipeline.cutout(image, CutoutOptions(person_matte=False))
    assert any("person matte" in note for note in with_person.notes)
    assert not any("person matte" in note for note in without.notes)
    assert metrics.sad(with_person.alpha, truth) < 0.85 * metrics.sad(without.alpha, truth)  # measured 21.8 vs 31.6 at 800 px
    # No translucent haze over the hair: denser than ISNet's grey (and, measured, denser than the truth
    # by 0.15 there: RVM fills the gaps between strands; docs/quality.md).
    hair = (truth > 0.05) & (truth < 0.95)
    assert with_person.alpha[hair].mean() > without.alpha[hair].mean() + 0.05


def test_a_plush_toy_the_person_matte_does_not_see_is_cut_exactly_as_without_it(real_pipeline):
    image, _, _ = load("GT01")
    with_person = real_pipeline.cutout(image, CutoutOptions())
    without = real_pipeline.cutout(image, CutoutOptions(person_matte=False))
    assert not any("person matte" in note for note in with_person.notes)
    assert np.array_equal(with_person.alpha, without.alpha)


def test_two_empty_subjects_are_no_agreement_to_hear():
    empty, solid = np.zeros((4, 4), np.float32), np.ones((4, 4), np.float32)
    assert person_agreement(solid, solid) == 1.0 and person_agreement(solid, empty) == 0.0
    assert person_agreement(empty, np.full((4, 4), 0.4, np.float32)) == 0.0  # grey is no subject either


def test_a_photo_with_no_subject_is_not_said_to_take_hair_from_the_person_matte(real_pipeline):
    """Neither ISNet nor RVM sees anything in a blank photo: the person matte speaks for no hair or
    edges there, and the cutout's notes must not say it did (SOD dev 176039 and 188091 said so)."""
    blank = np.full((200, 300, 3), 0.5, dtype=np.float32)
    result = real_pipeline.cutout(blank, CutoutOptions())
    assert not result.subject_found
    assert not any("person matte" in note for note in result.notes), result.notes


def test_without_the_person_model_cutouts_go_on_with_isnet_alone(real_pipeline, troll, monkeypatch):
    import sys

    cutout_module = sys.modules["pipeline.cutout"]
    real_ensure = cutout_module.ensure_model

    def no_person_model(spec, *args, **kwargs):
        if spec.name == "rvm":
            raise ModelUnavailableError("rvm: registry unreachable")
        return real_ensure(spec, *args, **kwargs)

    monkeypatch.setattr(cutout_module, "ensure_model", no_person_model)
    pipeline = Pipeline()
    result = pipeline.cutout(troll[0])
    assert result.subject_found and pipeline.person_matte is False
    reference = real_pipeline.cutout(troll[0], CutoutOptions(person_matte=False))
    assert np.array_equal(result.alpha, reference.alpha)


def test_the_person_matte_switch(monkeypatch):
    monkeypatch.setenv("CUTOUT_PERSON_MATTE", "off")
    assert default_person_matte() is False and Pipeline().person_matte is False
    monkeypatch.setenv("CUTOUT_PERSON_MATTE", "on")
    assert default_person_matte() is True


def test_a_large_portrait_the_person_matte_settles_is_not_asked_at_the_finer_side(real_pipeline):
    large, truth, _ = load("GT04", 1600)  # >= 1536 px: a photo the finer view would be asked for
    segmenter = real_pipeline.segmenter("isnet")
    asked: list[tuple[int, int]] = []
    predict_at = segmenter._predict_at
    segmenter._predict_at = lambda image, size, mirror=True: asked.append(size) or predict_at(image, size, mirror)
    try:
        notes: list[list[str]] = [[]]
        segmented = real_pipeline.segment([large], CutoutOptions(), notes)[0]
        assert segmented.person is not None and segmented.person_seconds > 0
        assert segmented.person.shape == segmented.mask.shape == segmented.small_image.shape[:2]
        assert asked == [segmenter.network_size(*large.shape[:2])]  # the first view only
        assert any("person matte" in note for note in notes[0]) and not any("1152" in note for note in notes[0])
        # Without the person matte the same photo is asked twice, as before it.
        asked.clear()
        notes = [[]]
        segmented = real_pipeline.segment([large], CutoutOptions(person_matte=False), notes)[0]
        assert segmented.person is None and len(asked) == 2 and "1152 px" in notes[0][0]
    finally:
        del segmenter._predict_at  # back to the class's method
    result = real_pipeline.cutout(large)
    assert metrics.sad(result.alpha, truth) < metrics.sad(real_pipeline.cutout(large, CutoutOptions(person_matte=False)).alpha, truth)


def test_the_torch_path_listens_to_the_person_matte_as_the_cpu_path(real_pipeline, troll):
    torch = pytest.importorskip("torch", reason="torch not installed: the [gpu] extra is needed for the torch path")
    torch.set_num_threads(2)
    image, truth, _ = troll
    # Not people, in the same batch: one at the troll's shape (the same RVM pass), one at its own.
    plush = load("GT01")[0]
    plush_alike = np.asarray(Image.fromarray((plush * 255).astype(np.uint8)).resize(image.shape[1::-1]),
                             dtype=np.float32) / 255
    ours, *plush_cuts = Pipeline(device="torch-cpu").cutout_batch([image, plush_alike, plush])
    reference = real_pipeline.cutout(image)
    assert any("person matte" in note for note in ours.notes)
    for cut, photo in zip(plush_cuts, (plush_alike, plush)):
        assert not any("person matte" in note for note in cut.notes) and cut.alpha.shape == photo.shape[:2]
    assert metrics.sad(ours.alpha, truth) < 1.1 * metrics.sad(reference.alpha, truth) + 0.5
    assert metrics.sad(ours.alpha, truth) < 0.85 * metrics.sad(real_pipeline.cutout(image, CutoutOptions(person_matte=False)).alpha, truth)


def test_the_torch_person_matte_is_onnxruntime_s_and_batches_by_shape(person_model, troll):
    torch = pytest.importorskip("torch", reason="torch not installed: the [gpu] extra is needed for the torch path")
    from pipeline.person_matte import PersonMatter
    from pipeline.torch_path.person_matte import TorchPersonMatter, subject_agreements

    torch.set_num_threads(2)
    image = troll[0]  # 563 x 800: RVM's coarse pass resizes by 0.64, where sizes round the float32 way
    reference = PersonMatter(person_model).matte(image)
    ours = TorchPersonMatter(person_model, "cpu")
    photo = torch.from_numpy(image.transpose(2, 0, 1).copy())
    pair = ours.matte(torch.stack([photo, photo.flip(-1)]))
    assert pair.shape == (2, *image.shape[:2])
    assert float((pair[0] - torch.from_numpy(reference)).abs().max()) < 1e-3
    alone = ours.matte(photo.flip(-1)[None])[0]  # a batch answers each photo as it would alone
    assert float((pair[1] - alone).abs().max()) < 1e-4 and float((pair[1] - pair[0]).abs().max()) > 0.1
    agreements = subject_agreements([pair[:1], torch.zeros(2, 2, 2)],  # two stacks: one photo, then two
                                    [pair[:1], torch.stack([torch.zeros(2, 2), torch.ones(2, 2)])])
    assert agreements == [[1.0], [0.0, 0.0]]  # identical; neither has a subject (nothing to hear); disjoint
