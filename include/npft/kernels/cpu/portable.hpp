#pragma once
// The portable C++ kernel: the reference path every SIMD path is tested against, and the fallback on CPUs without
// AVX2. Per output row and quantization group it decodes the group once into exact small floats (q - zero, or the
// table value), then runs one dot product per token in sequential order:
//   y[m][r] = sum_g scale[r][g] * sum_{j in g} (q[r][j] - zero[r][g]) * x[m][j]      (uniform)
//   y[m][r] = sum_j table[r][q[r][j]] * x[m][j]                                        (lut)
#include <algorithm>
#include <cstdint>
#include <vector>

#include "../../core/config.hpp"
#include "../../quant/bitpack.hpp"
#include "problem.hpp"

namespace npft::kernels::cpu::portable {

/// Computes output rows [row_begin, row_end) of the problem.
inline void multiply_rows(const GemmProblem& p, index row_begin, index row_end) {
    const quant::QuantizedMatrix& w = *p.weights;
    const index group = w.group_size();
    const index groups = w.groups();
    const int bits = w.bits();
    const bool lut = w.format() == quant::Format::lut;
    std::vector<float> decoded(static_cast<std::size_t>(group));
    std::vector<float> total(static_cast<std::size_t>(p.batch));
    std::vector<float> table(static_cast<std::size_t>(1) << bits);
    for (index r = row_begin; r < row_end; ++r) {
        const std::uint32_t* words = w.codes().row_words(r);
        if (lut) {
            for (std::size_t q = 0; q < table.size(); ++q) table[q] = static_cast<float>(w.lut()[(static_cast<std::size_t>(r) << bits) + q]);
        }
        std::fill(total.begin(), total.end(), 0.0f);
        for (index g = 0; g < groups; ++g) {
            float scale = 1.0f;
            float zero = 0.0f;
            if (!lut) {
                const quant::UniformParams params = w.uniform_params(r, g);
                scale = params.scale;
                zero = params.zero;
            }
            for (index i = 0; i < group; ++i) {
                const std::uint32_t q = quant::unpack_code(words, g * group + i, bits);
                decoded[static_cast<std::size_t>(i)] = lut ? table[q] : static_cast<float>(q) - zero;
            }
            for (index m = 0; m < p.batch; ++m) {
                const float* x = p.x + m * p.x_row_stride + g * group;
                float dot = 0.0f;
                for (index i = 0; i < group; ++i) dot += decoded[static_cast<std::size_t>(i)] * x[i];
                total[static_cast<std::size_t>(m)] += scale * dot;
            }
        }
        for (index m = 0; m < p.batch; ++m) p.y(m, r) = total[static_cast<std::size_t>(m)];
    }
}

}  // namespace npft::kernels::cpu::portable
