#pragma once
// PerChannelTopK<Score>: the k highest-scoring weights of every output channel (row), so every row gets outliers.
#include "scores.hpp"
#include "selector.hpp"

namespace npft::outliers {

/// Selects min(k, cols) weights in each row by the largest score, ties to the smaller column.
template <SelectionScore Score>
struct PerChannelTopK {
    static constexpr bool needs_fisher = Score::needs_fisher;
    static constexpr bool needs_quant_steps = Score::needs_quant_steps;

    Index k = 1;
    Score score{};

    OutlierMask select(const SelectionInputs& in) const {
        require(k >= 1, "PerChannelTopK: k (outliers per output channel) must be at least 1, got ", k);
        validate_inputs(in, needs_fisher, needs_quant_steps, "PerChannelTopK");
        const Index rows = in.weights.rows(), cols = in.weights.cols();
        const std::vector<float> scores = detail::flat_scores(score, in);
        std::vector<Index> positions;
        positions.reserve(static_cast<std::size_t>(rows * std::min(k, cols)));
        for (Index r = 0; r < rows; ++r) detail::append_top_k(scores, r * cols, (r + 1) * cols, k, positions);
        return OutlierMask(rows, cols, std::move(positions));
    }
};

}  // namespace npft::outliers
