// Misuse of the CPU multiply and of dense-and-sparse inputs gets an npft::Error at entry: aliasing output, outputs
// whose elements are not distinct, negative or null views, bad CSR structure, unsorted or out-of-range masks. Layouts
// that are legal (column ranges of one buffer, column-major y) still run and give the same bits.
#include <catch2/catch.hpp>

#include <cstdint>
#include <utility>
#include <vector>

#include <npft/core/random.hpp>
#include <npft/kernels/cpu/multiply.hpp>
#include <npft/quant/dense_sparse.hpp>
#include <npft/quant/uniform.hpp>

#include "test_matrices.hpp"

namespace {

using Catch::Matchers::Contains;
using npft::Matrix;
using npft::MatrixView;
using npft::VectorView;
namespace cpu = npft::kernels::cpu;
namespace quant = npft::quant;
using Index = npft::Index;

constexpr Index N = 24, K = 64;  // weights N x K

quant::QuantizedMatrix weights() { return npft_test::random_quantized(quant::Format::uniform_asymmetric, 4, N, K, 32, 7); }

std::vector<float> activations(Index count) {
    std::vector<float> x(static_cast<std::size_t>(count));
    for (Index i = 0; i < count; ++i) x[static_cast<std::size_t>(i)] = npft::uniform(npft::RandomKey{7, 2}, static_cast<std::uint64_t>(i), -1.0f, 1.0f);
    return x;
}

const std::vector<cpu::Path> paths = {cpu::Path::portable, cpu::Path::best};

}  // namespace

TEST_CASE("an output that overlaps the input is refused on every path", "[kernels][cpu][arguments]") {
    const quant::QuantizedMatrix w = weights();
    constexpr Index M = 3;
    std::vector<float> buffer = activations(M * K + M * N);
    const MatrixView<const float> x(buffer.data(), M, K, K, 1);
    for (const cpu::Path path : paths) {
        // y on top of x (same start), y starting in x's last row, y ending in x's first element.
        const MatrixView<float> same(buffer.data(), M, N, N, 1);
        const MatrixView<float> tail(buffer.data() + (M - 1) * K + 5, M, N, N, 1);
        CHECK_THROWS_WITH(cpu::multiply(w, x, same, {.path = path}), Contains("y overlaps x"));
        CHECK_THROWS_WITH(cpu::multiply(w, x, tail, {.path = path}), Contains("y overlaps x"));
        const MatrixView<const float> x_late(buffer.data() + M * N - 1, M, K, K, 1);
        CHECK_THROWS_WITH(cpu::multiply(w, x_late, MatrixView<float>(buffer.data(), M, N, N, 1), {.path = path}), Contains("y overlaps x"));
        // The same storage seen column-major for y still overlaps.
        CHECK_THROWS_WITH(cpu::multiply(w, x, MatrixView<float>(buffer.data() + 2, M, N, 1, M), {.path = path}), Contains("y overlaps x"));
    }
}

TEST_CASE("x and y as disjoint column ranges of one buffer, or a column-major y, run and agree", "[kernels][cpu][arguments]") {
    const quant::QuantizedMatrix w = weights();
    constexpr Index M = 5;
    const std::vector<float> x_data = activations(M * K);
    const MatrixView<const float> x(x_data.data(), M, K, K, 1);
    for (const cpu::Path path : paths) {
        Matrix expected(M, N);
        cpu::multiply(w, x, MatrixView<float>(npft::as_matrix_view(expected)), {.path = path});

        // One row-major M x (K + N) buffer: x in columns [0, K), y in [K, K + N). Address ranges meet, elements do not.
        std::vector<float> shared(static_cast<std::size_t>(M * (K + N)));
        for (Index m = 0; m < M; ++m)
            for (Index j = 0; j < K; ++j) shared[static_cast<std::size_t>(m * (K + N) + j)] = x(m, j);
        cpu::multiply(w, MatrixView<const float>(shared.data(), M, K, K + N, 1), MatrixView<float>(shared.data() + K, M, N, K + N, 1),
                      {.path = path});
        for (Index m = 0; m < M; ++m)
            for (Index r = 0; r < N; ++r) CHECK(shared[static_cast<std::size_t>(m * (K + N) + K + r)] == expected(m, r));

        std::vector<float> column_major(static_cast<std::size_t>(M * N));
        cpu::multiply(w, x, MatrixView<float>(column_major.data(), M, N, 1, M), {.path = path});
        for (Index m = 0; m < M; ++m)
            for (Index r = 0; r < N; ++r) CHECK(column_major[static_cast<std::size_t>(r * M + m)] == expected(m, r));
    }
}

