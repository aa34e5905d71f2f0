#pragma once
// Quantizer<Grid>: round-to-nearest quantization of a whole weight matrix into a packed QuantizedMatrix.
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
template <class P>
void store_params(QuantizedMatrix& q, index r, index g, const P& p) {
    if constexpr (std::same_as<P, UniformParams>) {
        q.set_group(r, g, p);
    } else {
        q.set_lut(r, p);
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
        const index rows = weights.rows(), cols = weights.cols();
        const index group = grid_.group_size(cols);
        QuantizedMatrix out(grid_.format(), grid_.bits(), rows, cols, group);
        std::vector<float> values(static_cast<std::size_t>(group)), weights_of_values;
        if (!importance.empty()) weights_of_values.resize(values.size());
        for (index r = 0; r < rows; ++r) {
            for (index g = 0; g < cols / group; ++g) {
                for (index j = 0; j < group; ++j) {
                    values[static_cast<std::size_t>(j)] = to_float(weights(r, g * group + j));
                    if (!importance.empty()) weights_of_values[static_cast<std::size_t>(j)] = importance(r, g * group + j);
                }
                const params_type p = grid_.fit(values, weights_of_values);
                detail::store_params(out, r, g, p);
                for (index j = 0; j < group; ++j) out.codes().set(r, g * group + j, p.encode(values[static_cast<std::size_t>(j)]));
            }
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
    const index rows = weights.rows(), cols = weights.cols();
    const index group = grid.group_size(cols);
    Matrix steps(rows, cols);
    std::vector<float> values(static_cast<std::size_t>(group)), weights_of_values;
    if (!importance.empty()) weights_of_values.resize(values.size());
    for (index r = 0; r < rows; ++r) {
        for (index g = 0; g < cols / group; ++g) {
            for (index j = 0; j < group; ++j) {
                values[static_cast<std::size_t>(j)] = weights(r, g * group + j);
                if (!importance.empty()) weights_of_values[static_cast<std::size_t>(j)] = importance(r, g * group + j);
            }
            const auto p = grid.fit(values, weights_of_values);
            for (index j = 0; j < group; ++j) steps(r, g * group + j) = p.step(values[static_cast<std::size_t>(j)]);
        }
    }
    return steps;
}

}  // namespace npft::quant
