// The opt-in int8-activation path: activation quantization and the decoder order by hand, the kernel against
// dequantize-then-Eigen (double) on the quantized activations (fp32 rounding bound, as for the fp32 paths; plus the
// 12-bit table rounding for LUT rows) for every covered format, odd shapes and token tiles, and the total error against
// the unquantized activations (half a quantization step per activation, times |w|).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include <npft/core/random.hpp>
#include <npft/kernels/cpu/multiply.hpp>

#include "int8_reference.hpp"
#include "test_matrices.hpp"

namespace {

using npft::Matrix;
using npft::MatrixView;
using npft::quant::Format;
using npft::quant::QuantizedMatrix;
namespace cpu = npft::kernels::cpu;
using Index = npft::Index;

QuantizedMatrix random_matrix(Format format, int bits, Index rows, Index cols, Index group, std::uint64_t seed) {
    return npft_test::random_quantized(format, bits, rows, cols, group, seed);
}

Matrix gaussian(Index rows, Index cols, std::uint64_t seed) { return npft_test::gaussian_matrix(rows, cols, seed, npft::make_stream(3)); }

Matrix run(const QuantizedMatrix& w, const Matrix& x, cpu::Activations activations, int threads = 1) {
    cpu::MultiplyOptions options;
    options.threads = threads;
    options.activations = activations;
    return cpu::multiply(w, MatrixView<const float>(npft::as_matrix_view(x)), options);
}

}  // namespace

TEST_CASE("activations are quantized per block of 32 to round(x / (max|x| / 127))", "[kernels][cpu][int8]") {
    Matrix x = Matrix::Zero(1, 64);
    for (Index j = 0; j < 32; ++j) x(0, j) = 0.5f * static_cast<float>(j - 16);  // max |x| = 8: step 8 / 127
    x(0, 40) = -2.0f;                                                            // second block: step 2 / 127
    const cpu::Int8Activations a = cpu::quantize_activations_int8(x.data(), 64, 1, 64, 4);
    CHECK(a.scales[0] == 8.0f / 127.0f);
    CHECK(a.scales[1] == 2.0f / 127.0f);
    CHECK(a.chunks == 1);
    for (int lane = 0; lane < 4; ++lane) {
        CHECK(a.chunk_scales[static_cast<std::size_t>(lane)] == a.scales[0]);
        CHECK(a.chunk_scales[static_cast<std::size_t>(4 + lane)] == a.scales[1]);
    }
    CHECK(a.values[0] == -127);  // x = -8
    CHECK(a.values[static_cast<std::size_t>(cpu::int8_stored_at(40, 4))] == -127);
    CHECK(a.values[static_cast<std::size_t>(cpu::int8_stored_at(17, 4))] == 8);  // 0.5 / (8 / 127) = 7.94 -> 8
    CHECK(a.block_sums[1] == (2.0f / 127.0f) * -127.0f);
    const Matrix back = a.dequantize();
    for (Index j = 0; j < 32; ++j) CHECK(std::abs(back(0, j) - x(0, j)) <= 0.5f * a.scales[0] * 1.0001f);
    CHECK_THROWS_AS(cpu::quantize_activations_int8(x.data(), 64, 1, 48, 4), npft::Error);
    CHECK_THROWS_AS(cpu::quantize_activations_int8(x.data(), 64, 1, 64, 5), npft::Error);
}

