"""The GPU path's cutouts beside the CPU path's, photo by photo (issue 18's "quality identical").

    python scripts/device/compare_alphas.py GPU_ALPHAS.npz [--own-sizes GPU_OWN.npz] [--photo-dir .gpu/b/photos]

The CPU path cuts out as the GPU path does by default (the mirror view on; CUTOUT_MIRROR_VIEW=off for
files made with it off). GPU_ALPHAS.npz: scripts/bench_gpu.py's parity file (arr_0.. = products_1mp then portraits_1mp, in
file order); the same JPEGs are cut out here by the CPU path (onnxruntime) and the 8-bit alphas
compared: mean |difference| in levels, pixels off by more than 2 levels, IoU of the 0.5 cuts. Photos
at their own sizes (own_sizes/) are also scored against their truths on both paths (alphamatting.com
SAD, SOD MAE). The CPU cutouts are kept in --cache, so a second comparison costs nothing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from evaluation import metrics  # noqa: E402
from evaluation.benchmark import DEFAULT_DATA  # noqa: E402
from evaluation.datasets import load_grey  # noqa: E402
from pipeline.cutout import Pipeline  # noqa: E402
from pipeline.decode import decode_image  # noqa: E402
from pipeline.segment import default_mirror_views  # noqa: E402


def key(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"  # products_1mp/00.jpg and portraits_1mp/00.jpg are two photos


def cpu_alphas(paths: list[Path], cache: Path, mirror: bool) -> dict[str, np.ndarray]:
    """The CPU path's 8-bit alphas for `paths` (by key()), cut out once and kept in `cache`."""
    if cache.exists():
        kept = np.load(cache)
        if set(kept.files) == {key(path) for path in paths}:
            return {name: kept[name] for name in kept.files}
    pipeline = Pipeline(device="cpu", mirror_views=mirror)
    alphas = {key(path): np.round(pipeline.cutout(decode_image(path.read_bytes())).alpha * 255).astype(np.uint8)
              for path in paths}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **alphas)
    return alphas


def difference_row(name: str, gpu: np.ndarray, cpu: np.ndarray) -> dict:
    difference = np.abs(gpu.astype(int) - cpu.astype(int))
    return {"photo": name, "mean_levels": float(difference.mean()), "over_2_levels_pct": 100 * float((difference > 2).mean()),
            "iou_at_half": metrics.iou(gpu / 255.0, cpu / 255.0)}


def truths(data: Path) -> dict[str, tuple[Path, str]]:
    """Each own-size photo's truth and its set's metric, by file name (alphamatting.com: SAD, SOD dev: MAE)."""
    from evaluation.interactive import samples

    found = {}
    for set_name, metric, suffix in (("alphamatting", "sad", ".png"), ("sod", "mae", ".jpg")):
        for sample in samples(data, set_name, None):
            found[sample.name + suffix] = (sample.truth_path, metric)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gpu", type=Path)
    parser.add_argument("--own-sizes", type=Path)
    parser.add_argument("--photo-dir", type=Path, default=ROOT / ".gpu" / "b" / "photos")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache", type=Path, help="default: .gpu/cpu_alphas_mirror, or .gpu/cpu_alphas with "
                                                    "CUTOUT_MIRROR_VIEW=off (the CPU cutouts made either way)")
    args = parser.parse_args()
    mirror = default_mirror_views("cuda")  # the GPU path's default, unless CUTOUT_MIRROR_VIEW says otherwise
    args.cache = args.cache or ROOT / ".gpu" / ("cpu_alphas_mirror" if mirror else "cpu_alphas")
    paths = sorted((args.photo_dir / "products_1mp").glob("*.jpg")) + sorted((args.photo_dir / "portraits_1mp").glob("*.jpg"))
    gpu = np.load(args.gpu)
    cpu = cpu_alphas(paths, args.cache / "photos.npz", mirror)
    rows = [difference_row(key(path), gpu[f"arr_{index}"], cpu[key(path)])
            for index, path in enumerate(paths) if f"arr_{index}" in gpu.files]
    for kind in ("products", "portraits"):
        mine = [row for row in rows if row["photo"].startswith(kind)]
        if mine:
            print(f"{kind}: {len(mine)} photos, mean |difference| {np.mean([r['mean_levels'] for r in mine]):.3f} levels, "
                  f"largest a photo {max(r['mean_levels'] for r in mine):.3f}, pixels > 2 levels "
                  f"{np.mean([r['over_2_levels_pct'] for r in mine]):.3f} %, lowest IoU {min(r['iou_at_half'] for r in mine):.4f}")
    if args.own_sizes:
        own = np.load(args.own_sizes)
        own_paths = [args.photo_dir / "own_sizes" / name for name in own.files]
        cpu_own = cpu_alphas(own_paths, args.cache / "own_sizes.npz", mirror)
        known_truths = truths(args.data)
        for name in own.files:
            row = difference_row(name, own[name], cpu_own[f"own_sizes/{name}"])
            scores = ""
            if name in known_truths:
                truth_path, metric = known_truths[name]
                truth = load_grey(truth_path)
                score = metrics.sad if metric == "sad" else metrics.mae
                cpu_score = score(cpu_own[f"own_sizes/{name}"] / 255.0, truth)
                scores = f", {metric.upper()} GPU {score(own[name] / 255.0, truth):.4f} / CPU {cpu_score:.4f}"
            print(f"{name}: mean |difference| {row['mean_levels']:.3f} levels, IoU {row['iou_at_half']:.4f}{scores}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
