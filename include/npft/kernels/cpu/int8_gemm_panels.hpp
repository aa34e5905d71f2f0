#pragma once
// The weight panels of the int8 prompt-processing GEMMs (int8_gemm.hpp, int8_gemm_256.hpp): which formats they cover,
// how a panel of 32 rows is decoded to bytes once per call, and its per-row scales.
//
// Panel layout: the decoder's output (int8_stored_at order, the order the activations are stored in) regrouped so that
// one 64-byte vector holds 4 consecutive codes of 16 rows: [block b][plane p][quad k in 0..7][row 0..31][4 bytes]. A
// block is 32 codes; its 8 quads sit at stored positions c * 64 + (k / 4) * 32 + (b % 2) * 16 + (k % 4) * 4 of chunk
// c = b / 2.
//
// Planes (PanelKind): a weight that does not fit an unsigned byte operand is held as two byte planes, high and low,
// and the block's dot product is (sum high x) * 2^high_shift + sum low x, exact in int32:
//   codes:   uniform 2, 3, 4 and 8 bit: one plane, the codes themselves (0..255).
//   lut:     LUT 3 and 4 bit: the row's table in 12-bit fixed point, level = s (64 high + low - 2048) with high and low
//            in 0..63 (int8::lut_tables, the batch-1 kernel's tables, so the same error bound).
//   nibbles: uniform 8 bit for vpmaddubsw, whose int16 pair sums would saturate on whole bytes (2 * 255 * 127 > 32767):
//            code = 16 high + low with high and low in 0..15, the bound of the 4-bit codes.
// Bound of a block's int32 sum for any input: |x| <= 127 and a weight of at most 4095 (LUT; 255 for 8-bit codes), so
// |sum| <= 32 * 4095 * 127 = 16,642,080 < 2^24: exact in int32 (and even as a float), partial sums included, since
// high * 2^shift and low are both non-negative.
#include <algorithm>
#include <cstdint>

#include "../../core/config.hpp"
#include "../../quant/quantized_matrix.hpp"
#include "cpu_features.hpp"
#include "int8_activation_quantization.hpp"
#include "int8_dot_products.hpp"
#include "int8_weight_decoding.hpp"

#if NPFT_CPU_X86
#include <immintrin.h>
#endif

namespace npft::kernels::cpu {

/// Whether the int8 GEMMs cover w's format on this CPU's AVX2 path (the ISA of each GEMM is checked by its own
/// *_applies): uniform 2, 3, 4 and 8 bit, symmetric or asymmetric, with groups of a multiple of 32 (or per channel),
/// and LUT 3 and 4 bit; K a multiple of 32. (The batch-1 int8 kernels cover the same formats but 8-bit, which they
/// leave to the fp32 kernels: int8_kernel_applies.)
inline bool int8_gemm_covers(const quant::QuantizedMatrix& w) {
    if (!(NPFT_CPU_X86 && cpu_features().has_avx2_path())) return false;
    if (w.cols() % Int8Activations::block != 0) return false;
    if (w.format() == quant::Format::lut) return w.bits() == 3 || w.bits() == 4;
    return ((w.bits() >= 2 && w.bits() <= 4) || w.bits() == 8) && w.group_size() % Int8Activations::block == 0;
}

#if NPFT_CPU_X86

namespace int8_gemm {

#define NPFT_TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define NPFT_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))

inline constexpr int panel_rows = 32;
// GCC 12 warns inside the unmasked forms of some intrinsics (undefined-register idiom); the all-lanes maskz forms
// compute the same thing.
inline constexpr __mmask16 all_lanes16 = 0xffff;
inline constexpr __mmask8 all_lanes8 = 0xff;
inline constexpr Index block_bytes = 8 * panel_rows * 4;  ///< one plane of a block of 32 codes for 32 rows

/// What a panel's byte planes hold (header comment).
enum class PanelKind { codes, lut, nibbles };

/// Decodes a chunk of 64 codes of one row into the planes of `Kind`: v[p][0..1], in the order of int8_stored_at.
template <int Bits, PanelKind Kind>
struct PanelDecoder {
    static constexpr int bits = Bits;
    static constexpr PanelKind kind = Kind;
    static constexpr int planes = Kind == PanelKind::codes ? 1 : 2;
    /// Plane 0 counts 2^high_shift times plane 1 (two planes only).
    static constexpr int high_shift = Kind == PanelKind::lut ? 6 : 4;
    /// The largest byte a plane holds: bounds vpmaddubsw's int16 sums (int8_gemm_256.hpp).
    static constexpr int largest_byte = Kind == PanelKind::lut ? 63 : Kind == PanelKind::nibbles ? 15 : (1 << Bits) - 1;
    static_assert(Kind != PanelKind::lut || Bits <= 4, "LUT tables hold 16 entries");

    int8::ChunkDecoder<Bits> chunk{};

    /// The tables of row r (LUT panels; the other kinds have none).
    NPFT_TARGET_AVX2 int8::LutTables tables(const quant::QuantizedMatrix& w, Index r) const {
        if constexpr (Kind == PanelKind::lut) {
            return int8::lut_tables(w, r);
        } else {
            return {_mm256_setzero_si256(), _mm256_setzero_si256(), 0.0f};
        }
    }

