#!/usr/bin/env python3
"""Turns the JSON of bench_gemv into docs/benchmarks.md (tables, goal checks) and a PNG plot (gnuplot).

usage: bench_report.py RESULTS.json OUT.md OUT.png [PREFILL.json] [MODEL.json]

PREFILL.json (bench_prefill's JSON) adds the prompt-processing section: the int8-activation path against the int8
multiply-add peak, fp32 Eigen built with -march=native and OpenBLAS sgemm (when built with it), all from that one run.
MODEL.json (bench_model's JSON) adds the section "End-to-end: reference model" (scripts/bench_model_report.py).

Everything in OUT.md below the line NOTES_MARKER is kept from the previous file (hand-written analysis).
Python standard library only; the plot needs gnuplot (skipped with a message when it is missing).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from bench_model_report import load_model, model_lines

NOTES_MARKER = "<!-- notes: everything below is kept by scripts/bench_report.py -->"
NAME = re.compile(r"^gemv/(?P<format>[^/]+)/(?P<shape>\d+x\d+)/batch:(?P<batch>\d+)/threads:(?P<threads>\d+)")
MEMORY = re.compile(r"^memory/read/threads:(?P<threads>\d+)")
FORMATS = ["fp32_eigen", "u4g128", "u3g128", "u2g128", "u8", "lut4", "lut3", "u4g128+sparse0.45",
           "u4g128_int8", "u3g128_int8", "u2g128_int8", "lut4_int8", "lut3_int8", "u4g128+sparse0.45_int8",
           # the AVX2 kernel forced (what the AVX-512 VBMI kernel is measured against), and 3-bit from a PreparedMatrix
           "u4g128_int8_avx2", "u3g128_int8_avx2", "u3g128_int8_avx2_prepared", "u2g128_int8_avx2"]
# (format, goal as a fraction of the measured read bandwidth) at batch 1: fp32 activations and the int8-activation path
BANDWIDTH_GOALS = [("u4g128", 0.80), ("u3g128", 0.70), ("lut4", 0.70),
                   ("u4g128_int8", 0.80), ("u3g128_int8", 0.70), ("lut4_int8", 0.70)]
# formats drawn in the plot (all of them make it unreadable)
PLOT_FORMATS = ["u4g128", "u3g128", "lut4", "u4g128_int8", "u3g128_int8", "lut4_int8", "u4g128+sparse0.45"]


def load(path):
    with open(path) as f:
        data = json.load(f)
    gemv, memory = {}, {}
    for b in data["benchmarks"]:
        if b.get("run_type", "iteration") != "iteration":
            continue
        name = b["name"].replace("/real_time", "")
        unit = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
        seconds, cpu_seconds = b["real_time"] * unit, b["cpu_time"] * unit
        gbs = b.get("bytes_per_second", 0.0) / 1e9
        # CPU time of the calling thread: with one thread, the time the kernel ran when the machine is shared.
        cpu_gbs = gbs * seconds / cpu_seconds if cpu_seconds > 0 else 0.0
        m = NAME.match(name)
        if m:
            key = (m["format"], m["shape"], int(m["batch"]), int(m["threads"]))
            gemv[key] = {"seconds": seconds, "cpu_seconds": cpu_seconds, "gbs": gbs, "cpu_gbs": cpu_gbs,
                         "path": b.get("label", ""), "rel_err": b.get("rel_rms_err")}
            continue
        m = MEMORY.match(name)
        if m:
            memory[int(m["threads"])] = gbs
            if int(m["threads"]) == 1:
                memory["cpu"] = cpu_gbs
    return data.get("context", {}), gemv, memory


def machine_line(context):
    parts = []
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.readlines()
        model = next((l.split(":", 1)[1].strip() for l in lines if l.startswith("model name")), None)
        if model:
            parts.append(model)
        flags = set(next((l.split(":", 1)[1].split() for l in lines if l.startswith("flags")), []))
        # The extensions the kernels (or their absence) depend on.
        isa = [f for f in ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
                           "avx512vbmi", "avx512_fp16", "amx_int8"] if f in flags]
        if isa:
            parts.append("ISA " + " ".join(isa))
    except OSError:
        pass
    parts.append(f"{context.get('num_cpus', '?')} CPUs at {context.get('mhz_per_cpu', '?')} MHz (as reported)")
    caches = context.get("caches", [])
    if caches:
        parts.append("caches " + ", ".join(f"L{c['level']} {c['type'][0]} {c['size'] // 1024} KiB" for c in caches))
    load = context.get("load_avg")
    if load:
        parts.append("load average during the run " + ", ".join(f"{x:.1f}" for x in load))
    return "; ".join(parts)


# fp32 baselines of bench_prefill, with the name the goals use: Eigen with -march=native, and OpenBLAS sgemm (when
# the benchmark was built with it).
PREFILL_BASELINES = [("fp32_eigen_native", "fair Eigen"), ("fp32_openblas", "OpenBLAS")]
PREFILL = re.compile(r"^prefill/(?P<format>[^/]+)/(?P<shape>\d+x\d+)/batch:(?P<batch>\d+)/threads:(?P<threads>\d+)")


def load_prefill(path):
    """(peaks {name: MACs/s}, rows {(format, shape, batch, threads): {...}}) from bench_prefill's JSON."""
    with open(path) as f:
        data = json.load(f)
    peaks, rows = {}, {}
    for b in data["benchmarks"]:
        if b.get("run_type", "iteration") != "iteration":
            continue
        name = b["name"].replace("/real_time", "")
        if name.startswith("peak/"):
            peaks[name] = b["MACs/s"]
            continue
        m = PREFILL.match(name)
        if m:
            unit = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
            rows[(m["format"], m["shape"], int(m["batch"]), int(m["threads"]))] = {
                "seconds": (b["cpu_time"] if int(m["threads"]) == 1 else b["real_time"]) * unit,
                "macs": b["MACs/s"], "of_peak": b.get("of_int8_peak"), "path": b.get("label", "")}
    return peaks, rows


