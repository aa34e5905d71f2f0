#pragma once
// The int8-activation path (the default of MultiplyOptions; Activations::fp32 opts out; as llama.cpp does): activations are quantized once per call to int8 in blocks of
// 32 with one fp32 scale per block, and the weight dot products run in integers (vpmaddubsw: 32 products per
// instruction instead of 8 FMAs). This is what reaches the memory-bandwidth limit at batch 1 on AVX2: the fp32 path
// spends about 13 instructions per 8 weights on decoding and converting, which makes it compute-bound.
//
// Formats: uniform 2, 3 and 4 bit (symmetric or asymmetric) with group sizes that are multiples of 32, and LUT 3 and
// 4 bit. Every other matrix runs the fp32 kernels. The kernel computes W x_hat exactly up to fp32 rounding, where
// x_hat is the dequantized int8 activation: the only accuracy cost is that of x_hat (each activation moves by up to
// half its block's step, max|x| / 254; docs/benchmarks.md gives the measured error) and, for LUT rows, the table held
// in 12-bit fixed point (each level moves by at most max|level| / 4094, about fp16's own rounding of the largest level).
//
// Layout. The kernel works on chunks of 64 codes (two blocks of 32). A chunk's codes are decoded into two vectors of 32
// unsigned bytes without any cross-lane shuffle, in an order that depends on the bit width; the activations are
// stored in that same order (int8_stored_at), so the products pair up with no shuffling at all. The low 128-bit lane
// of both vectors always holds the first block and the high lane the second, so the int32 partial sums keep the two
// blocks apart (each has its own activation scale and possibly its own weight group).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "../../core/config.hpp"
#include "../../core/eigen.hpp"
#include "../../core/error.hpp"
#include "../../quant/quantized_matrix.hpp"
#include "avx2.hpp"
#include "cpu_features.hpp"

#if NPFT_CPU_X86
#include <immintrin.h>
#endif

