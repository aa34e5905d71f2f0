#!/bin/sh
# Smoke test of the block-wise reconstruction study (examples/08_ptq_study --quick) on the shipped reference model: the
# outputs must exist and parse, and a second run must reuse every cell. The figures are not checked: at this budget
# they mean nothing. Usage: run_ptq_study_quick.sh PTQ_STUDY MODEL_DIR WORK_DIR
set -eu
ptq_study=$1
model=$2
work=$3
rm -rf "$work"
mkdir -p "$work"
printf '# A hand-written page\n\nkept text\n' >"$work/ptq.md"
"$ptq_study" --model "$model" --quick --out "$work" --page "$work/ptq.md" >"$work/first.log" 2>&1 || { cat "$work/first.log"; exit 1; }
# A second run must find every cell and recompute nothing.
"$ptq_study" --model "$model" --quick --out "$work" --page "$work/ptq.md" >"$work/again.log" 2>&1 || { cat "$work/again.log"; exit 1; }
grep -q "every cell is already computed" "$work/again.log" || { echo "the second run recomputed cells"; cat "$work/again.log"; exit 1; }
for f in results/summary.json results/statements.json results/picks.json; do
  test -s "$work/$f" || { echo "missing $f"; exit 1; }
done
# 1 rtn + 2 seeds x (1 gptq + 15 reconstructions + npft fp32 + npft+rtn + npft+pick)
cells=$(ls "$work/cells" | wc -l)
test "$cells" -eq 39 || { echo "expected 39 cells, found $cells"; ls "$work/cells"; exit 1; }
grep -q "^kept text" "$work/ptq.md" || { echo "the hand-written part of the page was lost"; exit 1; }
test "$(grep -c "ptq_study:begin" "$work/ptq.md")" -eq 1 || { echo "the generated section is not there exactly once"; exit 1; }
grep -q "What a user should pick: " "$work/ptq.md" || { echo "no pick sentence"; exit 1; }
grep -q "^- scales+down1 .* scales+single at bits=3 grid=g0 on gap_bpb" "$work/ptq.md" || { echo "no down1 vs single statement"; exit 1; }
grep -q "npft+.* on vs_base_bpb" "$work/ptq.md" || { echo "no NPFT composition statement"; exit 1; }
if command -v python3 >/dev/null 2>&1; then
  python3 - "$work" <<'PY'
import json, os, sys
d = sys.argv[1]
s = json.load(open(os.path.join(d, "results", "summary.json")))
arms = {q["arm"] for q in s["quantized"]}
assert {"rtn", "gptq", "lora+down2", "npft+rtn"} <= arms, arms
assert all(q["peak_activation_bytes"] > 0 for q in s["quantized"] if "+" in q["arm"] and q["arm"] != "npft+rtn")
json.load(open(os.path.join(d, "results", "statements.json")))
assert json.load(open(os.path.join(d, "results", "picks.json"))), "no pick"
PY
fi
echo "ptq_study --quick: $cells cells, outputs present and parsed, second run reused them"
