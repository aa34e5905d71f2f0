#pragma once
// Calibration measurements shared by end_to_end and npft_study: each linear layer's GPTQ Hessian from the fp32 model's
// own inputs, SqueezeLLM's outlier selector for dense-and-sparse, and the outliers' Hessian trace.
#include <map>
#include <span>
#include <string>
#include <vector>

#include <npft/hessian/hutchinson.hpp>
#include <npft/hessian/hvp.hpp>
#include <npft/outliers/top_fraction.hpp>
#include <npft/outliers/union.hpp>
#include <npft/quant/gptq_hessian.hpp>

#include "tiny_llama/model.hpp"

namespace demo {

/// Runs the fp32 model over `batches` and accumulates each linear layer's GPTQ Hessian from the inputs it sees.
inline std::map<std::string, npft::quant::GptqHessian> gptq_hessians(const tiny_llama::Model& model,
                                                                     const std::vector<tiny_llama::Batch>& batches) {
    std::map<std::string, npft::quant::GptqHessian> hessians;
    for (const std::string& name : model.linear_names())
        hessians.emplace(name, npft::quant::GptqHessian(name.ends_with("down") ? model.config().hidden : model.config().dim));
    const tiny_llama::DenseLinears dense{&model.weights()};
    const auto recording = [&](npft::Index layer, tiny_llama::LinearKind kind, const npft::Matrix& x, npft::Matrix& y) {
        hessians.at(tiny_llama::linear_name(layer, kind)).add(x);
        dense(layer, kind, x, y);
    };
    for (const tiny_llama::Batch& b : batches)
        tiny_llama::forward_loss_sum(model.config(), model.weights(), model.rope(), recording, b, nullptr);
    return hessians;
}

/// SqueezeLLM's outliers: the most sensitive weights and the largest ones.
using SparseSelector = npft::outliers::Union<npft::outliers::TopFisher, npft::outliers::TopMagnitude>;

/// Outlier masks as npft selects them for NPFT, for the Hessian-trace measurement on a fixed set of weights.
using Masks = std::map<std::string, npft::outliers::OutlierMask>;

/// Hutchinson estimate of the Hessian trace restricted to `masks` (all linear layers together), by finite differences
/// of the model's gradients on `batch`. The probes are keyed by `options.seed`: two estimates with the same options
/// use the same probes, so their per-probe values pair.
inline npft::hessian::TraceEstimate outlier_trace(
    tiny_llama::Model& model, const tiny_llama::Batch& batch, const Masks& masks,
    npft::hessian::HutchinsonOptions options = {.min_probes = 10, .max_probes = 40, .target_relative_standard_error = 0.05, .seed = 1}) {
    std::vector<std::string> names = model.linear_names();
    std::vector<float> indicator;
    for (const auto& name : names) {
        const auto part = masks.at(name).indicator();
        indicator.insert(indicator.end(), part.begin(), part.end());
    }
    npft::hessian::FiniteDifferenceHvp<tiny_llama::Model, tiny_llama::Batch> hvp(model, batch, names);
    const npft::hessian::Hutchinson<> hutchinson(options);
    return hutchinson.estimate(hvp, std::span<const float>(indicator));
}

}  // namespace demo
