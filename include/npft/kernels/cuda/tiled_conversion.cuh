#pragma once
// Offline conversion between the canonical QuantizedMatrix and the tiled GPU layout (host only; see tiled_layout.cuh).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "../../core/error.hpp"
#include "../../quant/bitpack.hpp"
#include "../../quant/quantized_matrix.hpp"
#include "tiled_layout.cuh"

namespace npft::cuda {

/// Throws unless the tiled layout can represent q (group sizes must be whole packing blocks, or one group per row).
inline void require_tileable(const quant::QuantizedMatrix& q) {
    require(q.group_size() % quant::codes_per_block == 0 || q.groups() == 1, "group size ", q.group_size(),
            " must be a multiple of ", quant::codes_per_block, " or the whole row (", q.cols(), ") for the CUDA layout");
}

/// Shape of the tiled layout of q.
inline TiledShape tiled_shape_of(const quant::QuantizedMatrix& q) {
    TiledShape s;
    s.rows = q.rows();
    s.cols = q.cols();
    s.padded_rows = round_up(q.rows(), row_alignment);
    s.blocks = (q.cols() + quant::codes_per_block - 1) / quant::codes_per_block;
    s.group_size = q.group_size();
    s.groups = q.groups();
    s.bits = q.bits();
    return s;
}

/// Converts the canonical packed format to the tiled layout (a permutation of words plus zero padding).
inline TiledWeights to_tiled(const quant::QuantizedMatrix& q) {
    require_tileable(q);
    TiledWeights t;
    t.format = q.format();
    t.shape = tiled_shape_of(q);
    const TiledShape& s = t.shape;
    const std::size_t planes = static_cast<std::size_t>(s.blocks * s.bits);
    t.codes.assign(planes * static_cast<std::size_t>(s.padded_rows), 0u);
    for (Index r = 0; r < s.rows; ++r) {
        const std::uint32_t* row = q.codes().row_words(r);
        for (Index kb = 0; kb < s.blocks; ++kb)
            for (int w = 0; w < s.bits; ++w)
                t.codes[static_cast<std::size_t>(tiled_word_index(s, kb, w, r))] = row[kb * s.bits + w];
    }
    if (q.format() == quant::Format::lut) {
        const Index n = Index{1} << s.bits;
        t.lut.assign(static_cast<std::size_t>(s.padded_rows * n), half(0.0f));
        std::copy(q.lut().begin(), q.lut().end(), t.lut.begin());
        return t;
    }
    const std::size_t metadata = static_cast<std::size_t>(s.groups * s.padded_rows);
    t.scales.assign(metadata, half(0.0f));
    if (q.format() == quant::Format::uniform_asymmetric) t.zeros.assign(metadata, half(0.0f));
    for (Index r = 0; r < s.rows; ++r)
        for (Index g = 0; g < s.groups; ++g) {
            const std::size_t from = static_cast<std::size_t>(r * s.groups + g);
            const std::size_t to = static_cast<std::size_t>(tiled_metadata_index(s, g, r));
            t.scales[to] = q.scales()[from];
            if (!t.zeros.empty()) t.zeros[to] = q.zeros()[from];
        }
    return t;
}

/// The exact inverse of to_tiled: the canonical QuantizedMatrix back (padding dropped).
inline quant::QuantizedMatrix from_tiled(const TiledWeights& t) {
    const TiledShape& s = t.shape;
    quant::QuantizedMatrix q(t.format, s.bits, s.rows, s.cols, s.group_size);
    for (Index r = 0; r < s.rows; ++r) {
        std::uint32_t* row = q.codes().row_words(r);
        for (Index kb = 0; kb < s.blocks; ++kb)
            for (int w = 0; w < s.bits; ++w) row[kb * s.bits + w] = t.codes[static_cast<std::size_t>(tiled_word_index(s, kb, w, r))];
    }
    if (t.format == quant::Format::lut) {
        std::copy(t.lut.begin(), t.lut.begin() + static_cast<std::ptrdiff_t>(q.lut().size()), q.lut().begin());
        return q;
    }
    for (Index r = 0; r < s.rows; ++r)
        for (Index g = 0; g < s.groups; ++g) {
            const std::size_t to = static_cast<std::size_t>(r * s.groups + g);
            const std::size_t from = static_cast<std::size_t>(tiled_metadata_index(s, g, r));
            q.scales()[to] = t.scales[from];
            if (t.format == quant::Format::uniform_asymmetric) q.zeros()[to] = t.zeros[from];
        }
    return q;
}

}  // namespace npft::cuda
