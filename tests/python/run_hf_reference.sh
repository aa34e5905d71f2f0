#!/bin/sh
# CTest driver: synthetic Hugging Face checkpoints (single file and sharded; F32, F16, BF16; grouped-query attention;
# tied embeddings) loaded by npft and compared, log-probability by log-probability, with a numpy implementation of
# the Hugging Face LLaMA forward. Needs a Python with numpy ($NPFT_PYTHON, the environment scripts/interop.sh makes in ~/.cache/npft, build/interop-venv or build/py-venv);
# exits 77 (skipped) without one.
program=$1
source_dir=$2
work=$3
python=
cache=${XDG_CACHE_HOME:-$HOME/.cache}/npft
for candidate in ${NPFT_PYTHON:-} "$cache"/interop-venv-*/bin/python "$source_dir/build/interop-venv/bin/python" \
                 "$source_dir/build/py-venv/bin/python"; do
  if [ -x "$candidate" ] && "$candidate" -c "import numpy" 2>/dev/null; then python=$candidate; break; fi
done
if [ -z "$python" ]; then
  echo "SKIPPED: no Python with numpy (set NPFT_PYTHON, or run scripts/interop.sh once: it makes ~/.cache/npft/interop-venv-<version>)"
  exit 77
fi
script=$source_dir/tests/python/hf_reference.py
status=0
run() {
  name=$1; shift
  rm -rf "$work/$name"
  "$python" "$script" make "$work/$name" "$@" || return 1
  "$program" "$work/$name" "$work/$name/npft_logprobs.txt" || return 1
  "$python" "$script" compare "$work/$name" "$work/$name/npft_logprobs.txt"
}
run single-f32-gqa --dtype f32 --layout single --kv-heads 2 --seed 1 || status=1
run sharded-bf16-gqa-tied --dtype bf16 --layout sharded --kv-heads 1 --tied --seed 2 || status=1
run sharded-f16-mha --dtype f16 --layout sharded --kv-heads 4 --seed 3 || status=1
exit $status
