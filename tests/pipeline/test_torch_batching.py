"""The GPU path's batching, tested on the CPU: graphs padded to a few batch sizes answer every batch
as the network would eagerly, the refinement replayed from captured steps answers as it does eagerly,
a stack's torch calls do not grow with its photos, and stacks refine exactly as photo by photo."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from pipeline.cutout import CutoutOptions, Pipeline
from tests.pipeline.test_pipeline_stages import load

torch = pytest.importorskip("torch", reason="torch not installed: the [gpu] extra is needed for the torch path")

from pipeline.torch_path import chain  # noqa: E402
from pipeline.torch_path.graphs import GraphedForward, GraphedSteps, _Instance, padded_size  # noqa: E402
from tests.pipeline.test_torch_path import cpu_pipeline, torch_pipeline  # noqa: E402,F401  (the fixtures, shared)


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


class StepsReplayedOnCpu(GraphedSteps):
    """GraphedSteps with its capture done the CPU's way: the static inputs start as NaN (an input not
    copied in shows), and 'replay' reruns the step on them into the static outputs. What is checked:
    which capture a call gets, and that a step reads nothing but its inputs."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.captured: list[str] = []

    def _capture(self, step, inputs):
        self.captured.append(step.func.__name__ if hasattr(step, "func") else step.__name__)
        static_inputs = tuple(None if value is None else
                              value.clone().fill_(float("nan") if value.is_floating_point() else 0)
                              for value in inputs)
        static_outputs = tuple(None if value is None else value.clone() for value in step(*inputs))

        def replay() -> None:
            for static, value in zip(static_outputs, step(*static_inputs)):
                if static is not None:
                    static.copy_(value)

        return _Instance(replay, static_inputs, static_outputs)


def doubled(x, y):
    return x * 2, x + y


def test_steps_are_captured_at_a_quiet_moment_once_a_shape_repeats_and_answer_as_eagerly():
    steps = StepsReplayedOnCpu(enabled=True, capture_after=2, instances=2)
    generator = torch.Generator().manual_seed(1)
    for round in range(4):
        x, y = torch.rand((2, 5, 4), generator=generator), torch.rand((2, 5, 4), generator=generator)
        answer = steps.run("doubled", doubled, (x, y), read=lambda outputs: [o.clone() for o in outputs])
        assert all(torch.equal(mine, theirs) for mine, theirs in zip(answer, doubled(x, y)))
        assert len(steps.captured) == (2 if round >= 2 else 0)  # never inside run: only at the quiet moment
        steps.capture_wanted()
    assert steps.captured == ["doubled", "doubled"]  # wanted at the second sighting, its two captures at once
    steps.run("doubled", doubled, (torch.rand((1, 5, 4)), torch.rand((1, 5, 4))), read=lambda outputs: None)
    assert steps.capture_wanted() == 0  # a new shape seen once: eager, not wanted


