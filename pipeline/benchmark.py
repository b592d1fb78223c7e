"""Quality and speed of the pipeline on the evaluation sets in ../shared/data.

    python -m pipeline.benchmark [--data ../shared/data] [--sets alphamatting,sod] [--limit N]

alphamatting (27 images, soft ground truth): SAD, MSE, gradient, connectivity and seconds per
image for the raw model mask (as the pipeline runs it, at the photo's shape, and stretched to the
model's square as it was trained), our automatic pipeline, a rembg-style baseline (mask > 240 fg,
< 10 bg, 10 px erosion, closed-form) on the same model, and our matting stage alone given the
set's Trimap1 and Trimap2 (errors then in the trimap's unknown region).
sod (196 images, binary ground truth): MAE, max F-measure, mean IoU for the raw mask and ours.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from pipeline import metrics
from pipeline.cutout import CutoutOptions, Pipeline
from pipeline.decode import decode_image
from pipeline.matte import estimate_alpha
from pipeline.segment import Segmenter
from pipeline.trimap import split_trimap

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SQUARE_LABEL = "raw model mask, square input"


def load_grey(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0


def rembg_style_alpha(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """rembg's alpha_matting path: fixed thresholds, fixed 10 px erosion, closed-form, no prior."""
    from pymatting import estimate_alpha_cf

    fg = ndimage.binary_erosion(mask > 240 / 255, structure=np.ones((3, 3)), iterations=10, border_value=0)
    bg = ndimage.binary_erosion(mask < 10 / 255, structure=np.ones((3, 3)), iterations=10, border_value=0)
    trimap = np.full(mask.shape, 0.5)
    trimap[fg] = 1.0
    trimap[bg] = 0.0
    return estimate_alpha_cf(image.astype(np.float64), trimap).astype(np.float32)


def matting_scores(alpha: np.ndarray, truth: np.ndarray, region: np.ndarray | None) -> dict[str, float]:
    return {
        "SAD": metrics.sad(alpha, truth, region),
        "MSE": metrics.mse(alpha, truth, region),
        "Grad": metrics.gradient_error(alpha, truth, region),
        "Conn": metrics.connectivity_error(alpha, truth, region),
    }


def square_segmenter(pipeline: Pipeline, options: CutoutOptions) -> Segmenter | None:
    """The model at its trained square input, when the pipeline runs it at another shape."""
    if not pipeline.keep_aspect or pipeline.uses_torch:
        return None
    square = Pipeline(pipeline.model_dir, pipeline.cache_dir, pipeline.threads, device="cpu", keep_aspect=False)
    return square.segmenter(options.model)


def run_alphamatting(pipeline: Pipeline, root: Path, limit: int | None, baseline: bool,
                     options: CutoutOptions = CutoutOptions(), square: Segmenter | None = None) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = defaultdict(list)
    names = sorted(p.stem for p in (root / "input").glob("*.png"))[:limit]
    for name in names:
        image = decode_image((root / "input" / f"{name}.png").read_bytes(), max_bytes=1 << 30)
        truth = load_grey(root / "gt_alpha" / f"{name}.png")
        started = time.perf_counter()
        result = pipeline.cutout(image, options)
        elapsed = time.perf_counter() - started
        rows["raw model mask"].append({"image": name, **matting_scores(result.mask, truth, None),
                                       "s": result.timings.get("segment", 0.0)})
        if square is not None:
            started = time.perf_counter()
            mask = square.predict(image)
            rows[SQUARE_LABEL].append({"image": name, **matting_scores(mask, truth, None),
                                       "s": time.perf_counter() - started})
        rows["ours (automatic)"].append({"image": name, **matting_scores(result.alpha, truth, None), "s": elapsed,
                                         "notes": "; ".join(result.notes)})
        if baseline:
            started = time.perf_counter()
            try:
                alpha = rembg_style_alpha(image, result.mask)
                rows["rembg-style baseline"].append(
                    {"image": name, **matting_scores(alpha, truth, None), "s": time.perf_counter() - started})
            except Exception as error:  # the baseline raising is a result worth reporting
                rows["rembg-style baseline"].append({"image": name, "failed": f"{type(error).__name__}: {error}"})
        for trimap_name in ("trimap1", "trimap2"):
            trimap_path = root / trimap_name / f"{name}.png"
            if not trimap_path.exists():
                continue
            trimap = load_grey(trimap_path)
            unknown = split_trimap(trimap)[2]
            started = time.perf_counter()
            # At the trimap's own resolution: the unknown-pixel budget is a speed guard for big photos.
            alpha = estimate_alpha(image, trimap, max_unknown=None)
            rows[f"matting given {trimap_name}"].append(
                {"image": name, **matting_scores(alpha, truth, unknown), "s": time.perf_counter() - started})
        ours = rows["ours (automatic)"][-1]
        raw = rows["raw model mask"][-1]
        print(f"  {name}: raw SAD {raw['SAD']:.1f}  ours {ours['SAD']:.1f}  ({elapsed:.1f} s)", file=sys.stderr, flush=True)
    return rows


