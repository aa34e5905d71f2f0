// CPU dequant-GEMV/GEMM kernels: every format, bit width, group size, batch and odd shape, on every path this CPU
// has, against dequantize-then-Eigen (in double).
//
// Two kinds of checks:
//  - exact: integer activations, power-of-two scales and lut levels on a 1/8 grid make every partial sum exactly
//    representable in fp32, so every path and every summation order must return the reference bit for bit;
//  - bounded: Gaussian activations and arbitrary fp16 scales; the error of any summation order of n terms is at most
//    gamma(n) = n u / (1 - n u) (u = 2^-24) times the sum of the absolute terms. The SIMD paths sum q x and z x
//    separately (zero point folded out), so the terms are s (|q| + |z|) |x| and n counts both sums plus the group
//    and lane reductions: n = 2 K + 2 groups + 32.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <npft/core/random.hpp>
#include <npft/kernels/cpu/multiply.hpp>

namespace {

using npft::Index;
using npft::Matrix;
using npft::MatrixView;
using npft::quant::Format;
using npft::quant::QuantizedMatrix;
namespace cpu = npft::kernels::cpu;

struct Case {
    Format format;
    int bits;
    Index group;  // 0: per channel (group = cols)
};

std::string describe(const Case& c, Index rows, Index cols, Index batch) {
    return std::string(npft::quant::format_name(c.format)) + " bits " + std::to_string(c.bits) + " group " +
           std::to_string(c.group == 0 ? cols : c.group) + " shape " + std::to_string(rows) + "x" + std::to_string(cols) +
           " batch " + std::to_string(batch);
}

/// A random matrix. exact: scales are powers of two and lut levels multiples of 1/8 (see the file comment).
QuantizedMatrix random_matrix(const Case& c, Index rows, Index cols, std::uint64_t seed, bool exact) {
    const Index group = c.group == 0 ? cols : c.group;
    QuantizedMatrix w(c.format, c.bits, rows, cols, group);
    const npft::RandomKey key{seed, npft::make_stream(7)};
    const std::uint32_t levels = 1u << c.bits;
    for (Index r = 0; r < rows; ++r)
        for (Index j = 0; j < cols; ++j)
            w.codes().set(r, j, npft::random_words(key, static_cast<std::uint64_t>(r * cols + j))[0] % levels);
    const npft::RandomKey meta{seed, npft::make_stream(8)};
    if (c.format == Format::lut) {
        for (Index r = 0; r < rows; ++r) {
            npft::quant::LutParams p;
            p.bits = c.bits;
            float level = exact ? -8.0f : -1.0f;
            for (std::uint32_t q = 0; q < levels; ++q) {
                const auto words = npft::random_words(meta, static_cast<std::uint64_t>(r * 256 + q));
                level += exact ? static_cast<float>(1 + words[0] % 3) / 8.0f : 0.01f + 0.05f * npft::bits_to_unit_float(words[1]);
                p.levels[q] = npft::quant::round_to_half(level);
            }
            w.set_lut(r, p);
        }
    } else {
        for (Index r = 0; r < rows; ++r) {
            for (Index g = 0; g < w.groups(); ++g) {
                const auto words = npft::random_words(meta, static_cast<std::uint64_t>(r * w.groups() + g));
                npft::quant::UniformParams p;
                p.bits = c.bits;
                p.scale = exact ? std::ldexp(1.0f, -1 - static_cast<int>(words[0] % 4))
                                : npft::quant::round_to_half(0.001f + 0.1f * npft::bits_to_unit_float(words[1]));
                p.zero = c.format == Format::uniform_asymmetric ? static_cast<float>(words[2] % levels)
                                                                 : static_cast<float>(levels / 2);
                w.set_group(r, g, p);
            }
        }
    }
    return w;
}

Matrix random_activations(Index batch, Index cols, std::uint64_t seed, bool exact) {
    Matrix x(batch, cols);
    const npft::RandomKey key{seed, npft::make_stream(9)};
    for (Index m = 0; m < batch; ++m)
        for (Index j = 0; j < cols; ++j) {
            const auto at = static_cast<std::uint64_t>(m * cols + j);
            x(m, j) = exact ? static_cast<float>(static_cast<int>(npft::random_words(key, at)[0] % 9) - 4) : npft::gaussian(key, at);
        }
    return x;
}

/// The reference: dequantize, then Eigen in double.
Eigen::MatrixXd reference(const QuantizedMatrix& w, const Matrix& x) {
    return x.cast<double>() * w.dequantize().cast<double>().transpose();
}

/// The documented error bound of every path (file comment), per output element.
Eigen::MatrixXd error_bound(const QuantizedMatrix& w, const Matrix& x) {
    Eigen::MatrixXd terms(w.rows(), w.cols());  // |s| (|q| + |z|) or |table value|
    for (Index r = 0; r < w.rows(); ++r)
        for (Index j = 0; j < w.cols(); ++j) {
            if (w.format() == Format::lut) {
                terms(r, j) = std::abs(w.dequantize_at(r, j));
            } else {
                const auto p = w.uniform_params(r, j / w.group_size());
                terms(r, j) = p.scale * (static_cast<double>(w.codes().get(r, j)) + p.zero);
            }
        }
    const double n = static_cast<double>(2 * w.cols() + 2 * w.groups() + 32);
    const double u = std::ldexp(1.0, -24);
    return (n * u / (1.0 - n * u)) * (x.cast<double>().cwiseAbs() * terms.transpose());
}

std::vector<cpu::Path> supported_paths() {
    std::vector<cpu::Path> paths{cpu::Path::portable};
    if (cpu::path_supported(cpu::Path::avx2)) paths.push_back(cpu::Path::avx2);
    if (cpu::path_supported(cpu::Path::avx512)) paths.push_back(cpu::Path::avx512);
    return paths;
}

Matrix run(const QuantizedMatrix& w, const Matrix& x, cpu::Path path, int threads = 1) {
    return cpu::multiply(w, MatrixView<const float>(npft::as_matrix_view(x)), cpu::MultiplyOptions{threads, path, cpu::Activations::fp32});
}

const std::vector<Case> all_formats = {
    {Format::uniform_symmetric, 2, 0},  {Format::uniform_symmetric, 3, 0},  {Format::uniform_symmetric, 4, 0},
    {Format::uniform_symmetric, 8, 0},  {Format::uniform_symmetric, 2, 32}, {Format::uniform_symmetric, 3, 32},
    {Format::uniform_symmetric, 4, 32}, {Format::uniform_symmetric, 8, 32}, {Format::uniform_asymmetric, 2, 0},
    {Format::uniform_asymmetric, 3, 0}, {Format::uniform_asymmetric, 4, 0}, {Format::uniform_asymmetric, 8, 0},
    {Format::uniform_asymmetric, 2, 8}, {Format::uniform_asymmetric, 3, 16}, {Format::uniform_asymmetric, 4, 8},
    {Format::uniform_asymmetric, 8, 16}, {Format::uniform_asymmetric, 5, 8}, {Format::uniform_symmetric, 6, 16},
    {Format::uniform_asymmetric, 7, 0}, {Format::lut, 3, 0}, {Format::lut, 4, 0}, {Format::lut, 2, 0},
    {Format::lut, 5, 0}, {Format::lut, 8, 0},
};

}  // namespace

