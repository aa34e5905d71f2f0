// The trainable-parameter policies of block-wise reconstruction (scales + zero points, learnable rounding, LoRA):
// gradients against finite differences, optima computed here independently, and what each packs at the end.
#include <catch2/catch.hpp>

#include <Eigen/Eigenvalues>
#include <Eigen/QR>
#include <Eigen/SVD>
#include <cmath>
#include <map>
#include <npft/ptq/reconstruct.hpp>
#include <npft/ptq/trainable_lora.hpp>
#include <npft/ptq/trainable_rounding.hpp>
#include <npft/quant/quantizer.hpp>
#include <npft/quant/uniform.hpp>
#include <npft/train/optimizer.hpp>

#include "ptq_linear_blocks.hpp"
#include "test_matrices.hpp"

namespace ptq_policies_test {
using npft::Index;
using npft::Matrix;
using npft_test::gaussian_matrix;
using npft_test::LinearBlocks;
using npft_test::rtn;
using MatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic>;
using VectorD = Eigen::VectorXd;

namespace {

npft::quant::QuantizedMatrix quantize(const Matrix& w, const npft::quant::UniformGrid& grid) {
    return npft::quant::Quantizer<npft::quant::UniformGrid>(grid).quantize(npft::MatrixView<const float>(npft::as_matrix_view(w)));
}

/// Checks grad (from the parameters' own gradient) against central differences of loss() on every `stride`-th parameter.
template <class T, class Loss>
void check_against_finite_differences(T& trainable, const std::vector<float>& grad, Loss loss, float h, double tolerance,
                                      std::size_t stride = 1) {
    auto params = trainable.parameters();
    for (std::size_t i = 0; i < params.size(); i += stride) {
        const float saved = params[i];
        params[i] = saved + h;
        const double plus = loss();
        params[i] = saved - h;
        const double minus = loss();
        params[i] = saved;
        INFO("parameter " << i);
        CHECK(grad[i] == Approx((plus - minus) / (2.0 * h)).margin(tolerance).epsilon(tolerance));
    }
}

/// loss = sum(upstream .* W(parameters)): its weight gradient is `upstream`.
template <class T>
double linear_loss(const T& trainable, const Matrix& upstream) {
    Matrix w(upstream.rows(), upstream.cols());
    trainable.write_weights(npft::as_matrix_view(w));
    return (w.cast<double>().array() * upstream.cast<double>().array()).sum();
}

template <class T>
std::vector<float> gradient_of(const T& trainable, const Matrix& upstream) {
    std::vector<float> grad(trainable.parameters().size());
    trainable.gradient(npft::MatrixView<const float>(npft::as_matrix_view(upstream)), grad);
    return grad;
}

constexpr Index kWidth = 16;

}  // namespace

TEST_CASE("scale and zero-point gradient matches finite differences", "[ptq][policies]") {
    const Matrix w = gaussian_matrix(6, 32, 3, 1);
    const Matrix upstream = gaussian_matrix(6, 32, 3, 2);
    npft::ptq::TrainableMetadata metadata(quantize(w, npft::quant::UniformGrid(3, 16)), true);
    REQUIRE(metadata.trains_zero_points());
    REQUIRE(metadata.parameters().size() == 2u * 6u * 2u);  // theta and phi per (row, group)
    // Away from theta = phi = 0 so that the mixed term scale * phi is exercised.
    for (std::size_t i = 0; i < metadata.parameters().size(); ++i)
        metadata.parameters()[i] = 0.1f * npft::gaussian({9, 9}, i);
    const auto grad = gradient_of(metadata, upstream);
    // Linear in each parameter alone: the central difference is exact up to float rounding of the weights.
    check_against_finite_differences(metadata, grad, [&] { return linear_loss(metadata, upstream); }, 1e-2f, 2e-3);

    // Symmetric grids have no zero points to train.
    const npft::ptq::TrainableMetadata symmetric(
        quantize(w, npft::quant::UniformGrid(3, 16, npft::quant::Symmetry::symmetric)), true);
    CHECK_FALSE(symmetric.trains_zero_points());
    CHECK(symmetric.parameters().size() == 6u * 2u);
}

TEST_CASE("scales and zero points reach their least-squares optimum on a linear block", "[ptq][policies]") {
    const npft::quant::UniformGrid grid(3, 8);
    const Matrix x = gaussian_matrix(96, kWidth, 11, 1);
    const std::vector<Matrix> calibration{x};
    LinearBlocks model(1, kWidth, 4, 7);
    const LinearBlocks fp = model;
    auto packed = rtn(model, grid);
    const auto q = packed.at("block0");
    npft::ptq::ReconstructionOptions options;
    options.steps = 3000;
    options.learning_rate = 2e-2f;
    const auto report = npft::ptq::reconstruct(model, packed, calibration, npft::ptq::SingleBlock{}, options, npft::ptq::TrainScales{});

    // W_q[r,c] = s q - s z per (row, group): the output is linear in (s, s z), the optimum is least squares over both.
    const MatrixD xd = x.cast<double>();
    const MatrixD target = xd * fp.weights[0].cast<double>().transpose();
    const Index groups = q.groups(), group = q.group_size();
    MatrixD design(target.size(), 2 * q.rows() * groups);
    design.setZero();
    for (Index r = 0; r < q.rows(); ++r)
        for (Index g = 0; g < groups; ++g) {
            VectorD codes(group);
            for (Index c = 0; c < group; ++c) codes(c) = q.codes().get(r, g * group + c);
            const auto inputs = xd.middleCols(g * group, group);
            // Output column r in the column-major vectorisation of target.
            design.block(r * target.rows(), 2 * (r * groups + g), target.rows(), 1) = inputs * codes;
            design.block(r * target.rows(), 2 * (r * groups + g) + 1, target.rows(), 1) = -inputs.rowwise().sum();
        }
    const VectorD y = Eigen::Map<const VectorD>(target.data(), target.size());
    const VectorD solution = design.colPivHouseholderQr().solve(y);
    const double optimum = (design * solution - y).squaredNorm() / static_cast<double>(y.size());

    // Scales alone cannot reach it (the zero points matter), so the test can tell the two apart.
    LinearBlocks scales_only_model = fp;
    auto scales_only = rtn(scales_only_model, grid);
    const auto scales_report = npft::ptq::reconstruct(scales_only_model, scales_only, calibration, npft::ptq::SingleBlock{},
                                                      options, npft::ptq::TrainScales{.zero_points = false});
    CHECK(scales_report.windows[0].loss_trained > optimum * 1.05);
    CHECK(report.windows[0].loss_trained == Approx(optimum).epsilon(0.005));
    CHECK(report.windows[0].loss_trained >= optimum * (1 - 1e-6));
    // Packed: zero points are integral codes in range, and the block decodes from the packed matrix.
    for (const npft::half z : packed.at("block0").zeros()) {
        const float value = static_cast<float>(z);
        CHECK(value == std::nearbyint(value));
        CHECK((value >= 0.0f && value <= 7.0f));
    }
    CHECK(model.weights[0] == packed.at("block0").dequantize());
    CHECK(report.windows[0].loss_after < report.windows[0].loss_before);
}

TEST_CASE("learnable rounding: gradient and penalty gradient match finite differences", "[ptq][policies]") {
    const Matrix w = gaussian_matrix(5, 24, 4, 1);
    const Matrix upstream = gaussian_matrix(5, 24, 4, 2);
    npft::ptq::TrainableRounding rounding(quantize(w, npft::quant::UniformGrid(3, 8)),
                                          npft::MatrixView<const float>(npft::as_matrix_view(w)), {.lambda = 0.5f});
    // V inside (-2, 2): h away from its clips at 0 and 1 (V = -+2.4), where the derivative jumps.
    for (std::size_t i = 0; i < rounding.parameters().size(); ++i)
        rounding.parameters()[i] = npft::uniform({5, 5}, i, -2.0f, 2.0f);
    for (const double progress : {0.1, 0.5, 0.95}) {  // warm-up (no penalty), beta = 11.0 and 2.9
        INFO("progress " << progress);
        auto grad = gradient_of(rounding, upstream);
        rounding.add_regularizer_gradient(progress, grad);
        check_against_finite_differences(
            rounding, grad, [&] { return linear_loss(rounding, upstream) + rounding.regularizer(progress); }, 1e-3f, 1e-2);
    }
    CHECK(rounding.beta(0.1) == 0.0f);
    CHECK(rounding.beta(0.25) == Approx(20.0f - 18.0f * 0.05f / 0.8f));
    CHECK(rounding.beta(0.6) == Approx(11.0f));
}

TEST_CASE("learnable rounding: the penalty alone drives every offset to the nearer of 0 and 1", "[ptq][policies]") {
    const Matrix w = gaussian_matrix(4, 16, 6, 1);
    const auto q = quantize(w, npft::quant::UniformGrid(4, 16));
    npft::ptq::TrainableRounding rounding(q, npft::MatrixView<const float>(npft::as_matrix_view(w)),
                                          {.lambda = 1.0f, .beta_start = 2.0f, .beta_end = 2.0f, .warmup = 0.0f});
    std::vector<float> start(static_cast<std::size_t>(w.size()));
    for (Index r = 0; r < 4; ++r)
        for (Index c = 0; c < 16; ++c) start[static_cast<std::size_t>(r * 16 + c)] = rounding.offset(r, c);
    const npft::train::AdamW adam{.beta1 = 0.9f, .beta2 = 0.999f, .epsilon = 1e-12f, .weight_decay = 0.0f};
    auto state = adam.make_state(static_cast<Index>(rounding.parameters().size()));
    std::vector<float> grad(rounding.parameters().size());
    for (int step = 0; step < 400; ++step) {
        std::fill(grad.begin(), grad.end(), 0.0f);
        rounding.add_regularizer_gradient(0.5, grad);
        adam.step(state, rounding.parameters(), grad, 0.05f);
    }
    CHECK(rounding.regularizer(0.5) < 1e-3);
    for (Index r = 0; r < 4; ++r)
        for (Index c = 0; c < 16; ++c) {
            const float h0 = start[static_cast<std::size_t>(r * 16 + c)];
            if (std::abs(h0 - 0.5f) < 0.02f) continue;  // too close to call
            CHECK(rounding.offset(r, c) == (h0 > 0.5f ? 1.0f : 0.0f));
        }
    // Hardened at the soft start (h = frac(w / s)), learnable rounding is round-to-nearest: RTN's codes (outside ties).
    npft::ptq::TrainableRounding fresh(q, npft::MatrixView<const float>(npft::as_matrix_view(w)));
    const auto hardened = fresh.packed();
    Index differ = 0;
    for (Index r = 0; r < 4; ++r)
        for (Index c = 0; c < 16; ++c) differ += hardened.codes().get(r, c) != q.codes().get(r, c);
    CHECK(differ == 0);
}

TEST_CASE("learnable rounding ends exactly on the grid, one step from the full-precision weight", "[ptq][policies]") {
    const npft::quant::UniformGrid grid(3, 8);
    const std::vector<Matrix> calibration{gaussian_matrix(64, kWidth, 13, 1), gaussian_matrix(64, kWidth, 13, 2)};
    LinearBlocks model(2, kWidth, 4, 3);
    const LinearBlocks fp = model;
    auto packed = rtn(model, grid);
    const auto given = packed;
    npft::ptq::ReconstructionOptions options;
    options.steps = 400;
    options.learning_rate = 3e-2f;
    options.cosine_decay = false;
    const npft::ptq::TrainRounding policy{};
    const auto report = npft::ptq::reconstruct(model, packed, calibration, npft::ptq::SingleBlock{}, options, policy);
    for (Index j = 0; j < 2; ++j) {
        const auto& q = packed.at("block" + std::to_string(j));
        const auto& q0 = given.at("block" + std::to_string(j));
        CHECK(q.scales() == q0.scales());
        CHECK(q.zeros() == q0.zeros());
        const Matrix& w = model.weights[static_cast<std::size_t>(j)];
        for (Index r = 0; r < w.rows(); ++r)
            for (Index c = 0; c < w.cols(); ++c) {
                const npft::quant::UniformParams p = q.uniform_params(r, c / q.group_size());
                // On the grid: the block's weight is s (q - z) for an integer code q in range, exactly.
                const float code = w(r, c) / p.scale + p.zero;
                CHECK(std::nearbyint(code) >= 0.0f);
                CHECK(std::nearbyint(code) <= 7.0f);
                CHECK(w(r, c) == p.decode(static_cast<std::uint32_t>(std::nearbyint(code))));
                // Rounded down or up from the full-precision weight, never further.
                const float down = std::floor(fp.weights[static_cast<std::size_t>(j)](r, c) / p.scale) + p.zero;
                const auto got = static_cast<float>(q.codes().get(r, c));
                CHECK((got == std::clamp(down, 0.0f, 7.0f) || got == std::clamp(down + 1.0f, 0.0f, 7.0f)));
            }
        const auto& window = report.windows[static_cast<std::size_t>(j)];
        INFO("before " << window.loss_before << " trained " << window.loss_trained << " after " << window.loss_after);
        CHECK(window.loss_after < window.loss_before);
    }
}

TEST_CASE("learnable rounding finds the best rounding of a small block (exhaustive search)", "[ptq][policies]") {
    // Width 6: each output row has 2^6 up/down choices; rows are independent, so the search is exact and small.
    constexpr Index width = 6;
    const npft::quant::UniformGrid grid(2, 0);
    const Matrix x = gaussian_matrix(48, width, 17, 1);
    const std::vector<Matrix> calibration{x};
    LinearBlocks model(1, width, 2, 19);
    const LinearBlocks fp = model;
    auto packed = rtn(model, grid);
    const auto q = packed.at("block0");
    npft::ptq::ReconstructionOptions options;
    options.steps = 1500;
    options.learning_rate = 3e-2f;
    options.cosine_decay = false;
    const auto report = npft::ptq::reconstruct(model, packed, calibration, npft::ptq::SingleBlock{}, options,
                                               npft::ptq::TrainRounding{});
    INFO("before " << report.windows[0].loss_before << " trained " << report.windows[0].loss_trained << " after "
                   << report.windows[0].loss_after);
    const MatrixD xd = x.cast<double>();
    double best_total = 0.0;
    for (Index r = 0; r < width; ++r) {
        const auto p = q.uniform_params(r, 0);
        const VectorD target = xd * fp.weights[0].row(r).transpose().cast<double>();
        double best = std::numeric_limits<double>::infinity();
        for (unsigned mask = 0; mask < (1u << width); ++mask) {
            VectorD row(width);
            for (Index c = 0; c < width; ++c) {
                const float down = std::floor(fp.weights[0](r, c) / p.scale) + p.zero;
                const float code = std::clamp(down + static_cast<float>((mask >> c) & 1u), 0.0f, 3.0f);
                row(c) = p.decode(static_cast<std::uint32_t>(code));
            }
            best = std::min(best, (xd * row - target).squaredNorm());
        }
        best_total += best;
    }
    const double optimum = best_total / static_cast<double>(x.rows() * width);
    CHECK(report.windows[0].loss_after >= optimum * (1 - 1e-9));
    CHECK(report.windows[0].loss_after == Approx(optimum).epsilon(1e-6));
    CHECK(report.windows[0].loss_before > optimum * 1.04);  // RTN is not already optimal: the test can tell
}

TEST_CASE("LoRA: gradient matches finite differences of W + A B", "[ptq][policies]") {
    const Matrix w = gaussian_matrix(6, 20, 8, 1);
    const Matrix upstream = gaussian_matrix(6, 20, 8, 2);
    npft::ptq::TrainableLora lora(quantize(w, npft::quant::UniformGrid(4, 0)), npft::MatrixView<const float>(npft::as_matrix_view(w)),
                                  {.rank = 3, .init_scale = 1.0f, .seed = 1}, 0);
    for (std::size_t i = 0; i < lora.parameters().size(); ++i) lora.parameters()[i] = 0.3f * npft::gaussian({8, 8}, i);
    const auto grad = gradient_of(lora, upstream);
    auto loss = [&] { return (lora.corrected_weights().cast<double>().array() * upstream.cast<double>().array()).sum(); };
    // Bilinear in (A, B), linear in each entry alone: the central difference is exact up to float rounding.
    check_against_finite_differences(lora, grad, loss, 1e-2f, 2e-3);
}

TEST_CASE("LoRA: AdamW on its parameters reaches the best rank-r correction (least squares, Eckart-Young)", "[ptq][policies]") {
    // What LoRA trains toward once the straight-through quantizer is taken away: the weights W + A B that best reproduce
    // a target layer T on calibration inputs X. With C = X^T X / n, the loss ||(W + A B - T) C^(1/2)||^2 / rows has its
    // minimum over rank r at the tail of the singular values of (T - W) C^(1/2): computed here by an SVD, not by training.
    constexpr Index rows = 12, cols = 16, rank = 3, n = 64;
    const Matrix w = gaussian_matrix(rows, cols, 31, 1);
    const Matrix target = w + 0.5f * gaussian_matrix(rows, cols, 31, 2);  // full rank: rank 3 cannot reach it
    const Matrix x = gaussian_matrix(n, cols, 31, 3) * (0.25f * Matrix::Identity(cols, cols) + gaussian_matrix(cols, cols, 31, 4));
    const MatrixD c = (x.cast<double>().transpose() * x.cast<double>()) / static_cast<double>(n);
    const Eigen::SelfAdjointEigenSolver<MatrixD> eigen(c);
    const MatrixD root = eigen.eigenvectors() * eigen.eigenvalues().cwiseMax(0.0).cwiseSqrt().asDiagonal() * eigen.eigenvectors().transpose();
    const VectorD singular = Eigen::JacobiSVD<MatrixD>((target - w).cast<double>() * root).singularValues();
    const double optimum = singular.tail(singular.size() - rank).squaredNorm() / static_cast<double>(rows);
    const double start = singular.squaredNorm() / static_cast<double>(rows);

    npft::ptq::TrainableLora lora(quantize(w, npft::quant::UniformGrid(4, 0)), npft::MatrixView<const float>(npft::as_matrix_view(w)),
                                  {.rank = rank, .init_scale = 1.0f, .seed = 5}, 0);
    auto loss = [&] {
        const MatrixD residual = lora.corrected_weights().cast<double>() - target.cast<double>();
        return (residual * c * residual.transpose()).trace() / static_cast<double>(rows);
    };
    CHECK(loss() == Approx(start).epsilon(1e-6));  // A starts at 0: the correction starts at nothing
    const npft::train::AdamW adam{.beta1 = 0.9f, .beta2 = 0.999f, .epsilon = 1e-12f, .weight_decay = 0.0f};
    auto state = adam.make_state(static_cast<Index>(lora.parameters().size()));
    constexpr int steps = 4000;
    for (int step = 0; step < steps; ++step) {
        const Matrix upstream = ((lora.corrected_weights() - target).cast<double>() * c * (2.0 / rows)).cast<float>();
        const auto grad = gradient_of(lora, upstream);
        const float lr = static_cast<float>(0.5 * 1e-2 * (1.0 + std::cos(3.141592653589793 * step / steps)));
        adam.step(state, lora.parameters(), grad, lr);
    }
    INFO("loss " << loss() << ", rank-" << rank << " optimum " << optimum << ", start " << start);
    CHECK(loss() >= optimum * (1 - 1e-6));
    CHECK(loss() == Approx(optimum).epsilon(0.005));
    CHECK(start > optimum * 1.5);  // the correction has something to learn: the test can tell
}

TEST_CASE("LoRA: folding A B then quantizing equals what the block computes", "[ptq][policies]") {
    const Matrix w = gaussian_matrix(8, 32, 9, 1);
    npft::ptq::TrainableLora lora(quantize(w, npft::quant::UniformGrid(3, 16)), npft::MatrixView<const float>(npft::as_matrix_view(w)),
                                  {.rank = 2, .init_scale = 1.0f, .seed = 4}, 7);
    // A starts at 0: the block starts at round-to-nearest on the given grid.
    Matrix computed(8, 32);
    lora.write_weights(npft::as_matrix_view(computed));
    CHECK(computed == quantize(w, npft::quant::UniformGrid(3, 16)).dequantize());
    for (std::size_t i = 0; i < lora.parameters().size(); ++i) lora.parameters()[i] = 0.2f * npft::gaussian({9, 9}, i);
    lora.write_weights(npft::as_matrix_view(computed));
    CHECK(lora.packed().dequantize() == computed);
    CHECK(computed != quantize(w, npft::quant::UniformGrid(3, 16)).dequantize());  // the correction moved some codes

    // Through reconstruction: the block computed with exactly the packed weights at the end (same error, bit for bit).
    const npft::quant::UniformGrid grid(3, 8);
    const std::vector<Matrix> calibration{gaussian_matrix(64, kWidth, 21, 1), gaussian_matrix(64, kWidth, 21, 2)};
    LinearBlocks model(2, kWidth, 4, 5), again = model;
    auto packed = rtn(model, grid), packed_again = packed;
    npft::ptq::ReconstructionOptions options;
    options.steps = 300;
    options.learning_rate = 1e-3f;
    const npft::ptq::TrainLora policy{.shape = {.rank = 4, .init_scale = 1.0f, .seed = 3}};
    const auto report = npft::ptq::reconstruct(model, packed, calibration, npft::ptq::Downstream{1}, options, policy);
    for (const auto& window : report.windows) {
        CHECK(window.loss_after == window.loss_trained);
        CHECK(window.loss_after < window.loss_before);
    }
    // Same seed, same result, bit for bit.
    npft::ptq::reconstruct(again, packed_again, calibration, npft::ptq::Downstream{1}, options, policy);
    for (std::size_t j = 0; j < 2; ++j) CHECK(model.weights[j] == again.weights[j]);
}

TEST_CASE("peak activation bytes do not grow with the number of calibration batches", "[ptq][memory]") {
    const npft::quant::UniformGrid grid(3, 8);
    constexpr Index rows = 24;
    const auto batch_bytes = static_cast<std::size_t>(rows * kWidth) * sizeof(float);
    auto peak = [&](Index batches, npft::ptq::ActivationStorage storage, bool fp_inputs, auto objective) {
        LinearBlocks model(4, kWidth, 6, 6);
        auto packed = rtn(model, grid);
        // Produced on demand: the caller holds no batch either.
        const npft::ptq::CalibrationSource source{batches, [&](Index k) {
                                                      return gaussian_matrix(rows, kWidth, 31, static_cast<std::uint64_t>(k));
                                                  }};
        npft::ptq::ReconstructionOptions options;
        options.steps = 40;
        options.storage = storage;
        options.fp_inputs = fp_inputs;
        return npft::ptq::reconstruct(model, packed, source, objective, options).peak_activation_bytes;
    };
    using npft::ptq::ActivationStorage;
    for (const bool fp_inputs : {true, false}) {
        INFO("fp inputs " << fp_inputs);
        const auto single = peak(4, ActivationStorage::disk, fp_inputs, npft::ptq::SingleBlock{});
        CHECK(single == peak(32, ActivationStorage::disk, fp_inputs, npft::ptq::SingleBlock{}));
        const auto downstream = peak(4, ActivationStorage::disk, fp_inputs, npft::ptq::Downstream{2});
        CHECK(downstream == peak(32, ActivationStorage::disk, fp_inputs, npft::ptq::Downstream{2}));
        const auto multi = peak(4, ActivationStorage::disk, fp_inputs, npft::ptq::MultiBlock{2});
        CHECK(multi == peak(32, ActivationStorage::disk, fp_inputs, npft::ptq::MultiBlock{2}));
        // A step holds its input, its target and the inputs of the blocks it runs: a few batches.
        CHECK(single >= 2 * batch_bytes);
        CHECK(single <= 4 * batch_bytes);
        CHECK(downstream <= 6 * batch_bytes);
        // The counter sees what is held: in memory, the stores grow with the calibration set.
        const auto in_memory = peak(32, ActivationStorage::memory, fp_inputs, npft::ptq::SingleBlock{});
        CHECK(in_memory >= 2 * 32 * batch_bytes);
        CHECK(in_memory > 8 * peak(4, ActivationStorage::memory, fp_inputs, npft::ptq::SingleBlock{}) / 2);
    }
}

TEST_CASE("policies and objectives reject bad input with clear errors", "[ptq][policies]") {
    const Matrix w = gaussian_matrix(4, 16, 1, 1);
    npft::quant::QuantizedMatrix lut(npft::quant::Format::lut, 2, 4, 16, 16);
    CHECK_THROWS_WITH(npft::ptq::TrainableRounding(lut, npft::MatrixView<const float>(npft::as_matrix_view(w))),
                      Catch::Contains("learnable rounding needs a uniform grid"));
    const auto q = quantize(w, npft::quant::UniformGrid(3, 0));
    CHECK_THROWS_WITH(npft::ptq::TrainableLora(q, npft::MatrixView<const float>(npft::as_matrix_view(w)), {.rank = 0}, 0),
                      Catch::Contains("LoRA rank must be in [1, 4], got 0"));
    CHECK_THROWS_WITH(npft::ptq::TrainableRounding(q, npft::MatrixView<const float>(npft::as_matrix_view(w)), {.lambda = -1.0f}),
                      Catch::Contains("rounding lambda"));
    const Matrix narrow = gaussian_matrix(4, 8, 1, 1);
    CHECK_THROWS_WITH(npft::ptq::TrainableRounding(q, npft::MatrixView<const float>(npft::as_matrix_view(narrow))),
                      Catch::Contains("full-precision weights for learnable rounding"));
    LinearBlocks model(2, kWidth, 4, 4);
    auto packed = rtn(model, npft::quant::UniformGrid(3, 8));
    const npft::ptq::CalibrationSource bad{2, [](Index k) {
                                               Matrix x = gaussian_matrix(8, kWidth, 1, 1);
                                               if (k == 1) x(0, 0) = std::numeric_limits<float>::infinity();
                                               return x;
                                           }};
    CHECK_THROWS_WITH(npft::ptq::reconstruct(model, packed, bad, npft::ptq::SingleBlock{}),
                      Catch::Contains("calibration batch 1 holds a non-finite value"));
    CHECK_THROWS_WITH(npft::ptq::reconstruct(model, packed, std::vector<Matrix>{gaussian_matrix(8, kWidth, 1, 1)},
                                             npft::ptq::Downstream{0}),
                      Catch::Contains("Downstream depth must be at least 1"));
}

}  // namespace ptq_policies_test
