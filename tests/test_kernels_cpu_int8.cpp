// The opt-in int8-activation path: activation quantization by hand, the kernel against dequantize-then-Eigen (double)
// on the quantized activations (fp32 rounding bound, as for the fp32 paths), and the total error against the
// unquantized activations (half a quantization step per activation, times |w|).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>

#include <npft/core/random.hpp>
#include <npft/kernels/cpu/multiply.hpp>

namespace {

using npft::Matrix;
using npft::MatrixView;
using npft::quant::Format;
using npft::quant::QuantizedMatrix;
namespace cpu = npft::kernels::cpu;
using Index = npft::index;

QuantizedMatrix random_matrix(Format format, int bits, Index rows, Index cols, Index group, std::uint64_t seed) {
    QuantizedMatrix w(format, bits, rows, cols, group);
    const npft::RandomKey key{seed, npft::make_stream(1)};
    for (Index r = 0; r < rows; ++r)
        for (Index j = 0; j < cols; ++j)
            w.codes().set(r, j, npft::random_words(key, static_cast<std::uint64_t>(r * cols + j))[0] % (1u << bits));
    if (format == Format::lut) {
        for (Index r = 0; r < rows; ++r) {
            npft::quant::LutParams p;
            p.bits = bits;
            for (Index q = 0; q < p.size(); ++q) p.levels[static_cast<std::size_t>(q)] = npft::quant::round_to_half(-0.3f + 0.04f * static_cast<float>(q));
            w.set_lut(r, p);
        }
        return w;
    }
    for (Index r = 0; r < rows; ++r)
        for (Index g = 0; g < w.groups(); ++g) {
            const auto words = npft::random_words(npft::RandomKey{seed, npft::make_stream(2)}, static_cast<std::uint64_t>(r * w.groups() + g));
            npft::quant::UniformParams p;
            p.bits = bits;
            p.scale = npft::quant::round_to_half(0.001f + 0.1f * npft::bits_to_unit_float(words[0]));
            p.zero = format == Format::uniform_asymmetric ? static_cast<float>(words[1] % (1u << bits)) : static_cast<float>(1u << (bits - 1));
            w.set_group(r, g, p);
        }
    return w;
}

Matrix gaussian(Index rows, Index cols, std::uint64_t seed) {
    Matrix x(rows, cols);
    for (Index i = 0; i < x.size(); ++i) x.data()[i] = npft::gaussian(npft::RandomKey{seed, npft::make_stream(3)}, static_cast<std::uint64_t>(i));
    return x;
}

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
    const cpu::Int8Activations a = cpu::quantize_activations_int8(x.data(), 64, 1, 64);
    CHECK(a.scales[0] == 8.0f / 127.0f);
    CHECK(a.scales[1] == 2.0f / 127.0f);
    // Storage order inside a block: even positions first, then odd ones.
    CHECK(cpu::Int8Activations::stored_at(0) == 0);
    CHECK(cpu::Int8Activations::stored_at(1) == 16);
    CHECK(cpu::Int8Activations::stored_at(2) == 1);
    CHECK(cpu::Int8Activations::stored_at(33) == 48);
    CHECK(a.values[0] == -127);                  // x = -8
    CHECK(a.values[cpu::Int8Activations::stored_at(40)] == -127);
    CHECK(a.values[cpu::Int8Activations::stored_at(17)] == 8);   // 0.5 / (8 / 127) = 7.94 -> 8
    CHECK(a.block_sums[1] == (2.0f / 127.0f) * -127.0f);
    const Matrix back = a.dequantize();
    for (Index j = 0; j < 32; ++j) CHECK(std::abs(back(0, j) - x(0, j)) <= 0.5f * a.scales[0] * 1.0001f);
    CHECK_THROWS_AS(cpu::quantize_activations_int8(x.data(), 64, 1, 48), npft::Error);
}

