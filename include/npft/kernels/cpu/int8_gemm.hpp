#pragma once
// The prompt-processing GEMM of the int8-activation path on AVX-512 VNNI (vpdpbusd: 64 u8 x s8 multiply-adds into 16
// int32 lanes per instruction). The batch-1 kernel (int8_activations.hpp) decodes every weight once per 4 tokens,
// which makes it decode-bound at large batches; this one decodes a panel of 32 rows to bytes once per call and reuses
// it for every token.
//
// Panels (int8_gemm_panels.hpp): 4 consecutive codes of 16 rows per 64-byte vector, one or two byte planes per
// block. The activation quad of a token is broadcast to all 16 lanes, so one vpdpbusd adds 4 products to 16 rows at
// once; a block with two planes (LUT tables, high and low) takes two passes: the high plane's int32 sums are shifted
// left by 6 (times 64) before the low plane's products are added to them.
//
// Arithmetic (per output row r and token t, exact in int32 per block, then fp32):
//   y = sum_g s_g sum_{b in g} d_b * (sum_{j in b} q_j x_j) - sum_g s_g z_g X_g,    X_g = sum_{b in g} d_b sum_{j in b} x_j
// (LUT rows: one group, q_j = 64 high + low the table's fixed-point level, s the table's scale and z = 2048)
// the same terms as the batch-1 kernel in a different order, so the same error bound holds; a token's result does not
// depend on the batch it is in (as long as the batch takes this kernel) or on the thread count.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../../core/config.hpp"
#include "cpu_features.hpp"
#include "int8_activations.hpp"
#include "int8_gemm_panels.hpp"
#include "threading.hpp"

#if NPFT_CPU_X86
#include <immintrin.h>
#endif

