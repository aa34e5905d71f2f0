#pragma once
// What block-wise reconstruction needs from a model: its transformer blocks one at a time, as functions of an activation
// matrix (rows = tokens of a batch of sequences, cols = model width), with a backward pass, and each block's pre-activations.
#include <concepts>
#include <vector>

#include "../core/eigen.hpp"
#include "../train/differentiable_model.hpp"

namespace npft::ptq {

/// A model seen block by block. All functions use the block's current weights (npft writes them through the views of
/// block_parameters) and must not depend on hidden state between calls.
///   num_blocks()                        number of blocks
///   block_parameters(i)                 the quantizable weight tensors of block i (value + gradient views)
///   block_forward(i, x)                 the block's output for input activations x
///   block_backward(i, x, dy)            recomputes the forward, overwrites the gradients of block_parameters(i),
///                                       and returns dL/dx for the output gradient dy
///   preactivation_forward(i, x)         the pre-activations of block i for input x: the outputs of its first linear
///                                       layers, before any non-linearity (for a transformer block: norm, then q, k, v)
///   preactivation_backward(i, x, dp)    dL/dx for a gradient dp on those pre-activations (no parameter gradients needed)
template <class M>
concept BlockwiseModel = requires(M& model, Index i, const Matrix& x, const Matrix& dy) {
    { model.num_blocks() } -> std::convertible_to<Index>;
    { model.block_parameters(i) } -> std::convertible_to<std::vector<train::Parameter>>;
    { model.block_forward(i, x) } -> std::convertible_to<Matrix>;
    { model.block_backward(i, x, dy) } -> std::convertible_to<Matrix>;
    { model.preactivation_forward(i, x) } -> std::convertible_to<Matrix>;
    { model.preactivation_backward(i, x, dy) } -> std::convertible_to<Matrix>;
};

}  // namespace npft::ptq