TEST_CASE("the AVX2 block quantizer equals the portable one bit for bit, ties included", "[kernels][cpu][int8]") {
#if NPFT_CPU_X86
    if (!cpu::path_supported(cpu::Path::avx2)) {
        WARN("no AVX2 on this CPU: only the portable block quantizer exists here (SKIPPED)");
        return;
    }
    for (std::uint64_t seed = 0; seed < 300; ++seed) {
        Matrix x = gaussian(1, 32, 100 + seed);
        if (seed % 3 == 0) {
            // max |x| = 127 makes d = 1: x = k + 0.5 are exact ties for round-to-nearest-even.
            for (Index i = 0; i < 32; ++i) x(0, i) = static_cast<float>(i - 16) + 0.5f;
            x(0, 31) = 127.0f;
        }
        if (seed % 7 == 0) x.setZero();
        if (seed % 11 == 0) x *= 1e-37f;  // max |x| / 127 below the smallest normal float: flushed to a zero block
        std::int8_t q_portable[32] = {}, q_avx2[32] = {};
        cpu::detail::BlockQuantization b_portable, b_avx2;
        REQUIRE(cpu::detail::quantize_block_portable(x.data(), q_portable, b_portable));
        REQUIRE(cpu::detail::quantize_block_avx2(x.data(), q_avx2, b_avx2));
        CHECK(std::memcmp(q_portable, q_avx2, 32) == 0);
        CHECK(b_portable.d == b_avx2.d);
        CHECK(b_portable.sum == b_avx2.sum);
        if (x.cwiseAbs().maxCoeff() / 127.0f < std::numeric_limits<float>::min()) {
            CHECK(b_avx2.d == 0.0f);
            CHECK(b_avx2.sum == 0);
        }
    }
    Matrix bad = gaussian(1, 32, 1);
    bad(0, 7) = std::numeric_limits<float>::quiet_NaN();
    std::int8_t q[32];
    cpu::detail::BlockQuantization b;
    CHECK_FALSE(cpu::detail::quantize_block_avx2(bad.data(), q, b));
    CHECK_FALSE(cpu::detail::quantize_block_portable(bad.data(), q, b));
#else
    WARN("not an x86 build: only the portable block quantizer exists (SKIPPED)");
#endif
}

TEST_CASE("a block holding NaN or Inf gives a NaN scale, never a cast of NaN", "[kernels][cpu][int8]") {
    Matrix x = Matrix::Constant(1, 96, 1.0f);
    x(0, 40) = std::numeric_limits<float>::infinity();
    const cpu::Int8Activations a = cpu::quantize_activations_int8(x.data(), 96, 1, 96, 3);
    CHECK(a.scales[0] == 1.0f / 127.0f);
    CHECK(std::isnan(a.scales[1]));
    CHECK(a.chunks == 2);  // 96 inputs: the second chunk holds one block, the other is zero
    CHECK(a.chunk_scales[8 + 4] == 0.0f);
}

TEST_CASE("the decoder order, by hand, and a bijection on every chunk", "[kernels][cpu][int8]") {
    // 4 bit: low nibbles (even codes) then high nibbles; the second block in the upper 16 bytes of each half.
    CHECK(cpu::int8_stored_at(0, 4) == 0);
    CHECK(cpu::int8_stored_at(1, 4) == 32);
    CHECK(cpu::int8_stored_at(2, 4) == 1);
    CHECK(cpu::int8_stored_at(33, 4) == 48);
    // 3 bit: codes 0-15 then 16-31 of each block.
    CHECK(cpu::int8_stored_at(17, 3) == 33);
    CHECK(cpu::int8_stored_at(40, 3) == 24);
    // 8 bit (the GEMMs): the 3-bit order.
    CHECK(cpu::int8_stored_at(17, 8) == 33);
    CHECK(cpu::int8_stored_at(40, 8) == 24);
    // 2 bit: bit pairs 0 and 2 of each byte, then 4 and 6.
    CHECK(cpu::int8_stored_at(1, 2) == 8);
    CHECK(cpu::int8_stored_at(2, 2) == 32);
    CHECK(cpu::int8_stored_at(5, 2) == 9);
    CHECK(cpu::int8_stored_at(64 + 5, 2) == 64 + 9);
    for (const int bits : {2, 3, 4, 8}) {
        std::set<Index> seen;
        for (Index j = 0; j < 64; ++j) {
            const Index at = cpu::int8_stored_at(j, bits);
            CHECK(at >= 0);
            CHECK(at < 64);
            CHECK(((at % 32) / 16) == j / 32);  // each block stays in its own 128-bit lane
            seen.insert(at);
        }
        CHECK(seen.size() == 64);
    }
}

