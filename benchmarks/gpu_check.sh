#!/usr/bin/env bash
# The prepared GPU check: one call on a lent H100/H200 machine, about 6 minutes.
#
#   here, once:       bash benchmarks/gpu_wheels.sh
#   on the device:    bash benchmarks/gpu_check.sh        (carry .whl; timeout ~540 s)
#
# It runs the GPU tests, the indexing benchmark on CUDA (12 MP camera and web-size corpora; decode
# ceilings of the CPU workers and nvJPEG; searchlib end to end with --jpeg-decoder auto, cpu and
# device; fidelity of both decode paths) and exact GPU search at 10M vectors. Logs and the JSON
# results go to $OUT (or /tmp/searchlib-gpu); the last lines printed are the summary tables.
# To try the script itself on a CPU machine:
#   WHEELS=none DEVICE=cpu DECODERS="cpu device split" N=200000 CAMERA=16 WEB=96 bash benchmarks/gpu_check.sh
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
OUT=${OUT:-/tmp/searchlib-gpu}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-.whl}
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi -L 2>/dev/null || echo "no NVIDIA GPU"
echo "cores: $(nproc)"
python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py 2>&1 | tail -15 | tee "$OUT/pytest-gpu.log"
timeout 75 python3 benchmarks/bench_gpu_search.py --n "${N:-10000000}" --device "${DEVICE:-cuda}" 2>&1 \
  | tee "$OUT/bench-gpu-search.log"
# shellcheck disable=SC2086  # DECODERS is a list
timeout 360 python3 benchmarks/bench_index.py --device "${DEVICE:-cuda}" --decoders ${DECODERS:-auto cpu device} \
  --camera "${CAMERA:-2000}" --web "${WEB:-20000}" --workdir /tmp/searchlib-bench-index --json "$OUT/results-index-gpu.json" 2>&1 \
  | grep -v -e "^WARNING" -e "random weights" | tee "$OUT/bench-index.log"