TEST_CASE("a hand-computed 2x8 product", "[kernels][cpu]") {
    // Symmetric 4-bit, one scale per row: w = s (q - 8).
    QuantizedMatrix w(Format::uniform_symmetric, 4, 2, 8, 8);
    const std::uint32_t codes[2][8] = {{8, 9, 10, 7, 0, 15, 8, 8}, {1, 2, 3, 4, 5, 6, 7, 8}};
    for (npft::Index r = 0; r < 2; ++r)
        for (npft::Index j = 0; j < 8; ++j) w.codes().set(r, j, codes[r][j]);
    w.set_group(0, 0, {4, 0.5f, 8.0f});
    w.set_group(1, 0, {4, 2.0f, 8.0f});
    Matrix x(1, 8);
    x << 1, 2, 3, 4, 5, 6, 7, 8;
    // row 0: 0.5 * (0 + 2 + 6 - 4 - 40 + 42 + 0 + 0) = 3; row 1: 2 * (-7 - 12 - 15 - 16 - 15 - 12 - 7 + 0) = -168
    for (const cpu::Path path : supported_paths()) {
        INFO(cpu::path_name(path));
        const Matrix y = run(w, x, path);
        CHECK(y(0, 0) == 3.0f);
        CHECK(y(0, 1) == -168.0f);
    }
}

TEST_CASE("every path is exact on exactly representable data", "[kernels][cpu]") {
    // Odd shapes: N not a multiple of any tile, K a multiple of 8 but not of 16 or 32 (or of 32 for group 32).
    for (const Case& c : all_formats) {
        const npft::Index cols = (c.group == 32 || c.group == 16) ? 96 : 104;
        const npft::Index rows = 13;
        const QuantizedMatrix w = random_matrix(c, rows, cols, 11, true);
        for (const npft::Index batch : {1, 2, 3, 5, 8, 17, 64}) {
            const Matrix x = random_activations(batch, cols, 100 + static_cast<std::uint64_t>(batch), true);
            const Eigen::MatrixXd expected = reference(w, x);
            for (const cpu::Path path : supported_paths()) {
                INFO(describe(c, rows, cols, batch) << " path " << cpu::path_name(path));
                const Matrix y = run(w, x, path);
                REQUIRE(y.cast<double>() == expected);
            }
        }
    }
}

