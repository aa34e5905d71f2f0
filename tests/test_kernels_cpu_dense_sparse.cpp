// The dense-and-sparse product: quantized dense part plus fp16 CSR outliers, against dequantize-then-Eigen (double).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>

#include <npft/core/random.hpp>
#include <npft/kernels/cpu/multiply.hpp>

namespace {

using npft::Matrix;
using npft::MatrixView;
using npft::quant::DenseSparseMatrix;
using npft::quant::Format;
namespace cpu = npft::kernels::cpu;
using Index = npft::Index;

/// Exactly representable data (power-of-two scales, outliers on a 1/8 grid): every path must match exactly.
DenseSparseMatrix exact_matrix(Index rows, Index cols, std::uint64_t seed) {
    DenseSparseMatrix m;
    m.dense = npft::quant::QuantizedMatrix(Format::uniform_asymmetric, 3, rows, cols, 32);
    const npft::RandomKey key{seed, npft::make_stream(1)};
    for (Index r = 0; r < rows; ++r)
        for (Index j = 0; j < cols; ++j) m.dense.codes().set(r, j, npft::random_words(key, static_cast<std::uint64_t>(r * cols + j))[0] % 8u);
    for (Index r = 0; r < rows; ++r)
        for (Index g = 0; g < m.dense.groups(); ++g) {
            const auto words = npft::random_words(npft::RandomKey{seed, npft::make_stream(2)}, static_cast<std::uint64_t>(r * 64 + g));
            m.dense.set_group(r, g, {3, std::ldexp(1.0f, -static_cast<int>(words[0] % 3)), static_cast<float>(words[1] % 8u)});
        }
    // Row r holds r % 3 outliers (row 0 and every third row none), at distinct ascending columns.
    m.sparse.rows = rows;
    m.sparse.cols = cols;
    m.sparse.row_offsets.push_back(0);
    for (Index r = 0; r < rows; ++r) {
        for (Index e = 0; e < r % 3; ++e) {
            m.sparse.columns.push_back(static_cast<std::int32_t>((r * 7 + e * (cols / 2)) % cols));
            m.sparse.values.push_back(npft::half(static_cast<float>(static_cast<int>(r % 11) - 5) * 1.125f));
        }
        if (r % 3 == 2 && m.sparse.columns.back() < m.sparse.columns[m.sparse.columns.size() - 2])
            std::swap(m.sparse.columns.back(), m.sparse.columns[m.sparse.columns.size() - 2]);
        m.sparse.row_offsets.push_back(static_cast<std::int32_t>(m.sparse.columns.size()));
    }
    m.validate();
    return m;
}

Matrix integer_activations(Index rows, Index cols, std::uint64_t seed) {
    Matrix x(rows, cols);
    for (Index i = 0; i < x.size(); ++i)
        x.data()[i] = static_cast<float>(static_cast<int>(npft::random_words(npft::RandomKey{seed, 3}, static_cast<std::uint64_t>(i))[0] % 9) - 4);
    return x;
}

}  // namespace

TEST_CASE("dense-and-sparse products equal dense + outliers exactly on representable data", "[kernels][cpu][sparse]") {
    const DenseSparseMatrix w = exact_matrix(37, 96, 4);
    REQUIRE(w.sparse.nnz() > 0);
    for (const Index batch : {Index{1}, Index{5}}) {
        const Matrix x = integer_activations(batch, 96, 8);
        const Eigen::MatrixXd expected = x.cast<double>() * w.dequantize().cast<double>().transpose();
        const Eigen::MatrixXd dense_only = x.cast<double>() * w.dense.dequantize().cast<double>().transpose();
        REQUIRE(expected != dense_only);  // the outliers matter in this case
        for (const cpu::Path path : {cpu::Path::portable, cpu::Path::best}) {
            for (const int threads : {1, 2}) {
                INFO("path " << cpu::path_name(path) << " threads " << threads << " batch " << batch);
                Matrix y(batch, 37);
                cpu::multiply(w, MatrixView<const float>(npft::as_matrix_view(x)), MatrixView<float>(npft::as_matrix_view(y)),
                              {threads, path, cpu::Activations::fp32});
                CHECK(y.cast<double>() == expected);
            }
        }
        if (batch == 1) {
            Matrix y(1, 37);
            cpu::gemv(w, npft::VectorView<const float>(x.data(), 96), npft::VectorView<float>(y.data(), 37), {.activations = cpu::Activations::fp32});
            CHECK(y.cast<double>() == expected);
        }
    }
}

TEST_CASE("dense-and-sparse products reject inconsistent outliers", "[kernels][cpu][sparse]") {
    DenseSparseMatrix w = exact_matrix(8, 64, 1);
    Matrix x = Matrix::Zero(1, 64), y(1, 8);
    const MatrixView<const float> xv = npft::as_matrix_view(x);
    const MatrixView<float> yv = npft::as_matrix_view(y);
    DenseSparseMatrix short_offsets = w;
    short_offsets.sparse.row_offsets.pop_back();
    CHECK_THROWS_WITH(cpu::multiply(short_offsets, xv, yv), Catch::Contains("CSR sizes are inconsistent"));
    DenseSparseMatrix wrong_shape = w;
    wrong_shape.sparse.cols = 63;
    CHECK_THROWS_WITH(cpu::multiply(wrong_shape, xv, yv), Catch::Contains("sparse outliers must be 8 x 64"));
    cpu::CsrView view{8, 64, w.sparse.row_offsets.data(), w.sparse.columns.data(), w.sparse.values.data()};
    CHECK_NOTHROW(cpu::require_valid_csr(view, 8, 64));
    std::vector<std::int32_t> bad_columns = w.sparse.columns;
    bad_columns.back() = 64;
    view.columns = bad_columns.data();
    CHECK_THROWS_WITH(cpu::require_valid_csr(view, 8, 64), Catch::Contains("outside [0, 64)"));
}

TEST_CASE("dense-and-sparse products with int8 activations (the default) add the outliers to the int8 product",
          "[kernels][cpu][sparse][int8]") {
    const DenseSparseMatrix w = exact_matrix(37, 96, 6);
    // Batch 1 takes the batch-1 int8 kernel, batch 9 the AVX-512 VNNI GEMM where the CPU has it.
    for (const Index batch : {Index{1}, Index{9}}) {
        INFO("batch " << batch);
        const Matrix x = integer_activations(batch, 96, 10);
        const MatrixView<const float> xv(npft::as_matrix_view(x));
        const Matrix dense = cpu::multiply(w.dense, xv);
        Matrix y(batch, 37);
        cpu::multiply(w, xv, MatrixView<float>(npft::as_matrix_view(y)));
        const Eigen::MatrixXd sparse_only = x.cast<double>() * (w.dequantize() - w.dense.dequantize()).cast<double>().transpose();
        REQUIRE(sparse_only.cwiseAbs().maxCoeff() > 1.0);  // the outliers matter
        const Eigen::MatrixXd expected = dense.cast<double>() + sparse_only;
        CHECK(((y.cast<double>() - expected).cwiseAbs().array() <= 1e-5 * (1.0 + expected.cwiseAbs().array())).all());
    }
}
