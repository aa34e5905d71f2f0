#pragma once
// The prompt-processing GEMM of the int8-activation path on 256-bit vectors, for CPUs without AVX-512 VNNI (AMD Zen 3,
// Intel before Ice Lake): AVX2 vpmaddubsw + vpmaddwd, or AVX-VNNI vpdpbusd (VEX, 256 bit) where the CPU has it. The
// same panel layout, activation packing, K slices and order of the fp32 arithmetic as the AVX-512 GEMM
// (int8_gemm.hpp), so every GEMM path gives the same bits: the integer block sums are exact on each.
//
// vpmaddubsw saturates: it adds two u8 x s8 products into an int16. A panel plane holds bytes of at most B
// (PanelDecoder::largest_byte: 15 for 2, 3 and 4-bit codes and for the nibbles of 8-bit codes, 63 for the LUT tables)
// and the activations are at most 127 in magnitude, so a pair is at most 2 * B * 127, and Q = 32767 / (2 * B * 127)
// quads (at most 8, a block) can be summed in int16 before a vpmaddwd widens them to int32: Q = 8 for B = 15 (8 * 3810
// = 30480), Q = 2 for B = 63 (2 * 16002 = 32004). No saturation and no wrap-around for any input. 8-bit codes take
// the nibble planes here (two vpmaddubsw per quad); the vpdpbusd paths take them whole (u8 x s8 into int32 does not
// saturate). vpmaddwd also applies the high plane's weight 2^high_shift, so every path forms the same int32 sums.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "../../core/config.hpp"
#include "cpu_features.hpp"
#include "int8_gemm.hpp"
#include "int8_gemm_panels.hpp"

#if NPFT_CPU_X86
#include <immintrin.h>
#endif

