#!/usr/bin/env python3
"""Test perplexity of a GGUF model as llama.cpp computes it (through llama-cpp-python), on given token windows.

  llama_cpp_perplexity.py MODEL.gguf WINDOWS.txt

WINDOWS.txt holds one window per line, token ids separated by spaces (npft-export --evaluate --windows writes it).
Each window of n tokens is fed to llama.cpp from an empty cache; its logits at positions 0 .. n-2 predict tokens
1 .. n-1, exactly the predictions npft's evaluation scores. Prints "llama.cpp test perplexity X on N predictions".
"""
import math
import os
import sys

import numpy as np
from llama_cpp import Llama


def main(argv):
    if len(argv) != 3:
        print(__doc__)
        return 2
    windows = [[int(t) for t in line.split()] for line in open(argv[2]) if line.strip()]
    if not windows:
        print("no windows in " + argv[2])
        return 1
    length = max(len(w) for w in windows)
    threads = max(1, min(4, os.cpu_count() or 1))
    llm = Llama(model_path=argv[1], n_ctx=length, n_batch=length, n_ubatch=length, logits_all=True, n_threads=threads,
                n_threads_batch=threads, verbose=False)
    nll, count = 0.0, 0
    for w in windows:
        llm.reset()
        llm.eval(w[:-1])
        logits = np.asarray(llm.scores[: len(w) - 1], dtype=np.float64)
        top = logits.max(axis=1, keepdims=True)
        log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
        targets = np.asarray(w[1:])
        nll += float((log_z - logits[np.arange(len(targets)), targets]).sum())
        count += len(targets)
    print(f"llama.cpp test perplexity {math.exp(nll / count):.6f} on {count} predictions ({len(windows)} windows)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
