"""The GPU pipeline measured in one run, beside the CPU path on the same machine.

    python scripts/bench_gpu.py [--out DIR] [--data ../shared/data] [--photos 256] [--skip-cpu]

Sections (each one's failure is reported and the run goes on):
- segmentation: ISNet forward passes/s at batch 1, 16 and 64, at the 1024^2 square and at a phone
  photo's 1024x768, for fp16 channels-last (the default; CUDA graphs at small batches) and the
  variants it was chosen over (no graphs, bf16, NCHW), with peak GPU memory; plus one batch of 64
  1 MP photos including the on-device resize and normalisation.
- lone requests: one 1 MP (and 12 MP) photo at a time, JPEG bytes -> decode -> cutout -> PNG:
  p50 / p99 before encoding and in all, and the stages.
- saturated: the service's shape (products at each batch size, portraits at the largest). Client threads decode and encode (the request / IO threads),
  the pipeline thread (PipelineWorker) takes up to --batch photos per forward pass and refines
  them in the pipeline's refine pool. images/s at 1 MP and at 12 MP, batch sizes, where time goes.
- ablations: the saturated products load without the person matte, and with fewer client threads.
- processes: the same load over several service processes sharing the GPU (--processes).
- the CPU path (onnxruntime, every core of this machine) for the same lone requests.
- ahead: the second opinion asked on the pipeline thread beside each refinement asking it (session 25).
- tuning: the refine threads' own CUDA streams, batches finishing behind, refine threads, batch 32 (session 26).
- a torch profile of one batch-64 forward pass (top kernels).
Photos, cropped to 4:3 (a phone photo's shape) and resized to 1 and 12 MP: products = DIS5K dev's
object photos (the 22 MP car first), portraits = the alphamatting.com inputs (hair: the matting path). Prints markdown; writes results.json and bench_gpu.md under --out.
"""
from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import resource
import statistics
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from evaluation.benchmark import DEFAULT_DATA  # noqa: E402
from pipeline.cutout import CutoutOptions, Pipeline, default_refine_threads  # noqa: E402
from pipeline.decode import decode_image  # noqa: E402
from pipeline.outputs.render import Background, render  # noqa: E402
from pipeline.worker import PipelineWorker  # noqa: E402

