#pragma once
// int8 activations, part 3 of 4: the problem the kernel receives, the integer dot products of decoded chunks with int8
// activations, and their accumulation into a tile of output rows and tokens. Overview: int8_activations.hpp.
#include <algorithm>
#include <cstdint>

#include "../../core/config.hpp"
#include "../../core/eigen.hpp"
#include "../../quant/quantized_matrix.hpp"
#include "avx2.hpp"
#include "cpu_features.hpp"
#include "int8_activation_quantization.hpp"
#include "int8_weight_decoding.hpp"

#if NPFT_CPU_X86
#include <immintrin.h>
#endif

namespace npft::kernels::cpu {

/// What the int8 kernel receives (multiply.hpp builds it once per call).
struct Int8Problem {
    const quant::QuantizedMatrix* weights = nullptr;
    const Int8Activations* x = nullptr;
    /// Sums of x_hat over each weight group, [batch][groups] (uniform formats; the zero-point term), or over the
    /// whole row, [batch] (LUT formats; the fixed-point offset term).
    const float* x_sums = nullptr;
    MatrixView<float> y;  ///< batch x N
    /// The last packed row again followed by zero bytes: decoders read up to 32 bytes past a row's last code.
    const std::uint8_t* last_row_padded = nullptr;
    /// 3-bit codes in the plane layout (bit_planes.hpp), plane_row_bytes apart, or null: the batch-1 kernel's AVX2
    /// decoder then reads these instead of the stored codes (PreparedMatrix).
    const std::uint8_t* planes = nullptr;
    Index plane_row_bytes = 0;

    const std::uint8_t* row_bytes(Index r) const {
        return r == weights->rows() - 1 ? last_row_padded
                                        : reinterpret_cast<const std::uint8_t*>(weights->codes().row_words(r));
    }
    const std::uint8_t* plane_row(Index r) const { return planes + r * plane_row_bytes; }
};

/// Bytes of zero padding after the copy of the last row (Int8Problem::last_row_padded).
inline constexpr Index int8_last_row_padding_bytes = 32;

#if NPFT_CPU_X86

namespace int8 {

#define NPFT_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))

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
inline constexpr Index prefetch_distance = 2048;

/// The int32 dot products of chunk c of R rows with T tokens, as floats (lanes 0-3 block 0, 4-7 block 1).
template <class Decoder, bool Lut, int R, int T>
NPFT_TARGET_AVX2 inline void chunk_products(const Decoder& decoder, const std::uint8_t* const (&rows)[R],
                                            const LutTables (&tables)[R], const std::int8_t* const (&x)[T], Index c,
                                            __m256 (&dots)[R][T]) {
    constexpr Index bytes = Decoder::chunk_bytes;
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
NPFT_TARGET_AVX2 inline void row_scales(const quant::QuantizedMatrix& w, Index r, float* scale, float* scaled_zero) {
    const Index groups = w.groups();
    const half* s = w.scales().data() + r * groups;
    const bool asymmetric = w.format() == quant::Format::uniform_asymmetric;
    const half* z = asymmetric ? w.zeros().data() + r * groups : nullptr;
    const __m256 symmetric_zero = _mm256_set1_ps(static_cast<float>(1 << (Bits - 1)));
    Index g = 0;
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
NPFT_TARGET_AVX2 inline float dot(const float* a, const float* b, Index n) {
    __m256 acc = _mm256_setzero_ps();
    Index i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    float sum = horizontal_sum(acc);
    for (; i < n; ++i) sum += a[i] * b[i];
    return sum;
}

/// acc[i][t] += chunk c's products of row i and token t, times the token's per-block activation scales.
template <class Decoder, bool Lut, int R, int T>
NPFT_TARGET_AVX2 inline void accumulate_chunk(const Decoder& decoder, const std::uint8_t* const (&rows)[R],
                                              const LutTables (&tables)[R], const std::int8_t* const (&x)[T],
                                              const float* const (&xd)[T], Index c, __m256 (&acc)[R][T]) {
    __m256 dots[R][T];
    chunk_products<Decoder, Lut, R, T>(decoder, rows, tables, x, c, dots);
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
/// `scratch` holds 2 * R * groups floats (uniform formats). Decoder: a ChunkDecoder<Bits> (stored codes) or
/// PlaneDecoder3 (Int8Problem::planes).
template <class Decoder, bool Lut, bool ChunkScales, int R, int T>
NPFT_TARGET_AVX2 void tile(const Int8Problem& p, const Decoder& decoder, const Index (&row)[R], Index m0,
                           float* scratch) {
    constexpr int Bits = Decoder::bits;
    const quant::QuantizedMatrix& w = *p.weights;
    const Int8Activations& a = *p.x;
    const Index chunks = a.chunks;

    const std::uint8_t* rows[R];
    LutTables tables[R];
NPFT_UNROLL4
    for (int i = 0; i < R; ++i) {
        rows[i] = Decoder::reads_planes ? p.plane_row(row[i]) : p.row_bytes(row[i]);
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
        for (Index c = 0; c < chunks; ++c) accumulate_chunk<Decoder, Lut, R, T>(decoder, rows, tables, x, xd, c, total);
NPFT_UNROLL4
        for (int i = 0; i < R; ++i)
NPFT_UNROLL4
            for (int t = 0; t < T; ++t) {
                // level = scale * (u - 2048): the offset term is 2048 * scale * sum of x_hat over the row.
                p.y(m0 + t, row[i]) = tables[i].scale * (horizontal_sum(total[i][t]) - 2048.0f * p.x_sums[m0 + t]);
            }
        return;
    } else {
        const Index groups = w.groups();
        float* scale[R];
        float* scaled_zero[R];
NPFT_UNROLL4
        for (int i = 0; i < R; ++i) {
            scale[i] = scratch + 2 * i * groups;
            scaled_zero[i] = scale[i] + groups;
            row_scales<Bits>(w, row[i], scale[i], scaled_zero[i]);
        }
        if constexpr (ChunkScales) {
            const Index group_blocks = w.group_size() / Int8Activations::block;
            const Index blocks = a.blocks();
            for (Index c = 0; c < chunks; ++c) {
                __m256 dots[R][T];
                chunk_products<Decoder, Lut, R, T>(decoder, rows, tables, x, c, dots);
                const Index g0 = (2 * c) / group_blocks;
                const Index g1 = (2 * c + 1) / group_blocks;
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
            const Index group_chunks = w.group_size() / Int8Activations::chunk;
            for (Index g = 0; g < groups; ++g) {
                __m256 acc[R][T];
NPFT_UNROLL4
                for (int i = 0; i < R; ++i)
NPFT_UNROLL4
                    for (int t = 0; t < T; ++t) acc[i][t] = _mm256_setzero_ps();
                for (Index c = g * group_chunks; c < (g + 1) * group_chunks; ++c)
                    accumulate_chunk<Decoder, Lut, R, T>(decoder, rows, tables, x, xd, c, acc);
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

#undef NPFT_TARGET_AVX2

}  // namespace int8

#endif  // NPFT_CPU_X86

}  // namespace npft::kernels::cpu
