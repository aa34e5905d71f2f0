#pragma once
// Quantizer<Grid>: round-to-nearest quantization of a whole weight matrix into a packed QuantizedMatrix.
#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../core/tensor_view.hpp"
#include "grid.hpp"
#include "quantized_matrix.hpp"

namespace npft::quant {

namespace detail {
/// grid.fit for group g of row r; an npft::Error from the fit (non-finite weights, a scale fp16 cannot hold) is
/// re-thrown naming the row and the group.
template <Grid G>
params_of<G> fit_group_at(const G& grid, std::span<const float> values, std::span<const float> importance, Index r, Index g) {
    try {
        return grid.fit(values, importance);
    } catch (const Error& e) {
        fail("row ", r, ", group ", g, ": ", e.what());
    }
}

template <class P>
void store_params(QuantizedMatrix& q, Index r, Index g, const P& p) {
    if constexpr (std::same_as<P, UniformParams>) {
        q.set_group(r, g, p);
    } else {
        q.set_lut(r, p);
    }
}

/// Bulk encoders: exactly the codes of UniformParams::encode / LutParams::encode (the tests check every element), but
/// without a libm call or an unpredictable branch per weight, which dominate the quantize path otherwise.
inline void encode_group(const UniformParams& p, std::span<const float> values, std::uint8_t* codes) {
    const float top = static_cast<float>(p.max_code());
    if (p.scale == 0.0f) {
        std::fill(codes, codes + values.size(), static_cast<std::uint8_t>(std::clamp(p.zero, 0.0f, top)));
        return;
    }
    constexpr float round_shift = 12582912.0f;  // 1.5 * 2^23: x + shift - shift rounds x in [0, 2^22] as nearbyint does
    for (std::size_t j = 0; j < values.size(); ++j) {
        // Clamping to integer bounds before rounding equals rounding before clamping.
        const float q = std::clamp(values[j] / p.scale + p.zero, 0.0f, top);
        codes[j] = static_cast<std::uint8_t>((q + round_shift) - round_shift);
    }
}

inline void encode_group(const LutParams& p, std::span<const float> values, std::uint8_t* codes) {
    const float* levels = p.levels.data();
    const Index n = p.size();
    for (std::size_t j = 0; j < values.size(); ++j) {
        const float w = values[j];
        // Branch-free lower_bound over the 2^bits ascending levels.
        const float* base = levels;
        for (Index length = n; length > 1; length -= length / 2) base = base[length / 2] < w ? base + length / 2 : base;
        const Index upper = (base - levels) + (*base < w);
        // Same choice as LutParams::encode: clamp at the ends, ties to the lower level.
        Index code;
        if (upper == 0) code = 0;
        else if (upper == n) code = n - 1;
        else code = (w - levels[upper - 1] <= levels[upper] - w) ? upper - 1 : upper;
        codes[j] = static_cast<std::uint8_t>(code);
    }
}
}  // namespace detail

/// Quantizes weight matrices (rows = output channels) with a Grid, by round-to-nearest.
template <Grid G>
class Quantizer {
public:
    using grid_type = G;
    using params_type = params_of<G>;

    Quantizer() = default;
    explicit Quantizer(G grid) : grid_(std::move(grid)) {}
    const G& grid() const { return grid_; }

    /// Packs `weights`; `importance` (same shape, or empty) weights the fit of grids that use it (e.g. Fisher for k-means).
    template <StorageElement T>
    QuantizedMatrix quantize(MatrixView<const T> weights, MatrixView<const float> importance = {}) const {
        require_non_empty(weights, "weights");
        require_finite(weights, "weights");
        if (!importance.empty()) {
            require_shape(importance, weights.rows(), weights.cols(), "importance");
            require_finite(importance, "importance");
        }
        const Index rows = weights.rows(), cols = weights.cols();
        const Index group = grid_.group_size(cols);
        QuantizedMatrix out(grid_.format(), grid_.bits(), rows, cols, group);
        // One row at a time: gather it as float, fit and encode each group into byte codes, then pack the row in one pass.
        std::vector<float> row(static_cast<std::size_t>(cols)), row_importance;
        if (!importance.empty()) row_importance.resize(row.size());
        std::vector<std::uint8_t> codes(static_cast<std::size_t>(cols));
        for (Index r = 0; r < rows; ++r) {
            for (Index j = 0; j < cols; ++j) row[static_cast<std::size_t>(j)] = to_float(weights(r, j));
            if (!importance.empty())
                for (Index j = 0; j < cols; ++j) row_importance[static_cast<std::size_t>(j)] = importance(r, j);
            for (Index g = 0; g < cols / group; ++g) {
                const std::size_t first = static_cast<std::size_t>(g * group);
                const std::span<const float> values(row.data() + first, static_cast<std::size_t>(group));
                const std::span<const float> weights_of_values =
                    importance.empty() ? std::span<const float>{}
                                       : std::span<const float>(row_importance.data() + first, static_cast<std::size_t>(group));
                const params_type p = detail::fit_group_at(grid_, values, weights_of_values, r, g);
                // Codes stay below 2^p.bits, so matching bit widths is all the packer needs.
                require(p.bits == grid_.bits(), "grid fitted ", p.bits, "-bit parameters but declares bits() = ", grid_.bits());
                detail::store_params(out, r, g, p);
                // A grid may define its own encoding (ggml_grids.hpp: llama.cpp's codes come from the fp32 scale).
                if constexpr (requires { grid_.encode(values, p, codes.data()); }) grid_.encode(values, p, codes.data() + first);
                else detail::encode_group(p, values, codes.data() + first);
            }
            pack_row(codes.data(), cols, grid_.bits(), out.codes().row_words(r));
        }
        return out;
    }

    template <MatrixViewable W>
    QuantizedMatrix quantize(const W& weights) const {
        return quantize(MatrixView<const typename decltype(as_matrix_view(weights))::element_type>(as_matrix_view(weights)));
    }

private:
    G grid_{};
};

/// Per-weight quantization step under `grid` (the spacing of the levels around each weight): the delta of the
/// quantization-noise model U(-delta/2, delta/2). Same shape as `weights`.
template <Grid G>
Matrix quantization_steps(const G& grid, MatrixView<const float> weights, MatrixView<const float> importance = {}) {
    require_non_empty(weights, "weights");
    const Index rows = weights.rows(), cols = weights.cols();
    const Index group = grid.group_size(cols);
    Matrix steps(rows, cols);
    std::vector<float> values(static_cast<std::size_t>(group)), weights_of_values;
    if (!importance.empty()) weights_of_values.resize(values.size());
    for (Index r = 0; r < rows; ++r) {
        for (Index g = 0; g < cols / group; ++g) {
            for (Index j = 0; j < group; ++j) {
                values[static_cast<std::size_t>(j)] = weights(r, g * group + j);
                if (!importance.empty()) weights_of_values[static_cast<std::size_t>(j)] = importance(r, g * group + j);
            }
            const auto p = detail::fit_group_at(grid, std::span<const float>(values), std::span<const float>(weights_of_values), r, g);
            for (Index j = 0; j < group; ++j) steps(r, g * group + j) = p.step(values[static_cast<std::size_t>(j)]);
        }
    }
    return steps;
}

}  // namespace npft::quant
