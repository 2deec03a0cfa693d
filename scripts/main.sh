#!/usr/bin/env bash
# Sets everything up, builds the reference trainer, and runs the main job:
# PSAP prunes a ResNet-20 on Fashion-MNIST (Debian's dataset-fashion-mnist)
# from scratch to 50% of its FLOPs while it trains, then recalibrates batch
# norm, compacts the network and prints the per-layer table and a summary.
# A short run (a 4,000-image subset, 4 epochs: a few minutes on 2 cores); the
# full protocol is scripts/compare.py --protocol full.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DPSAP_BUILD_TESTS=OFF -DPSAP_BUILD_BENCHMARKS=OFF \
      -DPSAP_ENABLE_CUDA=OFF >/dev/null
cmake --build build/release -j "$(nproc)" --target psap-train
out=runs/main-psap50
rm -rf "$out"
./build/release/examples/resnet_trainer/cli/psap-train prune --preset psap --budget 0.5 --model resnet20 \
    --data fashion-mnist --train-subset 4000 --test-subset 2000 --epochs 4 --seed 1 --progress lines \
    --output "$out"
echo "reports: $out/result.json, $out/layers.csv, $out/pruning_log.jsonl; compact network: $out/compact.safetensors"