namespace npft::kernels::cpu {

/// Where activation j goes in the kernel's order for b-bit codes: chunk (j / 64) * 64 + vector * 32 + block * 16 +
/// byte, with block = (j / 32) % 2 and (vector, byte) set by how the decoder unpacks code c = j % 32 of a block:
///   4 bit: low nibbles then high nibbles        vector c % 2,        byte c / 2
///   3 bit: codes 0-15, then codes 16-31         vector c / 16,       byte c % 16
///   2 bit: bit pairs 0, 2 | 4, 6 of each byte   vector (c % 4) / 2,  byte ((c % 4) % 2) * 8 + c / 4
constexpr index int8_stored_at(index j, int bits) {
    const index c = j % 32;
    const index block = (j / 32) % 2;
    index vector = 0;
    index byte = 0;
    if (bits == 4) {
        vector = c % 2;
        byte = c / 2;
    } else if (bits == 3) {
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
    static constexpr index block = 32;
    static constexpr index chunk = 64;
    int code_bits = 4;                 ///< the decoder order the values are stored in (int8_stored_at)
    index batch = 0;
    index cols = 0;                    ///< K, a multiple of 32
    index chunks = 0;                  ///< ceil(K / 64); a missing last block is zero
    std::vector<std::int8_t> values;   ///< [batch][chunks * 64], decoder order
    std::vector<float> chunk_scales;   ///< [batch][chunks * 8]: lanes 0-3 the first block's d, lanes 4-7 the second's
    std::vector<float> scales;         ///< [batch][cols / 32], natural order
    std::vector<float> block_sums;     ///< [batch][cols / 32]: d * sum of the block's int8 values (sum of x_hat)

    index blocks() const { return cols / block; }
    index padded_cols() const { return chunks * chunk; }

    /// The dequantized activations x_hat in natural order (what the kernel multiplies exactly).
    Matrix dequantize() const {
        Matrix x(batch, cols);
        for (index m = 0; m < batch; ++m)
            for (index j = 0; j < cols; ++j)
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
    for (index i = 0; i < 32; ++i) {
        finite = finite && std::isfinite(x[i]);
        largest = std::max(largest, std::abs(x[i]));
    }
    if (!finite) return false;
    out.d = flush_tiny(largest / 127.0f);
    const float inverse = out.d > 0.0f ? 1.0f / out.d : 0.0f;
    out.sum = 0;
    for (index i = 0; i < 32; ++i) {
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
/// codes: round to nearest (even) of x / d with d = max|x| / 127 per block of 32.
inline Int8Activations quantize_activations_int8(const float* x, index row_stride, index batch, index cols, int code_bits) {
    require(cols > 0 && cols % Int8Activations::block == 0, "int8 activations need a positive multiple of 32 inputs, got ", cols);
    require(code_bits >= 2 && code_bits <= 4, "int8 activations are laid out for 2, 3 or 4-bit codes, got ", code_bits);
    require(batch >= 0, "batch must be non-negative, got ", batch);
    Int8Activations a;
    a.code_bits = code_bits;
    a.batch = batch;
    a.cols = cols;
    a.chunks = (cols + Int8Activations::chunk - 1) / Int8Activations::chunk;
    const index blocks = a.blocks();
    a.values.assign(static_cast<std::size_t>(batch * a.padded_cols()), 0);
    a.chunk_scales.assign(static_cast<std::size_t>(batch * a.chunks * 8), 0.0f);
    a.scales.resize(static_cast<std::size_t>(batch * blocks));
    a.block_sums.resize(a.scales.size());
    index position[64];  // where each of a chunk's 64 activations goes
    for (index j = 0; j < 64; ++j) position[j] = int8_stored_at(j, code_bits);
    for (index m = 0; m < batch; ++m) {
        const float* xm = x + m * row_stride;
        std::int8_t* values = a.values.data() + m * a.padded_cols();
        for (index b = 0; b < blocks; ++b) {
            std::int8_t q[32];
            detail::BlockQuantization block;
            float d = std::numeric_limits<float>::quiet_NaN();  // NaN or Inf in the block: values stay 0
            if (detail::quantize_block(xm + b * Int8Activations::block, q, block)) {
                d = block.d;
                std::int8_t* chunk = values + (b / 2) * Int8Activations::chunk;
                const index* at = position + (b % 2) * Int8Activations::block;
                for (index i = 0; i < Int8Activations::block; ++i) chunk[at[i]] = q[i];
            }
            a.scales[static_cast<std::size_t>(m * blocks + b)] = d;
            a.block_sums[static_cast<std::size_t>(m * blocks + b)] = d * static_cast<float>(block.sum);
            float* lanes = a.chunk_scales.data() + (m * a.chunks + b / 2) * 8 + (b % 2) * 4;
            std::fill(lanes, lanes + 4, d);
        }
    }
    return a;
}

/// Whether the int8 kernel runs w (x86 with the AVX2 path; the formats listed at the top of this file).
inline bool int8_kernel_applies(const quant::QuantizedMatrix& w) {
    if (!(NPFT_CPU_X86 && cpu_features().has_avx2_path())) return false;
    if (w.cols() % Int8Activations::block != 0) return false;
    if (w.format() == quant::Format::lut) return w.bits() == 3 || w.bits() == 4;
    return (w.bits() >= 2 && w.bits() <= 4) && w.group_size() % Int8Activations::block == 0;
}

/// What the int8 kernel receives (multiply.hpp builds it once per call).
struct Int8Problem {
    const quant::QuantizedMatrix* weights = nullptr;
    const Int8Activations* x = nullptr;
    /// Sums of x_hat over each weight group, [batch][groups] (uniform formats; the zero-point term), or over the
    /// whole row, [batch] (LUT formats; the fixed-point offset term).
    const float* x_sums = nullptr;
    MatrixView<float> y;  ///< batch x N
    /// The last packed row again followed by zero bytes: decoders read up to 16 bytes past a row's last code.
    const std::uint8_t* last_row_padded = nullptr;

    const std::uint8_t* row_bytes(index r) const {
        return r == weights->rows() - 1 ? last_row_padded
                                        : reinterpret_cast<const std::uint8_t*>(weights->codes().row_words(r));
    }
};

/// Bytes of zero padding after the copy of the last row (Int8Problem::last_row_padded).
inline constexpr index int8_last_row_padding_bytes = 16;

#if NPFT_CPU_X86

namespace int8 {

#define NPFT_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))

/// Decodes the 64 codes of a chunk (2 blocks of 32 b-bit codes, 8 b bytes) into two vectors of 32 bytes in the order
/// of int8_stored_at. When the last chunk of a row holds a single block, the read goes past the row's end by at most
/// the length of a one-block row (8, 12 or 16 bytes for 2, 3, 4 bit): inside the next row, or in the last row's
/// padding (Int8Problem::last_row_padded).
template <int Bits>
struct ChunkDecoder;

template <>
struct ChunkDecoder<4> {
    static constexpr index chunk_bytes = 32;
    NPFT_TARGET_AVX2 void decode(const std::uint8_t* chunk, __m256i& v0, __m256i& v1) const {
        const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(chunk));
        const __m256i low4 = _mm256_set1_epi8(0x0f);
        v0 = _mm256_and_si256(packed, low4);
        v1 = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4);
    }
};

template <>
struct ChunkDecoder<3> {
    static constexpr index chunk_bytes = 24;

    /// For each quarter q of a block (codes 8q..8q+7), per 16-bit lane k of a 128-bit lane: the two bytes holding
    /// code 8q + k (a pshufb control) and 2^(13 - s), s its bit offset in the low byte, so that a multiply moves the
    /// code to bits 13..15. Both 128-bit lanes are alike: each holds one block at bytes 0..11.
    alignas(32) std::int8_t shuffle[4][32] = {};
    alignas(32) std::int16_t multiplier[4][16] = {};

    constexpr ChunkDecoder() {
        for (int q = 0; q < 4; ++q)
            for (int lane = 0; lane < 2; ++lane)
                for (int k = 0; k < 8; ++k) {
                    const int bit = 3 * (8 * q + k);
                    shuffle[q][16 * lane + 2 * k] = static_cast<std::int8_t>(bit / 8);
                    shuffle[q][16 * lane + 2 * k + 1] = static_cast<std::int8_t>(bit / 8 + 1);  // <= 12: inside the lane
                    multiplier[q][8 * lane + k] = static_cast<std::int16_t>(1 << (13 - bit % 8));
                }
    }

    NPFT_TARGET_AVX2 __m256i quarter(__m256i bytes, int q) const {
        const __m256i control = _mm256_load_si256(reinterpret_cast<const __m256i*>(shuffle[q]));
        const __m256i scale = _mm256_load_si256(reinterpret_cast<const __m256i*>(multiplier[q]));
        // The multiply drops the bits above the code (from the next code or the next block); the shift drops those below.
        return _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(bytes, control), scale), 13);
    }

    NPFT_TARGET_AVX2 void decode(const std::uint8_t* chunk, __m256i& v0, __m256i& v1) const {
        // Block 0's 12 bytes in the low lane, block 1's in the high lane (each at bytes 0..11). The second block is
        // loaded from chunk + 8 and shifted down 4 bytes, so no load ends past the chunk's 24 bytes; when the chunk
        // holds one block, the read ends 12 bytes past it, inside the next row (at least 12 bytes) or the padding.
        const __m256i bytes = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(chunk))),
            _mm_srli_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(chunk + 8)), 4), 1);
        v0 = _mm256_packus_epi16(quarter(bytes, 0), quarter(bytes, 1));
        v1 = _mm256_packus_epi16(quarter(bytes, 2), quarter(bytes, 3));
    }
};

