"""Speed of the pipeline per stage and end to end at 1 MP, lone requests and saturated batches.

    python scripts/bench_speed.py [--device cpu|cuda|torch-cpu] [--images 8] [--batch 16] [--aspect 4:3]
        [--write docs/performance.md]

Stages: decode (JPEG bytes -> array), segment (ISNet + U^2-Net-p), matte, foreground, encode
(PNG). "Lone" runs one image at a time (latency p50/p99); "saturated" runs batches through
Pipeline.cutout_batch (images/s). Run it on the GPU machine with --device cuda, and with
--device cpu on the same machine for the CPU column. ISNet runs at the photo's aspect ratio, so
speed depends on it: --aspect 4:3 (phone photos) or 3:4 (portrait) crops the inputs first;
CUTOUT_SEGMENT_SHAPE=square measures the stretched-square input for comparison.
"""
from __future__ import annotations

import argparse
import datetime
import io
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pipeline.cutout import CutoutOptions, Pipeline  # noqa: E402
from pipeline.decode import decode_image  # noqa: E402
from pipeline.outputs.render import Background, render  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "alphamatting_training_lowres" / "input"


def centre_crop(image: Image.Image, aspect: float) -> Image.Image:
    """The largest centred part of image whose width / height is aspect."""
    width, height = image.size
    if width / height > aspect:
        keep = round(height * aspect)
        return image.crop(((width - keep) // 2, 0, (width - keep) // 2 + keep, height))
    keep = round(width / aspect)
    return image.crop((0, (height - keep) // 2, width, (height - keep) // 2 + keep))


def one_megapixel_jpegs(count: int, aspect: float | None = None) -> list[bytes]:
    paths = sorted(DATA.glob("*.png"))
    if not paths:
        raise SystemExit(f"no evaluation images at {DATA}")
    out = []
    for index in range(count):
        image = Image.open(paths[index % len(paths)]).convert("RGB")
        if aspect:
            image = centre_crop(image, aspect)
        scale = (1_000_000 / (image.width * image.height)) ** 0.5
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=92)
        out.append(buffer.getvalue())
    return out


def device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} CPU ({__import__('os').cpu_count()} cores)"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default=None)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--write", type=Path, help="append the table to this markdown file")
    parser.add_argument("--aspect", default=None,
                        help="crop the inputs to width:height first, e.g. 4:3 or 3:4 (default: as shot, ~3:2)")
    args = parser.parse_args()
    aspect = None
    if args.aspect:
        width, height = (float(part) for part in args.aspect.split(":"))
        aspect = width / height
    pipeline = Pipeline(device=args.device)
    pipeline.warm_up()
    options = CutoutOptions()
    jpegs = one_megapixel_jpegs(max(args.images, 2), aspect)
    pipeline.cutout(decode_image(jpegs[0]), options)  # warm caches / kernels

    stage_times: dict[str, list[float]] = {}
    latencies, latencies_before_png = [], []
    for data in jpegs[: args.images]:
        started = time.perf_counter()
        image = decode_image(data)
        decoded = time.perf_counter()
        result = pipeline.cutout(image, options)
        computed = time.perf_counter()
        render(result, Background("transparent"), fmt="png")
        finished = time.perf_counter()
        for stage, seconds in {**result.timings, "decode": decoded - started, "encode_png": finished - computed}.items():
            stage_times.setdefault(stage, []).append(seconds)
        latencies.append(finished - started)
        latencies_before_png.append(computed - started)

    batch = min(args.batch, args.images) if pipeline.uses_torch else 1
    images = [decode_image(data) for data in jpegs[: args.images]]
    started = time.perf_counter()
    done = 0
    while done < len(images):
        chunk = images[done: done + batch]
        results = pipeline.cutout_batch(chunk, options)
        for result in results:
            render(result, Background("transparent"), fmt="png")
        done += len(chunk)
    saturated = len(images) / (time.perf_counter() - started)

    seg_started = time.perf_counter()
    pipeline._predict_small_all(options.model, images)
    segment_rate = len(images) / (time.perf_counter() - seg_started)

    lines = [
        f"\n### {device_name(pipeline.device)} — path `{pipeline.device}` — {datetime.date.today().isoformat()}",
        "", f"{args.images} images at 1 MP (alphamatting.com inputs, {'cropped to ' + args.aspect if aspect else 'as shot'}, "
        f"resized), ISNet input {'square' if not pipeline.keep_aspect else 'photo-shaped'}, batch {batch} when saturated.", "",
        "| measure | value |", "|---|---|",
        f"| lone request, end to end incl. PNG: p50 / p99 | {statistics.median(latencies) * 1000:.0f} / {percentile(latencies, 0.99) * 1000:.0f} ms |",
        f"| lone request before PNG encoding: p50 / p99 | {statistics.median(latencies_before_png) * 1000:.0f} / {percentile(latencies_before_png, 0.99) * 1000:.0f} ms |",
        f"| saturated end to end (decode..PNG) | {saturated:.2f} images/s |",
        f"| segmentation only (ISNet, batch {batch}) | {segment_rate:.2f} images/s |",
    ]
    for stage, values in stage_times.items():
        lines.append(f"| stage `{stage}` p50 | {statistics.median(values) * 1000:.0f} ms |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        with open(args.write, "a") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
