#pragma once
// int8 activations, part 4 of 4: which matrices the int8 kernel runs, and how a range of output rows is walked and
// dispatched to the tiles of int8_dot_products.hpp by bit width and format. Overview: int8_activations.hpp.
#include <algorithm>
#include <type_traits>
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

/// Walks rows [row_begin, row_end) for every token, calling tile(tokens, rows, m) with `tokens` a
/// std::integral_constant and `rows` an Index array of 1 or 4 rows (the streaming kernels' shared order). One token reads 4 rows at once, taken a quarter of a piece of rows
/// apart: four long sequential streams, which the hardware prefetchers serve at close to the full read bandwidth
/// (adjacent rows make short 4-row bursts that they keep re-learning: half the bandwidth on the development machine;
/// streams hundreds of MiB apart are slow too, hence pieces of at most 16 MiB). Several tokens share each decoded
/// row, 4 tokens at a time.
template <class Tile>
inline void walk_rows(const Int8Problem& p, Index row_begin, Index row_end, Index row_bytes, Tile&& tile) {
    using One = std::integral_constant<int, 1>;
    const Index batch = p.x->batch;
    if (batch == 1) {
        const Index piece_rows = std::max<Index>(4, (Index{16} << 20) / row_bytes);
        for (Index begin = row_begin; begin < row_end; begin += piece_rows) {
            const Index end = std::min(row_end, begin + piece_rows);
            const Index quarter = (end - begin) / 4;
            for (Index r = begin; r < begin + quarter; ++r) {
                const Index rows[4] = {r, r + quarter, r + 2 * quarter, r + 3 * quarter};
                tile(One{}, rows, Index{0});
            }
            for (Index r = begin + 4 * quarter; r < end; ++r) {
                const Index rows[1] = {r};
                tile(One{}, rows, Index{0});
            }
        }
        return;
    }
    for (Index r = row_begin; r < row_end; ++r) {
        const Index rows[1] = {r};
        Index m = 0;
        for (; m + 4 <= batch; m += 4) tile(std::integral_constant<int, 4>{}, rows, m);
        switch (batch - m) {
            case 3: tile(std::integral_constant<int, 3>{}, rows, m); break;
            case 2: tile(std::integral_constant<int, 2>{}, rows, m); break;
            case 1: tile(One{}, rows, m); break;
            default: break;
        }
    }
}

/// The AVX2 streaming kernel over rows [row_begin, row_end).
template <class Decoder, bool Lut, bool ChunkScales>
NPFT_TARGET_AVX2 void multiply_rows_typed(const Int8Problem& p, Index row_begin, Index row_end) {
    const Decoder d{};
    std::vector<float> scratch(static_cast<std::size_t>(Lut ? 0 : 2 * 4 * p.weights->groups()));
    float* s = scratch.data();
    const Index row_bytes = Decoder::reads_planes ? p.plane_row_bytes
                                                  : p.weights->codes().words_per_row() * static_cast<Index>(sizeof(std::uint32_t));
    walk_rows(p, row_begin, row_end, row_bytes, [&](auto tokens, const auto& rows, Index m) {
        constexpr int R = static_cast<int>(std::extent_v<std::remove_cvref_t<decltype(rows)>>);
        tile<Decoder, Lut, ChunkScales, R, decltype(tokens)::value>(p, d, rows, m, s);
    });
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