template <>
struct ChunkDecoder<2> {
    static constexpr index chunk_bytes = 16;
    NPFT_TARGET_AVX2 void decode(const std::uint8_t* chunk, __m256i& v0, __m256i& v1) const {
        // Quadwords [block 0, block 0, block 1, block 1]; each quadword is shifted by its own amount.
        const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(chunk));
        const __m256i twice = _mm256_permute4x64_epi64(_mm256_castsi128_si256(packed), 0x50);
        const __m256i low2 = _mm256_set1_epi8(0x03);
        v0 = _mm256_and_si256(_mm256_srlv_epi64(twice, _mm256_setr_epi64x(0, 2, 0, 2)), low2);
        v1 = _mm256_and_si256(_mm256_srlv_epi64(twice, _mm256_setr_epi64x(4, 6, 4, 6)), low2);
    }
};

/// A LUT row as two byte tables for vpshufb: level q = scale * (64 * high[q] + low[q] - 2048), high and low in 0..63.
/// Six-bit halves keep two vpmaddubsw results summable in int16 (2 * 2 * 63 * 127 < 32768).
struct LutTables {
    __m256i high;
    __m256i low;
    float scale;
};

NPFT_TARGET_AVX2 inline LutTables lut_tables(const quant::QuantizedMatrix& w, index r) {
    const int entries = 1 << w.bits();
    float levels[16] = {};
    float largest = 0.0f;
    for (int q = 0; q < entries; ++q) {
        levels[q] = _cvtsh_ss(w.lut()[static_cast<std::size_t>((r << w.bits()) + q)].bits);
        largest = std::max(largest, std::abs(levels[q]));
    }
    alignas(16) std::uint8_t high[16] = {};
    alignas(16) std::uint8_t low[16] = {};
    float scale = largest / 2047.0f;
    if (!std::isfinite(largest)) {
        scale = std::numeric_limits<float>::quiet_NaN();  // tables stay 0: never cast a NaN to int
    } else {
        const float inverse = scale > 0.0f ? 1.0f / scale : 0.0f;
        for (int q = 0; q < entries; ++q) {
            const int u = static_cast<int>(std::nearbyint(levels[q] * inverse)) + 2048;  // 1..4095
            high[q] = static_cast<std::uint8_t>(u >> 6);
            low[q] = static_cast<std::uint8_t>(u & 63);
        }
    }
    return {_mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(high))),
            _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(low))), scale};
}

