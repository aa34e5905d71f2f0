#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz with clang (ASan + UBSan) and runs each for a fixed time, starting from
# a seed corpus written by the library's own writers plus any inputs committed in tests/fuzz/corpus/<target>/.
# Prints "fuzz: <target> passed" or "fuzz: <target> FAILED" per target; a crash, leak, sanitizer report, timeout or
# out-of-memory fails it, and its input is left in build/fuzz/findings/<target>/ (add it to tests/fuzz/corpus/<target>/
# once fixed, so that every later run replays it). Exit status 1 if any target failed.
# Usage: scripts/fuzz.sh [seconds per target, default 60]      NPFT_WERROR=ON: warnings are errors (CI)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
seconds=${1:-60}
build=build/fuzz
jobs=${NPFT_JOBS:-$(nproc)}
targets=(json safetensors quantized)

scripts/install-deps.sh clang libclang-rt-dev || exit 1
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DNPFT_FUZZ=ON -DNPFT_CUDA=OFF \
      -DNPFT_BUILD_TESTS=OFF -DNPFT_BUILD_EXAMPLES=OFF -DNPFT_BUILD_BENCHMARKS=OFF -DNPFT_WERROR="${NPFT_WERROR:-OFF}" \
      >/dev/null || exit 1
if ! cmake --build "$build" -j"$jobs" --target make_seed_corpus "${targets[@]/#/fuzz_}"; then
  for t in "${targets[@]}"; do echo "fuzz: $t FAILED (build)"; done
  exit 1
fi

rm -rf "$build/seeds" && "$build/tests/fuzz/make_seed_corpus" "$build/seeds" || exit 1
status=0
for t in "${targets[@]}"; do
  work="$build/corpus/$t"            # grows across local runs; CI starts from the seeds
  findings="$build/findings/$t"
  mkdir -p "$work" "$findings"
  seeds=("$build/seeds/$t")
  [ -d "tests/fuzz/corpus/$t" ] && seeds+=("tests/fuzz/corpus/$t")
  echo "fuzz: $t for $seconds s"
  if "$build/tests/fuzz/fuzz_$t" "$work" "${seeds[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
       -malloc_limit_mb=1024 -max_len=65536 -print_final_stats=1 -artifact_prefix="$findings/" \
       >"$build/fuzz_$t.log" 2>&1; then
    echo "fuzz: $t passed ($(grep -E '^stat::number_of_executed_units' "$build/fuzz_$t.log" | awk '{print $2}') inputs)"
  else
    tail -n 40 "$build/fuzz_$t.log"
    echo "fuzz: $t FAILED (input in $findings)"
    status=1
  fi
done
exit $status