namespace npft::kernels::cpu {

/// Batches from this size up take the GEMM on CPUs with AVX-512 VNNI (docs/benchmarks.md: below it the batch-1
/// kernel, which streams the weights once per 4 tokens, is as fast).
inline constexpr Index int8_gemm_min_batch = 8;

/// Whether the VNNI GEMM can run w (the formats of int8_gemm_covers) on this CPU.
inline bool int8_gemm_applies(const quant::QuantizedMatrix& w) {
    return NPFT_CPU_X86 && cpu_features().has_avx512_path() && cpu_features().avx512vnni && int8_gemm_covers(w);
}

#if NPFT_CPU_X86

namespace int8_gemm {

#define NPFT_TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

/// Blocks of a K slice: the slice of a panel (16 KiB, 32 KiB with two planes) stays in L1 while every token passes over it; a whole panel
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

/// Tiles of `tile` tokens, then one tile of the rest, as the micro-kernels take them. Packed once per call, before the
/// rows are split between threads, and the tiles split over `threads` (each tile writes its own bytes: the layout
/// does not depend on the split).
inline PackedActivations pack_activations(const Int8Activations& a, Index tile, int threads = 1) {
    PackedActivations packed;
    packed.quads.resize(static_cast<std::size_t>(a.batch * a.blocks() * 8));
    packed.scales.resize(static_cast<std::size_t>(a.batch * a.blocks()));
    // Ranges start at multiples of `tile` (parallel_rows aligns them) and end at one or at the batch's end.
    parallel_rows(a.batch, threads, tile * ((16 + tile - 1) / tile), [&](Index begin, Index end) {
        Index m = begin;
        for (; m + tile <= end; m += tile) pack_tile(a, m, tile, packed);
        if (m < end) pack_tile(a, m, end - m, packed);
    });
    return packed;
}

/// out[t][0..32) += the products of blocks [b0, b1) of the panel with the packed tile of T tokens at m0 (out: T x 32
/// floats). The weight scale is applied per group and per slice (sum_{b in g and slice} d_b * dot_b, times s_g), so the
/// result depends on K's slicing, which is fixed, but not on the batch, the token tile or the thread count.
template <class Panel, int T>
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
            const std::int32_t* xb = quads + (b - b0) * 8 * T;
            __m512i acc[2][T];
NPFT_UNROLL8
            for (int t = 0; t < T; ++t) acc[0][t] = acc[1][t] = _mm512_setzero_si512();
            for (int plane = 0; plane < Panel::planes; ++plane) {
                if (plane == 1) {
                    // The high plane's sums times 2^high_shift (exact: int8_gemm_panels.hpp bounds the block's sum).
NPFT_UNROLL8
                    for (int t = 0; t < T; ++t) {
                        acc[0][t] = _mm512_maskz_slli_epi32(all_lanes16, acc[0][t], Panel::high_shift);
                        acc[1][t] = _mm512_maskz_slli_epi32(all_lanes16, acc[1][t], Panel::high_shift);
                    }
                }
                const std::uint8_t* wb = panel + panel_offset(Panel::planes, b, plane, 0, 0);
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

template <class Panel>
NPFT_TARGET_VNNI void multiply_rows_panel(const Int8Problem& p, const PackedActivations& packed, Index row_begin, Index row_end) {
    const quant::QuantizedMatrix& w = *p.weights;
    const Index blocks = w.cols() / Int8Activations::block;
    const Index batch = p.x->batch;
    std::vector<std::uint8_t> panel(static_cast<std::size_t>(blocks * Panel::planes * block_bytes));
    std::vector<float> scale(static_cast<std::size_t>(w.groups() * panel_rows));
    std::vector<float> scaled_zero(scale.size());
    std::vector<float> out(static_cast<std::size_t>(batch * panel_rows));
    for (Index r0 = row_begin; r0 < row_end; r0 += panel_rows) {
        decode_panel<Panel>(p, r0, row_end, panel.data(), scale.data(), scaled_zero.data());
        std::fill(out.begin(), out.end(), 0.0f);
        for (Index b0 = 0; b0 < blocks; b0 += slice_blocks) {
            const Index b1 = std::min(blocks, b0 + slice_blocks);
            prefetch_panel_codes(p, r0 + panel_rows, row_end, b0, b1);
            const std::uint8_t* pn = panel.data();
            const float* sc = scale.data();
            Index m = 0;
            for (; m + tile_tokens <= batch; m += tile_tokens)
                panel_tile<Panel, tile_tokens>(p, packed, pn, sc, b0, b1, m, out.data() + m * panel_rows);
            float* tail = out.data() + m * panel_rows;
            switch (batch - m) {
                case 5: panel_tile<Panel, 5>(p, packed, pn, sc, b0, b1, m, tail); break;
                case 4: panel_tile<Panel, 4>(p, packed, pn, sc, b0, b1, m, tail); break;
                case 3: panel_tile<Panel, 3>(p, packed, pn, sc, b0, b1, m, tail); break;
                case 2: panel_tile<Panel, 2>(p, packed, pn, sc, b0, b1, m, tail); break;
                case 1: panel_tile<Panel, 1>(p, packed, pn, sc, b0, b1, m, tail); break;
                default: break;
            }
        }
        store_panel(p, out.data(), scaled_zero.data(), r0, row_end);
    }
}

/// Computes output rows [row_begin, row_end) for every token. Requires int8_gemm_applies(*p.weights), activations
/// laid out for its bit width, and `packed` = pack_activations(*p.x, tile_tokens) (shared by the threads).
inline void multiply_rows(const Int8Problem& p, const PackedActivations& packed, Index row_begin, Index row_end) {
    if (p.weights->format() == quant::Format::lut) {
        if (p.weights->bits() == 3) return multiply_rows_panel<PanelDecoder<3, PanelKind::lut>>(p, packed, row_begin, row_end);
        return multiply_rows_panel<PanelDecoder<4, PanelKind::lut>>(p, packed, row_begin, row_end);
    }
    switch (p.weights->bits()) {
        case 2: multiply_rows_panel<PanelDecoder<2, PanelKind::codes>>(p, packed, row_begin, row_end); break;
        case 3: multiply_rows_panel<PanelDecoder<3, PanelKind::codes>>(p, packed, row_begin, row_end); break;
        case 8: multiply_rows_panel<PanelDecoder<8, PanelKind::codes>>(p, packed, row_begin, row_end); break;  // vpdpbusd: whole bytes
        default: multiply_rows_panel<PanelDecoder<4, PanelKind::codes>>(p, packed, row_begin, row_end); break;
    }
}

/// The same, packing the activations itself (one caller, or tests).
inline void multiply_rows(const Int8Problem& p, Index row_begin, Index row_end) {
    multiply_rows(p, pack_activations(*p.x, tile_tokens), row_begin, row_end);
}

#undef NPFT_TARGET_VNNI

}  // namespace int8_gemm

#endif  // NPFT_CPU_X86

}  // namespace npft::kernels::cpu