namespace {

/// Checks the int8 kernel on w against double products on the quantized activations, for several batches and threads.
void check_int8_kernel(const QuantizedMatrix& w, std::uint64_t seed) {
    const Index cols = w.cols();
    const bool lut = w.format() == Format::lut;
    const Matrix dense = w.dequantize();
    const Matrix dense_hat = npft_test::int8_kernel_weights(w);
    for (const Index batch : {Index{1}, Index{2}, Index{5}}) {
        INFO(npft::quant::format_name(w.format()) << " " << w.bits() << " bit, " << w.rows() << " x " << cols << ", group "
                                                  << w.group_size() << ", batch " << batch);
        Matrix x = gaussian(batch, cols, seed);
        x.row(0) *= 30.0f;  // large activations: the int32 sums must not overflow
        // All-positive activations: a biased table or offset cannot cancel out over the row.
        if (batch > 1) x.row(batch - 1) = x.row(batch - 1).cwiseAbs().array() + 1.0f;
        const Matrix y = run(w, x, cpu::Activations::int8);
        const cpu::Int8Activations a = cpu::quantize_activations_int8(x.data(), cols, batch, cols, w.bits());
        const Matrix x_hat = a.dequantize();
        const Eigen::MatrixXd exact_on_quantized = x_hat.cast<double>() * dense_hat.cast<double>().transpose();
        const Eigen::MatrixXd rounding = npft_test::int8_rounding_bound(w, dense_hat, x_hat);
        const Eigen::MatrixXd error = (y.cast<double>() - exact_on_quantized).cwiseAbs();
        CHECK((error.array() <= rounding.array()).all());
        if (!lut) {
            // Against the unquantized activations: plus half a step per activation, times |w|.
            Eigen::MatrixXd steps(batch, cols);
            for (Index m = 0; m < batch; ++m)
                for (Index j = 0; j < cols; ++j) steps(m, j) = 0.5 * a.scales[static_cast<std::size_t>(m * (cols / 32) + j / 32)];
            const Eigen::MatrixXd exact = x.cast<double>() * dense.cast<double>().transpose();
            const Eigen::MatrixXd quantization = steps * dense.cast<double>().cwiseAbs().transpose();
            CHECK(((y.cast<double>() - exact).cwiseAbs().array() <= (rounding + quantization).array() * 1.000001).all());
        }
        // Threads split rows: same bits. A token's result does not depend on the batch it is in.
        const Matrix two = run(w, x, cpu::Activations::int8, 2);
        CHECK(std::memcmp(two.data(), y.data(), sizeof(float) * static_cast<std::size_t>(y.size())) == 0);
        const Matrix alone = run(w, Matrix(x.row(batch - 1)), cpu::Activations::int8);
        CHECK(std::memcmp(alone.data(), y.row(batch - 1).eval().data(), sizeof(float) * static_cast<std::size_t>(alone.size())) == 0);
    }
}

}  // namespace

TEST_CASE("the int8 kernel is exact up to fp32 rounding on its quantized activations: uniform formats", "[kernels][cpu][int8]") {
    if (!cpu::path_supported(cpu::Path::avx2)) {
        WARN("no AVX2 on this CPU: the int8 kernel is not run (SKIPPED)");
        return;
    }
    struct Shape {
        Index rows, cols, group;
    };
    // group 32 and 160: groups of an odd number of blocks (per-chunk scales); 480 = 15 blocks: a half chunk at the end;
    // 23 rows: tiles of 4 plus a tail; 1 row: only the padded last row.
    // 5 x 32: one-block rows, so every decoder reads past a row's end into the next row.
    const Shape shapes[] = {{23, 256, 32}, {23, 256, 128}, {9, 256, 256}, {23, 480, 160}, {1, 96, 32}, {6, 192, 64}, {5, 32, 32}};
    std::uint64_t seed = 5;
    for (const int bits : {2, 3, 4})
        for (const Format format : {Format::uniform_symmetric, Format::uniform_asymmetric})
            for (const Shape& s : shapes) {
                const QuantizedMatrix w = random_matrix(format, bits, s.rows, s.cols, s.group, ++seed);
                REQUIRE(cpu::int8_kernel_applies(w));
                check_int8_kernel(w, seed);
            }
}

