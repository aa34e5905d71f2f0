#include <catch2/catch.hpp>
#include <npft/npft.hpp>

#include <cmath>
#include <limits>
#include <vector>

using Idx = npft::Index;
using npft::Matrix;
namespace h = npft::hessian;
using npft::train::Parameter;

namespace {
// L_b = 0.5 |u - t_b|^2 + 0.5 |v - 2 t_b|^2 (u, v: 1 x 2): gradients u - t_b and v - 2 t_b, so the Fisher is known by hand.
struct Targets {
    Matrix u = Matrix::Zero(1, 2), v = Matrix::Zero(1, 2), gu = Matrix::Zero(1, 2), gv = Matrix::Zero(1, 2);
    bool poison_gradient = false;  // a broken backward: finite loss, NaN gradient
    std::vector<Parameter> parameters() {
        return {{"u", npft::as_matrix_view(u), npft::as_matrix_view(gu)}, {"v", npft::as_matrix_view(v), npft::as_matrix_view(gv)}};
    }
    double loss_and_gradient(const Eigen::RowVector2f& t) {
        gu = u - t;
        gv = v - 2.0f * t;
        const double loss = 0.5 * (gu.squaredNorm() + gv.squaredNorm());
        if (poison_gradient) gv(0, 1) = std::numeric_limits<float>::quiet_NaN();
        return loss;
    }
};
}  // namespace

TEST_CASE("diagonal Fisher is the mean squared per-batch gradient", "[hessian]") {
    Targets model;
    model.u << 1.0f, 0.0f;
    model.v << 0.0f, 3.0f;
    const std::vector<Eigen::RowVector2f> batches{{0.0f, 1.0f}, {2.0f, -1.0f}, {4.0f, 3.0f}};
    const auto fisher = h::DiagonalFisher::compute(model, batches);
    REQUIRE(fisher.size() == 2);
    // u - t: (1, -1), (-1, 1), (-3, -3) -> mean squares (11/3, 11/3)
    CHECK(fisher.at("u")(0, 0) == Approx(11.0 / 3.0));
    CHECK(fisher.at("u")(0, 1) == Approx(11.0 / 3.0));
    // v - 2t: (0, 1), (-4, 5), (-8, -3) -> (80/3, 35/3)
    CHECK(fisher.at("v")(0, 0) == Approx(80.0 / 3.0));
    CHECK(fisher.at("v")(0, 1) == Approx(35.0 / 3.0));
    // Per-sample: not the square of the mean gradient ((-1, -1) -> 1), which would call u insensitive.
    CHECK(fisher.at("u")(0, 0) > 3.0f);

    h::DiagonalFisher only_v({"v"});
    for (const auto& b : batches) only_v.accumulate(model, b);
    CHECK(only_v.batches() == 3);
    const auto fv = only_v.result();
    CHECK(fv.size() == 1);
    CHECK(fv.at("v")(0, 1) == Approx(35.0 / 3.0));
}

TEST_CASE("diagonal Fisher reports misuse", "[hessian]") {
    Targets model;
    CHECK_THROWS_WITH(h::DiagonalFisher().result(), Catch::Contains("no batch was accumulated"));
    h::DiagonalFisher unknown({"w"});
    CHECK_THROWS_WITH(unknown.accumulate(model, Eigen::RowVector2f(0.0f, 0.0f)), Catch::Contains("no parameter named \"w\""));
    h::DiagonalFisher fisher;
    const float inf = std::numeric_limits<float>::infinity();
    CHECK_THROWS_WITH(fisher.accumulate(model, Eigen::RowVector2f(0.0f, inf)), Catch::Contains("loss of batch 0 is not finite"));
    model.poison_gradient = true;
    h::DiagonalFisher only_u({"u"});
    CHECK_NOTHROW(only_u.accumulate(model, Eigen::RowVector2f(0.0f, 0.0f)));  // v is not tracked
    h::DiagonalFisher all;
    model.poison_gradient = false;
    all.accumulate(model, Eigen::RowVector2f(0.0f, 0.0f));
    model.poison_gradient = true;
    CHECK_THROWS_WITH(all.accumulate(model, Eigen::RowVector2f(0.0f, 0.0f)),
                      Catch::Contains("non-finite gradient of v at (0, 1) in batch 1"));
}
