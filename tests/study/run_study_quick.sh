#!/bin/sh
# Smoke test of the study program (examples/07_npft_study --quick): a tiny model pre-trained here for a few steps, the
# quick grid on it, then the outputs checked to exist and parse. The figures are not checked: they mean nothing at this
# size. Usage: run_study_quick.sh REFERENCE_MODEL NPFT_STUDY WORK_DIR
set -eu
reference_model=$1
npft_study=$2
work=$3
rm -rf "$work"
mkdir -p "$work"
"$reference_model" --out "$work/model" --steps 30 --seed 1 >"$work/model.log" 2>&1
mkdir -p "$work/study"
cp "$work/model/kjv.txt" "$work/study/kjv.txt" 2>/dev/null || true  # the corpus, already extracted
"$npft_study" --model "$work/model" --quick --out "$work/study" >"$work/study.log" 2>&1 || { cat "$work/study.log"; exit 1; }
# A second run must find every cell and recompute nothing.
"$npft_study" --model "$work/model" --quick --out "$work/study" >"$work/again.log" 2>&1
grep -q "every cell is already computed" "$work/again.log" || { echo "the second run recomputed cells"; cat "$work/again.log"; exit 1; }
for f in study.md results/summary.json results/statements.json; do
  test -s "$work/study/$f" || { echo "missing $f"; exit 1; }
done
cells=$(ls "$work/study/cells" | wc -l)
test "$cells" -ge 40 || { echo "only $cells cells"; exit 1; }
grep -q "^## Computed statements" "$work/study/study.md" || { echo "study.md has no statements section"; exit 1; }
grep -q "^- npft-reference .* lora at bits=3 grid=g0 on gap_bpb" "$work/study/study.md" || { echo "no npft-reference vs lora statement"; exit 1; }
grep -q "^## Conclusion" "$work/study/study.md" || { echo "study.md has no conclusion section"; exit 1; }
if command -v python3 >/dev/null 2>&1; then
  python3 - "$work/study" <<'PY'
import json, os, sys
d = sys.argv[1]
s = json.load(open(os.path.join(d, "results", "summary.json")))
assert s["quantized"] and s["finetuning"], "empty summary"
st = json.load(open(os.path.join(d, "results", "statements.json")))
assert any(x["treatment"] == "npft-reference" and x["control"] == "lora" for x in st), "no statement vs lora"
for name in os.listdir(os.path.join(d, "cells")):
    cell = json.load(open(os.path.join(d, "cells", name)))
    assert set(cell) == {"fingerprint", "key", "result"}, name
PY
fi
echo "npft_study --quick: $cells cells, outputs present and parsed"