TEST_CASE("the int8 kernel is exact up to fp32 rounding on its quantized activations", "[kernels][cpu][int8]") {
    if (!cpu::path_supported(cpu::Path::avx2)) {
        WARN("no AVX2 on this CPU: the int8 kernel is not run (SKIPPED)");
        return;
    }
    for (const Format format : {Format::uniform_symmetric, Format::uniform_asymmetric}) {
        for (const Index group : {Index{32}, Index{128}, Index{160}}) {
            const Index cols = group == 160 ? 320 : 256;  // 160: an odd number of blocks per group
            const QuantizedMatrix w = random_matrix(format, 4, 23, cols, group, 5);
            REQUIRE(cpu::int8_kernel_applies(w));
            for (const Index batch : {Index{1}, Index{3}}) {
                INFO(npft::quant::format_name(format) << " group " << group << " batch " << batch);
                const Matrix x = gaussian(batch, cols, 9);
                const Matrix y = run(w, x, cpu::Activations::int8);
                const Matrix x_hat = cpu::quantize_activations_int8(x.data(), cols, batch, cols).dequantize();
                const Matrix dense = w.dequantize();
                const Eigen::MatrixXd exact_on_quantized = x_hat.cast<double>() * dense.cast<double>().transpose();
                const Eigen::MatrixXd exact = x.cast<double>() * dense.cast<double>().transpose();
                // fp32 rounding bound of the fp32 paths (tests/test_kernels_cpu_multiply.cpp) on |s| (|q| + |z|) |x_hat|.
                Eigen::MatrixXd terms(w.rows(), cols);
                Eigen::MatrixXd steps(batch, cols);  // half a quantization step per activation
                for (Index r = 0; r < w.rows(); ++r)
                    for (Index j = 0; j < cols; ++j) {
                        const auto p = w.uniform_params(r, j / group);
                        terms(r, j) = p.scale * (static_cast<double>(w.codes().get(r, j)) + p.zero);
                    }
                const cpu::Int8Activations a = cpu::quantize_activations_int8(x.data(), cols, batch, cols);
                for (Index m = 0; m < batch; ++m)
                    for (Index j = 0; j < cols; ++j) steps(m, j) = 0.5 * a.scales[static_cast<std::size_t>(m * (cols / 32) + j / 32)];
                const double n = static_cast<double>(2 * cols + 2 * w.groups() + 32);
                const double gamma = n * std::ldexp(1.0, -24) / (1.0 - n * std::ldexp(1.0, -24));
                const Eigen::MatrixXd rounding = gamma * (x_hat.cast<double>().cwiseAbs() * terms.transpose());
                const Eigen::MatrixXd quantization = steps * dense.cast<double>().cwiseAbs().transpose();
                CHECK(((y.cast<double>() - exact_on_quantized).cwiseAbs().array() <= rounding.array()).all());
                CHECK(((y.cast<double>() - exact).cwiseAbs().array() <= (rounding + quantization).array() * 1.000001).all());
                // Threads split rows: same bits.
                const Matrix two = run(w, x, cpu::Activations::int8, 2);
                CHECK(std::memcmp(two.data(), y.data(), sizeof(float) * static_cast<std::size_t>(y.size())) == 0);
            }
        }
    }
}

TEST_CASE("int8 activations leave formats the int8 kernel does not cover in fp32", "[kernels][cpu][int8]") {
    const Matrix x = gaussian(2, 128, 4);
    for (const QuantizedMatrix& w : {random_matrix(Format::lut, 4, 9, 128, 128, 1), random_matrix(Format::uniform_asymmetric, 3, 9, 128, 64, 2),
                                     random_matrix(Format::uniform_symmetric, 4, 9, 128, 16, 3)}) {
        CHECK_FALSE(cpu::int8_kernel_applies(w));
        const Matrix fp32 = run(w, x, cpu::Activations::fp32);
        const Matrix int8 = run(w, x, cpu::Activations::int8);
        CHECK(std::memcmp(fp32.data(), int8.data(), sizeof(float) * static_cast<std::size_t>(fp32.size())) == 0);
    }
}
