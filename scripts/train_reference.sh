#!/usr/bin/env bash
# Pre-trains the reference model (examples/06_reference_model) on the King James Bible, on 2 threads, resumably: run it
# again with the same arguments after an interruption and it continues from the saved training state, bit-identically.
# Usage: scripts/train_reference.sh [reference_model options]   e.g. --out DIR, --tokens N, --layers N, --dim N
#   NPFT_REFERENCE_BUILD   build folder (default: build/reference)
#   NPFT_REFERENCE_SHIP    a folder (e.g. models/reference-a): when training finishes, the shipped files are copied
#                          there (reference.safetensors in bf16, tokenizer.model, training.log with the command)
# The shipped models were made with:
#   NPFT_REFERENCE_SHIP=models/reference-a scripts/train_reference.sh --out build/reference/runs/a --seed 0
#   NPFT_REFERENCE_SHIP=models/reference-b scripts/train_reference.sh --out build/reference/runs/b --seed 1
# The defaults below are the reference configuration; options given on the command line come after them and win.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${NPFT_REFERENCE_BUILD:-build/reference}
# -march=native: Eigen's products run 2-4x faster with AVX2/FMA; the binary is built for this machine only. The state
# it saves is portable, but bit-identical resumption assumes the same binary on the same machine.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DNPFT_CUDA=OFF -DNPFT_BUILD_TESTS=OFF -DNPFT_BUILD_BENCHMARKS=OFF \
      -DCMAKE_CXX_FLAGS="-march=native" >/dev/null
cmake --build "$build" -j"$(nproc)" --target reference_model

args=(--out "$build/runs/reference" --threads 2 --vocab sp:4096 --layers 6 --dim 256 --heads 8 --hidden 768 --context 256
      --batch 16 --lr 1e-3 --tokens 12000000 --snapshot-tokens 1000000 "$@")
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$build/examples/reference_model" "${args[@]}" | tee -i "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || exit "${PIPESTATUS[0]}"

ship=${NPFT_REFERENCE_SHIP:-}
if [ -n "$ship" ] && ! printf '%s\n' "$@" | grep -q -- '^--curve$'; then
  out="$build/runs/reference"  # the last --out wins, as in the program
  for ((i = 1; i <= ${#args[@]}; ++i)); do
    if [ "${args[i - 1]}" = "--out" ]; then out="${args[i]}"; fi
  done
  mkdir -p "$ship"
  cp "$out/reference.safetensors" "$ship/"
  if [ -f "$out/tokenizer.model" ]; then cp "$out/tokenizer.model" "$ship/"; fi
  { echo "command: scripts/train_reference.sh $*"; echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)";
    cat "$log"; } > "$ship/training.log"
  echo "shipped $out -> $ship"
fi