namespace npft::kernels::cpu {

/// Which integer dot product the 256-bit GEMM uses.
enum class Int8Dot256 { avx2_maddubs, avx_vnni };

/// Whether the 256-bit GEMM can run w (the formats of int8_gemm_covers) with `dot` on this CPU.
inline bool int8_gemm_256_applies(const quant::QuantizedMatrix& w, Int8Dot256 dot) {
    const bool isa = dot == Int8Dot256::avx_vnni ? cpu_features().avx_vnni : true;
    return NPFT_CPU_X86 && isa && int8_gemm_covers(w);
}

#if NPFT_CPU_X86

namespace int8_gemm_256 {

using int8_gemm::block_bytes;
using int8_gemm::PackedActivations;
using int8_gemm::panel_offset;
using int8_gemm::panel_rows;
using int8_gemm::PanelDecoder;
using int8_gemm::PanelKind;
using int8_gemm::slice_blocks;

// avxvnni only for the vpdpbusd intrinsic of the AVX-VNNI instantiations: the AVX2 ones use AVX2 intrinsics only and
// have no loop that the vectorizer could turn into a dot product, so they run on AVX2-only CPUs.
#define NPFT_TARGET_256 __attribute__((target("avx2,fma,f16c,avxvnni")))
#define NPFT_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))

/// Tokens per register tile. AVX-VNNI: 2 x 3 accumulators and 2 x 3 group sums, 2 weight vectors and a broadcast,
/// 15 of the 16 ymm registers. AVX2 needs registers for the vpmaddubsw products and the constant of vpmaddwd: with 3
/// tokens GCC spilled every product to the stack, with 2 it keeps them in registers.
template <Int8Dot256 Dot>
inline constexpr int tile_tokens = Dot == Int8Dot256::avx_vnni ? 3 : 2;

/// In place: r[i] lane j <- r[j] lane i (8 x 8 int32).
NPFT_TARGET_AVX2 inline void transpose8(__m256i* r) {
    __m256i t[8], u[8];
    for (int i = 0; i < 4; ++i) {
        t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; ++i) {  // u[4 i + e], 128-bit lane L: rows 4i..4i+3 of element 4 L + e
        u[4 * i + 0] = _mm256_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm256_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm256_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm256_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int e = 0; e < 4; ++e) {
        r[e] = _mm256_permute2x128_si256(u[e], u[4 + e], 0x20);
        r[4 + e] = _mm256_permute2x128_si256(u[e], u[4 + e], 0x31);
    }
}

/// Rows [r0, r0 + 32) decoded into the panel layout of int8_gemm_panels.hpp, 8 rows at a time: the 16 quads of a
/// chunk of 8 rows transposed per plane so that vector q holds quad q of the 8 rows (block q / 4 % 2 of the chunk, its
/// quad (q / 8) * 4 + q % 4).
template <class Panel>
NPFT_TARGET_AVX2 void decode_panel(const Int8Problem& p, Index r0, Index limit, std::uint8_t* panel, float* scale,
                                   float* scaled_zero) {
    constexpr int planes = Panel::planes;
    const quant::QuantizedMatrix& w = *p.weights;
    const Index blocks = w.cols() / Int8Activations::block;
    const Index chunks = (blocks + 1) / 2;
    const Panel decoder{};
    for (int eighth = 0; eighth < 4; ++eighth) {
        const std::uint8_t* rows[8];
        int8::LutTables tables[8];
        for (int i = 0; i < 8; ++i) {
            const Index r = r0 + 8 * eighth + i;
            rows[i] = r < limit ? p.row_bytes(r) : nullptr;
            tables[i] = r < limit ? decoder.tables(w, r) : int8::LutTables{};
        }
        for (Index c = 0; c < chunks; ++c) {
            __m256i q[planes][16];
            for (int i = 0; i < 8; ++i) {
                __m256i v[planes][2];
                if (rows[i] == nullptr) {
                    for (int pl = 0; pl < planes; ++pl) v[pl][0] = v[pl][1] = _mm256_setzero_si256();
                } else {
                    decoder.decode(rows[i], tables[i], c, v);
                }
                for (int pl = 0; pl < planes; ++pl) {
                    q[pl][i] = v[pl][0];
                    q[pl][8 + i] = v[pl][1];
                }
            }
            for (int pl = 0; pl < planes; ++pl) {
                transpose8(q[pl]);
                transpose8(q[pl] + 8);
                for (int quad = 0; quad < 16; ++quad) {
                    const Index b = 2 * c + (quad / 4) % 2;
                    if (b >= blocks) continue;  // the missing second block of a last chunk
                    const int k = (quad / 8) * 4 + quad % 4;
                    _mm256_storeu_si256(reinterpret_cast<__m256i*>(panel + panel_offset(planes, b, pl, k, 8 * eighth)), q[pl][quad]);
                }
            }
        }
    }
    int8_gemm::panel_scales<Panel>(p, r0, limit, scale, scaled_zero);
}

/// out[t][row0 .. row0 + 16) += the products of blocks [b0, b1) of panel rows [row0, row0 + 16) with the packed tile of
/// T tokens at m0: the arithmetic of int8_gemm::panel_tile on 8-row vectors.
template <Int8Dot256 Dot, class Panel, int T>
NPFT_TARGET_256 void panel_tile(const Int8Problem& p, const PackedActivations& packed, const std::uint8_t* panel,
                                const float* scale, Index b0, Index b1, Index m0, Index row0, float* out) {
    // vpmaddubsw: quads per int16 sum (header comment).
    constexpr int sum_quads = std::min(8, 32767 / (2 * Panel::largest_byte * 127));
    static_assert(Dot == Int8Dot256::avx_vnni || (sum_quads >= 1 && 8 % sum_quads == 0),
                  "vpmaddubsw would saturate on these bytes: split them into planes (PanelKind::nibbles)");
    const Index group_blocks = p.weights->group_size() / Int8Activations::block;
    const Index batch = p.x->batch;  // [b0, b1) is one K slice
    const std::int32_t* quads = packed.quads.data() + b0 * 8 * batch + m0 * (b1 - b0) * 8;
    const float* d = packed.scales.data() + b0 * batch + m0 * (b1 - b0);
    for (Index part = b0; part < b1;) {  // the parts of the slice in one group each
        const Index g = part / group_blocks;
        const Index part_end = std::min(b1, (g + 1) * group_blocks);
        __m256 in_group[2][T];
NPFT_UNROLL4
        for (int t = 0; t < T; ++t) in_group[0][t] = in_group[1][t] = _mm256_setzero_ps();
        for (Index b = part; b < part_end; ++b) {
            const std::int32_t* xb = quads + (b - b0) * 8 * T;
            __m256i acc[2][T];  // the block's int32 sums
NPFT_UNROLL4
            for (int t = 0; t < T; ++t) acc[0][t] = acc[1][t] = _mm256_setzero_si256();
            for (int plane = 0; plane < Panel::planes; ++plane) {
                const std::uint8_t* wb = panel + panel_offset(Panel::planes, b, plane, 0, row0);
                if constexpr (Dot == Int8Dot256::avx_vnni) {
                    if (plane == 1) {  // the high plane's sums times 2^high_shift (exact: int8_gemm_panels.hpp)
NPFT_UNROLL4
                        for (int t = 0; t < T; ++t) {
                            acc[0][t] = _mm256_slli_epi32(acc[0][t], Panel::high_shift);
                            acc[1][t] = _mm256_slli_epi32(acc[1][t], Panel::high_shift);
                        }
                    }
NPFT_UNROLL8
                    for (int k = 0; k < 8; ++k) {
                        const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + k * panel_rows * 4));
                        const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + k * panel_rows * 4 + 32));
NPFT_UNROLL4
                        for (int t = 0; t < T; ++t) {
                            const __m256i xq = _mm256_set1_epi32(xb[k * T + t]);
                            acc[0][t] = _mm256_dpbusd_avx_epi32(acc[0][t], w0, xq);
                            acc[1][t] = _mm256_dpbusd_avx_epi32(acc[1][t], w1, xq);
                        }
                    }
                } else {
                    // vpmaddwd's weights: 2^high_shift for the high plane of two, else 1.
                    const __m256i weight = _mm256_set1_epi16(static_cast<short>(Panel::planes == 2 && plane == 0 ? 1 << Panel::high_shift : 1));
                    __m256i pairs[2][T];  // int16 sums of sum_quads quads
NPFT_UNROLL8
                    for (int k = 0; k < 8; ++k) {
                        const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + k * panel_rows * 4));
                        const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + k * panel_rows * 4 + 32));
