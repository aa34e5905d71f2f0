#pragma once
// int8 activations, part 1 of 4: quantizing activations to int8 in blocks of 32, in the order the weight decoder
// produces (int8_stored_at), and the per-group sums of the dequantized activations. Overview: int8_activations.hpp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../../core/config.hpp"
#include "../../core/eigen.hpp"
#include "../../core/error.hpp"
#include "../../quant/quantized_matrix.hpp"
#include "cpu_features.hpp"
#include "threading.hpp"

#if NPFT_CPU_X86
#include <immintrin.h>
#endif

namespace npft::kernels::cpu {

/// Where activation j goes in the kernel's order for b-bit codes: chunk (j / 64) * 64 + vector * 32 + block * 16 +
/// byte, with block = (j / 32) % 2 and (vector, byte) set by how the decoder unpacks code c = j % 32 of a block:
///   4 bit: low nibbles then high nibbles        vector c % 2,        byte c / 2
///   3 and 8 bit: codes 0-15, then codes 16-31   vector c / 16,       byte c % 16
///   2 bit: bit pairs 0, 2 | 4, 6 of each byte   vector (c % 4) / 2,  byte ((c % 4) % 2) * 8 + c / 4
constexpr Index int8_stored_at(Index j, int bits) {
    const Index c = j % 32;
    const Index block = (j / 32) % 2;
    Index vector = 0;
    Index byte = 0;
    if (bits == 4) {
        vector = c % 2;
        byte = c / 2;
    } else if (bits == 3 || bits == 8) {
        vector = c / 16;
        byte = c % 16;
    } else {
        vector = (c % 4) / 2;
        byte = ((c % 4) % 2) * 8 + c / 4;
    }
    return (j / 64) * 64 + vector * 32 + block * 16 + byte;
}

/// Activations quantized to int8 in blocks of 32: x[m][j] ~ scales[m][j / 32] * value of j (block scale d = max|x| / 127,
/// d = 0 for an all-zero block; a block holding NaN or Inf gets d = NaN, so the output is NaN as with fp32).
struct Int8Activations {
    static constexpr Index block = 32;
    static constexpr Index chunk = 64;
    int code_bits = 4;                 ///< the decoder order the values are stored in (int8_stored_at): 2, 3, 4 or 8
    Index batch = 0;
    Index cols = 0;                    ///< K, a multiple of 32
    Index chunks = 0;                  ///< ceil(K / 64); a missing last block is zero
    std::vector<std::int8_t> values;   ///< [batch][chunks * 64], decoder order
    std::vector<float> chunk_scales;   ///< [batch][chunks * 8]: lanes 0-3 the first block's d, lanes 4-7 the second's
    std::vector<float> scales;         ///< [batch][cols / 32], natural order
    std::vector<float> block_sums;     ///< [batch][cols / 32]: d * sum of the block's int8 values (sum of x_hat)

    Index blocks() const { return cols / block; }
    Index padded_cols() const { return chunks * chunk; }

    /// The dequantized activations x_hat in natural order (what the kernel multiplies exactly).
    Matrix dequantize() const {
        Matrix x(batch, cols);
        for (Index m = 0; m < batch; ++m)
            for (Index j = 0; j < cols; ++j)
                x(m, j) = scales[static_cast<std::size_t>(m * blocks() + j / block)] *
                          static_cast<float>(values[static_cast<std::size_t>(m * padded_cols() + int8_stored_at(j, code_bits))]);
        return x;
    }
};

namespace detail {

/// One block of 32: q[i] = round-to-nearest-even(clamp(x[i] / d, -127, 127)), d = max|x| / 127, in natural order.
/// Returns false (q untouched) when the block holds NaN or Inf.
struct BlockQuantization {
    float d = 0.0f;
    int sum = 0;
};

/// A step below the smallest normal float would make 1 / d overflow (and 0 * inf a NaN): such blocks (max|x| below
/// 1.5e-36) are quantized to zero.
inline float flush_tiny(float d) { return d >= std::numeric_limits<float>::min() ? d : 0.0f; }

inline bool quantize_block_portable(const float* x, std::int8_t* q, BlockQuantization& out) {
    float largest = 0.0f;
    bool finite = true;
    for (Index i = 0; i < 32; ++i) {
        finite = finite && std::isfinite(x[i]);
        largest = std::max(largest, std::abs(x[i]));
    }
    if (!finite) return false;
    out.d = flush_tiny(largest / 127.0f);
    const float inverse = out.d > 0.0f ? 1.0f / out.d : 0.0f;
    out.sum = 0;
    for (Index i = 0; i < 32; ++i) {
        const int v = static_cast<int>(std::nearbyint(std::clamp(x[i] * inverse, -127.0f, 127.0f)));
        q[i] = static_cast<std::int8_t>(v);
        out.sum += v;
    }
    return true;
}

#if NPFT_CPU_X86
/// The same, bit for bit, in AVX2 (cvtps2dq rounds to nearest even like nearbyint in the default rounding mode): the
/// scalar loop costs 2% of a 4096 x 4096 4-bit GEMV.
__attribute__((target("avx2,fma"))) inline bool quantize_block_avx2(const float* x, std::int8_t* q, BlockQuantization& out) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 finite_limit = _mm256_set1_ps(std::numeric_limits<float>::max());
    __m256 v[4];
    __m256 largest = _mm256_setzero_ps();
    int finite = 0xff;
    for (int k = 0; k < 4; ++k) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        const __m256 magnitude = _mm256_andnot_ps(sign, v[k]);
        finite &= _mm256_movemask_ps(_mm256_cmp_ps(magnitude, finite_limit, _CMP_LE_OQ));  // false for NaN and Inf
        largest = _mm256_max_ps(largest, magnitude);
    }
    if (finite != 0xff) return false;
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(largest), _mm256_extractf128_ps(largest, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    out.d = flush_tiny(_mm_cvtss_f32(m) / 127.0f);
    const __m256 inverse = _mm256_set1_ps(out.d > 0.0f ? 1.0f / out.d : 0.0f);
    __m256i r[4];
    __m256i sum = _mm256_setzero_si256();
    for (int k = 0; k < 4; ++k) {
        const __m256 scaled = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v[k], inverse), _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
        r[k] = _mm256_cvtps_epi32(scaled);
        sum = _mm256_add_epi32(sum, r[k]);
    }
    // Packing works per 128-bit lane; the final permute restores the natural order.
    const __m256i bytes = _mm256_permutevar8x32_epi32(
        _mm256_packs_epi16(_mm256_packs_epi32(r[0], r[1]), _mm256_packs_epi32(r[2], r[3])), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), bytes);
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    out.sum = _mm_cvtsi128_si32(s);
    return true;
}
#endif

