#!/usr/bin/env bash
# Peak memory of loading a TinyLlama-1.1B-shaped Hugging Face checkpoint (22 layers, dim 2048, SwiGLU 5632, 32 heads,
# 4 key/value heads, vocabulary 32000, bf16: 2.2 GB on disk) into the fp32 model. The synthetic checkpoint is written
# to a temporary folder (default under /tmp; NPFT_HF_MEMORY_DIR to choose) and deleted afterwards.
# Usage: scripts/hf_load_memory.sh [build folder, default build/release]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
cmake --build "$build" -j2 --target write_hf_checkpoint hf_load_memory >/dev/null
dir=$(mktemp -d "${NPFT_HF_MEMORY_DIR:-/tmp}/npft-tinyllama-synthetic.XXXXXX")
trap 'rm -rf "$dir"' EXIT
echo "writing a TinyLlama-1.1B-shaped bf16 checkpoint to $dir ..."
"$build/tests/write_hf_checkpoint" "$dir" --layers 22 --dim 2048 --hidden 5632 --heads 32 --kv-heads 4 --vocab 32000 \
  --context 2048 --dtype bf16
ls -l "$dir"/model.safetensors
"$build/tests/hf_load_memory" "$dir"