def prefill_lines(peaks, rows):
    int8_peak = next((v for k, v in peaks.items() if k.startswith("peak/int8/")), None)
    lines = ["## Prompt processing (bench_prefill)", "",
             "`benchmarks/bench_prefill.cpp`, one run: the int8-activation path (`Activations::int8`, the default) against",
             "the int8 multiply-add peak of this CPU (a register-only loop of its widest int8 dot-product instruction, one",
             "thread; the 2-thread rows are compared with twice it) and against fp32 Eigen built with `-march=native` and",
             "OpenBLAS `cblas_sgemm` (its own threads; absent when the benchmark was built without OpenBLAS). One thread:",
             "CPU time of the process (what the core gave the run on a shared machine); two threads: wall time. Formats",
             "ending in `_avxvnni` / `_avx2` run the 256-bit GEMM (the path of CPUs without AVX-512 VNNI) with that dot",
             "product, and are rated against the peak of their own instruction.", ""]
    lines += [f"Peaks: " + ", ".join(f"{k.split('/', 1)[1]} {v / 1e9:.0f} G multiply-adds/s" for k, v in sorted(peaks.items())) + ".", ""]
    shapes = sorted({k[1] for k in rows}, key=lambda s: [int(v) for v in s.split("x")])
    baselines = [b for b in PREFILL_BASELINES if any(k[0] == b[0] for k in rows)]
    fmts = sorted({k[0] for k in rows if k[0] not in {b[0] for b in PREFILL_BASELINES}})
    lines += ["| goal | shape | threads | measured | verdict |", "|---|---|---|---|---|"]
    for shape in shapes:
        for t in (1, 2):
            for fmt in fmts:
                fracs = [rows[k]["of_peak"] for k in rows if k[0] == fmt and k[1] == shape and k[3] == t and 64 <= k[2] <= 512
                         and rows[k]["of_peak"] is not None]
                if fracs:
                    lo = min(fracs)
                    lines.append(f"| {fmt} 64-512 tokens >= 50% of the int8 peak | {shape} | {t} | {100 * lo:.0f}%-{100 * max(fracs):.0f}% | "
                                 f"{'met' if lo >= 0.5 else 'missed'} |")
                for base_fmt, base_name in baselines:
                    batches = [k[2] for k in rows if k[0] == fmt and k[1] == shape and k[3] == t and k[2] >= 2
                               and (base_fmt, shape, k[2], t) in rows]
                    slower = [b for b in batches if rows[(fmt, shape, b, t)]["seconds"] >= rows[(base_fmt, shape, b, t)]["seconds"]]
                    if batches:
                        lines.append(f"| {fmt} faster per token than {base_name} at every batch >= 2 | {shape} | {t} | "
                                     f"{'slower at ' + ', '.join(map(str, sorted(slower))) if slower else 'faster at all ' + str(len(batches))} | "
                                     f"{'missed' if slower else 'met'} |")
    lines.append("")
    for shape in shapes:
        lines += [f"### {shape} (N x K)", "", "| format | batch | threads | path | ms per call | G MACs/s | of int8 peak | "
                  + " | ".join(f"vs {name}" for _, name in baselines) + " |", "|---|---|---|---|---|---|---|" + "---|" * len(baselines)]
        for fmt in [b for b, _ in baselines] + fmts:
            for batch in sorted({k[2] for k in rows}):
                for t in (1, 2):
                    r = rows.get((fmt, shape, batch, t))
                    if not r:
                        continue
                    of_peak = f"{100 * r['of_peak']:.0f}%" if r["of_peak"] is not None else ""
                    speeds = []
                    for base_fmt, _ in baselines:
                        base = rows.get((base_fmt, shape, batch, t))
                        speeds.append(f"{base['seconds'] / r['seconds']:.2f}x" if base and fmt != base_fmt else "")
                    lines.append(f"| {fmt} | {batch} | {t} | {r['path']} | {1e3 * r['seconds']:.2f} | {r['macs'] / 1e9:.1f} | {of_peak} | "
                                 + " | ".join(speeds) + " |")
        lines.append("")
    return lines


