#pragma once
// int8 activations, part 4 of 4: which matrices the int8 kernel runs, and how a range of output rows is walked and
// dispatched to the tiles of int8_dot_products.hpp by bit width and format. Overview: int8_activations.hpp.
#include <algorithm>
#include <vector>

#include "../../core/config.hpp"
#include "../../quant/quantized_matrix.hpp"
#include "cpu_features.hpp"
#include "int8_activation_quantization.hpp"
#include "int8_dot_products.hpp"

namespace npft::kernels::cpu {

/// Whether the int8 kernel runs w (x86 with the AVX2 path; the formats listed in int8_activations.hpp).
inline bool int8_kernel_applies(const quant::QuantizedMatrix& w) {
    if (!(NPFT_CPU_X86 && cpu_features().has_avx2_path())) return false;
    if (w.cols() % Int8Activations::block != 0) return false;
    if (w.format() == quant::Format::lut) return w.bits() == 3 || w.bits() == 4;
    return (w.bits() >= 2 && w.bits() <= 4) && w.group_size() % Int8Activations::block == 0;
}

#if NPFT_CPU_X86

namespace int8 {

#define NPFT_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))

/// Rows [row_begin, row_end) for every token. One token reads 4 rows at once, taken a quarter of a piece of rows
/// apart: four long sequential streams, which the hardware prefetchers serve at close to the full read bandwidth
/// (adjacent rows make short 4-row bursts that they keep re-learning: half the bandwidth on the development machine;
/// streams hundreds of MiB apart are slow too, hence pieces of at most 16 MiB). Several tokens share each decoded
/// row, 4 tokens at a time.
template <class Decoder, bool Lut, bool ChunkScales>
NPFT_TARGET_AVX2 void multiply_rows_typed(const Int8Problem& p, Index row_begin, Index row_end) {
    const Index batch = p.x->batch;
    const Decoder d{};
    std::vector<float> scratch(static_cast<std::size_t>(Lut ? 0 : 2 * 4 * p.weights->groups()));
    float* s = scratch.data();
    if (batch == 1) {
        const Index row_bytes = Decoder::reads_planes ? p.plane_row_bytes
                                                      : p.weights->codes().words_per_row() * static_cast<Index>(sizeof(std::uint32_t));
        const Index piece_rows = std::max<Index>(4, (Index{16} << 20) / row_bytes);
        for (Index begin = row_begin; begin < row_end; begin += piece_rows) {
            const Index end = std::min(row_end, begin + piece_rows);
            const Index quarter = (end - begin) / 4;
            for (Index r = begin; r < begin + quarter; ++r) {
                const Index rows[4] = {r, r + quarter, r + 2 * quarter, r + 3 * quarter};
                tile<Decoder, Lut, ChunkScales, 4, 1>(p, d, rows, 0, s);
            }
            for (Index r = begin + 4 * quarter; r < end; ++r) tile<Decoder, Lut, ChunkScales, 1, 1>(p, d, {r}, 0, s);
        }
        return;
    }
    for (Index r = row_begin; r < row_end; ++r) {
        const Index rows[1] = {r};
        Index m = 0;
        for (; m + 4 <= batch; m += 4) tile<Decoder, Lut, ChunkScales, 1, 4>(p, d, rows, m, s);
        switch (batch - m) {
            case 3: tile<Decoder, Lut, ChunkScales, 1, 3>(p, d, rows, m, s); break;
            case 2: tile<Decoder, Lut, ChunkScales, 1, 2>(p, d, rows, m, s); break;
            case 1: tile<Decoder, Lut, ChunkScales, 1, 1>(p, d, rows, m, s); break;
            default: break;
        }
    }
}

template <class Decoder>
inline void multiply_rows_decoded(const Int8Problem& p, Index row_begin, Index row_end) {
    const quant::QuantizedMatrix& w = *p.weights;
    if constexpr (Decoder::bits >= 3) {
        if (w.format() == quant::Format::lut) return multiply_rows_typed<Decoder, true, false>(p, row_begin, row_end);
    }
    if (w.group_size() % Int8Activations::chunk == 0) return multiply_rows_typed<Decoder, false, false>(p, row_begin, row_end);
    multiply_rows_typed<Decoder, false, true>(p, row_begin, row_end);
}

/// Computes output rows [row_begin, row_end). Requires int8_kernel_applies(*p.weights) and activations laid out for
/// its bit width. 3-bit rows come from p.planes when set (the same bytes decoded, the same bits out).
inline void multiply_rows(const Int8Problem& p, Index row_begin, Index row_end) {
    switch (p.weights->bits()) {
        case 2: multiply_rows_decoded<ChunkDecoder<2>>(p, row_begin, row_end); break;
        case 3:
            if (p.planes != nullptr) {
                multiply_rows_decoded<PlaneDecoder3>(p, row_begin, row_end);
            } else {
                multiply_rows_decoded<ChunkDecoder<3>>(p, row_begin, row_end);
            }
            break;
        default: multiply_rows_decoded<ChunkDecoder<4>>(p, row_begin, row_end); break;
    }
}

#undef NPFT_TARGET_AVX2

}  // namespace int8

#endif  // NPFT_CPU_X86

}  // namespace npft::kernels::cpu
