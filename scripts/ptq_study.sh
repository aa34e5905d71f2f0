#!/usr/bin/env bash
# Runs the block-wise reconstruction study (examples/08_ptq_study) over the shipped reference models and rewrites the
# generated section of docs/ptq.md and docs/ptq_g0.png from its cells. Resumable: run it again with the same arguments
# after an interruption and it skips every finished cell. Usage:
#   scripts/ptq_study.sh                      every models/reference-* folder, the full grid (about an hour on 2 cores)
#   scripts/ptq_study.sh --dry-run            time one cell per policy, print the predicted cost, stop
#   scripts/ptq_study.sh --model DIR [ptq_study options]   e.g. --seeds 5, --bits 3, --policies scales,rounding
#   NPFT_PTQ_BUILD   build folder (default: build/reference, shared with scripts/study.sh)
#   NPFT_PTQ_OUT     cells and results (default: $NPFT_PTQ_BUILD/runs/ptq_study)
set -euo pipefail
cd "$(dirname "$0")/.."

build=${NPFT_PTQ_BUILD:-build/reference}
out=${NPFT_PTQ_OUT:-$build/runs/ptq_study}
# -march=native: Eigen's products run 2-4x faster with AVX2/FMA; the cells record figures, not weights, and their
# fingerprint names the recipe, so a resumed study may use another build.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DNPFT_CUDA=OFF -DNPFT_BUILD_TESTS=OFF -DNPFT_BUILD_BENCHMARKS=OFF \
      -DCMAKE_CXX_FLAGS="-march=native" >/dev/null
cmake --build "$build" -j"$(nproc)" --target ptq_study

models=()
if ! printf '%s\n' "$@" | grep -qx -- '--model'; then
  for dir in models/reference-*/; do
    [ -f "$dir/reference.safetensors" ] && models+=(--model "${dir%/}")
  done
fi
exec "$build/examples/ptq_study" --out "$out" --page docs/ptq.md --threads 2 "${models[@]}" "$@"
