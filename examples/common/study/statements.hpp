#pragma once
// The study's statements, computed from its cells and nothing else: for every (bits, grid) group, the paired difference
// of a treatment arm to a control arm over all (model, seed) pairs, worded by what its 95% interval says. The wording is
// mechanical on purpose: "beats" only when the interval excludes 0, "worse" only when it excludes 0 the other way.
//
//   const auto cells = study::expand_seedless(store.all(), "any");   // arms computed once per model join every seed
//   for (const auto& s : study::statements(cells, {{"npft-reference", "lora"}}, "gap_bpb")) puts(s.text.c_str());
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "compare.hpp"

namespace study {

/// Cells whose seed is `seedless` (an arm computed once per model, e.g. RTN, which no seed changes) copied once for
/// every seed that the same model has in any other cell, so that they pair with each seeded arm. Other cells pass
/// through unchanged; a seedless cell of a model without seeded cells is dropped (it has nothing to pair with).
inline Cells expand_seedless(const Cells& cells, const std::string& seedless) {
    std::map<std::string, std::set<std::string>> seeds;  // model -> seeds seen
    for (const auto& [key, result] : cells)
        if (key.at("seed") != seedless) seeds[key.at("model")].insert(key.at("seed"));
    Cells out;
    for (const auto& [key, result] : cells) {
        if (key.at("seed") != seedless) {
            out.emplace_back(key, result);
            continue;
        }
        for (const std::string& seed : seeds[key.at("model")]) {
            CellKey copy = key;
            for (auto& field : copy.fields)
                if (field.first == "seed") field.second = seed;
            out.emplace_back(std::move(copy), result);
        }
    }
    return out;
}

struct Statement {
    std::string treatment, control, metric;
    CellKey group;  ///< the cells' key without arm, model and seed, e.g. bits=3 grid=g0
    npft::stats::PairedDifference difference;
    double control_mean = 0.0;
    int unpaired = 0;  ///< treatment cells of this group left out because their control cell is missing
    std::string verdict;  ///< "beats", "is worse than" or "is not resolved from"
    std::string text;
};

/// The verdict of a difference where lower is better: "beats" when the whole interval lies below 0, "is worse than"
/// when it lies above, else "is not resolved from".
inline std::string verdict(const npft::stats::PairedDifference& d) {
    if (d.ci_high < 0.0) return "beats";
    if (d.ci_low > 0.0) return "is worse than";
    return "is not resolved from";
}

inline std::string format_number(double v) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%+.4f", v);
    return buffer;
}

/// One statement per (comparison, group) that has at least two pairs. `metric` is a field where lower is better (a
/// gap). Treatment cells without their control cell are left out and counted in Statement::unpaired (a study stopped
/// half-way has them); the statement says so. `pairing`: the fields that make a pair (the default pools all models;
/// {"seed"} keeps the model in the group, one statement per model).
inline std::vector<Statement> statements(const Cells& cells, const std::vector<std::pair<std::string, std::string>>& comparisons,
                                         const std::string& metric,
                                         const std::set<std::string>& pairing = {"model", "seed"}) {
    std::set<std::string> group_drop = pairing;
    group_drop.insert("arm");
    std::set<std::vector<std::pair<std::string, std::string>>> keys;
    for (const auto& [key, result] : cells) keys.insert(key.fields);
    std::vector<Statement> out;
    for (const auto& [treatment, control] : comparisons) {
        Cells paired;
        std::map<std::vector<std::pair<std::string, std::string>>, int> unpaired;  // group -> count
        for (const auto& [key, result] : cells) {
            const std::string& arm = key.at("arm");
            if (arm != treatment && arm != control) continue;
            if (!result.contains(metric)) continue;
            if (arm == treatment) {
                CellKey control_key = key;
                for (auto& field : control_key.fields)
                    if (field.first == "arm") field.second = control;
                if (!keys.contains(control_key.fields)) {
                    ++unpaired[without(key, group_drop).fields];
                    continue;
                }
            }
            paired.emplace_back(key, result);
        }
        for (ComparisonRow& row : compare(paired, {treatment, control, metric, npft::stats::Better::lower}, pairing)) {
            Statement s;
            s.treatment = treatment;
            s.control = control;
            s.metric = metric;
            s.group = row.group;
            s.difference = row.difference;
            s.control_mean = row.control_mean.mean;
            s.unpaired = unpaired[row.group.fields];
            s.verdict = verdict(row.difference);
            const auto& d = row.difference;
            s.text = treatment + " " + s.verdict + " " + control + " at " + row.group.describe() + " on " + metric + ": " +
                     format_number(d.mean) + " (95% CI " + format_number(d.ci_low) + " to " + format_number(d.ci_high) + ", " +
                     (d.ci_low > 0.0 || d.ci_high < 0.0 ? "excludes 0" : "includes 0") + "), " + std::to_string(d.wins) +
                     " wins of " + std::to_string(d.pairs) + " pairs, sign test p = " +
                     [&] {
                         char b[16];
                         std::snprintf(b, sizeof b, "%.3g", d.sign_test_p);
                         return std::string(b);
                     }() +
                     "; " + control + " mean " + format_number(s.control_mean) +
                     (s.unpaired > 0 ? " (" + std::to_string(s.unpaired) + " cells without their control left out)" : "");
            out.push_back(std::move(s));
        }
    }
    return out;
}

}  // namespace study
