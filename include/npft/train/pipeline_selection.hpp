#pragma once
// The Fisher pass of the pipeline's selection: the diagonal empirical Fisher of the perturbed tensors over the
// calibration data, as the mean of squared per-sequence gradients whenever the model can split a batch into its
// sequences (SequenceSplittingModel), however the caller batched the data.
#include <map>
#include <ranges>
#include <string>
#include <vector>

#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../hessian/fisher.hpp"
#include "differentiable_model.hpp"

namespace npft::train {

/// Diagonal Fisher of the parameters named in `names` over `calibration` (per sequence when the model splits batches).
/// `threads` spreads the squaring and summing over the worker pool (same bits on any count).
template <class Model, std::ranges::random_access_range Calibration>
std::map<std::string, Matrix> calibration_fisher(Model& model, const Calibration& calibration, std::vector<std::string> names,
                                                 int threads) {
    require(std::ranges::size(calibration) > 0, "the selector needs the diagonal Fisher, but no calibration batches were given");
    using Batch = std::ranges::range_value_t<Calibration>;
    hessian::DiagonalFisher fisher(std::move(names), threads);
    for (const auto& batch : calibration) {
        if constexpr (SequenceSplittingModel<Model, Batch>) {
            const std::vector<Batch> sequences = model.split_sequences(batch);
            require(!sequences.empty(), "the model's split_sequences returned no sequence for a calibration batch");
            for (const auto& sequence : sequences) fisher.accumulate(model, sequence);
        } else {
            fisher.accumulate(model, batch);
        }
    }
    return fisher.result();
}

}  // namespace npft::train
