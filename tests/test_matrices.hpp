#pragma once
// Keyed random test matrices shared by the tests and the benchmarks: the same (seed, stream) gives the same matrix
// everywhere.
#include <cstdint>

#include <npft/core/eigen.hpp>
#include <npft/core/random.hpp>
#include <npft/quant/params.hpp>
#include <npft/quant/quantized_matrix.hpp>

namespace npft_test {

/// rows x cols standard normal entries, entry i (row-major flat index) drawn from core/random.hpp's key (seed, stream).
inline npft::Matrix gaussian_matrix(npft::Index rows, npft::Index cols, std::uint64_t seed, std::uint64_t stream = 1) {
    npft::Matrix m(rows, cols);
    for (npft::Index i = 0; i < m.size(); ++i) m.data()[i] = npft::gaussian({seed, stream}, static_cast<std::uint64_t>(i));
    return m;
}

/// A quantized matrix of uniformly random codes (group 0: one group per row). Uniform formats: fp16 scales in
/// [0.001, 0.101), random zero points when asymmetric (2^(bits-1) when symmetric). LUT: uneven random fp16 levels in
/// [-0.24, 0.36), different per row (as k-means gives). Streams: codes 1, group parameters 2, LUT levels 5.
inline npft::quant::QuantizedMatrix random_quantized(npft::quant::Format format, int bits, npft::Index rows, npft::Index cols,
                                                     npft::Index group, std::uint64_t seed) {
    using npft::quant::Format;
    npft::quant::QuantizedMatrix w(format, bits, rows, cols, group == 0 ? cols : group);
    const npft::RandomKey key{seed, npft::make_stream(1)};
    for (npft::Index r = 0; r < rows; ++r)
        for (npft::Index j = 0; j < cols; ++j)
            w.codes().set(r, j, npft::random_words(key, static_cast<std::uint64_t>(r * cols + j))[0] % (1u << bits));
    if (format == Format::lut) {
        for (npft::Index r = 0; r < rows; ++r) {
            npft::quant::LutParams p;
            p.bits = bits;
            for (npft::Index q = 0; q < p.size(); ++q)
                p.levels[static_cast<std::size_t>(q)] = npft::quant::round_to_half(
                    0.6f * (npft::bits_to_unit_float(npft::random_words(npft::RandomKey{seed, npft::make_stream(5)},
                                                                        static_cast<std::uint64_t>(r * 256 + q))[0]) - 0.4f));
            w.set_lut(r, p);
        }
        return w;
    }
    for (npft::Index r = 0; r < rows; ++r)
        for (npft::Index g = 0; g < w.groups(); ++g) {
            const auto words = npft::random_words(npft::RandomKey{seed, npft::make_stream(2)}, static_cast<std::uint64_t>(r * w.groups() + g));
            npft::quant::UniformParams p;
            p.bits = bits;
            p.scale = npft::quant::round_to_half(0.001f + 0.1f * npft::bits_to_unit_float(words[0]));
            p.zero = format == Format::uniform_asymmetric ? static_cast<float>(words[1] % (1u << bits)) : static_cast<float>(1u << (bits - 1));
            w.set_group(r, g, p);
        }
    return w;
}

}  // namespace npft_test
