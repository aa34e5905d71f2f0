#pragma once
// What every CPU kernel path receives: the quantized matrix, activations as contiguous rows, and the output view.
// multiply.hpp builds it once per call (validating shapes), then each path computes a range of output rows.
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../../core/config.hpp"
#include "../../core/tensor_view.hpp"
#include "../../quant/quantized_matrix.hpp"

namespace npft::kernels::cpu {

/// y (M x N) = x (M x K) * W^T for W = *weights (N x K).
struct GemmProblem {
    const quant::QuantizedMatrix* weights = nullptr;
    const float* x = nullptr;  ///< row m of x starts at x + m * x_row_stride; elements are contiguous
    Index x_row_stride = 0;
    Index batch = 0;           ///< M
    /// Sums of x over each quantization group, [M][groups] (uniform formats, SIMD paths): they fold the zero point
    /// out of the inner loop, sum_j (q_j - z) x_j = sum_j q_j x_j - z sum_j x_j.
    const float* x_group_sums = nullptr;
    MatrixView<float> y;       ///< M x N, any strides
    /// The last packed row again, followed by zero words: SIMD decoders read up to 8 bytes past a code, which is
    /// inside the matrix for every row but the last.
    const std::uint32_t* last_row_padded = nullptr;

    /// Packed words of row r, safe to over-read by 8 bytes.
    const std::uint32_t* row_words(Index r) const {
        return r == weights->rows() - 1 ? last_row_padded : weights->codes().row_words(r);
    }
};

/// Words of zero padding after the copy of the last row.
inline constexpr Index last_row_padding_words = 4;

/// Calls rows(bits, lut) with w's bit width (2..8) and whether w is a LUT matrix as compile-time constants
/// (std::integral_constant): the SIMD paths instantiate their row loops per format through this one switch.
template <class Rows>
inline void dispatch_bits_and_format(const quant::QuantizedMatrix& w, Rows&& rows) {
    const auto with_bits = [&](auto lut) {
        switch (w.bits()) {
            case 2: rows(std::integral_constant<int, 2>{}, lut); break;
            case 3: rows(std::integral_constant<int, 3>{}, lut); break;
            case 4: rows(std::integral_constant<int, 4>{}, lut); break;
            case 5: rows(std::integral_constant<int, 5>{}, lut); break;
            case 6: rows(std::integral_constant<int, 6>{}, lut); break;
            case 7: rows(std::integral_constant<int, 7>{}, lut); break;
            default: rows(std::integral_constant<int, 8>{}, lut); break;
        }
    };
    if (w.format() == quant::Format::lut) {
        with_bits(std::true_type{});
    } else {
        with_bits(std::false_type{});
    }
}

}  // namespace npft::kernels::cpu
