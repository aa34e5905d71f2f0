#!/usr/bin/env bash
# The end-to-end demo: on the shipped reference model (models/reference-a; without it, it trains a small LLaMA-style
# model on the King James Bible or reuses the cached checkpoint),
# quantizes it to 4 and 3 bits with RTN, GPTQ, non-uniform and dense-and-sparse, fine-tunes it with NPFT, quantizes
# again, and prints the table. Writes results.json, results.png and the checkpoint into the output folder.
# Usage: scripts/demo.sh [end_to_end options]     e.g. --large, --seed 1, --out DIR, --text FILE, --quick
#   NPFT_DEMO_BUILD   build folder (default: build/demo); the default output folder is $NPFT_DEMO_BUILD/results
set -euo pipefail
cd "$(dirname "$0")/.."

# Missing Debian packages (cmake, g++, Eigen, Catch2, Google Benchmark, bible-kjv, gnuplot) are installed via apt-get.
scripts/install-deps.sh

build=${NPFT_DEMO_BUILD:-build/demo}
# -march=native: the model's own Eigen code runs 2-4x faster with AVX2/FMA; the binary is built for this machine only.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DNPFT_CUDA=OFF -DNPFT_BUILD_TESTS=OFF -DNPFT_BUILD_BENCHMARKS=OFF \
      -DCMAKE_CXX_FLAGS="-march=native" >/dev/null
cmake --build "$build" -j"$(nproc)" --target end_to_end

out="$build/results"
for ((i = 1; i <= $#; ++i)); do
  if [ "${!i}" = "--out" ]; then j=$((i + 1)); out="${!j}"; fi
done
mkdir -p "$out"
# The shipped reference model (models/reference-a, scripts/train_reference.sh) is the default, unless the command line
# chooses another model (--model, --hf, --large, --text, --train-steps: those train or load their own).
model=()
if [ -f models/reference-a/reference.safetensors ]; then
  model=(--model models/reference-a)
  for arg in "$@"; do
    case "$arg" in --model|--hf|--large|--text|--train-steps) model=() ;; esac
  done
fi
exec "$build/examples/end_to_end" --out "$out" "${model[@]}" "$@"
