#pragma once
// The independent reference of the int8-activation kernels (the batch-1 kernels and the GEMMs): the weights they
// multiply, and the fp32 rounding bound of their arithmetic on the quantized activations x_hat.
#include <algorithm>
#include <cmath>

#include <npft/core/eigen.hpp>
#include <npft/quant/quantized_matrix.hpp>

namespace npft_test {

/// The weights the kernel multiplies: w itself for uniform formats; for LUT rows the 12-bit fixed-point table
/// (documented in int8_activations.hpp), rebuilt here independently: level_hat = s (round(level / s) + 2048 - 2048),
/// s = max|level| / 2047.
inline npft::Matrix int8_kernel_weights(const npft::quant::QuantizedMatrix& w) {
    npft::Matrix dense = w.dequantize();
    if (w.format() != npft::quant::Format::lut) return dense;
    for (npft::Index r = 0; r < w.rows(); ++r) {
        const auto levels = w.lut_params(r).levels;
        float largest = 0.0f;
        for (npft::Index q = 0; q < (npft::Index{1} << w.bits()); ++q)
            largest = std::max(largest, std::abs(levels[static_cast<std::size_t>(q)]));
        const double s = static_cast<double>(largest / 2047.0f);
        const float inverse = largest > 0.0f ? 1.0f / (largest / 2047.0f) : 0.0f;
        for (npft::Index j = 0; j < w.cols(); ++j) {
            const float level = levels[w.codes().get(r, j)];
            dense(r, j) = static_cast<float>(s * std::nearbyint(level * inverse));
        }
    }
    return dense;
}

/// The fp32 rounding bound of an int8 kernel's result on x_hat (batch x K): gamma(n) times the sum of the absolute
/// terms it forms, n = 2 K + 2 groups + 64 (both sums of the folded zero point or table offset, the group and block
/// scales). Terms: s (q + z) |x_hat| for uniform formats; for LUT rows s (u + 2048) |x_hat| with u = level_hat / s +
/// 2048, at most 2 |level_hat| + 4096 s, s = max|level_hat| / 2047.
inline Eigen::MatrixXd int8_rounding_bound(const npft::quant::QuantizedMatrix& w, const npft::Matrix& kernel_weights,
                                           const npft::Matrix& x_hat) {
    const bool lut = w.format() == npft::quant::Format::lut;
    Eigen::MatrixXd terms(w.rows(), w.cols());
    for (npft::Index r = 0; r < w.rows(); ++r) {
        const double largest = static_cast<double>(kernel_weights.row(r).cwiseAbs().maxCoeff());
        for (npft::Index j = 0; j < w.cols(); ++j) {
            if (lut) {
                terms(r, j) = 2.0 * std::abs(static_cast<double>(kernel_weights(r, j))) + 4096.0 * largest / 2047.0;
            } else {
                const auto p = w.uniform_params(r, j / w.group_size());
                terms(r, j) = p.scale * (static_cast<double>(w.codes().get(r, j)) + p.zero);
            }
        }
    }
    const double n = static_cast<double>(2 * w.cols() + 2 * (lut ? 1 : w.groups()) + 64);
    const double gamma = n * std::ldexp(1.0, -24) / (1.0 - n * std::ldexp(1.0, -24));
    return gamma * (x_hat.cast<double>().cwiseAbs() * terms.transpose());
}

}  // namespace npft_test
