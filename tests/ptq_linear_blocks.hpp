#pragma once
// Linear block models for the block-wise reconstruction tests: every optimum is a least-squares problem.
#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <npft/ptq/block_model.hpp>
#include <npft/quant/quantizer.hpp>
#include <npft/quant/uniform.hpp>

#include "test_matrices.hpp"

namespace npft_test {

/// Linear blocks y = x W_j^T; the pre-activations of block j are p = x V_j^T (a fixed map standing for "norm, then q/k/v").
struct LinearBlocks {
    std::vector<npft::Matrix> weights, grads, preactivation_maps;
    npft::Index widest_batch = 0;  // the most rows any block call has seen: the streamed batch bounds the working set

    LinearBlocks(npft::Index blocks, npft::Index width, npft::Index preactivation_width, std::uint64_t seed) {
        for (npft::Index j = 0; j < blocks; ++j) {
            weights.push_back(gaussian_matrix(width, width, seed, 10 + static_cast<std::uint64_t>(j)) / std::sqrt(static_cast<float>(width)));
            grads.push_back(npft::Matrix::Zero(width, width));
            preactivation_maps.push_back(gaussian_matrix(preactivation_width, width, seed, 20 + static_cast<std::uint64_t>(j)));
        }
    }
    npft::Index num_blocks() const { return static_cast<npft::Index>(weights.size()); }
    std::vector<npft::train::Parameter> block_parameters(npft::Index i) {
        auto& w = weights[static_cast<std::size_t>(i)];
        auto& g = grads[static_cast<std::size_t>(i)];
        return {{"block" + std::to_string(i), npft::as_matrix_view(w), npft::as_matrix_view(g)}};
    }
    void see(const npft::Matrix& x) { widest_batch = std::max(widest_batch, static_cast<npft::Index>(x.rows())); }
    npft::Matrix block_forward(npft::Index i, const npft::Matrix& x) {
        see(x);
        return x * weights[static_cast<std::size_t>(i)].transpose();
    }
    npft::Matrix block_backward(npft::Index i, const npft::Matrix& x, const npft::Matrix& dy) {
        see(x);
        grads[static_cast<std::size_t>(i)] = dy.transpose() * x;
        return dy * weights[static_cast<std::size_t>(i)];
    }
    npft::Matrix preactivation_forward(npft::Index i, const npft::Matrix& x) { return x * preactivation_maps[static_cast<std::size_t>(i)].transpose(); }
    npft::Matrix preactivation_backward(npft::Index i, const npft::Matrix&, const npft::Matrix& dp) { return dp * preactivation_maps[static_cast<std::size_t>(i)]; }
};
static_assert(npft::ptq::BlockwiseModel<LinearBlocks>);

inline std::map<std::string, npft::quant::QuantizedMatrix> rtn(LinearBlocks& model, const npft::quant::UniformGrid& grid) {
    std::map<std::string, npft::quant::QuantizedMatrix> packed;
    const npft::quant::Quantizer<npft::quant::UniformGrid> quantizer(grid);
    for (npft::Index j = 0; j < model.num_blocks(); ++j)
        for (auto& p : model.block_parameters(j)) packed.emplace(p.name, quantizer.quantize(npft::MatrixView<const float>(p.value)));
    return packed;
}

}  // namespace npft_test