/// The int32 dot products of a decoded chunk with 64 int8 activations: lanes 0-3 the first block, 4-7 the second.
template <bool Lut>
NPFT_TARGET_AVX2 inline __m256i chunk_dot(__m256i v0, __m256i v1, const std::int8_t* x, const LutTables& t) {
    const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
    const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32));
    const __m256i ones = _mm256_set1_epi16(1);
    if constexpr (!Lut) {
        // u8 code x s8 activation: at most 2 * 15 * 127 per pair, 4 * 15 * 127 after the add: no saturation.
        const __m256i pairs = _mm256_add_epi16(_mm256_maddubs_epi16(v0, x0), _mm256_maddubs_epi16(v1, x1));
        return _mm256_madd_epi16(pairs, ones);
    } else {
        const __m256i high = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_shuffle_epi8(t.high, v0), x0),
                                              _mm256_maddubs_epi16(_mm256_shuffle_epi8(t.high, v1), x1));
        const __m256i low = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_shuffle_epi8(t.low, v0), x0),
                                             _mm256_maddubs_epi16(_mm256_shuffle_epi8(t.low, v1), x1));
        return _mm256_add_epi32(_mm256_madd_epi16(high, _mm256_set1_epi16(64)), _mm256_madd_epi16(low, ones));
    }
}

using avx2::horizontal_sum;

/// How far ahead (bytes) each row stream is prefetched into L1. Not a multiple of 4 KiB: the four streams sit at the
/// same offset within their pages, so a line 4 KiB ahead falls in the same L1 set as the four lines in use and evicts
/// them. Measured on the development machine (4-bit 4096 x 4096, batch 1, weights from DRAM, 7 runs each, GB/s):
/// no prefetch 9.0-13.5, 1 KiB 9.3-17.1, 2 KiB 15.5-17.0, 4 KiB 8.1-13.9.
inline constexpr index prefetch_distance = 2048;

/// The int32 dot products of chunk c of R rows with T tokens, as floats (lanes 0-3 block 0, 4-7 block 1).
template <int Bits, bool Lut, int R, int T>
NPFT_TARGET_AVX2 inline void chunk_products(const ChunkDecoder<Bits>& decoder, const std::uint8_t* const (&rows)[R],
                                            const LutTables (&tables)[R], const std::int8_t* const (&x)[T], index c,
                                            __m256 (&dots)[R][T]) {
    constexpr index bytes = ChunkDecoder<Bits>::chunk_bytes;
NPFT_UNROLL4
    for (int i = 0; i < R; ++i) {
        _mm_prefetch(reinterpret_cast<const char*>(rows[i] + c * bytes + prefetch_distance), _MM_HINT_T0);
        __m256i v0, v1;
        decoder.decode(rows[i] + c * bytes, v0, v1);
NPFT_UNROLL4
        for (int t = 0; t < T; ++t) dots[i][t] = _mm256_cvtepi32_ps(chunk_dot<Lut>(v0, v1, x[t] + c * 64, tables[i]));
    }
}