LIMITS = {"max_bytes": 1 << 30, "max_pixels": 1 << 30}


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_gpu_gb() -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def photo_jpegs(data: Path, megapixels: float, count: int, kind: str = "products",
                photo_dir: Path | None = None) -> list[bytes]:
    """count 4:3 JPEGs of about `megapixels`: products = DIS5K dev's object photos (the 22 MP car
    first), portraits = the alphamatting.com inputs (hair, fur: the matting path). photo_dir: the
    JPEGs made ahead by --make-photos (a device machine that cannot hold the whole sets), repeated."""
    if photo_dir is not None:
        made = [path.read_bytes() for path in sorted((photo_dir / f"{kind}_{megapixels:g}mp").glob("*.jpg"))]
        if not made:
            raise SystemExit(f"no {kind} at {megapixels:g} MP under {photo_dir}")
        return [made[index % len(made)] for index in range(count)]
    if kind == "portraits":
        sources = sorted((data / "alphamatting_training_lowres" / "input").glob("*.png"))
    else:
        images = data / "dis5k_te_dev" / "image"
        car = images / "te3-car-1233511291.jpg"
        sources = ([car] if car.exists() else []) + sorted(set(images.glob("*.jpg")) - {car})
    if not sources:
        raise SystemExit(f"no {kind} photos under {data}")

    def made_from(path: Path) -> bytes:
        photo = Image.open(path).convert("RGB")
        width, height = photo.size
        if width * 3 > height * 4:  # crop to 4:3 (landscape) or 3:4 (portrait)
            keep = height * 4 // 3
            photo = photo.crop(((width - keep) // 2, 0, (width - keep) // 2 + keep, height))
        elif height * 3 > width * 4:
            keep = width * 4 // 3
            photo = photo.crop((0, (height - keep) // 2, width, (height - keep) // 2 + keep))
        scale = (megapixels * 1e6 / (photo.width * photo.height)) ** 0.5
        photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.BICUBIC)
        buffer = io.BytesIO()
        photo.save(buffer, "JPEG", quality=92)
        return buffer.getvalue()

    with ThreadPoolExecutor(os.cpu_count()) as pool:  # Pillow decodes and resizes outside the GIL
        made = list(pool.map(made_from, sources[:count]))
    return [made[index % len(made)] for index in range(count)]


def warm_up(pipeline: Pipeline, max_batch: int) -> None:
    """Pipeline.warm_up at the batch sizes the run asks (graphs captured for each); a tree from before
    the captured graphs (a baseline run of older code) warms batch 1 only."""
    try:
        pipeline.warm_up(max_batch=max_batch)
    except TypeError:
        pipeline.warm_up()


def parity(pipeline: Pipeline, jpegs: list[bytes], path: Path, batch: int = 8) -> dict:
    """The cutouts of `jpegs`, `batch` at a time, saved as 8-bit alphas to `path`: two trees' files
    (this code and a baseline) compared photo by photo show what a change did to the results."""
    alphas = []
    for start in range(0, len(jpegs), batch):
        images = [decode_image(data, **LIMITS) for data in jpegs[start:start + batch]]
        alphas += [np.round(result.alpha * 255).astype(np.uint8) for result in pipeline.cutout_batch(images)]
    np.savez_compressed(path, *alphas)
    return {"photos": len(alphas), "saved": str(path)}


def lone_requests(pipeline: Pipeline, jpegs: list[bytes], warm: int = 2) -> dict:
    before, total, encode, stages = [], [], [], {}
    for index, data in enumerate(jpegs):
        started = time.perf_counter()
        image = decode_image(data, **LIMITS)
        decoded = time.perf_counter()
        result = pipeline.cutout(image)
        computed = time.perf_counter()
        render(result, Background("transparent"), fmt="png")
        finished = time.perf_counter()
        if index < warm:
            continue
        before.append(computed - started)
        total.append(finished - started)
        encode.append(finished - computed)
        for stage, seconds in {"decode": decoded - started, **result.timings}.items():
            stages.setdefault(stage, []).append(seconds)
    return {"n": len(before), "before_png_ms_p50": 1000 * statistics.median(before),
            "before_png_ms_p99": 1000 * percentile(before, 0.99), "total_ms_p50": 1000 * statistics.median(total),
            "total_ms_p99": 1000 * percentile(total, 0.99), "encode_png_ms_p50": 1000 * statistics.median(encode),
            "stages_ms_p50": {k: round(1000 * statistics.median(v), 1) for k, v in stages.items()}}


def saturated(pipeline: Pipeline, jpegs: list[bytes], batch: int, clients: int,
              before_timing: Callable[[], None] = lambda: None, overlap: int = 1,
              worker_class: Callable[..., PipelineWorker] = PipelineWorker) -> dict:
    """Throughput the way the service runs: clients decode + encode, the pipeline thread batches.
    before_timing runs after the warm-up (the processes' section lines their timed runs up with it).
    overlap: batches still finishing behind the one segmented (PipelineWorker)."""
    worker = worker_class(queue_size=len(jpegs) + 8, max_batch=batch, max_wait_s=0.005, overlap=overlap)
    worker.start()
    options = CutoutOptions()
    lock = threading.Lock()
    stages: dict[str, list[float]] = {}

    def one(data: bytes) -> None:
        started = time.perf_counter()
        image = decode_image(data, **LIMITS)
        decoded = time.perf_counter()
        future = worker.submit_batchable("cutout", image, lambda images: pipeline.start_cutout_batch(images, options))
        result = future.result()
        computed = time.perf_counter()
        render(result, Background("transparent"), fmt="png")
        finished = time.perf_counter()
        with lock:
            for stage, seconds in {"decode": decoded - started, "pipeline (queue + batch)": computed - decoded,
                                   "encode_png": finished - computed, **result.timings}.items():
                stages.setdefault(stage, []).append(seconds)

    try:
        with ThreadPoolExecutor(clients) as pool:  # warm: every shape's first batch pays cuDNN's search
            list(pool.map(one, jpegs[: min(len(jpegs), batch)]))
        stages.clear()
        worker.stats.batches = worker.stats.batched_items = 0
        worker.stats.busy_s = 0.0
        before_timing()
        started_at = time.time()
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(one, jpegs))
        elapsed = time.perf_counter() - started
    finally:
        worker.stop()
    return {"n": len(jpegs), "batch": batch, "clients": clients, "images_per_s": len(jpegs) / elapsed,
            "started_at": started_at, "ended_at": started_at + elapsed,
            "mean_batch": worker.stats.batched_items / max(1, worker.stats.batches),
            "pipeline_thread_busy": worker.stats.busy_s / elapsed,
            "stages_ms_mean": {k: round(1000 * statistics.fmean(v), 1) for k, v in stages.items()}}


def _saturated_in_process(device: str, jpegs: list[bytes], batch: int, clients: int, refine_threads: int,
                          lined_up, results) -> None:
    """One service process: its own pipeline (models, pipeline thread, refine pool) on the shared GPU."""
    try:
        pipeline = Pipeline(device=device, refine_threads=refine_threads)
        warm_up(pipeline, batch)
        results.put(saturated(pipeline, jpegs, batch, clients, before_timing=lined_up.wait))
    except Exception as error:  # the parent reports it; a broken barrier frees the others
        lined_up.abort()
        results.put({"failed": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()[-1500:]})


def saturated_processes(device: str, jpegs: list[bytes], processes: int, batch: int, clients: int) -> dict:
    """The service's shape scaled out: `processes` processes (gunicorn workers, each with its own
    pipeline thread and model) share the GPU, each fed by `clients` request threads; the photos are
    split between them and their timed runs start together. Separate processes do not share one GIL,
    which held a single process's pipeline thread (docs/performance.md)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # CUDA does not survive fork
    lined_up, results = context.Barrier(processes), context.Queue()
    refine_threads = max(2, (os.cpu_count() or 2) // processes)
    workers = [context.Process(target=_saturated_in_process,
                               args=(device, jpegs[index::processes], batch, clients, refine_threads, lined_up, results))
               for index in range(processes)]
    for worker in workers:
        worker.start()
    answers = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    failed = [answer for answer in answers if "failed" in answer]
    if failed:
        return {"failed": failed}
    elapsed = max(a["ended_at"] for a in answers) - min(a["started_at"] for a in answers)
    return {"n": len(jpegs), "processes": processes, "batch": batch, "clients_per_process": clients,
            "refine_threads_per_process": refine_threads, "images_per_s": len(jpegs) / elapsed,
            "per_process_images_per_s": [round(a["images_per_s"], 2) for a in answers],
            "pipeline_thread_busy": [round(a["pipeline_thread_busy"], 2) for a in answers],
            "stages_ms_mean_first_process": answers[0]["stages_ms_mean"]}


def refine_graphs(pipeline: Pipeline, products: list[bytes], portraits: list[bytes], big: list[bytes],
                  batch: int, out: Path) -> dict:
    """The refinement replayed from captured CUDA graphs (pipeline/torch_path/graphs.GraphedSteps)
    beside the same code run eagerly, on one warm pipeline: the cutouts compared photo by photo, lone
    requests, the saturated service at 1 MP (products, portraits) and 12 MP, and stacks of 4."""
    import torch

    from pipeline.torch_path.chain import refinement_steps

    steps = refinement_steps(torch.device(pipeline.torch_device))
    answers: dict = {}

    def both(name: str, measure: Callable[[], dict], order: tuple[bool, ...] = (False, True)) -> None:
        for graphed in order:
            steps.enabled = graphed
            label = f"{name}, {'graphs' if graphed else 'eager'}"
            answers[label] = measure()
            print(f"  {label}: {json.dumps(answers[label])[:400]}", flush=True)

    photos = products[:16] + portraits[:8]
    saved: dict[bool, np.lib.npyio.NpzFile] = {}
    for graphed in (False, True, True):  # twice with graphs: the first run captures
        steps.enabled = graphed
        parity(pipeline, photos, out / f"alphas_{'graphs' if graphed else 'eager'}.npz")
        saved[graphed] = np.load(out / f"alphas_{'graphs' if graphed else 'eager'}.npz")
    differences = [np.abs(saved[True][key].astype(int) - saved[False][key]) for key in saved[False].files]
    answers["parity (24 photos, 8-bit alpha levels)"] = {
        "largest": int(max(d.max() for d in differences)), "mean": float(np.mean([d.mean() for d in differences])),
        "pixels off by > 2 levels (%)": 100 * float(np.mean([(d > 2).mean() for d in differences]))}
    print(f"  parity {answers['parity (24 photos, 8-bit alpha levels)']}", flush=True)
    both("lone 1MP products", lambda: lone_requests(pipeline, products[:18]))
    both("lone 1MP portraits", lambda: lone_requests(pipeline, portraits[:10]))
    both("lone 12MP products", lambda: lone_requests(pipeline, big[:4], warm=2), order=(True,))
    both(f"saturated 1MP products, batch {batch}", lambda: saturated(pipeline, products, batch, clients=2 * batch))
    both(f"saturated 1MP portraits, batch {batch}",
         lambda: saturated(pipeline, portraits, batch, clients=2 * batch))
    both("saturated 12MP products, batch 8", lambda: saturated(pipeline, big, 8, clients=16), order=(True,))
    stacked = Pipeline(device=pipeline.device, refine_stack=4)
    stacked._segmenters, stacked._person_matter = pipeline._segmenters, pipeline.person_matter()
    both(f"saturated 1MP products, batch {batch}, stacks of 4",
         lambda: saturated(stacked, products, batch, clients=2 * batch), order=(True,))
    steps.enabled = True
    answers["captures"] = {str(key[:2]): made for key, made in steps.captures().items()}
    answers["peak_gpu_gb"] = peak_gpu_gb()
    return answers


def measurer(answers: dict, saved_to: Path) -> Callable[[str, Callable[[], dict]], None]:
    """measure(label, run): one measurement into `answers`; a failure is recorded and the others go
    on, and what is done so far is saved to `saved_to` after each (a run cut short by its time limit
    still returns it)."""
    def measure(label: str, run: Callable[[], dict]) -> None:
        started = time.perf_counter()
        try:
            answers[label] = run()
        except Exception as error:
            answers[label] = {"failed": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()[-1500:]}
        if isinstance(answers[label], dict):
            answers[label]["section_s"] = round(time.perf_counter() - started, 1)
        print(f"  {label}: {json.dumps(answers[label])[:600]}", flush=True)
        saved_to.write_text(json.dumps(answers, indent=1, default=str))
    return measure


def cut_out_at_own_sizes(pipeline: Pipeline, paths: list[Path], saved_to: Path) -> dict:
    """Photos at their own sizes, one at a time (those the second opinion decides, say), their 8-bit
    alphas saved for a photo-by-photo comparison (scripts/device/compare_alphas.py)."""
    alphas = {path.name: np.round(pipeline.cutout(decode_image(path.read_bytes(), **LIMITS)).alpha * 255)
              .astype(np.uint8) for path in paths}
    np.savez_compressed(saved_to, **alphas)
    return {"photos": len(alphas)}


def overlapped(pipeline: Pipeline, products: list[bytes], portraits: list[bytes], big: list[bytes],
               out: Path, batches: tuple[int, ...], lone: int, parity_photos: list[Path] = (),
               quick: bool = False) -> dict:
    """Session 20's changes beside what they replace, on one warm pipeline: the next batch segmented
    while the last is refined (Pipeline.start_cutout_batch) beside the pipeline thread waiting for each
    batch; the matting solve reading its convergence every 16 steps beside every step (lone portraits,
    where it is the cost). The cutouts are saved for a photo-by-photo comparison with the CPU path.
    quick: the shipped settings alone (overlapped, read every 16 steps), the service's rates first."""
    from pipeline.torch_path import matte

    answers: dict = {}
    measure = measurer(answers, out / "overlapped_so_far.json")
    measure("parity", lambda: parity(pipeline, products[:16] + portraits[:8], out / "alphas.npz"))
    if parity_photos:
        measure("parity at own sizes",
                lambda: cut_out_at_own_sizes(pipeline, parity_photos, out / "alphas_own_sizes.npz"))
    first = min(batch for batch in batches if batch > 1)
    for overlap in (True,) if quick else (False, True):
        pipeline.overlap_batches = overlap
        name = "overlapped" if overlap else "batch after batch"
        for batch in (b for b in batches if b > 1):
            measure(f"saturated 1MP products, batch {batch}, {name}",
                    lambda: saturated(pipeline, products, batch, clients=2 * batch))
        measure(f"saturated 1MP portraits, batch {first}, {name}",
                lambda: saturated(pipeline, portraits, first, clients=2 * first))
    measure(f"saturated 12MP products, batch {first}, overlapped",
            lambda: saturated(pipeline, big, first, clients=2 * first))
    measure("lone 1MP products", lambda: lone_requests(pipeline, products[:lone + 2]))
    for every in (matte.CHECK_EVERY,) if quick else (1, matte.CHECK_EVERY):
        matte.CHECK_EVERY = every
        measure(f"lone 1MP portraits, convergence read every {every} steps",
                lambda: lone_requests(pipeline, portraits[:lone + 2]))
    measure("lone 12MP products", lambda: lone_requests(pipeline, big[:4], warm=2))
    answers["peak_gpu_gb"] = peak_gpu_gb()
    return answers


def second_opinion_ahead(pipeline: Pipeline, products: list[bytes], portraits: list[bytes], big: list[bytes],
                         out: Path, batch: int, lone: int, parity_photos: list[Path] = ()) -> dict:
    """Session 25's change beside what it replaces, on one warm pipeline: the second opinion asked on
    the pipeline thread for the batch's undecided photos from a replayed graph
    (pipeline/torch_path/second_opinion.py) beside each refinement asking it eagerly. The cutouts of
    both are saved (alphas_ahead.npz, alphas_later.npz; own sizes too) for a photo-by-photo comparison
    with each other and with the CPU path; then the service's rates and lone requests, shipped settings."""
    answers: dict = {}
    measure = measurer(answers, out / "ahead_so_far.json")
    second = pipeline.second_opinion_segmenter()
    graphed = second is not None and getattr(getattr(second, "network", None), "enabled", False)

    def use(ahead: bool) -> None:
        """Asked ahead from graphs, or as before: by the refinement, eagerly."""
        pipeline.second_opinion_ahead = ahead
        if graphed:
            second.network.enabled = ahead

    def both(label: str, run: Callable[[], dict]) -> None:
        for ahead in (False, True):
            use(ahead)
            measure(f"{label}, {'ahead' if ahead else 'asked in the refinement'}", run)

    for ahead in (False, True):
        use(ahead)
        name = "ahead" if ahead else "later"
        measure(f"parity {name}", lambda: parity(pipeline, products[:16] + portraits[:8], out / f"alphas_{name}.npz"))
        if parity_photos:
            measure(f"parity at own sizes {name}",
                    lambda: cut_out_at_own_sizes(pipeline, parity_photos, out / f"alphas_own_sizes_{name}.npz"))
    if all((out / f"alphas_{name}.npz").exists() for name in ("ahead", "later")):
        answers["parity, ahead beside later (8-bit levels)"] = alphas_beside(out / "alphas_later.npz",
                                                                             out / "alphas_ahead.npz")
        print(f"  parity {answers['parity, ahead beside later (8-bit levels)']}", flush=True)
    both(f"saturated 1MP products, batch {batch}", lambda: saturated(pipeline, products, batch, clients=2 * batch))
    both(f"saturated 1MP portraits, batch {batch}", lambda: saturated(pipeline, portraits, batch, clients=2 * batch))
    use(True)
    measure(f"saturated 1MP products, batch {2 * batch}, ahead",
            lambda: saturated(pipeline, products, 2 * batch, clients=4 * batch))
    measure("saturated 12MP products, batch 8", lambda: saturated(pipeline, big, 8, clients=16))
    measure("lone 1MP products", lambda: lone_requests(pipeline, products[:lone + 2]))
    measure("lone 1MP portraits", lambda: lone_requests(pipeline, portraits[:lone + 2]))
    measure("lone 12MP products", lambda: lone_requests(pipeline, big[:4], warm=2))
    answers["peak_gpu_gb"] = peak_gpu_gb()
    return answers


class GpuBusy:
    """The GPU's utilisation (share of time a kernel ran), sampled by nvidia-smi every 100 ms while
    the block runs; mean is None where nvidia-smi is missing."""

    def __enter__(self) -> "GpuBusy":
        import subprocess

        self.mean = None
        try:
            self._sampler = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                              "-lms", "100"], stdout=subprocess.PIPE, text=True)
        except OSError:
            self._sampler = None
        return self

    def __exit__(self, *_) -> None:
        if self._sampler is None:
            return
        self._sampler.terminate()
        samples = [int(line) for line in self._sampler.communicate(timeout=10)[0].split() if line.strip().isdigit()]
        self.mean = round(statistics.fmean(samples), 1) if samples else None


