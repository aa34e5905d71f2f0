#pragma once
// The GPU weight layout ("tiled"), prepared offline from a QuantizedMatrix, and its exact inverse.
//
// The canonical format (quant/bitpack.hpp) stores each row as a bit stream: row r, packing block kb (32 codes) is the b
// words [kb*b, kb*b + b) of the row. On a GPU the natural unit of work is "one row per thread, many rows per warp", so the
// tiled layout transposes that word matrix: word w of block kb of row r lives at
//     (kb * bits + w) * padded_rows + r                    // (plane = kb*bits + w, row)
// Every "plane" is one contiguous run of padded_rows words, so a warp reading 32 consecutive rows issues one 128-byte
// transaction, and a GEMM tile of BlockN rows is BlockN contiguous words (cp.async in 16-byte pieces). The bits inside a
// word are unchanged: unpack_code() on a block's b words decodes the same codes as the canonical stream.
// Rows are padded to a multiple of row_alignment with zero codes and zero metadata (scale 0, table 0).
//
// Metadata is transposed the same way so that consecutive rows are consecutive addresses:
//     scales[g * padded_rows + r], zeros[g * padded_rows + r]  (fp16; zeros only for the asymmetric format)
//     lut[r * 2^bits + q]                                     (fp16; loaded once per block into shared memory)
// This header is plain C++ (no CUDA syntax): the CPU tests include it and call the same index functions as the kernels.
// The conversion from and to QuantizedMatrix lives in tiled_conversion.cuh (host only).
#include <cstdint>
#include <vector>

#include "../../core/config.hpp"
#include "../../core/dtype.hpp"
#include "../../core/error.hpp"
#include "../../quant/bitpack.hpp"
#include "../../quant/params.hpp"

namespace npft::cuda {

/// Rows of the tiled layout are padded to this multiple: a common multiple of every kernel's row tile.
inline constexpr Index row_alignment = 128;

/// Shape of a tiled weight matrix: everything the index functions need, trivially copyable to the device.
struct TiledShape {
    Index rows = 0;         ///< output channels N
    Index cols = 0;         ///< inputs K
    Index padded_rows = 0;  ///< rows rounded up to row_alignment
    Index blocks = 0;       ///< packing blocks per row, ceil(cols / 32)
    Index group_size = 0;   ///< inputs per scale group (a multiple of 32, or cols for one group per row)
    Index groups = 0;       ///< cols / group_size
    int bits = 0;
};

NPFT_HOST_DEVICE constexpr Index round_up(Index value, Index multiple) { return (value + multiple - 1) / multiple * multiple; }

/// Index of word w of packing block kb of row r in the tiled code array.
NPFT_HOST_DEVICE constexpr Index tiled_word_index(const TiledShape& s, Index kb, int w, Index r) {
    return (kb * s.bits + w) * s.padded_rows + r;
}

/// Scale group of packing block kb. Groups are whole blocks (group_size % 32 == 0) or the whole row, so every code of
/// a block shares one group; the clamp covers the padding codes past cols of a single-group row.
NPFT_HOST_DEVICE constexpr Index group_of_block(const TiledShape& s, Index kb) {
    const Index g = kb * quant::codes_per_block / s.group_size;
    return g < s.groups ? g : s.groups - 1;
}

/// Index of the metadata of (group g, row r) in the transposed scale and zero arrays.
NPFT_HOST_DEVICE constexpr Index tiled_metadata_index(const TiledShape& s, Index g, Index r) { return g * s.padded_rows + r; }

/// The symmetric zero point 2^(bits-1), as the reference dequantizer uses it.
NPFT_HOST_DEVICE constexpr float symmetric_zero(int bits) { return static_cast<float>(1u << (bits - 1)); }

/// A quantized matrix in the tiled layout, on the host (upload with DeviceQuantizedMatrix).
struct TiledWeights {
    quant::Format format = quant::Format::uniform_asymmetric;
    TiledShape shape;
    std::vector<std::uint32_t> codes;  ///< [blocks * bits][padded_rows]
    std::vector<half> scales;          ///< [groups][padded_rows] (uniform formats)
    std::vector<half> zeros;           ///< [groups][padded_rows] (asymmetric format only)
    std::vector<half> lut;             ///< [padded_rows][2^bits] (lut format only)
};

}  // namespace npft::cuda
