"""Quality and speed of the pipeline on the evaluation sets in ../shared/data.

    python -m evaluation.benchmark [--data ../shared/data] [--sets alphamatting,sod,dis5k] [--limit N]
        [--rows this.json] [--against earlier.json]

One quality gate over every development set: the raw model mask (what ISNet drew in one view at its native side, bilinearly
resized to the photo) beside the shipped alpha, per set, with the count of images the shipped
alpha made worse than the raw mask (> 10 % on the set's main error), the count badly harmed
(IoU at 0.5 down by more than 0.1), seconds per image and the process's peak RSS.
alphamatting (27, soft truth): SAD, MSE, gradient, connectivity; the alpha inside the truth's
partial (hair/fur) region against the truth's own mean there; our matting stage alone given the
set's Trimap1 and Trimap2. Optional: --square (the raw mask at the model's trained square) and
--baseline (rembg-style: mask > 240 fg, < 10 bg, 10 px erosion, closed-form).
sod (196) and dis5k (36, 1-24 MP, binary truth): MAE, max F, IoU at 0.5, boundary MAE (within
10 px of the true edge). studio (not in the default run): the same scores on those sets' subjects
that could be products, pasted on plain studio backgrounds with a contact shadow, as most product
photos are shot; and alphamatting.com's subjects matted onto them, scored as alphamatting.com is.
With --against (an earlier run's --rows file), each set also gets the count of images this run
made >10 % worse or better than that run's shipped alpha: a change is judged photo by photo.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from scipy import ndimage

from evaluation import metrics
from evaluation.datasets import load_grey, manifest_entries
from evaluation.studio import studio_matte_samples, studio_samples
from pipeline.cutout import CutoutOptions, CutoutResult, Pipeline
from pipeline.decode import decode_image
from pipeline.matting.closed_form import estimate_alpha
from pipeline.matting.trimap import split_trimap
from pipeline.segment import Segmenter

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SQUARE_LABEL = "raw model mask, square input"
# The mask the chain refines: the first view, with the finer one mixed in where the photo was asked twice.
TWO_VIEWS_LABEL = "model mask as refined"


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
    scores = {
        "SAD": metrics.sad(alpha, truth, region),
        "MSE": metrics.mse(alpha, truth, region),
        "Grad": metrics.gradient_error(alpha, truth, region),
        "Conn": metrics.connectivity_error(alpha, truth, region),
    }
    if region is None:
        scores["IoU"] = metrics.iou(alpha, (truth > 0.5).astype(np.float32))
        partial = (truth > 0.02) & (truth < 0.98)
        # Hair density: mean alpha where the truth is partial, minus the truth's mean there.
        scores["hair"] = float(alpha[partial].mean() - truth[partial].mean()) if partial.any() else 0.0
    return scores


def mask_scores(alpha: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {"MAE": metrics.mae(alpha, truth), "maxF": metrics.max_f_measure(alpha, truth),
            "IoU": metrics.iou(alpha, truth), "bMAE": metrics.boundary_mae(alpha, truth)}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def one_view_mask(pipeline: Pipeline, options: CutoutOptions, image: np.ndarray, result) -> np.ndarray:
    """The raw model mask the gate compares against: the model's first view alone (what ISNet draws
    at its native side, one pass). Photos the pipeline also asked at the finer side or mirrored are
    asked once more."""
    segmenter = pipeline.segmenter(options.model)
    if not segmenter.asks_twice(*image.shape[:2]) and not segmenter.mirror_views:
        return result.mask
    return segmenter.predict(image, fine_view=False, mirror=False)


def square_segmenter(pipeline: Pipeline, options: CutoutOptions) -> Segmenter | None:
    """The model at its trained square input, when the pipeline runs it at another shape."""
    if not pipeline.keep_aspect or pipeline.uses_torch:
        return None
    square = Pipeline(pipeline.model_dir, pipeline.cache_dir, pipeline.threads, device="cpu", keep_aspect=False)
    return square.segmenter(options.model)


def cut_out_and_matte_score(pipeline: Pipeline, options: CutoutOptions, name: str, image: np.ndarray,
                            truth: np.ndarray) -> tuple[CutoutResult, float, dict, dict]:
    """One photo cut out and scored against a soft truth: (result, seconds, raw mask's row, shipped alpha's row)."""
    started = time.perf_counter()
    result = pipeline.cutout(image, options)
    elapsed = time.perf_counter() - started
    raw_row = {"image": name, **matting_scores(one_view_mask(pipeline, options, image, result), truth, None),
               "s": result.timings.get("segment", 0.0)}
    ours_row = {"image": name, **matting_scores(result.alpha, truth, None), "s": elapsed,
                "notes": "; ".join(result.notes)}
    return result, elapsed, raw_row, ours_row


def run_alphamatting(pipeline: Pipeline, root: Path, limit: int | None, baseline: bool,
                     options: CutoutOptions = CutoutOptions(), square: Segmenter | None = None,
                     trimaps: bool = True) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = defaultdict(list)
    names = sorted(p.stem for p in (root / "input").glob("*.png"))[:limit]
    for name in names:
        image = decode_image((root / "input" / f"{name}.png").read_bytes(), max_bytes=1 << 30)
        truth = load_grey(root / "gt_alpha" / f"{name}.png")
        result, elapsed, raw_row, ours_row = cut_out_and_matte_score(pipeline, options, name, image, truth)
        rows["raw model mask"].append(raw_row)
        if square is not None:
            started = time.perf_counter()
            mask = square.predict(image)
            rows[SQUARE_LABEL].append({"image": name, **matting_scores(mask, truth, None),
                                       "s": time.perf_counter() - started})
        rows["ours (automatic)"].append(ours_row)
        if baseline:
            started = time.perf_counter()
            try:
                alpha = rembg_style_alpha(image, result.mask)
                rows["rembg-style baseline"].append(
                    {"image": name, **matting_scores(alpha, truth, None), "s": time.perf_counter() - started})
            except Exception as error:  # the baseline raising is a result worth reporting
                rows["rembg-style baseline"].append({"image": name, "failed": f"{type(error).__name__}: {error}"})
        for trimap_name in ("trimap1", "trimap2") if trimaps else ():
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


def run_matte_set(pipeline: Pipeline, samples: Iterable[tuple[str, np.ndarray, np.ndarray]],
                  options: CutoutOptions = CutoutOptions()) -> dict[str, list[dict]]:
    """Raw mask and shipped alpha of every (id, photo, soft truth) sample, scored as alphamatting.com is."""
    rows: dict[str, list[dict]] = defaultdict(list)
    for name, image, truth in samples:
        _, _, raw_row, ours_row = cut_out_and_matte_score(pipeline, replace(options, foreground=False), name, image,
                                                          truth)
        rows["raw model mask"].append(raw_row)
        rows["ours (automatic)"].append(ours_row)
    return rows


def mask_set_samples(root: Path, limit: int | None) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(id, photo, binary truth) of a set with a manifest.csv (SOD dev, DIS5K dev)."""
    for entry in manifest_entries(root, limit):
        image = decode_image((root / entry["image"]).read_bytes(), max_bytes=1 << 30, max_pixels=1 << 30)
        yield entry["id"], image, (load_grey(root / entry["gt_mask"]) > 0.5).astype(np.float32)