/// Row r's group scales s_g and s_g * z_g as floats (z_g = 2^(b-1) when symmetric), converted 8 at a time: per-group
/// scalar conversions and the scalar zero-point sum cost a third of the 4-bit inner loop.
template <int Bits>
NPFT_TARGET_AVX2 inline void row_scales(const quant::QuantizedMatrix& w, index r, float* scale, float* scaled_zero) {
    const index groups = w.groups();
    const half* s = w.scales().data() + r * groups;
    const bool asymmetric = w.format() == quant::Format::uniform_asymmetric;
    const half* z = asymmetric ? w.zeros().data() + r * groups : nullptr;
    const __m256 symmetric_zero = _mm256_set1_ps(static_cast<float>(1 << (Bits - 1)));
    index g = 0;
    for (; g + 8 <= groups; g += 8) {
        const __m256 sv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + g)));
        const __m256 zv = asymmetric ? _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(z + g))) : symmetric_zero;
        _mm256_storeu_ps(scale + g, sv);
        _mm256_storeu_ps(scaled_zero + g, _mm256_mul_ps(sv, zv));
    }
    for (; g < groups; ++g) {
        scale[g] = _cvtsh_ss(s[g].bits);
        scaled_zero[g] = scale[g] * (asymmetric ? _cvtsh_ss(z[g].bits) : static_cast<float>(1 << (Bits - 1)));
    }
}

/// sum_i a[i] * b[i], 8 lanes at a time.
NPFT_TARGET_AVX2 inline float dot(const float* a, const float* b, index n) {
    __m256 acc = _mm256_setzero_ps();
    index i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    float sum = horizontal_sum(acc);
    for (; i < n; ++i) sum += a[i] * b[i];
    return sum;
}

/// acc[i][t] += chunk c's products of row i and token t, times the token's per-block activation scales.
template <int Bits, bool Lut, int R, int T>
NPFT_TARGET_AVX2 inline void accumulate_chunk(const ChunkDecoder<Bits>& decoder, const std::uint8_t* const (&rows)[R],
                                              const LutTables (&tables)[R], const std::int8_t* const (&x)[T],
                                              const float* const (&xd)[T], index c, __m256 (&acc)[R][T]) {
    __m256 dots[R][T];
    chunk_products<Bits, Lut, R, T>(decoder, rows, tables, x, c, dots);
NPFT_UNROLL4
    for (int i = 0; i < R; ++i)
NPFT_UNROLL4
        for (int t = 0; t < T; ++t) acc[i][t] = _mm256_fmadd_ps(dots[i][t], _mm256_loadu_ps(xd[t] + c * 8), acc[i][t]);
}