def alphas_beside(first: Path, second: Path) -> dict:
    """Two parity files (the same photos cut out two ways) compared photo by photo, in 8-bit levels."""
    before, after = np.load(first), np.load(second)
    differences = [np.abs(after[key].astype(int) - before[key]) for key in before.files]
    return {"largest": int(max(d.max() for d in differences)), "mean": float(np.mean([d.mean() for d in differences])),
            "pixels off by > 2 levels (%)": 100 * float(np.mean([(d > 2).mean() for d in differences])),
            "photos identical": sum(int(d.max() == 0) for d in differences), "photos": len(differences)}


def refine_with(pipeline: Pipeline, streams: bool, threads: int) -> None:
    """The warm pipeline's refinements from now on: on streams of their own or not, in a pool of `threads`."""
    pipeline.refine_streams = streams
    if pipeline.refine_threads != threads:
        old, pipeline._pool = pipeline._pool, None
        pipeline.refine_threads = threads
        if old is not None:
            old.shutdown(wait=True)


def with_gpu_busy(run: Callable[[], dict]) -> Callable[[], dict]:
    """run, its answer with the GPU's mean utilisation while it ran added."""
    def measured() -> dict:
        with GpuBusy() as gpu:
            answer = run()
        return {**answer, "gpu_busy_percent": gpu.mean}
    return measured


