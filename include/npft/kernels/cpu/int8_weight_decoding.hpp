#pragma once
// int8 activations, part 2 of 4: decoding a chunk of 64 weight codes into two vectors of 32 unsigned bytes, and the
// byte tables of LUT rows. Overview: int8_activations.hpp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "../../core/config.hpp"
#include "../../quant/quantized_matrix.hpp"
#include "cpu_features.hpp"

#if NPFT_CPU_X86
#include <immintrin.h>

namespace npft::kernels::cpu::int8 {

#define NPFT_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))

/// Decodes the 64 codes of a chunk (2 blocks of 32 b-bit codes, 8 b bytes) into two vectors of 32 bytes in the order
/// of int8_stored_at. When the last chunk of a row holds a single block, the read goes past the row's end by at most
/// the length of a one-block row (8, 12, 16 or 32 bytes for 2, 3, 4, 8 bit): inside the next row, or in the last row's
/// padding (Int8Problem::last_row_padded).
template <int Bits>
struct ChunkDecoder;

template <>
struct ChunkDecoder<4> {
    static constexpr int bits = 4;
    static constexpr bool reads_planes = false;
    static constexpr Index chunk_bytes = 32;
    NPFT_TARGET_AVX2 void decode(const std::uint8_t* chunk, __m256i& v0, __m256i& v1) const {
        const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(chunk));
        const __m256i low4 = _mm256_set1_epi8(0x0f);
        v0 = _mm256_and_si256(packed, low4);
        v1 = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4);
    }
};

template <>
struct ChunkDecoder<3> {
    static constexpr int bits = 3;
    static constexpr bool reads_planes = false;
    static constexpr Index chunk_bytes = 24;

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
    static constexpr int bits = 2;
    static constexpr bool reads_planes = false;
    static constexpr Index chunk_bytes = 16;
    NPFT_TARGET_AVX2 void decode(const std::uint8_t* chunk, __m256i& v0, __m256i& v1) const {
        // Quadwords [block 0, block 0, block 1, block 1]; each quadword is shifted by its own amount.
        const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(chunk));
        const __m256i twice = _mm256_permute4x64_epi64(_mm256_castsi128_si256(packed), 0x50);
        const __m256i low2 = _mm256_set1_epi8(0x03);
        v0 = _mm256_and_si256(_mm256_srlv_epi64(twice, _mm256_setr_epi64x(0, 2, 0, 2)), low2);
        v1 = _mm256_and_si256(_mm256_srlv_epi64(twice, _mm256_setr_epi64x(4, 6, 4, 6)), low2);
    }
};

/// 8-bit codes (the GEMMs only: the batch-1 kernels leave 8-bit matrices to the fp32 path) are bytes already; the
/// decoder only swaps 128-bit lanes so that each vector holds the same codes of both blocks (the 3-bit order).
template <>
struct ChunkDecoder<8> {
    static constexpr int bits = 8;
    static constexpr bool reads_planes = false;
    static constexpr Index chunk_bytes = 64;
    NPFT_TARGET_AVX2 void decode(const std::uint8_t* chunk, __m256i& v0, __m256i& v1) const {
        const __m256i block0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(chunk));
        const __m256i block1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(chunk + 32));
        v0 = _mm256_permute2x128_si256(block0, block1, 0x20);  // codes 0-15 of block 0 | codes 0-15 of block 1
        v1 = _mm256_permute2x128_si256(block0, block1, 0x31);  // codes 16-31 of both
    }
};

/// Decodes a chunk of 3-bit codes in the plane layout of bit_planes.hpp into the same two vectors as ChunkDecoder<3>:
/// the low bits as the 2-bit decoder reads them, plus the high bit moved to bit 2 by one quadword shift per vector.
/// Reads exactly the chunk's 24 bytes (plane rows are padded to whole chunks).
struct PlaneDecoder3 {
    static constexpr int bits = 3;
    static constexpr bool reads_planes = true;
    static constexpr Index chunk_bytes = 24;
    NPFT_TARGET_AVX2 void decode(const std::uint8_t* chunk, __m256i& v0, __m256i& v1) const {
        ChunkDecoder<2>{}.decode(chunk, v0, v1);
        // Quadword q of vector v holds high bit 4 v + q of each of the 8 high-plane bytes.
        const __m256i high = _mm256_set1_epi64x(static_cast<long long>(load_u64(chunk + 16)));
        const __m256i bit2 = _mm256_set1_epi8(0x04);
        v0 = _mm256_or_si256(v0, _mm256_and_si256(_mm256_srlv_epi64(_mm256_slli_epi64(high, 2), _mm256_setr_epi64x(0, 1, 2, 3)), bit2));
        v1 = _mm256_or_si256(v1, _mm256_and_si256(_mm256_srlv_epi64(high, _mm256_setr_epi64x(2, 3, 4, 5)), bit2));
    }
    static std::uint64_t load_u64(const std::uint8_t* at) {
        std::uint64_t v;
        std::memcpy(&v, at, sizeof v);
        return v;
    }
};

/// A LUT row as two byte tables for vpshufb: level q = scale * (64 * high[q] + low[q] - 2048), high and low in 0..63.
/// Six-bit halves keep two vpmaddubsw results summable in int16 (2 * 2 * 63 * 127 < 32768).
struct LutTables {
    __m256i high;
    __m256i low;
    float scale;
};

NPFT_TARGET_AVX2 inline LutTables lut_tables(const quant::QuantizedMatrix& w, Index r) {
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

#undef NPFT_TARGET_AVX2

}  // namespace npft::kernels::cpu::int8

#endif  // NPFT_CPU_X86
