#include <catch2/catch.hpp>
#include <npft/npft.hpp>

#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

using Idx = npft::Index;
using npft::Matrix;
namespace o = npft::outliers;
namespace n = npft::noise;

namespace {
npft::MatrixView<const float> view(const Matrix& m) { return npft::as_matrix_view(m); }

o::OutlierMask every_position(Idx rows, Idx cols) {
    std::vector<Idx> p(static_cast<std::size_t>(rows * cols));
    for (Idx i = 0; i < rows * cols; ++i) p[static_cast<std::size_t>(i)] = i;
    return o::OutlierMask(rows, cols, std::move(p));
}

// Steps that differ per weight, so that each value must be scaled by its own delta.
Matrix varied_steps(Idx rows, Idx cols) {
    Matrix s(rows, cols);
    for (Idx r = 0; r < rows; ++r)
        for (Idx c = 0; c < cols; ++c) s(r, c) = 0.01f * static_cast<float>(1 + (r * 7 + c) % 5);
    return s;
}

std::vector<float> draw(const auto& distribution, const n::NoiseRequest& r) {
    std::vector<float> out(static_cast<std::size_t>(r.mask->count()));
    distribution.draw(r, std::span<float>(out));
    return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Moments of x_i / (s delta_i) pooled over many draws.
struct Moments {
    double mean = 0, variance = 0, kurtosis = 0, max_abs = 0;
};
template <class D>
Moments standardized_moments(const D& distribution, float scale, int draws) {
    const Matrix steps = varied_steps(32, 32);
    const o::OutlierMask mask = every_position(32, 32);
    double s1 = 0, s2 = 0, s4 = 0, max_abs = 0, count = 0;
    for (int d = 0; d < draws; ++d) {
        const auto out = draw(distribution, {&mask, {}, view(steps), scale, {123, npft::make_stream(static_cast<std::uint64_t>(d))}});
        for (std::size_t i = 0; i < out.size(); ++i) {
            const double x = out[i] / (static_cast<double>(scale) * steps.data()[i]);
            s1 += x;
            s2 += x * x;
            s4 += x * x * x * x;
            max_abs = std::max(max_abs, std::abs(x));
            ++count;
        }
    }
    Moments m;
    m.mean = s1 / count;
    m.variance = s2 / count - m.mean * m.mean;
    m.kurtosis = (s4 / count) / ((s2 / count) * (s2 / count));
    m.max_abs = max_abs;
    return m;
}
}  // namespace

TEST_CASE("QuantStepUniform: U(-s delta/2, s delta/2) per weight", "[noise]") {
    // 1024 weights x 200 draws: the standardized mean has SE sqrt(1/12 / 204800) = 6.4e-4.
    const Moments m = standardized_moments(n::QuantStepUniform{}, 0.5f, 200);
    CHECK(std::abs(m.mean) < 5 * 6.4e-4);
    CHECK(m.variance == Approx(1.0 / 12.0).margin(1e-3));  // SE of the variance ~1.6e-4
    CHECK(m.kurtosis == Approx(1.8).margin(0.02));          // uniform: 9/5
    CHECK(m.max_abs <= 0.5);
    CHECK(m.max_abs > 0.499);
}

TEST_CASE("GaussianMatched: N(0, s^2 delta^2 / 12) per weight", "[noise]") {
    const Moments m = standardized_moments(n::GaussianMatched{}, 2.0f, 200);
    CHECK(std::abs(m.mean) < 5 * 6.4e-4);
    CHECK(m.variance == Approx(1.0 / 12.0).margin(1.5e-3));  // SE of the variance ~2.6e-4
    CHECK(m.kurtosis == Approx(3.0).margin(0.1));            // Gaussian tails, not uniform's 1.8
    CHECK(m.max_abs > 0.5 * 2.0);                            // unbounded: beyond sqrt(3) sigma = delta/2 often
}

TEST_CASE("the scale multiplies the noise exactly", "[noise]") {
    const Matrix steps = varied_steps(8, 8);
    const o::OutlierMask mask = every_position(8, 8);
    for (const bool gaussian : {false, true}) {
        auto a = gaussian ? draw(n::GaussianMatched{}, {&mask, {}, view(steps), 1.0f, {5, 6}})
                          : draw(n::QuantStepUniform{}, {&mask, {}, view(steps), 1.0f, {5, 6}});
        const auto b = gaussian ? draw(n::GaussianMatched{}, {&mask, {}, view(steps), 0.25f, {5, 6}})
                                : draw(n::QuantStepUniform{}, {&mask, {}, view(steps), 0.25f, {5, 6}});
        for (float& x : a) x *= 0.25f;  // power of two: exact
        CHECK(same_bits(a, b));
        const auto zero = draw(n::QuantStepUniform{}, {&mask, {}, view(steps), 0.0f, {5, 6}});
        CHECK(std::all_of(zero.begin(), zero.end(), [](float x) { return x == 0.0f; }));
    }
}

TEST_CASE("RowRangeUniform: per-row range, zero mean per row, zero for a single outlier", "[noise]") {
    Matrix w(4, 6);
    w << 0.1f, -2.0f, 0.3f, 1.0f, 0.0f, 0.5f,  //
        3.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f,    //
        0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f,    //
        -1.0f, -1.5f, 0.0f, 0.0f, 0.0f, -0.5f;
    // Row 0: 4 outliers with range [-2, 1]; row 1: one outlier; row 2: none; row 3: 3 outliers with range [-1.5, -0.5].
    const o::OutlierMask mask(4, 6, {0, 1, 3, 5, 6, 18, 19, 23});
    const double width0 = 3.0, width3 = 1.0;
    double spread0 = 0, spread3 = 0, spread0_sq = 0, spread3_sq = 0;
    const int draws = 4000;
    for (int d = 0; d < draws; ++d) {
        const auto out = draw(n::RowRangeUniform{}, {&mask, view(w), {}, 1.0f, {9, static_cast<std::uint64_t>(d)}});
        const double sum0 = out[0] + out[1] + out[2] + out[3];
        const double sum3 = out[5] + out[6] + out[7];
        CHECK(std::abs(sum0) < 1e-6);
        CHECK(std::abs(sum3) < 1e-6);
        CHECK(out[4] == 0.0f);
        for (int i = 0; i < 4; ++i) CHECK(std::abs(out[static_cast<std::size_t>(i)]) <= width0);
        for (int i = 5; i < 8; ++i) CHECK(std::abs(out[static_cast<std::size_t>(i)]) <= width3);
        double row0 = 0, row3 = 0;
        for (int i = 0; i < 4; ++i) row0 += out[static_cast<std::size_t>(i)] * out[static_cast<std::size_t>(i)];
        for (int i = 5; i < 8; ++i) row3 += out[static_cast<std::size_t>(i)] * out[static_cast<std::size_t>(i)];
        spread0 += row0;
        spread3 += row3;
        spread0_sq += row0 * row0;
        spread3_sq += row3 * row3;
    }
    // E[sum (u - mean u)^2] = (n - 1) width^2 / 12 for n uniforms of that width; within 5 standard errors.
    const auto standard_error = [&](double sum, double sum_sq) {
        const double mean = sum / draws;
        return std::sqrt((sum_sq / draws - mean * mean) / draws);
    };
    CHECK(spread0 / draws == Approx(3.0 * width0 * width0 / 12.0).margin(5 * standard_error(spread0, spread0_sq)));
    CHECK(spread3 / draws == Approx(2.0 * width3 * width3 / 12.0).margin(5 * standard_error(spread3, spread3_sq)));
    CHECK(5 * standard_error(spread3, spread3_sq) < 0.1 * 2.0 / 12.0);  // the check above is tight enough to mean something

    // The scale multiplies it; a row whose outliers are equal gets zero.
    const auto base = draw(n::RowRangeUniform{}, {&mask, view(w), {}, 1.0f, {9, 1}});
    const auto half = draw(n::RowRangeUniform{}, {&mask, view(w), {}, 0.5f, {9, 1}});
    for (std::size_t i = 0; i < base.size(); ++i) CHECK(half[i] == Approx(0.5f * base[i]).margin(1e-7));
    const Matrix flat_row = Matrix::Constant(4, 6, 0.7f);
    const auto flat = draw(n::RowRangeUniform{}, {&mask, view(flat_row), {}, 1.0f, {9, 1}});
    CHECK(std::all_of(flat.begin(), flat.end(), [](float x) { return x == 0.0f; }));
}

TEST_CASE("noise is a function of (key, position): same key same bits, any subset, any order", "[noise]") {
    const Matrix steps = varied_steps(16, 16);
    const o::OutlierMask all = every_position(16, 16);
    std::vector<Idx> odd;
    for (Idx p = 1; p < 256; p += 2) odd.push_back(p);
    const o::OutlierMask subset(16, 16, odd);
    const npft::RandomKey key{2024, npft::make_stream(3, 7)};
    for (const bool gaussian : {false, true}) {
        const auto go = [&](const o::OutlierMask& m, npft::RandomKey k) {
            return gaussian ? draw(n::GaussianMatched{}, {&m, {}, view(steps), 1.0f, k})
                            : draw(n::QuantStepUniform{}, {&m, {}, view(steps), 1.0f, k});
        };
        const auto a = go(all, key), b = go(all, key), c = go(all, {2024, npft::make_stream(4, 7)});
        CHECK(same_bits(a, b));
        CHECK_FALSE(same_bits(a, c));
        // A worker that draws only part of the mask (as one thread of several would) gets exactly those values.
        const auto part = go(subset, key);
        for (std::size_t i = 0; i < part.size(); ++i) CHECK(part[i] == a[static_cast<std::size_t>(odd[i])]);
    }
    // Two threads, each drawing the rows it owns, reproduce the single-threaded draw bit for bit.
    std::vector<Idx> top, bottom;
    for (Idx p = 0; p < 256; ++p) (p < 128 ? top : bottom).push_back(p);
    const o::OutlierMask top_mask(16, 16, top), bottom_mask(16, 16, bottom);
    for (const bool row_range : {false, true}) {
        const auto go = [&](const o::OutlierMask& m) {
            return row_range ? draw(n::RowRangeUniform{}, {&m, view(steps), {}, 1.0f, key})
                             : draw(n::GaussianMatched{}, {&m, {}, view(steps), 1.0f, key});
        };
        std::vector<float> first, second;
        std::thread t1([&] { first = go(top_mask); });
        std::thread t2([&] { second = go(bottom_mask); });
        t1.join();
        t2.join();
        first.insert(first.end(), second.begin(), second.end());
        CHECK(same_bits(first, go(all)));
    }
    const auto r1 = draw(n::RowRangeUniform{}, {&all, view(steps), {}, 1.0f, key});
    const auto r2 = draw(n::RowRangeUniform{}, {&all, view(steps), {}, 1.0f, key});
    CHECK(same_bits(r1, r2));
}

TEST_CASE("scale schedules at start, middle and end", "[noise]") {
    CHECK(n::Constant{0.7f}.at(0, 11) == 0.7f);
    CHECK(n::Constant{0.7f}.at(10, 11) == 0.7f);
    const n::LinearDecay linear{1.0f, 0.0f};
    CHECK(linear.at(0, 11) == 1.0f);
    CHECK(linear.at(5, 11) == Approx(0.5f));
    CHECK(linear.at(10, 11) == 0.0f);
    CHECK(linear.at(50, 11) == 0.0f);  // clamped past the end
    CHECK(n::LinearDecay{0.2f, 1.0f}.at(5, 11) == Approx(0.6f));  // may grow too
    const n::CosineDecay cosine{1.0f, 0.2f};
    CHECK(cosine.at(0, 5) == 1.0f);
    CHECK(cosine.at(1, 5) == Approx(0.2 + 0.8 * 0.5 * (1.0 + std::cos(3.141592653589793 / 4))));
    CHECK(cosine.at(2, 5) == Approx(0.6f));
    CHECK(cosine.at(4, 5) == Approx(0.2f));
    CHECK(linear.at(0, 1) == 1.0f);  // a one-step run sits at the start
    CHECK_THROWS_WITH(linear.at(0, 0), Catch::Contains("total_steps must be at least 1"));
    CHECK_THROWS_WITH(cosine.at(-1, 5), Catch::Contains("step must be non-negative"));
}

TEST_CASE("redraw rules", "[noise]") {
    for (Idx s = 0; s < 12; ++s) {
        CHECK(n::EveryStep{}.redraw_at(s, 4));
        CHECK(n::OncePerEpoch{}.redraw_at(s, 4) == (s % 4 == 0));
        CHECK(n::EveryKSteps{3}.redraw_at(s, 4) == (s % 3 == 0));
    }
    CHECK(n::OncePerEpoch{}.redraw_at(0, 1000));
    CHECK_THROWS_WITH(n::OncePerEpoch{}.redraw_at(0, 0), Catch::Contains("steps_per_epoch must be at least 1"));
    CHECK_THROWS_WITH(n::EveryKSteps{0}.redraw_at(0, 1), Catch::Contains("k must be at least 1"));
}

TEST_CASE("Schedule composes distribution, scale and redraw", "[noise]") {
    const n::Schedule<n::QuantStepUniform, n::LinearDecay, n::OncePerEpoch> schedule{{}, {1.0f, 0.0f}, {}};
    CHECK(schedule.scale(5, 11) == Approx(0.5f));
    CHECK(schedule.redraw_at(8, 4));
    CHECK_FALSE(schedule.redraw_at(9, 4));
    const Matrix steps = varied_steps(4, 4);
    const o::OutlierMask mask = every_position(4, 4);
    const n::NoiseRequest request{&mask, {}, view(steps), 0.5f, {1, 2}};
    CHECK(same_bits(draw(schedule, request), draw(n::QuantStepUniform{}, request)));
    const n::ReferenceSchedule reference{};
    CHECK(reference.scale(3, 10) == 1.0f);
    CHECK(reference.redraw_at(0, 64));
    CHECK_FALSE(reference.redraw_at(1, 64));
}

TEST_CASE("noise requests are checked", "[noise]") {
    const Matrix steps = varied_steps(4, 4);
    const o::OutlierMask mask = every_position(4, 4);
    std::vector<float> out(16), short_out(3);
    CHECK_THROWS_WITH(n::QuantStepUniform{}.draw({nullptr, {}, view(steps), 1.0f, {}}, out), Catch::Contains("mask is null"));
    CHECK_THROWS_WITH(n::QuantStepUniform{}.draw({&mask, {}, view(steps), 1.0f, {}}, short_out),
                      Catch::Contains("holds 3 values, expected one per outlier (16)"));
    CHECK_THROWS_WITH(n::QuantStepUniform{}.draw({&mask, {}, {}, 1.0f, {}}, out), Catch::Contains("quant_steps"));
    CHECK_THROWS_WITH(n::GaussianMatched{}.draw({&mask, {}, view(steps), -1.0f, {}}, out), Catch::Contains("non-negative"));
    const Matrix wrong = Matrix::Zero(3, 4);
    CHECK_THROWS_WITH(n::RowRangeUniform{}.draw({&mask, view(wrong), {}, 1.0f, {}}, out),
                      Catch::Contains("clean_weights (the mask's shape) must be 4 x 4, got 3 x 4"));
}
