#!/usr/bin/env python3
"""llama.cpp's own tokenizer on npft's SentencePiece GGUF export (tests/python/sentencepiece_gguf.cpp).

Usage: check_tokenizer.py DIR   (DIR holds model.gguf, tokenizer.model and samples.tsv)
Checks with PyPI gguf that the tokenizer keys are what llama.cpp's converter writes, then with llama-cpp-python that
llama.cpp tokenizes every sample text to exactly npft's ids (with and without <s>) and decodes them back."""
import sys
from pathlib import Path

import gguf
import llama_cpp
import numpy as np

failures = 0


def check(ok, message):
    global failures
    if not ok:
        failures += 1
        print("FAIL:", message)


def main(directory):
    d = Path(directory)
    reader = gguf.GGUFReader(str(d / "model.gguf"))
    fields = reader.fields

    def value(key):
        f = fields[key]
        return f.contents() if hasattr(f, "contents") else f.parts[f.data[0]].tolist()

    check(value("tokenizer.ggml.model") == "llama", "tokenizer.ggml.model is not \"llama\"")
    tokens = value("tokenizer.ggml.tokens")
    types = np.asarray(value("tokenizer.ggml.token_type"))
    scores = np.asarray(value("tokenizer.ggml.scores"))
    check(len(tokens) == 416 and len(types) == 416 and len(scores) == 416, f"{len(tokens)} tokens, expected 416")
    check(tokens[:3] == ["<unk>", "<s>", "</s>"] and list(types[:3]) == [2, 3, 3], f"special tokens {tokens[:3]} {types[:3]}")
    check(tokens[3] == "<0x00>" and tokens[258] == "<0xFF>" and all(types[3:259] == 6), "byte tokens")
    check(all(types[259:400] == 1), "normal pieces")
    check(tokens[400] == "[PAD400]" and all(types[400:] == 5), "padding tokens")
    check(value("tokenizer.ggml.bos_token_id") == 1 and value("tokenizer.ggml.eos_token_id") == 2, "bos/eos ids")
    check(value("tokenizer.ggml.unknown_token_id") == 0, "unk id")
    check(value("tokenizer.ggml.add_bos_token") is True and value("tokenizer.ggml.add_eos_token") is False, "add_bos/add_eos")

    llm = llama_cpp.Llama(model_path=str(d / "model.gguf"), vocab_only=True, verbose=False)
    samples = [line.split("\t") for line in (d / "samples.tsv").read_text(encoding="utf-8").splitlines()]
    check(len(samples) >= 8, f"only {len(samples)} samples")
    for text, ids in samples:
        ours = [int(t) for t in ids.split()]
        theirs = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        check(theirs == ours, f"{text!r}: llama.cpp {theirs}, npft {ours}")
        with_bos = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        check(with_bos == [1] + ours, f"{text!r} with <s>: llama.cpp {with_bos}")
        back = llm.detokenize(ours).decode("utf-8")
        check(back.lstrip(" ") == text.lstrip(" "), f"{text!r}: llama.cpp decodes npft's ids to {back!r}")
        print(f"  {len(ours):3d} tokens  {'same' if theirs == ours else 'DIFFERENT'}  {text!r}")
    print(f"{len(samples)} samples: llama.cpp's tokenizer {'matches' if failures == 0 else 'does NOT match'} npft's SentencePiece ids")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
