#!/usr/bin/env python3
"""Synthetic Hugging Face LLaMA checkpoints and an independent numpy implementation of the Hugging Face LLaMA forward
(transformers' modeling_llama: RMSNorm, rotate-half rotary embeddings, grouped-query attention by repeat_kv, SwiGLU).

  hf_reference.py make DIR --dtype {f32,f16,bf16} --layout {single,sharded} --kv-heads K [--tied] [--seed N]
      writes DIR/config.json, the weights (model.safetensors, or two shards and model.safetensors.index.json, written
      here byte by byte from the safetensors spec), DIR/tokens.txt (two sequences) and DIR/expected.npy: the reference
      log-probabilities (float64 forward on the weights as stored) of each position's next token distribution.
  hf_reference.py compare DIR LOGPROBS.txt
      compares npft's log-probabilities (one row per predicting position, as hf_logprobs writes them) with expected.npy.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

SIZES = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=16)


def to_stored(x, dtype):
    """Rounds fp32 values to the file's dtype; returns (bytes, the values as stored, as float64)."""
    x = x.astype(np.float32)
    if dtype == "f32":
        return x.tobytes(), x.astype(np.float64)
    if dtype == "f16":
        h = x.astype(np.float16)
        return h.tobytes(), h.astype(np.float64)
    u = x.view(np.uint32).astype(np.uint64)
    b = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even
    return b.tobytes(), (b.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def write_safetensors(path, tensors, dtype):
    header, blobs, offset = {}, [], 0
    for name, (data, shape) in tensors.items():
        header[name] = {"dtype": {"f32": "F32", "f16": "F16", "bf16": "BF16"}[dtype], "shape": list(shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"))
    text += " " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text.encode())
        for b in blobs:
            f.write(b)


def make(args):
    os.makedirs(args.dir, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    c = dict(SIZES, num_key_value_heads=args.kv_heads, rms_norm_eps=1e-5, rope_theta=500000.0,
             tie_word_embeddings=args.tied, model_type="llama", architectures=["LlamaForCausalLM"], hidden_act="silu",
             torch_dtype={"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[args.dtype])
    d, hd = c["hidden_size"], c["hidden_size"] // c["num_attention_heads"]
    kv = args.kv_heads * hd
    shapes = {"model.embed_tokens.weight": (c["vocab_size"], d), "model.norm.weight": (d,)}
    if not args.tied:
        shapes["lm_head.weight"] = (c["vocab_size"], d)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({p + "input_layernorm.weight": (d,), p + "post_attention_layernorm.weight": (d,),
                       p + "self_attn.q_proj.weight": (d, d), p + "self_attn.k_proj.weight": (kv, d),
                       p + "self_attn.v_proj.weight": (kv, d), p + "self_attn.o_proj.weight": (d, d),
                       p + "mlp.gate_proj.weight": (c["intermediate_size"], d),
                       p + "mlp.up_proj.weight": (c["intermediate_size"], d),
                       p + "mlp.down_proj.weight": (d, c["intermediate_size"])})
    stored, data = {}, {}
    for name, shape in shapes.items():
        values = 1.0 + 0.2 * rng.standard_normal(shape) if name.endswith("norm.weight") else 0.3 * rng.standard_normal(shape)
        data[name], stored[name] = to_stored(values, args.dtype)
        stored[name] = stored[name].reshape(shape)
    names = list(shapes)
    if args.layout == "single":
        write_safetensors(os.path.join(args.dir, "model.safetensors"), {n: (data[n], shapes[n]) for n in names}, args.dtype)
    else:
        half = len(names) // 2
        shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
        weight_map = {}
        for file, part in shards.items():
            write_safetensors(os.path.join(args.dir, file), {n: (data[n], shapes[n]) for n in part}, args.dtype)
            weight_map.update({n: file for n in part})
        with open(os.path.join(args.dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": sum(len(b) for b in data.values())}, "weight_map": weight_map}, f)
    with open(os.path.join(args.dir, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    tokens = rng.integers(0, c["vocab_size"], size=(2, c["max_position_embeddings"] + 1))
    np.savetxt(os.path.join(args.dir, "tokens.txt"), tokens, fmt="%d")
    np.save(os.path.join(args.dir, "expected.npy"), np.concatenate([forward(c, stored, t[:-1]) for t in tokens]))
    print(f"wrote {args.dir}: {args.layout} {args.dtype}, {args.kv_heads} kv heads, tied={args.tied}")


def rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def forward(c, w, tokens):
    """Log-softmax of the logits at every position (float64), as transformers' LlamaForCausalLM computes them."""
    d, heads, kvh = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
    hd, n = d // heads, len(tokens)
    inv_freq = 1.0 / (c["rope_theta"] ** (np.arange(0, hd, 2) / hd))
    freqs = np.outer(np.arange(n), inv_freq)
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    h = w["model.embed_tokens.weight"][tokens]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = rms_norm(h, w[p + "input_layernorm.weight"], c["rms_norm_eps"])
        q = (x @ w[p + "self_attn.q_proj.weight"].T).reshape(n, heads, hd)
        k = (x @ w[p + "self_attn.k_proj.weight"].T).reshape(n, kvh, hd)
        v = (x @ w[p + "self_attn.v_proj.weight"].T).reshape(n, kvh, hd)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k, v = np.repeat(k, heads // kvh, axis=1), np.repeat(v, heads // kvh, axis=1)  # repeat_kv
        scores = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        attn = np.einsum("hts,shd->thd", probs, v).reshape(n, d)
        h = h + attn @ w[p + "self_attn.o_proj.weight"].T
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"], c["rms_norm_eps"])
        gate = x @ w[p + "mlp.gate_proj.weight"].T
        h = h + ((gate / (1.0 + np.exp(-gate))) * (x @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
    h = rms_norm(h, w["model.norm.weight"], c["rms_norm_eps"])
    head = w["model.embed_tokens.weight"] if c["tie_word_embeddings"] else w["lm_head.weight"]
    logits = h @ head.T
    top = logits.max(axis=-1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(axis=-1, keepdims=True))


def compare(args):
    expected = np.load(os.path.join(args.dir, "expected.npy"))
    got = np.loadtxt(args.logprobs, ndmin=2)
    if got.shape != expected.shape:
        print(f"FAIL: npft gave {got.shape} log-probabilities, the reference {expected.shape}")
        return 1
    diff = np.abs(got - expected).max()
    spread = np.abs(expected).max()
    ok = diff <= 2e-4
    print(f"{args.dir}: max |npft - numpy HF reference| of {expected.size} log-probabilities = {diff:.3g} "
          f"(values up to {spread:.3g}) {'ok' if ok else 'FAIL (limit 2e-4)'}")
    return 0 if ok else 1


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make")
    m.add_argument("dir")
    m.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32")
    m.add_argument("--layout", choices=["single", "sharded"], default="single")
    m.add_argument("--kv-heads", type=int, default=SIZES["num_attention_heads"])
    m.add_argument("--tied", action="store_true")
    m.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("compare")
    c.add_argument("dir")
    c.add_argument("logprobs")
    args = parser.parse_args()
    if args.command == "make":
        make(args)
        return 0
    return compare(args)


if __name__ == "__main__":
    sys.exit(main())
