#pragma once
// The block-wise reconstruction study's grid and its reading (examples/08_ptq_study): the arms (a trainable-parameter
// policy x an objective, named "scales+down1"), what each objective costs in block passes, the paired comparisons the
// study states, and the recommendation ("what a user should pick") computed from the cells by a fixed rule:
//
//   1. per bit width, the candidate arm with the lowest mean metric over (model, seed) is the best;
//   2. a best arm dearer than its policy's single-block arm must beat it (paired 95% interval below 0), else the
//      single-block arm is picked: extra compute has to buy a resolved gain;
//   3. the pick is then read against each reference (RTN, GPTQ); a reference that beats it (interval above 0) replaces it.
#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <npft/core/error.hpp>
#include <npft/stats/mean_interval.hpp>
#include <npft/stats/paired_difference.hpp>

#include "statements.hpp"

namespace study::ptq {

using npft::Index;

inline const std::vector<std::string> policies = {"scales", "rounding", "lora"};
/// single: one block at its output; multiN: N blocks jointly; downD: one block measured at the output of block i+D.
inline const std::vector<std::string> objectives = {"single", "multi2", "multi4", "down1", "down2"};

inline std::string arm(const std::string& policy, const std::string& objective) { return policy + "+" + objective; }

struct ArmParts {
    std::string policy, objective;
};

/// The policy and objective of a reconstruction arm ("rounding+multi4"); nullopt for any other arm ("rtn", "gptq").
inline std::optional<ArmParts> parse_arm(const std::string& name) {
    const auto plus = name.find('+');
    if (plus == std::string::npos) return std::nullopt;
    ArmParts p{name.substr(0, plus), name.substr(plus + 1)};
    if (std::find(policies.begin(), policies.end(), p.policy) == policies.end() ||
        std::find(objectives.begin(), objectives.end(), p.objective) == objectives.end())
        return std::nullopt;
    return p;
}

/// Window size and downstream depth of an objective name.
inline std::pair<Index, Index> window_and_depth(const std::string& objective) {
    if (objective == "single") return {1, 0};
    if (objective == "multi2") return {2, 0};
    if (objective == "multi4") return {4, 0};
    if (objective == "down1") return {1, 1};
    npft::require(objective == "down2", "unknown reconstruction objective '", objective,
                  "' (expected single, multi2, multi4, down1 or down2)");
    return {1, 2};
}

/// Blocks run forward and backward per optimiser step, summed over a model's windows: the compute of one
/// reconstruction in units of one block-step. As ptq::reconstruct windows the model: windows of `window` blocks from
/// block 0 (the last one shorter), each measured `depth` blocks later unless that block does not exist.
inline Index block_passes(const std::string& objective, Index blocks) {
    npft::require(blocks >= 1, "a model needs at least one block, got ", blocks);
    const auto [window, depth] = window_and_depth(objective);
    Index total = 0;
    for (Index first = 0; first < blocks; first += window) {
        const Index last = std::min(first + window, blocks) - 1;
        total += last - first + 1 + (last + depth < blocks ? depth : 0);
    }
    return total;
}

/// The cheaper arm a dearer objective must beat: its policy's single-block arm ("" for single-block and non-grid arms).
inline std::string cheaper_alternative(const std::string& name) {
    const auto p = parse_arm(name);
    if (!p || p->objective == "single") return "";
    return arm(p->policy, "single");
}

/// The comparisons the study states: each objective against single-block, per policy; each policy's single-block
/// against RTN (what reconstruction buys at all); rounding and LoRA against scales (single-block).
inline std::vector<std::pair<std::string, std::string>> comparisons() {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& p : policies)
        for (const auto& o : objectives)
            if (o != "single") out.emplace_back(arm(p, o), arm(p, "single"));
    for (const auto& p : policies) out.emplace_back(arm(p, "single"), "rtn");
    out.emplace_back(arm("rounding", "single"), arm("scales", "single"));
    out.emplace_back(arm("lora", "single"), arm("scales", "single"));
    return out;
}

/// The paired difference treatment - control of `metric` at bit width `bits`, over the (model, seed) pairs where both
/// cells exist; nullopt below 2 pairs.
inline std::optional<npft::stats::PairedDifference> paired_at(const Cells& cells, const std::string& treatment,
                                                              const std::string& control, const std::string& bits,
                                                              const std::string& metric) {
    std::map<std::pair<std::string, std::string>, double> t, c;
    for (const auto& [key, result] : cells) {
        if (key.at("bits") != bits || !result.contains(metric)) continue;
        const auto pair = std::make_pair(key.at("model"), key.at("seed"));
        if (key.at("arm") == treatment) t[pair] = result.at(metric);
        if (key.at("arm") == control) c[pair] = result.at(metric);
    }
    std::vector<double> tv, cv;
    for (const auto& [pair, value] : t)
        if (c.contains(pair)) {
            tv.push_back(value);
            cv.push_back(c.at(pair));
        }
    if (tv.size() < 2) return std::nullopt;
    return npft::stats::paired_difference(tv, cv, npft::stats::Better::lower);
}

