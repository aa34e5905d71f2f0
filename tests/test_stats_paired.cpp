// Student's t and the paired comparison used for every multi-seed claim: tabulated and closed-form values, a
// hand-computed paired example, the interval's coverage on random cases, and the errors for bad input.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include <npft/core/random.hpp>
#include <npft/stats/mean_interval.hpp>
#include <npft/stats/paired_difference.hpp>
#include <npft/stats/student_t.hpp>

using Catch::Matchers::Contains;
using npft::stats::Better;

TEST_CASE("student_t_cdf matches the closed forms for 1 and 2 degrees of freedom", "[stats]") {
    const double pi = 3.14159265358979323846;
    for (const double t : {-7.5, -2.0, -0.3, 0.0, 0.4, 1.0, 3.0, 40.0}) {
        // df 1 is the Cauchy distribution; df 2 has F(t) = 1/2 + t / (2 sqrt(2 + t^2)).
        CHECK(npft::stats::student_t_cdf(t, 1.0) == Approx(0.5 + std::atan(t) / pi).margin(1e-13));
        CHECK(npft::stats::student_t_cdf(t, 2.0) == Approx(0.5 + t / (2.0 * std::sqrt(2.0 + t * t))).margin(1e-13));
    }
    CHECK(npft::stats::student_t_cdf(std::numeric_limits<double>::infinity(), 3.0) == 1.0);
    CHECK(npft::stats::student_t_cdf(-std::numeric_limits<double>::infinity(), 3.0) == 0.0);
}

TEST_CASE("student_t_quantile reproduces the tabulated 97.5% points", "[stats]") {
    // Standard tables (e.g. NIST/SEMATECH e-Handbook, table of t critical values), to the digits they print.
    const std::vector<std::pair<double, double>> table = {
        {1, 12.706204736}, {2, 4.302652730}, {4, 2.776445105}, {7, 2.364624252}, {31, 2.039513446}, {1e7, 1.959964}};
    for (const auto& [df, expected] : table) {
        CAPTURE(df);
        CHECK(npft::stats::student_t_quantile(0.975, df) == Approx(expected).epsilon(2e-7));
        CHECK(npft::stats::student_t_quantile(0.025, df) == Approx(-expected).epsilon(2e-7));
    }
    CHECK(npft::stats::student_t_quantile(0.5, 3.0) == 0.0);
    // The quantile inverts the CDF on random arguments.
    for (std::uint64_t i = 0; i < 50; ++i) {
        const double p = 0.001 + 0.998 * npft::uniform01({7, 1}, i);
        const double df = 1.0 + 60.0 * npft::uniform01({7, 2}, i);
        CHECK(npft::stats::student_t_cdf(npft::stats::student_t_quantile(p, df), df) == Approx(p).margin(1e-11));
    }
}

TEST_CASE("paired_difference on a hand-computed example", "[stats]") {
    const std::vector<double> treatment = {1.0, 2.0, 3.0, 4.0, 5.0};
    const std::vector<double> control = {1.5, 2.1, 3.4, 3.9, 5.6};
    // Differences -0.5 -0.1 -0.4 +0.1 -0.6: mean -0.3, squared deviations sum to 0.34, variance 0.085,
    // standard error sqrt(0.085 / 5) = 0.130384..., 97.5% t at 4 df 2.776445; 4 wins, 1 loss, sign test 12/32.
    const auto d = npft::stats::paired_difference(treatment, control);
    CHECK(d.pairs == 5);
    CHECK(d.mean == Approx(-0.3).margin(1e-12));
    CHECK(d.standard_error == Approx(std::sqrt(0.017)).epsilon(1e-12));
    CHECK(d.ci_low == Approx(-0.3 - 2.776445105 * std::sqrt(0.017)).epsilon(1e-8));
    CHECK(d.ci_high == Approx(-0.3 + 2.776445105 * std::sqrt(0.017)).epsilon(1e-8));
    CHECK(d.wins == 4);
    CHECK(d.ties == 0);
    CHECK(d.sign_test_p == Approx(0.375).epsilon(1e-12));
    CHECK_FALSE(d.significant());  // [-0.662, +0.062] contains 0: 4 wins of 5 is not evidence
}