def run_sod(pipeline: Pipeline, root: Path, limit: int | None) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = defaultdict(list)
    with open(root / "manifest.csv") as handle:
        entries = list(csv.DictReader(handle))[:limit]
    options = CutoutOptions()
    for entry in entries:
        image = decode_image((root / entry["image"]).read_bytes())
        truth = (load_grey(root / entry["gt_mask"]) > 0.5).astype(np.float32)
        started = time.perf_counter()
        result = pipeline.cutout(image, options)
        elapsed = time.perf_counter() - started
        for label, alpha, seconds in (("raw model mask", result.mask, result.timings.get("segment", 0.0)),
                                      ("ours (automatic)", result.alpha, elapsed)):
            rows[label].append({"image": entry["id"], "MAE": metrics.mae(alpha, truth),
                                "maxF": metrics.max_f_measure(alpha, truth), "IoU": metrics.iou(alpha, truth),
                                "s": seconds})
    return rows


def summarise(title: str, rows: dict[str, list[dict]], keys: list[str]) -> str:
    lines = [f"\n## {title}", "", "| method | n | failed | " + " | ".join(f"{k} mean | {k} median" for k in keys) + " | s/image |",
             "|---" * (3 + 2 * len(keys) + 1) + "|"]
    for method, entries in rows.items():
        ok = [e for e in entries if "failed" not in e]
        failed = [e["image"] for e in entries if "failed" in e]
        cells = []
        for key in keys:
            values = [e[key] for e in ok]
            cells += [f"{statistics.fmean(values):.4g}", f"{statistics.median(values):.4g}"] if values else ["-", "-"]
        seconds = statistics.fmean(e["s"] for e in ok) if ok else 0.0
        lines.append(f"| {method} | {len(ok)} | {','.join(failed) or 0} | " + " | ".join(cells) + f" | {seconds:.2f} |")
    return "\n".join(lines)


def harm_report(rows: dict[str, list[dict]], raw_label: str = "raw model mask") -> str:
    """Images where the automatic pipeline is more than 10 % worse (SAD) than a raw mask."""
    raw = {e["image"]: e["SAD"] for e in rows[raw_label]}
    worse = [f"{e['image']} ({raw[e['image']]:.1f} -> {e['SAD']:.1f})" for e in rows["ours (automatic)"]
             if e["SAD"] > 1.1 * raw[e["image"]]]
    return f"\nimages >10% worse than the {raw_label} (SAD): {len(worse)}" + (": " + ", ".join(worse) if worse else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sets", default="alphamatting,sod")
    parser.add_argument("--limit", type=int, default=None, help="images per set (default: all)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the rembg-style baseline")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"benchmark: evaluation data not found at {args.data} (expected ../shared/data)", file=sys.stderr)
        return 2
    pipeline = Pipeline()
    pipeline.warm_up()
    sets = args.sets.split(",")
    if "alphamatting" in sets:
        rows = run_alphamatting(pipeline, args.data / "alphamatting_training_lowres", args.limit, not args.no_baseline,
                                square=square_segmenter(pipeline, CutoutOptions()))
        print(summarise("alphamatting.com training set (SAD, Grad, Conn /1000; alpha in [0,1])", rows,
                        ["SAD", "MSE", "Grad", "Conn"]))
        for raw_label in ("raw model mask", SQUARE_LABEL):
            if raw_label in rows:
                print(harm_report(rows, raw_label))
    if "sod" in sets:
        rows = run_sod(pipeline, args.data / "sod_dev", args.limit)
        print(summarise("SOD dev split", rows, ["MAE", "maxF", "IoU"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
