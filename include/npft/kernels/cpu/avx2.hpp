#pragma once
// The AVX2 + FMA (+ F16C) path (compiled with a function-level target attribute, selected at run time by multiply.hpp).
//
// It reads the canonical packed layout directly, so a QuantizedMatrix runs without any repacking. Codes are decoded
// 8 at a time into int32 lanes (j must be a multiple of 8: the code then starts on a byte) and converted to float;
// the zero point is folded out of the inner loop with the per-group sums of x:
//   y[m][r] = sum_g scale[r][g] * (sum_{j in g} q[r][j] x[m][j])  -  sum_g scale[r][g] * zero[r][g] * xsum[m][g]
// so the inner loop is decode, convert, one FMA per token. LUT rows keep their table in registers (vpermps).
// Tokens are processed 4 at a time per decoded vector; token chunks are sized so that their activations stay in L2.
// Group sizes must be multiples of 8 (multiply.hpp sends other matrices to the portable path).
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "../../core/config.hpp"
#include "cpu_features.hpp"
#include "problem.hpp"

#if NPFT_CPU_X86
#include <immintrin.h>
#endif

namespace npft::kernels::cpu::avx2 {

#if NPFT_CPU_X86

#define NPFT_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))

/// Codes j..j+7 (j % 8 == 0) of a packed row as int32 lanes. Reads 4 bytes (bits <= 4) or 8 bytes from the
/// first code's byte, so a row must be readable 8 bytes past its last code (GemmProblem::row_words).
template <int Bits>
NPFT_TARGET_AVX2 inline __m256i decode8(const std::uint8_t* row, Index j) {
    const std::uint8_t* at = row + (j >> 3) * Bits;  // 8 codes are Bits bytes (a shift, not a signed division)
    if constexpr (Bits == 8) {
        return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(at)));
    } else if constexpr (Bits <= 4) {
        // The 8 codes lie in one 32-bit word: broadcast it and shift lane i right by i * Bits.
        std::uint32_t word;
        std::memcpy(&word, at, sizeof word);
        const __m256i shifts = _mm256_setr_epi32(0, Bits, 2 * Bits, 3 * Bits, 4 * Bits, 5 * Bits, 6 * Bits, 7 * Bits);
        const __m256i lanes = _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(word)), shifts);
        return _mm256_and_si256(lanes, _mm256_set1_epi32((1 << Bits) - 1));
    } else {
        // 5..7 bits: codes 0..3 lie in the low 32 bits, codes 4..7 in the 32 bits from bit 4 * Bits.
        std::uint64_t stream;
        std::memcpy(&stream, at, sizeof stream);
        const __m128i low = _mm_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(stream)));
        const __m128i high = _mm_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(stream >> (4 * Bits))));
        const __m256i shifts = _mm256_setr_epi32(0, Bits, 2 * Bits, 3 * Bits, 0, Bits, 2 * Bits, 3 * Bits);
        const __m256i lanes = _mm256_srlv_epi32(_mm256_set_m128i(high, low), shifts);
        return _mm256_and_si256(lanes, _mm256_set1_epi32((1 << Bits) - 1));
    }
}

/// One row's lookup table, as registers for up to 16 entries and as memory for gathers beyond.
struct LutRegisters {
    __m256 low;   ///< entries 0..7
    __m256 high;  ///< entries 8..15
};

/// Weights j..j+7 of the row as floats: the code itself (uniform; scale and zero applied per group) or the table value.
template <int Bits, bool Lut>
NPFT_TARGET_AVX2 inline __m256 weights8(const std::uint8_t* row, Index j, const LutRegisters& t, const float* table) {
    const __m256i q = decode8<Bits>(row, j);
    if constexpr (!Lut) {
        return _mm256_cvtepi32_ps(q);
    } else if constexpr (Bits <= 3) {
        return _mm256_permutevar8x32_ps(t.low, q);
    } else if constexpr (Bits == 4) {
        // vpermps uses the low 3 bits of the index; bit 3 (moved to the sign bit) picks the table half.
        const __m256 low = _mm256_permutevar8x32_ps(t.low, q);
        const __m256 high = _mm256_permutevar8x32_ps(t.high, q);
        return _mm256_blendv_ps(low, high, _mm256_castsi256_ps(_mm256_slli_epi32(q, 28)));
    } else {
        return _mm256_i32gather_ps(table, q, 4);
    }
}

/// fp16 metadata to float in one instruction (F16C); the portable conversion costs as much as the dot product.
NPFT_TARGET_AVX2 inline float to_float(half h) { return _cvtsh_ss(h.bits); }

