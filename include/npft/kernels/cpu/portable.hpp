#pragma once
// The portable C++ kernel: the reference path every SIMD path is tested against, and the fallback on CPUs without
// AVX2. Per output row and quantization group it decodes the group once into exact small floats (q - zero, or the
// table value), then runs one dot product per token (8 interleaved partial sums, see dot()):
//   y[m][r] = sum_g scale[r][g] * sum_{j in g} (q[r][j] - zero[r][g]) * x[m][j]      (uniform)
//   y[m][r] = sum_j table[r][q[r][j]] * x[m][j]                                        (lut)
#include <algorithm>
#include <cstdint>
#include <vector>

#include "../../core/config.hpp"
#include "../../quant/bitpack.hpp"
#include "problem.hpp"

namespace npft::kernels::cpu::portable {

/// sum_i a[i] b[i] with 8 interleaved partial sums (lane i % 8), combined pairwise: independent chains that the
/// compiler can map onto SSE/NEON registers without reassociating anything itself.
inline float dot(const float* a, const float* b, Index n) {
    float lanes[8] = {};
    Index i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; ++l) lanes[l] += a[i + l] * b[i + l];
    for (int l = 0; i < n; ++i, ++l) lanes[l] += a[i] * b[i];
    return ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
}

/// Computes output rows [row_begin, row_end) of the problem.
inline void multiply_rows(const GemmProblem& p, Index row_begin, Index row_end) {
    const quant::QuantizedMatrix& w = *p.weights;
    const Index group = w.group_size();
    const Index groups = w.groups();
    const int bits = w.bits();
    const bool lut = w.format() == quant::Format::lut;
    std::vector<float> decoded(static_cast<std::size_t>(group));
    std::vector<float> total(static_cast<std::size_t>(p.batch));
    std::vector<float> table(static_cast<std::size_t>(1) << bits);
    for (Index r = row_begin; r < row_end; ++r) {
        const std::uint32_t* words = w.codes().row_words(r);
        if (lut) {
            for (std::size_t q = 0; q < table.size(); ++q) table[q] = static_cast<float>(w.lut()[(static_cast<std::size_t>(r) << bits) + q]);
        }
        std::fill(total.begin(), total.end(), 0.0f);
        for (Index g = 0; g < groups; ++g) {
            float scale = 1.0f;
            float zero = 0.0f;
            if (!lut) {
                const quant::UniformParams params = w.uniform_params(r, g);
                scale = params.scale;
                zero = params.zero;
            }
            // Stream the group's codes through a 64-bit window, refilled one word at a time (never past the group).
            const Index first_bit = g * group * bits;
            const std::uint32_t* next = words + first_bit / 32;
            std::uint64_t window = *next++ >> (first_bit % 32);
            unsigned available = 32u - static_cast<unsigned>(first_bit % 32);
            const std::uint64_t mask = (std::uint64_t{1} << bits) - 1u;
            for (Index i = 0; i < group; ++i) {
                if (available < static_cast<unsigned>(bits)) {
                    window |= static_cast<std::uint64_t>(*next++) << available;
                    available += 32u;
                }
                const auto q = static_cast<std::uint32_t>(window & mask);
                window >>= bits;
                available -= static_cast<unsigned>(bits);
                decoded[static_cast<std::size_t>(i)] = lut ? table[q] : static_cast<float>(q) - zero;
            }
            for (Index m = 0; m < p.batch; ++m) {
                const float* x = p.x + m * p.x_row_stride + g * group;
                total[static_cast<std::size_t>(m)] += scale * dot(decoded.data(), x, group);
            }
        }
        for (Index m = 0; m < p.batch; ++m) p.y(m, r) = total[static_cast<std::size_t>(m)];
    }
}

}  // namespace npft::kernels::cpu::portable
