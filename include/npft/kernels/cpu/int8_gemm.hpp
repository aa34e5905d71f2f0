#pragma once
// The prompt-processing GEMM of the int8-activation path on AVX-512 VNNI (vpdpbusd: 64 u8 x s8 multiply-adds into 16
// int32 lanes per instruction). The batch-1 kernel (int8_activations.hpp) decodes every weight once per 4 tokens,
// which makes it decode-bound at large batches; this one decodes a panel of 32 rows to bytes once per call and reuses
// it for every token.
//
// Panel layout: the decoder's output (int8_stored_at order, the order the activations are stored in) regrouped so that
// one 64-byte vector holds 4 consecutive codes of 16 rows: [block b][quad k in 0..7][row 0..31][4 codes]. A block is
// 32 codes; its 8 quads sit at stored positions c * 64 + (k / 4) * 32 + (b % 2) * 16 + (k % 4) * 4 of chunk c = b / 2.
// The activation quad of a token is broadcast to all 16 lanes, so one vpdpbusd adds 4 products to 16 rows at once.
//
// Arithmetic (per output row r and token t, exact in int32 per block, then fp32):
//   y = sum_g s_g sum_{b in g} d_b * (sum_{j in b} q_j x_j) - sum_g s_g z_g X_g,    X_g = sum_{b in g} d_b sum_{j in b} x_j
// the same terms as the batch-1 kernel in a different order, so the same error bound holds; a token's result does not
// depend on the batch it is in (as long as the batch takes this kernel) or on the thread count.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../../core/config.hpp"
#include "cpu_features.hpp"
#include "int8_activations.hpp"

#if NPFT_CPU_X86
#include <immintrin.h>
#endif

