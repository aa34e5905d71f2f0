#!/usr/bin/env bash
# npft's GGUF files checked by llama.cpp itself (docs/getting-started.md, "Run your NPFT model in llama.cpp"):
#   1. a Python virtual environment with PyPI gguf (llama.cpp's reader and quantizers) and llama-cpp-python (which
#      builds llama.cpp from source: CPU only, no tools, examples, tests or server);
#   2. gguf_fixture's blocks of Q4_0 and Q8_0 byte-identical to gguf.quants, metadata of every value type read back;
#   3. the demo model exported at F32, Q8_0 and Q4_0: gguf reads every key and tensor, and each tensor's bytes equal
#      gguf's own encoding of the F32 weights;
#   4. llama.cpp loads each file and, fed the same token windows, gives a test perplexity within 0.1% (F32) or 0.5%
#      (Q8_0, Q4_0) of npft's evaluation of the same weights; both are printed side by side.
#   5. a SentencePiece vocabulary (tests/python/sentencepiece_gguf.cpp: trained here, padded to a larger vocab_size):
#      llama.cpp's own tokenizer turns sample texts into exactly npft's ids (skipped, saying so, without SentencePiece).
# Exits 0 when every check passes; nonzero on any failure; 0 with "SKIPPED: PyPI unreachable" when the packages are
# not installed yet and PyPI cannot be reached. It never passes without having run the checks.
#
# Environment: NPFT_INTEROP_DIR (work folder, default build/interop), NPFT_INTEROP_TRAIN_STEPS (the demo model's
# pre-training steps, default 200; the checkpoint is cached in the work folder), NPFT_INTEROP_WINDOWS (test windows, 32),
# NPFT_INTEROP_BUILD (an already configured npft build folder to reuse as it is; default: its own Release build in the
# work folder), NPFT_INTEROP_VENV (the Python environment; default ~/.cache/npft/interop-venv-<llama-cpp-python version>).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=${NPFT_INTEROP_DIR:-$root/build/interop}
build=${NPFT_INTEROP_BUILD:-$work/npft-build}
steps=${NPFT_INTEROP_TRAIN_STEPS:-200}
windows=${NPFT_INTEROP_WINDOWS:-32}
llama_cpp_python_version=0.3.36
gguf_version=0.19.0
# The environment lives outside the checkout so that later runs on the same machine (CI after a session, a developer's
# second run) reuse the llama.cpp build; a fresh machine builds it once.
venv=${NPFT_INTEROP_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/npft/interop-venv-$llama_cpp_python_version}
mkdir -p "$work"
start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start )) s"; }

# ---- 1. Python environment ------------------------------------------------------------------------------------------
have_packages() { [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import numpy, gguf, llama_cpp" 2>/dev/null; }
if ! have_packages; then
  if ! timeout 60 python3 -m pip download --no-deps --dest "$work/pypi-probe" "gguf==$gguf_version" -q >/dev/null 2>&1; then
    echo "SKIPPED: PyPI unreachable (pip could not download gguf==$gguf_version); interop checks not run"
    exit 0
  fi
  echo "[interop] creating $venv and building llama-cpp-python $llama_cpp_python_version (llama.cpp from source, CPU only)"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  # One CPU configuration for this machine; nothing but the library the Python binding loads.
  export CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF \
-DLLAVA_BUILD=OFF -DLLAMA_CURL=OFF -DGGML_OPENMP=OFF -DGGML_NATIVE=ON -DGGML_BLAS=OFF"
  export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
  install_start=$(date +%s)
  "$venv/bin/pip" install -q "numpy" "gguf==$gguf_version" "llama-cpp-python==$llama_cpp_python_version"
  echo "[interop] python packages installed in $(( $(date +%s) - install_start )) s"
fi
python=$venv/bin/python

# ---- npft's programs ------------------------------------------------------------------------------------------------
echo "[interop] building npft-export and gguf_fixture in $build ($(elapsed))"
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DNPFT_CUDA=OFF -DNPFT_WERROR=OFF -DNPFT_BUILD_BENCHMARKS=OFF >/dev/null
fi
cmake --build "$build" -j"$(nproc)" --target npft-export gguf_fixture >/dev/null
export_tool=$build/examples/npft-export

# ---- 2. blocks and metadata against gguf's own code ------------------------------------------------------------------
"$build/tests/gguf_fixture" "$work/fixture.gguf" >/dev/null
"$python" "$root/tests/python/check_gguf.py" fixture "$work/fixture.gguf"

# ---- 3. the demo model at F32, Q8_0, Q4_0 ------------------------------------------------------------------------------
types=(F32 Q8_0 Q4_0)
for t in "${types[@]}"; do
  echo "[interop] exporting the demo model ($steps pre-training steps) as $t ($(elapsed))"
  "$export_tool" --demo --train-steps "$steps" --dir "$work" --out "$work/demo-$t.gguf" --type "$t" 2>/dev/null | tail -n 5
done
"$python" "$root/tests/python/check_gguf.py" model "$work/demo-F32.gguf" "$work/demo-Q8_0.gguf" "$work/demo-Q4_0.gguf"

# ---- 4. perplexity: npft vs llama.cpp ------------------------------------------------------------------------------
failed=0
report=""
for t in "${types[@]}"; do
  npft_line=$("$export_tool" --evaluate "$work/demo-$t.gguf" --dir "$work" --eval-windows "$windows" --windows "$work/windows.txt")
  llama_line=$("$python" "$root/tests/python/llama_cpp_perplexity.py" "$work/demo-$t.gguf" "$work/windows.txt")
  npft_ppl=$(echo "$npft_line" | awk '{print $4}')
  llama_ppl=$(echo "$llama_line" | awk '{print $4}')
  tolerance=$([ "$t" = F32 ] && echo 0.001 || echo 0.005)
  verdict=$("$python" -c "a, b, tol = $npft_ppl, $llama_ppl, $tolerance; d = abs(b - a) / a; print(f'{100 * d:.4f}% ' + ('ok' if d <= tol else 'FAIL'))")
  case $verdict in *FAIL) failed=1 ;; esac
  report+=$(printf '%-5s  %14s  %14s  %s (limit %s%%)' "$t" "$npft_ppl" "$llama_ppl" "$verdict" "$("$python" -c "print(100 * $tolerance)")")$'\n'
done
# ---- 5. a SentencePiece vocabulary: llama.cpp's tokenizer must give npft's ids ------------------------------------------
if cmake --build "$build" -j"$(nproc)" --target sentencepiece_gguf >/dev/null 2>&1; then
  echo "[interop] SentencePiece vocabulary: llama.cpp's tokenizer against npft's ids ($(elapsed))"
  "$build/tests/sentencepiece_gguf" "$work/sentencepiece" >/dev/null
  "$python" "$root/tests/python/check_tokenizer.py" "$work/sentencepiece" || failed=1
else
  echo "[interop] SKIPPED the tokenizer check: this build has no SentencePiece (Debian: libsentencepiece-dev)"
fi

echo
echo "test perplexity on the same $windows windows, same weights"
printf '%-5s  %14s  %14s  %s\n' type npft llama.cpp "difference"
printf '%s' "$report"
echo "[interop] finished in $(elapsed)"
if [ "$failed" -ne 0 ]; then
  echo "[interop] FAILED: llama.cpp and npft disagree (perplexity beyond the limit, or tokenizer ids)"
  exit 1
fi
echo "[interop] all checks passed"
