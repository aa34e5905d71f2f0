#pragma once
// The two families of quantization parameters every grid fits: a uniform (affine) step, or a lookup table.
// Values are rounded to fp16 when fitted, because that is how they are stored; encode() therefore picks the code that
// is nearest under the stored parameters, and decode() is the exact reference every kernel must reproduce bit for bit.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>

#include "../core/config.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"

namespace npft::quant {

/// Storage formats of a quantized matrix (docs/formats.md).
enum class Format : std::uint8_t {
    uniform_symmetric = 0,   ///< w = scale * (q - 2^(bits-1)); one fp16 scale per (row, group)
    uniform_asymmetric = 1,  ///< w = scale * (q - zero); fp16 scale and fp16 integer zero point per (row, group)
    lut = 2,                 ///< w = table[row][q]; 2^bits fp16 entries per row (non-uniform, e.g. k-means)
};

inline const char* format_name(Format f) {
    switch (f) {
        case Format::uniform_symmetric: return "uniform_symmetric";
        case Format::uniform_asymmetric: return "uniform_asymmetric";
        case Format::lut: return "lut";
    }
    return "unknown";
}

/// Rounds a float to the nearest fp16 value, returned as float.
NPFT_HOST_DEVICE inline float round_to_half(float x) { return static_cast<float>(half(x)); }

/// The reference uniform dequantization: one exact subtraction of small integers, one rounding multiply.
NPFT_HOST_DEVICE inline float dequantize_uniform(std::uint32_t code, float scale, float zero) {
    return scale * (static_cast<float>(code) - zero);
}

/// Affine parameters of one (row, group): w ~ scale * (q - zero), q in [0, 2^bits - 1].
struct UniformParams {
    int bits = 4;
    /// fp16-representable; 0 only for an all-(near-)zero group (everything decodes to 0). >= 0 for the asymmetric
    /// format; the symmetric format allows a negative scale (llama.cpp's Q4_0 scale carries the sign of the block's
    /// largest-magnitude weight, quant/ggml_grids.hpp).
    float scale = 0.0f;
    float zero = 0.0f;   ///< integer in [0, 2^bits - 1]; 2^(bits-1) for the symmetric format

    std::uint32_t max_code() const { return (1u << bits) - 1u; }

    /// Nearest code under these parameters (clipped to the grid).
    std::uint32_t encode(float w) const {
        if (scale == 0.0f) return static_cast<std::uint32_t>(zero);
        const float q = std::nearbyint(w / scale + zero);
        return static_cast<std::uint32_t>(std::clamp(q, 0.0f, static_cast<float>(max_code())));
    }
    float decode(std::uint32_t code) const { return dequantize_uniform(code, scale, zero); }
    /// Distance between adjacent levels around w (the quantization step, for noise models).
    float step(float /*w*/) const { return std::abs(scale); }
};

/// A lookup table of one row: 2^bits ascending fp16-representable levels.
struct LutParams {
    int bits = 4;
    std::array<float, 256> levels{};  ///< first 2^bits entries used, ascending

    Index size() const { return Index{1} << bits; }

    std::uint32_t encode(float w) const {
        const float* first = levels.data();
        const float* last = first + size();
        const float* upper = std::lower_bound(first, last, w);
        if (upper == first) return 0;
        if (upper == last) return static_cast<std::uint32_t>(size() - 1);
        const float* lower = upper - 1;
        // Ties go to the lower level, so the choice does not depend on the search order.
        return static_cast<std::uint32_t>((w - *lower <= *upper - w) ? lower - first : upper - first);
    }
    float decode(std::uint32_t code) const { return levels[code]; }
    /// Gap between the two levels that bracket w (the outermost gap beyond the ends).
    float step(float w) const {
        const Index n = size();
        const std::uint32_t code = encode(w);
        if (code == 0) return levels[1] - levels[0];
        if (code == n - 1) return levels[n - 1] - levels[n - 2];
        const float neighbour = (w >= levels[code]) ? levels[code + 1] : levels[code - 1];
        return std::abs(neighbour - levels[code]);
    }
};

}  // namespace npft::quant