def tuning_alternating(pipeline: Pipeline, products: list[bytes], portraits: list[bytes], lone: int,
                       measure: Callable[[str, Callable[[], dict]], None]) -> None:
    """The tuning run's second call: one stream beside streams at 8 refine threads, batch 16, one batch
    finishing behind, taken in turn (A B A B) after a run that makes the refinement's captures, so
    neither side pays them or the machine's drift."""
    refine_with(pipeline, False, 8)
    measure("captures (not a finding)", lambda: saturated(pipeline, products, 16, clients=32))
    for round in (1, 2):
        for streams in (False, True):
            refine_with(pipeline, streams, 8)
            name = "streams" if streams else "one stream"
            measure(f"saturated 1MP products, batch 16, {name}, 8 refine threads, round {round}",
                    with_gpu_busy(lambda: saturated(pipeline, products, 16, clients=32)))
    for streams in (False, True):
        refine_with(pipeline, streams, 8)
        name = "streams" if streams else "one stream"
        measure(f"saturated 1MP portraits, batch 16, {name}, 8 refine threads",
                with_gpu_busy(lambda: saturated(pipeline, portraits, 16, clients=32)))
    refine_with(pipeline, True, 8)
    measure("lone 1MP products, streams", lambda: lone_requests(pipeline, products[:lone + 2]))
    measure("lone 1MP portraits, streams", lambda: lone_requests(pipeline, portraits[:lone + 2]))


