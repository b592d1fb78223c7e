#!/bin/bash
# Device call 1 (scripts/device/prepare.sh): keep ISNet's first half and the small models for call 2; check the image.
mkdir -p /root/stash && cp .gpu/a/isnet.xz.part00 .gpu/a/*.onnx /root/stash/ && ls -la /root/stash
nvidia-smi --query-gpu=name,driver_version,memory.used,clocks.sm --format=csv
python3 -c "import torch, numba, numpy, scipy, PIL; print(torch.__version__, torch.cuda.get_device_name(0), numba.__version__, numpy.__version__, scipy.__version__, PIL.__version__)"
python3 -c "import sys; sys.path.insert(0, '.'); import pipeline.cutout, pipeline.torch_path.chain, scripts.bench_gpu" 2>&1 | tail -3
nproc; free -g | head -2