TEST_CASE("paired_difference: direction, ties and the sign test", "[stats]") {
    const std::vector<double> a = {2.0, 2.0, 3.0, 5.0}, b = {1.0, 2.0, 1.0, 1.0};
    const auto higher = npft::stats::paired_difference(a, b, Better::higher);
    CHECK(higher.wins == 3);
    CHECK(higher.ties == 1);
    CHECK(higher.sign_test_p == Approx(0.25).epsilon(1e-12));  // 3 : 0 -> 2 / 8
    const auto lower = npft::stats::paired_difference(a, b, Better::lower);
    CHECK(lower.wins == 0);
    CHECK(npft::stats::sign_test_p_value(8, 0) == Approx(2.0 / 256.0).epsilon(1e-12));
    CHECK(npft::stats::sign_test_p_value(3, 3) == 1.0);
    CHECK(npft::stats::sign_test_p_value(0, 0) == 1.0);
}

TEST_CASE("the 95% interval covers the true mean about 95% of the time with 5 pairs", "[stats]") {
    // 4000 random experiments of 5 pairs whose differences are N(0.7, 1): the interval must contain 0.7 in 95% of them
    // (binomial standard deviation 0.34%; the band below is about 3 of them). A normal 1.96 would cover about 88%.
    const int experiments = 4000;
    int covered = 0;
    for (int e = 0; e < experiments; ++e) {
        std::vector<double> treatment(5), control(5);
        for (std::uint64_t i = 0; i < 5; ++i) {
            control[i] = 10.0 * npft::gaussian({11, static_cast<std::uint64_t>(e)}, 2 * i);
            treatment[i] = control[i] + 0.7 + npft::gaussian({11, static_cast<std::uint64_t>(e)}, 2 * i + 1);
        }
        const auto d = npft::stats::paired_difference(treatment, control, Better::higher);
        covered += d.ci_low <= 0.7 && 0.7 <= d.ci_high;
    }
    const double coverage = static_cast<double>(covered) / experiments;
    CAPTURE(coverage);
    CHECK(coverage > 0.94);
    CHECK(coverage < 0.96);
}

TEST_CASE("paired_difference rejects what cannot be compared", "[stats]") {
    const std::vector<double> three = {1, 2, 3}, two = {1, 2}, one = {1};
    CHECK_THROWS_WITH(npft::stats::paired_difference(three, two), Contains("3 treatment values but 2 control values"));
    CHECK_THROWS_WITH(npft::stats::paired_difference(one, one), Contains("at least 2 pairs"));
    const std::vector<double> with_nan = {1, std::nan("")};
    CHECK_THROWS_WITH(npft::stats::paired_difference(with_nan, two), Contains("pair 1 is not finite"));
    CHECK_THROWS_WITH(npft::stats::paired_difference(two, two, Better::lower, 1.0), Contains("confidence"));
    CHECK_THROWS_WITH(npft::stats::student_t_quantile(0.0, 3.0), Contains("strictly between 0 and 1"));
    CHECK_THROWS_WITH(npft::stats::student_t_cdf(1.0, 0.0), Contains("degrees of freedom must be positive"));
}

TEST_CASE("mean_interval on a hand-computed example, and its errors", "[stats]") {
    // 2, 4, 6: mean 4, sample standard deviation 2, standard error 2 / sqrt(3), 97.5% t at 2 df 4.302652730.
    const std::vector<double> values = {2.0, 4.0, 6.0};
    const auto m = npft::stats::mean_interval(values);
    CHECK(m.count == 3);
    CHECK(m.mean == 4.0);
    CHECK(m.standard_error == Approx(2.0 / std::sqrt(3.0)).epsilon(1e-12));
    CHECK(m.ci_low == Approx(4.0 - 4.302652730 * 2.0 / std::sqrt(3.0)).epsilon(1e-8));
    CHECK(m.ci_high == Approx(4.0 + 4.302652730 * 2.0 / std::sqrt(3.0)).epsilon(1e-8));
    const auto narrow = npft::stats::mean_interval(values, 0.5);  // 75% point of t(2) = 0.816497 (= 1/sqrt(1.5))
    CHECK(narrow.ci_high - narrow.mean == Approx(0.816496581 * 2.0 / std::sqrt(3.0)).epsilon(1e-7));
    const std::vector<double> one = {1.0}, with_inf = {1.0, std::numeric_limits<double>::infinity()};
    CHECK_THROWS_WITH(npft::stats::mean_interval(one), Contains("at least 2 values"));
    CHECK_THROWS_WITH(npft::stats::mean_interval(with_inf), Contains("value 1 is not finite"));
}
