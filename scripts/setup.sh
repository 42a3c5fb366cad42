#!/usr/bin/env bash
# Create .venv and install temporec with its first-party plugins and test tools.
# PyTorch is installed first, so that pip keeps that build instead of pulling the default
# (CUDA, several GB) one: set TEMPOREC_TORCH to choose another, e.g. "torch==2.13.0+cu128".
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
torch_spec=${TEMPOREC_TORCH:-torch==2.13.0}

[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -c 'import torch' 2>/dev/null || .venv/bin/python -m pip install --quiet "$torch_spec"
.venv/bin/python -m pip install --quiet -e '.[dev]'
# The Triton server for the triton encoder's tests, bundled in the nvidia-pytriton wheel (Linux
# x86_64 only). --no-deps: only its server binary is used, and its tritonclient~=2.50 pin
# would need protobuf<7, which temporec's gRPC stack cannot take.
if [ "$(uname -sm)" = "Linux x86_64" ]; then
    .venv/bin/python -m pip install --quiet --no-deps nvidia-pytriton==0.7.0
fi
echo "temporec is installed in .venv: run .venv/bin/temporec --help"
