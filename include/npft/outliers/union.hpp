#pragma once
// Union<A, B>: the outliers of either selector (the paper's sensitive-or-magnitude rule is Union<TopFisher, InterquartileMagnitude>).
#include "outlier_mask.hpp"
#include "selector.hpp"

namespace npft::outliers {

template <OutlierSelector A, OutlierSelector B>
struct Union {
    static constexpr bool needs_fisher = A::needs_fisher || B::needs_fisher;
    static constexpr bool needs_quant_steps = A::needs_quant_steps || B::needs_quant_steps;

    A first{};
    B second{};

    OutlierMask select(const SelectionInputs& in) const { return mask_union(first.select(in), second.select(in)); }
};

}  // namespace npft::outliers
