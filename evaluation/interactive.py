"""Simulated users correcting the shipped cutout with the editing engine (pipeline.editing.edit).

    python -m evaluation.interactive [--data ../shared/data] [--sets sod,dis5k,alphamatting] [--limit N]
        [--masks /tmp/exp/cache] [--cache ~/.cache/cutout/interactive] [--max-marks 20] [--mark tap|brush]
        [--no-second-opinion]

The standard interactive-segmentation protocol, started from what we ship: the first state is the
shipped alpha (pipeline.cutout with its defaults, foreground off); each next mark goes to the
centre (the farthest point from its border, by the distance transform) of the largest remaining
error region, computed at the photo's resolution — a keep tap where the truth is subject and the
cutout is not, an erase tap where the cutout has subject the truth does not. Errors are judged at
0.5 for the binary sets and, on alphamatting.com's soft truth, where |alpha - truth| > 0.5 (the
pixels whose side is wrong). Each mark is the engine's Tap (it selects or drops a whole region,
see pipeline/editing/edit.py), so one mark is one touch of a user's finger. The engine is always given the
whole list of marks so far, as the editor page sends it (undo = a shorter list). With
`--mark brush` each mark is instead one keep/erase brush dab at the same point, as wide as the
error region is there (capped at a tenth of the photo's long side): the brush user's protocol.

Reported: NoC@90 — the mean number of marks until IoU >= 0.90 (0 when the shipped cutout is
already there, 20 when 20 marks do not reach it) — with the share of photos that never reach it,
on SOD dev (196) and DIS5K dev (36), and how many photos stay below 0.90 even with every error put
right but where the cutout's outline runs within 2 px of the truth's (`outline_bound`: no mark that
fixes regions reaches 0.90 there); SAD after 0, 1, 3 and 5 marks on alphamatting.com (27); the
engine's median and worst seconds per call. `--sets studio` also runs evaluation.studio's product shots
(written once as PNG files under the cache folder: remove its studio-photos/ after changing how they are made).

The engine reads the model's mask as the product stores it (16-bit, bot.results.mask_png) and gets
the product's second opinion (U^2-Net-p's mask, asked only when a keep tap lands
where ISNet saw nothing; from --masks' "u2" when cached); `--no-second-opinion` leaves it out.

The shipped cutouts are computed once and cached (ISNet masks are taken from --masks, a folder of
<set>_<id>.npz files with the network-resolution mask under "isnet", when present; otherwise the
model runs), so a run costs only the engine's calls.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from evaluation import metrics
from evaluation.benchmark import DEFAULT_DATA, peak_rss_gb
from evaluation.datasets import load_grey, manifest_entries
from pipeline.decode import decode_image

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cutout" / "interactive"
DEFAULT_MASKS = Path("/tmp/exp/cache")
MAX_MARKS = 20
IOU_TARGET = 0.90
SAD_AFTER = (0, 1, 3, 5)
OUTLINE_REACH = 2.0  # photo px: outline_bound's band
SECOND_MODEL = "u2netp"  # what the product asks for a second opinion (bot.edits)
SETS = {"sod": ("sod_dev", "sod"), "dis5k": ("dis5k_te_dev", "dis"), "alphamatting": ("alphamatting_training_lowres", "am")}
TITLES = {"sod": "SOD dev", "dis5k": "DIS5K dev", "studio": "studio shots"}


@dataclass
class Sample:
    set_tag: str  # "sod", "dis", "am": the prefix of the cache files
    name: str
    image_path: Path
    truth_path: Path
    soft_truth: bool


def samples(data: Path, set_name: str, limit: int | None, cache: Path = DEFAULT_CACHE) -> list[Sample]:
    if set_name == "studio":  # made from the sets above (evaluation.studio), not a folder of its own
        return studio_files(data, limit, cache / "studio-photos")
    folder, tag = SETS[set_name]
    root = data / folder
    if set_name == "alphamatting":
        names = sorted(p.stem for p in (root / "input").glob("*.png"))[:limit]
        return [Sample(tag, n, root / "input" / f"{n}.png", root / "gt_alpha" / f"{n}.png", True) for n in names]
    return [Sample(tag, e["id"], root / e["image"], root / e["gt_mask"], False) for e in manifest_entries(root, limit)]


def studio_files(data: Path, limit: int | None, folder: Path) -> list[Sample]:
    """evaluation.studio's shots, written once as PNG files (the photo as a user would upload it)."""
    from PIL import Image

    from evaluation.studio import studio_samples

    folder.mkdir(parents=True, exist_ok=True)
    listing = folder / f"made-{limit or 'all'}.txt"
    if not listing.exists():
        names = []
        for name, photo, truth in studio_samples(data, limit):
            name = name.replace(":", "_")
            Image.fromarray(np.round(photo * 255).astype(np.uint8)).save(folder / f"{name}.png")
            Image.fromarray((truth * 255).astype(np.uint8)).save(folder / f"{name}_truth.png")
            names.append(name)
        listing.write_text("\n".join(names))
    names = listing.read_text().split()
    return [Sample("studio", n, folder / f"{n}.png", folder / f"{n}_truth.png", False) for n in names]


