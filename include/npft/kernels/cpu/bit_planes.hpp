#pragma once
// The kernel layout of 3-bit codes: a 2-bit plane and a 1-bit plane per chunk of 64 codes, so that the AVX2 decoder
// extracts codes with whole-quadword shifts (int8::PlaneDecoder3) instead of a byte shuffle and a 16-bit multiply per
// quarter block. The storage layout (quant/bitpack.hpp: one bit stream per row, codes across byte boundaries) does not
// change: a PreparedMatrix (prepared_matrix.hpp) repacks once into this layout.
//
// A chunk is 24 bytes: 16 bytes of low bits, then 8 bytes of high bits. Code c (0..31) of block L (0, 1) of the chunk
// has v = c / 16 and p = c % 16 (the place int8_stored_at gives it for 3 bits: vector v, byte p of lane L), and
//   low bits  (code & 3):  byte 8 L + p % 8,  bits 4 v + 2 (p / 8) and the next
//   high bit  (code >> 2): byte 16 + p % 8,   bit  4 v + 2 L + p / 8
// so that the decoder yields exactly the bytes of the storage decoder (int8::ChunkDecoder<3>): the same activation
// order, the same integer dot products, the same bits out. Rows are padded to whole chunks with zero codes.
#include <cstdint>
#include <cstring>

#include "../../core/config.hpp"
#include "../../core/error.hpp"
#include "../../quant/bitpack.hpp"

namespace npft::kernels::cpu {

inline constexpr Index plane_chunk_codes = 64;
inline constexpr Index plane_chunk_bytes = 24;

/// Bytes of one row of `cols` 3-bit codes in the plane layout (whole chunks).
constexpr Index plane_row_bytes(Index cols) { return (cols + plane_chunk_codes - 1) / plane_chunk_codes * plane_chunk_bytes; }

/// Where the bits of code j (of a row) live in the plane layout.
struct PlaneSlot {
    Index low_byte;
    int low_bit;
    Index high_byte;
    int high_bit;
};

constexpr PlaneSlot plane_slot(Index j) {
    const Index chunk = j / plane_chunk_codes;
    const int block = static_cast<int>((j / 32) % 2);
    const int c = static_cast<int>(j % 32);
    const int v = c / 16;
    const int p = c % 16;
    const Index base = chunk * plane_chunk_bytes;
    return {base + 8 * block + p % 8, 4 * v + 2 * (p / 8), base + 16 + p % 8, 4 * v + 2 * block + p / 8};
}

/// Repacks one stored row of `cols` 3-bit codes (quant::PackedCodes::row_words) into plane_row_bytes(cols) bytes.
inline void repack_row_to_planes(const std::uint32_t* row_words, Index cols, std::uint8_t* out) {
    std::memset(out, 0, static_cast<std::size_t>(plane_row_bytes(cols)));
    for (Index j = 0; j < cols; ++j) {
        const std::uint32_t code = quant::unpack_code(row_words, j, 3);
        const PlaneSlot s = plane_slot(j);
        out[s.low_byte] = static_cast<std::uint8_t>(out[s.low_byte] | ((code & 3u) << s.low_bit));
        out[s.high_byte] = static_cast<std::uint8_t>(out[s.high_byte] | ((code >> 2) << s.high_bit));
    }
}

/// Code j of a row in the plane layout (the inverse of repack_row_to_planes; for tests and checks).
inline std::uint32_t plane_code(const std::uint8_t* row, Index j) {
    const PlaneSlot s = plane_slot(j);
    return ((static_cast<std::uint32_t>(row[s.low_byte]) >> s.low_bit) & 3u) |
           (((static_cast<std::uint32_t>(row[s.high_byte]) >> s.high_bit) & 1u) << 2);
}

}  // namespace npft::kernels::cpu
