"""Salient-object segmentation: RGB image -> soft foreground mask at full resolution."""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from models.free_input_size import GraphNotResizable, graph_with_free_input_size
from models.specs import ModelSpec

log = logging.getLogger(__name__)


def resize_float(array: np.ndarray, width: int, height: int, resample=Image.BILINEAR) -> np.ndarray:
    """Resize a float (h, w) or (h, w, c) array with PIL, channel by channel, keeping float precision."""
    if array.ndim == 2:
        return np.asarray(Image.fromarray(array.astype(np.float32), "F").resize((width, height), resample))
    return np.stack([resize_float(array[:, :, c], width, height, resample) for c in range(array.shape[2])], axis=2)


def default_thread_count() -> int:
    configured = os.environ.get("CUTOUT_THREADS")
    return int(configured) if configured else max(1, os.cpu_count() or 1)


# Beyond this stretch the short side is not shrunk further: the network never saw panoramas.
MAX_ASPECT = 2.0
# A photo-shaped mask with less foreground (share of the picture) than this counts as empty.
EMPTY_MASK_SHARE = 0.005
# The finer view (ModelSpec.fine_side) is asked only of photos whose long side is at least this
# many times the first view's: below it the first view already sees most of the photo's pixels
# (and a 1 MP photo keeps its speed).
FINE_VIEW_MIN_ZOOM = 1.5
# The two views are mixed only when they tell the same story: their subjects (cut at 0.5) overlap
# at least this much. Below it the model is unsure *what* the subject is (DIS5K's eyeglasses: the
# lenses in one view, not the other), and a mix would blur two answers into grey.
VIEW_AGREEMENT = 0.8


# The mirror view (a quality switch, off by default: one more network pass per view): each view of
# the main model is also asked of the mirrored photo, and the two averaged where they agree on the
# subject (VIEW_AGREEMENT); where they do not, the view is kept as it is. Measured for ISNet only
# (docs/quality.md, session 28): better on all three development sets.
MIRRORED_MODELS = frozenset({"isnet"})


def default_fine_views() -> bool:
    """CUTOUT_FINE_VIEW=off asks every photo once (a speed switch: ~1.6 s less at 12 MP on 2 cores)."""
    return os.environ.get("CUTOUT_FINE_VIEW", "on").lower() not in ("off", "0", "false", "no")


def default_mirror_views(device: str = "cpu") -> bool:
    """CUTOUT_MIRROR_VIEW=on / off; unset (auto): on where the pipeline runs on a CUDA device. On 2 CPU
    cores the mirrored photo costs ~1.35 s more at 1 MP and ~3.1 s at 12 MP, past the speed budgets;
    on a GPU it is the same forward pass with twice the rows: 9 % of the saturated 1 MP rate on an
    H200, a lone 1 MP product 59-62 ms before PNG where 51-59 ms without (docs/performance.md, session 29)."""
    setting = os.environ.get("CUTOUT_MIRROR_VIEW", "auto").lower()
    if setting == "auto":
        return device == "cuda"
    return setting in ("on", "1", "true", "yes")


