#!/usr/bin/env bash
# Download, into .whl/ (git-ignored), the wheels the lent GPU machine's image lacks for searchlib.
# That machine has Python 3.12 with torch, torchvision, numpy, Pillow, onnx(runtime), click, tqdm,
# safetensors, timm, regex and pytest, but no open_clip_torch, SQLAlchemy, Alembic or FAISS.
# faiss-gpu cannot travel (135 MB + cuBLAS 12, over the 64 MiB a call carries; the machine has
# CUDA 13): FAISS runs there on the CPU, and GPU search is measured through torch.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl open_clip_torch==3.3.0 ftfy wcwidth faiss-cpu==1.15.1 sqlalchemy alembic mako platformdirs greenlet
du -sh .whl
