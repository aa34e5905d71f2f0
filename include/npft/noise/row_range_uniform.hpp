#pragma once
// RowRangeUniform: the reference code's noise. Per output row, uniform over [min, max] of that row's outlier values,
// then centred on the row's sample mean.
#include <algorithm>
#include <span>

#include "distribution.hpp"

namespace npft::noise {

/// For each row holding outliers: u_i ~ U[lo, hi) with lo, hi the smallest and largest clean outlier value of the row,
/// then out_i = s (u_i - mean_row(u)). Consequences (as in the reference): the width is the spread of the row's outlier
/// values, not the quantization step; every row's noise sums to zero (up to rounding); a row with a single outlier gets
/// zero noise. s = 1 reproduces the reference.
struct RowRangeUniform {
    static constexpr bool needs_quant_steps = false;

    void draw(const NoiseRequest& r, std::span<float> out) const {
        validate_request(r, out, /*needs_clean_weights=*/true, needs_quant_steps, "RowRangeUniform");
        const auto& m = *r.mask;
        const auto& positions = m.positions;
        const std::size_t n = positions.size();
        // Positions are sorted, so each row's outliers form one run [begin, end).
        for (std::size_t begin = 0, end = 0; begin < n; begin = end) {
            const Index row = m.row_of(positions[begin]);
            float lo = r.clean_weights(row, m.col_of(positions[begin])), hi = lo;
            for (end = begin + 1; end < n && m.row_of(positions[end]) == row; ++end) {
                const float w = r.clean_weights(row, m.col_of(positions[end]));
                lo = std::min(lo, w);
                hi = std::max(hi, w);
            }
            double sum = 0.0;
            for (std::size_t i = begin; i < end; ++i) {
                out[i] = uniform(r.key, static_cast<std::uint64_t>(positions[i]), lo, hi);
                sum += out[i];
            }
            const double mean = sum / static_cast<double>(end - begin);
            for (std::size_t i = begin; i < end; ++i) out[i] = static_cast<float>(r.scale * (out[i] - mean));
        }
    }
};

}  // namespace npft::noise