/// Output rows row[0..R) for tokens m0..m0+T-1.
///   Lut:         one table per row; the whole row is one accumulation.
///   ChunkScales: uniform with groups of an odd number of blocks (32, 96, ...): a chunk may span two groups, so the
///                weight scales are applied per chunk as a [group of block 0 x4 | group of block 1 x4] vector.
///   otherwise:   uniform with groups of whole chunks: scale once per group.
/// `scratch` holds 2 * R * groups floats (uniform formats).
template <int Bits, bool Lut, bool ChunkScales, int R, int T>
NPFT_TARGET_AVX2 void tile(const Int8Problem& p, const ChunkDecoder<Bits>& decoder, const index (&row)[R], index m0,
                           float* scratch) {
    const quant::QuantizedMatrix& w = *p.weights;
    const Int8Activations& a = *p.x;
    const index chunks = a.chunks;

    const std::uint8_t* rows[R];
    LutTables tables[R];
NPFT_UNROLL4
    for (int i = 0; i < R; ++i) {
        rows[i] = p.row_bytes(row[i]);
        if constexpr (Lut) {
            tables[i] = lut_tables(w, row[i]);
        } else {
            tables[i] = LutTables{_mm256_setzero_si256(), _mm256_setzero_si256(), 0.0f};
        }
    }
    const std::int8_t* x[T];
    const float* xd[T];  // per-chunk activation scales
NPFT_UNROLL4
    for (int t = 0; t < T; ++t) {
        x[t] = a.values.data() + (m0 + t) * a.padded_cols();
        xd[t] = a.chunk_scales.data() + (m0 + t) * chunks * 8;
    }

    __m256 total[R][T];
NPFT_UNROLL4
    for (int i = 0; i < R; ++i)
NPFT_UNROLL4
        for (int t = 0; t < T; ++t) total[i][t] = _mm256_setzero_ps();

    if constexpr (Lut) {
        for (index c = 0; c < chunks; ++c) accumulate_chunk<Bits, Lut, R, T>(decoder, rows, tables, x, xd, c, total);
NPFT_UNROLL4
        for (int i = 0; i < R; ++i)
NPFT_UNROLL4
            for (int t = 0; t < T; ++t) {
                // level = scale * (u - 2048): the offset term is 2048 * scale * sum of x_hat over the row.
                p.y(m0 + t, row[i]) = tables[i].scale * (horizontal_sum(total[i][t]) - 2048.0f * p.x_sums[m0 + t]);
            }
        return;
    } else {
        const index groups = w.groups();
        float* scale[R];
        float* scaled_zero[R];
NPFT_UNROLL4
        for (int i = 0; i < R; ++i) {
            scale[i] = scratch + 2 * i * groups;
            scaled_zero[i] = scale[i] + groups;
            row_scales<Bits>(w, row[i], scale[i], scaled_zero[i]);
        }
        if constexpr (ChunkScales) {
            const index group_blocks = w.group_size() / Int8Activations::block;
            const index blocks = a.blocks();
            for (index c = 0; c < chunks; ++c) {
                __m256 dots[R][T];
                chunk_products<Bits, Lut, R, T>(decoder, rows, tables, x, c, dots);
                const index g0 = (2 * c) / group_blocks;
                const index g1 = (2 * c + 1) / group_blocks;
                const bool second_block = 2 * c + 1 < blocks;
NPFT_UNROLL4
                for (int i = 0; i < R; ++i) {
                    const __m256 s = _mm256_setr_m128(_mm_broadcast_ss(scale[i] + g0),
                                                      second_block ? _mm_broadcast_ss(scale[i] + g1) : _mm_setzero_ps());
NPFT_UNROLL4
                    for (int t = 0; t < T; ++t)
                        total[i][t] = _mm256_fmadd_ps(_mm256_mul_ps(dots[i][t], _mm256_loadu_ps(xd[t] + c * 8)), s, total[i][t]);
                }
            }
        } else {
            const index group_chunks = w.group_size() / Int8Activations::chunk;
            for (index g = 0; g < groups; ++g) {
                __m256 acc[R][T];
NPFT_UNROLL4
                for (int i = 0; i < R; ++i)
NPFT_UNROLL4
                    for (int t = 0; t < T; ++t) acc[i][t] = _mm256_setzero_ps();
                for (index c = g * group_chunks; c < (g + 1) * group_chunks; ++c)
                    accumulate_chunk<Bits, Lut, R, T>(decoder, rows, tables, x, xd, c, acc);
NPFT_UNROLL4
                for (int i = 0; i < R; ++i) {
                    const __m256 s = _mm256_broadcast_ss(scale[i] + g);
NPFT_UNROLL4
                    for (int t = 0; t < T; ++t) total[i][t] = _mm256_fmadd_ps(acc[i][t], s, total[i][t]);
                }
            }
        }
        // The zero point folded out of the loop: sum_g s_g z_g sum_{j in g} x_hat_j.
NPFT_UNROLL4
        for (int i = 0; i < R; ++i)
NPFT_UNROLL4
            for (int t = 0; t < T; ++t)
                p.y(m0 + t, row[i]) = horizontal_sum(total[i][t]) - dot(scaled_zero[i], p.x_sums + (m0 + t) * groups, groups);
    }
}

