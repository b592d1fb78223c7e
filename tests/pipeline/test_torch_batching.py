"""The GPU path's batching, tested on the CPU: graphs padded to a few batch sizes answer every batch
as the network would eagerly, a stack's torch calls do not grow with its photos, and stacks refine
exactly as photo by photo."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.cutout import CutoutOptions, Pipeline
from tests.pipeline.test_pipeline_stages import load

torch = pytest.importorskip("torch", reason="torch not installed: the [gpu] extra is needed for the torch path")

from pipeline.torch_path.graphs import GraphedForward, padded_size  # noqa: E402
from tests.pipeline.test_torch_path import torch_pipeline  # noqa: E402,F401  (the fixture, shared)


class ReplayedOnCpu(GraphedForward):
    """GraphedForward with its capture done the CPU's way: 'replay' reruns the forward pass on the
    static input into the static output, so what is checked is the padding, slicing and keeping."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.captures: list[int] = []

    def _capture(self, batch, size):
        self.captures.append(size)
        static_input = torch.full((size, *batch.shape[1:]), float("nan"))
        static_output = torch.zeros_like(self.forward(static_input))

        def replay() -> None:
            static_output.copy_(self.forward(static_input))

        return replay, static_input, static_output


def per_item(batch):
    """A stand-in network: each item's answer depends on that item alone."""
    return batch * 2 + batch.sum(dim=(1, 2, 3), keepdim=True)


def test_padded_sizes_are_powers_of_two_up_to_the_largest():
    assert [padded_size(n, 64) for n in (1, 2, 3, 5, 8, 9, 33, 64)] == [1, 2, 4, 8, 8, 16, 64, 64]
    assert padded_size(12, 16) == 16 and padded_size(3, 2) == 2


def test_graphs_answer_every_batch_as_the_eager_pass_with_a_few_captures():
    network = ReplayedOnCpu(per_item, enabled=True, max_batch=8, kept=4)
    generator = torch.Generator().manual_seed(0)
    for count in (3, 1, 4, 3, 2, 20):  # 20 > max_batch: slices of 8, 8 and 4
        batch = torch.rand((count, 3, 5, 7), generator=generator)
        assert torch.equal(network(batch), per_item(batch))  # stale or NaN padding rows never leak in
    assert network.captures == [4, 1, 2, 8]
    assert sorted(key[0] for key in network.captured_shapes) == [1, 2, 4, 8]
    network(torch.rand((1, 3, 6, 7)))  # a new shape: a fifth graph, the least recently used one goes
    assert len(network.captured_shapes) == 4 and (1, 3, 5, 7) not in [key[:4] for key in network.captured_shapes]


def test_a_failed_capture_runs_eagerly_from_then_on():
    class Refusing(ReplayedOnCpu):
        def _capture(self, batch, size):
            super()._capture(batch, size)
            raise RuntimeError("operation not permitted when stream is capturing")

    network = Refusing(per_item, enabled=True, max_batch=8)
    batch = torch.rand((3, 3, 4, 4))
    assert torch.equal(network(batch), per_item(batch)) and torch.equal(network(batch), per_item(batch))
    assert network.captures == [4] and not network.enabled


@pytest.fixture(scope="module")
def stacked_pipeline(torch_pipeline):
    """Refines photos of one size 4 at a time as stacks (the models shared with torch_pipeline's)."""
    pipeline = Pipeline(device="torch-cpu", refine_stack=4, refine_threads=2)
    torch_pipeline.segmenter("isnet")  # loaded now, so no test counts the loading's torch calls
    pipeline._segmenters, pipeline._person_matter = torch_pipeline._segmenters, torch_pipeline.person_matter()
    return pipeline


class TorchCalls:
    """Counts the torch calls made inside it (attribute reads such as a shape call no kernel)."""

    def __enter__(self):
        from torch.overrides import TorchFunctionMode

        counter = self

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                if getattr(func, "__name__", "") != "__get__":
                    counter.count += 1
                return func(*args, **(kwargs or {}))

        self.count = 0
        self._mode = Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._mode.__exit__(*exc)


def test_a_stack_of_2_or_4_photos_of_a_size_is_cut_out_with_the_same_torch_calls(stacked_pipeline):
    """Under load every torch call gives the GIL away (docs/performance.md), so segmentation, the
    person matte and a stack's refinement take a few calls per photo size, not per photo (matting,
    the one stage left per photo, is off here)."""
    photo = load("GT04", 160)[0]
    # One refine thread: the calls counted are this thread's (torch's function modes are per thread).
    one_thread = Pipeline(device="torch-cpu", refine_stack=4, refine_threads=1)
    one_thread._segmenters, one_thread._person_matter = stacked_pipeline._segmenters, stacked_pipeline._person_matter
    counts = []
    for number in (2, 2, 4):  # the first run also makes a few one-time things
        images = [photo.copy() for _ in range(number)]
        with TorchCalls() as calls:
            done = one_thread.cutout_batch(images, CutoutOptions(matting=False))
        counts.append(calls.count)
        assert len(done) == number and done[-1].subject_found
    assert counts[1] == counts[2]


def test_stacks_refine_exactly_as_photo_by_photo(torch_pipeline, stacked_pipeline):
    """The stacked refinement is the per-photo chain on stacks: the same numbers, not near ones (a
    person matte listened to for one photo of a stack and not its mirror; matting; two sizes, two
    stacks refined side by side). Where each photo of a mixed batch lands is checked by
    test_torch_path's comparison with onnxruntime."""
    troll = load("GT04", 320)[0]  # at this size the person matte hears its mirror, not it
    photos = [troll, troll[:, ::-1].copy(), load("GT01", 120)[0], troll.copy()]
    one_by_one = torch_pipeline.cutout_batch(photos)
    stacked = stacked_pipeline.cutout_batch(photos)
    assert any("person matte" in " ".join(cut.notes) for cut in stacked)
    assert any("matted" in " ".join(cut.notes) for cut in stacked)
    for mine, theirs in zip(stacked, one_by_one):
        assert mine.notes == theirs.notes
        assert np.array_equal(mine.alpha, theirs.alpha) and np.array_equal(mine.foreground, theirs.foreground)
        assert np.array_equal(mine.mask, theirs.mask)