TEST_CASE("every path is within the documented bound on random data", "[kernels][cpu]") {
    for (const Case& c : all_formats) {
        for (const npft::Index cols : {npft::Index{256}, npft::Index{520}}) {
            if (c.group != 0 && cols % c.group != 0) continue;
            const npft::Index rows = 29;
            const QuantizedMatrix w = random_matrix(c, rows, cols, 3 + static_cast<std::uint64_t>(cols), false);
            for (const npft::Index batch : {1, 6}) {
                const Matrix x = random_activations(batch, cols, 200 + static_cast<std::uint64_t>(batch), false);
                const Eigen::MatrixXd expected = reference(w, x);
                const Eigen::MatrixXd bound = error_bound(w, x);
                Matrix portable;
                for (const cpu::Path path : supported_paths()) {
                    INFO(describe(c, rows, cols, batch) << " path " << cpu::path_name(path));
                    const Matrix y = run(w, x, path);
                    const Eigen::MatrixXd error = (y.cast<double>() - expected).cwiseAbs();
                    CHECK((error.array() <= bound.array()).all());
                    if (path == cpu::Path::portable) portable = y;
                    // Both within the bound of the exact value, hence within twice the bound of each other.
                    CHECK(((y - portable).cast<double>().cwiseAbs().array() <= 2.0 * bound.array()).all());
                }
            }
        }
    }
}

TEST_CASE("group sizes that are not a multiple of 8 run the portable path and stay exact", "[kernels][cpu]") {
    const Case c{Format::uniform_asymmetric, 3, 12};
    const QuantizedMatrix w = random_matrix(c, 7, 36, 5, true);
    CHECK(cpu::kernel_path(w, cpu::Path::best) == cpu::Path::portable);
    const Matrix x = random_activations(3, 36, 6, true);
    CHECK(run(w, x, cpu::Path::best).cast<double>() == reference(w, x));
    const Case per_channel{Format::lut, 4, 0};
    const QuantizedMatrix odd = random_matrix(per_channel, 5, 100, 5, true);
    const Matrix x_odd = random_activations(2, 100, 6, true);
    CHECK(run(odd, x_odd, cpu::Path::best).cast<double>() == reference(odd, x_odd));
}

TEST_CASE("threads split output rows without changing a bit", "[kernels][cpu]") {
    for (const Case& c : {Case{Format::uniform_asymmetric, 4, 128}, Case{Format::lut, 3, 0}, Case{Format::uniform_symmetric, 2, 64}}) {
        const QuantizedMatrix w = random_matrix(c, 301, 256, 21, false);
        for (const npft::Index batch : {1, 6}) {
            const Matrix x = random_activations(batch, 256, 22, false);
            for (const cpu::Path path : supported_paths()) {
                INFO(describe(c, 301, 256, batch) << " path " << cpu::path_name(path));
                const Matrix one = run(w, x, path, 1);
                for (const int threads : {2, 3}) {
                    const Matrix many = run(w, x, path, threads);
                    CHECK(std::memcmp(one.data(), many.data(), sizeof(float) * static_cast<std::size_t>(one.size())) == 0);
                }
            }
        }
    }
}

TEST_CASE("strided activations and outputs, gemv", "[kernels][cpu]") {
    const Case c{Format::uniform_symmetric, 4, 32};
    const QuantizedMatrix w = random_matrix(c, 19, 64, 31, false);
    const Matrix x = random_activations(3, 64, 32, false);
    for (const cpu::Path path : supported_paths()) {
        INFO(cpu::path_name(path));
        const Matrix expected = run(w, x, path);
        // x column-major (strided along K), y written transposed.
        Eigen::MatrixXf x_col_major = x;
        Eigen::MatrixXf y_transposed(w.rows(), 3);
        const MatrixView<const float> xv = npft::as_matrix_view(x_col_major);
        const MatrixView<float> yv = npft::MatrixView<float>(npft::as_matrix_view(y_transposed)).transposed();
        cpu::multiply(w, xv, yv, {1, path, cpu::Activations::fp32});
        CHECK(Matrix(y_transposed.transpose()) == expected);
        // gemv on a strided vector equals a one-token multiply (not row 1 of the 3-token product: the SIMD paths
        // tile tokens, and the tile width changes the summation order).
        const Matrix one_token = run(w, Matrix(x.row(1)), path);
        std::vector<float> strided_x(2 * 64), y(19);
        for (npft::Index j = 0; j < 64; ++j) strided_x[static_cast<std::size_t>(2 * j)] = x(1, j);
        cpu::gemv(w, npft::VectorView<const float>(strided_x.data(), 64, 2), npft::VectorView<float>(y.data(), 19), {1, path, cpu::Activations::fp32});
        for (npft::Index r = 0; r < 19; ++r) CHECK(y[static_cast<std::size_t>(r)] == one_token(0, r));
    }
}

