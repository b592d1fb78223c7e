#!/usr/bin/env bash
# Makes the two folders a lent GPU machine needs for scripts/bench_gpu.py (docs/performance.md, "How
# the run was carried"). That machine reaches nothing outside and a call carries at most 64 MiB, so
# ISNet (88 MB) travels as two xz halves in two consecutive calls:
#   call 1: carry .gpu/a, run `bash scripts/device/stash.sh` (ISNet's first half, RVM, U²-Net-p kept
#           in /root/stash there);
#   call 2 (within 30 s: the machine stays warm that long): carry .gpu/b, run
#           `bash scripts/device/run.sh [bench_gpu options]` (SECTIONS, BATCHES, PHOTOS, PROCESSES,
#           BENCH_TIMEOUT in the environment).
# .gpu/ is ignored by git. Needs the models in the cache (scripts/setup.sh) and the development sets.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${CUTOUT_CACHE_DIR:-$HOME/.cache/cutout}
DATA=${CUTOUT_DATA:-../shared/data}
PYTHON=${PYTHON:-.venv/bin/python}
rm -rf .gpu/a .gpu/b && mkdir -p .gpu/a .gpu/b
xz -T0 -c "$CACHE/isnet-medium-fp16.onnx" > .gpu/isnet.xz
split -n 2 -d -a 2 .gpu/isnet.xz .gpu/isnet.xz.part && rm .gpu/isnet.xz
mv .gpu/isnet.xz.part00 .gpu/a/ && mv .gpu/isnet.xz.part01 .gpu/b/
cp "$CACHE/rvm_mobilenetv3_fp32.onnx" "$CACHE/u2netp.onnx" .gpu/a/
# PyMatting is the one package the pipeline needs that the machine's image lacks.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation py \
  -d .gpu/b PyMatting==1.1.16
"$PYTHON" scripts/bench_gpu.py --data "$DATA" --make-photos .gpu/b/photos
# Photos at their own sizes for the GPU-beside-CPU comparison: portraits, and photos the second opinion decides.
mkdir -p .gpu/b/photos/own_sizes
cp "$DATA"/alphamatting_training_lowres/input/{GT04,GT13,GT21,GT27}.png "$DATA"/sod_dev/image/{45077,86000,167083,100075,102061}.jpg \
  .gpu/b/photos/own_sizes/
du -sh .gpu/a .gpu/b
