#!/usr/bin/env python3
"""The section "End-to-end: reference model" of docs/benchmarks.md, from the JSON of bench_model.

usage: bench_model_report.py MODEL.json OUT.md     (the section alone; scripts/bench_report.py includes it in the page)

Tokens per second of batch-1 generation and of prompt processing, the speedup over fp32 (Eigen) at the same thread
count, and for generation the weight bytes read per token as a fraction of the read bandwidth measured in the same run.
Python standard library only.
"""
import json
import re
import sys

ROW = re.compile(r"^model/(?P<phase>decode|prefill)/(?P<format>[^/]+)(?:/act:(?P<act>int8|fp32))?/threads:(?P<threads>\d+)")
MEMORY = re.compile(r"^memory/read/threads:(?P<threads>\d+)")
FORMATS = ["fp32", "u4", "u4g128", "u3g128", "u2g128", "u8", "lut4", "lut3"]


def load_model(path):
    """(rows {(phase, format, act, threads): {...}}, read bandwidth {threads: GB/s}, errors [str]) of bench_model's JSON."""
    with open(path) as f:
        data = json.load(f)
    rows, memory, errors = {}, {}, []
    for b in data["benchmarks"]:
        if b.get("run_type", "iteration") != "iteration":
            continue
        name = b["name"].replace("/real_time", "")
        if b.get("error_occurred"):
            errors.append(f"{name}: {b.get('error_message', '')}")
            continue
        m = ROW.match(name)
        if m:
            tps = b.get("tokens_per_second", 0.0)
            # CPU time of the benchmark's thread: with one thread, the time the model ran when the machine is shared.
            cpu_tps = tps * b["real_time"] / b["cpu_time"] if b.get("cpu_time", 0) > 0 else None
            rows[(m["phase"], m["format"], m["act"] or "", int(m["threads"]))] = {
                "tps": tps, "cpu_tps": cpu_tps, "bytes": b.get("weight_bytes_per_token"),
                "fraction": b.get("read_fraction"), "kernel": b.get("label", "")}
            continue
        m = MEMORY.match(name)
        if m:
            memory[int(m["threads"])] = b.get("bytes_per_second", 0.0) / 1e9
    return rows, memory, errors


def _variants(rows, phase):
    """(format, act) pairs present for `phase`, in the order of FORMATS, int8 before fp32."""
    seen = {(k[1], k[2]) for k in rows if k[0] == phase}
    order = {f: i for i, f in enumerate(FORMATS)}
    return sorted(seen, key=lambda v: (order.get(v[0], len(FORMATS)), v[0], v[1] != "int8"))


def model_lines(rows, memory, errors):
    lines = ["## End-to-end: reference model (bench_model)", "",
             "`benchmarks/bench_model.cpp`, one run, on `models/reference-a` (6 layers, dim 256, hidden 768, 8 heads, context",
             "256, vocabulary 4096; 7.2 M parameters) with the key/value cache of `examples/common/tiny_llama/decode.hpp`.",
             "Every linear layer RTN-quantized from the fp32 weights (lut: a k-means table per row) and run from its packed",
             "form; embedding, norms, attention and the head stay fp32. *int8* / *fp32*: the activations inside the",
             "quantized kernels (int8 is the default; *kernel* names what ran). fp32 is Eigen built with `-march=native`.",
             "*vs fp32*: tokens/s over fp32's at the same thread count. Wall-clock time; on one thread the rate in CPU time",
             "of the benchmark's thread follows in brackets (what the model got of a shared machine).", "",
             "- **Generation** (batch 1): 64 tokens, one at a time (greedy), after a 16-token prompt whose pass is not timed.",
             "  *MB/token*: weight bytes read per token (packed linears with their metadata, the fp32 head, norms and one",
             "  embedding row); *of read bw*: those bytes per second over the read bandwidth measured in the same run. The",
             "  weights of this small model fit in the caches, so that fraction can pass 1.",
             "- **Prompt processing**: 512 tokens as 2 sequences of 256 (the model's context) in one pass, so every linear",
             "  sees 512 rows; logits of each sequence's last position only.", ""]
    if memory:
        lines += ["Measured read bandwidth: " + ", ".join(
            f"{memory[t]:.1f} GB/s on {t} thread{'s' if t > 1 else ''}" for t in sorted(memory)) + ".", ""]
    threads = sorted({k[3] for k in rows})

    def speed(phase, fmt, act, t):
        r, base = rows.get((phase, fmt, act, t)), rows.get((phase, "fp32", "", t))
        if not r:
            return "–", "–"
        vs = f"{r['tps'] / base['tps']:.2f}x" if base and base["tps"] > 0 else "–"
        rate = f"{r['tps']:.0f}" + (f" ({r['cpu_tps']:.0f})" if t == 1 and r.get("cpu_tps") else "")
        return rate, vs

    for phase, title in [("decode", "Generation, batch 1 (tokens/s)"), ("prefill", "Prompt processing, 512 tokens (tokens/s)")]:
        variants = _variants(rows, phase)
        if not variants:
            continue
        header = ["format", "activations", "kernel"]
        for t in threads:
            header += [f"{t} thr", "vs fp32"] + (["of read bw"] if phase == "decode" else [])
        if phase == "decode":
            header.append("MB/token")
        lines += [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for fmt, act in variants:
            first = next((rows[(phase, fmt, act, t)] for t in threads if (phase, fmt, act, t) in rows), {})
            cells = [fmt, act or "–", first.get("kernel", "")]
            for t in threads:
                cells += list(speed(phase, fmt, act, t))
                if phase == "decode":
                    r = rows.get((phase, fmt, act, t))
                    cells.append(f"{r['fraction']:.2f}" if r and r.get("fraction") is not None else "–")
            if phase == "decode":
                cells.append(f"{first['bytes'] / 1e6:.2f}" if first.get("bytes") else "–")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if errors:
        lines += ["Rows that did not run:", ""] + [f"- {e}" for e in errors] + [""]
    return lines


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[2], "w") as f:
        f.write("\n".join(model_lines(*load_model(sys.argv[1]))) + "\n")


if __name__ == "__main__":
    main()
