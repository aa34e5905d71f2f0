// The prompt-processing GEMMs of the int8-activation path (AVX-512 VNNI, int8_gemm.hpp; AVX-VNNI and AVX2 on 256-bit
// vectors, int8_gemm_256.hpp), taken by batches of int8_gemm_min_batch tokens and more, for every format they cover
// (uniform 2/3/4/8-bit symmetric and asymmetric, grouped and per channel; LUT 3/4-bit): against dequantize-then-Eigen
// (double) on the quantized activations with the fp32 rounding bound, and against the portable fp32 path with the
// documented bound of int8 activations, on odd shapes (panel tails, one-block rows, groups of an odd number of blocks,
// per channel) and batches of 8 to 70; 1 vs 2 threads bit for bit; a token's result the same in any batch that takes
// the GEMM; close to the batch-1 kernel; every GEMM the CPU has gives the same bits; the worst case of vpmaddubsw's
// int16 sums; hand-computed products. A GEMM the CPU lacks says SKIPPED (tags [vnni], [avx_vnni], [avx2]).
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <cstring>

#include <npft/core/random.hpp>
#include <npft/kernels/cpu/multiply.hpp>

#include "int8_gemm_runner.hpp"
#include "int8_reference.hpp"
#include "test_matrices.hpp"

namespace {

using npft::Matrix;
using npft::MatrixView;
using npft::quant::Format;
using npft::quant::QuantizedMatrix;
namespace cpu = npft::kernels::cpu;
using Index = npft::Index;

Matrix run(const QuantizedMatrix& w, const Matrix& x, int threads = 1) {
    return cpu::multiply(w, MatrixView<const float>(npft::as_matrix_view(x)), {threads, cpu::Path::best, cpu::Activations::int8});
}

/// One GEMM: (weights, activations, threads) -> y.
using Gemm = std::function<Matrix(const QuantizedMatrix&, const Matrix&, int)>;

Gemm gemm_256(cpu::Int8Dot256 dot) {
    return [dot](const QuantizedMatrix& w, const Matrix& x, int threads) { return npft_test::run_int8_gemm_256(w, x, dot, threads); };
}

bool same_bits(const Matrix& a, const Matrix& b) {
    return a.rows() == b.rows() && a.cols() == b.cols() &&
           std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<std::size_t>(a.size())) == 0;
}

