#include <catch2/catch.hpp>
#include <npft/npft.hpp>

#include <cmath>
#include <vector>

using Idx = npft::Index;
using npft::Matrix;
namespace h = npft::hessian;

namespace {
// A symmetric n x n matrix with a positive diagonal and off-diagonal entries in [-1, 1).
Matrix symmetric_matrix(Idx n, std::uint64_t seed) {
    Matrix a(n, n);
    for (Idx i = 0; i < a.size(); ++i) a.data()[i] = npft::uniform(npft::RandomKey{seed, 77}, static_cast<std::uint64_t>(i), -1.0f, 1.0f);
    Matrix sym = 0.5f * (a + a.transpose());
    for (Idx i = 0; i < n; ++i) sym(i, i) = 1.0f + static_cast<float>(i % 4);
    return sym;
}

double masked_trace(const Matrix& hm, const std::vector<float>& mask) {
    double t = 0;
    for (Idx i = 0; i < hm.rows(); ++i) t += (mask.empty() ? 1.0 : mask[static_cast<std::size_t>(i)]) * hm(i, i);
    return t;
}

// Variance of one probe's v^T H_M v, H_M = the mask's principal submatrix: Rademacher 2 sum_{i != j} H_ij^2,
// Gaussian 2 sum_{i,j} H_ij^2.
double probe_variance(const Matrix& hm, const std::vector<float>& mask, bool gaussian) {
    double v = 0;
    for (Idx i = 0; i < hm.rows(); ++i)
        for (Idx j = 0; j < hm.cols(); ++j) {
            const double m = mask.empty() ? 1.0 : mask[static_cast<std::size_t>(i)] * mask[static_cast<std::size_t>(j)];
            if (i != j || gaussian) v += 2.0 * m * static_cast<double>(hm(i, j)) * hm(i, j);
        }
    return v;
}

struct OverSeeds {
    double mean = 0, spread = 0, mean_se = 0, mean_se_squared = 0, z_variance = 0;
};
template <class Probe>
OverSeeds estimate_over_seeds(h::ExplicitHvp& hvp, const std::vector<float>& mask, Idx probes, int seeds, double truth) {
    OverSeeds o;
    double s2 = 0, z2 = 0;
    for (int s = 0; s < seeds; ++s) {
        const h::Hutchinson<Probe> estimator({probes, probes, 0.0, static_cast<std::uint64_t>(s)});
        const h::TraceEstimate e = estimator.estimate(hvp, mask);
        REQUIRE(e.probes == probes);
        o.mean += e.value;
        s2 += e.value * e.value;
        o.mean_se += e.standard_error;
        o.mean_se_squared += e.standard_error * e.standard_error;
        z2 += (e.value - truth) * (e.value - truth) / (e.standard_error * e.standard_error);
    }
    o.mean /= seeds;
    o.spread = std::sqrt(s2 / seeds - o.mean * o.mean);
    o.mean_se /= seeds;
    o.mean_se_squared /= seeds;
    o.z_variance = z2 / seeds;
    return o;
}
}  // namespace

TEST_CASE("Hutchinson is unbiased on explicit matrices, with and without a mask", "[hessian]") {
    const Idx n = 24;
    const Matrix hm = symmetric_matrix(n, 1);
    h::ExplicitHvp hvp(hm);
    std::vector<float> mask(static_cast<std::size_t>(n), 0.0f);
    for (Idx i = 0; i < n; i += 3) mask[static_cast<std::size_t>(i)] = 1.0f;
    for (const auto& m : {std::vector<float>{}, mask}) {
        const double truth = masked_trace(hm, m);
        const int seeds = 300;
        const Idx probes = 20;
        const OverSeeds r = estimate_over_seeds<h::Rademacher>(hvp, m, probes, seeds, truth);
        // The mean over seeds is within 4 of its standard errors of the truth.
        CHECK(std::abs(r.mean - truth) < 4.0 * r.spread / std::sqrt(seeds));
        // Each estimate's standard error matches its actual spread and the theory: sqrt(Var[v^T H v] / probes).
        CHECK(r.mean_se_squared == Approx(probe_variance(hm, m, false) / probes).epsilon(0.15));
        CHECK(r.spread * r.spread == Approx(probe_variance(hm, m, false) / probes).epsilon(0.2));
        // (estimate - truth) / SE is a t statistic with probes - 1 degrees of freedom: variance (k-1)/(k-3) ~ 1.12.
        CHECK(r.z_variance == Approx(19.0 / 17.0).epsilon(0.25));

        const OverSeeds g = estimate_over_seeds<h::Gaussian>(hvp, m, probes, seeds, truth);
        CHECK(std::abs(g.mean - truth) < 4.0 * g.spread / std::sqrt(seeds));
        CHECK(g.mean_se_squared == Approx(probe_variance(hm, m, true) / probes).epsilon(0.15));
    }
}