def use_mirror(pipeline: Pipeline, on: bool) -> None:
    """The warm pipeline's ISNet from now on with its mirror view (issue 12's switch) or without; a
    batch shape first seen with it is captured on its first pass (the captures run below)."""
    pipeline.mirror_views = on
    pipeline.segmenter("isnet").mirror_views = on


def mirror(pipeline: Pipeline, products: list[bytes], portraits: list[bytes], out: Path, lone: int,
           batch: int, parity_photos: list[Path] = ()) -> dict:
    """Session 29: what ISNet's mirror view (CUTOUT_MIRROR_VIEW; it costs the CPU path 1.8x) costs the
    GPU path, where the pipeline thread's host work and not the GPU holds the rate: saturated 1 MP
    products and portraits and lone requests, mirror off and on taken in turn (A B A B) after a run
    that makes its captures. The cutouts with it are saved for a comparison with the CPU path's
    mirror (scripts/device/compare_alphas.py)."""
    answers: dict = {}
    measure = measurer(answers, out / "mirror_so_far.json")
    shipped = pipeline.mirror_views
    use_mirror(pipeline, True)
    measure("parity mirror", lambda: parity(pipeline, products[:16] + portraits[:8], out / "alphas_mirror.npz"))
    if parity_photos:
        measure("parity at own sizes mirror",
                lambda: cut_out_at_own_sizes(pipeline, parity_photos, out / "alphas_own_sizes_mirror.npz"))
    measure("captures (not a finding)", lambda: saturated(pipeline, products, batch, clients=2 * batch))
    for round in (1, 2):
        for on in (False, True):
            use_mirror(pipeline, on)
            measure(f"saturated 1MP products, batch {batch}, mirror {'on' if on else 'off'}, round {round}",
                    with_gpu_busy(lambda: saturated(pipeline, products, batch, clients=2 * batch)))
    for on in (False, True):
        use_mirror(pipeline, on)
        measure(f"saturated 1MP portraits, batch {batch}, mirror {'on' if on else 'off'}",
                with_gpu_busy(lambda: saturated(pipeline, portraits, batch, clients=2 * batch)))
    for on in (False, True):
        use_mirror(pipeline, on)
        measure(f"lone 1MP products, mirror {'on' if on else 'off'}", lambda: lone_requests(pipeline, products[:lone + 2]))
        measure(f"lone 1MP portraits, mirror {'on' if on else 'off'}",
                lambda: lone_requests(pipeline, portraits[:lone + 2]))
    use_mirror(pipeline, shipped)
    answers["peak_gpu_gb"] = peak_gpu_gb()
    return answers