void check_gemm(const QuantizedMatrix& w, Index batch, std::uint64_t seed, const Gemm& gemm = run) {
    const Index cols = w.cols();
    INFO(npft::quant::format_name(w.format()) << " " << w.bits() << " bit, " << w.rows() << " x " << cols << ", group "
                                              << w.group_size() << ", batch " << batch);
    Matrix x = npft_test::gaussian_matrix(batch, cols, seed, 3);
    x.row(0) *= 30.0f;                                                 // large activations: int32 sums must not overflow
    x.row(batch - 1) = x.row(batch - 1).cwiseAbs().array() + 1.0f;  // all positive: a biased sum cannot cancel
    const Matrix y = gemm(w, x, 1);
    const cpu::Int8Activations a = cpu::quantize_activations_int8(x.data(), cols, batch, cols, w.bits());
    const Matrix x_hat = a.dequantize();
    const Matrix dense = w.dequantize();
    const Matrix dense_hat = npft_test::int8_kernel_weights(w);  // LUT rows: the 12-bit table
    const Eigen::MatrixXd exact_on_quantized = x_hat.cast<double>() * dense_hat.cast<double>().transpose();
    const Eigen::MatrixXd bound = npft_test::int8_rounding_bound(w, dense_hat, x_hat);
    CHECK(((y.cast<double>() - exact_on_quantized).cwiseAbs().array() <= bound.array()).all());

    // Against the portable fp32 path on the unquantized activations, with the bound of int8 activations documented
    // in multiply.hpp: half a step per activation times |w|; for LUT rows plus the table's rounding, at most half its
    // step s = max|level| / 2047 per weight (plus 2^-11 s for the fp32 reciprocal and product that form the code);
    // plus the fp32 rounding of both results.
    const Matrix portable = cpu::multiply(w, MatrixView<const float>(npft::as_matrix_view(x)), {1, cpu::Path::portable, cpu::Activations::fp32});
    Eigen::MatrixXd steps(batch, cols);
    for (Index m = 0; m < batch; ++m)
        for (Index j = 0; j < cols; ++j) steps(m, j) = 0.5 * a.scales[static_cast<std::size_t>(m * a.blocks() + j / 32)];
    Eigen::VectorXd table_error = Eigen::VectorXd::Zero(w.rows());
    if (w.format() == Format::lut)
        for (Index r = 0; r < w.rows(); ++r)
            table_error(r) = static_cast<double>(dense.row(r).cwiseAbs().maxCoeff()) / 2047.0 * (0.5 + std::ldexp(1.0, -11));
    const Eigen::MatrixXd tolerance = bound + npft_test::int8_rounding_bound(w, dense_hat, x) +
                                      steps * dense.cast<double>().cwiseAbs().transpose() +
                                      x_hat.cast<double>().cwiseAbs().rowwise().sum() * table_error.transpose();
    CHECK(((y.cast<double>() - portable.cast<double>()).cwiseAbs().array() <= tolerance.array() * 1.000001).all());

    CHECK(same_bits(gemm(w, x, 2), y));
    // The first int8_gemm_min_batch tokens alone: the same bits as inside the larger batch.
    const Matrix head = x.topRows(cpu::int8_gemm_min_batch);
    CHECK(same_bits(gemm(w, head, 1), y.topRows(cpu::int8_gemm_min_batch)));
    // The last token alone takes the batch-1 int8 kernel where it covers w (not 8-bit: fp32 kernels): the same terms,
    // another order, so within twice the bound.
    if (cpu::int8_kernel_applies(w)) {
        const Matrix alone = run(w, Matrix(x.row(batch - 1)));
        CHECK(((alone.cast<double>() - y.row(batch - 1).cast<double>()).cwiseAbs().array() <= 2.0 * bound.row(batch - 1).array()).all());
    }
}

/// A batch in [int8_gemm_min_batch, 70] drawn from the seed.
Index random_batch(std::uint64_t seed) {
    return cpu::int8_gemm_min_batch + static_cast<Index>(npft::random_words(npft::RandomKey{seed, npft::make_stream(6)}, 0)[0] % 63);
}

bool vnni_available() {
    if (cpu::path_supported(cpu::Path::avx512) && cpu::cpu_features().avx512vnni) return true;
    WARN("SKIPPED: this CPU has no AVX-512 VNNI, the int8 GEMM is not run");
    return false;
}


struct Shape {
    Index rows, cols, group;
};
// 23 / 37 / 70 rows: panel tails (and 256-bit half panels) and 2-thread splits; 480 = 15 blocks (a half chunk at the
// end); group 32 and 160: odd numbers of blocks per group; 32 columns: one-block rows (the decoder reads into the next
// row or the padding); 1056 = 33 blocks and 640 per channel: K slices of 16 blocks, with groups that straddle two slices.
const Shape shapes[] = {{37, 256, 32}, {23, 256, 128}, {70, 256, 256}, {23, 480, 160}, {5, 32, 32},
                        {33, 192, 64}, {19, 1056, 96}, {40, 640, 640}};

/// Calls f(w, seed) for a random matrix of every format the GEMMs cover on every shape (LUT: per row, the shape's
/// group ignored).
template <class F>
void for_each_covered(F&& f, std::uint64_t seed) {
    for (const int bits : {2, 3, 4, 8})
        for (const Format format : {Format::uniform_symmetric, Format::uniform_asymmetric})
            for (const Shape& s : shapes) {
                ++seed;
                f(npft_test::random_quantized(format, bits, s.rows, s.cols, s.group, seed), seed);
            }
    for (const int bits : {3, 4})
        for (const Shape& s : shapes) {
            ++seed;
            f(npft_test::random_quantized(Format::lut, bits, s.rows, s.cols, s.cols, seed), seed);
        }
}