NPFT_UNROLL4
                        for (int t = 0; t < T; ++t) {
                            const __m256i xq = _mm256_set1_epi32(xb[k * T + t]);
                            if (k % sum_quads == 0) pairs[0][t] = pairs[1][t] = _mm256_setzero_si256();
                            pairs[0][t] = _mm256_add_epi16(pairs[0][t], _mm256_maddubs_epi16(w0, xq));
                            pairs[1][t] = _mm256_add_epi16(pairs[1][t], _mm256_maddubs_epi16(w1, xq));
                            // Opaque to the optimizer: GCC otherwise re-associates the 8 adds into a tree that needs
                            // all 8 products of a block at once, and spills them.
                            __asm__("" : "+x"(pairs[0][t]), "+x"(pairs[1][t]));
                            if ((k + 1) % sum_quads == 0) {
                                acc[0][t] = _mm256_add_epi32(acc[0][t], _mm256_madd_epi16(pairs[0][t], weight));
                                acc[1][t] = _mm256_add_epi32(acc[1][t], _mm256_madd_epi16(pairs[1][t], weight));
                            }
                        }
                    }
                }
            }
NPFT_UNROLL4
            for (int t = 0; t < T; ++t) {
                const __m256 db = _mm256_set1_ps(d[(b - b0) * T + t]);
                for (int v = 0; v < 2; ++v) in_group[v][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[v][t]), db, in_group[v][t]);
            }
        }
        const __m256 s0 = _mm256_loadu_ps(scale + g * panel_rows + row0);
        const __m256 s1 = _mm256_loadu_ps(scale + g * panel_rows + row0 + 8);
NPFT_UNROLL4
        for (int t = 0; t < T; ++t) {
            float* o = out + t * panel_rows + row0;
            _mm256_storeu_ps(o, _mm256_fmadd_ps(in_group[0][t], s0, _mm256_loadu_ps(o)));
            _mm256_storeu_ps(o + 8, _mm256_fmadd_ps(in_group[1][t], s1, _mm256_loadu_ps(o + 8)));
        }
        part = part_end;
    }
}

/// y(m, r0 + i) = out[m][i] - sum_g s_g z_g X_g for rows below `rows` (the fused operations of int8_gemm::store_panel).
NPFT_TARGET_AVX2 inline void store_panel(const Int8Problem& p, const float* out, const float* scaled_zero, Index r0,
                                         Index rows) {
    const Index groups = p.weights->groups();
    const Index valid = std::min<Index>(panel_rows, rows - r0);
    for (Index m = 0; m < p.x->batch; ++m) {
        __m256 y[4];
        for (int v = 0; v < 4; ++v) y[v] = _mm256_loadu_ps(out + m * panel_rows + 8 * v);
        for (Index g = 0; g < groups; ++g) {
            const __m256 xs = _mm256_set1_ps(p.x_sums[m * groups + g]);
            for (int v = 0; v < 4; ++v) y[v] = _mm256_fnmadd_ps(_mm256_loadu_ps(scaled_zero + g * panel_rows + 8 * v), xs, y[v]);
        }
        alignas(32) float lanes[panel_rows];
        for (int v = 0; v < 4; ++v) _mm256_store_ps(lanes + 8 * v, y[v]);
        for (Index i = 0; i < valid; ++i) p.y(m, r0 + i) = lanes[i];
    }
}

/// The tiles of T tokens over the 16 panel rows at row0, then the tile of the rest.
template <Int8Dot256 Dot, class Panel>
NPFT_TARGET_256 void slice_tiles(const Int8Problem& p, const PackedActivations& packed, const std::uint8_t* panel,
                                 const float* scale, Index b0, Index b1, Index row0, float* out) {
    const Index batch = p.x->batch;
    constexpr int T = tile_tokens<Dot>;
    Index m = 0;
    for (; m + T <= batch; m += T) panel_tile<Dot, Panel, T>(p, packed, panel, scale, b0, b1, m, row0, out + m * panel_rows);
    if (T == 3 && batch - m == 2) panel_tile<Dot, Panel, 2>(p, packed, panel, scale, b0, b1, m, row0, out + m * panel_rows);
    if (batch - m == 1) panel_tile<Dot, Panel, 1>(p, packed, panel, scale, b0, b1, m, row0, out + m * panel_rows);
}