inline bool quantize_block(const float* x, std::int8_t* q, BlockQuantization& out) {
#if NPFT_CPU_X86
    if (cpu_features().has_avx2_path()) return quantize_block_avx2(x, q, out);
#endif
    return quantize_block_portable(x, q, out);
}

}  // namespace detail

/// Quantizes x (batch rows of `cols` contiguous floats, row m at x + m * row_stride) for the decoder of `code_bits`-bit
/// codes: round to nearest (even) of x / d with d = max|x| / 127 per block of 32. Tokens are split over `threads`
/// (each token is quantized on its own, so the result does not depend on the split).
inline Int8Activations quantize_activations_int8(const float* x, Index row_stride, Index batch, Index cols, int code_bits,
                                                 int threads = 1) {
    require(cols > 0 && cols % Int8Activations::block == 0, "int8 activations need a positive multiple of 32 inputs, got ", cols);
    require((code_bits >= 2 && code_bits <= 4) || code_bits == 8, "int8 activations are laid out for 2, 3, 4 or 8-bit codes, got ",
            code_bits);
    require(batch >= 0, "batch must be non-negative, got ", batch);
    Int8Activations a;
    a.code_bits = code_bits;
    a.batch = batch;
    a.cols = cols;
    a.chunks = (cols + Int8Activations::chunk - 1) / Int8Activations::chunk;
    const Index blocks = a.blocks();
    a.values.assign(static_cast<std::size_t>(batch * a.padded_cols()), 0);
    a.chunk_scales.assign(static_cast<std::size_t>(batch * a.chunks * 8), 0.0f);
    a.scales.resize(static_cast<std::size_t>(batch * blocks));
    a.block_sums.resize(a.scales.size());
    Index position[64];  // where each of a chunk's 64 activations goes
    for (Index j = 0; j < 64; ++j) position[j] = int8_stored_at(j, code_bits);
    // 16 tokens at least per thread: below that the hand-off costs more than it saves.
    parallel_rows(batch, threads, 16, [&](Index token_begin, Index token_end) {
        for (Index m = token_begin; m < token_end; ++m) {
            const float* xm = x + m * row_stride;
            std::int8_t* values = a.values.data() + m * a.padded_cols();
            for (Index b = 0; b < blocks; ++b) {
                std::int8_t q[32];
                detail::BlockQuantization block;
                float d = std::numeric_limits<float>::quiet_NaN();  // NaN or Inf in the block: values stay 0
                if (detail::quantize_block(xm + b * Int8Activations::block, q, block)) {
                    d = block.d;
                    std::int8_t* chunk = values + (b / 2) * Int8Activations::chunk;
                    const Index* at = position + (b % 2) * Int8Activations::block;
                    for (Index i = 0; i < Int8Activations::block; ++i) chunk[at[i]] = q[i];
                }
                a.scales[static_cast<std::size_t>(m * blocks + b)] = d;
                a.block_sums[static_cast<std::size_t>(m * blocks + b)] = d * static_cast<float>(block.sum);
                float* lanes = a.chunk_scales.data() + (m * a.chunks + b / 2) * 8 + (b % 2) * 4;
                std::fill(lanes, lanes + 4, d);
            }
        }
    });
    return a;
}

/// The sums the int8 kernel subtracts (Int8Problem::x_sums): per weight group for uniform formats, per row for LUT.
inline std::vector<float> int8_activation_sums(const quant::QuantizedMatrix& w, const Int8Activations& a) {
    const Index parts = w.format() == quant::Format::lut ? 1 : w.groups();
    const Index blocks_per_part = a.blocks() / parts;
    std::vector<float> sums(static_cast<std::size_t>(a.batch * parts), 0.0f);
    for (Index m = 0; m < a.batch; ++m)
        for (Index part = 0; part < parts; ++part) {
            float s = 0.0f;
            for (Index b = part * blocks_per_part; b < (part + 1) * blocks_per_part; ++b)
                s += a.block_sums[static_cast<std::size_t>(m * a.blocks() + b)];
            sums[static_cast<std::size_t>(m * parts + part)] = s;
        }
    return sums;
}

}  // namespace npft::kernels::cpu
