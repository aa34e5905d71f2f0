#!/usr/bin/env python3
"""Checks npft's GGUF files with llama.cpp's own Python package (PyPI `gguf`), an implementation independent of npft.

  check_gguf.py fixture FILE            FILE (from gguf_fixture) holds pairs NAME.f32 / NAME.q4_0 / NAME.q8_0: the Q4_0
                                         and Q8_0 bytes must equal gguf.quants.quantize of the F32 tensor, and every
                                         metadata key must read back as gguf_fixture wrote it.
  check_gguf.py model F32_FILE FILE...  every key and tensor of each FILE reads; each quantized tensor's bytes equal
                                         gguf.quants.quantize of the same tensor in F32_FILE; F32 tensors are identical.
Exits 0 when every check passes, 1 otherwise, and prints what it compared.
"""
import sys

import numpy as np
from gguf import GGUFReader
from gguf.constants import GGMLQuantizationType as Q
from gguf import quants

failures = 0


def check(ok, message):
    global failures
    if not ok:
        failures += 1
        print("FAIL: " + message)
    return ok


def field_value(field):
    return field.contents()


def tensors_by_name(reader):
    return {t.name: t for t in reader.tensors}


def as_float_matrix(t):
    # ggml shape is [ne0, ne1]; numpy's view of the data is [ne1, ne0], the row-major matrix.
    assert t.tensor_type == Q.F32, t.name
    return np.asarray(t.data, dtype=np.float32).reshape(-1, int(t.shape[0]))


def raw_bytes(t):
    return np.asarray(t.data).view(np.uint8).reshape(-1)


def compare_quantized(name, reference_f32, t):
    expected = quants.quantize(reference_f32, t.tensor_type).reshape(-1)
    got = raw_bytes(t)
    same = check(expected.shape == got.shape and np.array_equal(expected, got),
                 f"{name}: {t.tensor_type.name} bytes differ from gguf.quants "
                 f"({int(np.count_nonzero(expected != got)) if expected.shape == got.shape else 'size'} bytes)")
    return same


def fixture(path):
    reader = GGUFReader(path)
    fields = reader.fields
    expected = {
        "npft.u8": 200, "npft.i8": -100, "npft.u16": 60000, "npft.i16": -30000, "npft.u32": 4000000000,
        "npft.i32": -2000000000, "npft.u64": 0xFEDCBA9876543210, "npft.i64": -0x123456789ABCDEF,
        "npft.f32": np.float32(0.1), "npft.f64": 0.1, "npft.bool": True, "npft.string": "h\u00e9llo",
        "npft.strings": ["<0x00>", "", "\u2581the"], "npft.floats": [np.float32(0.5), np.float32(-1.25)],
    }
    for key, value in expected.items():
        if check(key in fields, f"key {key} missing"):
            got = field_value(fields[key])
            if isinstance(value, list):
                got = list(got)
            check(got == value, f"key {key}: read {got!r}, wrote {value!r}")
    print(f"fixture: {len(expected)} metadata keys of every value type read back by gguf")
    by_name = tensors_by_name(reader)
    blocks = 0
    for name, t in by_name.items():
        if not name.endswith(".f32"):
            continue
        base = name[:-4]
        weights = as_float_matrix(t)
        for suffix in (".q4_0", ".q8_0"):
            q = by_name.get(base + suffix)
            if check(q is not None, f"{base + suffix} missing"):
                if compare_quantized(base + suffix, weights, q):
                    blocks += weights.size // 32
    print(f"fixture: {blocks} blocks of Q4_0 and Q8_0 byte-identical to gguf.quants")
    check(blocks > 0, "no blocks compared")


def model(f32_path, paths):
    reference = tensors_by_name(GGUFReader(f32_path))
    for path in paths:
        reader = GGUFReader(path)
        keys = 0
        for name, field in reader.fields.items():
            if name.startswith("GGUF."):
                continue
            field_value(field)
            keys += 1
        for key in ("general.architecture", "llama.context_length", "llama.embedding_length", "llama.block_count",
                    "llama.feed_forward_length", "llama.attention.head_count", "llama.attention.head_count_kv",
                    "llama.attention.layer_norm_rms_epsilon", "llama.rope.freq_base", "llama.vocab_size",
                    "general.quantization_version", "general.alignment", "tokenizer.ggml.model", "tokenizer.ggml.tokens",
                    "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            check(key in reader.fields, f"{path}: key {key} missing")
        same = 0
        for t in reader.tensors:
            ref = reference.get(t.name)
            if not check(ref is not None, f"{path}: tensor {t.name} not in {f32_path}"):
                continue
            weights = as_float_matrix(ref)
            if t.tensor_type == Q.F32:
                same += check(np.array_equal(as_float_matrix(t).view(np.uint32), weights.view(np.uint32)),
                              f"{path}: {t.name} F32 differs")
            else:
                same += compare_quantized(f"{path}: {t.name}", weights, t)
        print(f"{path}: {keys} keys read, {same}/{len(reader.tensors)} tensors byte-identical to gguf's encoding of the F32 weights")


def main(argv):
    if len(argv) >= 3 and argv[1] == "fixture":
        fixture(argv[2])
    elif len(argv) >= 4 and argv[1] == "model":
        model(argv[2], argv[3:])
    else:
        print(__doc__)
        return 2
    print("check_gguf: " + ("all checks passed" if failures == 0 else f"{failures} checks FAILED"))
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