namespace npft::kernels::cpu {

/// Batches from this size up take the GEMM on CPUs with AVX-512 VNNI (docs/benchmarks.md: below it the batch-1
/// kernel, which streams the weights once per 4 tokens, is as fast).
inline constexpr index int8_gemm_min_batch = 8;

/// Whether the VNNI GEMM can run w (uniform formats covered by the int8 kernel) on this CPU.
inline bool int8_gemm_applies(const quant::QuantizedMatrix& w) {
    return NPFT_CPU_X86 && cpu_features().has_avx512_path() && cpu_features().avx512vnni && int8_kernel_applies(w) &&
           w.format() != quant::Format::lut;
}

#if NPFT_CPU_X86

namespace int8_gemm {

#define NPFT_TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

inline constexpr int panel_rows = 32;
inline constexpr __mmask16 all_lanes16 = 0xffff;  ///< GCC 12 warns on the unmasked int-to-float conversion
inline constexpr index block_bytes = 8 * panel_rows * 4;  ///< one block of 32 codes for 32 rows

/// Rows [r0, r0 + 32) (rows from `limit` on are zero) decoded into `panel` (blocks * block_bytes bytes), with their
/// group scales s and s * z (z = 2^(b-1) when symmetric) as [group][32] floats.
template <int Bits>
NPFT_TARGET_VNNI void decode_panel(const Int8Problem& p, index r0, index limit, std::uint8_t* panel, float* scale,
                                   float* scaled_zero) {
    const quant::QuantizedMatrix& w = *p.weights;
    const index blocks = w.cols() / Int8Activations::block;
    const index chunks = (blocks + 1) / 2;
    const index groups = w.groups();
    const int8::ChunkDecoder<Bits> decoder{};
    const bool asymmetric = w.format() == quant::Format::uniform_asymmetric;
    for (int i = 0; i < panel_rows; ++i) {
        const index r = r0 + i;
        if (r >= limit) {
            for (index b = 0; b < blocks; ++b)
                for (int k = 0; k < 8; ++k) std::memset(panel + b * block_bytes + (k * panel_rows + i) * 4, 0, 4);
            for (index g = 0; g < groups; ++g) scale[g * panel_rows + i] = scaled_zero[g * panel_rows + i] = 0.0f;
            continue;
        }
        const std::uint8_t* row = p.row_bytes(r);
        for (index c = 0; c < chunks; ++c) {
            alignas(32) std::uint8_t bytes[64];
            __m256i v0, v1;
            decoder.decode(row + c * int8::ChunkDecoder<Bits>::chunk_bytes, v0, v1);
            _mm256_store_si256(reinterpret_cast<__m256i*>(bytes), v0);
            _mm256_store_si256(reinterpret_cast<__m256i*>(bytes + 32), v1);
            for (index half = 0; half < 2 && 2 * c + half < blocks; ++half) {
                std::uint8_t* out = panel + (2 * c + half) * block_bytes + i * 4;
                for (int k = 0; k < 8; ++k) std::memcpy(out + k * panel_rows * 4, bytes + (k / 4) * 32 + half * 16 + (k % 4) * 4, 4);
            }
        }
        for (index g = 0; g < groups; ++g) {
            const float s = _cvtsh_ss(w.scales()[static_cast<std::size_t>(r * groups + g)].bits);
            const float z = asymmetric ? _cvtsh_ss(w.zeros()[static_cast<std::size_t>(r * groups + g)].bits)
                                       : static_cast<float>(1 << (Bits - 1));
            scale[g * panel_rows + i] = s;
            scaled_zero[g * panel_rows + i] = s * z;
        }
    }
}

/// Output rows r0..r0+31 (those below `rows`) for tokens m0..m0+T-1 from a decoded panel.
template <int T>
NPFT_TARGET_VNNI void panel_tile(const Int8Problem& p, const std::uint8_t* panel, const float* scale,
                                 const float* scaled_zero, index r0, index rows, index m0) {
    const quant::QuantizedMatrix& w = *p.weights;
    const Int8Activations& a = *p.x;
    const index groups = w.groups();
    const index group_blocks = w.group_size() / Int8Activations::block;
    const index blocks = a.blocks();
    const std::int8_t* x[T];
    const float* d[T];
NPFT_UNROLL4
    for (int t = 0; t < T; ++t) {
        x[t] = a.values.data() + (m0 + t) * a.padded_cols();
        d[t] = a.scales.data() + (m0 + t) * blocks;
    }
    __m512 out[2][T];
NPFT_UNROLL4
    for (int t = 0; t < T; ++t) out[0][t] = out[1][t] = _mm512_setzero_ps();
    for (index g = 0; g < groups; ++g) {
        __m512 in_group[2][T];
NPFT_UNROLL4
        for (int t = 0; t < T; ++t) in_group[0][t] = in_group[1][t] = _mm512_setzero_ps();
        for (index b = g * group_blocks; b < (g + 1) * group_blocks; ++b) {
            const std::uint8_t* wb = panel + b * block_bytes;
            const index x_offset = (b / 2) * 64 + (b % 2) * 16;
            __m512i acc[2][T];
NPFT_UNROLL4
            for (int t = 0; t < T; ++t) acc[0][t] = acc[1][t] = _mm512_setzero_si512();
#if defined(__GNUC__) && !defined(__CUDACC__)
#pragma GCC unroll 8
#endif
            for (int k = 0; k < 8; ++k) {
                const __m512i w0 = _mm512_loadu_si512(wb + k * panel_rows * 4);
                const __m512i w1 = _mm512_loadu_si512(wb + k * panel_rows * 4 + 64);
                const index at = x_offset + (k / 4) * 32 + (k % 4) * 4;
NPFT_UNROLL4
                for (int t = 0; t < T; ++t) {
                    std::int32_t quad;
                    std::memcpy(&quad, x[t] + at, 4);
                    const __m512i xq = _mm512_set1_epi32(quad);
                    acc[0][t] = _mm512_dpbusd_epi32(acc[0][t], w0, xq);
                    acc[1][t] = _mm512_dpbusd_epi32(acc[1][t], w1, xq);
                }
            }
NPFT_UNROLL4
            for (int t = 0; t < T; ++t) {
                const __m512 db = _mm512_set1_ps(d[t][b]);
                in_group[0][t] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(all_lanes16, acc[0][t]), db, in_group[0][t]);
                in_group[1][t] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(all_lanes16, acc[1][t]), db, in_group[1][t]);
            }
        }
        const __m512 s0 = _mm512_loadu_ps(scale + g * panel_rows);
        const __m512 s1 = _mm512_loadu_ps(scale + g * panel_rows + 16);
NPFT_UNROLL4
        for (int t = 0; t < T; ++t) {
            out[0][t] = _mm512_fmadd_ps(in_group[0][t], s0, out[0][t]);
            out[1][t] = _mm512_fmadd_ps(in_group[1][t], s1, out[1][t]);
        }
    }
    // The zero point folded out of the loop: minus sum_g s_g z_g X_g.
    for (index g = 0; g < groups; ++g) {
        const __m512 sz0 = _mm512_loadu_ps(scaled_zero + g * panel_rows);
        const __m512 sz1 = _mm512_loadu_ps(scaled_zero + g * panel_rows + 16);
NPFT_UNROLL4
        for (int t = 0; t < T; ++t) {
            const __m512 xs = _mm512_set1_ps(p.x_sums[(m0 + t) * groups + g]);
            out[0][t] = _mm512_fnmadd_ps(sz0, xs, out[0][t]);
            out[1][t] = _mm512_fnmadd_ps(sz1, xs, out[1][t]);
        }
    }
    const index valid = std::min<index>(panel_rows, rows - r0);
NPFT_UNROLL4
    for (int t = 0; t < T; ++t) {
        alignas(64) float lanes[panel_rows];
        _mm512_store_ps(lanes, out[0][t]);
        _mm512_store_ps(lanes + 16, out[1][t]);
        for (index i = 0; i < valid; ++i) p.y(m0 + t, r0 + i) = lanes[i];
    }
}

