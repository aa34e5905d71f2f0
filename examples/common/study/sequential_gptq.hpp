#pragma once
// GPTQ in its own order: block by block, each block's Hessians taken from the inputs it sees when every earlier block
// is already quantized, so that a block's rounding compensates the error the earlier ones left (Frantar et al. 2022,
// the reference code's layer loop). Within a block, its 7 linears are measured in one pass of the block on that input
// (the reference code without --true-sequential). Cost: two block passes per block over the calibration data.
//
//   auto packed = study::sequential_gptq(model, calibration, [&](const std::string& name, const npft::Matrix& w,
//                                                                const npft::quant::GptqHessian& h) { return gptq.quantize(w, h); });
#include <map>
#include <string>
#include <vector>

#include <npft/core/error.hpp>
#include <npft/quant/gptq_hessian.hpp>
#include <npft/quant/quantized_matrix.hpp>

#include "tiny_llama/block.hpp"
#include "tiny_llama/forward.hpp"
#include "tiny_llama/model.hpp"

namespace study {

/// Quantizes every linear of `model` with quantize(name, fp32 weights, Hessian) -> QuantizedMatrix, block after block,
/// each block's Hessians accumulated from the calibration sequences propagated through the already-quantized (and
/// dequantized) earlier blocks. Every calibration batch must hold sequences of one length. Returns the quantized
/// linears by name.
template <class Quantize>
std::map<std::string, npft::quant::QuantizedMatrix> sequential_gptq(const tiny_llama::Model& model,
                                                                    const std::vector<tiny_llama::Batch>& calibration,
                                                                    Quantize&& quantize) {
    npft::require(!calibration.empty(), "sequential GPTQ needs calibration batches, got none");
    const tiny_llama::Config& config = model.config();
    const tiny_llama::Weights& w = model.weights();
    // Block 0's inputs: each batch's embeddings (the inputs of its predictions), as forward_loss_sum builds them.
    std::vector<npft::Matrix> inputs;
    std::vector<npft::Index> lengths;
    for (const tiny_llama::Batch& b : calibration) {
        tiny_llama::require_valid_batch(config, b);
        const npft::Index length = b.positions();
        npft::Matrix x(b.count() * length, config.dim);
        for (npft::Index s = 0; s < b.count(); ++s)
            for (npft::Index t = 0; t < length; ++t)
                x.row(s * length + t) = w.embedding.row(b.sequences[static_cast<std::size_t>(s)][static_cast<std::size_t>(t)]);
        inputs.push_back(std::move(x));
        lengths.push_back(length);
    }
    std::map<std::string, npft::quant::QuantizedMatrix> out;
    tiny_llama::BlockActivations scratch;
    for (npft::Index l = 0; l < config.layers; ++l) {
        const tiny_llama::LayerWeights& fp32 = w.layers[static_cast<std::size_t>(l)];
        std::map<tiny_llama::LinearKind, npft::quant::GptqHessian> hessians;
        for (const auto kind : tiny_llama::linear_kinds)
            hessians.emplace(kind, npft::quant::GptqHessian(kind == tiny_llama::LinearKind::down ? config.hidden : config.dim));
        const auto recording = [&](npft::Index, tiny_llama::LinearKind kind, const npft::Matrix& x, npft::Matrix& y) {
            hessians.at(kind).add(x);
            tiny_llama::parallel::x_wt(x, fp32.linear(kind), y, model.threads());
        };
        for (std::size_t b = 0; b < inputs.size(); ++b) {
            npft::Matrix x = inputs[b];  // the Hessian pass must not move the stream: the quantized block does that below
            tiny_llama::block_forward(config, fp32, model.rope(), recording, l, lengths[b], x, scratch, false, model.threads());
        }
        tiny_llama::LayerWeights dequantized = fp32;
        for (const auto kind : tiny_llama::linear_kinds) {
            const std::string name = tiny_llama::linear_name(l, kind);
            npft::quant::QuantizedMatrix q = quantize(name, fp32.linear(kind), hessians.at(kind));
            dequantized.linear(kind) = q.dequantize();
            out.insert_or_assign(name, std::move(q));
        }
        const auto quantized = [&](npft::Index, tiny_llama::LinearKind kind, const npft::Matrix& x, npft::Matrix& y) {
            tiny_llama::parallel::x_wt(x, dequantized.linear(kind), y, model.threads());
        };
        for (std::size_t b = 0; b < inputs.size(); ++b)
            tiny_llama::block_forward(config, dequantized, model.rope(), quantized, l, lengths[b], inputs[b], scratch, false,
                                      model.threads());
    }
    return out;
}

}  // namespace study
