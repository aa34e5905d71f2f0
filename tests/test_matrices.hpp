#pragma once
// Keyed random test matrices shared by the test files: the same (seed, stream) gives the same matrix everywhere.
#include <cstdint>

#include <npft/core/eigen.hpp>
#include <npft/core/random.hpp>

namespace npft_test {

/// rows x cols standard normal entries, entry i (row-major flat index) drawn from core/random.hpp's key (seed, stream).
inline npft::Matrix gaussian_matrix(npft::index rows, npft::index cols, std::uint64_t seed, std::uint64_t stream = 1) {
    npft::Matrix m(rows, cols);
    for (npft::index i = 0; i < m.size(); ++i) m.data()[i] = npft::gaussian({seed, stream}, static_cast<std::uint64_t>(i));
    return m;
}

}  // namespace npft_test
