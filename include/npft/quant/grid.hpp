#pragma once
// The Grid concept: a policy that fits the quantization parameters of one group of weights.
// Formats are fixed (so that kernels and files can run and store them: params.hpp); a grid decides how to fit them.
// A user-defined grid is any struct with these members, e.g. a uniform grid with an MSE-optimal clipping search.
#include <concepts>
#include <span>
#include <type_traits>

#include "../core/config.hpp"
#include "params.hpp"

namespace npft::quant {

template <class P>
concept QuantParams = std::same_as<P, UniformParams> || std::same_as<P, LutParams>;

/// A quantization grid.
///   bits()             code width, 2..8
///   format()           storage format of the result (params.hpp)
///   group_size(cols)   inputs per group for a matrix of `cols` inputs (cols itself for one group per row; a LUT grid
///                      must return cols); throws if it does not divide cols
///   fit(values, importance) -> UniformParams or LutParams for one (row, group); `importance` is empty or holds one
///                      non-negative weight per value (e.g. the diagonal Fisher) for grids that weight their fit
template <class G>
concept Grid = requires(const G& grid, Index cols, std::span<const float> values, std::span<const float> importance) {
    { grid.bits() } -> std::convertible_to<int>;
    { grid.format() } -> std::same_as<Format>;
    { grid.group_size(cols) } -> std::convertible_to<Index>;
    { grid.fit(values, importance) } -> QuantParams;
};

/// The parameter type a grid fits.
template <Grid G>
using params_of = std::remove_cvref_t<decltype(std::declval<const G&>().fit(std::span<const float>{}, std::span<const float>{}))>;

}  // namespace npft::quant
