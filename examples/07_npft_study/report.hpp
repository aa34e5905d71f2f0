#pragma once
// The study's outputs, generated from its cells and nothing else: results/summary.json and results/statements.json,
// study.md (tables, the computed statements, the plots), study_differences.png (the paired differences) and
// study_gaps.png (the quantization gap), both with 95% error bars. The conclusion section of an existing study.md is
// kept: it is the one part a person writes.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <npft/io/atomic_file.hpp>
#include <npft/io/json.hpp>

#include "study/bar_figure.hpp"
#include "study/text.hpp"
#include "study/statements.hpp"

namespace npft_study::report {

namespace fs = std::filesystem;

inline std::string signed_text(double v, int digits = 4) {
    if (!std::isfinite(v)) return "n/a";
    char b[32];
    std::snprintf(b, sizeof b, "%+.*f", digits, v);
    return b;
}

inline std::string number(double v) {
    if (!std::isfinite(v)) return "null";
    char b[32];
    std::snprintf(b, sizeof b, "%.6g", v);
    return b;
}

/// The comparisons the study states, all on metrics where lower is better.
inline std::vector<std::pair<std::string, std::string>> comparisons() {
    return {{"npft-reference", "lora"}, {"npft-qstep", "lora"},  {"npft-random", "lora"},   {"npft-f0.5pct", "lora"},
            {"npft-f5pct", "lora"},     {"npft-gptq", "lora"},   {"npft-reference", "rtn"}, {"npft-reference", "gptq"},
            {"npft-gptq", "gptq"},      {"npft-random", "npft-reference"}, {"npft-qstep", "npft-reference"},
            // does the fraction matter, and does NPFT-then-RTN at the fraction that works reach GPTQ?
            {"npft-f0.5pct", "npft-reference"}, {"npft-f5pct", "npft-reference"}, {"npft-f5pct", "gptq"},
            {"npft-f5pct", "rtn"},      {"npft-random-f5pct", "lora"}, {"npft-f5pct", "npft-random-f5pct"}};
}

inline const std::vector<std::string> arm_order = {"rtn",         "gptq",         "dense-sparse", "lora",      "npft-reference",
                                                   "npft-gptq",   "npft-qstep",   "npft-random",  "npft-f0.5pct", "npft-f5pct", "npft-random-f5pct"};

inline std::string interval(const npft::stats::MeanInterval& m, int digits = 4) {
    if (m.count < 2) return signed_text(m.mean, digits) + " (n=1)";
    return signed_text(m.mean, digits) + " [" + signed_text(m.ci_low, digits) + ", " + signed_text(m.ci_high, digits) + "] (n=" +
           std::to_string(m.count) + ")";
}

using study::write_text;

/// The conclusion section of an existing study.md (from its heading to the end), or the placeholder.
inline std::string kept_conclusion(const fs::path& md) {
    const std::string heading = "## Conclusion";
    if (fs::exists(md)) {
        std::ifstream in(md);
        std::stringstream buffer;
        buffer << in.rdbuf();
        const std::string text = buffer.str();
        const auto at = text.find("\n" + heading);
        if (at != std::string::npos) return text.substr(at + 1);
    }
    return heading + "\n\n<!-- CONCLUSION PLACEHOLDER: written by hand from the computed statements above; the generator keeps "
                     "this section as it finds it. -->\n_Not yet written._\n";
}

/// What a gap plot is called and shows (the block-wise reconstruction study, examples/08_ptq_study, draws its own).
struct PlotStyle {
    std::string prefix = "study_";                  ///< <prefix>gaps.png, .dat, .gp
    std::vector<std::string> order = arm_order;     ///< bar order; arms not listed are not drawn
    std::string title = "Quantization gap (quantized minus the fp32 model it came from)";
    int width = 1200;
};

/// <prefix>gaps.png: the mean gap in bits/byte, one panel per bit width (each with its own scale), the grids along x
/// and one bar per arm, with 95% error bars.
inline void plot(const std::vector<study::SummaryRow>& gaps, const fs::path& data_dir, const fs::path& docs, std::string& md,
                 const PlotStyle& style = {}) {
    study::BarFigure f;
    f.title = style.title + ": mean over models x seeds with 95% CI";
    f.ylabel = "gap (bits/byte, lower is better)";
    f.width = style.width;
    f.y_from_zero = true;
    std::set<int> bits;
    std::set<std::string> grids, arms;
    for (const auto& r : gaps) {
        bits.insert(std::stoi(r.group.at("bits")));
        grids.insert(r.group.at("grid"));
        arms.insert(r.group.at("arm"));
        f.bars[{r.group.at("bits") + "-bit", r.group.at("grid"), r.group.at("arm")}] = {r.mean.mean, r.mean.ci_low, r.mean.ci_high};
    }
    for (const int b : bits) f.panels.push_back(std::to_string(b) + "-bit");
    f.clusters.assign(grids.begin(), grids.end());
    for (const auto& a : style.order)
        if (arms.contains(a)) f.series.push_back(a);
    const std::string png = style.prefix + "gaps.png";
    if (study::draw(f, data_dir, docs / png)) md += "![quantization gap by bit width, grid and arm](" + png + ")\n\n";
}

/// <prefix>differences.png: what the study compares, the paired differences (treatment minus control, on the gap, pooled
/// over models and seeds) with their 95% intervals; below 0 the treatment has the smaller gap.
inline void plot_differences(const std::vector<study::Statement>& statements, const fs::path& data_dir, const fs::path& docs,
                             std::string& md, const std::string& prefix = "study_") {
    study::BarFigure f;
    f.title = "Paired differences of the gap (treatment minus control), mean over models x seeds with 95% CI";
    f.ylabel = "difference (bits/byte; < 0: treatment better)";
    f.width = 1400;
    std::set<int> bits;
    std::set<std::string> grids;
    // The figure shows the questions of the conclusion (each NPFT variant against its control, and the GPTQ
    // comparisons); the other statements are in the list below it.
    const std::set<std::pair<std::string, std::string>> shown = {
        {"npft-reference", "lora"}, {"npft-qstep", "lora"}, {"npft-random", "lora"}, {"npft-f0.5pct", "lora"},
        {"npft-f5pct", "lora"},     {"npft-gptq", "gptq"},  {"npft-reference", "gptq"}, {"npft-f5pct", "gptq"},
        {"npft-f5pct", "npft-random-f5pct"}};
    for (const auto& s : statements) {
        if (s.metric != "gap_bpb" || !shown.contains({s.treatment, s.control})) continue;
        const std::string name = s.treatment + " - " + s.control;
        if (std::find(f.series.begin(), f.series.end(), name) == f.series.end()) f.series.push_back(name);
        bits.insert(std::stoi(s.group.at("bits")));
        grids.insert(s.group.at("grid"));
        f.bars[{s.group.at("bits") + "-bit", s.group.at("grid"), name}] = {s.difference.mean, s.difference.ci_low,
                                                                           s.difference.ci_high};
    }
    for (const int b : bits) f.panels.push_back(std::to_string(b) + "-bit");
    f.clusters.assign(grids.begin(), grids.end());
    const std::string png = prefix + "differences.png";
    if (study::draw(f, data_dir, docs / png)) md += "![paired differences of the gap](" + png + ")\n\n";
}

/// Writes everything from `stored` (the store's cells; rtn's seedless cells are paired with every seed here).
inline void write(const study::Cells& stored, const fs::path& out, const fs::path& docs) {
    const study::Cells cells = study::expand_seedless(stored, "any");
    study::Cells quantized, finetuned;
    std::set<std::string> models, seeds;
    for (const auto& c : cells) {
        if (c.first.at("arm") == "fp32") continue;
        (c.first.at("grid") == "fp32" ? finetuned : quantized).push_back(c);
        models.insert(c.first.at("model"));
        seeds.insert(c.first.at("seed"));
    }
    const std::set<std::string> pairing = {"model", "seed"};
    const auto gaps = study::summarize(quantized, "gap_bpb", pairing);
    const auto gaps_pct = study::summarize(quantized, "gap_ppl_pct", pairing);
    const auto costs = study::summarize(finetuned, "finetune_cost_bpb", pairing);
    const auto traces = study::summarize(finetuned, "trace_change", pairing);
    const auto traces_before = study::summarize(finetuned, "trace_before", pairing);
    std::vector<study::Statement> statements = study::statements(cells, comparisons(), "gap_bpb");
    for (auto& s : study::statements(cells, comparisons(), "vs_base_bpb")) statements.push_back(std::move(s));

    // ---- results/*.json
    std::string summary = "{\n  \"models\": " + std::to_string(models.size()) + ", \"seeds\": " + std::to_string(seeds.size()) +
                          ",\n  \"quantized\": [";
    for (std::size_t i = 0; i < gaps.size(); ++i) {
        const auto& g = gaps[i];
        const auto& p = gaps_pct[i];
        summary += std::string(i ? "," : "") + "\n    {\"arm\": " + npft::io::json::quote(g.group.at("arm")) +
                   ", \"bits\": " + g.group.at("bits") + ", \"grid\": " + npft::io::json::quote(g.group.at("grid")) +
                   ", \"n\": " + std::to_string(g.mean.count) + ", \"gap_bpb\": " + number(g.mean.mean) +
                   ", \"gap_bpb_ci\": [" + number(g.mean.ci_low) + ", " + number(g.mean.ci_high) + "], \"gap_ppl_pct\": " +
                   number(p.mean.mean) + ", \"gap_ppl_pct_ci\": [" + number(p.mean.ci_low) + ", " + number(p.mean.ci_high) + "]}";
    }
    summary += "\n  ],\n  \"finetuning\": [";
    for (std::size_t i = 0; i < costs.size(); ++i) {
        const auto& c = costs[i];
        summary += std::string(i ? "," : "") + "\n    {\"arm\": " + npft::io::json::quote(c.group.at("arm")) + ", \"bits\": " +
                   c.group.at("bits") + ", \"n\": " + std::to_string(c.mean.count) + ", \"finetune_cost_bpb\": " + number(c.mean.mean) +
                   ", \"finetune_cost_bpb_ci\": [" + number(c.mean.ci_low) + ", " + number(c.mean.ci_high) + "]" +
                   (i < traces.size() ? ", \"trace_change\": " + number(traces[i].mean.mean) + ", \"trace_change_ci\": [" +
                                            number(traces[i].mean.ci_low) + ", " + number(traces[i].mean.ci_high) + "]"
                                      : std::string()) +
                   "}";
    }
    summary += "\n  ]\n}\n";
    write_text(out / "results" / "summary.json", summary);
    std::string st = "[";
    for (std::size_t i = 0; i < statements.size(); ++i) {
        const auto& s = statements[i];
        const auto& d = s.difference;
        st += std::string(i ? "," : "") + "\n  {\"treatment\": " + npft::io::json::quote(s.treatment) + ", \"control\": " +
              npft::io::json::quote(s.control) + ", \"metric\": " + npft::io::json::quote(s.metric) + ", \"bits\": " +
              s.group.at("bits") + ", \"grid\": " + npft::io::json::quote(s.group.at("grid")) + ", \"pairs\": " +
              std::to_string(d.pairs) + ", \"mean\": " + number(d.mean) + ", \"ci\": [" + number(d.ci_low) + ", " +
              number(d.ci_high) + "], \"wins\": " + std::to_string(d.wins) + ", \"sign_test_p\": " + number(d.sign_test_p) +
              ", \"unpaired\": " + std::to_string(s.unpaired) + ", \"verdict\": " + npft::io::json::quote(s.verdict) + "}";
    }
    write_text(out / "results" / "statements.json", st + "\n]\n");

    // ---- study.md
    const fs::path md_path = docs / "study.md";
    const std::string conclusion = kept_conclusion(md_path);
    std::string md =
        "# The NPFT study\n\n"
        "<!-- Generated by examples/07_npft_study (scripts/study.sh) from its cells: do not edit by hand, except the "
        "Conclusion section, which the generator keeps. -->\n\n"
        "Models: " + std::to_string(models.size()) + "; seeds: " + std::to_string(seeds.size()) +
        ". Every figure is a mean over all (model, seed) pairs with its 95% Student-t interval [low, high] and n. "
        "The **gap** is the quantized model's test bits/byte minus that of the fp32 model it was quantized from (the "
        "fine-tuned one for fine-tuned arms); gap % is the same in perplexity. How the cells are made: "
        "[examples/07_npft_study/README.md](../examples/07_npft_study/README.md).\n\n"
        "## Quantization gap\n\n| bits | grid | arm | gap (bits/byte) | gap (% perplexity) |\n|---|---|---|---|---|\n";
    for (std::size_t i = 0; i < gaps.size(); ++i)
        md += "| " + gaps[i].group.at("bits") + " | " + gaps[i].group.at("grid") + " | " + gaps[i].group.at("arm") + " | " +
              interval(gaps[i].mean) + " | " + interval(gaps_pct[i].mean, 2) + " |\n";
    md += "\n## Fine-tuning: fp32 cost and the outliers' Hessian trace\n\n"
          "fp32 cost: the fine-tuned fp32 model's test bits/byte minus the pre-trained model's. Trace: the Hutchinson trace "
          "of the Hessian restricted to the pre-trained model's reference outliers (top 0.05% by Fisher), on held-out "
          "validation windows; change = after minus before, paired probe by probe within each cell, then averaged over "
          "cells.\n\n| arm | noise bits | fp32 cost (bits/byte) | trace before | trace change |\n|---|---|---|---|---|\n";
    for (std::size_t i = 0; i < costs.size(); ++i)
        md += "| " + costs[i].group.at("arm") + " | " + costs[i].group.at("bits") + " | " + interval(costs[i].mean) + " | " +
              (i < traces_before.size() ? interval(traces_before[i].mean, 3) : "") + " | " +
              (i < traces.size() ? interval(traces[i].mean, 3) : "") + " |\n";
    md += "\n## Plots\n\n";
    plot_differences(statements, out / "results", docs, md);
    plot(gaps, out / "results", docs, md);
    md += "## Computed statements\n\n"
          "<!-- Generated: one line per comparison and (bits, grid), on the gap (gap_bpb) and on the end-to-end loss "
          "against the pre-trained fp32 model (vs_base_bpb). \"beats\" / \"is worse than\" only when the 95% interval of "
          "the paired difference excludes 0. -->\n\n";
    for (const auto& s : statements) md += "- " + s.text + "\n";
    if (statements.empty()) md += "_No comparison has two pairs yet._\n";
    // Pooling models is only fair when they agree: the main comparisons again, one model at a time (pairs = seeds).
    const std::vector<std::pair<std::string, std::string>> main_comparisons = {
        {"npft-reference", "lora"}, {"npft-reference", "rtn"}, {"npft-reference", "gptq"}, {"npft-f5pct", "lora"},
        {"npft-f5pct", "gptq"}, {"npft-f5pct", "npft-random-f5pct"}};
    const auto per_model = study::statements(cells, main_comparisons, "gap_bpb", {"seed"});
    md += "\n## The main comparisons, model by model\n\n"
          "<!-- Generated: the same statements on the gap with the model kept apart (pairs are seeds), to check that the "
          "pooled figures above do not hide models that disagree. -->\n\n";
    for (const auto& s : per_model) md += "- " + s.text + "\n";
    if (per_model.empty()) md += "_No model has two seeds of these arms yet._\n";
    md += "\n" + conclusion;
    write_text(md_path, md);
    std::printf("wrote %s, %s and %s (%zu cells, %zu statements)\n", md_path.string().c_str(),
                (out / "results" / "summary.json").string().c_str(), (out / "results" / "statements.json").string().c_str(),
                stored.size(), statements.size());
}

}  // namespace npft_study::report
