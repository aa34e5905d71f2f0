// Keyed draws: distributions (moments and bounds over many draws), reproducibility, independent streams.
#include <catch2/catch.hpp>

#include <cmath>
#include <set>
#include <vector>

#include <npft/npft.hpp>

namespace npft_test {
using namespace npft;

namespace {
constexpr std::uint64_t draws = 100000;
const double root_draws = std::sqrt(static_cast<double>(draws));

struct Moments {
    double mean = 0, variance = 0, fourth = 0;  // fourth: E[(x - mean)^4]
};
template <class Draw>
Moments moments(Draw draw) {
    std::vector<double> x(draws);
    double sum = 0;
    for (std::uint64_t i = 0; i < draws; ++i) sum += x[i] = draw(i);
    Moments m;
    m.mean = sum / draws;
    for (const double v : x) {
        const double d = v - m.mean;
        m.variance += d * d / draws;
        m.fourth += d * d * d * d / draws;
    }
    return m;
}
}  // namespace

TEST_CASE("uniform01: bounds and moments", "[core][random]") {
    const RandomKey key{42, 1};
    float lo = 1.0f, hi = 0.0f;
    for (std::uint64_t i = 0; i < draws; ++i) {
        const float u = uniform01(key, i);
        lo = std::min(lo, u);
        hi = std::max(hi, u);
    }
    CHECK(lo >= 0.0f);
    CHECK(hi < 1.0f);
    CHECK(lo < 1e-4f);
    CHECK(hi > 1.0f - 1e-4f);
    const Moments m = moments([&](std::uint64_t i) { return uniform01(key, i); });
    // Five standard errors of the mean, sqrt(1/12) / sqrt(n).
    CHECK(std::abs(m.mean - 0.5) < 5 * std::sqrt(1.0 / 12.0) / root_draws);
    CHECK(std::abs(m.variance - 1.0 / 12.0) < 2e-3);
    // The extremes of the 24-bit grid.
    CHECK(bits_to_unit_float(0u) == 0.0f);
    CHECK(bits_to_unit_float(0xffffffffu) == 1.0f - 5.9604644775390625e-8f);
}

TEST_CASE("uniform(low, high) stays in [low, high) with the right mean", "[core][random]") {
    const RandomKey key{7, 3};
    double sum = 0;
    bool in_range = true;
    for (std::uint64_t i = 0; i < draws; ++i) {
        const float u = uniform(key, i, -3.0f, 5.0f);
        in_range &= u >= -3.0f && u < 5.0f;
        sum += u;
    }
    CHECK(in_range);
    CHECK(std::abs(sum / draws - 1.0) < 5 * 8.0 * std::sqrt(1.0 / 12.0) / root_draws);
}

TEST_CASE("rademacher: only +-1, balanced", "[core][random]") {
    const RandomKey key{9, 2};
    double sum = 0;
    bool signs = true;
    for (std::uint64_t i = 0; i < draws; ++i) {
        const float r = rademacher(key, i);
        signs &= r == 1.0f || r == -1.0f;
        sum += r;
    }
    CHECK(signs);
    // The standard deviation of the sum is sqrt(n).
    CHECK(std::abs(sum) < 5 * root_draws);
    // No short-period pattern: pairs (r_i, r_{i+1}) are equally frequent.
    int same = 0;
    for (std::uint64_t i = 0; i + 1 < 20000; ++i) same += rademacher(key, i) == rademacher(key, i + 1);
    CHECK(std::abs(same - 9999.5) < 5 * 71.0);
}

TEST_CASE("gaussian: moments and tails of a standard normal", "[core][random]") {
    const RandomKey key{1234, 5};
    const Moments m = moments([&](std::uint64_t i) { return gaussian(key, i); });
    // Five standard errors each: 1 / sqrt(n) for the mean, sqrt(2 / n) for the variance, sqrt(24 / n) for the kurtosis.
    CHECK(std::abs(m.mean) < 5 / root_draws);
    CHECK(std::abs(m.variance - 1.0) < 5 * std::sqrt(2.0) / root_draws);
    CHECK(std::abs(m.fourth / (m.variance * m.variance) - 3.0) < 5 * std::sqrt(24.0) / root_draws);
    int beyond = 0;
    bool finite = true;
    for (std::uint64_t i = 0; i < draws; ++i) {
        const float g = gaussian(key, i);
        finite &= std::isfinite(g);
        beyond += std::abs(g) > 1.959964f;
    }
    CHECK(finite);
    // P(|g| > 1.96) = 5%, a binomial count.
    CHECK(std::abs(beyond - 0.05 * draws) < 5 * std::sqrt(0.05 * 0.95 * draws));
}

TEST_CASE("draws are pure functions of (seed, stream, index)", "[core][random]") {
    const RandomKey key{99, make_stream(3, 1)};
    std::vector<float> forward(1000), backward(1000);
    for (std::uint64_t i = 0; i < 1000; ++i) forward[i] = gaussian(key, i);
    for (std::uint64_t i = 1000; i-- > 0;) backward[i] = gaussian(key, i);
    CHECK(forward == backward);
    CHECK(uniform01(RandomKey{99, make_stream(3, 1)}, 500) == uniform01(key, 500));
}

TEST_CASE("different seeds and streams give different draws", "[core][random]") {
    auto sequence = [](RandomKey key) {
        std::vector<std::uint32_t> out(64);
        for (std::uint64_t i = 0; i < out.size(); ++i) out[i] = random_words(key, i)[0];
        return out;
    };
    const auto base = sequence({1, 0});
    CHECK(sequence({2, 0}) != base);
    CHECK(sequence({1, 1}) != base);
    // Nearby stream tuples land on distinct streams.
    std::set<std::uint64_t> streams;
    for (std::uint64_t a = 0; a < 8; ++a)
        for (std::uint64_t b = 0; b < 8; ++b)
            for (std::uint64_t c = 0; c < 4; ++c) streams.insert(make_stream(a, b, c));
    CHECK(streams.size() == 8 * 8 * 4);
    // Two streams are uncorrelated.
    double product = 0;
    for (std::uint64_t i = 0; i < draws; ++i) product += gaussian({5, 1}, i) * gaussian({5, 2}, i);
    CHECK(std::abs(product / draws) < 5 / root_draws);
}

}  // namespace npft_test