def write_markdown(out_md, context, gemv, memory, prefill=None, model=None):
    old_notes = ""
    if os.path.exists(out_md):
        with open(out_md) as f:
            text = f.read()
        if NOTES_MARKER in text:
            old_notes = text.split(NOTES_MARKER, 1)[1]
    lines = ["# CPU kernel benchmarks", "",
             "Generated by `scripts/bench.sh` from one run of `bench_gemv` (`benchmarks/bench_gemv.cpp`); the goals come from",
             "issue 7. Time is wall-clock per call; GB/s counts the weight bytes (codes, fp16 metadata, outliers) read per",
             "call; *of read bw* is that over `memory/read/threads:<T>` measured in the same run; *vs fp32* is the speedup",
             "over Eigen fp32 at the same shape, batch and thread count. *cpu* columns use the CPU time of the calling thread",
             "instead (one thread only): on a shared machine that is the time the kernel actually ran.", "",
             f"Machine: {machine_line(context)}.", ""]
    threads = sorted(t for t in memory if t != "cpu")
    if threads:
        lines.append("Measured read bandwidth: " + ", ".join(f"{memory[t]:.1f} GB/s on {t} thread{'s' if t > 1 else ''}" for t in threads) +
                     (f" ({memory['cpu']:.1f} GB/s per CPU-second on 1 thread)" if "cpu" in memory else "") + ".")
        lines.append("")

    lines += ["## Goals", "",
              "Wall-clock figures; for one thread the same ratio in CPU time follows in brackets (closer to an unshared machine).", "",
              "| goal | threads | measured | verdict |", "|---|---|---|---|"]
    shape = "4096x4096"

    def verdict(frac, goal):
        return "met" if frac >= goal else f"missed by {100 * (goal - frac):.0f} points ({frac / goal:.2f} of the goal)"

    for fmt, goal in BANDWIDTH_GOALS:
        for t in threads:
            r = gemv.get((fmt, shape, 1, t))
            if not r:
                continue
            frac = r["gbs"] / memory[t]
            text = f"{100 * frac:.0f}% ({r['gbs']:.1f} GB/s)"
            result = verdict(frac, goal)
            if t == 1 and "cpu" in memory:
                cpu_frac = r["cpu_gbs"] / memory["cpu"]
                text += f" [cpu {100 * cpu_frac:.0f}%]"
                result += f" [cpu: {verdict(cpu_frac, goal)}]"
            lines.append(f"| {fmt} batch 1 {shape} >= {100 * goal:.0f}% of read bandwidth | {t} | {text} | {result} |")
    for t in threads:
        for suffix in ["", "_int8"]:
            dense, sparse = gemv.get(("u4g128" + suffix, shape, 1, t)), gemv.get(("u4g128+sparse0.45" + suffix, shape, 1, t))
            if dense and sparse:
                slower = sparse["seconds"] / dense["seconds"] - 1
                text = f"{100 * slower:+.0f}% time"
                result = "met" if slower > 0.02 else "not measurable"
                if t == 1:
                    cpu_slower = sparse["cpu_seconds"] / dense["cpu_seconds"] - 1
                    text += f" [cpu {100 * cpu_slower:+.0f}%]"
                    result += f" [cpu: {'met' if cpu_slower > 0.02 else 'not measurable'}]"
                lines.append(f"| dense-and-sparse (0.45%) measurably slower than dense{suffix and ', int8'}, batch 1 | {t} | {text} | {result} |")
    for t in threads:
        for fmt in ["u4g128", "u3g128", "lut4", "u4g128_int8", "u3g128_int8", "lut4_int8"]:
            q, e = gemv.get((fmt, shape, 16, t)), gemv.get(("fp32_eigen", shape, 16, t))
            if q and e:
                speedup = e["seconds"] / q["seconds"]
                lines.append(f"| {fmt} batch 16 faster than Eigen fp32 | {t} | {speedup:.2f}x | {'met' if speedup > 1 else 'missed'} |")
    lines.append("")

    shapes = sorted({k[1] for k in gemv}, key=lambda s: [int(v) for v in s.split("x")])
    for shape in shapes:
        lines += [f"## {shape} (N x K)", "",
                  "| format | batch | threads | path | time (us) | cpu (us) | GB/s | of read bw | of read bw, cpu | vs fp32 | vs fp32, cpu |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for fmt in FORMATS:
            for batch in [1, 4, 16, 64]:
                for t in [1, 2]:
                    r = gemv.get((fmt, shape, batch, t))
                    if not r:
                        continue
                    base = gemv.get(("fp32_eigen", shape, batch, t))
                    frac = f"{100 * r['gbs'] / memory[t]:.0f}%" if t in memory and memory[t] > 0 else ""
                    cpu_frac = f"{100 * r['cpu_gbs'] / memory['cpu']:.0f}%" if t == 1 and memory.get("cpu") else ""
                    speed = f"{base['seconds'] / r['seconds']:.2f}x" if base else ""
                    cpu_speed = f"{base['cpu_seconds'] / r['cpu_seconds']:.2f}x" if base and t == 1 else ""
                    path = r["path"] + (f" (rel. err {r['rel_err']:.1e})" if r.get("rel_err") is not None else "")
                    lines.append(f"| {fmt} | {batch} | {t} | {path} | {1e6 * r['seconds']:.0f} | {1e6 * r['cpu_seconds']:.0f} | "
                                 f"{r['gbs']:.2f} | {frac} | {cpu_frac} | {speed} | {cpu_speed} |")
        lines.append("")
    lines += ["![speedup over Eigen fp32 by batch size](benchmarks.png)", ""]
    if prefill:
        lines += prefill_lines(*prefill)
    if model:
        lines += model_lines(*model)
    lines.append(NOTES_MARKER)
    with open(out_md, "w") as f:
        f.write("\n".join(lines) + (old_notes if old_notes else "\n"))


def write_plot(out_png, gemv):
    if shutil.which("gnuplot") is None:
        print("gnuplot not found: no plot written", file=sys.stderr)
        return
    shape = "4096x4096"
    formats = [f for f in PLOT_FORMATS if any(k[0] == f and k[1] == shape for k in gemv)]
    with tempfile.TemporaryDirectory() as tmp:
        plots = []
        for t in [1, 2]:
            data = os.path.join(tmp, f"threads{t}.dat")
            with open(data, "w") as f:
                for batch in [1, 4, 16, 64]:
                    base = gemv.get(("fp32_eigen", shape, batch, t))
                    row = [str(batch)]
                    for fmt in formats:
                        r = gemv.get((fmt, shape, batch, t))
                        row.append(f"{base['seconds'] / r['seconds']:.4f}" if base and r else "NaN")
                    f.write(" ".join(row) + "\n")
            curves = ", ".join(f"'{data}' using 1:{i + 2} with linespoints title '{fmt}'" for i, fmt in enumerate(formats))
            plots.append(f"set title 'threads: {t}'\nplot {curves}, 1 with lines dashtype 2 lc rgb 'black' title 'Eigen fp32'")
        script = "\n".join([
            f"set terminal pngcairo size 1100,450 font ',10' noenhanced", f"set output '{out_png}'",
            "set multiplot layout 1,2 title 'speedup over Eigen fp32, " + shape + "'",
            "set logscale x 2", "set xlabel 'batch (tokens)'", "set ylabel 'speedup'", "set key top right", "set grid",
            "set xrange [0.8:80]", "set yrange [0:*]", plots[0], plots[1], "unset multiplot"])
        subprocess.run(["gnuplot"], input=script, text=True, check=True)


def main():
    if len(sys.argv) not in (4, 5, 6):
        sys.exit(__doc__)
    context, gemv, memory = load(sys.argv[1])
    write_markdown(sys.argv[2], context, gemv, memory, load_prefill(sys.argv[4]) if len(sys.argv) >= 5 else None,
                   load_model(sys.argv[5]) if len(sys.argv) == 6 else None)
    write_plot(sys.argv[3], gemv)


if __name__ == "__main__":
    main()
