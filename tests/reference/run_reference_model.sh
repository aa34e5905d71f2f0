#!/bin/sh
# The reference-model workflow end to end (CTest test_reference_model): reference_model trains a tiny model with a
# SentencePiece vocabulary trained on the training split, keeps weight snapshots, is stopped part way and resumed to
# the same final weights as a run that never stopped; --curve measures the snapshots; end_to_end --model runs the demo
# on the resulting folder.
set -eu
reference_model=$1
end_to_end=$2
work=$3
rm -rf "$work" && mkdir -p "$work"
# 3000 lines of pseudo-words built from syllables, deterministic (no random numbers).
awk 'BEGIN {
  split("ka lo mi ne ru sa te vo zi pa do fe gu hi ja ko lu ma ni", syl, " ");
  for (line = 0; line < 3000; line++) {
    text = "";
    for (w = 0; w < 9; w++) {
      k = line * 31 + w * 17 + line * w;
      word = syl[k % 19 + 1] syl[int(k / 19) % 19 + 1];
      if (k % 3 == 0) word = word syl[int(k / 361) % 19 + 1];
      text = text (w ? " " : "") word;
    }
    print text ", " (line * 37 % 1000) ".";
  }
}' > "$work/text.txt"
model="--text $work/text.txt --vocab sp:300 --layers 2 --dim 128 --heads 4 --hidden 256 --context 32 --batch 4 --steps 24
       --snapshot-tokens 256 --threads 2"
# shellcheck disable=SC2086
"$reference_model" --out "$work/straight" $model > "$work/straight.log" 2>&1 || { tail -20 "$work/straight.log"; exit 1; }
grep -q "training a 300-piece SentencePiece BPE vocabulary" "$work/straight.log" || { echo "no SentencePiece vocabulary trained"; exit 1; }
[ "$(ls "$work/straight/snapshots" | wc -l)" -eq 12 ] || { ls "$work/straight/snapshots"; echo "expected 12 snapshots"; exit 1; }

# The same run in two sittings: 10 steps (a shorter --steps would change the learning-rate schedule, so the first
# sitting is cut by a checkpoint-then-stop: the state is saved every step and the process is stopped after step 10).
# shellcheck disable=SC2086
"$reference_model" --out "$work/resumed" $model --stop-after 10 > "$work/first.log" 2>&1 || true
grep -q "interrupted at step 10" "$work/first.log" || { tail -20 "$work/first.log"; echo "the first sitting did not stop at step 10"; exit 1; }
# shellcheck disable=SC2086
"$reference_model" --out "$work/resumed" $model --threads 1 > "$work/second.log" 2>&1 || { tail -20 "$work/second.log"; exit 1; }
grep -q "resumed .* at step 10 of 24" "$work/second.log" || { echo "the second sitting did not resume at step 10"; exit 1; }
cmp "$work/straight/reference.safetensors" "$work/resumed/reference.safetensors" || {
  echo "stopped + resumed (on 1 thread) differs from the straight run"; exit 1; }
cmp "$work/straight/tokenizer.model" "$work/resumed/tokenizer.model" || { echo "the SentencePiece model is not deterministic"; exit 1; }

# shellcheck disable=SC2086
"$reference_model" --out "$work/straight" $model --curve > "$work/curve.log" 2>&1 || { tail -20 "$work/curve.log"; exit 1; }
[ "$(grep -c '"tokens"' "$work/straight/curve.json")" -eq 13 ] || { cat "$work/straight/curve.json"; echo "curve.json should have 13 points"; exit 1; }

"$end_to_end" --model "$work/straight" --text "$work/text.txt" --out "$work/demo" --quick > "$work/demo.log" 2>&1 || {
  tail -30 "$work/demo.log"; exit 1; }
grep -q "fp32 model: the reference model" "$work/demo.log" || { echo "end_to_end did not use the reference model"; exit 1; }
grep -q '"vocab": 300' "$work/demo/results.json" || { echo "results.json does not describe the 300-token model"; exit 1; }
echo "reference model: trained, resumed bit-identically, curve measured, demo ran on it"