TEST_CASE("Hutchinson's standard error shrinks like 1/sqrt(probes)", "[hessian]") {
    const Matrix hm = symmetric_matrix(16, 2);
    h::ExplicitHvp hvp(hm);
    const double truth = masked_trace(hm, {});
    const OverSeeds few = estimate_over_seeds<h::Rademacher>(hvp, {}, 16, 200, truth);
    const OverSeeds many = estimate_over_seeds<h::Rademacher>(hvp, {}, 64, 200, truth);
    CHECK(few.mean_se / many.mean_se == Approx(2.0).epsilon(0.1));
    CHECK(few.spread / many.spread == Approx(2.0).epsilon(0.2));
}

TEST_CASE("Hutchinson is exact for a diagonal Hessian with Rademacher probes", "[hessian]") {
    Matrix d = Matrix::Zero(5, 5);
    d.diagonal() << 1, -2, 3, 0.5f, 7;
    h::ExplicitHvp hvp(d);
    const h::TraceEstimate e = h::Hutchinson<h::Rademacher>({10, 100, 0.01, 3}).estimate(hvp);
    CHECK(e.value == Approx(9.5).margin(1e-12));
    CHECK(e.standard_error == Approx(0.0).margin(1e-12));
    CHECK(e.probes == 10);  // stops at min_probes, never before
    const std::vector<float> mask{0, 1, 1, 0, 0};
    CHECK(h::Hutchinson<h::Rademacher>().estimate(hvp, mask).value == Approx(1.0).margin(1e-12));
    const std::vector<float> none(5, 0.0f);
    const h::TraceEstimate zero = h::Hutchinson<h::Gaussian>().estimate(hvp, none);
    CHECK(zero.value == 0.0);
    CHECK(zero.probes == 10);
}

TEST_CASE("Hutchinson stops on the relative standard error and is deterministic", "[hessian]") {
    const Matrix hm = symmetric_matrix(32, 3);
    h::ExplicitHvp hvp(hm);
    const h::Hutchinson<h::Rademacher> estimator({10, 5000, 0.02, 11});
    const h::TraceEstimate e = estimator.estimate(hvp);
    CHECK(e.probes >= 10);
    CHECK(e.probes < 5000);
    CHECK(e.standard_error <= 0.02 * std::abs(e.value));
    // One probe fewer would not have met the target (the rule stops at the first probe that does).
    const h::TraceEstimate before = h::Hutchinson<h::Rademacher>({e.probes - 1, e.probes - 1, 0.0, 11}).estimate(hvp);
    REQUIRE(e.probes > 10);  // this matrix needs more than min_probes at 2%
    CHECK(before.standard_error > 0.02 * std::abs(before.value));
    CHECK(std::abs(e.value - masked_trace(hm, {})) < 4.0 * e.standard_error);
    const h::TraceEstimate again = estimator.estimate(hvp);
    CHECK(again.value == e.value);
    CHECK(again.standard_error == e.standard_error);
    CHECK(h::Hutchinson<h::Rademacher>({10, 5000, 0.02, 12}).estimate(hvp).value != e.value);
}

TEST_CASE("Hutchinson rejects bad options and masks", "[hessian]") {
    h::ExplicitHvp hvp(Matrix::Identity(4, 4));
    CHECK_THROWS_WITH(h::Hutchinson<>({1, 10, 0.1, 0}), Catch::Contains("min_probes must be at least 2"));
    CHECK_THROWS_WITH(h::Hutchinson<>({10, 5, 0.1, 0}), Catch::Contains("max_probes (5) must be at least min_probes (10)"));
    CHECK_THROWS_WITH(h::Hutchinson<>({10, 20, -0.1, 0}), Catch::Contains("target_relative_standard_error"));
    const std::vector<float> short_mask(3, 1.0f), soft_mask{1, 0.5f, 0, 1};
    CHECK_THROWS_WITH(h::Hutchinson<>().estimate(hvp, short_mask), Catch::Contains("mask holds 3 entries, expected the Hessian dimension 4"));
    CHECK_THROWS_WITH(h::Hutchinson<>().estimate(hvp, soft_mask), Catch::Contains("entry 1 is 0.5"));
    Matrix asym = Matrix::Identity(3, 3);
    asym(0, 1) = 1.0f;
    CHECK_THROWS_WITH(h::ExplicitHvp(asym), Catch::Contains("must be symmetric"));
    CHECK_THROWS_WITH(h::ExplicitHvp(Matrix::Zero(2, 3)), Catch::Contains("must be square, got 2 x 3"));
}
