#pragma once
// Grids that ARE llama.cpp's Q4_0 and Q8_0: the same block of 32 weights, the same scale rule, the same rounding and
// clamp as ggml's reference quantizer (ggml-quants.c, quantize_row_q4_0_ref / quantize_row_q8_0_ref), the scale stored
// as fp16. "NPFT, then RTN with one of these grids" therefore exports to GGUF losslessly, and the exported blocks are
// byte for byte what llama.cpp's own quantizer makes from the same fp32 weights (io/gguf_blocks.hpp maps them;
// tests/python/check_gguf.py checks the bytes against PyPI gguf's quantizers).
//
//   Q4_0: m = the element of largest magnitude (signed, the first one on ties), d = m / -8, id = 1/d (0 if d == 0),
//         q = min(15, trunc(x * id + 8.5)); w = fp16(d) * (q - 8). The scale carries m's sign, so levels reach -8 |d|
//         or +8 |d| towards m: this is why uniform_symmetric scales may be negative (quant/params.hpp).
//   Q8_0: d = max |x| / 127, id = 1/d (0 if d == 0), q = roundf(x * id) (half away from zero), in [-127, 127];
//         w = fp16(d) * q. Stored here as the 8-bit symmetric code q + 128.
//
// The codes come from the fp32 d (as in ggml), not from the stored fp16 scale: the hook encode() below reproduces that.
// Products are rounded to float explicitly, so no compiler contraction into a fused multiply-add can change a code.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>

#include "../core/error.hpp"
#include "grid.hpp"
#include "params.hpp"

namespace npft::quant {

namespace detail {
/// x * y rounded once to float, whatever -ffp-contract says: the double product of two floats is exact.
inline float product_rounded(float x, float y) { return static_cast<float>(static_cast<double>(x) * static_cast<double>(y)); }

inline void require_ggml_block(std::span<const float> values, const char* grid) {
    require(values.size() == 32, grid, " quantizes blocks of 32 weights, got a group of ", values.size());
    for (const float v : values) require(v - v == 0.0f, grid, ": weights hold a non-finite value (", v, ")");
}

inline float checked_ggml_scale(float d, const char* grid) {
    const float stored = round_to_half(d);
    require(stored - stored == 0.0f, grid, ": block scale ", d, " overflows fp16 (weights above about 5e5 in magnitude)");
    return stored;
}
}  // namespace detail

/// llama.cpp's Q4_0 as an npft grid: 4-bit uniform_symmetric codes in groups of 32, signed fp16 scale (4.5 bits/weight).
class GgmlQ4_0Grid {
public:
    int bits() const { return 4; }
    Format format() const { return Format::uniform_symmetric; }
    Index group_size(Index cols) const {
        require(cols % 32 == 0, "Q4_0 needs an input dimension that is a multiple of 32, got ", cols);
        return 32;
    }

    UniformParams fit(std::span<const float> values, std::span<const float> /*importance*/ = {}) const {
        detail::require_ggml_block(values, "Q4_0");
        UniformParams p;
        p.bits = 4;
        p.zero = 8.0f;
        p.scale = detail::checked_ggml_scale(fp32_scale(values), "Q4_0");
        return p;
    }

    /// ggml's codes for one block (`params` is what fit() returned for these values).
    void encode(std::span<const float> values, const UniformParams& /*params*/, std::uint8_t* codes) const {
        const float d = fp32_scale(values);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (std::size_t j = 0; j < values.size(); ++j) {
            const float shifted = detail::product_rounded(values[j], id) + 8.5f;
            // x * id lies in [-8, 8] by construction, so the truncation is in [0, 16]; 16 (x == -m) clamps to 15.
            codes[j] = static_cast<std::uint8_t>(std::min(15, static_cast<int>(shifted)));
        }
    }

private:
    static float fp32_scale(std::span<const float> values) {
        float amax = 0.0f, max = 0.0f;
        for (const float v : values) {
            if (std::abs(v) > amax) {
                amax = std::abs(v);
                max = v;
            }
        }
        return max / -8.0f;
    }
};

/// llama.cpp's Q8_0 as an npft grid: 8-bit uniform_symmetric codes (q + 128) in groups of 32, fp16 scale (8.5 bits/weight).
class GgmlQ8_0Grid {
public:
    int bits() const { return 8; }
    Format format() const { return Format::uniform_symmetric; }
    Index group_size(Index cols) const {
        require(cols % 32 == 0, "Q8_0 needs an input dimension that is a multiple of 32, got ", cols);
        return 32;
    }

    UniformParams fit(std::span<const float> values, std::span<const float> /*importance*/ = {}) const {
        detail::require_ggml_block(values, "Q8_0");
        UniformParams p;
        p.bits = 8;
        p.zero = 128.0f;
        p.scale = detail::checked_ggml_scale(fp32_scale(values), "Q8_0");
        return p;
    }

    void encode(std::span<const float> values, const UniformParams& /*params*/, std::uint8_t* codes) const {
        const float d = fp32_scale(values);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (std::size_t j = 0; j < values.size(); ++j) {
            // roundf: halves away from zero. |x * id| <= 127 up to rounding of id, so the clamp only guards that rounding.
            const float q = std::round(detail::product_rounded(values[j], id));
            codes[j] = static_cast<std::uint8_t>(std::clamp(static_cast<int>(q), -127, 127) + 128);
        }
    }

private:
    static float fp32_scale(std::span<const float> values) {
        float amax = 0.0f;
        for (const float v : values) amax = std::max(amax, std::abs(v));
        return amax / 127.0f;
    }
};

static_assert(Grid<GgmlQ4_0Grid> && Grid<GgmlQ8_0Grid>);

}  // namespace npft::quant
