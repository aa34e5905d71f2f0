#!/usr/bin/env bash
# Pre-trains the reference model (examples/06_reference_model) on the King James Bible, on 2 threads, resumably: run it
# again with the same arguments after an interruption and it continues from the saved training state, bit-identically.
# Usage: scripts/train_reference.sh [reference_model options]   e.g. --out DIR, --tokens N, --layers N, --dim N
#   NPFT_REFERENCE_BUILD   build folder (default: build/reference)
# The defaults below are the reference configuration; options given on the command line come after them and win.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${NPFT_REFERENCE_BUILD:-build/reference}
# -march=native: Eigen's products run 2-4x faster with AVX2/FMA; the binary is built for this machine only. The state
# it saves is portable, but bit-identical resumption assumes the same binary on the same machine.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DNPFT_CUDA=OFF -DNPFT_BUILD_TESTS=OFF -DNPFT_BUILD_BENCHMARKS=OFF \
      -DCMAKE_CXX_FLAGS="-march=native" >/dev/null
cmake --build "$build" -j"$(nproc)" --target reference_model

exec "$build/examples/reference_model" --out "$build/runs/reference" --threads 2 --vocab sp:4096 \
     --layers 6 --dim 256 --heads 8 --hidden 768 --context 256 --batch 16 --lr 1e-3 --tokens 12000000 \
     --snapshot-tokens 1000000 "$@"
