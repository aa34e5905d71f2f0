#!/usr/bin/env bash
# Runs the NPFT study (examples/07_npft_study) over the shipped reference models and writes docs/study.md and
# docs/study_*.png from its cells. Resumable: run it again with the same arguments after an interruption and it skips
# every finished cell. Usage:
#   scripts/study.sh --model DIR --model DIR [npft_study options]    e.g. --seeds 5, --dry-run, --arms lora,npft-reference
#   NPFT_STUDY_BUILD   build folder (default: build/reference, shared with scripts/train_reference.sh)
#   NPFT_STUDY_OUT     cells and results (default: $NPFT_STUDY_BUILD/runs/study)
set -euo pipefail
cd "$(dirname "$0")/.."

build=${NPFT_STUDY_BUILD:-build/reference}
out=${NPFT_STUDY_OUT:-$build/runs/study}
# -march=native: Eigen's products run 2-4x faster with AVX2/FMA; the binary is built for this machine only. The cells
# record figures, not weights, so a resumed study may use another build; the fingerprint in each cell names the recipe.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DNPFT_CUDA=OFF -DNPFT_BUILD_TESTS=OFF -DNPFT_BUILD_BENCHMARKS=OFF \
      -DCMAKE_CXX_FLAGS="-march=native" >/dev/null
cmake --build "$build" -j"$(nproc)" --target npft_study

exec "$build/examples/npft_study" --out "$out" --docs docs --threads 2 "$@"