NPFT_TARGET_AVX2 inline float horizontal_sum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/// Output row r for the T tokens m0..m0+T-1. `table` holds the row's lut as floats (lut format only).
template <int Bits, bool Lut, int T>
NPFT_TARGET_AVX2 void row_tile(const GemmProblem& p, Index r, Index m0, const float* table) {
    constexpr int U = T <= 2 ? 4 : 2;  // independent accumulators per token: enough to cover the FMA latency
    const quant::QuantizedMatrix& w = *p.weights;
    const Index group = w.group_size();
    const Index groups = w.groups();
    const auto* row = reinterpret_cast<const std::uint8_t*>(p.row_words(r));
    LutRegisters t{_mm256_setzero_ps(), _mm256_setzero_ps()};
    if constexpr (Lut && Bits <= 4) {
        t.low = _mm256_loadu_ps(table);
        t.high = _mm256_loadu_ps(table + 8);
    }
    const float* x[T];
    __m256 total[T];
    float correction[T];
NPFT_UNROLL4
    for (int k = 0; k < T; ++k) {
        x[k] = p.x + (m0 + k) * p.x_row_stride;
        total[k] = _mm256_setzero_ps();
        correction[k] = 0.0f;
    }
    const float symmetric_zero = static_cast<float>(1u << (Bits - 1));
    for (Index g = 0; g < groups; ++g) {
        const Index end = (g + 1) * group;
        __m256 acc[T][U];
NPFT_UNROLL4
        for (int k = 0; k < T; ++k)
NPFT_UNROLL4
            for (int u = 0; u < U; ++u) acc[k][u] = _mm256_setzero_ps();
        Index j = g * group;
        for (; j + 8 * U <= end; j += 8 * U) {
NPFT_UNROLL4
            for (int u = 0; u < U; ++u) {
                const __m256 v = weights8<Bits, Lut>(row, j + 8 * u, t, table);
NPFT_UNROLL4
                for (int k = 0; k < T; ++k) acc[k][u] = _mm256_fmadd_ps(v, _mm256_loadu_ps(x[k] + j + 8 * u), acc[k][u]);
            }
        }
        for (; j < end; j += 8) {
            const __m256 v = weights8<Bits, Lut>(row, j, t, table);
NPFT_UNROLL4
            for (int k = 0; k < T; ++k) acc[k][0] = _mm256_fmadd_ps(v, _mm256_loadu_ps(x[k] + j), acc[k][0]);
        }
        float scale = 1.0f;
        float zero = 0.0f;
        if constexpr (!Lut) {
            const std::size_t at = static_cast<std::size_t>(r * groups + g);
            scale = to_float(w.scales()[at]);
            zero = w.format() == quant::Format::uniform_asymmetric ? to_float(w.zeros()[at]) : symmetric_zero;
        }
NPFT_UNROLL4
        for (int k = 0; k < T; ++k) {
            __m256 dot = acc[k][0];
NPFT_UNROLL4
            for (int u = 1; u < U; ++u) dot = _mm256_add_ps(dot, acc[k][u]);
            total[k] = _mm256_fmadd_ps(_mm256_set1_ps(scale), dot, total[k]);
            if constexpr (!Lut) correction[k] += scale * zero * p.x_group_sums[(m0 + k) * groups + g];
        }
    }
NPFT_UNROLL4
    for (int k = 0; k < T; ++k) p.y(m0 + k, r) = horizontal_sum(total[k]) - correction[k];
}

/// Tokens per pass over the rows: their activations should stay in L2 (512 KB on Zen 3, 1-2 MB on recent Intel).
inline Index token_chunk(Index cols) {
    const Index fit = (192 * 1024) / (cols * static_cast<Index>(sizeof(float)));
    return std::max<Index>(4, std::min<Index>(16, fit) / 4 * 4);
}

template <int Bits, bool Lut>
NPFT_TARGET_AVX2 void multiply_rows_typed(const GemmProblem& p, Index row_begin, Index row_end) {
    const quant::QuantizedMatrix& w = *p.weights;
    alignas(32) float table[256] = {};
    const Index chunk = token_chunk(w.cols());
    for (Index m_begin = 0; m_begin < p.batch; m_begin += chunk) {
        const Index m_end = std::min(p.batch, m_begin + chunk);
        for (Index r = row_begin; r < row_end; ++r) {
            if constexpr (Lut) {
                for (Index q = 0; q < (Index{1} << Bits); ++q) table[q] = to_float(w.lut()[static_cast<std::size_t>((r << Bits) + q)]);
            }
            Index m = m_begin;
            for (; m + 4 <= m_end; m += 4) row_tile<Bits, Lut, 4>(p, r, m, table);
            switch (m_end - m) {
                case 3: row_tile<Bits, Lut, 3>(p, r, m, table); break;
                case 2: row_tile<Bits, Lut, 2>(p, r, m, table); break;
                case 1: row_tile<Bits, Lut, 1>(p, r, m, table); break;
                default: break;
            }
        }
    }
}

/// Computes output rows [row_begin, row_end). Requires the AVX2 path (CpuFeatures::has_avx2_path) and a group size
/// that is a multiple of 8.
inline void multiply_rows(const GemmProblem& p, Index row_begin, Index row_end) {
    dispatch_bits_and_format(*p.weights, [&](auto bits, auto lut) { multiply_rows_typed<bits(), lut()>(p, row_begin, row_end); });
}

#undef NPFT_TARGET_AVX2

#endif  // NPFT_CPU_X86

}  // namespace npft::kernels::cpu::avx2
