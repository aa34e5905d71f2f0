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
import llama_cpp.llama as llama_module
from llama_cpp import Llama

# No "extra" buffer types (weight repacking for AMX and friends): llama.cpp's plain CPU kernels. On this project's Xeon
# the CPU reports AMX, and the AMX path of a GGML_NATIVE build dies with SIGILL on quantized weights; the plain path is
# what every CPU runs.
_default_params = llama_module.llama_cpp.llama_model_default_params


def _plain_cpu_params():
    params = _default_params()
    if hasattr(params, "use_extra_bufts"):
        params.use_extra_bufts = False
    return params


llama_module.llama_cpp.llama_model_default_params = _plain_cpu_params


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
