#!/bin/bash
# Device call 2 (scripts/device/prepare.sh): join ISNet, install PyMatting, run scripts/bench_gpu.py.
set -o pipefail
mkdir -p /root/models
if [ ! -f /root/models/isnet-medium-fp16.onnx ]; then
  cat /root/stash/isnet.xz.part00 .gpu/b/isnet.xz.part01 | xz -d -T0 > /root/models/isnet-medium-fp16.onnx
  cp /root/stash/rvm_mobilenetv3_fp32.onnx /root/stash/u2netp.onnx /root/models/
fi
sha256sum /root/models/*
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/b/*.whl
export PYTHONPATH=/tmp/site CUTOUT_MODEL_DIR=/root/models CUTOUT_CACHE_DIR=/root/cache PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.used,clocks.sm --format=csv | tee $OUT/gpu.txt
date -u
timeout ${BENCH_TIMEOUT:-480} python3 scripts/bench_gpu.py --out $OUT --photo-dir .gpu/b/photos \
  --sections ${SECTIONS:-overlapped,processes} --batches ${BATCHES:-1,8,16} --photos ${PHOTOS:-192} --big-photos 16 \
  --lone 16 --processes ${PROCESSES:-2} --skip-cpu --no-variants "$@" 2>&1 \
  | tee $OUT/bench.log | grep -v "^ \|^{" | tail -c 2500
echo "exit $?"; date -u
python3 - <<'PY'
import json, os
r = json.load(open(os.environ["OUT"] + "/results.json")) if os.path.exists(os.environ["OUT"] + "/results.json") else {}
for section in ("overlapped", "ahead", "tuning", "mirror"):  # a run cut short: what its section had saved so far
    if section not in r and os.path.exists(os.environ["OUT"] + f"/{section}_so_far.json"):
        r[section] = json.load(open(os.environ["OUT"] + f"/{section}_so_far.json"))
print("load_s", r.get("load_s"), "second_opinion_warm_s", r.get("second_opinion_warm_s"),
      "refine_threads", r.get("refine_threads"))
for section in ("overlapped", "processes", "ahead", "tuning", "mirror"):
    g = r.get(section, {})
    if "failed" in g:
        print(section, g)
    for name, v in g.items():
        if isinstance(v, dict) and "images_per_s" in v:
            print(f"{name}: {v['images_per_s']:.1f}/s busy {v.get('pipeline_thread_busy')} gpu {v.get('gpu_busy_percent')} {v.get('stages_ms_mean', v.get('stages_ms_mean_first_process'))}")
        elif isinstance(v, dict) and "before_png_ms_p50" in v:
            print(f"{name}: p50 {v['before_png_ms_p50']:.1f} ms (with PNG {v['total_ms_p50']:.1f}) {v['stages_ms_p50']}")
        else:
            print(name, v)
PY
