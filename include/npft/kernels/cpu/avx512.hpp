#pragma once
// The AVX-512 path (F + BW + VL; target attribute, selected at run time by multiply.hpp): the AVX2 algorithm on
// 16-lane vectors. Codes are decoded 8 at a time by the AVX2 decoder and joined into 16 lanes; a 16-entry table
// (lut of up to 4 bits) is one vpermps. A group whose size is 8 mod 16 ends with a half-width step whose upper
// lanes multiply zeros (masked activation load), so it reads no activation past the group.
#include <algorithm>
#include <cstdint>

#include "../../core/config.hpp"
#include "avx2.hpp"
#include "cpu_features.hpp"
#include "problem.hpp"

#if NPFT_CPU_X86
#include <immintrin.h>
#endif

namespace npft::kernels::cpu::avx512 {

#if NPFT_CPU_X86

#define NPFT_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

// GCC 12's unmasked forms of some intrinsics start from an undefined register and trip -Wmaybe-uninitialized;
// the all-lanes maskz forms compute the same thing.
inline constexpr __mmask8 all_lanes8 = 0xff;
inline constexpr __mmask16 all_lanes16 = 0xffff;

NPFT_TARGET_AVX512 inline float horizontal_sum(__m512 v) {
    const __m256 low = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0x0f, _mm512_castps_pd(v), 0));
    const __m256 high = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0x0f, _mm512_castps_pd(v), 1));
    return avx2::horizontal_sum(_mm256_add_ps(low, high));
}

/// Codes j..j+15 (j % 8 == 0) as int32 lanes.
template <int Bits>
NPFT_TARGET_AVX512 inline __m512i decode16(const std::uint8_t* row, Index j) {
    if constexpr (Bits == 8) {
        return _mm512_maskz_cvtepu8_epi32(all_lanes16, _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j)));
    } else {
        const __m512i low = _mm512_castsi256_si512(avx2::decode8<Bits>(row, j));
        return _mm512_maskz_inserti64x4(all_lanes8, low, avx2::decode8<Bits>(row, j + 8), 1);
    }
}

/// Codes j..j+7 in the low 8 lanes, zeros above.
template <int Bits>
NPFT_TARGET_AVX512 inline __m512i decode8_wide(const std::uint8_t* row, Index j) {
    return _mm512_maskz_inserti64x4(all_lanes8, _mm512_setzero_si512(), avx2::decode8<Bits>(row, j), 0);
}

template <int Bits, bool Lut>
NPFT_TARGET_AVX512 inline __m512 weights(__m512i q, __m512 table16, const float* table) {
    if constexpr (!Lut) {
        return _mm512_maskz_cvtepi32_ps(all_lanes16, q);
    } else if constexpr (Bits <= 4) {
        return _mm512_maskz_permutexvar_ps(all_lanes16, q, table16);
    } else {
        return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), all_lanes16, q, table, 4);
    }
}

