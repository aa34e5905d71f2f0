// Block-wise reconstruction on tiny linear block models whose optimum is computed here by least squares.
#include <catch2/catch.hpp>

#include <Eigen/QR>
#include <map>
#include <npft/core/random.hpp>
#include <npft/ptq/reconstruct.hpp>
#include <npft/quant/quantizer.hpp>
#include <npft/quant/uniform.hpp>

#include "ptq_linear_blocks.hpp"
#include "test_matrices.hpp"

// POSIX declares a global ::index(); the tests live in their own namespace so that npft::index is unambiguous.
namespace ptq_test {
using npft::Index;
using npft::Matrix;
using npft_test::gaussian_matrix;
using npft_test::LinearBlocks;
using npft_test::rtn;
using MatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic>;
using VectorD = Eigen::VectorXd;

namespace {

/// Codes minus zero points, C[r,c] = q - z, of a uniform packed matrix: then W_q[r,c] = scale[r, g(c)] * C[r,c].
MatrixD centred_codes(const npft::quant::QuantizedMatrix& q) {
    MatrixD c(q.rows(), q.cols());
    for (Index r = 0; r < q.rows(); ++r)
        for (Index j = 0; j < q.cols(); ++j) c(r, j) = q.codes().get(r, j) - q.uniform_params(r, j / q.group_size()).zero;
    return c;
}

/// Column of the output (tokens x rows, column-major vectorised) that scale (r, g) multiplies in y = X W_q^T.
VectorD scale_feature(const MatrixD& x, const MatrixD& codes, Index r, Index g, Index group) {
    return x.middleCols(g * group, group) * codes.row(r).segment(g * group, group).transpose();
}

/// The least-squares optimum of the mean squared error over the scales of one block, output measured through `readout`
/// (identity: the block output; V: the pre-activations of the next block). Returns the optimal mean squared error.
double optimal_single_block_error(const MatrixD& x, const npft::quant::QuantizedMatrix& q, const MatrixD& target_weights,
                                  const MatrixD& readout) {
    const MatrixD codes = centred_codes(q);
    const Index tokens = x.rows(), groups = q.groups(), group = q.group_size();
    const MatrixD target = x * target_weights.transpose() * readout.transpose();  // tokens x outputs
    MatrixD design(tokens * readout.rows(), q.rows() * groups);
    for (Index r = 0; r < q.rows(); ++r)
        for (Index g = 0; g < groups; ++g) {
            const MatrixD contribution = scale_feature(x, codes, r, g, group) * readout.col(r).transpose();
            design.col(r * groups + g) = Eigen::Map<const VectorD>(contribution.data(), contribution.size());
        }
    const VectorD y = Eigen::Map<const VectorD>(target.data(), target.size());
    const VectorD scales = design.colPivHouseholderQr().solve(y);
    return (design * scales - y).squaredNorm() / static_cast<double>(y.size());
}


constexpr Index kWidth = 16;
constexpr Index kPreactivationWidth = 12;

}  // namespace

TEST_CASE("metadata gradient matches finite differences for scales and LUT levels", "[ptq]") {
    const Matrix w = gaussian_matrix(6, 32, 3, 1);
    const Matrix upstream = gaussian_matrix(6, 32, 3, 2);  // loss = sum(upstream .* W_q(theta))
    npft::quant::QuantizedMatrix uniform =
        npft::quant::Quantizer<npft::quant::UniformGrid>(npft::quant::UniformGrid(3, 16)).quantize(npft::MatrixView<const float>(npft::as_matrix_view(w)));
    npft::quant::QuantizedMatrix lut(npft::quant::Format::lut, 2, 6, 32, 32);
    npft::quant::LutParams levels;
    levels.bits = 2;
    levels.levels = {-1.5f, -0.5f, 0.25f, 1.0f};
    for (Index r = 0; r < 6; ++r) {
        lut.set_lut(r, levels);
        for (Index c = 0; c < 32; ++c) lut.codes().set(r, c, levels.encode(w(r, c)));
    }
    for (const auto* packed : {&uniform, &lut}) {
        npft::ptq::TrainableMetadata metadata(*packed);
        std::vector<float> grad(metadata.parameters().size());
        metadata.gradient(npft::MatrixView<const float>(npft::as_matrix_view(upstream)), grad);
        Matrix weights(6, 32);
        auto loss = [&] {
            metadata.write_weights(npft::as_matrix_view(weights));
            return static_cast<double>((weights.array() * upstream.array()).sum());
        };
        for (std::size_t i = 0; i < grad.size(); i += 3) {
            const float saved = metadata.parameters()[i];
            const float h = 1e-2f;
            metadata.parameters()[i] = saved + h;
            const double plus = loss();
            metadata.parameters()[i] = saved - h;
            const double minus = loss();
            metadata.parameters()[i] = saved;
            // The loss is linear in theta: the central difference is exact up to float rounding of the weights.
            CHECK(grad[i] == Approx((plus - minus) / (2.0 * h)).margin(2e-3).epsilon(2e-3));
        }
    }
}

TEST_CASE("theta = 0 reproduces the packed matrix; packed() keeps LUT levels ascending", "[ptq]") {
    const Matrix w = gaussian_matrix(4, 64, 5, 1);
    const auto q = npft::quant::Quantizer<npft::quant::UniformGrid>(npft::quant::UniformGrid(4, 32))
                       .quantize(npft::MatrixView<const float>(npft::as_matrix_view(w)));
    npft::ptq::TrainableMetadata metadata(q);
    Matrix weights(4, 64);
    metadata.write_weights(npft::as_matrix_view(weights));
    CHECK(weights == q.dequantize());
    CHECK(metadata.packed().dequantize() == q.dequantize());

    npft::quant::QuantizedMatrix lut(npft::quant::Format::lut, 2, 1, 32, 32);
    npft::quant::LutParams levels;
    levels.bits = 2;
    levels.levels = {-1.0f, 0.0f, 0.5f, 1.0f};
    lut.set_lut(0, levels);
    for (Index c = 0; c < 32; ++c) lut.codes().set(0, c, static_cast<std::uint32_t>(c % 4));
    npft::ptq::TrainableMetadata crossing(lut);
    crossing.parameters()[1] = 0.75f;  // level 1 moves from 0.0 to 0.75: above level 2 (0.5)
    const auto sorted = crossing.packed();
    const Matrix before = [&] { Matrix m(1, 32); crossing.write_weights(npft::as_matrix_view(m)); return m; }();
    CHECK(sorted.dequantize() == before);
    for (Index k = 0; k + 1 < 4; ++k) CHECK(static_cast<float>(sorted.lut()[k]) <= static_cast<float>(sorted.lut()[k + 1]));
}

TEST_CASE("each objective converges to its least-squares optimum on linear blocks", "[ptq]") {
    const npft::quant::UniformGrid grid(3, 8);
    const Matrix x = gaussian_matrix(96, kWidth, 11, 1);
    const std::vector<Matrix> calibration{x};
    npft::ptq::ReconstructionOptions options;
    options.steps = 1500;
    options.learning_rate = 2e-2f;
    // Scales only: the optimum below is over the scales (zero points have their own test, test_ptq_policies.cpp).
    const npft::ptq::TrainScales scales{.zero_points = false};

    SECTION("single block") {
        LinearBlocks model(2, kWidth, kPreactivationWidth, 7);
        const LinearBlocks fp = model;
        auto packed = rtn(model, grid);
        const auto rtn_packed = packed;
        const auto report = npft::ptq::reconstruct(model, packed, calibration, npft::ptq::SingleBlock{}, options, scales);
        REQUIRE(report.windows.size() == 2);
        const MatrixD xd = x.cast<double>();
        const MatrixD identity = MatrixD::Identity(kWidth, kWidth);
        const double optimum0 = optimal_single_block_error(xd, rtn_packed.at("block0"), fp.weights[0].cast<double>(), identity);
        // Block 1 sees the full-precision model's input (fp_inputs): the FP output of block 0.
        const MatrixD x1 = xd * fp.weights[0].cast<double>().transpose();
        const double optimum1 = optimal_single_block_error(x1, rtn_packed.at("block1"), fp.weights[1].cast<double>(), identity);
        CHECK(report.windows[0].loss_after < report.windows[0].loss_before);
        CHECK(report.windows[0].loss_after == Approx(optimum0).epsilon(0.002));
        CHECK(report.windows[1].loss_after == Approx(optimum1).epsilon(0.002));
        CHECK(report.windows[0].loss_after >= optimum0 * (1 - 1e-6));
    }

    SECTION("downstream, at the output of the next block (the default readout)") {
        LinearBlocks model(2, kWidth, kPreactivationWidth, 8);
        const LinearBlocks fp = model;
        auto packed = rtn(model, grid);
        const auto rtn_packed = packed;
        const auto report = npft::ptq::reconstruct(model, packed, calibration, npft::ptq::Downstream{1}, options, scales);
        REQUIRE(report.windows.size() == 2);
        // Block 1's output is y0 W1^T: the readout of block 0's output is block 1's (full-precision) weight matrix.
        const double optimum0 = optimal_single_block_error(x.cast<double>(), rtn_packed.at("block0"), fp.weights[0].cast<double>(),
                                                           fp.weights[1].cast<double>());
        CHECK(report.windows[0].objective == "downstream");
        CHECK(report.windows[0].loss_after == Approx(optimum0).epsilon(0.002));
        CHECK(report.windows[0].loss_after >= optimum0 * (1 - 1e-6));
        // Not the pre-activation optimum: the readout really is block 1's output.
        const double qkv_optimum = optimal_single_block_error(x.cast<double>(), rtn_packed.at("block0"),
                                                              fp.weights[0].cast<double>(), fp.preactivation_maps[1].cast<double>());
        CHECK(std::abs(report.windows[0].loss_after - qkv_optimum) > 0.05 * qkv_optimum);
    }

    SECTION("downstream, depth 2: at the output of block i+2") {
        LinearBlocks model(3, kWidth, kPreactivationWidth, 12);
        const LinearBlocks fp = model;
        auto packed = rtn(model, grid);
        const auto rtn_packed = packed;
        const auto report = npft::ptq::reconstruct(model, packed, calibration, npft::ptq::Downstream{2}, options, scales);
        REQUIRE(report.windows.size() == 3);
        // Block 2's output is y0 W1^T W2^T: block 0's output is read through W2 W1 (blocks 1 and 2 in full precision).
        const MatrixD readout = fp.weights[2].cast<double>() * fp.weights[1].cast<double>();
        const double optimum0 =
            optimal_single_block_error(x.cast<double>(), rtn_packed.at("block0"), fp.weights[0].cast<double>(), readout);
        CHECK(report.windows[0].loss_after == Approx(optimum0).epsilon(0.002));
        CHECK(report.windows[0].loss_after >= optimum0 * (1 - 1e-6));
        const double depth1_optimum = optimal_single_block_error(x.cast<double>(), rtn_packed.at("block0"),
                                                                 fp.weights[0].cast<double>(), fp.weights[1].cast<double>());
        CHECK(std::abs(report.windows[0].loss_after - depth1_optimum) > 0.05 * depth1_optimum);
    }

    SECTION("downstream pre-activations (the q/k/v readout)") {
        LinearBlocks model(2, kWidth, kPreactivationWidth, 8);
        const LinearBlocks fp = model;
        auto packed = rtn(model, grid);
        const auto rtn_packed = packed;
        const npft::ptq::Downstream qkv{.depth = 1, .measured_at = npft::ptq::Readout::preactivations};
        const auto report = npft::ptq::reconstruct(model, packed, calibration, qkv, options, scales);
        REQUIRE(report.windows.size() == 2);
        const double optimum0 = optimal_single_block_error(x.cast<double>(), rtn_packed.at("block0"), fp.weights[0].cast<double>(),
                                                           fp.preactivation_maps[1].cast<double>());
        CHECK(report.windows[0].loss_after == Approx(optimum0).epsilon(0.002));
        CHECK(report.windows[0].loss_after >= optimum0 * (1 - 1e-6));
        // The downstream optimum is not the single-block optimum: the objective really measures somewhere else.
        LinearBlocks single_model = fp;
        auto single_packed = rtn_packed;
        npft::ptq::reconstruct(single_model, single_packed, calibration, npft::ptq::SingleBlock{}, options, scales);
        CHECK(single_packed.at("block0").scales() != packed.at("block0").scales());
    }

    SECTION("multi-block, two blocks jointly") {
        LinearBlocks model(2, kWidth, kPreactivationWidth, 9);
        const LinearBlocks fp = model;
        auto packed = rtn(model, grid);
        const auto rtn_packed = packed;
        const auto report = npft::ptq::reconstruct(model, packed, calibration, npft::ptq::MultiBlock{2}, options, scales);
        REQUIRE(report.windows.size() == 1);
        // Optimum by alternating least squares (the error is bilinear in the two blocks' scales), started from RTN.
        const MatrixD xd = x.cast<double>();
        const MatrixD target = xd * fp.weights[0].cast<double>().transpose() * fp.weights[1].cast<double>().transpose();
        const auto& q0 = rtn_packed.at("block0");
        const auto& q1 = rtn_packed.at("block1");
        const MatrixD c0 = centred_codes(q0), c1 = centred_codes(q1);
        auto weights_of = [](const MatrixD& codes, const VectorD& scales, Index group) {
            MatrixD w = codes;
            const Index groups = codes.cols() / group;
            for (Index r = 0; r < codes.rows(); ++r)
                for (Index c = 0; c < codes.cols(); ++c) w(r, c) *= scales(r * groups + c / group);
            return w;
        };
        auto scales_of = [](const npft::quant::QuantizedMatrix& q) {
            VectorD s(q.rows() * q.groups());
            for (Index r = 0; r < q.rows(); ++r)
                for (Index g = 0; g < q.groups(); ++g) s(r * q.groups() + g) = q.uniform_params(r, g).scale;
            return s;
        };
        VectorD s0 = scales_of(q0), s1 = scales_of(q1);
        const VectorD y = Eigen::Map<const VectorD>(target.data(), target.size());
        double optimum = 0.0;
        for (int sweep = 0; sweep < 200; ++sweep) {
            // Block 1's scales given block 0: an ordinary single-block problem on block 0's quantized output.
            const MatrixD h = xd * weights_of(c0, s0, q0.group_size()).transpose();
            MatrixD design1(target.size(), s1.size());
            for (Index r = 0; r < q1.rows(); ++r)
                for (Index g = 0; g < q1.groups(); ++g) {
                    MatrixD contribution = MatrixD::Zero(target.rows(), target.cols());
                    contribution.col(r) = scale_feature(h, c1, r, g, q1.group_size());
                    design1.col(r * q1.groups() + g) = Eigen::Map<const VectorD>(contribution.data(), contribution.size());
                }
            s1 = design1.colPivHouseholderQr().solve(y);
            // Block 0's scales given block 1: the output is linear in them through W1_q.
            const MatrixD w1 = weights_of(c1, s1, q1.group_size());
            MatrixD design0(target.size(), s0.size());
            for (Index r = 0; r < q0.rows(); ++r)
                for (Index g = 0; g < q0.groups(); ++g) {
                    const MatrixD contribution = scale_feature(xd, c0, r, g, q0.group_size()) * w1.col(r).transpose();
                    design0.col(r * q0.groups() + g) = Eigen::Map<const VectorD>(contribution.data(), contribution.size());
                }
            s0 = design0.colPivHouseholderQr().solve(y);
            optimum = (design0 * s0 - y).squaredNorm() / static_cast<double>(y.size());
        }
        CHECK(report.windows[0].loss_after < report.windows[0].loss_before);
        CHECK(report.windows[0].loss_after == Approx(optimum).epsilon(0.002));
    }
}

TEST_CASE("multi-block with one block equals single-block, bit for bit", "[ptq]") {
    const npft::quant::UniformGrid grid(4, 8);
    const std::vector<Matrix> calibration{gaussian_matrix(40, kWidth, 21, 1), gaussian_matrix(40, kWidth, 21, 2)};
    npft::ptq::ReconstructionOptions options;
    options.steps = 60;
    LinearBlocks a(3, kWidth, kPreactivationWidth, 5), b = a;
    auto packed_a = rtn(a, grid), packed_b = packed_a;
    npft::ptq::reconstruct(a, packed_a, calibration, npft::ptq::SingleBlock{}, options);
    npft::ptq::reconstruct(b, packed_b, calibration, npft::ptq::MultiBlock{1}, options);
    for (const auto& [name, q] : packed_a) {
        CHECK(q.scales() == packed_b.at(name).scales());
        CHECK(q.zeros() == packed_b.at(name).zeros());
        CHECK(q.codes().words() == packed_b.at(name).codes().words());
    }
    for (std::size_t j = 0; j < a.weights.size(); ++j) CHECK(a.weights[j] == b.weights[j]);
}

TEST_CASE("the working set of a step is one streamed calibration batch", "[ptq]") {
    const npft::quant::UniformGrid grid(3, 8);
    std::vector<Matrix> calibration;
    for (std::uint64_t k = 0; k < 12; ++k) calibration.push_back(gaussian_matrix(24, kWidth, 31, k));
    npft::ptq::ReconstructionOptions options;
    options.steps = 30;
    for (const bool fp_inputs : {true, false}) {
        options.fp_inputs = fp_inputs;
        LinearBlocks model(3, kWidth, kPreactivationWidth, 6);
        auto packed = rtn(model, grid);
        const auto report = npft::ptq::reconstruct(model, packed, calibration, npft::ptq::Downstream{1}, options);
        CHECK(model.widest_batch == 24);  // never the 288 rows of the whole calibration set
        CHECK(report.windows.size() == 3);
        for (const auto& w : report.windows) CHECK(w.loss_after <= w.loss_before);
    }
}

TEST_CASE("reconstruction rejects bad input with clear errors", "[ptq]") {
    const npft::quant::UniformGrid grid(3, 8);
    LinearBlocks model(2, kWidth, kPreactivationWidth, 4);
    auto packed = rtn(model, grid);
    const std::vector<Matrix> none;
    CHECK_THROWS_WITH(npft::ptq::reconstruct(model, packed, none, npft::ptq::SingleBlock{}),
                      Catch::Contains("at least one calibration batch"));
    std::vector<Matrix> bad{gaussian_matrix(8, kWidth, 1, 1)};
    bad[0](3, 2) = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_WITH(npft::ptq::reconstruct(model, packed, bad, npft::ptq::SingleBlock{}), Catch::Contains("non-finite"));
    const std::vector<Matrix> good{gaussian_matrix(8, kWidth, 1, 1)};
    auto unknown = packed;
    unknown.emplace("block7", packed.at("block0"));
    CHECK_THROWS_WITH(npft::ptq::reconstruct(model, unknown, good, npft::ptq::SingleBlock{}),
                      Catch::Contains("'block7' names no block parameter"));
    CHECK_THROWS_WITH(npft::ptq::reconstruct(model, packed, good, npft::ptq::MultiBlock{0}), Catch::Contains("at least 1 block"));
}

}  // namespace ptq_test
