"""Seconds and peak memory for one photo, end to end, at phone-photo sizes (1, 12 and 24 MP).

    python scripts/bench_photo_sizes.py [--sizes 1,12,24] [--repeats 3] [--image PATH]

Each size runs in a fresh process (so its peak RSS is its own): JPEG bytes -> decode -> cutout
(default options) -> transparent PNG, timed after the models are loaded and warmed on one
photo. The input is a DIS5K dev photo resized to the size (default: the 22 MP car, a real
full-resolution photo) so the outline refinement sees real detail.
"""
from __future__ import annotations

import argparse
import io
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_IMAGE = ROOT.parent / "shared" / "data" / "dis5k_te_dev" / "image" / "te3-car-1233511291.jpg"


def one_size(image_path: Path, megapixels: float, repeats: int) -> dict:
    from PIL import Image

    from pipeline.cutout import Pipeline
    from pipeline.decode import decode_image
    from pipeline.outputs.render import Background, render

    photo = Image.open(image_path).convert("RGB")
    scale = (megapixels * 1e6 / (photo.width * photo.height)) ** 0.5
    photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.LANCZOS)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=92)
    data = buffer.getvalue()
    del photo
    pipeline = Pipeline()
    pipeline.warm_up()
    seconds, stages = [], []
    for _ in range(repeats + 1):  # the first run warms caches and is not counted
        started = time.perf_counter()
        image = decode_image(data, max_bytes=1 << 30, max_pixels=1 << 30)
        result = pipeline.cutout(image)
        render(result, Background("transparent"), fmt="png")
        seconds.append(time.perf_counter() - started)
        stages.append(result.timings)
        del image, result
    seconds = seconds[1:]
    return {"megapixels": megapixels, "seconds_median": statistics.median(seconds),
            "seconds_max": max(seconds), "stages": {k: round(v, 2) for k, v in stages[-1].items()},
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,12,24")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--one", type=float, help=argparse.SUPPRESS)  # the child process's size
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(args.image, args.one, args.repeats)))
        return 0
    if not args.image.exists():
        print(f"bench_photo_sizes: {args.image} not found (expected ../shared/data)", file=sys.stderr)
        return 2
    print(f"{time.strftime('%Y-%m-%d %H:%M')} {platform.machine()} {len(__import__('os').sched_getaffinity(0))} cores, "
          f"input {args.image.name}, {args.repeats} timed runs per size\n")
    print("| photo | end to end median / max (decode + cutout + PNG) | stages of the last run (s) | peak RSS |")
    print("|---|---|---|---|")
    for size in (float(s) for s in args.sizes.split(",")):
        child = subprocess.run([sys.executable, __file__, "--one", str(size), "--image", str(args.image),
                                "--repeats", str(args.repeats)], capture_output=True, text=True, cwd=ROOT)
        if child.returncode != 0:
            print(f"| {size:g} MP | failed: {child.stderr.strip().splitlines()[-1:]} | | |")
            continue
        row = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"| {size:g} MP | {row['seconds_median']:.2f} / {row['seconds_max']:.2f} s | {row['stages']} | "
              f"{row['peak_rss_gb']:.2f} GB |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