/// Output row r for the T tokens m0..m0+T-1 (see avx2::row_tile).
template <int Bits, bool Lut, int T>
NPFT_TARGET_AVX512 void row_tile(const GemmProblem& p, Index r, Index m0, const float* table) {
    constexpr int U = T <= 2 ? 4 : 2;
    const quant::QuantizedMatrix& w = *p.weights;
    const Index group = w.group_size();
    const Index groups = w.groups();
    const auto* row = reinterpret_cast<const std::uint8_t*>(p.row_words(r));
    __m512 table16 = _mm512_setzero_ps();
    if constexpr (Lut && Bits <= 4) table16 = _mm512_loadu_ps(table);
    const float* x[T];
    __m512 total[T];
    float correction[T];
NPFT_UNROLL4
    for (int k = 0; k < T; ++k) {
        x[k] = p.x + (m0 + k) * p.x_row_stride;
        total[k] = _mm512_setzero_ps();
        correction[k] = 0.0f;
    }
    const float symmetric_zero = static_cast<float>(1u << (Bits - 1));
    for (Index g = 0; g < groups; ++g) {
        const Index end = (g + 1) * group;
        __m512 acc[T][U];
NPFT_UNROLL4
        for (int k = 0; k < T; ++k)
NPFT_UNROLL4
            for (int u = 0; u < U; ++u) acc[k][u] = _mm512_setzero_ps();
        Index j = g * group;
        for (; j + 16 * U <= end; j += 16 * U) {
NPFT_UNROLL4
            for (int u = 0; u < U; ++u) {
                const __m512 v = weights<Bits, Lut>(decode16<Bits>(row, j + 16 * u), table16, table);
NPFT_UNROLL4
                for (int k = 0; k < T; ++k) acc[k][u] = _mm512_fmadd_ps(v, _mm512_loadu_ps(x[k] + j + 16 * u), acc[k][u]);
            }
        }
        for (; j + 16 <= end; j += 16) {
            const __m512 v = weights<Bits, Lut>(decode16<Bits>(row, j), table16, table);
NPFT_UNROLL4
            for (int k = 0; k < T; ++k) acc[k][0] = _mm512_fmadd_ps(v, _mm512_loadu_ps(x[k] + j), acc[k][0]);
        }
        if (j < end) {  // 8 codes left: the upper lanes see zero activations
            const __m512 v = weights<Bits, Lut>(decode8_wide<Bits>(row, j), table16, table);
NPFT_UNROLL4
            for (int k = 0; k < T; ++k)
                acc[k][0] = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(static_cast<__mmask16>(0x00ff), x[k] + j), acc[k][0]);
        }
        float scale = 1.0f;
        float zero = 0.0f;
        if constexpr (!Lut) {
            const std::size_t at = static_cast<std::size_t>(r * groups + g);
            scale = avx2::to_float(w.scales()[at]);
            zero = w.format() == quant::Format::uniform_asymmetric ? avx2::to_float(w.zeros()[at]) : symmetric_zero;
        }
NPFT_UNROLL4
        for (int k = 0; k < T; ++k) {
            __m512 dot = acc[k][0];
NPFT_UNROLL4
            for (int u = 1; u < U; ++u) dot = _mm512_add_ps(dot, acc[k][u]);
            total[k] = _mm512_fmadd_ps(_mm512_set1_ps(scale), dot, total[k]);
            if constexpr (!Lut) correction[k] += scale * zero * p.x_group_sums[(m0 + k) * groups + g];
        }
    }
NPFT_UNROLL4
    for (int k = 0; k < T; ++k) p.y(m0 + k, r) = horizontal_sum(total[k]) - correction[k];
}

template <int Bits, bool Lut>
NPFT_TARGET_AVX512 void multiply_rows_typed(const GemmProblem& p, Index row_begin, Index row_end) {
    const quant::QuantizedMatrix& w = *p.weights;
    alignas(64) float table[256] = {};
    const Index chunk = avx2::token_chunk(w.cols());
    for (Index m_begin = 0; m_begin < p.batch; m_begin += chunk) {
        const Index m_end = std::min(p.batch, m_begin + chunk);
        for (Index r = row_begin; r < row_end; ++r) {
            if constexpr (Lut) {
                for (Index q = 0; q < (Index{1} << Bits); ++q) table[q] = avx2::to_float(w.lut()[static_cast<std::size_t>((r << Bits) + q)]);
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

/// Computes output rows [row_begin, row_end). Requires CpuFeatures::has_avx512_path and a group size that is a
/// multiple of 8.
inline void multiply_rows(const GemmProblem& p, Index row_begin, Index row_end) {
    dispatch_bits_and_format(*p.weights, [&](auto bits, auto lut) { multiply_rows_typed<bits(), lut()>(p, row_begin, row_end); });
}

#undef NPFT_TARGET_AVX512

#endif  // NPFT_CPU_X86

}  // namespace npft::kernels::cpu::avx512