class ProfiledWorker(PipelineWorker):
    """A PipelineWorker whose thread runs under cProfile (wall time per call, waits for the GIL and for
    the device included, so the calls that hold the pipeline thread stand out); each run's profile is
    added to `profiles`."""

    def __init__(self, *args, profiles: list, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.profiles = profiles

    def work(self, burst: bool = False) -> int:
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
        try:
            return super().work(burst)
        finally:
            profile.disable()
            self.profiles.append(profile)


def host_profile(pipeline: Pipeline, products: list[bytes], batch: int, out: Path) -> dict:
    """Issue 18's next lever: the host, not the GPU, holds the saturated rate (sessions 26, 29). The
    pipeline thread's calls under saturated 1 MP load, by own time and by cumulative time, written to
    host_profile.txt; the run's rate is lower than an unprofiled one (cProfile's cost per call)."""
    import functools
    import pstats

    answers = {"unprofiled": saturated(pipeline, products, batch, clients=2 * batch)}
    profiles: list = []
    answers["profiled"] = saturated(pipeline, products, batch, clients=2 * batch,
                                    worker_class=functools.partial(ProfiledWorker, profiles=profiles))
    report = io.StringIO()
    stats = pstats.Stats(profiles[-1], stream=report)
    stats.sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumulative").print_stats(40)
    (out / "host_profile.txt").write_text(report.getvalue())
    top = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:15]  # (file, line, name): (cc, nc, tt, ct, callers)
    answers["pipeline thread, own time (s) of the top calls"] = {
        f"{Path(key[0]).name}:{key[1]} {key[2]}": round(value[2], 3) for key, value in top}
    return answers


def tuning(pipeline: Pipeline, products: list[bytes], portraits: list[bytes], big: list[bytes], out: Path,
           lone: int, parity_photos: list[Path] = (), alternating: bool = False) -> dict:
    """Session 26: each refine thread on a CUDA stream of its own (pipeline/torch_path/streams.py)
    beside all on the default stream, with one or two batches finishing behind the one segmented, 16
    or 8 refine threads, batches of 16 or 32; the GPU's utilisation sampled in each. The cutouts with
    and without streams are saved for a photo-by-photo comparison."""
    answers: dict = {}
    measure = measurer(answers, out / "tuning_so_far.json")
    if alternating:
        tuning_alternating(pipeline, products, portraits, lone, measure)
        return answers
    for streams in (False, True):
        refine_with(pipeline, streams, 16)
        name = "streams" if streams else "one_stream"  # file names without spaces: the device tool returns those
        measure(f"parity {name}", lambda: parity(pipeline, products[:16] + portraits[:8], out / f"alphas_{name}.npz"))
        if parity_photos:
            measure(f"parity at own sizes {name}",
                    lambda: cut_out_at_own_sizes(pipeline, parity_photos, out / f"alphas_own_sizes_{name}.npz"))
    answers["parity, streams beside one stream (8-bit levels)"] = alphas_beside(out / "alphas_one_stream.npz",
                                                                                out / "alphas_streams.npz")
    print(f"  parity {answers['parity, streams beside one stream (8-bit levels)']}", flush=True)
    for streams, threads, overlap, batch in ((False, 16, 1, 16), (True, 16, 1, 16), (True, 16, 2, 16),
                                             (True, 8, 1, 16), (True, 8, 2, 16), (False, 16, 2, 16),
                                             (True, 16, 2, 32), (True, 8, 2, 32)):
        refine_with(pipeline, streams, threads)
        label = (f"saturated 1MP products, batch {batch}, {'streams' if streams else 'one stream'}, "
                 f"{threads} refine threads, overlap {overlap}")
        measure(label, with_gpu_busy(lambda: saturated(pipeline, products, batch, clients=2 * batch, overlap=overlap)))
    for streams in (False, True):
        refine_with(pipeline, streams, 16)
        name = "streams" if streams else "one stream"
        for overlap in (1, 2):
            measure(f"saturated 1MP portraits, batch 16, {name}, overlap {overlap}",
                    with_gpu_busy(lambda: saturated(pipeline, portraits, 16, clients=32, overlap=overlap)))
        measure(f"saturated 12MP products, batch 8, {name}", lambda: saturated(pipeline, big, 8, clients=16))
        measure(f"lone 1MP products, {name}", lambda: lone_requests(pipeline, products[:lone + 2]))
        measure(f"lone 1MP portraits, {name}", lambda: lone_requests(pipeline, portraits[:lone + 2]))
    refine_with(pipeline, True, default_refine_threads(pipeline.device))  # the shipped settings again
    answers["peak_gpu_gb"] = peak_gpu_gb()
    return answers