class ShippedCutouts:
    """The shipped alpha (uint8, as stored in the PNG) and ISNet's working-grid mask, per photo, cached."""

    def __init__(self, cache: Path, masks: Path | None) -> None:
        self.cache = cache
        self.masks = masks
        self._pipeline = None
        cache.mkdir(parents=True, exist_ok=True)

    @property
    def pipeline(self):
        if self._pipeline is None:
            from pipeline.cutout import Pipeline

            self._pipeline = Pipeline()
        return self._pipeline

    def load(self, sample: Sample, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """-> (model mask at the working grid, float32, as the product stores it for the editor;
        shipped alpha at full size, uint8)."""
        path = self.cache / f"{sample.set_tag}_{sample.name}.npz"
        if path.exists():
            stored = np.load(path)
            return as_stored(stored["mask"]), stored["alpha"]
        from pipeline.cutout import CutoutOptions

        options = CutoutOptions(foreground=False)
        mask, person = self._network_mask(sample, image, options)
        # The chain after segmentation, exactly as Pipeline.cutout runs it (foreground colour off).
        result = self.pipeline._refine(image, mask, None, options, {}, person=person)
        work_h, work_w = self.pipeline.working_size(image.shape, mask.shape)
        from pipeline.segment import resize_float

        working_mask = mask if mask.shape == (work_h, work_w) else np.clip(resize_float(mask, work_w, work_h), 0, 1)
        alpha = np.round(np.clip(result.alpha, 0.0, 1.0) * 255).astype(np.uint8)
        np.savez_compressed(path, mask=working_mask.astype(np.float16), alpha=alpha)
        return as_stored(working_mask.astype(np.float16)), alpha

    def second_opinion(self, sample: Sample, image: np.ndarray):
        """The product's second opinion for keep taps (U^2-Net-p), from --masks' "u2" when cached."""
        def ask() -> np.ndarray:
            cached = self.masks / f"{sample.set_tag}_{sample.name}.npz" if self.masks else None
            if cached is not None and cached.exists():
                stored = np.load(cached)
                if "u2" in stored:
                    return stored["u2"].astype(np.float32)
            return self.pipeline.segmenter(SECOND_MODEL).predict_small(image)
        return ask

    def _network_mask(self, sample: Sample, image: np.ndarray, options) -> tuple[np.ndarray, np.ndarray | None]:
        """-> (the model mask the product refines, the person matte where it applies), as Pipeline.segment."""
        segmenter = self.pipeline.segmenter("isnet")
        size = segmenter.network_size(*image.shape[:2])
        if segmenter.asks_twice(*image.shape[:2]):
            # The finer view depends on the person matte: the product's own order (cached masks hold the first view alone).
            segmented = self.pipeline.segment([image], options, [[]])[0]
            return segmented.mask, segmented.person
        cached = self.masks / f"{sample.set_tag}_{sample.name}.npz" if self.masks else None
        if cached is not None and cached.exists():
            mask = np.load(cached)["isnet"].astype(np.float32)
            if mask.shape != size:  # asked at the square (no subject at the photo's shape): back to its grid
                from pipeline.segment import resize_float

                mask = resize_float(mask, size[1], size[0])
            mask = np.clip(mask, 0.0, 1.0)
        else:
            mask = segmenter.predict_small(image)
        return mask, self.pipeline.person_opinion(image, mask, options, [])[0]


def as_stored(mask: np.ndarray) -> np.ndarray:
    """The model's mask as the editor reads it back from the result's files (bot.results.mask_png)."""
    from bot.results import mask_png, read_mask_png

    return read_mask_png(mask_png(mask.astype(np.float32)))


def outline_bound(alpha: np.ndarray, truth: np.ndarray, reach: float = OUTLINE_REACH) -> float:
    """IoU of the alpha (cut at 0.5) with every error put right but where the cutout's outline runs
    within `reach` px of the truth's: the best that marks can do which fix regions (a missed object,
    its rim included; a piece of background) but leave an outline where the photo's edges put it.
    Hand-drawn truths run a pixel or two outside the subject (SOD's elephants hold a rim of sky), thin
    structures are a few pixels wide (DIS5K's pipe): there taps cannot reach 0.90."""
    subject, positive = alpha >= 0.5, truth > 0.5

    def near_outline(side: np.ndarray) -> np.ndarray:
        return np.where(side, ndimage.distance_transform_edt(side), ndimage.distance_transform_edt(~side)) <= reach

    outline_offset = near_outline(positive) & near_outline(subject)
    fixed = np.where(outline_offset, subject, positive)
    return float((fixed & positive).sum() / max(int((fixed | positive).sum()), 1))


def wrong_side(alpha: np.ndarray, truth: np.ndarray, soft_truth: bool) -> tuple[np.ndarray, np.ndarray]:
    """-> (missed: truth is subject and the alpha is not, extra: the other way round), bool arrays."""
    if soft_truth:
        return truth - alpha > 0.5, alpha - truth > 0.5
    subject, positive = alpha >= 0.5, truth > 0.5
    return positive & ~subject, subject & ~positive


def next_click(alpha: np.ndarray, truth: np.ndarray, soft_truth: bool) -> tuple[int, int, bool, float] | None:
    """(x, y, keep, depth) at the centre of the largest error region (depth: its distance to the
    region's border there), or None when nothing is wrong."""
    missed, extra = wrong_side(alpha, truth, soft_truth)
    best: tuple[int, np.ndarray, bool] | None = None
    for errors, keep in ((missed, True), (extra, False)):
        labels, count = ndimage.label(errors, structure=np.ones((3, 3)))
        if count == 0:
            continue
        sizes = np.bincount(labels.ravel())[1:]
        largest = int(np.argmax(sizes))
        if best is None or sizes[largest] > best[0]:
            best = (int(sizes[largest]), labels == largest + 1, keep)
    if best is None:
        return None
    _, region, keep = best
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    top, left = rows[0], cols[0]
    piece = region[top:rows[-1] + 1, left:cols[-1] + 1]
    # Padded so that the picture's border counts as the region's border too.
    depth = ndimage.distance_transform_edt(np.pad(piece, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return int(left + x), int(top + y), keep, float(depth[y, x])


@dataclass
class Session:
    """One simulated user on one photo: the scores after each mark and the engine's seconds per call."""

    name: str
    scores: list[float]
    seconds: list[float]
    outline_bound: float | None = None  # binary truths: outline_bound of the shipped cutout

    def marks_to(self, target: float, cap: int) -> int:
        for count, score in enumerate(self.scores):
            if score >= target:
                return count
        return cap


def simulated_mark(click: tuple[int, int, bool, float], kind: str, shape: tuple[int, int]):
    """The user's mark for a click: a tap, or one brush dab that fills the error region's widest
    point without painting outside it (radius = the distance to its border, at most a tenth of the
    photo's long side: the largest brush a phone user would pick)."""
    from pipeline.editing.edit import Stroke, Tap

    x, y, keep, depth = click
    if kind == "tap":
        return Tap(x, y, keep)
    radius = max(1.0, min(depth - 0.5, 0.1 * max(shape)))
    return Stroke(((float(x), float(y)),), radius, keep)


def simulate(sample: Sample, cutouts: ShippedCutouts, max_marks: int, stop_at_iou: float | None,
             mark_kind: str = "tap", second_opinion: bool = True) -> Session:
    from pipeline.editing.edit import EditSource, prepare, refine_alpha

    image = decode_image(sample.image_path.read_bytes(), max_bytes=1 << 30, max_pixels=1 << 30)
    truth = load_grey(sample.truth_path)
    if not sample.soft_truth:
        truth = (truth > 0.5).astype(np.float32)
    mask, shipped = cutouts.load(sample, image)
    grid = prepare(EditSource(image, mask, shipped,
                              second_opinion=cutouts.second_opinion(sample, image) if second_opinion else None))
    alpha = shipped.astype(np.float32) / 255.0
    score = (lambda a: metrics.sad(a, truth)) if sample.soft_truth else (lambda a: metrics.iou(a, truth))
    scores, seconds, marks = [score(alpha)], [], []
    while len(marks) < max_marks:
        if stop_at_iou is not None and scores[-1] >= stop_at_iou:
            break
        click = next_click(alpha, truth, sample.soft_truth)
        if click is None:
            break
        marks.append(simulated_mark(click, mark_kind, alpha.shape))
        started = time.perf_counter()
        alpha = refine_alpha(grid, marks)
        seconds.append(time.perf_counter() - started)
        scores.append(score(alpha))
    while len(scores) <= max_marks:  # a user with nothing left to fix stays where they are
        scores.append(scores[-1])
    bound = None if sample.soft_truth else outline_bound(shipped.astype(np.float32) / 255.0, truth)
    return Session(sample.name, scores, seconds, bound)


def report_binary(title: str, sessions: list[Session], max_marks: int) -> str:
    counts = [s.marks_to(IOU_TARGET, max_marks) for s in sessions]
    never = sum(1 for s in sessions if max(s.scores) < IOU_TARGET)
    start = statistics.fmean(s.scores[0] for s in sessions)
    after = {k: statistics.fmean(s.scores[min(k, len(s.scores) - 1)] for s in sessions) for k in (1, 3, 5)}
    already = sum(1 for s in sessions if s.scores[0] >= IOU_TARGET)
    out_of_reach = sum(1 for s in sessions if s.outline_bound is not None and s.outline_bound < IOU_TARGET)
    return (f"| {title} | {len(sessions)} | **{statistics.fmean(counts):.2f}** | {statistics.median(counts):g} | "
            f"{already} | {never} | {out_of_reach} | {start:.3f} | {after[1]:.3f} / {after[3]:.3f} / {after[5]:.3f} |")


def report_soft(sessions: list[Session]) -> str:
    cells = []
    for marks in SAD_AFTER:
        values = [s.scores[marks] for s in sessions]
        cells.append(f"{statistics.fmean(values):.2f} / {statistics.median(values):.2f}")
    return f"| alphamatting.com | {len(sessions)} | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.interactive", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sets", default="sod,dis5k,alphamatting")
    parser.add_argument("--limit", type=int, default=None, help="photos per set (default: all)")
    parser.add_argument("--masks", type=Path, default=DEFAULT_MASKS, help="cached ISNet masks (<set>_<id>.npz)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the shipped cutouts are cached")
    parser.add_argument("--max-marks", type=int, default=MAX_MARKS)
    parser.add_argument("--mark", choices=("tap", "brush"), default="tap",
                        help="tap: the engine's Tap (selects/drops a region); brush: one keep/erase dab")
    parser.add_argument("--no-second-opinion", action="store_true",
                        help="taps use the first model only (the product asks U^2-Net-p too)")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"interactive: evaluation data not found at {args.data} (expected ../shared/data)", file=sys.stderr)
        return 2
    cutouts = ShippedCutouts(args.cache, args.masks if args.masks.is_dir() else None)
    sets = args.sets.split(",")
    print(f"interactive {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPU cores; simulated {args.mark}s at the "
          f"centre of the largest error region, at most {args.max_marks}; second opinion "
          f"{'off' if args.no_second_opinion else SECOND_MODEL}")
    seconds: list[float] = []
    binary_rows, soft_rows = [], []
    for name in sets:
        sessions = []
        for sample in samples(args.data, name, args.limit, args.cache):
            session = simulate(sample, cutouts, args.max_marks, None if sample.soft_truth else IOU_TARGET, args.mark,
                               not args.no_second_opinion)
            sessions.append(session)
            seconds += session.seconds
            shown = session.scores[:6]
            print(f"  {name} {sample.name}: " + " ".join(f"{v:.3f}" if not sample.soft_truth else f"{v:.1f}"
                                                       for v in shown)
                  + (f" (NoC@90 {session.marks_to(IOU_TARGET, args.max_marks)})" if not sample.soft_truth else ""),
                  file=sys.stderr, flush=True)
        if name == "alphamatting":
            soft_rows.append(report_soft(sessions))
        else:
            binary_rows.append(report_binary(TITLES[name], sessions, args.max_marks))
    if binary_rows:
        print("\n| set | photos | NoC@90 (mean) | median | at 0.90 already | never within "
              f"{args.max_marks} | below 0.90 by the outline alone ({OUTLINE_REACH:g} px) | IoU shipped | "
              "IoU after 1 / 3 / 5 marks |")
        print("|---|---|---|---|---|---|---|---|---|")
        print("\n".join(binary_rows))
    if soft_rows:
        print("\n| set | photos | " + " | ".join(f"SAD after {k} marks (mean / median)" for k in SAD_AFTER) + " |")
        print("|---" * (2 + len(SAD_AFTER)) + "|")
        print("\n".join(soft_rows))
    if seconds:
        print(f"\nengine: {len(seconds)} calls, median {statistics.median(seconds):.2f} s, "
              f"90th percentile {np.percentile(seconds, 90):.2f} s, worst {max(seconds):.2f} s "
              f"(a session's calls: the grid prepared once per photo); peak RSS {peak_rss_gb():.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