TEST_CASE("outputs whose elements are not distinct are refused", "[kernels][cpu][arguments]") {
    const quant::QuantizedMatrix w = weights();
    constexpr Index M = 3;
    const std::vector<float> x_data = activations(M * K);
    const MatrixView<const float> x(x_data.data(), M, K, K, 1);
    std::vector<float> y(static_cast<std::size_t>(M * N));
    for (const cpu::Path path : paths) {
        CHECK_THROWS_WITH(cpu::multiply(w, x, MatrixView<float>(y.data(), M, N, N, 0), {.path = path}), Contains("has stride 0"));
        CHECK_THROWS_WITH(cpu::multiply(w, x, MatrixView<float>(y.data(), M, N, 0, 1), {.path = path}), Contains("has stride 0"));
        CHECK_THROWS_WITH(cpu::multiply(w, x, MatrixView<float>(y.data(), M, N, N - 1, 1), {.path = path}),
                          Contains("overlapping rows or columns"));
        std::vector<float> one(static_cast<std::size_t>(N));
        const std::vector<float> x1 = activations(K);
        CHECK_THROWS_WITH(cpu::gemv(w, VectorView<const float>(x1.data(), K), VectorView<float>(one.data(), N, 0), {.path = path}),
                          Contains("has stride 0"));
    }
    // A single row may have any row stride, a single column any column stride.
    CHECK_NOTHROW(cpu::multiply(w, MatrixView<const float>(x_data.data(), 1, K, 0, 1), MatrixView<float>(y.data(), 1, N, 0, 1)));
}

TEST_CASE("negative and null views are npft::Error, never std::length_error", "[kernels][cpu][arguments]") {
    const quant::QuantizedMatrix w = weights();
    std::vector<float> data(static_cast<std::size_t>(4 * K));
    CHECK_THROWS_WITH(MatrixView<const float>(data.data(), -1, K, K, 1), Contains("matrix view shape must be non-negative, got -1 x 64"));
    CHECK_THROWS_WITH(VectorView<float>(data.data(), -3), Contains("vector view shape must be non-negative"));
    CHECK_THROWS_AS(cpu::multiply(w, MatrixView<const float>(data.data(), -1, K, K, 1)), npft::Error);
    CHECK_THROWS_WITH(cpu::multiply(w, MatrixView<const float>(nullptr, 2, K, K, 1)), Contains("x is a 2 x 64 view of a null pointer"));
    std::vector<float> y(static_cast<std::size_t>(2 * N));
    CHECK_THROWS_WITH(cpu::multiply(w, MatrixView<const float>(data.data(), 2, K, K, 1), MatrixView<float>(nullptr, 2, N, N, 1)),
                      Contains("y is a 2 x 24 view of a null pointer"));
}