def run_mask_set(pipeline: Pipeline, samples: Iterable[tuple[str, np.ndarray, np.ndarray]], label: str = "",
                 options: CutoutOptions = CutoutOptions()) -> dict[str, list[dict]]:
    """Raw mask, the mask as refined and the shipped alpha of every (id, photo, binary truth) sample."""
    rows: dict[str, list[dict]] = defaultdict(list)
    for name, image, truth in samples:
        started = time.perf_counter()
        result = pipeline.cutout(image, replace(options, foreground=False))
        elapsed = time.perf_counter() - started
        raw = one_view_mask(pipeline, options, image, result)
        for method, alpha, seconds in (("raw model mask", raw, result.timings.get("segment", 0.0)),
                                       (TWO_VIEWS_LABEL, result.mask, result.timings.get("segment", 0.0)),
                                       ("ours (automatic)", result.alpha, elapsed)):
            rows[method].append({"image": name, **mask_scores(alpha, truth), "s": seconds,
                                 "megapixels": image.shape[0] * image.shape[1] / 1e6})
        if label:
            ours, raw = rows["ours (automatic)"][-1], rows["raw model mask"][-1]
            print(f"  {label} {name}: raw MAE {raw['MAE']:.4f} ours {ours['MAE']:.4f} ({elapsed:.1f} s)",
                  file=sys.stderr, flush=True)
        del image, result
    return rows


