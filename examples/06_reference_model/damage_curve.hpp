#pragma once
// How much the outlier problem a model has, measured on its weight snapshots (--snapshot-tokens) and its final
// weights: the perplexity cost of 3- and 4-bit per-channel RTN, how much of RTN's 3-bit gap dense-and-sparse (0.45% of
// the weights kept exact in fp16, SqueezeLLM's selection) and GPTQ recover, and the outliers' share of RTN's damage
// (npft::outlier_attribution with the same outliers). On the whole validation split: the test split stays unseen
// until the study.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <npft/hessian/fisher.hpp>
#include <npft/outliers/top_fraction.hpp>
#include <npft/outliers/union.hpp>
#include <npft/quant/dense_sparse.hpp>
#include <npft/quant/gptq.hpp>
#include <npft/quant/gptq_hessian.hpp>
#include <npft/quant/quantizer.hpp>
#include <npft/quant/uniform.hpp>
#include <npft/train/outlier_attribution.hpp>

#include "tiny_llama/data.hpp"
#include "tiny_llama/forward.hpp"
#include "tiny_llama/model.hpp"
#include "tiny_llama/quantized_model.hpp"
#include "tiny_llama/tokenizer.hpp"

namespace reference {

struct DamagePoint {
    npft::Index tokens = 0;  // training tokens seen by these weights
    double fp32_ppl = 0.0, fp32_bits_per_byte = 0.0;
    double rtn3_ppl = 0.0, rtn4_ppl = 0.0, dense_sparse3_ppl = 0.0, gptq3_ppl = 0.0;
    double outlier_share3 = 0.0;  // outlier_attribution's share of 3-bit RTN's damage (calibration loss)

    double gap_percent(double ppl) const { return 100.0 * (ppl / fp32_ppl - 1.0); }
    /// The share of 3-bit RTN's perplexity gap that a method closes (1: all of it).
    double recovered3(double ppl) const { return (rtn3_ppl - ppl) / (rtn3_ppl - fp32_ppl); }
};

/// SqueezeLLM's outliers at 0.45% of each matrix: the 0.05% most sensitive (Fisher) and the 0.40% largest weights.
using SqueezeOutliers = npft::outliers::Union<npft::outliers::TopFisher, npft::outliers::TopMagnitude>;
inline const SqueezeOutliers squeeze_outliers{npft::outliers::TopFisher{0.0005}, npft::outliers::TopMagnitude{0.004}};

inline npft::MatrixView<const float> const_view(const npft::Matrix& m) {
    return npft::MatrixView<const float>(npft::as_matrix_view(m));
}

/// Calls f(name, weight) for every linear weight of `model`, in linear_names() order.
template <class F>
void for_each_linear(const tiny_llama::Model& model, F&& f) {
    for (npft::Index l = 0; l < model.config().layers; ++l)
        for (const auto kind : tiny_llama::linear_kinds)
            f(tiny_llama::linear_name(l, kind), model.weights().layers[static_cast<std::size_t>(l)].linear(kind));
}

/// Measures one model. `calibration`: windows of the training split (Fisher, GPTQ Hessians, attribution);
/// `validation`: the whole validation split.
inline DamagePoint measure_damage(tiny_llama::Model& model, const std::vector<tiny_llama::Batch>& calibration,
                                  const std::vector<tiny_llama::Batch>& validation, const tiny_llama::Tokenizer& tokenizer) {
    using tiny_llama::PackedLinear;
    DamagePoint p;
    const auto fp32 = tiny_llama::evaluate(model, validation, tokenizer);
    p.fp32_ppl = fp32.perplexity();
    p.fp32_bits_per_byte = fp32.bits_per_byte();

    const auto fisher = npft::hessian::DiagonalFisher::compute(model, calibration, model.linear_names());
    std::map<std::string, npft::quant::GptqHessian> hessians;
    for (const std::string& name : model.linear_names())
        hessians.emplace(name, npft::quant::GptqHessian(name.ends_with("down") ? model.config().hidden : model.config().dim));
    const tiny_llama::DenseLinears dense{&model.weights()};
    const auto recording = [&](npft::Index layer, tiny_llama::LinearKind kind, const npft::Matrix& x, npft::Matrix& y) {
        hessians.at(tiny_llama::linear_name(layer, kind)).add(x);
        dense(layer, kind, x, y);
    };
    for (const auto& b : calibration)
        tiny_llama::forward_loss_sum(model.config(), model.weights(), model.rope(), recording, b, nullptr);

    const auto quantized_ppl = [&](auto&& quantize_one) {
        tiny_llama::QuantizedModel q(model);
        for_each_linear(model, [&](const std::string& name, const npft::Matrix& w) { q.set_linear(name, quantize_one(name, w)); });
        q.set_multiply_options({.threads = model.threads(), .activations = npft::kernels::cpu::Activations::fp32});
        return tiny_llama::evaluate(q, validation, tokenizer).perplexity();
    };
    for (const int bits : {3, 4}) {
        const npft::quant::Quantizer rtn(npft::quant::UniformGrid(bits, 0));
        const double ppl = quantized_ppl([&](const std::string&, const npft::Matrix& w) { return PackedLinear(rtn.quantize(const_view(w))); });
        (bits == 3 ? p.rtn3_ppl : p.rtn4_ppl) = ppl;
    }
    const npft::quant::UniformGrid grid3(3, 0);
    p.dense_sparse3_ppl = quantized_ppl([&](const std::string& name, const npft::Matrix& w) {
        return PackedLinear(npft::quant::split_dense_sparse(const_view(w), squeeze_outliers, grid3, const_view(fisher.at(name))));
    });
    const npft::quant::Gptq gptq(grid3);
    p.gptq3_ppl = quantized_ppl([&](const std::string& name, const npft::Matrix& w) { return PackedLinear(gptq.quantize(w, hessians.at(name))); });

    std::map<std::string, npft::outliers::OutlierMask> masks;
    for_each_linear(model, [&](const std::string& name, const npft::Matrix& w) {
        masks.emplace(name, squeeze_outliers.select({const_view(w), const_view(fisher.at(name)), {}}));
    });
    p.outlier_share3 = npft::outlier_attribution(model, calibration, grid3, masks).outlier_share();
    return p;
}

}  // namespace reference
