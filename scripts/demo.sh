#!/usr/bin/env bash
# The main job: builds npft's examples (Release) and runs the demo. Installs missing Debian packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DNPFT_BUILD_TESTS=OFF -DNPFT_BUILD_BENCHMARKS=OFF -DNPFT_CUDA=OFF >/dev/null
cmake --build build/release -j"$(nproc)" --target quantize_matrix
./build/release/examples/quantize_matrix "$@"
