#pragma once
// The outliers' Hessian trace as the pipeline estimates it: a Hessian-vector product of the mean loss over the
// caller's trace batches (finite differences of the model's own gradient), restricted to the outliers by a 0/1 mask,
// and the paired before/after difference of two estimates taken with the same probes.
// Cost of one estimate: 2 model calls per probe and per trace batch.
#include <algorithm>
#include <cmath>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../stats/paired_difference.hpp"
#include "../hessian/hutchinson.hpp"
#include "../hessian/hvp.hpp"
#include "../outliers/outlier_mask.hpp"

namespace npft::train {

/// H v of the mean loss over `batches` (each batch's finite-difference product, averaged). With one batch it is that
/// batch's product, bit for bit.
template <class Model, std::ranges::random_access_range Batches>
class BatchMeanHvp {
public:
    using Batch = std::ranges::range_value_t<Batches>;
    BatchMeanHvp(Model& model, const Batches& batches, std::vector<std::string> names)
        : model_(&model), batches_(&batches), names_(std::move(names)) {
        require(std::ranges::size(batches) > 0, "the outliers' trace needs at least one trace batch, got none");
        dimension_ = hessian::FiniteDifferenceHvp<Model, Batch>(model, std::ranges::begin(batches)[0], names_).dimension();
    }
    Index dimension() const { return dimension_; }

    void apply(std::span<const float> v, std::span<float> out) {
        const auto count = static_cast<Index>(std::ranges::size(*batches_));
        if (count == 1) return one(0).apply(v, out);
        std::vector<float> part(out.size());
        std::vector<double> sum(out.size(), 0.0);
        for (Index b = 0; b < count; ++b) {
            one(b).apply(v, std::span<float>(part));
            for (std::size_t i = 0; i < part.size(); ++i) sum[i] += part[i];
        }
        for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(sum[i] / static_cast<double>(count));
    }

private:
    Model* model_;
    const Batches* batches_;
    std::vector<std::string> names_;
    Index dimension_ = 0;

    hessian::FiniteDifferenceHvp<Model, Batch> one(Index b) const {
        return hessian::FiniteDifferenceHvp<Model, Batch>(*model_, std::ranges::begin(*batches_)[b], names_);
    }
};

/// The names of the perturbed tensors among `tensors` (model order) and one 0/1 mask over all of them (each row-major,
/// concatenated), from the outliers given by name. Fails naming a perturbed tensor without a mask or with a mask of
/// another shape.
template <class Tensors>
std::pair<std::vector<std::string>, std::vector<float>> outlier_indicator(const Tensors& tensors,
                                                                          const std::map<std::string, outliers::OutlierMask>& outliers) {
    std::vector<std::string> names;
    std::vector<float> mask;
    for (const auto& t : tensors) {
        if (!t.perturbed) continue;
        const auto it = outliers.find(t.name);
        require(it != outliers.end(), "outlier_trace: no outlier mask for the perturbed tensor '", t.name, "'");
        require(it->second.rows == t.clean.rows() && it->second.cols == t.clean.cols(), "outlier_trace: the mask of '", t.name,
                "' is ", it->second.rows, " x ", it->second.cols, ", the tensor is ", t.clean.rows(), " x ", t.clean.cols());
        names.push_back(t.name);
        const std::vector<float> indicator = it->second.indicator();
        mask.insert(mask.end(), indicator.begin(), indicator.end());
    }
    return {std::move(names), std::move(mask)};
}

/// after - before, probe by probe, over the probes both estimates ran (they must come from the same estimator
/// settings and outlier mask, so that probe k is the same vector in both): npft::stats::paired_difference of the
/// per-probe values (mean, standard error, Student-t interval, probes where the trace fell). Pairing removes the probe
/// noise the two estimates share, so a small change is resolved with few probes.
using PairedDifference = stats::PairedDifference;

inline PairedDifference paired_difference(const hessian::TraceEstimate& before, const hessian::TraceEstimate& after) {
    const std::size_t n = std::min(before.samples.size(), after.samples.size());
    require(n >= 2, "paired_difference needs at least 2 probes in both estimates (TraceEstimate::samples), got ",
            before.samples.size(), " and ", after.samples.size());
    return stats::paired_difference(std::span<const double>(after.samples.data(), n),
                                    std::span<const double>(before.samples.data(), n), stats::Better::lower);
}

}  // namespace npft::train
