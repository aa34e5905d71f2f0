#pragma once
// What block-wise reconstruction trains in each quantized matrix of a window, as a policy. A policy makes, for each
// packed matrix, a TrainableParameters object from the packed matrix (the given quantization) and the matrix's
// full-precision weights; reconstruct() then runs AdamW on its parameter vector.
//
// Policies shipped (one header each):
//   TrainScales    (trainable_metadata.hpp)  scales, zero points where the grid has them, LUT levels; codes fixed
//   TrainRounding  (trainable_rounding.hpp)  AdaRound: the rounding direction of each weight, hardened to 0/1 at the end
//   TrainLora      (trainable_lora.hpp)      a low-rank correction A B of the weights, through the quantizer (STE)
#include <concepts>
#include <cstdint>
#include <span>

#include "../core/eigen.hpp"
#include "../core/tensor_view.hpp"
#include "../quant/quantized_matrix.hpp"

namespace npft::ptq {

/// The trainable parameters of one quantized matrix.
///   parameters()                          the vector AdamW updates (its initial value reproduces the start point)
///   write_weights(out)                    the weights the block computes with under the current parameters
///   gradient(dW, g)                       overwrites g with d loss / d parameters from d loss / d weights
///   regularizer(progress)                 a penalty added to the loss, progress = step / steps in [0, 1)
///   add_regularizer_gradient(progress, g) adds its gradient to g
///   packed()                              the final quantized matrix (the block's weights at the end decode from it)
template <class T>
concept TrainableParameters = requires(T& t, const T& ct, MatrixView<float> out, MatrixView<const float> grad_weights,
                                       std::span<float> grad, double progress) {
    { t.parameters() } -> std::same_as<std::span<float>>;
    ct.write_weights(out);
    ct.gradient(grad_weights, grad);
    { ct.regularizer(progress) } -> std::convertible_to<double>;
    ct.add_regularizer_gradient(progress, grad);
    { ct.packed() } -> std::same_as<quant::QuantizedMatrix>;
};

/// Makes the trainable parameters of one matrix. `tensor` numbers the matrices of a reconstruction (a seed stream for
/// policies with a random initialisation).
template <class P>
concept ParameterPolicy = requires(const P& policy, const quant::QuantizedMatrix& packed, MatrixView<const float> weights,
                                   std::uint64_t tensor) {
    { policy.make(packed, weights, tensor) } -> TrainableParameters;
    { policy.name() } -> std::convertible_to<const char*>;
};

}  // namespace npft::ptq
