"""The GPU path's batching, tested on the CPU: graphs padded to a few batch sizes answer every batch
as the network would eagerly, and the pipeline thread's torch calls do not grow with the photos."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.cutout import CutoutOptions, Pipeline
from tests.pipeline.test_pipeline_stages import load

torch = pytest.importorskip("torch", reason="torch not installed: the [gpu] extra is needed for the torch path")

from pipeline.torch_path.graphs import GraphedForward, padded_size  # noqa: E402


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
def torch_pipeline(real_pipeline):
    torch.set_num_threads(2)
    return Pipeline(device="torch-cpu")


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


def test_the_pipeline_thread_makes_the_same_torch_calls_for_2_or_8_photos_of_a_size(torch_pipeline):
    """Under load every torch call gives the GIL away (docs/performance.md), so segmentation, the
    person matte and the refinement take a few calls per photo size, not per photo (matting, the
    one stage left per photo, is off here)."""
    photo = load("GT04", 200)[0]
    options = CutoutOptions(matting=False)
    counts = {}
    for stage in ("segment", "cut out"):
        counts[stage] = []
        for number in (2, 2, 8):  # the first also loads the models
            images = [photo.copy() for _ in range(number)]
            with TorchCalls() as calls:
                if stage == "segment":
                    done = torch_pipeline.segment(images, options, [[] for _ in images],
                                                  torch_pipeline.segmenter("isnet").upload(images))
                else:
                    done = torch_pipeline.cutout_batch(images, options)
            counts[stage].append(calls.count)
            assert len(done) == number
    assert counts["segment"][1] == counts["segment"][2]
    assert counts["cut out"][1] == counts["cut out"][2]


def test_a_batch_of_mixed_sizes_cuts_out_each_photo_as_alone(torch_pipeline):
    big, small = load("GT04", 240)[0], load("GT01", 200)[0]
    batch = [big, small, big[:, ::-1].copy(), small[:150]]
    together = torch_pipeline.cutout_batch(batch)
    for photo, cut in zip(batch, together):
        alone = torch_pipeline.cutout(photo)
        assert cut.alpha.shape == photo.shape[:2] and cut.notes == alone.notes
        assert np.abs(cut.alpha - alone.alpha).mean() < 1e-4