def with_mirror(view: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """A view and the mirrored photo's view (flipped back): their mean where they agree on the subject.

    The network's errors at an outline differ between a photo and its mirror image; what both see
    is kept, what only one sees is halved. Two answers about *what* the subject is are not mixed."""
    if subject_agreement(view, mirror) < VIEW_AGREEMENT:
        return view
    return 0.5 * (view + mirror)


def wants_fine_view(height: int, width: int, first_side: int, fine_side: int | None) -> bool:
    """Whether a photo of this size is also asked at the finer side."""
    return bool(fine_side) and fine_side > first_side and max(height, width) >= FINE_VIEW_MIN_ZOOM * first_side


def subject_agreement(first: np.ndarray, second: np.ndarray, neither: float = 1.0) -> float:
    """IoU of the two masks' subjects (cut at 0.5); `neither` where neither has one (two views of one
    network: they agree; the person matte: it has nothing to speak for, pipeline.person_matte)."""
    a, b = first > 0.5, second > 0.5
    union = int(np.count_nonzero(a | b))
    return float(np.count_nonzero(a & b)) / union if union else neither


def view_note(name: str, fine_side: int, agreement: float) -> str:
    """What the result's notes say about the finer view."""
    if agreement >= VIEW_AGREEMENT:
        return (f"{name} also read the photo at {fine_side} px and the finer view was mixed in where the first "
                f"doubted (the views share {agreement:.0%} of the subject)")
    return (f"{name}'s {fine_side} px view disagreed with the first (they share {agreement:.0%} of the subject): "
            f"the first view kept")


def mix_views(first, fine):
    """The first view's mask, moved towards the finer view's in proportion to its own doubt.

    Where the first view is sure (0 or 1) it stays; at 0.5 the finer view decides (docs/quality.md
    has what it does on each development set). Callers mix only views that agree (VIEW_AGREEMENT).
    NumPy arrays or torch tensors alike (the torch path mixes on the device); float32 stays float32.
    """
    return (first + (fine - first) * (4.0 * first * (1.0 - first))).clip(0.0, 1.0)


def photo_shaped_size(height: int, width: int, side: int, multiple: int) -> tuple[int, int]:
    """(height, width) of a network input with long side `side` and the photo's aspect ratio, each side
    a multiple of `multiple`, the short side no shorter than side / MAX_ASPECT."""
    shortest = max(multiple, round(side / MAX_ASPECT / multiple) * multiple)

    def short_side(short: int, long: int) -> int:
        return min(side, max(shortest, round(side * short / long / multiple) * multiple))

    if height >= width:
        return side, short_side(width, height)
    return short_side(height, width), side


@dataclass(frozen=True)
class InputGeometry:
    """How a segmentation graph is asked (Segmenter and its torch twin alike)."""

    model: str | bytes  # the graph to load: the file, or the rewrite freed from its square
    size_multiple: int | None  # the freed graph's stride; None: it runs at its square
    input_size: tuple[int, int]  # the first view's square (its long side for photo-shaped inputs)
    keep_aspect: bool
    fine_side: int | None  # the finer view's long side, None where it is never asked


def input_geometry(spec: ModelSpec, model_path: Path, input_side: int | None, keep_aspect: bool,
                   fine_views: bool) -> InputGeometry:
    """The graph freed from its square where the photo's aspect or a smaller side (input_side) wants it,
    at that side rounded to its stride; the finer view only after a first view at the native side."""
    model: str | bytes = str(model_path)
    size_multiple, input_size = None, spec.input_size
    native_side = spec.input_size[0]
    wants_free_size = keep_aspect or (input_side is not None and input_side < native_side)
    if wants_free_size and spec.input_size == (native_side, native_side) and native_side > 0:
        try:
            free = graph_with_free_input_size(model_path, native_side)
            model, size_multiple = free.model, free.multiple
            side = min(input_side or native_side, native_side)
            side = max(free.multiple, side // free.multiple * free.multiple)
            input_size = (side, side)
        except GraphNotResizable as error:
            # Only worth a warning when a smaller side was asked for: the photo shape is a bonus.
            level = logging.WARNING if input_side and input_side < native_side else logging.INFO
            log.log(level, "%s runs at its native %d px square: %s", spec.name, native_side, error)
    keeps_aspect = keep_aspect and size_multiple is not None
    # The finer view is a second look at the native scale's neighbour: not for a shrunk first view.
    native = input_size[0] == native_side
    return InputGeometry(model, size_multiple, input_size, keeps_aspect,
                         spec.fine_side if fine_views and keeps_aspect and native else None)


class Segmenter:
    """One onnxruntime session for one salient-object model, reused for every image.

    ISNet was trained on images stretched to 1024x1024. Where the graph can be freed from that
    size (models/free_input_size.py) we keep the long side at the native 1024 and give the short side
    the photo's own proportion, rounded to the graph's stride: a 4:3 photo runs at 1024x768, a
    quarter fewer convolutions, with the same detail along the long side. Graphs that cannot be
    freed get the stretched square. Where the photo shape finds no subject, the square is asked
    too (the shape the model was trained on). Photos with more detail than the first view sees
    are also asked at the model's finer side, and the two views mixed where the first doubts
    (`mix_views`). The mask is resized back to the photo. With `mirror_views` every view is also asked
    of the mirrored photo (`with_mirror`).
    """

    def __init__(self, spec: ModelSpec, model_path: Path, threads: int | None = None,
                 input_side: int | None = None, keep_aspect: bool = True, fine_views: bool = True,
                 mirror_views: bool = False) -> None:
        """input_side: long side of the network input, smaller than native to trade quality for speed.

        keep_aspect: run at the photo's aspect ratio where the graph allows it (False: always square).
        fine_views: ask large photos at the model's finer side too (spec.fine_side; needs keep_aspect).
        mirror_views: ask every view of the mirrored photo too (`with_mirror`).
        """
        import onnxruntime as ort  # imported here so the CLI's --help stays fast

        if spec.task != "salient":
            raise ValueError(f"model {spec.name} is a {spec.task} model, not a segmentation model")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_thread_count()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Without onnxruntime's arena each run returns its activations: peak RSS of a 24 MP photo
        # 2.46 -> 2.04 GB and 1.44 -> 1.26 GB after a 1 MP one, for ~0.05 s more per ISNet run.
        options.enable_cpu_mem_arena = False
        self.spec = spec
        self.mirror_views = mirror_views
        geometry = input_geometry(spec, model_path, input_side, keep_aspect, fine_views)
        self.input_size, self.size_multiple = geometry.input_size, geometry.size_multiple
        self.keep_aspect, self.fine_side = geometry.keep_aspect, geometry.fine_side
        self.session = ort.InferenceSession(geometry.model, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self._lock = threading.Lock()  # one run at a time: the session already uses every core

    def asks_twice(self, height: int, width: int) -> bool:
        """Whether a photo of this size is also asked at the finer side (`wants_fine_view`)."""
        return wants_fine_view(height, width, self.input_size[0], self.fine_side)

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the network input for a photo of this size."""
        if not self.keep_aspect:
            return self.input_size
        return photo_shaped_size(height, width, self.input_size[0], self.size_multiple or 1)

    def preprocess(self, image: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """(h, w, 3) RGB in [0, 1] -> (1, 3, H, W) float32 network input, (H, W) = size or the photo's."""
        net_h, net_w = size or self.network_size(*image.shape[:2])
        resized = image if image.shape[:2] == (net_h, net_w) else resize_float(image, net_w, net_h)
        normalised = (resized - np.float32(self.spec.mean)) / np.float32(self.spec.std)
        return np.ascontiguousarray(normalised.transpose(2, 0, 1)[None], dtype=np.float32)

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """(n, 3, H, W) network input -> (n, H, W) masks in [0, 1] at network resolution."""
        with self._lock:
            output = self.session.run([self.output_name], {self.input_name: batch})[0][:, 0]
        if self.spec.name.startswith("u2net"):
            # U^2-Net's side output is not calibrated: rembg min-max scales it per image.
            low = output.min(axis=(1, 2), keepdims=True)
            high = output.max(axis=(1, 2), keepdims=True)
            output = (output - low) / np.maximum(high - low, 1e-6)
        return np.clip(output, 0.0, 1.0).astype(np.float32)

    def predict(self, image: np.ndarray, fine_view: bool = True, mirror: bool = True) -> np.ndarray:
        """(h, w, 3) RGB in [0, 1] -> (h, w) soft mask in [0, 1]."""
        height, width = image.shape[:2]
        return np.clip(resize_float(self.predict_small(image, fine_view, mirror=mirror), width, height), 0.0, 1.0)

    def predict_small(self, image: np.ndarray, fine_view: bool = True, notes: list[str] | None = None,
                      mirror: bool = True) -> np.ndarray:
        """(h, w, 3) RGB in [0, 1] -> the soft mask at the network's resolution (the photo's aspect).

        fine_view=False: the first view alone, even for a photo that would be asked at the finer side.
        notes: told what the finer view did, where it was asked. mirror=False: no mirrored view, even
        with mirror_views on (the benchmark's raw mask: what the network draws in one pass).
        """
        mask, may_look_finer = self.first_view(image, mirror=mirror)
        if fine_view and may_look_finer:
            mask = self.finer_look(image, mask, notes, mirror)
        return mask

    def first_view(self, image: np.ndarray, resized: np.ndarray | None = None,
                   mirror: bool = True) -> tuple[np.ndarray, bool]:
        """-> (the mask at the network's first view, whether the finer side may be asked too: a large
        photo whose own shape found its subject). resized: the photo already at its network size (a
        12 MP photo takes ~0.2 s to resize on two cores), if the caller has it."""
        height, width = image.shape[:2]
        size = self.network_size(height, width)
        mask = self._predict_at(resized if resized is not None and resized.shape[:2] == size else image, size,
                                mirror)
        if size != self.input_size and float((mask > 0.5).mean()) < EMPTY_MASK_SHARE:
            # The model was trained on stretched squares; where the photo shape finds nothing, ask
            # that way too (SOD dev: 19 of 196 photos, most of them found at the square).
            log.info("%s found no subject at %s, asking at the square %s", self.spec.name, size, self.input_size)
            mask = self._predict_at(image, self.input_size, mirror)
            # Back to the photo's proportion, so the working grid is the photo's.
            return np.clip(resize_float(mask, size[1], size[0]), 0.0, 1.0), False
        return np.clip(mask, 0.0, 1.0), self.asks_twice(height, width)

    def finer_look(self, image: np.ndarray, first: np.ndarray, notes: list[str] | None = None,
                   mirror: bool = True) -> np.ndarray:
        """The first view mixed with the finer side's where they agree (`mix_views`), on the first's grid."""
        height, width = image.shape[:2]
        fine_size = photo_shaped_size(height, width, self.fine_side, self.size_multiple or 1)
        fine = np.clip(resize_float(self._predict_at(image, fine_size, mirror), first.shape[1], first.shape[0]),
                       0.0, 1.0)
        agreement = subject_agreement(first, fine)
        if notes is not None:
            notes.append(view_note(self.spec.name, self.fine_side, agreement))
        return np.clip(mix_views(first, fine), 0.0, 1.0) if agreement >= VIEW_AGREEMENT else first

    def _predict_at(self, image: np.ndarray, size: tuple[int, int], mirror: bool = True) -> np.ndarray:
        """The mask at network resolution for the image resized to size (with the mirrored photo's
        view, `with_mirror`, where mirror_views is on and mirror not refused)."""
        net_input = self.preprocess(image, size)
        view = self.run_batch(net_input)[0]
        if not (mirror and self.mirror_views):
            return view
        # Two runs, not a batch of two: the graphs freed from their square take one photo at a time.
        mirrored = self.run_batch(np.ascontiguousarray(net_input[:, :, :, ::-1]))[0][:, ::-1]
        return with_mirror(view, mirrored)
