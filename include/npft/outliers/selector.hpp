#pragma once
// The OutlierSelector concept: a policy that marks the sensitive weights of one matrix, given the weights and, when it
// asks for them, the diagonal Fisher and the per-weight quantization steps.
#include <algorithm>
#include <cmath>
#include <concepts>
#include <type_traits>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor_view.hpp"
#include "outlier_mask.hpp"

namespace npft::outliers {

/// What a selector sees for one weight matrix (rows = output channels). `fisher` (diagonal empirical Fisher) and
/// `quant_steps` (each weight's quantization step under the target quantizer) have the weights' shape, or are empty
/// when the selector does not need them.
struct SelectionInputs {
    MatrixView<const float> weights;
    MatrixView<const float> fisher;
    MatrixView<const float> quant_steps;
};

/// Has `OutlierMask select(const SelectionInputs&) const`.
template <class S>
concept SelectsMask = requires(const S& s, const SelectionInputs& in) {
    { s.select(in) } -> std::same_as<OutlierMask>;
};

/// Declares, as compile-time constants, which optional inputs it reads (so the pipeline computes only those).
template <class S>
concept DeclaresSelectionInputs = requires {
    { S::needs_fisher } -> std::convertible_to<bool>;
    { S::needs_quant_steps } -> std::convertible_to<bool>;
    typename std::bool_constant<S::needs_fisher>;
    typename std::bool_constant<S::needs_quant_steps>;
};

/// A policy that selects the outliers of one weight matrix.
///   S::needs_fisher, S::needs_quant_steps : static constexpr bool, which optional inputs select() reads
///   s.select(inputs) -> OutlierMask of the weights' shape; deterministic (ties broken by position)
template <class S>
concept OutlierSelector = SelectsMask<S> && DeclaresSelectionInputs<S>;

/// static_assert(check_outlier_selector<S>()) names the missing member when S is not an OutlierSelector.
template <class S>
consteval bool check_outlier_selector() {
    static_assert(SelectsMask<S>, "an OutlierSelector needs a member `OutlierMask select(const SelectionInputs&) const`");
    static_assert(DeclaresSelectionInputs<S>,
                  "an OutlierSelector needs `static constexpr bool needs_fisher` and `static constexpr bool needs_quant_steps`");
    return OutlierSelector<S>;
}

/// Checks the inputs of a selector named `who`: non-empty finite weights, the optional inputs it needs present, and every
/// optional input that is given of the weights' shape.
inline void validate_inputs(const SelectionInputs& in, bool needs_fisher, bool needs_quant_steps, const char* who) {
    require_non_empty(in.weights, "weights");
    require_finite(in.weights, "weights");
    require(!needs_fisher || !in.fisher.empty(), who,
            " needs the diagonal Fisher (SelectionInputs::fisher), but it is empty");
    require(!needs_quant_steps || !in.quant_steps.empty(), who,
            " needs the quantization steps (SelectionInputs::quant_steps), but they are empty");
    if (!in.fisher.empty()) {
        require_shape(in.fisher, in.weights.rows(), in.weights.cols(), "fisher");
        require_finite(in.fisher, "fisher");
    }
    if (!in.quant_steps.empty()) {
        require_shape(in.quant_steps, in.weights.rows(), in.weights.cols(), "quant_steps");
        require_finite(in.quant_steps, "quant_steps");
    }
}

/// Throws unless 0 < fraction <= 1.
inline void require_fraction(double fraction, const char* who) {
    require(fraction > 0.0 && fraction <= 1.0, who, ": outlier fraction must be in (0, 1], got ", fraction);
}

/// How many of n weights a fraction selects: round(fraction * n), at least 1, so |k/n - fraction| <= 1/(2n) unless that
/// would select nothing.
inline Index count_for_fraction(double fraction, Index n) {
    const auto k = static_cast<Index>(std::llround(fraction * static_cast<double>(n)));
    return std::clamp<Index>(k, 1, n);
}

namespace detail {
/// Appends to `out` the k positions in [first, last) with the largest score (score indexed by position), ties broken
/// towards the smaller position, so the result is a pure function of the scores.
inline void append_top_k(const std::vector<float>& score, Index first, Index last, Index k, std::vector<Index>& out) {
    k = std::min(k, last - first);
    if (k <= 0) return;
    std::vector<Index> candidates(static_cast<std::size_t>(last - first));
    for (Index p = first; p < last; ++p) candidates[static_cast<std::size_t>(p - first)] = p;
    const auto before = [&score](Index a, Index b) {
        const float sa = score[static_cast<std::size_t>(a)], sb = score[static_cast<std::size_t>(b)];
        return sa > sb || (sa == sb && a < b);
    };
    if (k < last - first) std::nth_element(candidates.begin(), candidates.begin() + (k - 1), candidates.end(), before);
    out.insert(out.end(), candidates.begin(), candidates.begin() + k);
}
}  // namespace detail

}  // namespace npft::outliers
