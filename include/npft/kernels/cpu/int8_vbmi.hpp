#pragma once
// The small-batch int8 kernel on AVX-512 VBMI + VNNI (batches below int8_gemm_min_batch, uniform 3 and 4-bit formats):
// the batch-1 kernel of int8_dispatch.hpp with its decoder and dot products replaced, and nothing else.
//
// Where it runs, by measurement (docs/benchmarks.md, batch 1, one thread, CPU time, against the read bandwidth): 3-bit
// 74-83% against the AVX2 kernel's 57-61% (and 70-72% from the planes of a PreparedMatrix); 4-bit 85-93% against
// 82-94%, the same; 2-bit 52-57% against 72-73%: the AVX2 2-bit decoder needs one cross-lane shuffle per chunk, this
// one three (vpermb, vpmultishiftqb and the extract of the upper half, all on one port), so 2-bit stays on AVX2.
//
// Decoding. A chunk of 64 b-bit codes (8 b bytes of the stored bit stream) becomes one 64-byte vector in three
// instructions for every width: vpermb gathers, for each quadword of the output, the bytes that hold its 8 codes (at
// most 8 consecutive bytes: 3-bit codes straddle bytes, but 8 of them sit in 3 bytes); vpmultishiftqb moves each code
// to the low bits of its byte (any bit offset within the quadword); an AND drops the bits above. No preparation is
// needed: the stored layout is read as it is (a PreparedMatrix's planes serve the AVX2 decoder only).
//
// Same bits as the AVX2 kernel. The output vector is [v0 | v1] of the AVX2 decoder (int8_stored_at order), so the
// activations need no other layout; vpdpbusd sums 4 adjacent u8 x s8 products per int32 lane, and adding the vector's
// two 256-bit halves gives exactly the AVX2 kernel's 8 integer lanes (each the sum of 8 products, exact in int32).
// From there the fp32 arithmetic is the AVX2 kernel's, operation for operation: a token's result is the same bits on
// either path, for any thread count.
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../../core/config.hpp"
#include "../../quant/quantized_matrix.hpp"
#include "cpu_features.hpp"
#include "int8_activation_quantization.hpp"
#include "int8_dispatch.hpp"
#include "int8_dot_products.hpp"

#if NPFT_CPU_X86
#include <immintrin.h>
#endif

namespace npft::kernels::cpu {

/// Whether the VBMI + VNNI kernel runs w on this CPU (uniform 3 and 4-bit formats the int8 kernel covers; LUT rows and
/// 2-bit codes stay on AVX2).
inline bool int8_vbmi_applies(const quant::QuantizedMatrix& w) {
    return NPFT_CPU_X86 && cpu_features().has_avx512_vbmi_vnni() && int8_kernel_applies(w) && w.format() != quant::Format::lut &&
           (w.bits() == 3 || w.bits() == 4);
}

#if NPFT_CPU_X86

namespace int8_vbmi {

#define NPFT_TARGET_VBMI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi,avx512vnni,avx2,fma,f16c")))

/// The vpermb and vpmultishiftqb controls of b-bit codes (2, 3 or 4: the kernel runs 3 and 4; all three are tested). Output byte o holds code c of block L of the chunk, where
/// v = o / 32, L = (o / 16) % 2, p = o % 16 and c inverts int8_stored_at: 4 bit c = 2 p + v, 3 bit c = 16 v + p,
/// 2 bit c = 4 (p % 8) + 2 v + p / 8. The code's bits start at stream bit 32 b L + b c of the chunk.
template <int Bits>
struct Decoder {
    static constexpr Index chunk_bytes = 8 * Bits;
    alignas(64) std::uint8_t gather[64] = {};  ///< permuted byte i <- chunk byte gather[i]
    alignas(64) std::uint8_t shift[64] = {};   ///< output byte o <- 8 bits from bit shift[o] of its quadword

    static constexpr int code_of(int v, int p) {
        if (Bits == 4) return 2 * p + v;
        if (Bits == 3) return 16 * v + p;
        return 4 * (p % 8) + 2 * v + p / 8;
    }

    constexpr Decoder() {
        for (int k = 0; k < 8; ++k) {
            int start[8] = {};
            int base = 1 << 30;
            for (int i = 0; i < 8; ++i) {
                const int o = 8 * k + i;
                start[i] = 32 * Bits * ((o / 16) % 2) + Bits * code_of(o / 32, o % 16);
                base = std::min(base, start[i] / 8);
            }
            for (int i = 0; i < 8; ++i) {
                gather[8 * k + i] = static_cast<std::uint8_t>(base + i);
                shift[8 * k + i] = static_cast<std::uint8_t>(start[i] - 8 * base);  // + Bits <= 64: checked by the tests
            }
        }
    }