/// Rows [row_begin, row_end) for every token. One token reads 4 rows at once, taken a quarter of a piece of rows
/// apart: four long sequential streams, which the hardware prefetchers serve at close to the full read bandwidth
/// (adjacent rows make short 4-row bursts that they keep re-learning: half the bandwidth on the development machine;
/// streams hundreds of MiB apart are slow too, hence pieces of at most 16 MiB). Several tokens share each decoded
/// row, 4 tokens at a time.
template <int Bits, bool Lut, bool ChunkScales>
NPFT_TARGET_AVX2 void multiply_rows_typed(const Int8Problem& p, index row_begin, index row_end) {
    const index batch = p.x->batch;
    const ChunkDecoder<Bits> d{};
    std::vector<float> scratch(static_cast<std::size_t>(Lut ? 0 : 2 * 4 * p.weights->groups()));
    float* s = scratch.data();
    if (batch == 1) {
        const index row_bytes = p.weights->codes().words_per_row() * static_cast<index>(sizeof(std::uint32_t));
        const index piece_rows = std::max<index>(4, (index{16} << 20) / row_bytes);
        for (index begin = row_begin; begin < row_end; begin += piece_rows) {
            const index end = std::min(row_end, begin + piece_rows);
            const index quarter = (end - begin) / 4;
            for (index r = begin; r < begin + quarter; ++r) {
                const index rows[4] = {r, r + quarter, r + 2 * quarter, r + 3 * quarter};
                tile<Bits, Lut, ChunkScales, 4, 1>(p, d, rows, 0, s);
            }
            for (index r = begin + 4 * quarter; r < end; ++r) tile<Bits, Lut, ChunkScales, 1, 1>(p, d, {r}, 0, s);
        }
        return;
    }
    for (index r = row_begin; r < row_end; ++r) {
        const index rows[1] = {r};
        index m = 0;
        for (; m + 4 <= batch; m += 4) tile<Bits, Lut, ChunkScales, 1, 4>(p, d, rows, m, s);
        switch (batch - m) {
            case 3: tile<Bits, Lut, ChunkScales, 1, 3>(p, d, rows, m, s); break;
            case 2: tile<Bits, Lut, ChunkScales, 1, 2>(p, d, rows, m, s); break;
            case 1: tile<Bits, Lut, ChunkScales, 1, 1>(p, d, rows, m, s); break;
            default: break;
        }
    }
}

template <int Bits>
inline void multiply_rows_bits(const Int8Problem& p, index row_begin, index row_end) {
    const quant::QuantizedMatrix& w = *p.weights;
    if constexpr (Bits >= 3) {
        if (w.format() == quant::Format::lut) return multiply_rows_typed<Bits, true, false>(p, row_begin, row_end);
    }
    if (w.group_size() % Int8Activations::chunk == 0) return multiply_rows_typed<Bits, false, false>(p, row_begin, row_end);
    multiply_rows_typed<Bits, false, true>(p, row_begin, row_end);
}

/// Computes output rows [row_begin, row_end). Requires int8_kernel_applies(*p.weights) and activations laid out for
/// its bit width.
inline void multiply_rows(const Int8Problem& p, index row_begin, index row_end) {
    switch (p.weights->bits()) {
        case 2: multiply_rows_bits<2>(p, row_begin, row_end); break;
        case 3: multiply_rows_bits<3>(p, row_begin, row_end); break;
        default: multiply_rows_bits<4>(p, row_begin, row_end); break;
    }
}

#undef NPFT_TARGET_AVX2

}  // namespace int8

#endif  // NPFT_CPU_X86

/// The sums the int8 kernel subtracts (Int8Problem::x_sums): per weight group for uniform formats, per row for LUT.
inline std::vector<float> int8_activation_sums(const quant::QuantizedMatrix& w, const Int8Activations& a) {
    const index parts = w.format() == quant::Format::lut ? 1 : w.groups();
    const index blocks_per_part = a.blocks() / parts;
    std::vector<float> sums(static_cast<std::size_t>(a.batch * parts), 0.0f);
    for (index m = 0; m < a.batch; ++m)
        for (index part = 0; part < parts; ++part) {
            float s = 0.0f;
            for (index b = part * blocks_per_part; b < (part + 1) * blocks_per_part; ++b)
                s += a.block_sums[static_cast<std::size_t>(m * a.blocks() + b)];
            sums[static_cast<std::size_t>(m * parts + part)] = s;
        }
    return sums;
}

}  // namespace npft::kernels::cpu