bool dot256_available(cpu::Int8Dot256 dot) {
    const bool has = dot == cpu::Int8Dot256::avx_vnni ? cpu::cpu_features().avx_vnni : cpu::cpu_features().has_avx2_path();
    if (!has) WARN("SKIPPED: this CPU has no " << (dot == cpu::Int8Dot256::avx_vnni ? "AVX-VNNI" : "AVX2") << ", that GEMM is not run");
    return has;
}

/// The 256-bit GEMM with `dot` on every shape, format and width: the checks of check_gemm, and the same bits as the
/// AVX-512 VNNI GEMM where the CPU has it.
void check_gemm_256(cpu::Int8Dot256 dot) {
    const bool compare = cpu::path_supported(cpu::Path::avx512) && cpu::cpu_features().avx512vnni;
    if (!compare) WARN("SKIPPED: no AVX-512 VNNI, the 256-bit GEMM is not compared with it bit for bit");
    std::uint64_t seed = 900;
    for_each_covered([&](const QuantizedMatrix& w, std::uint64_t s) {
        REQUIRE(cpu::int8_gemm_256_applies(w, dot));
        for (const Index batch : {cpu::int8_gemm_min_batch, random_batch(s)}) {
            check_gemm(w, batch, s, gemm_256(dot));
            if (compare) {
                const Matrix x = npft_test::gaussian_matrix(batch, w.cols(), s, 4);
                CHECK(same_bits(npft_test::run_int8_gemm_256(w, x, dot), run(w, x)));
            }
        }
    }, seed);
}

/// Every GEMM this CPU has, by name (those it lacks say SKIPPED).
std::vector<std::pair<const char*, Gemm>> available_gemms() {
    std::vector<std::pair<const char*, Gemm>> gemms;
    if (vnni_available()) gemms.emplace_back("avx512 vnni", run);
    for (const cpu::Int8Dot256 dot : {cpu::Int8Dot256::avx_vnni, cpu::Int8Dot256::avx2_maddubs})
        if (dot256_available(dot)) gemms.emplace_back(dot == cpu::Int8Dot256::avx_vnni ? "avx vnni" : "avx2 maddubs", gemm_256(dot));
    return gemms;
}

}  // namespace

TEST_CASE("int8 GEMM (AVX-512 VNNI): uniform and LUT formats, odd shapes, threads and batches", "[kernels][cpu][int8][vnni]") {
    if (!vnni_available()) return;
    for_each_covered([](const QuantizedMatrix& w, std::uint64_t seed) {
        REQUIRE(cpu::int8_gemm_applies(w));
        REQUIRE(cpu::int8_gemm_for(w, cpu::Path::avx512) == cpu::Int8Gemm::avx512_vnni);
        for (const Index batch : {cpu::int8_gemm_min_batch, random_batch(seed)}) check_gemm(w, batch, seed);
    }, 700);
}

TEST_CASE("int8 GEMM (AVX-VNNI, 256 bit): uniform and LUT formats, odd shapes, threads, batches, same bits as AVX-512 VNNI",
          "[kernels][cpu][int8][avx_vnni]") {
    if (dot256_available(cpu::Int8Dot256::avx_vnni)) check_gemm_256(cpu::Int8Dot256::avx_vnni);
}

TEST_CASE("int8 GEMM (AVX2 vpmaddubsw): uniform and LUT formats, odd shapes, threads, batches, same bits as AVX-512 VNNI",
          "[kernels][cpu][int8][avx2]") {
    if (dot256_available(cpu::Int8Dot256::avx2_maddubs)) check_gemm_256(cpu::Int8Dot256::avx2_maddubs);
}

