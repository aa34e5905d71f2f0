// GPU correctness of the quantized kernels against the CPU reference (QuantizedMatrix::dequantize_at), for every format,
// both activation types, batch 1..256, odd shapes, the dense-and-sparse path, large activations and can_implement.
// Without a usable device it prints "SKIPPED: <reason>" and exits with 77 (CTest: skipped).
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <npft/cuda.cuh>

#include "gpu_check.hpp"

#include "random_quantized.hpp"
#include "../spmv_patterns.hpp"

namespace {

using npft::Index;
using npft::quant::Format;
namespace nc = npft::cuda;

using npft_test::gpu::expect;

template <class T>
constexpr double unit_roundoff() {
    return std::is_same_v<T, npft::half> ? 1.0 / 2048.0 : 1.0 / 256.0;
}

using npft_test::Csr;

/// Outliers with one heavy row (row 1: 6 * cols nonzeros, several SpMV tiles) and short or empty others.
Csr random_outliers(Index rows, Index cols, std::uint64_t seed) { return npft_test::random_csr(rows, cols, 1, 6 * cols, seed); }

/// Runs one problem and compares every output with the reference in double. The tensor-core path rounds weights to T
/// and every output is rounded to T once, so the bound is 2 u_T * sum |w x| (+ the same for the outliers).
template <class T>
std::vector<T> random_activations(Index batch, Index k, float low, float high) {
    std::vector<T> x(static_cast<std::size_t>(batch * k));
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = T(npft::uniform({77, 5}, i, low, high));
    return x;
}

/// How check_problem calls the kernels: gemm without a workspace (never splits K), or with one (splits K where
/// gemm_split says so, and then must be deterministic: a second run gives the same bits).
enum class Path { unsplit, split };

/// relative_bound: tolerance as a fraction of sum |w x|; 0 picks 2 u_T (weights and output rounded to T).
/// expect_split: the shape must trigger split-K on this device (the split path is what the case is about).
template <class T>
void check_problem(const npft::quant::QuantizedMatrix& q, const std::vector<T>& x, Index batch, const Csr* outliers,
                   const std::string& name, double relative_bound = 0.0, Path path = Path::unsplit,
                   bool expect_split = false) {
    const Index n = q.rows(), k = q.cols();
    std::vector<double> expected(static_cast<std::size_t>(batch * n), 0.0), magnitude(expected.size(), 0.0);
    const npft::Matrix w = q.dequantize();
    for (Index m = 0; m < batch; ++m)
        for (Index r = 0; r < n; ++r) {
            double sum = 0.0, abs_sum = 0.0;
            for (Index j = 0; j < k; ++j) {
                const double term = static_cast<double>(w(r, j)) * static_cast<float>(x[static_cast<std::size_t>(m * k + j)]);
                sum += term;
                abs_sum += std::abs(term);
            }
            if (outliers)
                for (Index i = outliers->row_offsets[static_cast<std::size_t>(r)]; i < outliers->row_offsets[static_cast<std::size_t>(r + 1)]; ++i) {
                    const double term = static_cast<double>(static_cast<float>(outliers->values[static_cast<std::size_t>(i)])) *
                                        static_cast<float>(x[static_cast<std::size_t>(m * k + outliers->columns[static_cast<std::size_t>(i)])]);
                    sum += term;
                    abs_sum += std::abs(term);
                }
            expected[static_cast<std::size_t>(m * n + r)] = sum;
            magnitude[static_cast<std::size_t>(m * n + r)] = abs_sum;
        }

    nc::DeviceQuantizedMatrix weights(nc::to_tiled(q));
    nc::DeviceBuffer<T> dx(x);
    nc::DeviceBuffer<T> dy(static_cast<std::size_t>(batch * n));
    nc::GemmArguments<T> args{&weights, dx.data(), batch, 0, dy.data(), 0, nullptr};
    const nc::Support support = nc::can_implement(args);
    expect(support.ok, name + ": can_implement: " + support.reason);
    if (!support.ok) return;
    nc::Stream stream;
    const bool split = path == Path::split;
    if (expect_split) expect(nc::gemm_split(args).splits > 1, name + ": the shape splits K");
    auto run = [&] {
        if (outliers) {
            nc::DeviceSparseOutliers sparse(*outliers);
            nc::DeviceBuffer<float> workspace(split ? nc::dense_sparse_workspace_size(args)
                                                    : nc::dense_sparse_workspace_size(batch, n));
            nc::dense_sparse_gemm(args, sparse, workspace, stream.get());
            stream.synchronize();
        } else if (split) {
            nc::DeviceBuffer<float> workspace(nc::gemm_workspace_size(args));
            nc::gemm(args, workspace, stream.get());
            stream.synchronize();
        } else {
            nc::gemm(args, stream.get());
            stream.synchronize();
        }
        return dy.download();
    };
    const std::vector<T> y = run();
    if (split) {  // deterministic: the splits are added in a fixed order, so a second run gives the same bits
        const std::vector<T> again = run();
        bool same = true;
        for (std::size_t i = 0; i < y.size(); ++i) same = same && y[i].bits == again[i].bits;
        expect(same, name + ": a second split-K run gives the same bits");
    }
    int bad = 0;
    for (std::size_t i = 0; i < y.size(); ++i) {
        const double got = static_cast<float>(y[i]);
        const double bound = relative_bound > 0.0 ? relative_bound * magnitude[i]
                                                  : 2.0 * unit_roundoff<T>() * (magnitude[i] + std::abs(expected[i])) + 1e-6;
        if (!std::isfinite(got) || std::abs(got - expected[i]) > bound) {
            if (bad++ < 3)
                std::printf("  %s: output %zu = %g, expected %g (bound %g)\n", name.c_str(), i, got, expected[i], bound);
        }
    }
    expect(bad == 0, name + ": " + std::to_string(bad) + " outputs outside the bound");
}

struct FormatCase {
    Format format;
    int bits;
    Index group;  // 0: one group per row
};

/// Split-K: few output rows and a long K, so that every path (GEMV batch 1 and 2..8, MidBatchTile, LargeBatchTile)
/// splits K on any GPU with more than a handful of SMs. 256 x 8192 with groups; 136 x 4104 per channel, where the
/// 129 packing blocks leave the last split short and the rows a partial tile. Each case also runs without a split.
template <class T>
void run_split_k(const char* type) {
    const FormatCase formats[] = {{Format::uniform_asymmetric, 4, 128}, {Format::uniform_symmetric, 3, 64},
                                  {Format::uniform_asymmetric, 2, 0},   {Format::lut, 4, 0},
                                  {Format::lut, 3, 0}};
    std::uint64_t seed = 3000;
    for (const FormatCase& f : formats)
        for (const auto& shape : {std::pair<Index, Index>{256, 8192}, std::pair<Index, Index>{136, 4104}}) {
            const Index group = f.group == 0 || shape.second % f.group != 0 ? shape.second : f.group;
            const auto q = npft::test::random_quantized(f.format, f.bits, shape.first, shape.second, group, seed++);
            for (const Index batch : {Index{1}, Index{5}, Index{16}, Index{64}}) {
                const std::string name = std::string(type) + " split-K " + npft::quant::format_name(f.format) + " " +
                                         std::to_string(f.bits) + "-bit g" + std::to_string(group) + " " +
                                         std::to_string(shape.first) + "x" + std::to_string(shape.second) + " batch " +
                                         std::to_string(batch);
                const auto x = random_activations<T>(batch, shape.second, -1.0f, 1.0f);
                check_problem<T>(q, x, batch, nullptr, name, 0.0, Path::split, true);
                check_problem<T>(q, x, batch, nullptr, name + " (unsplit)", 0.0, Path::unsplit);
            }
        }
    // Dense and sparse with a split dense part: the outliers' fp32 sums enter once, in the reduction.
    const auto q = npft::test::random_quantized(Format::uniform_asymmetric, 4, 256, 8192, 128, 8);
    const Csr outliers = random_outliers(256, 8192, 9);
    for (const Index batch : {Index{1}, Index{16}})
        check_problem<T>(q, random_activations<T>(batch, 8192, -1.0f, 1.0f), batch, &outliers,
                         std::string(type) + " split-K dense+sparse batch " + std::to_string(batch), 0.0, Path::split, true);
}

template <class T>
void run_all(const char* type) {
    const FormatCase formats[] = {{Format::uniform_symmetric, 2, 64},  {Format::uniform_asymmetric, 2, 0},
                                  {Format::uniform_symmetric, 3, 0},   {Format::uniform_asymmetric, 3, 128},
                                  {Format::uniform_symmetric, 4, 128}, {Format::uniform_asymmetric, 4, 0},
                                  {Format::lut, 3, 0},                 {Format::lut, 4, 0}};
    const Index batches[] = {1, 2, 3, 4, 5, 8, 9, 16, 33, 64, 100, 256};
    std::uint64_t seed = 1000;
    for (const FormatCase& f : formats) {
        // Odd shapes: N not a multiple of any tile, K not a multiple of 32 (but of 8, as required).
        for (const auto& shape : {std::pair<Index, Index>{300, 256}, std::pair<Index, Index>{129, 264}}) {
            const Index group = f.group == 0 || shape.second % f.group != 0 ? shape.second : f.group;
            const auto q = npft::test::random_quantized(f.format, f.bits, shape.first, shape.second, group, seed++);
            for (const Index batch : batches) {
                const std::string name = std::string(type) + " " + npft::quant::format_name(f.format) + " " +
                                         std::to_string(f.bits) + "-bit g" + std::to_string(group) + " " +
                                         std::to_string(shape.first) + "x" + std::to_string(shape.second) + " batch " +
                                         std::to_string(batch);
                check_problem<T>(q, random_activations<T>(batch, shape.second, -1.0f, 1.0f), batch, nullptr, name);
            }
        }
    }
    // Large activations: the first half of K multiplies +1500, the second half the same weights by -1500, so the
    // result is 0 while partial sums reach ~3e6, far beyond fp16's 65504 (an fp16 accumulator returns Inf or garbage).
    {
        const Index rows = 256, k = 4096;
        auto big = npft::test::random_quantized(Format::uniform_asymmetric, 4, rows, k, k, 5);
        for (Index r = 0; r < rows; ++r) {
            npft::quant::UniformParams p = big.uniform_params(r, 0);
            p.zero = 0.0f;  // codes 8..15 with zero point 0: every weight positive
            big.set_group(r, 0, p);
            for (Index j = 0; j < k / 2; ++j) {
                const std::uint32_t code = 8u + npft::random_words({55, 1}, static_cast<std::uint64_t>(r * k + j))[0] % 8u;
                big.codes().set(r, j, code);
                big.codes().set(r, j + k / 2, code);
            }
        }
        for (const Index batch : {Index{1}, Index{8}, Index{64}}) {
            std::vector<T> x(static_cast<std::size_t>(batch * k));
            for (Index m = 0; m < batch; ++m)
                for (Index j = 0; j < k; ++j) x[static_cast<std::size_t>(m * k + j)] = T(j < k / 2 ? 1500.0f : -1500.0f);
            check_problem<T>(big, x, batch, nullptr, std::string(type) + " large activations batch " + std::to_string(batch), 1e-4);
        }
    }
    // Dense and sparse: fp16 outliers through the nnz-balanced SpMV (row 1 spans several tiles), added before rounding.
    const auto q = npft::test::random_quantized(Format::uniform_asymmetric, 3, 200, 512, 128, 6);
    const Csr outliers = random_outliers(200, 512, 7);
    for (const Index batch : {Index{1}, Index{7}, Index{40}})
        check_problem<T>(q, random_activations<T>(batch, 512, -1.0f, 1.0f), batch, &outliers,
                         std::string(type) + " dense+sparse batch " + std::to_string(batch));
    run_split_k<T>(type);
}

void check_rejections() {
    const auto q = npft::test::random_quantized(Format::uniform_asymmetric, 4, 64, 36, 36, 9);  // K = 36: not a multiple of 8
    nc::DeviceQuantizedMatrix weights(nc::to_tiled(q));
    nc::DeviceBuffer<npft::half> x(64 * 36), y(64 * 64);
    nc::GemmArguments<npft::half> args{&weights, x.data(), 4, 0, y.data(), 0, nullptr};
    const nc::Support s = nc::can_implement(args);
    expect(!s.ok && s.reason.find("multiple of 8") != std::string::npos, "K = 36 is rejected naming the multiple of 8: " + s.reason);
    bool threw = false;
    try {
        nc::gemm(args);
    } catch (const npft::Error& e) {
        threw = std::string(e.what()).find("multiple of 8") != std::string::npos;
    }
    expect(threw, "gemm throws npft::Error with can_implement's reason");
    const auto five = npft::test::random_quantized(Format::uniform_asymmetric, 5, 64, 64, 64, 9);
    nc::DeviceQuantizedMatrix weights5(nc::to_tiled(five));
    args.weights = &weights5;
    const nc::Support s5 = nc::can_implement(args);
    expect(!s5.ok && s5.reason.find("5 bits") != std::string::npos, "5-bit codes are rejected: " + s5.reason);
    args.weights = nullptr;
    expect(!nc::can_implement(args).ok, "null weights are rejected");

    // A split-K workspace smaller than gemm_workspace_size is rejected before any launch.
    const auto deep = npft::test::random_quantized(Format::uniform_asymmetric, 4, 128, 8192, 128, 9);
    nc::DeviceQuantizedMatrix deep_weights(nc::to_tiled(deep));
    nc::DeviceBuffer<npft::half> deep_x(8192), deep_y(128);
    nc::GemmArguments<npft::half> deep_args{&deep_weights, deep_x.data(), 1, 0, deep_y.data(), 0, nullptr};
    const std::size_t needed = nc::gemm_workspace_size(deep_args);
    expect(needed > 0, "128 x 8192 at batch 1 splits K");
    nc::DeviceBuffer<float> small(needed - 1);
    bool workspace_threw = false;
    try {
        nc::gemm(deep_args, small);
    } catch (const npft::Error& e) {
        workspace_threw = std::string(e.what()).find("split-K workspace") != std::string::npos;
    }
    expect(workspace_threw, "a too small split-K workspace throws npft::Error naming it");
}

}  // namespace

int main() {
    return npft_test::gpu::run([] {
        run_all<npft::half>("fp16");
        run_all<npft::bfloat16>("bf16");
        check_rejections();
    });
}