def test_threads_holding_a_shape_s_captures_get_one_each_and_wait_for_a_free_one():
    steps = StepsReplayedOnCpu(enabled=True, capture_after=1, instances=2)
    inputs = (torch.rand((1, 4, 4)), torch.rand((1, 4, 4)))
    steps.run("doubled", doubled, inputs, read=lambda outputs: None)
    assert steps.capture_wanted() == 2
    holding, release = threading.Barrier(3, timeout=10), threading.Event()
    answers = []

    def hold(outputs):  # two threads inside `read` at once, each with its own capture
        holding.wait()
        release.wait(10)
        return outputs[0].clone()

    threads = [threading.Thread(target=lambda: answers.append(steps.run("doubled", doubled, inputs, hold)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    holding.wait()
    third = threading.Thread(target=lambda: answers.append(steps.run("doubled", doubled, inputs,
                                                                      lambda outputs: outputs[0].clone())))
    third.start()
    third.join(0.5)
    assert third.is_alive()  # both captures busy: it waits for one rather than run beside them
    release.set()
    for thread in threads + [third]:
        thread.join(10)
    assert len(steps.captured) == 2 and len(answers) == 3
    assert all(torch.equal(answer, inputs[0] * 2) for answer in answers)


def test_a_failed_step_capture_runs_eagerly_from_then_on():
    class Refusing(StepsReplayedOnCpu):
        def _capture(self, step, inputs):
            raise RuntimeError("operation not permitted when stream is capturing")

    steps = Refusing(enabled=True, capture_after=1)
    x = torch.rand((2, 3))
    assert torch.equal(steps.run("doubled", doubled, (x, x), read=lambda outputs: outputs[0]), x * 2)
    assert steps.capture_wanted() == 0 and not steps.enabled
    assert torch.equal(steps.run("doubled", doubled, (x, x), read=lambda outputs: outputs[1]), x + x)


def test_captures_wait_for_the_refinements_at_work_and_hold_back_new_ones(monkeypatch):
    """A capture beside other device work was invalidated on an H100. With batches overlapping, the
    pipeline thread's capture waits for the refinements at work (graphs.DEVICE_GATE) and refinements
    asked for meanwhile wait for the capture."""
    from pipeline.torch_path.graphs import DEVICE_GATE

    steps = StepsReplayedOnCpu(enabled=True, capture_after=1, instances=1)
    monkeypatch.setitem(chain._STEPS, "cpu", steps)
    at_work, done, order = threading.Event(), threading.Event(), []

    def refinement() -> None:
        with DEVICE_GATE.working():
            at_work.set()
            done.wait(10)
            order.append("refinement ends")

    other = threading.Thread(target=refinement)
    other.start()
    assert at_work.wait(10)
    x = torch.rand((1, 3, 3))
    steps.run("doubled", doubled, (x, x), read=lambda outputs: None)  # wanted now, while a refinement works
    capturing = threading.Thread(target=lambda: (chain.capture_wanted_refinements("cpu"), order.append("captured")))
    capturing.start()
    capturing.join(0.3)
    assert capturing.is_alive() and steps.captured == []  # waiting for the refinement at work
    late_done = []

    def late_refinement() -> None:
        with DEVICE_GATE.working():
            late_done.append(list(order))

    late = threading.Thread(target=late_refinement)
    late.start()
    late.join(0.3)
    assert late.is_alive()  # a refinement asked for while the capture waits: it waits for the capture
    done.set()
    for thread in (other, capturing, late):
        thread.join(10)
    assert order == ["refinement ends", "captured"] and steps.captured == ["doubled"]
    assert late_done == [["refinement ends", "captured"]]


def test_a_forward_pass_inside_a_refinement_runs_eagerly_instead_of_capturing():
    from pipeline.torch_path.graphs import DEVICE_GATE, GraphedForward

    forward = GraphedForward(lambda batch: batch * 3, enabled=True)
    forward._capture = lambda batch, size: pytest.fail("captured inside device work")
    with DEVICE_GATE.working():
        assert torch.equal(forward(torch.ones((1, 2))), torch.full((1, 2), 3.0))
        with pytest.raises(RuntimeError):
            with DEVICE_GATE.quiet():
                pass
    assert forward.enabled  # not switched off: captured by a later pass outside


def test_the_refinement_replayed_from_captured_steps_is_the_eager_one(torch_pipeline, cpu_pipeline, monkeypatch):
    """Once a size is captured (at the quiet moment after its first photo), every photo of it
    replays: nothing of the first may leak into the others (a portrait that is matted, its mirror,
    another size). The refinement alone, from model masks made once."""
    troll = load("GT04", 160)[0]
    photos = [troll, troll[:, ::-1].copy(), load("GT01", 120)[0]]
    masks = [cpu_pipeline.segmenter("isnet").predict_small(photo) for photo in photos]
    eager = [torch_pipeline._refine(photo, mask, None, CutoutOptions(), {}) for photo, mask in zip(photos, masks)]
    replayed = StepsReplayedOnCpu(enabled=True, capture_after=1)
    monkeypatch.setitem(chain._STEPS, "cpu", replayed)
    for index in (0, 2, 1, 0, 2):
        mine, theirs = torch_pipeline._refine(photos[index], masks[index], None, CutoutOptions(), {}), eager[index]
        replayed.capture_wanted()  # the quiet moment before the next photo
        assert mine.notes == theirs.notes
        assert np.array_equal(mine.alpha, theirs.alpha) and np.array_equal(mine.foreground, theirs.foreground)
        assert np.array_equal(mine.mask, theirs.mask)
    assert sorted(set(replayed.captured)) == ["_decide", "_finish"]
    assert len(replayed.captures()) == 4 and len(replayed.captured) == 4 * 4  # two sizes, four captures each


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


def test_refine_streams_are_inert_off_the_gpu_and_steps_record_no_events_for_cpu_tensors():
    """The refine threads' own streams (pipeline/torch_path/streams.py) exist only on CUDA: on the CPU
    the handoff is None and own_stream runs its block in place; replayed steps on CPU tensors leave no
    event for the next user to wait on (a CUDA event on a CPU build would raise)."""
    from pipeline.cutout import Pipeline
    from pipeline.torch_path.streams import RefineStreams

    streams = RefineStreams("cpu")
    assert not streams.active and streams.handoff() is None
    ran = []
    with streams.own_stream(streams.handoff()):
        ran.append(torch.ones(2).sum().item())
    assert ran == [2.0]
    assert Pipeline(device="torch-cpu", refine_streams=True)._refine_streams(True) is None
    steps = StepsReplayedOnCpu(enabled=True, capture_after=1, instances=1)
    inputs = (torch.rand((1, 4, 4)), torch.rand((1, 4, 4)))
    steps.run("doubled", doubled, inputs, read=lambda outputs: None)
    assert steps.capture_wanted() == 1
    answer = steps.run("doubled", doubled, inputs, read=lambda outputs: outputs[0].clone())
    assert torch.equal(answer, inputs[0] * 2)
    assert all(instance.used is None for free in steps._free.values() for instance in free)
