#!/bin/sh
# CTest driver for check_tokenizer.py: writes the SentencePiece GGUF fixture and has llama.cpp tokenize its samples.
# Needs a Python with numpy, gguf and llama_cpp: $NPFT_PYTHON, else the virtual environment scripts/interop.sh makes
# (~/.cache/npft/interop-venv-<version>). Exits 77 (CTest's "skipped") when there is none: nothing is downloaded here.
fixture_program=$1
source_dir=$2
work_dir=$3
python=
cache=${XDG_CACHE_HOME:-$HOME/.cache}/npft
for candidate in ${NPFT_PYTHON:-} "$cache"/interop-venv-*/bin/python "$source_dir/build/interop-venv/bin/python"; do
  if [ -x "$candidate" ] && "$candidate" -c "import numpy, gguf, llama_cpp" 2>/dev/null; then python=$candidate; break; fi
done
if [ -z "$python" ]; then
  echo "SKIPPED: no Python with numpy, gguf and llama_cpp (set NPFT_PYTHON, or run scripts/interop.sh once: it makes ~/.cache/npft/interop-venv-<version>)"
  exit 77
fi
rm -rf "$work_dir" && mkdir -p "$work_dir" || exit 1
"$fixture_program" "$work_dir" || exit 1
exec "$python" "$source_dir/tests/python/check_tokenizer.py" "$work_dir"
