// GPU correctness of the outlier SpMV (spmv_add, spmv.cuh) against a scalar CSR product in double: a heavy row spanning
// many tiles, empty rows, nnz = 0, batch 1..8, a batch above grid.y's limit, fp16 and bf16 activations, and out holding
// values to add to. Without a usable device it prints "SKIPPED: <reason>" and exits with 77 (CTest: skipped).
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <npft/core/random.hpp>
#include <npft/cuda.cuh>

#include "gpu_check.hpp"

#include "../spmv_patterns.hpp"

namespace {

using npft::Index;
namespace nc = npft::cuda;

using npft_test::gpu::expect;

using npft_test::Csr;
using npft_test::random_csr;

/// out = initial + S x^T on the GPU, compared with the double reference within fp32 rounding of the sums.
template <class T>
void check_spmv(const Csr& c, Index batch, const std::string& name) {
    const Index ldx = c.cols + 8;
    std::vector<T> x(static_cast<std::size_t>(batch * ldx), T(0.0f));
    for (Index m = 0; m < batch; ++m)
        for (Index k = 0; k < c.cols; ++k)
            x[static_cast<std::size_t>(m * ldx + k)] = T(npft::uniform({91, 5}, static_cast<std::uint64_t>(m * c.cols + k), -2.0f, 2.0f));
    std::vector<float> initial(static_cast<std::size_t>(batch * c.rows));
    for (std::size_t i = 0; i < initial.size(); ++i) initial[i] = npft::uniform({91, 6}, i, -1.0f, 1.0f);
    std::vector<double> expected(initial.size()), magnitude(initial.size());
    for (Index m = 0; m < batch; ++m)
        for (Index r = 0; r < c.rows; ++r) {
            const auto o = static_cast<std::size_t>(m * c.rows + r);
            expected[o] = initial[o];
            magnitude[o] = std::abs(initial[o]);
            for (std::int32_t k = c.row_offsets[static_cast<std::size_t>(r)]; k < c.row_offsets[static_cast<std::size_t>(r + 1)]; ++k) {
                const double term = static_cast<double>(static_cast<float>(c.values[static_cast<std::size_t>(k)])) *
                                    static_cast<float>(x[static_cast<std::size_t>(m * ldx + c.columns[static_cast<std::size_t>(k)])]);
                expected[o] += term;
                magnitude[o] += std::abs(term);
            }
        }
    const nc::DeviceSparseOutliers sparse(c);
    const nc::DeviceBuffer<T> dx(x);
    nc::DeviceBuffer<float> out(initial);
    nc::Stream stream;
    nc::spmv_add<T>(sparse.view(), dx.data(), batch, ldx, out.data(), stream.get());
    stream.synchronize();
    const std::vector<float> got = out.download();
    int bad = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
        const double bound = 1e-5 * magnitude[i] + 1e-6;  // fp32 sums of at most a few thousand terms
        if (!std::isfinite(got[i]) || std::abs(got[i] - expected[i]) > bound) {
            if (bad++ < 3) std::printf("  %s: output %zu = %g, expected %g (bound %g)\n", name.c_str(), i, got[i], expected[i], bound);
        }
    }
    expect(bad == 0, name + ": " + std::to_string(bad) + " outputs outside the bound");
}

template <class T>
void run_all(const char* type) {
    const std::string t(type);
    const Csr heavy = random_csr(300, 512, 37, 5000, 1);  // one row holds ~90% of the nonzeros, over 5+ tiles
    for (Index batch = 1; batch <= 8; ++batch) check_spmv<T>(heavy, batch, t + " heavy row batch " + std::to_string(batch));
    check_spmv<T>(random_csr(1000, 256, -1, 0, 2), 3, t + " short rows, empty rows");
    Csr last_only;  // every row empty but the last
    last_only.rows = 2000;
    last_only.cols = 64;
    last_only.row_offsets.assign(2000, 0);
    for (std::int32_t k = 0; k < 1500; ++k) {
        last_only.columns.push_back(k % 64);
        last_only.values.push_back(npft::half(static_cast<float>(k % 7) - 3.0f));
    }
    last_only.row_offsets.push_back(1500);
    check_spmv<T>(last_only, 2, t + " nonzeros only in the last row");
    Csr empty;  // nnz = 0: nothing launched, out keeps its values
    empty.rows = 64;
    empty.cols = 64;
    empty.row_offsets.assign(65, 0);
    check_spmv<T>(empty, 4, t + " nnz 0");
    check_spmv<T>(random_csr(8, 16, 3, 40, 4), 70000, t + " batch 70000 (grid.y strided)");
}

}  // namespace

int main() {
    return npft_test::gpu::run([] {
        run_all<npft::half>("fp16");
        run_all<npft::bfloat16>("bf16");
    });
}
