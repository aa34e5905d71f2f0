#pragma once
// Random quantized matrices for the CUDA tests (CPU and GPU): every code, scale, zero point and table entry is drawn
// from the keyed generator, so a failing case is reproduced by its seed alone.
#include <algorithm>
#include <cstdint>

#include <npft/core/random.hpp>
#include <npft/quant/params.hpp>
#include <npft/quant/quantized_matrix.hpp>

namespace npft::test {

inline quant::QuantizedMatrix random_quantized(quant::Format format, int bits, Index rows, Index cols, Index group_size,
                                               std::uint64_t seed) {
    quant::QuantizedMatrix q(format, bits, rows, cols, group_size);
    const RandomKey codes{seed, 1}, metadata{seed, 2};
    const std::uint32_t levels = 1u << bits;
    for (Index r = 0; r < rows; ++r)
        for (Index j = 0; j < cols; ++j)
            q.codes().set(r, j, random_words(codes, static_cast<std::uint64_t>(r * cols + j))[0] % levels);
    if (format == quant::Format::lut) {
        for (Index r = 0; r < rows; ++r) {
            quant::LutParams p;
            p.bits = bits;
            for (std::uint32_t i = 0; i < levels; ++i)
                p.levels[i] = quant::round_to_half(uniform(metadata, static_cast<std::uint64_t>(r) * levels + i, -0.2f, 0.2f));
            std::sort(p.levels.begin(), p.levels.begin() + levels);
            q.set_lut(r, p);
        }
        return q;
    }
    for (Index r = 0; r < rows; ++r)
        for (Index g = 0; g < q.groups(); ++g) {
            const std::uint64_t at = static_cast<std::uint64_t>(r * q.groups() + g);
            quant::UniformParams p;
            p.bits = bits;
            p.scale = quant::round_to_half(uniform(metadata, 2 * at, 0.001f, 0.05f));
            p.zero = format == quant::Format::uniform_asymmetric
                         ? static_cast<float>(random_words(metadata, 2 * at + 1)[0] % levels)
                         : static_cast<float>(levels / 2);
            q.set_group(r, g, p);
        }
    return q;
}

}  // namespace npft::test