struct Pick {
    std::string bits;
    std::string best;         ///< the lowest mean among the candidates
    double best_mean = 0.0;
    std::string recommended;  ///< after rules 2 and 3
    std::string text;         ///< the sentence, every number in it from the cells
};

inline std::string difference_text(const npft::stats::PairedDifference& d) {
    return format_number(d.mean) + " (95% CI " + format_number(d.ci_low) + " to " + format_number(d.ci_high) + ", " +
           std::to_string(d.wins) + " wins of " + std::to_string(d.pairs) + ")";
}

/// One pick per bit width that has a candidate with at least two cells. `candidates`: the reconstruction arms;
/// `references`: arms that may replace the pick (rule 3); `blocks`: the model's depth (for the cost ratio).
inline std::vector<Pick> picks(const Cells& cells, const std::vector<std::string>& candidates,
                               const std::vector<std::string>& references, const std::string& metric, Index blocks) {
    std::map<std::string, std::map<std::string, std::vector<double>>> values;  // bits -> arm -> metric
    for (const auto& [key, result] : cells)
        if (result.contains(metric)) values[key.at("bits")][key.at("arm")].push_back(result.at(metric));
    std::vector<Pick> out;
    for (const auto& [bits, by_arm] : values) {
        Pick p{bits, "", 0.0, "", ""};
        for (const auto& a : candidates) {
            const auto it = by_arm.find(a);
            if (it == by_arm.end() || it->second.size() < 2) continue;
            const double mean = npft::stats::mean_interval(it->second).mean;
            if (p.best.empty() || mean < p.best_mean) {
                p.best = a;
                p.best_mean = mean;
            }
        }
        if (p.best.empty()) continue;
        p.recommended = p.best;
        p.text = "At " + bits + " bits the lowest mean " + metric + " is " + p.best + "'s, " + format_number(p.best_mean) + ". ";
        const std::string alternative = cheaper_alternative(p.best);
        if (!alternative.empty()) {
            const auto parts = parse_arm(p.best);
            char ratio[32];
            std::snprintf(ratio, sizeof ratio, "%.2g", static_cast<double>(block_passes(parts->objective, blocks)) /
                                                           static_cast<double>(block_passes("single", blocks)));
            const auto d = paired_at(cells, p.best, alternative, bits, metric);
            if (d && d->ci_high < 0.0) {
                p.text += "It beats " + alternative + " by " + difference_text(*d) + " at " + ratio + "x its compute. ";
            } else {
                p.recommended = alternative;
                p.text += "Its difference to " + alternative + " is " + (d ? difference_text(*d) : std::string("unmeasured")) +
                          ", not resolved below 0, at " + ratio + "x the compute: " + alternative + " is the pick. ";
            }
        }
        for (const auto& reference : references) {
            const auto d = paired_at(cells, p.recommended, reference, bits, metric);
            if (!d) continue;
            if (d->ci_low > 0.0) {
                p.text += p.recommended + " is worse than " + reference + " by " + difference_text(*d) + ": " + reference +
                          " is the pick. ";
                p.recommended = reference;
                break;
            }
            p.text += p.recommended + (d->ci_high < 0.0 ? " beats " : " is not resolved from ") + reference + ": " +
                      difference_text(*d) + ". ";
        }
        p.text += "Pick: " + p.recommended + ".";
        out.push_back(std::move(p));
    }
    return out;
}

/// The one-line summary over bit widths: "Pick X at every width (2, 3, 4 bits)." or "Pick X at 2 bits, Y at 3 bits."
inline std::string pick_summary(const std::vector<Pick>& all) {
    if (all.empty()) return "No bit width has two seeds of a reconstruction arm yet: nothing to pick from.";
    std::set<std::string> distinct;
    for (const auto& p : all) distinct.insert(p.recommended);
    std::string widths;
    for (const auto& p : all) widths += (widths.empty() ? "" : ", ") + p.bits;
    if (distinct.size() == 1) return "What a user should pick: " + all.front().recommended + " at every width measured (" + widths + " bits).";
    std::string out = "What a user should pick: ";
    for (std::size_t i = 0; i < all.size(); ++i) out += (i ? ", " : "") + all[i].recommended + " at " + all[i].bits + " bits";
    return out + ".";
}

}  // namespace study::ptq
