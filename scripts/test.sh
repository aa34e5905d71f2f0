#!/usr/bin/env bash
# Builds and runs every npft check. Each step prints a header; a failing step does not stop the others, and the run ends
# with one line "N passed, N failed" (every ctest test, plus one per fuzz target), exit status 1 if anything failed.
# Usage: scripts/test.sh [--fast] [--werror]
#   --fast    only the Release build with GCC and its tests
#   --werror  warnings are errors on our own targets (CI; users' builds never use it)
# The full run:
#   1. Release build with GCC: tests, examples, benchmarks, the compile-only -march=x86-64-v3/-v4 checks, CUDA when
#      nvcc is found; then its tests (the package-consumer and -ffast-math refusal tests included)
#   2. AddressSanitizer + UndefinedBehaviorSanitizer build with clang (so the library builds with clang too), its tests
#   3. ThreadSanitizer build with GCC of the threading and multiply tests (label tsan), its tests
#   4. The libFuzzer harnesses, NPFT_FUZZ_SECONDS (default 60) seconds each: scripts/fuzz.sh
# NPFT_JOBS sets the build parallelism (default: nproc).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
jobs=${NPFT_JOBS:-$(nproc)}
fast=0
werror=OFF
for arg in "$@"; do
  case "$arg" in
    --fast) fast=1 ;;
    --werror) werror=ON ;;
    *) echo "usage: scripts/test.sh [--fast] [--werror]" >&2; exit 2 ;;
  esac
done

# clang (with its sanitizer and libFuzzer runtimes) only for the full run.
if [ "$fast" -eq 1 ]; then scripts/install-deps.sh || exit 1; else scripts/install-deps.sh clang libclang-rt-dev || exit 1; fi

passed=0
failed=0
logs=build/test-logs
mkdir -p "$logs"

step() { printf '\n==== %s  (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

# Runs a build command; a failed build counts as one failure.
build() {
  if ! "$@"; then
    echo "==== BUILD FAILED: $*"
    failed=$((failed + 1))
    return 1
  fi
}

# Runs ctest with the given arguments and adds its counts (from ctest's summary line) to the totals.
run_ctest() {
  local log
  log="$logs/ctest-$(date +%s%N).log"
  ctest --output-on-failure "$@" 2>&1 | tee "$log"
  local summary
  summary=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1)
  if [ -z "$summary" ]; then
    echo "==== ctest gave no summary"
    failed=$((failed + 1))
    return
  fi
  local bad total
  bad=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$summary")
  total=$(sed -E 's/.* failed out of ([0-9]+).*/\1/' <<<"$summary")
  passed=$((passed + total - bad))
  failed=$((failed + bad))
}

step "1. Release build with GCC (tests, examples, benchmarks, -march=x86-64-v3/-v4 compile checks; CUDA when nvcc is found)"
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH=/usr/local/cuda/bin:$PATH; fi
if build cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DNPFT_CUDA=AUTO -DCMAKE_CXX_COMPILER=g++ \
         -DNPFT_WERROR="$werror" >/dev/null &&
   build cmake --build build/release -j"$jobs"; then
  step "1. Release tests"
  run_ctest --test-dir build/release -j"$jobs"
fi

if [ "$fast" -eq 0 ]; then
  step "2. AddressSanitizer + UndefinedBehaviorSanitizer build with clang (tests only, no CUDA)"
  if build cmake -S . -B build/sanitize -DCMAKE_BUILD_TYPE=Debug -DNPFT_SANITIZE=ON -DNPFT_CUDA=OFF \
           -DCMAKE_CXX_COMPILER=clang++ -DNPFT_WERROR="$werror" -DNPFT_BUILD_BENCHMARKS=OFF -DNPFT_BUILD_EXAMPLES=OFF \
           -DCMAKE_CXX_FLAGS="-O1 -g" >/dev/null &&
     build cmake --build build/sanitize -j"$jobs"; then
    step "2. Sanitizer tests"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      run_ctest --test-dir build/sanitize -j"$jobs" -LE no_sanitize
  fi

  step "3. ThreadSanitizer build with GCC (tests labelled tsan)"
  tsan_targets=(test_kernels_cpu_threading test_kernels_cpu_int8 test_kernels_cpu_int8_gemm test_kernels_cpu_multiply test_llama_threads)
  if build cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNPFT_TSAN=ON -DNPFT_CUDA=OFF \
           -DCMAKE_CXX_COMPILER=g++ -DNPFT_WERROR="$werror" -DNPFT_BUILD_BENCHMARKS=OFF -DNPFT_BUILD_EXAMPLES=OFF \
           -DNPFT_ISA_CHECKS=OFF >/dev/null &&
     build cmake --build build/tsan -j"$jobs" --target "${tsan_targets[@]}"; then
    step "3. ThreadSanitizer tests"
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 run_ctest --test-dir build/tsan -j"$jobs" -L tsan
  fi

  step "4. Fuzzing (scripts/fuzz.sh, ${NPFT_FUZZ_SECONDS:-60} s per target)"
  fuzz_log="$logs/fuzz.log"
  NPFT_WERROR="$werror" scripts/fuzz.sh "${NPFT_FUZZ_SECONDS:-60}" 2>&1 | tee "$fuzz_log"
  fuzz_pass=$(grep -c '^fuzz: .* passed' "$fuzz_log")
  fuzz_fail=$(grep -c '^fuzz: .* FAILED' "$fuzz_log")
  passed=$((passed + fuzz_pass))
  failed=$((failed + fuzz_fail))
  [ "$fuzz_pass" -eq 3 ] || [ "$fuzz_fail" -gt 0 ] || { echo "==== fuzzing did not run"; failed=$((failed + 1)); }
fi

step "Summary"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