    NPFT_TARGET_VBMI __m512i decode(const std::uint8_t* chunk) const {
        // A masked load reads exactly the chunk (the bytes past a half chunk of a row's end belong to the next row or
        // the padded copy of the last row: Int8Problem::last_row_padded).
        // The all-lanes maskz forms: GCC 12 warns inside the unmasked ones (undefined-register idiom, bug 105593).
        constexpr __mmask64 all = ~__mmask64{0};
        const __m512i bytes = _mm512_maskz_loadu_epi8((__mmask64{1} << chunk_bytes) - 1, chunk);
        const __m512i gathered = _mm512_maskz_permutexvar_epi8(all, _mm512_load_si512(gather), bytes);
        return _mm512_and_si512(_mm512_maskz_multishift_epi64_epi8(all, _mm512_load_si512(shift), gathered),
                                _mm512_set1_epi8(static_cast<char>((1 << Bits) - 1)));
    }
};

/// The AVX2 kernel's 8 integer lanes of a chunk times 64 activations, as floats.
NPFT_TARGET_VBMI inline __m256 chunk_dot(__m512i codes, const std::int8_t* x) {
    const __m512i sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes, _mm512_loadu_si512(x));
    return _mm256_cvtepi32_ps(
        _mm256_add_epi32(_mm512_maskz_extracti64x4_epi64(0xff, sums, 0), _mm512_maskz_extracti64x4_epi64(0xff, sums, 1)));
}

template <int Bits, int R, int T>
NPFT_TARGET_VBMI inline void chunk_products(const Decoder<Bits>& decoder, const std::uint8_t* const (&rows)[R],
                                            const std::int8_t* const (&x)[T], Index c, __m256 (&dots)[R][T]) {
NPFT_UNROLL4
    for (int i = 0; i < R; ++i) {
        _mm_prefetch(reinterpret_cast<const char*>(rows[i] + c * Decoder<Bits>::chunk_bytes + int8::prefetch_distance), _MM_HINT_T0);
        const __m512i codes = decoder.decode(rows[i] + c * Decoder<Bits>::chunk_bytes);
NPFT_UNROLL4
        for (int t = 0; t < T; ++t) dots[i][t] = chunk_dot(codes, x[t] + c * 64);
    }
}

/// Output rows row[0..R) for tokens m0..m0+T-1: int8::tile's uniform branch with this decoder.
template <int Bits, bool ChunkScales, int R, int T>
NPFT_TARGET_VBMI void tile(const Int8Problem& p, const Decoder<Bits>& decoder, const Index (&row)[R], Index m0, float* scratch) {
    const quant::QuantizedMatrix& w = *p.weights;
    const Int8Activations& a = *p.x;
    const Index chunks = a.chunks;
    const Index groups = w.groups();
    const std::uint8_t* rows[R];
    float* scale[R];
    float* scaled_zero[R];
NPFT_UNROLL4
    for (int i = 0; i < R; ++i) {
        rows[i] = p.row_bytes(row[i]);
        scale[i] = scratch + 2 * i * groups;
        scaled_zero[i] = scale[i] + groups;
        int8::row_scales<Bits>(w, row[i], scale[i], scaled_zero[i]);
    }
    const std::int8_t* x[T];
    const float* xd[T];
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
    __m256 dots[R][T];
    if constexpr (ChunkScales) {
        const Index group_blocks = w.group_size() / Int8Activations::block;
        const Index blocks = a.blocks();
        for (Index c = 0; c < chunks; ++c) {
            chunk_products<Bits, R, T>(decoder, rows, x, c, dots);
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
            for (Index c = g * group_chunks; c < (g + 1) * group_chunks; ++c) {
                chunk_products<Bits, R, T>(decoder, rows, x, c, dots);
NPFT_UNROLL4
                for (int i = 0; i < R; ++i)
NPFT_UNROLL4
                    for (int t = 0; t < T; ++t) acc[i][t] = _mm256_fmadd_ps(dots[i][t], _mm256_loadu_ps(xd[t] + c * 8), acc[i][t]);
            }
NPFT_UNROLL4
            for (int i = 0; i < R; ++i) {
                const __m256 s = _mm256_broadcast_ss(scale[i] + g);
NPFT_UNROLL4
                for (int t = 0; t < T; ++t) total[i][t] = _mm256_fmadd_ps(acc[i][t], s, total[i][t]);
            }
        }
    }
    // The zero point folded out of the loop, as in int8::tile.
NPFT_UNROLL4
    for (int i = 0; i < R; ++i)
NPFT_UNROLL4
        for (int t = 0; t < T; ++t)
            p.y(m0 + t, row[i]) = int8::horizontal_sum(total[i][t]) - int8::dot(scaled_zero[i], p.x_sums + (m0 + t) * groups, groups);
}

/// Rows [row_begin, row_end), walked as the AVX2 kernel walks them (int8::walk_rows: four row streams at batch 1).
template <int Bits, bool ChunkScales>
NPFT_TARGET_VBMI void multiply_rows_typed(const Int8Problem& p, Index row_begin, Index row_end) {
    const Decoder<Bits> d{};
    std::vector<float> scratch(static_cast<std::size_t>(2 * 4 * p.weights->groups()));
    float* s = scratch.data();
    const Index row_bytes = p.weights->codes().words_per_row() * static_cast<Index>(sizeof(std::uint32_t));
    int8::walk_rows(p, row_begin, row_end, row_bytes, [&](auto tokens, const auto& rows, Index m) {
        constexpr int R = static_cast<int>(std::extent_v<std::remove_cvref_t<decltype(rows)>>);
        tile<Bits, ChunkScales, R, decltype(tokens)::value>(p, d, rows, m, s);
    });
}

template <int Bits>
inline void multiply_rows_bits(const Int8Problem& p, Index row_begin, Index row_end) {
    if (p.weights->group_size() % Int8Activations::chunk == 0) return multiply_rows_typed<Bits, false>(p, row_begin, row_end);
    multiply_rows_typed<Bits, true>(p, row_begin, row_end);
}

/// Computes output rows [row_begin, row_end). Requires int8_vbmi_applies(*p.weights); reads the stored codes.
inline void multiply_rows(const Int8Problem& p, Index row_begin, Index row_end) {
    if (p.weights->bits() == 3) return multiply_rows_bits<3>(p, row_begin, row_end);
    multiply_rows_bits<4>(p, row_begin, row_end);
}

#undef NPFT_TARGET_VBMI

}  // namespace int8_vbmi

#endif  // NPFT_CPU_X86

}  // namespace npft::kernels::cpu
