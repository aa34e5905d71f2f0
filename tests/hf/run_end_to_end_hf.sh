#!/bin/sh
# The demo on a user's Hugging Face checkpoint, end to end (CTest test_end_to_end_hf): writes a small synthetic
# checkpoint whose tokenizer.model is trained on a generated text, runs `end_to_end --hf DIR --text FILE --quick`, and
# checks that results.json describes that model and has its rows; then exports the folder with `npft-export --hf`
# and checks that the GGUF file got the SentencePiece vocabulary; and runs `blockwise_ptq --hf DIR --quick` on it.
set -eu
writer=$1
end_to_end=$2
export_tool=$3
blockwise_ptq=$4
work=$5
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
"$writer" "$work/model" --layers 2 --dim 128 --hidden 256 --heads 4 --kv-heads 2 --vocab 512 --context 256 --shards 2 \
  --tokenizer "$work/text.txt"
"$end_to_end" --hf "$work/model" --context 32 --text "$work/text.txt" --out "$work/out" --quick > "$work/out.log" 2>&1 || {
  tail -30 "$work/out.log"; exit 1; }
grep -q '"vocab": 512' "$work/out/results.json" || { echo "results.json does not describe the 512-token model"; exit 1; }
grep -q '"method": "rtn+npft"' "$work/out/results.json" || { echo "results.json has no rtn+npft row"; exit 1; }
grep -E 'Hugging Face checkpoint|tokenized|fp32 test perplexity' "$work/out.log"
# The corpus went through the subword tokenizer, not bytes: fewer tokens than bytes.
tokens=$(sed -n 's/^tokenized: train \([0-9]*\) tokens.*/\1/p' "$work/out.log")
bytes=$(sed -n 's/^corpus .*: train \([0-9]*\) bytes.*/\1/p' "$work/out.log")
[ -n "$tokens" ] && [ -n "$bytes" ] && [ "$tokens" -lt "$bytes" ] || {
  echo "the train split was not tokenized by tokenizer.model ($tokens tokens for $bytes bytes)"; exit 1; }
echo "end_to_end --hf: ran on the synthetic checkpoint, results in $work/out/results.json"
"$export_tool" --hf "$work/model" --out "$work/model-q8_0.gguf" --type Q8_0 > "$work/export.log" 2>&1 || { cat "$work/export.log"; exit 1; }
grep -q "512 SentencePiece tokens (add <s>: yes, add </s>: no)" "$work/export.log" || {
  cat "$work/export.log"; echo "npft-export --hf did not write the SentencePiece vocabulary"; exit 1; }
grep -a -q "tokenizer.ggml.token_type" "$work/model-q8_0.gguf" || { echo "the GGUF file has no tokenizer.ggml.token_type"; exit 1; }
echo "npft-export --hf: wrote $work/model-q8_0.gguf with the SentencePiece vocabulary"
"$blockwise_ptq" --hf "$work/model" --context 32 --text "$work/text.txt" --out "$work/blockwise" --quick > "$work/blockwise.log" 2>&1 || {
  tail -30 "$work/blockwise.log"; exit 1; }
[ -s "$work/blockwise/blockwise_ptq.json" ] || { echo "blockwise_ptq --hf wrote no blockwise_ptq.json"; exit 1; }
grep -q "the Hugging Face checkpoint (no pre-training)" "$work/blockwise.log" || { echo "blockwise_ptq did not use the checkpoint"; exit 1; }
echo "blockwise_ptq --hf: ran on the synthetic checkpoint"