template <int Bits>
NPFT_TARGET_VNNI void multiply_rows_bits(const Int8Problem& p, index row_begin, index row_end) {
    const quant::QuantizedMatrix& w = *p.weights;
    const index blocks = w.cols() / Int8Activations::block;
    const index batch = p.x->batch;
    std::vector<std::uint8_t> panel(static_cast<std::size_t>(blocks * block_bytes));
    std::vector<float> scale(static_cast<std::size_t>(w.groups() * panel_rows));
    std::vector<float> scaled_zero(scale.size());
    for (index r0 = row_begin; r0 < row_end; r0 += panel_rows) {
        decode_panel<Bits>(p, r0, row_end, panel.data(), scale.data(), scaled_zero.data());
        index m = 0;
        for (; m + 4 <= batch; m += 4) panel_tile<4>(p, panel.data(), scale.data(), scaled_zero.data(), r0, row_end, m);
        switch (batch - m) {
            case 3: panel_tile<3>(p, panel.data(), scale.data(), scaled_zero.data(), r0, row_end, m); break;
            case 2: panel_tile<2>(p, panel.data(), scale.data(), scaled_zero.data(), r0, row_end, m); break;
            case 1: panel_tile<1>(p, panel.data(), scale.data(), scaled_zero.data(), r0, row_end, m); break;
            default: break;
        }
    }
}

/// Computes output rows [row_begin, row_end) for every token. Requires int8_gemm_applies(*p.weights) and activations
/// laid out for its bit width.
inline void multiply_rows(const Int8Problem& p, index row_begin, index row_end) {
    switch (p.weights->bits()) {
        case 2: multiply_rows_bits<2>(p, row_begin, row_end); break;
        case 3: multiply_rows_bits<3>(p, row_begin, row_end); break;
        default: multiply_rows_bits<4>(p, row_begin, row_end); break;
    }
}

#undef NPFT_TARGET_VNNI

}  // namespace int8_gemm

#endif  // NPFT_CPU_X86

}  // namespace npft::kernels::cpu