template <Int8Dot256 Dot, class Panel>
void multiply_rows_panel(const Int8Problem& p, const PackedActivations& packed, Index row_begin, Index row_end) {
    const quant::QuantizedMatrix& w = *p.weights;
    const Index blocks = w.cols() / Int8Activations::block;
    std::vector<std::uint8_t> panel(static_cast<std::size_t>(blocks * Panel::planes * block_bytes));
    std::vector<float> scale(static_cast<std::size_t>(w.groups() * panel_rows));
    std::vector<float> scaled_zero(scale.size());
    std::vector<float> out(static_cast<std::size_t>(p.x->batch * panel_rows));
    for (Index r0 = row_begin; r0 < row_end; r0 += panel_rows) {
        decode_panel<Panel>(p, r0, row_end, panel.data(), scale.data(), scaled_zero.data());
        std::fill(out.begin(), out.end(), 0.0f);
        for (Index b0 = 0; b0 < blocks; b0 += slice_blocks) {
            const Index b1 = std::min(blocks, b0 + slice_blocks);
            int8_gemm::prefetch_panel_codes(p, r0 + panel_rows, row_end, b0, b1);
            for (Index row0 = 0; row0 < panel_rows && r0 + row0 < row_end; row0 += 16)  // the second half only if it has rows
                slice_tiles<Dot, Panel>(p, packed, panel.data(), scale.data(), b0, b1, row0, out.data());
        }
        store_panel(p, out.data(), scaled_zero.data(), r0, row_end);
    }
}

template <Int8Dot256 Dot>
void multiply_rows_dot(const Int8Problem& p, const PackedActivations& packed, Index row_begin, Index row_end) {
    if (p.weights->format() == quant::Format::lut) {
        if (p.weights->bits() == 3) return multiply_rows_panel<Dot, PanelDecoder<3, PanelKind::lut>>(p, packed, row_begin, row_end);
        return multiply_rows_panel<Dot, PanelDecoder<4, PanelKind::lut>>(p, packed, row_begin, row_end);
    }
    switch (p.weights->bits()) {
        case 2: multiply_rows_panel<Dot, PanelDecoder<2, PanelKind::codes>>(p, packed, row_begin, row_end); break;
        case 3: multiply_rows_panel<Dot, PanelDecoder<3, PanelKind::codes>>(p, packed, row_begin, row_end); break;
        case 8:  // whole bytes for vpdpbusd; nibbles for vpmaddubsw, which would saturate on them (header comment)
            if constexpr (Dot == Int8Dot256::avx_vnni) {
                multiply_rows_panel<Dot, PanelDecoder<8, PanelKind::codes>>(p, packed, row_begin, row_end);
            } else {
                multiply_rows_panel<Dot, PanelDecoder<8, PanelKind::nibbles>>(p, packed, row_begin, row_end);
            }
            break;
        default: multiply_rows_panel<Dot, PanelDecoder<4, PanelKind::codes>>(p, packed, row_begin, row_end); break;
    }
}

/// Computes output rows [row_begin, row_end) for every token. Requires int8_gemm_256_applies(*p.weights, dot),
/// activations laid out for its bit width, and `packed` = pack_activations(*p.x, tile_tokens_of(dot)) (shared by the
/// threads).
inline void multiply_rows(const Int8Problem& p, const PackedActivations& packed, Index row_begin, Index row_end, Int8Dot256 dot) {
    if (dot == Int8Dot256::avx_vnni) return multiply_rows_dot<Int8Dot256::avx_vnni>(p, packed, row_begin, row_end);
    multiply_rows_dot<Int8Dot256::avx2_maddubs>(p, packed, row_begin, row_end);
}

/// Tokens per register tile of the GEMM with `dot` (the tile pack_activations needs).
inline Index tile_tokens_of(Int8Dot256 dot) {
    return dot == Int8Dot256::avx_vnni ? tile_tokens<Int8Dot256::avx_vnni> : tile_tokens<Int8Dot256::avx2_maddubs>;
}

/// The same, packing the activations itself (one caller, or tests).
inline void multiply_rows(const Int8Problem& p, Index row_begin, Index row_end, Int8Dot256 dot) {
    multiply_rows(p, int8_gemm::pack_activations(*p.x, tile_tokens_of(dot)), row_begin, row_end, dot);
}

#undef NPFT_TARGET_256
#undef NPFT_TARGET_AVX2

}  // namespace int8_gemm_256

#endif  // NPFT_CPU_X86

}  // namespace npft::kernels::cpu
