#pragma once
// Per-weight sensitivity scores that the ranking selectors (TopFraction, PerChannelTopK) sort by.
#include <cmath>
#include <concepts>
#include <type_traits>
#include <vector>

#include "selector.hpp"

namespace npft::outliers {

/// A score for ranking weights: higher means more of an outlier.
///   S::needs_fisher, S::needs_quant_steps : static constexpr bool, as for selectors
///   s(inputs, r, c) -> float, the score of weight (r, c); must be finite for finite inputs
template <class S>
concept SelectionScore = DeclaresSelectionInputs<S> && requires(const S& s, const SelectionInputs& in, Index r, Index c) {
    { s(in, r, c) } -> std::convertible_to<float>;
};

/// |w|: the magnitude outliers.
struct MagnitudeScore {
    static constexpr bool needs_fisher = false;
    static constexpr bool needs_quant_steps = false;
    static constexpr const char* name = "magnitude";
    float operator()(const SelectionInputs& in, Index r, Index c) const { return std::abs(in.weights(r, c)); }
};

/// Diagonal empirical Fisher F_ii: the sensitivity of the paper and SqueezeLLM.
struct FisherScore {
    static constexpr bool needs_fisher = true;
    static constexpr bool needs_quant_steps = false;
    static constexpr const char* name = "Fisher";
    float operator()(const SelectionInputs& in, Index r, Index c) const { return in.fisher(r, c); }
};

/// F_ii * delta_i^2 / 12: the expected second-order loss increase (up to the factor 1/2) when weight i takes uniform
/// quantization noise of its step delta_i. We use the expected error rather than the realized (w - Q(w))^2 because
/// fine-tuning moves the weights: the realized rounding error of today's weights says little about tomorrow's, while the
/// step (set by the group's range) is stable. Within one quantization group it ranks as the Fisher does; across groups
/// and rows it prefers weights whose group has a coarse grid.
struct FisherQuantErrorScore {
    static constexpr bool needs_fisher = true;
    static constexpr bool needs_quant_steps = true;
    static constexpr const char* name = "Fisher x quantization error";
    float operator()(const SelectionInputs& in, Index r, Index c) const {
        const float step = in.quant_steps(r, c);
        return in.fisher(r, c) * (step * step * (1.0f / 12.0f));
    }
};

namespace detail {
template <class Score>
const char* score_name() {
    if constexpr (requires { Score::name; }) {
        return Score::name;
    } else {
        return "a user score";
    }
}

/// The score of every weight, indexed by flat row-major position.
template <SelectionScore Score>
std::vector<float> flat_scores(const Score& score, const SelectionInputs& in) {
    const Index rows = in.weights.rows(), cols = in.weights.cols();
    std::vector<float> out(static_cast<std::size_t>(rows * cols));
    for (Index r = 0; r < rows; ++r) {
        for (Index c = 0; c < cols; ++c) {
            const float s = static_cast<float>(score(in, r, c));
            require(!std::isnan(s), "the ", score_name<Score>(), " score of weight (", r, ", ", c, ") is NaN");
            out[static_cast<std::size_t>(r * cols + c)] = s;
        }
    }
    return out;
}
}  // namespace detail

}  // namespace npft::outliers
