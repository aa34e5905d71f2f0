#!/bin/sh
# CTest driver for check_gguf.py: writes the fixture and checks it with PyPI gguf. Needs a Python with numpy and gguf:
# $NPFT_PYTHON, else the virtual environment scripts/interop.sh makes (~/.cache/npft/interop-venv-<version>), else build/py-venv.
# Exits 77 (CTest's "skipped") when there is none: nothing is downloaded at test time.
fixture_program=$1
source_dir=$2
work_dir=$3
python=
cache=${XDG_CACHE_HOME:-$HOME/.cache}/npft
for candidate in ${NPFT_PYTHON:-} "$cache"/interop-venv-*/bin/python "$source_dir/build/interop-venv/bin/python" \
                 "$source_dir/build/py-venv/bin/python"; do
  if [ -x "$candidate" ] && "$candidate" -c "import numpy, gguf" 2>/dev/null; then python=$candidate; break; fi
done
if [ -z "$python" ]; then
  echo "SKIPPED: no Python with numpy and gguf (set NPFT_PYTHON, or run scripts/interop.sh once: it makes ~/.cache/npft/interop-venv-<version>)"
  exit 77
fi
mkdir -p "$work_dir" || exit 1
"$fixture_program" "$work_dir/fixture.gguf" || exit 1
exec "$python" "$source_dir/tests/python/check_gguf.py" fixture "$work_dir/fixture.gguf"