namespace {

/// Every code of w set to `code`: every weight is `level`. Token 0 has x_j = 127, token 1 x_j = -127, the others
/// x_j = 127 on even j and -127 on odd j (max|x| = 127: x_hat = x), so y = level * sum_j x_j: +-127 K level and 0,
/// exact on every GEMM (integer block sums below 2^24, scales that are powers of 2).
void check_extreme_sums(QuantizedMatrix& w, std::uint32_t code, double level) {
    for (Index r = 0; r < w.rows(); ++r)
        for (Index j = 0; j < w.cols(); ++j) w.codes().set(r, j, code);
    Matrix x(cpu::int8_gemm_min_batch + 1, w.cols());
    for (Index m = 0; m < x.rows(); ++m)
        for (Index j = 0; j < x.cols(); ++j) x(m, j) = m == 0 ? 127.0f : m == 1 ? -127.0f : (j % 2 == 0 ? 127.0f : -127.0f);
    const auto expected = static_cast<float>(127.0 * static_cast<double>(w.cols()) * level);
    const auto gemms = available_gemms();
    REQUIRE(!gemms.empty());
    for (const auto& [name, gemm] : gemms) {
        INFO(name << ", " << npft::quant::format_name(w.format()) << " " << w.bits() << " bit");
        const Matrix y = gemm(w, x, 1);
        for (Index m = 0; m < x.rows(); ++m)
            for (Index r = 0; r < w.rows(); ++r) CHECK(y(m, r) == (m == 0 ? expected : m == 1 ? -expected : 0.0f));
    }
}

}  // namespace

TEST_CASE("int8 GEMM: the largest int16 sums of vpmaddubsw and int32 block sums (largest bytes, activations +-127) are exact",
          "[kernels][cpu][int8][avx2]") {
    // Symmetric 4-bit, scale 0.5, z = 8, every code 15: w_j = 3.5. A block's 8 quads sum to 8 * 2 * 15 * 127 = 30480
    // per int16 lane, the largest any 4-bit input reaches.
    QuantizedMatrix uniform(Format::uniform_symmetric, 4, 21, 96, 32);
    for (Index r = 0; r < uniform.rows(); ++r)
        for (Index g = 0; g < uniform.groups(); ++g) uniform.set_group(r, g, {4, 0.5f, 8.0f});
    check_extreme_sums(uniform, 15u, 3.5);
    // LUT 4-bit whose code 15 is the largest level, 2047 / 1024 (step 2^-10): u = 4095, high and low 63, so 2 quads
    // reach 2 * 2 * 63 * 127 = 32004 per int16 lane (8 would saturate) and a block's int32 sum 32 * 4095 * 127.
    QuantizedMatrix lut(Format::lut, 4, 21, 96, 96);
    npft::quant::LutParams table;
    table.bits = 4;
    for (Index q = 0; q < 16; ++q) table.levels[static_cast<std::size_t>(q)] = static_cast<float>(q) / 8.0f;
    table.levels[15] = 2047.0f / 1024.0f;
    for (Index r = 0; r < lut.rows(); ++r) lut.set_lut(r, table);
    check_extreme_sums(lut, 15u, 2047.0 / 1024.0);
    // 8-bit, every code 255: a pair of whole bytes would reach 2 * 255 * 127 = 64770 and saturate vpmaddubsw; its
    // nibble planes reach 8 * 2 * 15 * 127 per block, vpdpbusd's int32 sums 32 * 255 * 127. Symmetric (z = 128):
    // w = 0.5 * 127; asymmetric with z = 3: w = 0.5 * 252 (the zero point's term, 0.5 * 3 * sum x, must be subtracted).
    QuantizedMatrix symmetric8(Format::uniform_symmetric, 8, 37, 96, 32);
    QuantizedMatrix asymmetric8(Format::uniform_asymmetric, 8, 37, 96, 96);
    for (Index r = 0; r < 37; ++r) {
        for (Index g = 0; g < symmetric8.groups(); ++g) symmetric8.set_group(r, g, {8, 0.5f, 128.0f});
        asymmetric8.set_group(r, 0, {8, 0.5f, 3.0f});
    }
    check_extreme_sums(symmetric8, 255u, 63.5);
    check_extreme_sums(asymmetric8, 255u, 126.0);
}