def summarise(title: str, rows: dict[str, list[dict]], keys: list[str]) -> str:
    lines = [f"\n## {title}", "", "| method | n | failed | " + " | ".join(f"{k} mean | {k} median" for k in keys) + " | s/image |",
             "|---" * (3 + 2 * len(keys) + 1) + "|"]
    for method, entries in rows.items():
        ok = [e for e in entries if "failed" not in e]
        failed = [e["image"] for e in entries if "failed" in e]
        cells = []
        for key in keys:
            values = [e[key] for e in ok if key in e]
            cells += [f"{statistics.fmean(values):.4g}", f"{statistics.median(values):.4g}"] if values else ["-", "-"]
        seconds = statistics.fmean(e["s"] for e in ok) if ok else 0.0
        lines.append(f"| {method} | {len(ok)} | {','.join(failed) or 0} | " + " | ".join(cells) + f" | {seconds:.2f} |")
    return "\n".join(lines)


def compared(now: list[dict], reference: dict[str, dict], key: str) -> dict[str, list[str]]:
    """Each image of `now` against its reference scores (the raw mask's, or an earlier run's shipped
    alpha): "worse" / "better" by more than 10 % on `key` (and 1e-4), "harmed" / "dented" where IoU
    fell by more than 0.1 / 0.05. Worse images are named with both scores."""
    pairs = [(e, reference[e["image"]]) for e in now if e["image"] in reference]
    return {
        "worse": [f"{e['image']} ({r[key]:.4g} -> {e[key]:.4g})" for e, r in pairs
                  if e[key] > 1.1 * r[key] and e[key] - r[key] > 1e-4],
        "better": [e["image"] for e, r in pairs if e[key] < 0.9 * r[key] and r[key] - e[key] > 1e-4],
        "harmed": [f"{e['image']} (IoU {r['IoU']:.2f} -> {e['IoU']:.2f})" for e, r in pairs
                   if "IoU" in e and e["IoU"] < r.get("IoU", 0.0) - 0.1],
        "dented": [e["image"] for e, r in pairs if "IoU" in e and e["IoU"] < r.get("IoU", 0.0) - 0.05],
    }


def _listed(names: list[str]) -> str:
    return f"{len(names)}" + (": " + ", ".join(names) if names else "")


def harm_report(rows: dict[str, list[dict]], raw_label: str = "raw model mask", key: str = "SAD") -> str:
    """Images the shipped alpha made >10 % worse than a raw mask (on `key`), and badly harmed (IoU -0.1)."""
    ours = [e for e in rows["ours (automatic)"] if "failed" not in e]
    found = compared(ours, {e["image"]: e for e in rows[raw_label]}, key)
    seconds = statistics.median(e["s"] for e in ours) if ours else 0.0
    return (f"\nimages >10% worse than the {raw_label} ({key}): {_listed(found['worse'])}"
            + f"\nimages badly harmed (IoU down > 0.1): {_listed(found['harmed'])}"
            + f"\nimages with IoU down > 0.05: {_listed(found['dented'])}"
            + f"\nshipped alpha: median {seconds:.2f} s/image; peak RSS of this process so far {peak_rss_gb():.2f} GB")


