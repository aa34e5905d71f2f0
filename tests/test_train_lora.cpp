// LoRA in weight space: gradients against central finite differences, merge, initialization.
#include <catch2/catch.hpp>

#include <npft/train/lora.hpp>

#include "train_test_models.hpp"

using npft::Matrix;
using npft::train::LoraAdapter;
using npft::train::LoraOptions;

namespace {
// Row-major like npft::Matrix, so data()[i] names the same element in both.
using MatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// L(W) = sum C.W + 0.5 sum D.W^2, so dL/dW = C + D.W; evaluated in double for the finite differences.
double quadratic_loss(const MatrixD& w, const MatrixD& c, const MatrixD& d) {
    return (c.array() * w.array()).sum() + 0.5 * (d.array() * w.array().square()).sum();
}
}  // namespace

TEST_CASE("LoRA gradients match central finite differences of the loss in A and B", "[train][lora]") {
    const npft::Index rows = 6, cols = 5;
    LoraAdapter lora(rows, cols, LoraOptions{.rank = 3, .alpha = 6.0f});
    lora.initialize(npft::RandomKey{7, 1});
    npft_test::fill_gaussian(lora.b(), 0.5f, 7, 2);  // B = 0 would make dL/dA vanish
    Matrix w0(rows, cols), c(rows, cols), d(rows, cols);
    npft_test::fill_gaussian(w0, 1.0f, 7, 3);
    npft_test::fill_gaussian(c, 1.0f, 7, 4);
    npft_test::fill_gaussian(d, 1.0f, 7, 5);
    d = d.cwiseAbs();

    Matrix w_eff(rows, cols);
    lora.write_effective(w0, npft::as_matrix_view(w_eff));
    const Matrix g = c + d.cwiseProduct(w_eff);
    Matrix grad_a, grad_b;
    lora.gradients(npft::MatrixView<const float>(npft::as_matrix_view(g)), grad_a, grad_b);

    const double s = lora.scaling();
    const MatrixD a = lora.a().cast<double>(), b = lora.b().cast<double>(), base = w0.cast<double>();
    const MatrixD cd = c.cast<double>(), dd = d.cast<double>();
    const auto loss_at = [&](const MatrixD& aa, const MatrixD& bb) {
        return quadratic_loss(base + s * bb * aa, cd, dd);
    };
    const double h = 1e-4;
    for (npft::Index i = 0; i < a.size(); ++i) {
        MatrixD plus = a, minus = a;
        plus.data()[i] += h;
        minus.data()[i] -= h;
        const double fd = (loss_at(plus, b) - loss_at(minus, b)) / (2 * h);
        CHECK(grad_a.data()[i] == Approx(fd).epsilon(1e-4).margin(1e-5));
    }
    for (npft::Index i = 0; i < b.size(); ++i) {
        MatrixD plus = b, minus = b;
        plus.data()[i] += h;
        minus.data()[i] -= h;
        const double fd = (loss_at(a, plus) - loss_at(a, minus)) / (2 * h);
        CHECK(grad_b.data()[i] == Approx(fd).epsilon(1e-4).margin(1e-5));
    }
}

TEST_CASE("LoRA gradients through a strided (column-major) model view", "[train][lora]") {
    LoraAdapter lora(4, 3, LoraOptions{.rank = 2, .alpha = 2.0f});
    lora.initialize(npft::RandomKey{3, 3});
    npft_test::fill_gaussian(lora.b(), 1.0f, 3, 4);
    Matrix g(4, 3);
    npft_test::fill_gaussian(g, 1.0f, 3, 5);
    Eigen::MatrixXf g_col = g;  // column-major copy
    Matrix ga_row, gb_row, ga_col, gb_col;
    lora.gradients(npft::MatrixView<const float>(npft::as_matrix_view(g)), ga_row, gb_row);
    lora.gradients(npft::MatrixView<const float>(npft::as_matrix_view(g_col)), ga_col, gb_col);
    CHECK(ga_row == ga_col);
    CHECK(gb_row == gb_col);
    CHECK(ga_row.isApprox(lora.scaling() * lora.b().transpose() * g));
}

TEST_CASE("a fresh adapter leaves the weight unchanged and merging reproduces the effective weight", "[train][lora]") {
    LoraAdapter lora(8, 16, LoraOptions{});
    lora.initialize(npft::RandomKey{11, 0});
    CHECK(lora.rank() == 16);
    CHECK(lora.scaling() == 2.0f);
    CHECK(lora.b().isZero(0.0f));
    const float bound = 1.0f / std::sqrt(16.0f);
    CHECK(lora.a().cwiseAbs().maxCoeff() < bound);
    CHECK(lora.a().cwiseAbs().maxCoeff() > 0.5f * bound);  // spread over the range, not collapsed
    Matrix w0(8, 16), out(8, 16);
    npft_test::fill_gaussian(w0, 1.0f, 11, 1);
    lora.write_effective(w0, npft::as_matrix_view(out));
    CHECK(out == w0);  // B = 0: bit-identical

    npft_test::fill_gaussian(lora.b(), 0.1f, 11, 2);
    lora.write_effective(w0, npft::as_matrix_view(out));
    Matrix merged = w0;
    lora.merge_into(merged);
    CHECK(merged == out);
    CHECK(!(merged == w0));
}

TEST_CASE("adapter initialization is a pure function of the key", "[train][lora]") {
    LoraAdapter x(5, 7, LoraOptions{.rank = 2}), y(5, 7, LoraOptions{.rank = 2}), z(5, 7, LoraOptions{.rank = 2});
    x.initialize(npft::RandomKey{1, 2});
    y.initialize(npft::RandomKey{1, 2});
    z.initialize(npft::RandomKey{1, 3});
    CHECK(x.a() == y.a());
    CHECK(!(x.a() == z.a()));
}

TEST_CASE("LoRA rejects a bad rank, alpha or shape", "[train][lora]") {
    REQUIRE_THROWS_WITH(LoraAdapter(4, 4, LoraOptions{.rank = 0}), Catch::Contains("rank must be at least 1"));
    REQUIRE_THROWS_WITH(LoraAdapter(4, 4, LoraOptions{.rank = 2, .alpha = -1.0f}), Catch::Contains("alpha"));
    LoraAdapter lora(4, 4, LoraOptions{.rank = 2});
    Matrix wrong(3, 4), base(4, 4);
    REQUIRE_THROWS_WITH(lora.write_effective(base, npft::as_matrix_view(wrong)), Catch::Contains("must be 4 x 4"));
}
