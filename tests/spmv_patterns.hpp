#pragma once
// Sparse outlier patterns shared by the SpMV tests (the CPU emulation in tests/test_cuda_spmv_host.cpp and the GPU
// test in tests/cuda/test_cuda_spmv.cu): plain C++, no CUDA.
#include <cstdint>
#include <vector>

#include <npft/core/dtype.hpp>
#include <npft/core/random.hpp>

namespace npft_test {

/// A CSR matrix with fp16 values, as the outlier SpMV takes it.
struct Csr {
    npft::Index rows = 0, cols = 0;
    std::vector<std::int32_t> row_offsets{0}, columns;
    std::vector<npft::half> values;
    npft::Index nnz() const { return static_cast<npft::Index>(values.size()); }
};

/// Random CSR: row `heavy` (if >= 0) holds `heavy_length` nonzeros, every third row is empty, the others hold 0..5.
/// Values are integers in [-8, 8], so sums of products with small integer activations are exact in fp32.
inline Csr random_csr(npft::Index rows, npft::Index cols, npft::Index heavy, npft::Index heavy_length, std::uint64_t seed) {
    Csr c;
    c.rows = rows;
    c.cols = cols;
    for (npft::Index r = 0; r < rows; ++r) {
        const auto draw = npft::random_words({seed, 1}, static_cast<std::uint64_t>(r))[0];
        const npft::Index length = r == heavy ? heavy_length : (r % 3 == 1 ? 0 : static_cast<npft::Index>(draw % 6));
        for (npft::Index i = 0; i < length; ++i) {
            const auto at = static_cast<std::uint64_t>(c.columns.size());
            c.columns.push_back(static_cast<std::int32_t>(npft::random_words({seed, 2}, at)[0] % static_cast<std::uint64_t>(cols)));
            c.values.push_back(npft::half(static_cast<float>(static_cast<int>(npft::random_words({seed, 3}, at)[0] % 17) - 8)));
        }
        c.row_offsets.push_back(static_cast<std::int32_t>(c.columns.size()));
    }
    return c;
}

}  // namespace npft_test
