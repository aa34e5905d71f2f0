#pragma once
// InterquartileMagnitude: the reference code's magnitude outliers, weights outside a symmetric interquartile threshold.
#include <algorithm>
#include <cmath>
#include <vector>

#include "selector.hpp"

namespace npft::outliers {

/// The p-quantile (0 <= p <= 1) of `values` with linear interpolation between order statistics: with the values sorted
/// as x_0 <= ... <= x_{n-1}, h = p (n - 1), the result is x_floor(h) + (h - floor(h)) (x_floor(h)+1 - x_floor(h)).
/// This is NumPy's default ("linear") and torch.quantile's, as the reference code uses. Reorders `values`.
inline double quantile(std::vector<float>& values, double p) {
    require(!values.empty(), "quantile of an empty set");
    require(p >= 0.0 && p <= 1.0, "quantile level must be in [0, 1], got ", p);
    const double h = p * static_cast<double>(values.size() - 1);
    const auto lo = static_cast<std::size_t>(std::floor(h));
    std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(lo), values.end());
    const double below = values[lo];
    if (lo + 1 >= values.size()) return below;
    // After nth_element everything past lo is >= x_lo, so the next order statistic is their minimum.
    const double above = *std::min_element(values.begin() + static_cast<std::ptrdiff_t>(lo + 1), values.end());
    return below + (h - static_cast<double>(lo)) * (above - below);
}

/// Selects |w| >= t with t = max(|q1 - r (q3 - q1)|, |q3 + r (q3 - q1)|), q1 and q3 the 25th and 75th percentiles of
/// the matrix's weights (signed; see quantile() for the interpolation). The number selected follows from the data: a
/// matrix without heavy tails may get none. r = 1.8 is the value the method summary quotes.
struct InterquartileMagnitude {
    static constexpr bool needs_fisher = false;
    static constexpr bool needs_quant_steps = false;

    double r = 1.8;

    /// The magnitude threshold t for these weights.
    double threshold(MatrixView<const float> weights) const {
        require(r >= 0.0 && std::isfinite(r), "InterquartileMagnitude: r must be finite and non-negative, got ", r);
        std::vector<float> values(static_cast<std::size_t>(weights.size()));
        for (Index i = 0, row = 0; row < weights.rows(); ++row)
            for (Index c = 0; c < weights.cols(); ++c) values[static_cast<std::size_t>(i++)] = weights(row, c);
        const double q1 = quantile(values, 0.25);
        const double q3 = quantile(values, 0.75);
        const double spread = r * (q3 - q1);
        return std::max(std::abs(q1 - spread), std::abs(q3 + spread));
    }

    OutlierMask select(const SelectionInputs& in) const {
        validate_inputs(in, needs_fisher, needs_quant_steps, "InterquartileMagnitude");
        const double t = threshold(in.weights);
        const Index rows = in.weights.rows(), cols = in.weights.cols();
        std::vector<Index> positions;
        for (Index row = 0; row < rows; ++row)
            for (Index c = 0; c < cols; ++c)
                if (std::abs(static_cast<double>(in.weights(row, c))) >= t) positions.push_back(row * cols + c);
        return OutlierMask(rows, cols, std::move(positions));
    }
};

}  // namespace npft::outliers
