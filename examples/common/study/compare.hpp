#pragma once
// Turns a study's cells into its statements: per group of cells (everything in the key but the arm and the pairing
// fields), the mean of a metric over seeds with its interval, and the paired difference of a treatment arm to its
// matched control (same model, same seed) with its interval, wins and sign test.
//
//   const auto rows = study::compare(store.all(), {"npft_reference", "lora", "gap", Better::lower}, {"model", "seed"});
//   // one row per (bits, grid, ...): pairs over every model and seed that has both arms
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <npft/core/error.hpp>
#include <npft/stats/mean_interval.hpp>
#include <npft/stats/paired_difference.hpp>

#include "cell_store.hpp"

namespace study {

using Cells = std::vector<std::pair<CellKey, CellResult>>;

/// The key of `key` without `drop`'s fields, in the original order.
inline CellKey without(const CellKey& key, const std::set<std::string>& drop) {
    CellKey out;
    for (const auto& field : key.fields)
        if (!drop.contains(field.first)) out.fields.push_back(field);
    return out;
}

struct Comparison {
    std::string treatment;  ///< arm value of the treated cells, e.g. "npft_reference"
    std::string control;    ///< arm value of the matched control, e.g. "lora"
    std::string metric;     ///< result field compared, e.g. "gap"
    npft::stats::Better better = npft::stats::Better::lower;
};

struct ComparisonRow {
    CellKey group;                          ///< the key without arm and pairing fields
    std::vector<CellKey> pairs;             ///< the pairing fields of each pair, in cell order
    std::vector<double> treatment, control;  ///< the metric, pair by pair
    npft::stats::PairedDifference difference;
    npft::stats::MeanInterval control_mean;  ///< the control's own mean: the scale the difference is read against
};

/// Pairs every treatment cell with the control cell whose key differs only in the arm. Groups with fewer than two
/// pairs are left out (no interval exists); a treatment cell without its control is an error, since silently dropping
/// it would let a missing control choose the seeds.
inline std::vector<ComparisonRow> compare(const Cells& cells, const Comparison& c, const std::set<std::string>& pairing) {
    std::map<std::vector<std::pair<std::string, std::string>>, const CellResult*> by_key;
    for (const auto& [key, result] : cells) by_key.emplace(key.fields, &result);
    std::set<std::string> drop = pairing;
    drop.insert("arm");
    std::map<std::vector<std::pair<std::string, std::string>>, ComparisonRow> rows;
    for (const auto& [key, result] : cells) {
        if (key.at("arm") != c.treatment) continue;
        CellKey control_key = key;
        for (auto& field : control_key.fields)
            if (field.first == "arm") field.second = c.control;
        const auto found = by_key.find(control_key.fields);
        npft::require(found != by_key.end(), "the cell ", key.describe(), " has no control cell ", control_key.describe());
        const auto metric = [&](const CellResult& r, const CellKey& k) {
            const auto it = r.find(c.metric);
            npft::require(it != r.end(), "the cell ", k.describe(), " has no '", c.metric, "'");
            return it->second;
        };
        const CellKey group = without(key, drop);
        ComparisonRow& row = rows[group.fields];
        row.group = group;
        CellKey pair;
        for (const auto& field : key.fields)
            if (pairing.contains(field.first)) pair.fields.push_back(field);
        row.pairs.push_back(pair);
        row.treatment.push_back(metric(result, key));
        row.control.push_back(metric(*found->second, control_key));
    }
    std::vector<ComparisonRow> out;
    for (auto& [fields, row] : rows) {
        if (row.treatment.size() < 2) continue;
        row.difference = npft::stats::paired_difference(row.treatment, row.control, c.better);
        row.control_mean = npft::stats::mean_interval(row.control);
        out.push_back(std::move(row));
    }
    return out;
}

struct SummaryRow {
    CellKey group;  ///< the key without the pairing fields (the arm stays)
    std::vector<double> values;
    npft::stats::MeanInterval mean;
};

/// The mean of `metric` over the pairing fields (e.g. model and seed) for every group of cells; groups with one cell
/// report count 1 and no interval (ci_low = ci_high = mean).
inline std::vector<SummaryRow> summarize(const Cells& cells, const std::string& metric, const std::set<std::string>& pairing) {
    std::map<std::vector<std::pair<std::string, std::string>>, SummaryRow> rows;
    for (const auto& [key, result] : cells) {
        const auto it = result.find(metric);
        if (it == result.end()) continue;
        const CellKey group = without(key, pairing);
        SummaryRow& row = rows[group.fields];
        row.group = group;
        row.values.push_back(it->second);
    }
    std::vector<SummaryRow> out;
    for (auto& [fields, row] : rows) {
        if (row.values.size() >= 2) {
            row.mean = npft::stats::mean_interval(row.values);
        } else {
            row.mean.count = 1;
            row.mean.mean = row.mean.ci_low = row.mean.ci_high = row.values.front();
        }
        out.push_back(std::move(row));
    }
    return out;
}

}  // namespace study