    NPFT_TARGET_AVX2 void decode(const std::uint8_t* row, const int8::LutTables& t, Index c, __m256i (&v)[planes][2]) const {
        __m256i codes[2];
        chunk.decode(row + c * int8::ChunkDecoder<Bits>::chunk_bytes, codes[0], codes[1]);
        for (int h = 0; h < 2; ++h) {
            if constexpr (Kind == PanelKind::codes) {
                v[0][h] = codes[h];
            } else if constexpr (Kind == PanelKind::lut) {
                v[0][h] = _mm256_shuffle_epi8(t.high, codes[h]);  // codes < 16: bit 7 clear, the table's entry
                v[1][h] = _mm256_shuffle_epi8(t.low, codes[h]);
            } else {
                const __m256i low4 = _mm256_set1_epi8(0x0f);
                v[0][h] = _mm256_and_si256(_mm256_srli_epi16(codes[h], 4), low4);
                v[1][h] = _mm256_and_si256(codes[h], low4);
            }
        }
    }
};

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

/// The scales s and s * z of rows [r0, r0 + 32) as [group][32] floats; rows from `limit` on get 0. Uniform: the group
/// scales, z the zero point (2^(b-1) when symmetric). LUT: one group, s the table's scale and z = 2048, its offset.
template <class Panel>
NPFT_TARGET_AVX2 void panel_scales(const Int8Problem& p, Index r0, Index limit, float* scale, float* scaled_zero) {
    const quant::QuantizedMatrix& w = *p.weights;
    const Index groups = w.groups();
    const bool asymmetric = w.format() == quant::Format::uniform_asymmetric;
    const Panel decoder{};
    for (int i = 0; i < panel_rows; ++i) {
        const Index r = r0 + i;
        for (Index g = 0; g < groups; ++g) {
            float s = 0.0f;
            float z = 0.0f;
            if (r < limit && Panel::kind == PanelKind::lut) {
                s = decoder.tables(w, r).scale;
                z = 2048.0f;
            } else if (r < limit) {
                s = _cvtsh_ss(w.scales()[static_cast<std::size_t>(r * groups + g)].bits);
                z = asymmetric ? _cvtsh_ss(w.zeros()[static_cast<std::size_t>(r * groups + g)].bits)
                               : static_cast<float>(1 << (Panel::bits - 1));
            }
            scale[g * panel_rows + i] = s;
            scaled_zero[g * panel_rows + i] = s * z;
        }
    }
}

/// Where plane `plane` of quad k of block b of panel row `row` starts.
inline Index panel_offset(int planes, Index b, int plane, int k, Index row) {
    return (b * planes + plane) * block_bytes + (k * panel_rows + row) * 4;
}

/// Rows [r0, r0 + 32) (rows from `limit` on are zero) decoded into `panel` (blocks * planes * block_bytes bytes), with
/// their scales (panel_scales). Each chunk of 16 rows is decoded into 16 vectors of 16 quads per plane (dword q =
/// stored positions 4q..4q+3) and transposed, so that vector q holds quad q of the 16 rows: quad q belongs to block
/// q / 4 % 2 of the chunk and is its quad (q / 8) * 4 + q % 4.
template <class Panel>
NPFT_TARGET_VNNI void decode_panel(const Int8Problem& p, Index r0, Index limit, std::uint8_t* panel, float* scale,
                                   float* scaled_zero) {
    constexpr int planes = Panel::planes;
    const quant::QuantizedMatrix& w = *p.weights;
    const Index blocks = w.cols() / Int8Activations::block;
    const Index chunks = (blocks + 1) / 2;
    const Panel decoder{};
    for (int half = 0; half < 2; ++half) {
        const std::uint8_t* rows[16];
        int8::LutTables tables[16];
        for (int i = 0; i < 16; ++i) {
            const Index r = r0 + 16 * half + i;
            rows[i] = r < limit ? p.row_bytes(r) : nullptr;
            tables[i] = r < limit ? decoder.tables(w, r) : int8::LutTables{};
        }
        for (Index c = 0; c < chunks; ++c) {
            __m512i q[planes][16];
            for (int i = 0; i < 16; ++i) {
                if (rows[i] == nullptr) {
                    for (int pl = 0; pl < planes; ++pl) q[pl][i] = _mm512_setzero_si512();
                    continue;
                }
                __m256i v[planes][2];
                decoder.decode(rows[i], tables[i], c, v);
                for (int pl = 0; pl < planes; ++pl) {
                    const __m512i low = _mm512_maskz_inserti64x4(all_lanes8, _mm512_setzero_si512(), v[pl][0], 0);
                    q[pl][i] = _mm512_maskz_inserti64x4(all_lanes8, low, v[pl][1], 1);
                }
            }
            for (int pl = 0; pl < planes; ++pl) {
                transpose16(q[pl]);
                for (int quad = 0; quad < 16; ++quad) {
                    const Index b = 2 * c + (quad / 4) % 2;
                    if (b >= blocks) continue;  // the missing second block of a last chunk
                    const int k = (quad / 8) * 4 + quad % 4;
                    _mm512_storeu_si512(panel + panel_offset(planes, b, pl, k, 16 * half), q[pl][quad]);
                }
            }
        }
    }
    panel_scales<Panel>(p, r0, limit, scale, scaled_zero);
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

#undef NPFT_TARGET_VNNI
#undef NPFT_TARGET_AVX2

}  // namespace int8_gemm

#endif  // NPFT_CPU_X86

}  // namespace npft::kernels::cpu
