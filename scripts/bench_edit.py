"""Seconds and peak memory of one editing call (pipeline.editing.edit.refine_alpha) at 1 and 12 MP.

    python scripts/bench_edit.py [--sizes 1,12] [--marks 1,5,20] [--repeats 3] [--image PATH]

The photo (a DIS5K dev photo resized to each size) is cut out once by the real pipeline; its
stored form (the photo and the alpha as 8-bit arrays, as decoded from the stored JPEG and PNG,
plus the model's working-grid mask) is then edited in a fresh process per size, so the peak RSS
printed is the editing process's own. Two timings per number of marks: a cold call (the whole list
replayed from the stored cutout, nothing kept: the worst case) and the next call of an editing
session (pipeline.editing.edit.prepare once, each call sending the list grown by one mark, as the editor
page does: only the new mark is replayed, then one solve and one upsample). The marks mix taps (keep / drop a region) and keep / erase strokes along the
subject's outline, placed deterministically from the cutout. The editor's second opinion (U^2-Net-p,
asked once per grid when a keep tap lands where ISNet saw nothing) is run in the editing process
and counted, as the editor runs it (--no-second-opinion leaves it out); a third timing replays cold
with the second opinion read back from its stored PNG, as for a result whose editor page any
process opened before (bot.edits keeps it with the result's files).
Run it on a quiet machine (it waits while /tmp/cpu-busy exists).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_IMAGE = ROOT.parent / "shared" / "data" / "dis5k_te_dev" / "image" / "te3-car-1233511291.jpg"


def stored_cutout(image_path: Path, megapixels: float, folder: Path) -> Path:
    """Cut the resized photo out with the real pipeline; save what a stored result holds."""
    from PIL import Image

    from pipeline.cutout import CutoutOptions, Pipeline

    photo = Image.open(image_path).convert("RGB")
    scale = (megapixels * 1e6 / (photo.width * photo.height)) ** 0.5
    photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.LANCZOS)
    image = np.asarray(photo)
    pipeline = Pipeline()
    unit = image.astype(np.float32) / 255.0
    options = CutoutOptions(foreground=False)
    segmented = pipeline.segment([unit], options, [[]])[0]
    mask = segmented.mask
    result = pipeline._refine(unit, mask, None, options, {}, person=segmented.person, small_image=segmented.small_image)
    work_h, work_w = pipeline.working_size(unit.shape, mask.shape)
    from pipeline.segment import resize_float

    if mask.shape != (work_h, work_w):
        mask = np.clip(resize_float(mask, work_w, work_h), 0.0, 1.0)
    path = folder / f"cutout_{megapixels:g}mp.npz"
    np.savez(path, image=image, mask=mask.astype(np.float32),
             alpha=np.round(np.clip(result.alpha, 0, 1) * 255).astype(np.uint8))
    return path


def bench_marks(alpha: np.ndarray, count: int) -> list:
    """`count` marks from the cutout: taps that change a side (keep on the background, erase on the
    subject: each grows a region, the engine's costliest mark) and keep / erase strokes on the outline."""
    from scipy import ndimage

    from pipeline.editing.edit import Stroke, Tap

    height, width = alpha.shape
    subject = alpha >= 128
    rng = np.random.default_rng(16)
    edge = np.argwhere(subject ^ ndimage.binary_erosion(subject, iterations=2))
    inside, outside = np.argwhere(subject), np.argwhere(~subject)
    radius = max(width, height) / 100
    marks = []
    for index in range(count):
        kind = index % 4
        if kind == 0 and len(outside):
            y, x = outside[rng.integers(len(outside))]
            marks.append(Tap(float(x), float(y), keep=True))  # "this too": a region grown on the background
        elif kind == 1 and len(edge):
            y, x = edge[rng.integers(len(edge))]
            points = tuple((float(x + dx), float(y + dy)) for dx, dy in zip(range(0, 60, 6), range(0, 30, 3)))
            marks.append(Stroke(points, radius, keep=True))
        elif kind == 2 and len(inside):
            y, x = inside[rng.integers(len(inside))]
            marks.append(Tap(float(x), float(y), keep=False))  # "not this": a region grown on the subject
        elif len(edge):
            y, x = edge[rng.integers(len(edge))]
            points = tuple((float(x - dx), float(y + dy)) for dx, dy in zip(range(0, 60, 6), range(0, 30, 3)))
            marks.append(Stroke(points, radius, keep=False))
    return marks


def child(path: Path, mark_counts: list[int], repeats: int, second_opinion: bool = True) -> dict:
    from pipeline.editing.edit import EditSource, prepare, refine_alpha

    stored = np.load(path)
    ask = None
    if second_opinion:  # as the editor does: U^2-Net-p for keep taps ISNet did not see (in place here)
        from bot.edits import second_opinion_from
        from pipeline.cutout import Pipeline
        from pipeline.worker import PipelineWorker

        second = second_opinion_from(Pipeline(), PipelineWorker())
        image = stored["image"]
        ask = lambda: second(image)  # noqa: E731
    source = EditSource(stored["image"], stored["mask"], stored["alpha"], second_opinion=ask)
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    kept_source = None
    if second_opinion:  # a result whose editor page was opened before: its second opinion is read back (bot.edits)
        from bot.results import grey_png, read_grey_png

        kept = grey_png(ask())
        kept_source = EditSource(stored["image"], stored["mask"], stored["alpha"],
                                 second_opinion=lambda: read_grey_png(kept).astype(np.float32) / 255.0)
    refine_alpha(source, bench_marks(source.alpha, 2))  # warms numba's compiled code and imports
    rows = {}
    for count in mark_counts:
        marks = bench_marks(source.alpha, count)
        seconds, in_session, kept_cold = [], [], []
        for _ in range(repeats):
            started = time.perf_counter()
            refine_alpha(source, marks)
            seconds.append(time.perf_counter() - started)
            if kept_source is not None:
                started = time.perf_counter()
                refine_alpha(kept_source, marks)
                kept_cold.append(time.perf_counter() - started)
            # The editor's way: one session, each call sends the list grown by one mark.
            session = prepare(source)
            for length in range(1, count):
                refine_alpha(session, marks[:length])
            started = time.perf_counter()
            refine_alpha(session, marks)
            in_session.append(time.perf_counter() - started)
        rows[count] = {"median_s": round(statistics.median(seconds), 3), "max_s": round(max(seconds), 3),
                       "session_median_s": round(statistics.median(in_session), 3),
                       "kept_median_s": round(statistics.median(kept_cold), 3) if kept_cold else None}
    height, width = source.alpha.shape
    return {"megapixels": round(height * width / 1e6, 1), "size": f"{width}x{height}",
            "grid": list(source.mask.shape), "by_marks": rows,
            "rss_before_edits_gb": round(baseline_rss, 2),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,12")
    parser.add_argument("--marks", default="1,5,20")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--no-second-opinion", action="store_true",
                        help="leave out the editor's second model (U^2-Net-p for keep taps ISNet did not see)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--make", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    mark_counts = [int(n) for n in args.marks.split(",")]
    if args.make:  # its own process: the model's memory must not count in the editing process's peak
        print(stored_cutout(args.image, float(args.sizes), args.make))
        return 0
    if args.child:
        print(json.dumps(child(args.child, mark_counts, args.repeats, not args.no_second_opinion)))
        return 0
    while Path("/tmp/cpu-busy").exists():
        print("waiting: /tmp/cpu-busy exists", file=sys.stderr)
        time.sleep(30)
    print(f"bench_edit {time.strftime('%Y-%m-%d %H:%M')} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores; median of {args.repeats}; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as folder:
        for size in (float(s) for s in args.sizes.split(",")):
            made = subprocess.run([sys.executable, __file__, "--make", folder, "--sizes", f"{size:g}",
                                   "--image", str(args.image)], capture_output=True, text=True, check=True)
            path = Path(made.stdout.strip().splitlines()[-1])
            output = subprocess.run([sys.executable, __file__, "--child", str(path), "--marks", args.marks,
                                     "--repeats", str(args.repeats)]
                                    + (["--no-second-opinion"] if args.no_second_opinion else []),
                                    capture_output=True, text=True, check=True)
            row = json.loads(output.stdout.strip().splitlines()[-1])
            timings = ", ".join(f"{count} marks: cold {r['median_s']:.2f} s (max {r['max_s']:.2f})"
                                + (f", cold with the second opinion kept {r['kept_median_s']:.2f} s"
                                   if r["kept_median_s"] is not None else "")
                                + f", next mark in a session {r['session_median_s']:.2f} s"
                                for count, r in row["by_marks"].items())
            print(f"{row['megapixels']:>5} MP {row['size']} (grid {row['grid'][1]}x{row['grid'][0]}): {timings}; "
                  f"peak RSS {row['peak_rss_gb']:.2f} GB ({row['rss_before_edits_gb']:.2f} GB with the cutout loaded)",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
