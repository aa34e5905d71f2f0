#!/usr/bin/env bash
# Builds and runs every npft test: a Release build (with the CUDA parts when nvcc is found, and the package-consumer test),
# then the whole suite again under AddressSanitizer + UndefinedBehaviorSanitizer.
# Usage: scripts/test.sh [--fast]   (--fast: Release build only, no sanitizer pass)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=${NPFT_JOBS:-$(nproc)}

scripts/install-deps.sh

fast=0
[ "${1:-}" = "--fast" ] && fast=1

step() { printf '\n==== %s\n' "$*"; }

step "Release build (tests, examples, benchmarks; CUDA when nvcc is found)"
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH=/usr/local/cuda/bin:$PATH; fi
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DNPFT_CUDA=AUTO >/dev/null
cmake --build build/release -j"$jobs"
step "Release tests"
ctest --test-dir build/release --output-on-failure -j"$jobs"

if [ "$fast" -eq 0 ]; then
  step "AddressSanitizer + UndefinedBehaviorSanitizer build (tests only, no CUDA)"
  cmake -S . -B build/sanitize -DCMAKE_BUILD_TYPE=Debug -DNPFT_SANITIZE=ON -DNPFT_CUDA=OFF \
        -DNPFT_BUILD_BENCHMARKS=OFF -DNPFT_BUILD_EXAMPLES=OFF -DCMAKE_CXX_FLAGS="-O1 -g" >/dev/null
  cmake --build build/sanitize -j"$jobs"
  step "Sanitizer tests"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build/sanitize --output-on-failure -j"$jobs" -LE no_sanitize
fi
step "All tests passed"