TEST_CASE("int8 GEMM (AVX-512 VNNI): a hand-computed product", "[kernels][cpu][int8][vnni]") {
    if (!vnni_available()) return;
    // Symmetric 4-bit, one group of 32: w_j = 0.5 (q_j - 8) with q_j = j % 16. Token m has x_j = m + 1 for j < 16 and
    // -127 at j = 31 (max|x| = 127: the int8 step is 1, so x_hat = x exactly).
    // y = 0.5 (sum_{j<16} (j - 8) (m + 1) + (15 - 8) (-127)) = 0.5 ((120 - 128)(m + 1) - 889).
    QuantizedMatrix w(Format::uniform_symmetric, 4, 3, 32, 32);
    for (Index r = 0; r < 3; ++r) {
        for (Index j = 0; j < 32; ++j) w.codes().set(r, j, static_cast<std::uint32_t>(j % 16));
        w.set_group(r, 0, {4, 0.5f, 8.0f});
    }
    Matrix x = Matrix::Zero(cpu::int8_gemm_min_batch + 1, 32);
    for (Index m = 0; m < x.rows(); ++m) {
        for (Index j = 0; j < 16; ++j) x(m, j) = static_cast<float>(m + 1);
        x(m, 31) = -127.0f;
    }
    const Matrix y = run(w, x);
    for (Index m = 0; m < x.rows(); ++m)
        for (Index r = 0; r < 3; ++r) CHECK(y(m, r) == 0.5f * (-8.0f * static_cast<float>(m + 1) - 889.0f));
}

TEST_CASE("int8 GEMM: a hand-computed LUT product, exact on every GEMM", "[kernels][cpu][int8][lut]") {
    // LUT 4-bit with levels m_q / 1024: level q = (q - 8) / 8 for q < 15 and 2047 / 1024 (the largest) for q = 15, so
    // the table's step s = max|level| / 2047 = 2^-10 and every level is a whole number of steps: the 12-bit table is
    // exact (u_q = 1024 level_q + 2048 up to 4095, high = u / 64 up to 63). Codes q_j = j % 16; token m has x_j = m + 1
    // for j < 16 and -127 at j = 31 (x_hat = x). y = (m + 1) (sum_{q<15} (q - 8) / 8 + 2047 / 1024) - 127 * 2047 / 1024
    // = (127 (m + 1) - 259969) / 1024, and every step of the kernel is exact (integers below 2^24 times powers of 2).
    QuantizedMatrix w(Format::lut, 4, 35, 64, 64);
    npft::quant::LutParams table;
    table.bits = 4;
    for (Index q = 0; q < 16; ++q)
        table.levels[static_cast<std::size_t>(q)] = q < 15 ? static_cast<float>(q - 8) / 8.0f : 2047.0f / 1024.0f;
    for (Index r = 0; r < w.rows(); ++r) {
        for (Index j = 0; j < w.cols(); ++j) w.codes().set(r, j, static_cast<std::uint32_t>(j % 16));
        w.set_lut(r, table);
    }
    Matrix x = Matrix::Zero(cpu::int8_gemm_min_batch + 5, w.cols());
    for (Index m = 0; m < x.rows(); ++m) {
        for (Index j = 0; j < 16; ++j) x(m, j) = static_cast<float>(m + 1);
        x(m, 31) = -127.0f;
    }
    const auto gemms = available_gemms();
    REQUIRE(!gemms.empty());
    for (const auto& [name, gemm] : gemms) {
        INFO(name);
        const Matrix y = gemm(w, x, 1);
        for (Index m = 0; m < x.rows(); ++m)
            for (Index r = 0; r < w.rows(); ++r) CHECK(y(m, r) == static_cast<float>(127 * (m + 1) - 259969) / 1024.0f);
    }
}
