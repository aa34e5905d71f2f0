#pragma once
// Uniform (affine) grids with round-to-nearest: symmetric (scale from the absolute maximum, fixed mid-point zero) or
// asymmetric (min-max scale and integer zero point), per output channel or per group of g inputs.
#include <algorithm>
#include <cmath>
#include <span>

#include "../core/error.hpp"
#include "bitpack.hpp"
#include "grid.hpp"
#include "params.hpp"

namespace npft::quant {

enum class Symmetry { symmetric, asymmetric };

/// Run-time uniform grid: bits in 2..8, group 0 (one group per output channel) or g > 0 inputs per group.
class UniformGrid {
public:
    UniformGrid(int bits, Index group = 0, Symmetry symmetry = Symmetry::asymmetric)
        : bits_(bits), group_(group), symmetry_(symmetry) {
        require_valid_bits(bits);
        require(group >= 0, "group size must be 0 (per output channel) or positive, got ", group);
    }

    int bits() const { return bits_; }
    Symmetry symmetry() const { return symmetry_; }
    /// The configured group: 0 means one group per output channel.
    Index group() const { return group_; }
    Format format() const { return symmetry_ == Symmetry::symmetric ? Format::uniform_symmetric : Format::uniform_asymmetric; }

    Index group_size(Index cols) const {
        if (group_ == 0) return cols;
        require(cols % group_ == 0, "group size ", group_, " does not divide the input dimension ", cols);
        return group_;
    }

    /// Min-max (asymmetric) or absmax (symmetric) fit. The range always contains 0 (as GPTQ's RTN does), so zero weights
    /// stay exactly zero. Non-finite values are rejected.
    UniformParams fit(std::span<const float> values, std::span<const float> /*importance*/ = {}) const {
        require(!values.empty(), "cannot fit a uniform grid to an empty group");
        float lo = 0.0f, hi = 0.0f;
        for (const float v : values) {
            require(v - v == 0.0f, "weights hold a non-finite value (", v, ")");
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
        return fit_range(lo, hi);
    }

    /// Parameters for a known range [lo, hi] (lo <= 0 <= hi after widening).
    UniformParams fit_range(float lo, float hi) const {
        lo = std::min(lo, 0.0f);
        hi = std::max(hi, 0.0f);
        const float levels = static_cast<float>((1u << bits_) - 1u);
        UniformParams p;
        p.bits = bits_;
        if (symmetry_ == Symmetry::symmetric) {
            // Levels (q - 2^(b-1)) * scale for q in [0, 2^b - 1]: scale = 2 absmax / (2^b - 1) keeps every |w| <= absmax
            // within half a step of a level (GPTQ's symmetric convention).
            const float absmax = std::max(-lo, hi);
            p.scale = checked_half(2.0f * absmax / levels, static_cast<float>(1u << (bits_ - 1)), lo, hi);
            p.zero = static_cast<float>(1u << (bits_ - 1));
        } else {
            p.scale = checked_half((hi - lo) / levels, levels, lo, hi);
            p.zero = p.scale == 0.0f ? 0.0f : std::clamp(std::nearbyint(-lo / p.scale), 0.0f, levels);
        }
        return p;
    }

private:
    // The scale is stored in fp16. `reach` is the largest |q - zero| a code can have, so rounding the scale moves the
    // outermost level by |stored - scale| * reach. A normal fp16 scale moves it by at most 255 * 2^-11 < 1/8 of a step;
    // below 2^-14 (6.1e-5) fp16 is subnormal and keeps ever fewer bits, and a tiny group (e.g. weights in [0, 1.2e-6]
    // at 4 bits) would decode several steps off, or all to 0. The format has no fp32 scale, so such a group is refused
    // (docs/formats.md, "Scale range"); the quantizers add the row and group to the message.
    static float checked_half(float scale, float reach, float lo, float hi) {
        const float stored = round_to_half(scale);
        require(stored - stored == 0.0f, "quantization scale ", scale, " overflows fp16 (weights above about 1e5 in magnitude)");
        const float shift = std::abs(stored - scale) * reach;
        require(shift <= 0.5f * scale, "weights in [", lo, ", ", hi, "] need a quantization scale of ", scale,
                ", which fp16 stores as ", stored, stored == 0.0f ? " (underflow: every weight would decode to 0)" : "",
                ", moving the outermost levels by ", shift / scale, " steps (more than half a step; fp16 scales below 6.1e-5 "
                "are subnormal and imprecise). Rescale the layer: multiply its weights by a power of two 2^k before "
                "quantizing and its output by 2^-k (exact in floating point), or use larger groups");
        return stored;
    }

    int bits_;
    Index group_;
    Symmetry symmetry_;
};

/// Compile-time uniform grid: Uniform<4, 128> is 4-bit, groups of 128 inputs, asymmetric; Uniform<3> is per output channel.
template <int Bits, Index Group = 0, Symmetry S = Symmetry::asymmetric>
class Uniform : public UniformGrid {
    static_assert(Bits >= 2 && Bits <= 8, "Uniform<Bits, ...>: Bits must be between 2 and 8");
    static_assert(Group >= 0, "Uniform<Bits, Group, ...>: Group must be 0 (per output channel) or positive");

public:
    static constexpr int bits_value = Bits;
    static constexpr Index group_value = Group;
    Uniform() : UniformGrid(Bits, Group, S) {}
};

static_assert(Grid<UniformGrid>);

}  // namespace npft::quant