def change_report(rows: dict[str, list[dict]], previous: dict[str, list[dict]], key: str) -> str:
    """The shipped alpha against an earlier run's (its --rows file, the same set): the images made
    >10 % worse or better on `key`, those whose IoU fell by more than 0.05, and the largest change
    of any score (0 when the two runs agree photo for photo)."""
    label = "ours (automatic)"
    before = {e["image"]: e for e in previous.get(label, []) if "failed" not in e}
    now = [e for e in rows.get(label, []) if "failed" not in e and e["image"] in before]
    if not now:
        return "\nagainst the earlier run: no image in common"
    found = compared(now, before, key)
    largest = max(abs(e[name] - before[e["image"]][name]) for e in now for name in e
                  if name not in ("image", "s", "notes", "megapixels") and isinstance(e[name], (int, float))
                  and isinstance(before[e["image"]].get(name), (int, float)))
    return (f"\nagainst the earlier run ({len(now)} images in common): >10% worse ({key}) {_listed(found['worse'])}"
            + f"; >10% better {len(found['better'])}; IoU down > 0.05: {_listed(found['dented'])}"
            + f"; largest change of any score {largest:.4g}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sets", default="alphamatting,sod,dis5k",
                        help="comma-separated; also 'studio' (the object sets' subjects on plain backgrounds)")
    parser.add_argument("--limit", type=int, default=None, help="images per set (default: all)")
    parser.add_argument("--baseline", action="store_true", help="also score the rembg-style baseline (slow)")
    parser.add_argument("--square", action="store_true", help="also score the raw mask at the model's square")
    parser.add_argument("--assist", default=None, help="score with this assist model fused in (e.g. u2netp)")
    parser.add_argument("--mirror", action="store_true",
                        help="with the mirror views on (CUTOUT_MIRROR_VIEW=on: each view also asked of the "
                             "mirrored photo)")
    parser.add_argument("--rows", type=Path, default=None,
                        help="write every image's scores here as JSON (to compare two runs image by image)")
    parser.add_argument("--against", type=Path, default=None,
                        help="an earlier run's --rows file: also count the images this run's shipped alpha "
                             "made >10 %% worse or better than that run's")
    parser.add_argument("--no-trimaps", action="store_true",
                        help="skip the matting stage given the set's trimaps (~20 s an image, unchanged by the chain)")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"benchmark: evaluation data not found at {args.data} (expected ../shared/data)", file=sys.stderr)
        return 2
    earlier = json.loads(args.against.read_text()) if args.against else {}
    options = CutoutOptions(assist_model=args.assist)
    pipeline = Pipeline(mirror_views=True if args.mirror else None)
    pipeline.warm_up(options)
    sets = args.sets.split(",")
    every_row: dict[str, dict[str, list[dict]]] = {}
    print(f"benchmark {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPU cores, device {pipeline.device}, "
          f"options {options}, mirror views {'on' if pipeline.mirror_views else 'off'}")
    if "alphamatting" in sets:
        square = square_segmenter(pipeline, CutoutOptions()) if args.square else None
        rows = run_alphamatting(pipeline, args.data / "alphamatting_training_lowres", args.limit, args.baseline,
                                options=options, square=square, trimaps=not args.no_trimaps)
        every_row["alphamatting"] = rows
        print(summarise("alphamatting.com training set (SAD, Grad, Conn /1000; alpha in [0,1]; "
                        "hair = mean alpha minus truth's in the partial region)", rows,
                        ["SAD", "MSE", "Grad", "Conn", "IoU", "hair"]))
        for raw_label in ("raw model mask", SQUARE_LABEL):
            if raw_label in rows:
                print(harm_report(rows, raw_label, "SAD"))
        if "alphamatting" in earlier:
            print(change_report(rows, earlier["alphamatting"], "SAD"))
        hair = {e["image"]: e["hair"] for e in rows["ours (automatic)"]}
        if "GT04" in hair:
            print(f"GT04 hair: mean alpha {hair['GT04']:+.3f} from the truth's in its partial region")
    for name, samples, title in (
            ("sod", lambda: mask_set_samples(args.data / "sod_dev", args.limit), "SOD dev split"),
            ("dis5k", lambda: mask_set_samples(args.data / "dis5k_te_dev", args.limit), "DIS5K dev (full resolution)"),
            ("studio", lambda: studio_samples(args.data, args.limit),
             "Studio shots (SOD and DIS5K dev subjects on plain backgrounds, evaluation/studio.py)")):
        if name in sets:
            rows = run_mask_set(pipeline, samples(), name, options)
            every_row[name] = rows
            print(summarise(title, rows, ["MAE", "maxF", "IoU", "bMAE"]))
            print(harm_report(rows, "raw model mask", "MAE"))
            if name in earlier:
                print(change_report(rows, earlier[name], "MAE"))
    if "studio" in sets:  # its second part: soft-truth subjects (hair, fur) on the same backgrounds
        rows = run_matte_set(pipeline, studio_matte_samples(args.data, args.limit), options)
        every_row["studio-matte"] = rows
        print(summarise("Studio shots, alphamatting.com subjects (soft truth; SAD, Grad, Conn /1000; hair = mean "
                        "alpha minus truth's in the partial region)", rows, ["SAD", "MSE", "Grad", "Conn", "IoU", "hair"]))
        print(harm_report(rows, "raw model mask", "SAD"))
        if "studio-matte" in earlier:
            print(change_report(rows, earlier["studio-matte"], "SAD"))
    if args.rows:
        args.rows.write_text(json.dumps(every_row, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
