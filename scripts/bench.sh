#!/usr/bin/env bash
# Runs the CPU kernel benchmarks (benchmarks/bench_gemv.cpp, benchmarks/bench_prefill.cpp) and the end-to-end one
# (benchmarks/bench_model.cpp: tokens/s of models/reference-a) and writes docs/benchmarks.md and docs/benchmarks.png.
#
#   scripts/bench.sh            full sweep: bench_gemv (4 shapes x 9 formats x batch 1/4/16/64 x threads 1/2),
#                               bench_prefill (2 shapes, batch 1-512, every GEMM path), bench_model: 26.5 minutes on
#                               the idle 2-core Xeon (1 December 2026), plus the first build
#   scripts/bench.sh --quick    the 4096x4096 shapes only (about 1.5 minutes)
#   Both also run bench_model (the reference model end to end; --quick: fp32 and u4g128 only), about a minute more.
#
# Environment: BUILD_DIR (default build-bench), MIN_TIME (seconds per benchmark, default 0.5; quick: 0.3).
# The JSON of the run is kept in $BUILD_DIR/bench_gemv.json, bench_prefill.json and bench_model.json; the notes below the marker in docs/benchmarks.md survive.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
if [[ "${1:-}" == "--quick" ]]; then mode=quick; fi
build="${BUILD_DIR:-build-bench}"
if [[ "$mode" == quick ]]; then
    filter='memory/|/4096x4096/'
    min_time="${MIN_TIME:-0.3}"
else
    filter='.'
    min_time="${MIN_TIME:-0.5}"
fi

# OpenBLAS is bench_prefill's second fp32 baseline (optional for the build, not a test dependency).
scripts/install-deps.sh libopenblas-dev
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DNPFT_CUDA=OFF -DNPFT_BUILD_BENCHMARKS=ON -DNPFT_BUILD_TESTS=OFF \
    -DNPFT_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j2 --target bench_gemv bench_prefill bench_model

json="$build/bench_gemv.json"
"$build/benchmarks/bench_gemv" --benchmark_filter="$filter" --benchmark_min_time="$min_time" \
    --benchmark_format=json --benchmark_out="$json" --benchmark_out_format=json >/dev/null
# Prompt processing: the int8 peak loop first (the kernels' rows are rated against it), then the batched multiplies.
prefill_json="$build/bench_prefill.json"
if [[ "$mode" == quick ]]; then prefill_filter='peak/|/4096x4096/'; else prefill_filter='.'; fi
"$build/benchmarks/bench_prefill" --benchmark_filter="$prefill_filter" --benchmark_min_time="$min_time" \
    --benchmark_format=json --benchmark_out="$prefill_json" --benchmark_out_format=json >/dev/null
# End to end: generation and prompt processing of the reference model, every format, 1 and 2 threads (quick: 4-bit only).
model_json="$build/bench_model.json"
if [[ "$mode" == quick ]]; then model_filter='memory/|/fp32/|/u4g128/'; else model_filter='.'; fi
"$build/benchmarks/bench_model" --benchmark_filter="$model_filter" --benchmark_min_time="$min_time" \
    --benchmark_format=json --benchmark_out="$model_json" --benchmark_out_format=json >/dev/null
python3 scripts/bench_report.py "$json" docs/benchmarks.md docs/benchmarks.png "$prefill_json" "$model_json"
echo "wrote docs/benchmarks.md and docs/benchmarks.png from $json"