TEST_CASE("a malformed CSR is refused by multiply before any out-of-range read", "[kernels][cpu][arguments][sparse]") {
    const quant::QuantizedMatrix w = weights();
    const std::vector<float> x_data = activations(2 * K);
    const MatrixView<const float> x(x_data.data(), 2, K, K, 1);
    std::vector<float> y(static_cast<std::size_t>(2 * N));
    const MatrixView<float> yv(y.data(), 2, N, N, 1);
    std::vector<std::int32_t> offsets(N + 1, 2);
    offsets[0] = 0;  // row 0 holds both entries
    std::vector<npft::half> values(2, npft::half(1.0f));

    std::vector<std::int32_t> columns = {3, 100000};  // far outside [0, 64): used to segfault
    CHECK_THROWS_WITH(cpu::multiply(w, cpu::CsrView{N, K, offsets.data(), columns.data(), values.data()}, x, yv),
                      Contains("column 100000 of entry 1 (row 0) is outside [0, 64)"));
    columns = {9, 4};
    CHECK_THROWS_WITH(cpu::multiply(w, cpu::CsrView{N, K, offsets.data(), columns.data(), values.data()}, x, yv),
                      Contains("columns of row 0 must be strictly ascending"));
    columns = {-1, 4};
    CHECK_THROWS_WITH(cpu::multiply(w, cpu::CsrView{N, K, offsets.data(), columns.data(), values.data()}, x, yv), Contains("outside [0, 64)"));
    columns = {4, 9};
    offsets[5] = 1;  // 2, ..., 2, 1, 2, ...: decreasing
    CHECK_THROWS_WITH(cpu::multiply(w, cpu::CsrView{N, K, offsets.data(), columns.data(), values.data()}, x, yv),
                      Contains("row_offsets must be non-decreasing, but row 4 runs from 2 to 1"));
    offsets[5] = 2;
    CHECK_NOTHROW(cpu::multiply(w, cpu::CsrView{N, K, offsets.data(), columns.data(), values.data()}, x, yv));

    // The owning type: offsets that end past the values, and one in the middle far past them.
    quant::DenseSparseMatrix ds{w, {N, K, offsets, columns, values}};
    ds.sparse.row_offsets.back() = 3;
    CHECK_THROWS_AS(cpu::multiply(ds, x, yv), npft::Error);
    CHECK_THROWS_WITH(ds.validate(), Contains("end at nnz = 2"));
    ds.sparse.row_offsets.back() = 2;
    ds.sparse.row_offsets[1] = 1000;  // 0, 1000, 2, ...: row 0 would read 1000 entries
    CHECK_THROWS_WITH(ds.validate(), Contains("row_offsets must be non-decreasing, but row 1 runs from 1000 to 2"));
    Matrix out(N, K);
    CHECK_THROWS_AS(ds.sparse.add_to(out), npft::Error);
    CHECK_THROWS_AS(ds.dequantize(), npft::Error);
}

TEST_CASE("split_dense_sparse refuses unsorted, duplicate and out-of-range masks", "[quant][arguments][sparse]") {
    Matrix weights(4, 32);
    for (Index i = 0; i < weights.size(); ++i) weights.data()[i] = static_cast<float>(i % 7) - 3.0f;
    const quant::Uniform<4> grid;
    const auto view = MatrixView<const float>(npft::as_matrix_view(std::as_const(weights)));

    npft::outliers::OutlierMask mask;  // assembled field by field, bypassing the sorting constructor
    mask.rows = 4;
    mask.cols = 32;
    mask.positions = {70, 3};  // (2, 6) before (0, 3): CSR built in this order would put them in the wrong rows
    CHECK_THROWS_WITH(quant::split_dense_sparse(view, mask, grid), Contains("mask positions must be sorted and unique, but entry 1 (3) follows 70"));
    mask.positions = {3, 3};
    CHECK_THROWS_WITH(quant::split_dense_sparse(view, mask, grid), Contains("sorted and unique"));
    mask.positions = {3, 128};  // one past the end: used to write past the heap buffer
    CHECK_THROWS_WITH(quant::split_dense_sparse(view, mask, grid), Contains("mask position 128 (entry 1) lies outside the 4 x 32 matrix"));
    mask.positions = {-1};
    CHECK_THROWS_WITH(quant::split_dense_sparse(view, mask, grid), Contains("mask position -1"));

    // The sorted mask puts each outlier where it belongs: dense + sparse reproduces it to fp16.
    mask.positions = {3, 70};
    weights(0, 3) = 40.0f;
    weights(2, 6) = -50.0f;
    const quant::DenseSparseMatrix split = quant::split_dense_sparse(view, mask, grid);
    split.validate();
    const Matrix back = split.dequantize();
    CHECK(back(0, 3) == 40.0f);
    CHECK(back(2, 6) == -50.0f);
}
