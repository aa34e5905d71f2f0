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
inline constexpr Index int8_gemm_min_batch = 8;

/// Whether the VNNI GEMM can run w (uniform formats covered by the int8 kernel) on this CPU.
inline bool int8_gemm_applies(const quant::QuantizedMatrix& w) {
    return NPFT_CPU_X86 && cpu_features().has_avx512_path() && cpu_features().avx512vnni && int8_kernel_applies(w) &&
           w.format() != quant::Format::lut;
}

#if NPFT_CPU_X86

namespace int8_gemm {

#define NPFT_TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define NPFT_TARGET_F16C __attribute__((target("avx2,fma,f16c")))

inline constexpr int panel_rows = 32;
// GCC 12 warns inside the unmasked forms of some intrinsics (undefined-register idiom); the all-lanes maskz forms
// compute the same thing.
inline constexpr __mmask16 all_lanes16 = 0xffff;
inline constexpr __mmask8 all_lanes8 = 0xff;
inline constexpr Index block_bytes = 8 * panel_rows * 4;  ///< one block of 32 codes for 32 rows

/// In place: r[i] lane j <- r[j] lane i (16 x 16 int32; 64 shuffles, 4 per row instead of 16 scattered stores).
NPFT_TARGET_VNNI inline void transpose16(__m512i (&r)[16]) {
    __m512i t[16];
    for (int i = 0; i < 8; ++i) {  // within 128-bit lanes: [a0 b0 a1 b1], [a2 b2 a3 b3]
        t[2 * i] = _mm512_maskz_unpacklo_epi32(all_lanes16, r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_maskz_unpackhi_epi32(all_lanes16, r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; ++i) {  // u[4 i + e], 128-bit lane L: rows 4i..4i+3 of element 4 L + e
        r[4 * i + 0] = _mm512_maskz_unpacklo_epi64(all_lanes8, t[4 * i], t[4 * i + 2]);
        r[4 * i + 1] = _mm512_maskz_unpackhi_epi64(all_lanes8, t[4 * i], t[4 * i + 2]);
        r[4 * i + 2] = _mm512_maskz_unpacklo_epi64(all_lanes8, t[4 * i + 1], t[4 * i + 3]);
        r[4 * i + 3] = _mm512_maskz_unpackhi_epi64(all_lanes8, t[4 * i + 1], t[4 * i + 3]);
    }
    for (int e = 0; e < 4; ++e) {  // transpose the 4 x 4 matrix of 128-bit blocks of registers e, 4 + e, 8 + e, 12 + e
        const __m512i v0 = _mm512_maskz_shuffle_i32x4(all_lanes16, r[e], r[4 + e], 0x44);
        const __m512i v1 = _mm512_maskz_shuffle_i32x4(all_lanes16, r[e], r[4 + e], 0xee);
        const __m512i v2 = _mm512_maskz_shuffle_i32x4(all_lanes16, r[8 + e], r[12 + e], 0x44);
        const __m512i v3 = _mm512_maskz_shuffle_i32x4(all_lanes16, r[8 + e], r[12 + e], 0xee);
        t[e] = _mm512_maskz_shuffle_i32x4(all_lanes16, v0, v2, 0x88);
        t[4 + e] = _mm512_maskz_shuffle_i32x4(all_lanes16, v0, v2, 0xdd);
        t[8 + e] = _mm512_maskz_shuffle_i32x4(all_lanes16, v1, v3, 0x88);
        t[12 + e] = _mm512_maskz_shuffle_i32x4(all_lanes16, v1, v3, 0xdd);
    }
    for (int i = 0; i < 16; ++i) r[i] = t[i];
}

/// The group scales s and s * z (z = 2^(b-1) when symmetric) of rows [r0, r0 + 32) as [group][32] floats; rows from
/// `limit` on get 0.
template <int Bits>
NPFT_TARGET_F16C void panel_scales(const Int8Problem& p, Index r0, Index limit, float* scale, float* scaled_zero) {
    const quant::QuantizedMatrix& w = *p.weights;
    const Index groups = w.groups();
    const bool asymmetric = w.format() == quant::Format::uniform_asymmetric;
    for (int i = 0; i < panel_rows; ++i) {
        const Index r = r0 + i;
        for (Index g = 0; g < groups; ++g) {
            const float s = r < limit ? _cvtsh_ss(w.scales()[static_cast<std::size_t>(r * groups + g)].bits) : 0.0f;
            const float z = r >= limit ? 0.0f
                            : asymmetric ? _cvtsh_ss(w.zeros()[static_cast<std::size_t>(r * groups + g)].bits)
                                         : static_cast<float>(1 << (Bits - 1));
            scale[g * panel_rows + i] = s;
            scaled_zero[g * panel_rows + i] = s * z;
        }
    }
}

/// Rows [r0, r0 + 32) (rows from `limit` on are zero) decoded into `panel` (blocks * block_bytes bytes), with their
/// group scales s and s * z (z = 2^(b-1) when symmetric) as [group][32] floats. Each chunk of 16 rows is decoded into
/// 16 vectors of 16 quads (dword q = stored positions 4q..4q+3) and transposed, so that vector q holds quad q of the
/// 16 rows: quad q belongs to block q / 4 % 2 of the chunk and is its quad (q / 8) * 4 + q % 4.
template <int Bits>
NPFT_TARGET_VNNI void decode_panel(const Int8Problem& p, Index r0, Index limit, std::uint8_t* panel, float* scale,
                                   float* scaled_zero) {
    const quant::QuantizedMatrix& w = *p.weights;
    const Index blocks = w.cols() / Int8Activations::block;
    const Index chunks = (blocks + 1) / 2;
    const int8::ChunkDecoder<Bits> decoder{};
    for (int half = 0; half < 2; ++half) {
        const std::uint8_t* rows[16];
        for (int i = 0; i < 16; ++i) {
            const Index r = r0 + 16 * half + i;
            rows[i] = r < limit ? p.row_bytes(r) : nullptr;
        }
        for (Index c = 0; c < chunks; ++c) {
            __m512i q[16];
            for (int i = 0; i < 16; ++i) {
                if (rows[i] == nullptr) {
                    q[i] = _mm512_setzero_si512();
                    continue;
                }
                __m256i v0, v1;
                decoder.decode(rows[i] + c * int8::ChunkDecoder<Bits>::chunk_bytes, v0, v1);
                const __m512i low = _mm512_maskz_inserti64x4(all_lanes8, _mm512_setzero_si512(), v0, 0);
                q[i] = _mm512_maskz_inserti64x4(all_lanes8, low, v1, 1);
            }
            transpose16(q);
            for (int quad = 0; quad < 16; ++quad) {
                const Index b = 2 * c + (quad / 4) % 2;
                if (b >= blocks) continue;  // the missing second block of a last chunk
                const int k = (quad / 8) * 4 + quad % 4;
                _mm512_storeu_si512(panel + b * block_bytes + (k * panel_rows + 16 * half) * 4, q[quad]);
            }
        }
    }
    panel_scales<Bits>(p, r0, limit, scale, scaled_zero);
}

/// Blocks of a K slice: the slice of a panel (16 KiB) stays in L1 while every token passes over it; a whole panel
/// (32 K bytes) would stream from L2 once per 4 tokens, which measured at a third of the int8 peak.
inline constexpr Index slice_blocks = 16;

/// Tokens per register tile: 2 x 6 int32 accumulators, enough independent vpdpbusd chains (latency 5) to issue two
/// per cycle; with 4 tokens the chains were the limit.
inline constexpr int tile_tokens = 6;

/// The activations in the order the micro-kernels read them: K slice by K slice (every token of a slice in one
/// contiguous run, which the prefetchers stream when the activations do not fit in L2), inside a slice token tile by
/// token tile, inside a tile block by block. Slice s starts at block b0 = s * slice_blocks and has n blocks; quad k of
/// block b0 + i of token m0 + t, in the tile of T tokens at m0, is quads[b0 * 8 * batch + m0 * n * 8 + (i * 8 + k) * T
/// + t], its block scale scales[b0 * batch + m0 * n + i * T + t]. Packed once per call; the order of the arithmetic
/// does not depend on it.
struct PackedActivations {
    std::vector<std::int32_t> quads;
    std::vector<float> scales;
};

/// Packs tokens [m0, m0 + tokens) as one tile (see PackedActivations).
inline void pack_tile(const Int8Activations& a, Index m0, Index tokens, PackedActivations& packed) {
    const Index blocks = a.blocks();
    for (Index t = 0; t < tokens; ++t) {
        const std::int8_t* x = a.values.data() + (m0 + t) * a.padded_cols();
        const float* d = a.scales.data() + (m0 + t) * blocks;
        for (Index b = 0; b < blocks; ++b) {
            const Index b0 = b / slice_blocks * slice_blocks;
            const Index n = std::min(slice_blocks, blocks - b0);
            std::int32_t* quads = packed.quads.data() + b0 * 8 * a.batch + m0 * n * 8 + (b - b0) * 8 * tokens + t;
            const Index x_offset = (b / 2) * 64 + (b % 2) * 16;
            for (Index k = 0; k < 8; ++k) std::memcpy(quads + k * tokens, x + x_offset + (k / 4) * 32 + (k % 4) * 4, 4);
            packed.scales[static_cast<std::size_t>(b0 * a.batch + m0 * n + (b - b0) * tokens + t)] = d[b];
        }
    }
}

/// Tiles of `tile` tokens, then one tile of the rest, as the micro-kernels take them.
inline PackedActivations pack_activations(const Int8Activations& a, Index tile) {
    PackedActivations packed;
    packed.quads.resize(static_cast<std::size_t>(a.batch * a.blocks() * 8));
    packed.scales.resize(static_cast<std::size_t>(a.batch * a.blocks()));
    Index m = 0;
    for (; m + tile <= a.batch; m += tile) pack_tile(a, m, tile, packed);
    if (m < a.batch) pack_tile(a, m, a.batch - m, packed);
    return packed;
}

/// out[t][0..32) += the products of blocks [b0, b1) of the panel with the packed tile of T tokens at m0 (out: T x 32
/// floats). The weight scale is applied per group and per slice (sum_{b in g and slice} d_b * dot_b, times s_g), so the
/// result depends on K's slicing, which is fixed, but not on the batch, the token tile or the thread count.
template <int T>
NPFT_TARGET_VNNI void panel_tile(const Int8Problem& p, const PackedActivations& packed, const std::uint8_t* panel,
                                 const float* scale, Index b0, Index b1, Index m0, float* out) {
    const Index group_blocks = p.weights->group_size() / Int8Activations::block;
    const Index batch = p.x->batch;  // [b0, b1) is one K slice
    const std::int32_t* quads = packed.quads.data() + b0 * 8 * batch + m0 * (b1 - b0) * 8;
    const float* d = packed.scales.data() + b0 * batch + m0 * (b1 - b0);
    for (Index part = b0; part < b1;) {  // the parts of the slice in one group each
        const Index g = part / group_blocks;
        const Index part_end = std::min(b1, (g + 1) * group_blocks);
        __m512 in_group[2][T];
NPFT_UNROLL8
        for (int t = 0; t < T; ++t) in_group[0][t] = in_group[1][t] = _mm512_setzero_ps();
        for (Index b = part; b < part_end; ++b) {
            const std::uint8_t* wb = panel + b * block_bytes;
            const std::int32_t* xb = quads + (b - b0) * 8 * T;
            __m512i acc[2][T];
NPFT_UNROLL8
            for (int t = 0; t < T; ++t) acc[0][t] = acc[1][t] = _mm512_setzero_si512();
#if defined(__GNUC__) && !defined(__CUDACC__)
#pragma GCC unroll 8
#endif
            for (int k = 0; k < 8; ++k) {
                const __m512i w0 = _mm512_loadu_si512(wb + k * panel_rows * 4);
                const __m512i w1 = _mm512_loadu_si512(wb + k * panel_rows * 4 + 64);
NPFT_UNROLL8
                for (int t = 0; t < T; ++t) {
                    const __m512i xq = _mm512_set1_epi32(xb[k * T + t]);
                    acc[0][t] = _mm512_dpbusd_epi32(acc[0][t], w0, xq);
                    acc[1][t] = _mm512_dpbusd_epi32(acc[1][t], w1, xq);
                }
            }
NPFT_UNROLL8
            for (int t = 0; t < T; ++t) {
                const __m512 db = _mm512_set1_ps(d[(b - b0) * T + t]);
                in_group[0][t] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(all_lanes16, acc[0][t]), db, in_group[0][t]);
                in_group[1][t] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(all_lanes16, acc[1][t]), db, in_group[1][t]);
            }
        }
        const __m512 s0 = _mm512_loadu_ps(scale + g * panel_rows);
        const __m512 s1 = _mm512_loadu_ps(scale + g * panel_rows + 16);
NPFT_UNROLL8
        for (int t = 0; t < T; ++t) {
            float* o = out + t * panel_rows;
            _mm512_storeu_ps(o, _mm512_fmadd_ps(in_group[0][t], s0, _mm512_loadu_ps(o)));
            _mm512_storeu_ps(o + 16, _mm512_fmadd_ps(in_group[1][t], s1, _mm512_loadu_ps(o + 16)));
        }
        part = part_end;
    }
}

/// y(m, r0 + i) = out[m][i] - sum_g s_g z_g X_g (the zero point folded out of the loop) for rows below `rows`.
NPFT_TARGET_VNNI inline void store_panel(const Int8Problem& p, const float* out, const float* scaled_zero, Index r0,
                                         Index rows) {
    const Index groups = p.weights->groups();
    const Index valid = std::min<Index>(panel_rows, rows - r0);
    for (Index m = 0; m < p.x->batch; ++m) {
        __m512 y0 = _mm512_loadu_ps(out + m * panel_rows);
        __m512 y1 = _mm512_loadu_ps(out + m * panel_rows + 16);
        for (Index g = 0; g < groups; ++g) {
            const __m512 xs = _mm512_set1_ps(p.x_sums[m * groups + g]);
            y0 = _mm512_fnmadd_ps(_mm512_loadu_ps(scaled_zero + g * panel_rows), xs, y0);
            y1 = _mm512_fnmadd_ps(_mm512_loadu_ps(scaled_zero + g * panel_rows + 16), xs, y1);
        }
        alignas(64) float lanes[panel_rows];
        _mm512_store_ps(lanes, y0);
        _mm512_store_ps(lanes + 16, y1);
        for (Index i = 0; i < valid; ++i) p.y(m, r0 + i) = lanes[i];
    }
}

/// Prefetches into L2 the codes of rows [r0, min(r0 + 32, limit)) that hold blocks [b0, b1): called per slice with the
/// next panel's rows, so that its decode reads L2 instead of waiting on 32 row streams from memory (the decode was a
/// quarter of the time at 64 tokens without it).
inline void prefetch_panel_codes(const Int8Problem& p, Index r0, Index limit, Index b0, Index b1) {
    const Index row_bytes = p.weights->codes().words_per_row() * static_cast<Index>(sizeof(std::uint32_t));
    const Index blocks = p.weights->cols() / Int8Activations::block;
    const Index begin = (row_bytes * b0 / blocks) / 64 * 64;
    const Index end = row_bytes * b1 / blocks;
    for (Index r = r0; r < std::min(r0 + panel_rows, limit); ++r) {
        const char* row = reinterpret_cast<const char*>(p.row_bytes(r));
        for (Index at = begin; at < end; at += 64) _mm_prefetch(row + at, _MM_HINT_T1);
    }
}

template <int Bits>
NPFT_TARGET_VNNI void multiply_rows_bits(const Int8Problem& p, Index row_begin, Index row_end) {
    const quant::QuantizedMatrix& w = *p.weights;
    const Index blocks = w.cols() / Int8Activations::block;
    const Index batch = p.x->batch;
    std::vector<std::uint8_t> panel(static_cast<std::size_t>(blocks * block_bytes));
    std::vector<float> scale(static_cast<std::size_t>(w.groups() * panel_rows));
    std::vector<float> scaled_zero(scale.size());
    std::vector<float> out(static_cast<std::size_t>(batch * panel_rows));
    const PackedActivations packed = pack_activations(*p.x, tile_tokens);
    for (Index r0 = row_begin; r0 < row_end; r0 += panel_rows) {
        decode_panel<Bits>(p, r0, row_end, panel.data(), scale.data(), scaled_zero.data());
        std::fill(out.begin(), out.end(), 0.0f);
        for (Index b0 = 0; b0 < blocks; b0 += slice_blocks) {
            const Index b1 = std::min(blocks, b0 + slice_blocks);
            prefetch_panel_codes(p, r0 + panel_rows, row_end, b0, b1);
            Index m = 0;
            for (; m + tile_tokens <= batch; m += tile_tokens)
                panel_tile<tile_tokens>(p, packed, panel.data(), scale.data(), b0, b1, m, out.data() + m * panel_rows);
            float* tail = out.data() + m * panel_rows;
            switch (batch - m) {
                case 5: panel_tile<5>(p, packed, panel.data(), scale.data(), b0, b1, m, tail); break;
                case 4: panel_tile<4>(p, packed, panel.data(), scale.data(), b0, b1, m, tail); break;
                case 3: panel_tile<3>(p, packed, panel.data(), scale.data(), b0, b1, m, tail); break;
                case 2: panel_tile<2>(p, packed, panel.data(), scale.data(), b0, b1, m, tail); break;
                case 1: panel_tile<1>(p, packed, panel.data(), scale.data(), b0, b1, m, tail); break;
                default: break;
            }
        }
        store_panel(p, out.data(), scaled_zero.data(), r0, row_end);
    }
}

/// Computes output rows [row_begin, row_end) for every token. Requires int8_gemm_applies(*p.weights) and activations
/// laid out for its bit width.
inline void multiply_rows(const Int8Problem& p, Index row_begin, Index row_end) {
    switch (p.weights->bits()) {
        case 2: multiply_rows_bits<2>(p, row_begin, row_end); break;
        case 3: multiply_rows_bits<3>(p, row_begin, row_end); break;
        default: multiply_rows_bits<4>(p, row_begin, row_end); break;
    }
}

#undef NPFT_TARGET_VNNI
#undef NPFT_TARGET_F16C

}  // namespace int8_gemm

#endif  // NPFT_CPU_X86

}  // namespace npft::kernels::cpu