def segmentation(pipeline: Pipeline, batches: tuple[int, ...], variants: bool = True) -> list[dict]:
    import torch

    from models import ensure_model, get_spec
    from pipeline.torch_path.segment import TorchSegmenter

    spec = get_spec("isnet")
    path = ensure_model(spec)
    default = pipeline.segmenter("isnet")
    rows = []

    def rate(segmenter: TorchSegmenter, shape: tuple[int, int], batch: int, channels_last: bool = True) -> dict:
        x = torch.randn(batch, 3, *shape, device=segmenter.device).to(segmenter.dtype)
        if channels_last and segmenter.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        sync()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        with torch.inference_mode():
            for _ in range(3 if segmenter.device.type == "cuda" else 1):
                segmenter._forward(x)
            sync()
            repeats = max(3, 96 // batch) if segmenter.device.type == "cuda" else 1
            started = time.perf_counter()
            for _ in range(repeats):
                segmenter._forward(x)
            sync()
        seconds = (time.perf_counter() - started) / repeats
        return {"images_per_s": batch / seconds, "ms_per_batch": 1000 * seconds, "peak_gpu_gb": peak_gpu_gb()}

    for shape in ((1024, 1024), (768, 1024)):
        for batch in batches:
            rows.append({"variant": "fp16 channels-last (default)", "shape": shape, "batch": batch,
                         **rate(default, shape, batch)})
            print(f"  segmentation {rows[-1]}", flush=True)
    if default.device.type != "cuda" or not variants:
        return rows
    eager = TorchSegmenter(spec, path, "cuda", cuda_graphs=False)
    rows.append({"variant": "fp16 channels-last, no CUDA graph", "shape": (1024, 1024), "batch": 1,
                 **rate(eager, (1024, 1024), 1)})
    nchw = eager
    nchw.module = nchw.module.to(memory_format=torch.contiguous_format)
    rows.append({"variant": "fp16 NCHW", "shape": (1024, 1024), "batch": 64 if 64 in batches else batches[-1],
                 **rate(nchw, (1024, 1024), 64 if 64 in batches else batches[-1], channels_last=False)})
    del eager, nchw
    bf16 = TorchSegmenter(spec, path, "cuda", dtype=torch.bfloat16)
    for batch in (1, batches[-1]):
        rows.append({"variant": "bf16 channels-last", "shape": (1024, 1024), "batch": batch,
                     **rate(bf16, (1024, 1024), batch)})
    del bf16
    torch.cuda.empty_cache()
    for row in rows[-4:]:
        print(f"  segmentation {row}", flush=True)
    return rows


def segmentation_with_preprocessing(pipeline: Pipeline, jpegs: list[bytes], batch: int) -> dict:
    """images/s of predict_small_tensors for `batch` 1 MP photos already on the GPU (resize included)."""
    import torch

    segmenter = pipeline.segmenter("isnet")
    images = segmenter.upload([decode_image(data, **LIMITS) for data in jpegs[:batch]])
    with torch.inference_mode():
        segmenter.predict_small_tensors(images)
        sync()
        started = time.perf_counter()
        segmenter.predict_small_tensors(images)
        sync()
    return {"batch": len(images), "images_per_s": len(images) / (time.perf_counter() - started)}


def kernel_profile(pipeline: Pipeline) -> str:
    import torch
    from torch.profiler import ProfilerActivity, profile

    segmenter = pipeline.segmenter("isnet")
    x = torch.randn(64, 3, 1024, 1024, device="cuda").to(segmenter.dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        segmenter._forward(x)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            segmenter._forward(x)
            torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--photos", type=int, default=256, help="1 MP photos in the saturated run")
    parser.add_argument("--big-photos", type=int, default=32, help="12 MP photos in the saturated run")
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--lone", type=int, default=32, help="1 MP photos timed one at a time")
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--no-variants", dest="variants", action="store_false",
                        help="segmentation at the default settings only (skip no-graph, NCHW and bf16)")
    parser.add_argument("--device", default="cuda", help="torch-cpu runs the same sections on the CPU (a smoke test)")
    parser.add_argument("--processes", default="4",
                        help="service processes sharing the GPU in the 'processes' section (comma list)")
    parser.add_argument("--sections",
                        default="segmentation,lone,saturated,ablations,processes,big,cpu,profile,refine_graphs")
    parser.add_argument("--photo-dir", type=Path, help="JPEGs made ahead by --make-photos instead of --data's sets")
    parser.add_argument("--quick", action="store_true", help="the overlapped section at the shipped settings only")
    parser.add_argument("--make-photos", type=Path, help="write the run's JPEGs (a few of each kind) here and stop")
    args = parser.parse_args()
    if args.make_photos:
        for kind, megapixels, count in (("products", 1.0, 16), ("portraits", 1.0, 8), ("products", 12.0, 2)):
            folder = args.make_photos / f"{kind}_{megapixels:g}mp"
            folder.mkdir(parents=True, exist_ok=True)
            for index, jpeg in enumerate(photo_jpegs(args.data, megapixels, count, kind)):
                (folder / f"{index:02d}.jpg").write_bytes(jpeg)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    sections = args.sections.split(",")
    import torch

    results: dict = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
                     "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                     "torch": torch.__version__, "cpu_cores": os.cpu_count()}
    print(json.dumps(results), flush=True)

    def save() -> None:
        (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))

    def section(name: str, function) -> None:
        if name not in sections:
            return
        started = time.perf_counter()
        try:
            results[name] = function()
        except Exception as error:  # one section's failure must not lose the others
            results[name] = {"failed": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()[-2000:]}
        print(f"## {name} ({time.perf_counter() - started:.0f} s)\n{json.dumps(results[name], indent=1, default=str)}",
              flush=True)
        save()

    batches = tuple(int(b) for b in args.batches.split(","))
    started = time.perf_counter()
    pipeline = Pipeline(device=args.device)
    second = pipeline.second_opinion_segmenter() if getattr(pipeline, "second_opinion_ahead", False) else None
    if second is not None and hasattr(second, "warm"):  # its captures timed apart (session 20 saw a slow start)
        second_started = time.perf_counter()
        second.warm(second.phone_shapes(second.input_size[0]), max_batch=max(batches))
        sync()
        results["second_opinion_warm_s"] = time.perf_counter() - second_started
        print(json.dumps({"second_opinion_warm_s": results["second_opinion_warm_s"]}), flush=True)
    warm_up(pipeline, max(batches))
    results["load_s"] = time.perf_counter() - started  # models, cuDNN's searches and the graph captures
    results["refine_threads"] = pipeline.refine_threads
    products = photo_jpegs(args.data, 1.0, args.photos, "products", args.photo_dir)
    portraits = photo_jpegs(args.data, 1.0, args.photos // 2, "portraits", args.photo_dir)
    big = photo_jpegs(args.data, 12.0, args.big_photos, "products", args.photo_dir)
    section("parity", lambda: parity(pipeline, products[:16] + portraits[:8], args.out / "alphas.npz"))
    section("segmentation", lambda: segmentation(pipeline, batches, args.variants))
    section("segmentation_with_preprocessing", lambda: segmentation_with_preprocessing(pipeline, products, batches[-1]))
    section("lone", lambda: {"1MP products": lone_requests(pipeline, products[:args.lone]),
                             "1MP portraits": lone_requests(pipeline, portraits[:args.lone]),
                             "12MP products": lone_requests(pipeline, big[:6])})
    section("saturated", lambda: {**{f"1MP products, batch {b}": saturated(pipeline, products, b, clients=2 * b)
                                     for b in batches if b > 1},
                                  f"1MP portraits, batch {batches[-1]}": saturated(pipeline, portraits, batches[-1],
                                                                                  clients=2 * batches[-1])})
    def ablations() -> dict:
        """What holds the saturated rate: the same load without the person matte, and with as many
        client threads as the batch (half the GIL's competitors)."""
        batch = batches[-1]
        plain = Pipeline(device=args.device, person_matte=False)
        warm_up(plain, batch)
        return {f"1MP products, batch {batch}, person matte off": saturated(plain, products, batch, clients=2 * batch),
                f"1MP products, batch {batch}, {batch} clients": saturated(pipeline, products, batch, clients=batch)}

    section("ablations", ablations)
    section("processes", lambda: {
        f"1MP products, {count} processes x batch 16": saturated_processes(args.device, products, count, 16, clients=16)
        for count in (int(c) for c in args.processes.split(","))})
    section("big", lambda: saturated(pipeline, big, 8, clients=16))
    own_sizes = sorted((args.photo_dir / "own_sizes").glob("*")) if args.photo_dir else []
    section("overlapped", lambda: overlapped(pipeline, products, portraits, big, args.out, batches, args.lone, own_sizes,
                                             args.quick))
    section("ahead", lambda: second_opinion_ahead(pipeline, products, portraits, big, args.out, 16, args.lone, own_sizes))
    section("host_profile", lambda: host_profile(pipeline, products, max(batches), args.out))
    section("mirror", lambda: mirror(pipeline, products, portraits, args.out, args.lone, max(batches), own_sizes))
    section("tuning", lambda: tuning(pipeline, products, portraits, big, args.out, args.lone, own_sizes,
                                     alternating=os.environ.get("TUNING") == "alternating"))
    if pipeline.device == "cuda":
        section("refine_graphs", lambda: refine_graphs(pipeline, products, portraits, big, max(batches), args.out))
    if not args.skip_cpu:
        cpu = Pipeline(device="cpu")
        cpu.warm_up()
        section("cpu", lambda: {"1MP": lone_requests(cpu, products[:8]), "12MP": lone_requests(cpu, big[:3], warm=1)})
    if pipeline.device == "cuda":
        section("profile", lambda: kernel_profile(pipeline))
    results["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    results["peak_gpu_gb"] = peak_gpu_gb()
    save()
    print(json.dumps({k: results[k] for k in ("peak_rss_gb", "peak_gpu_gb")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