TEST_CASE("the int8 kernel is exact up to fp32 rounding on its 12-bit table: LUT formats", "[kernels][cpu][int8]") {
    if (!cpu::path_supported(cpu::Path::avx2)) {
        WARN("no AVX2 on this CPU: the int8 kernel is not run (SKIPPED)");
        return;
    }
    std::uint64_t seed = 50;
    for (const int bits : {3, 4})
        for (const auto& [rows, cols] : {std::pair<Index, Index>{23, 256}, {5, 96}, {1, 32}, {5, 32}}) {
            const QuantizedMatrix w = random_matrix(Format::lut, bits, rows, cols, cols, ++seed);
            REQUIRE(cpu::int8_kernel_applies(w));
            check_int8_kernel(w, seed);
        }
}

TEST_CASE("int8 activations leave formats the int8 kernel does not cover in fp32", "[kernels][cpu][int8]") {
    const Matrix x = gaussian(2, 128, 4);
    for (const QuantizedMatrix& w : {random_matrix(Format::lut, 2, 9, 128, 128, 1), random_matrix(Format::uniform_asymmetric, 8, 9, 128, 64, 2),
                                     random_matrix(Format::uniform_symmetric, 4, 9, 128, 16, 3),
                                     random_matrix(Format::uniform_asymmetric, 5, 9, 128, 32, 4)}) {
        CHECK_FALSE(cpu::int8_kernel_applies(w));
        const Matrix fp32 = run(w, x, cpu::Activations::fp32);
        const Matrix int8 = run(w, x, cpu::Activations::int8);
        CHECK(std::memcmp(fp32.data(), int8.data(), sizeof(float) * static_cast<std::size_t>(fp32.size())) == 0);
    }
}

TEST_CASE("the default multiply uses int8 activations where they apply; Activations::fp32 opts out", "[kernels][cpu][int8]") {
    const Matrix x = gaussian(3, 256, 11);
    const QuantizedMatrix w = random_matrix(Format::uniform_symmetric, 4, 9, 256, 128, 12);
    const Matrix by_default = cpu::multiply(w, MatrixView<const float>(npft::as_matrix_view(x)));
    const Matrix fp32 = run(w, x, cpu::Activations::fp32);
    const Matrix int8 = run(w, x, cpu::Activations::int8);
    CHECK(std::memcmp(by_default.data(), int8.data(), sizeof(float) * static_cast<std::size_t>(int8.size())) == 0);
    if (cpu::int8_kernel_applies(w)) {
        // The two precisions differ (int8 moves each activation by up to half a step), so the default is not fp32.
        CHECK(std::memcmp(fp32.data(), int8.data(), sizeof(float) * static_cast<std::size_t>(fp32.size())) != 0);
        CHECK((fp32 - int8).norm() < 0.05 * fp32.norm());
    }
    // fp32 opt-out: the same bits as the fp32 kernel of the same path.
    const Matrix portable = cpu::multiply(w, MatrixView<const float>(npft::as_matrix_view(x)), {1, cpu::Path::portable, cpu::Activations::fp32});
    const Matrix portable_default = cpu::multiply(w, MatrixView<const float>(npft::as_matrix_view(x)), {1, cpu::Path::portable});
    CHECK(std::memcmp(portable.data(), portable_default.data(), sizeof(float) * static_cast<std::size_t>(portable.size())) == 0);
}
