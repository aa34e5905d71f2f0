#pragma once
// Dequantization of the tiled layout, shared verbatim by the CUDA kernels and the CPU tests (plain C++, host+device).
// Uniform values go through quant::dequantize_uniform and LUT values are the fp16 table entry, so a decoded weight is
// bit for bit QuantizedMatrix::dequantize_at.
#include <cstdint>

#include "../../core/config.hpp"
#include "../../core/dtype.hpp"
#include "../../quant/bitpack.hpp"
#include "../../quant/params.hpp"
#include "tiled_layout.cuh"

namespace npft::cuda {

/// Non-owning view of tiled weights (host or device pointers): what a kernel receives by value.
struct TiledView {
    TiledShape shape;
    quant::Format format = quant::Format::uniform_asymmetric;
    const std::uint32_t* codes = nullptr;  ///< [blocks * bits][padded_rows]
    const half* scales = nullptr;          ///< [groups][padded_rows], uniform formats
    const half* zeros = nullptr;           ///< [groups][padded_rows], asymmetric only (nullptr: symmetric)
    const half* lut = nullptr;             ///< [padded_rows][2^bits], lut only
};

inline TiledView view_of(const TiledWeights& t) {
    return {t.shape, t.format, t.codes.data(), t.scales.empty() ? nullptr : t.scales.data(),
            t.zeros.empty() ? nullptr : t.zeros.data(), t.lut.empty() ? nullptr : t.lut.data()};
}

/// The Bits words of packing block kb of row r (Bits known at compile time so that the kernels unroll).
template <int Bits>
NPFT_HOST_DEVICE inline void load_block_words(const TiledView& v, Index kb, Index r, std::uint32_t (&words)[Bits]) {
    for (int w = 0; w < Bits; ++w) words[w] = v.codes[tiled_word_index(v.shape, kb, w, r)];
}

/// Affine parameters of one (row, packing block): scale and zero point as floats.
struct AffineParams {
    float scale = 0.0f;
    float zero = 0.0f;
};

NPFT_HOST_DEVICE inline AffineParams affine_params(const TiledView& v, Index kb, Index r) {
    const Index at = tiled_metadata_index(v.shape, group_of_block(v.shape, kb), r);
    AffineParams p;
    p.scale = half::to_float(v.scales[at].bits);
    p.zero = v.zeros != nullptr ? half::to_float(v.zeros[at].bits) : symmetric_zero(v.shape.bits);
    return p;
}

/// Uniform weight of code q: the reference formula, one float subtraction and one float multiply.
NPFT_HOST_DEVICE inline float decode_uniform(std::uint32_t q, AffineParams p) { return quant::dequantize_uniform(q, p.scale, p.zero); }

/// LUT weight of code q of row r, read from the fp16 table.
NPFT_HOST_DEVICE inline float decode_lut(const TiledView& v, Index r, std::uint32_t q) {
    return half::to_float(v.lut[(r << v.shape.bits) + q].bits);
}

/// The dequantized weight (r, j) of a tiled matrix: the host-side reference of what every kernel computes.
NPFT_HOST_DEVICE inline float dequantize_tiled_at(const TiledView& v, Index r, Index j) {
    const Index kb = j / quant::codes_per_block;
    std::uint32_t words[8] = {};
    for (int w = 0; w < v.shape.bits; ++w) words[w] = v.codes[tiled_word_index(v.shape, kb, w, r)];
    const std::uint32_t q = quant::unpack_code(words, j % quant::codes_per_block, v.shape.bits);
    if (v.format == quant::Format::lut) return decode_lut(v, r, q);
    return decode_uniform(q, affine_params(v, kb, r));
}

}  // namespace npft::cuda
