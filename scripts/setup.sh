#!/usr/bin/env bash
# Installs what psap needs on Debian 12 (as root; idempotent, quiet when
# everything is already there). Usage: scripts/setup.sh [--python]
#   --python  also what only the tests use: libtorch-dev (the libtorch
#             adapter's test and example) and .venv (system site packages +
#             PyPI: safetensors, onnxruntime, torch-pruning) for the interop
#             and comparison tests.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake ninja-build clang libomp-14-dev libclang-rt-14-dev
          libeigen3-dev libxtensor-dev doctest-dev libbenchmark-dev libcli11-dev
          nlohmann-json3-dev zlib1g-dev dataset-fashion-mnist
          python3 python3-venv python3-pip python3-numpy python3-torch python3-matplotlib python3-onnx)
[[ "${1:-}" == "--python" ]] && packages+=(libtorch-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ "${1:-}" == "--python" ]]; then
  # PyPI packages for interop tests live in a venv that sees Debian's torch.
  if [[ ! -x .venv/bin/python ]]; then
    /usr/bin/python3 -m venv --system-site-packages .venv
  fi
  need=()
  .venv/bin/python -c "import safetensors" 2>/dev/null || need+=(safetensors)
  .venv/bin/python -c "import onnxruntime" 2>/dev/null || need+=(onnxruntime)
  if ((${#need[@]})); then
    echo "setup: pip installing ${need[*]}"
    .venv/bin/python -m pip install -q --disable-pip-version-check "${need[@]}" ||
      echo "setup: could not install ${need[*]} from PyPI; the tests that need them will report themselves skipped"
  fi
  # torch-pruning without dependencies: it must use Debian's torch, not pull a new one.
  if ! .venv/bin/python -c "import torch_pruning" 2>/dev/null; then
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "torch-pruning==1.6.0" ||
      echo "setup: could not install torch-pruning; its comparison will report itself skipped"
  fi
fi
