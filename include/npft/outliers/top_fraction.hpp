#pragma once
// TopFraction<Score>: the top p of a matrix by a score, and its three named uses: TopFisher (the paper's sensitivity),
// TopMagnitude (plain top-|w|) and FisherTimesQuantError (sensitivity x expected quantization error).
#include <algorithm>

#include "scores.hpp"
#include "selector.hpp"

namespace npft::outliers {

/// Selects round(fraction * rows * cols) weights (at least one) with the largest score, over the whole matrix. Equal
/// scores go to the smaller flat position, so the mask is a pure function of the inputs.
template <SelectionScore Score>
struct TopFraction {
    static constexpr bool needs_fisher = Score::needs_fisher;
    static constexpr bool needs_quant_steps = Score::needs_quant_steps;

    double fraction = 0.0005;  // the reference recipe's 0.05%
    Score score{};

    OutlierMask select(const SelectionInputs& in) const {
        require_fraction(fraction, "TopFraction");
        validate_inputs(in, needs_fisher, needs_quant_steps, "TopFraction");
        const Index rows = in.weights.rows(), cols = in.weights.cols();
        const std::vector<float> scores = detail::flat_scores(score, in);
        std::vector<Index> positions;
        detail::append_top_k(scores, 0, rows * cols, count_for_fraction(fraction, rows * cols), positions);
        return OutlierMask(rows, cols, std::move(positions));
    }
};

/// Top p% per matrix by diagonal empirical Fisher (the paper and SqueezeLLM). TopFisher{0.0005} keeps 0.05%.
using TopFisher = TopFraction<FisherScore>;
/// Top p% per matrix by |w|.
using TopMagnitude = TopFraction<MagnitudeScore>;
/// Top p% per matrix by Fisher x delta^2 / 12 (see FisherQuantErrorScore).
using FisherTimesQuantError = TopFraction<FisherQuantErrorScore>;

}  // namespace npft::outliers