TEST_CASE("bad shapes and options are rejected with a message", "[kernels][cpu]") {
    const QuantizedMatrix w = random_matrix({Format::uniform_symmetric, 4, 32}, 8, 64, 1, true);
    Matrix x(2, 64), y(2, 8), wrong_x(2, 63), wrong_y(2, 9);
    x.setZero();
    const auto view = [](const Matrix& m) { return MatrixView<const float>(npft::as_matrix_view(m)); };
    const auto out = [](Matrix& m) { return MatrixView<float>(npft::as_matrix_view(m)); };
    CHECK_THROWS_WITH(cpu::multiply(w, view(wrong_x), out(y)), Catch::Contains("x must have 64 columns"));
    CHECK_THROWS_WITH(cpu::multiply(w, view(x), out(wrong_y)), Catch::Contains("y must be 2 x 8"));
    CHECK_THROWS_WITH(cpu::multiply(w, view(x), out(y), {0, cpu::Path::best}), Catch::Contains("threads must be at least 1"));
    CHECK_THROWS_AS(cpu::multiply(QuantizedMatrix{}, view(x), out(y)), npft::Error);
    std::vector<float> v(63);
    CHECK_THROWS_WITH(cpu::gemv(w, npft::VectorView<const float>(v.data(), 63), npft::VectorView<float>(v.data(), 8)),
                      Catch::Contains("x must have 64 elements"));
    for (const cpu::Path path : {cpu::Path::avx2, cpu::Path::avx512}) {
        if (cpu::path_supported(path)) continue;
        CHECK_THROWS_WITH(cpu::multiply(w, view(x), out(y), {1, path}), Catch::Contains("does not support it"));
    }
}

TEST_CASE("the SIMD paths this CPU has are exercised", "[kernels][cpu]") {
    const cpu::CpuFeatures& f = cpu::cpu_features();
    INFO("avx2+fma+f16c " << f.has_avx2_path() << ", avx512 f/bw/vl " << f.has_avx512_path() << ", vnni " << f.avx512vnni);
    if (!cpu::path_supported(cpu::Path::avx512)) WARN("no AVX-512 on this CPU: the avx512 path is compiled but not run (SKIPPED)");
    if (!cpu::path_supported(cpu::Path::avx2)) WARN("no AVX2+FMA+F16C on this CPU: the avx2 path is compiled but not run (SKIPPED)");
    CHECK(cpu::resolve_path(cpu::Path::best) ==
          (f.has_avx512_path() ? cpu::Path::avx512 : f.has_avx2_path() ? cpu::Path::avx2 : cpu::Path::portable));
}

TEST_CASE("infinite and huge activations: every path returns what the portable path does", "[kernels][cpu]") {
    // Symmetric 4-bit, small power-of-two scales: with x = 1e35 the exact products (|s (q - z) x| <= 2^-10 * 8 * 1e35
    // per term) fit in fp32, but sum_j q x_j over 64 terms of the folded zero point would not stay far from FLT_MAX
    // once scaled; +Inf must give +-Inf (not Inf - Inf = NaN).
    for (const Case& c : {Case{Format::uniform_symmetric, 4, 32}, Case{Format::uniform_asymmetric, 3, 0}, Case{Format::lut, 4, 0}}) {
        const QuantizedMatrix w = random_matrix(c, 9, 64, 77, true);
        for (const float big : {std::numeric_limits<float>::infinity(), 1e35f, 3e38f}) {
            Matrix x = random_activations(2, 64, 78, true);
            x(0, 5) = big;
            x(1, 7) = -big;
            x(1, 9) = big;
            const Matrix expected = run(w, x, cpu::Path::portable);
            for (const cpu::Path path : supported_paths())
                for (const cpu::Activations activations : {cpu::Activations::fp32, cpu::Activations::int8}) {
                    INFO(describe(c, 9, 64, 2) << " x " << big << " path " << cpu::path_name(path));
                    const Matrix y = cpu::multiply(w, MatrixView<const float>(npft::as_matrix_view(x)), {1, path, activations});
                    CHECK(std::memcmp(y.data(), expected.data(), sizeof(float) * static_cast<std::size_t>(y.size())) == 0);
                }
            if (big == 1e35f) CHECK(expected.allFinite());  // the exact products fit
        }
    }
    // Just below the limit the SIMD paths run (and stay finite); the limit is far above real activations.
    CHECK(cpu::detail::simd_activation_limit(4096) > 1e27f);
}
