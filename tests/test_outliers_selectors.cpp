#include <catch2/catch.hpp>
#include <npft/npft.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

using Idx = npft::Index;
using npft::Matrix;
namespace o = npft::outliers;

namespace {
npft::MatrixView<const float> view(const Matrix& m) { return npft::as_matrix_view(m); }

// Small dense weights from the keyed generator (uniform in [-1, 1)).
Matrix random_weights(Idx rows, Idx cols, std::uint64_t seed) {
    Matrix w(rows, cols);
    for (Idx i = 0; i < w.size(); ++i) w.data()[i] = npft::uniform(npft::RandomKey{seed, 1}, static_cast<std::uint64_t>(i), -1.0f, 1.0f);
    return w;
}

std::vector<Idx> flat(std::initializer_list<std::pair<Idx, Idx>> rc, Idx cols) {
    std::vector<Idx> out;
    for (const auto& [r, c] : rc) out.push_back(r * cols + c);
    std::sort(out.begin(), out.end());
    return out;
}
}  // namespace

TEST_CASE("OutlierMask sorts, de-duplicates, answers membership and unites", "[outliers]") {
    const o::OutlierMask a(3, 4, {7, 1, 7, 11});
    CHECK(a.positions == std::vector<Idx>{1, 7, 11});
    CHECK(a.count() == 3);
    CHECK(a.fraction() == Approx(3.0 / 12.0));
    CHECK(a.contains(0, 1));
    CHECK(a.contains(1, 3));
    CHECK(a.contains(2, 3));
    CHECK_FALSE(a.contains(0, 0));
    CHECK_FALSE(a.contains(3, 0));
    CHECK(a.row_of(7) == 1);
    CHECK(a.col_of(7) == 3);
    const std::vector<float> ind = a.indicator();
    CHECK(std::count(ind.begin(), ind.end(), 1.0f) == 3);
    CHECK(ind[7] == 1.0f);

    const o::OutlierMask b(3, 4, {0, 7});
    CHECK((a | b).positions == std::vector<Idx>{0, 1, 7, 11});
    CHECK_THROWS_WITH(o::mask_union(a, o::OutlierMask(4, 3, {})), Catch::Contains("different shapes"));
    CHECK_THROWS_WITH(o::OutlierMask(2, 2, {4}), Catch::Contains("outside the 2 x 2 matrix"));
    CHECK_THROWS_WITH(o::OutlierMask(2, 2, {-1}), Catch::Contains("-1"));
}

TEST_CASE("TopMagnitude finds planted outliers and honours the fraction", "[outliers]") {
    Matrix w = random_weights(16, 32, 7);  // |w| < 1
    const std::vector<Idx> planted = flat({{0, 5}, {3, 31}, {9, 0}, {15, 17}}, 32);
    for (std::size_t i = 0; i < planted.size(); ++i) w.data()[planted[i]] = (i % 2 ? -1.0f : 1.0f) * (5.0f + static_cast<float>(i));
    const o::OutlierMask m = o::TopMagnitude{4.0 / 512.0}.select({view(w), {}, {}});
    CHECK(m.positions == planted);

    for (const double fraction : {0.001, 0.01, 0.05, 0.1, 0.3, 1.0}) {
        const o::OutlierMask f = o::TopMagnitude{fraction}.select({view(w), {}, {}});
        CHECK(std::abs(f.fraction() - fraction) <= std::max(0.5 / 512.0, 1.0 / 512.0 - fraction) + 1e-12);
        CHECK(f.count() >= 1);
        // Every selected |w| is at least every unselected |w|.
        float smallest_in = 1e30f, largest_out = 0.0f;
        for (Idx p = 0; p < w.size(); ++p) {
            const float a = std::abs(w.data()[p]);
            if (f.contains(p / 32, p % 32)) smallest_in = std::min(smallest_in, a);
            else largest_out = std::max(largest_out, a);
        }
        CHECK(smallest_in >= largest_out);
    }
    CHECK(o::count_for_fraction(0.0005, 4096 * 4096) == 8389);
    CHECK(o::count_for_fraction(1e-9, 100) == 1);
}

TEST_CASE("ties are broken by position, so selection is deterministic", "[outliers]") {
    const Matrix w = Matrix::Constant(4, 5, 0.5f);
    CHECK(o::TopMagnitude{3.0 / 20.0}.select({view(w), {}, {}}).positions == std::vector<Idx>{0, 1, 2});
    CHECK(o::PerChannelTopK<o::MagnitudeScore>{2}.select({view(w), {}, {}}).positions ==
          std::vector<Idx>{0, 1, 5, 6, 10, 11, 15, 16});
}

TEST_CASE("TopFisher ranks by Fisher, not magnitude", "[outliers]") {
    Matrix w = random_weights(8, 8, 3);
    Matrix fisher = Matrix::Constant(8, 8, 1e-6f);
    fisher(2, 3) = 10.0f;
    fisher(6, 1) = 5.0f;
    w(2, 3) = 1e-4f;  // tiny weight, large Fisher
    w(0, 0) = 100.0f;  // huge weight, tiny Fisher
    const o::OutlierMask m = o::TopFisher{2.0 / 64.0}.select({view(w), view(fisher), {}});
    CHECK(m.positions == flat({{2, 3}, {6, 1}}, 8));
}

TEST_CASE("FisherTimesQuantError weighs the Fisher by the expected squared quantization error", "[outliers]") {
    const Matrix w = random_weights(2, 4, 11);
    Matrix fisher(2, 4), steps(2, 4);
    fisher << 4, 1, 1, 1,  //
        1, 1, 1, 2;
    steps << 0.1f, 0.1f, 0.1f, 0.1f,  //
        0.5f, 0.5f, 0.5f, 0.5f;
    // Scores F * delta^2 / 12: row 0 {0.04, 0.01, ...}/12, row 1 {0.25, ..., 0.5}/12: the coarse row wins.
    const o::OutlierMask m = o::FisherTimesQuantError{2.0 / 8.0}.select({view(w), view(fisher), view(steps)});
    CHECK(m.positions == std::vector<Idx>{4, 7});
    const o::OutlierMask by_fisher = o::TopFisher{2.0 / 8.0}.select({view(w), view(fisher), view(steps)});
    CHECK(by_fisher.positions == std::vector<Idx>{0, 7});
    CHECK(o::FisherQuantErrorScore{}({view(w), view(fisher), view(steps)}, 1, 3) == Approx(2.0 * 0.25 / 12.0));
}

TEST_CASE("InterquartileMagnitude: hand-computed thresholds", "[outliers]") {
    // 1..8 and 100: sorted positions h = 0.25 * 8 = 2 and 0.75 * 8 = 6, so q1 = 3, q3 = 7, IQR 4.
    Matrix w(1, 9);
    w << 5, 1, 8, 100, 2, 7, 3, 6, 4;
    const o::InterquartileMagnitude iqr{1.5};
    CHECK(iqr.threshold(view(w)) == Approx(13.0));  // max(|3 - 6|, |7 + 6|)
    CHECK(iqr.select({view(w), {}, {}}).positions == std::vector<Idx>{3});

    // Interpolated quartiles: {0, 1, 2, 10}: h = 0.75 -> q1 = 0.75; h = 2.25 -> q3 = 2 + 0.25 * 8 = 4; IQR 3.25.
    Matrix v(2, 2);
    v << 10, 0, 2, 1;
    CHECK(o::InterquartileMagnitude{1.0}.threshold(view(v)) == Approx(7.25));
    CHECK(o::InterquartileMagnitude{1.0}.select({view(v), {}, {}}).positions == std::vector<Idx>{0});

    // Symmetric: a large negative weight is caught by |w| >= t, and the lower fence can set t.
    Matrix s(1, 9);
    s << -100, -8, -7, -6, -5, -4, -3, -2, -1;  // q1 = -7, q3 = -3, IQR 4, r = 1 -> t = max(11, 1) = 11
    CHECK(o::InterquartileMagnitude{1.0}.threshold(view(s)) == Approx(11.0));
    CHECK(o::InterquartileMagnitude{1.0}.select({view(s), {}, {}}).positions == std::vector<Idx>{0});

    std::vector<float> values{4, 1, 3, 2};
    CHECK(o::quantile(values, 0.5) == Approx(2.5));
    CHECK(o::quantile(values, 0.0) == 1.0);
    CHECK(o::quantile(values, 1.0) == 4.0);
    CHECK_THROWS_WITH(o::InterquartileMagnitude{-1.0}.select({view(w), {}, {}}), Catch::Contains("r must be"));
}

TEST_CASE("Union and PerChannelTopK", "[outliers]") {
    Matrix w = random_weights(4, 6, 5);
    w(1, 2) = 50.0f;
    Matrix fisher = Matrix::Constant(4, 6, 0.0f);
    fisher(3, 4) = 1.0f;
    using Both = o::Union<o::TopFisher, o::InterquartileMagnitude>;
    const Both both{o::TopFisher{1.0 / 24.0}, o::InterquartileMagnitude{1.5}};
    const o::OutlierMask m = both.select({view(w), view(fisher), {}});
    CHECK(m.contains(1, 2));
    CHECK(m.contains(3, 4));
    CHECK(m.count() == 2);

    const o::OutlierMask k = o::PerChannelTopK<o::MagnitudeScore>{2}.select({view(w), {}, {}});
    CHECK(k.count() == 8);
    for (Idx r = 0; r < 4; ++r) {
        std::vector<float> row(w.row(r).data(), w.row(r).data() + 6);
        for (float& x : row) x = std::abs(x);
        std::vector<float> sorted = row;
        std::sort(sorted.begin(), sorted.end(), std::greater<>());
        for (Idx c = 0; c < 6; ++c) CHECK(k.contains(r, c) == (row[c] >= sorted[1]));
    }
    CHECK(o::PerChannelTopK<o::MagnitudeScore>{100}.select({view(w), {}, {}}).count() == 24);  // k above cols: whole rows
}

TEST_CASE("selectors reject bad input with clear messages", "[outliers]") {
    const Matrix w = random_weights(4, 4, 1);
    const Matrix fisher_wrong = Matrix::Ones(4, 5);
    CHECK_THROWS_WITH(o::TopMagnitude{0.0}.select({view(w), {}, {}}), Catch::Contains("fraction must be in (0, 1]"));
    CHECK_THROWS_WITH(o::TopMagnitude{1.5}.select({view(w), {}, {}}), Catch::Contains("got 1.5"));
    CHECK_THROWS_WITH(o::TopFisher{0.1}.select({view(w), {}, {}}), Catch::Contains("needs the diagonal Fisher"));
    CHECK_THROWS_WITH(o::FisherTimesQuantError{0.1}.select({view(w), view(w), {}}), Catch::Contains("needs the quantization steps"));
    CHECK_THROWS_WITH(o::TopFisher{0.1}.select({view(w), view(fisher_wrong), {}}), Catch::Contains("fisher must be 4 x 4, got 4 x 5"));
    CHECK_THROWS_WITH(o::TopMagnitude{0.1}.select({{}, {}, {}}), Catch::Contains("weights is empty"));
    CHECK_THROWS_WITH(o::PerChannelTopK<o::MagnitudeScore>{0}.select({view(w), {}, {}}), Catch::Contains("k (outliers per output channel)"));
    Matrix bad = w;
    bad(2, 1) = std::nanf("");
    CHECK_THROWS_WITH(o::TopMagnitude{0.1}.select({view(bad), {}, {}}), Catch::Contains("(2, 1)"));
}

namespace {
// Least squares y = x . w over 4 inputs: the Hessian is E[x x^T], so input j's curvature is E[x_j^2]. Input 0 has a large
// spread and a small weight; input 3 has a tiny spread and a large weight. One sample per batch: per-sample Fisher.
struct LeastSquares {
    Matrix w = Matrix::Zero(1, 4), g = Matrix::Zero(1, 4);
    std::vector<npft::train::Parameter> parameters() { return {{"w", npft::as_matrix_view(w), npft::as_matrix_view(g)}}; }
    double loss_and_gradient(const std::pair<Eigen::RowVector4f, float>& sample) {
        const float residual = sample.first.dot(w.row(0)) - sample.second;
        g = residual * sample.first;
        return 0.5 * residual * residual;
    }
};
}  // namespace

TEST_CASE("the Fisher selector ranks a small high-curvature weight above a large flat one", "[outliers]") {
    LeastSquares model;
    model.w << 0.01f, 0.3f, -0.2f, 5.0f;
    const Eigen::RowVector4f spread(10.0f, 1.0f, 1.0f, 0.01f);
    std::vector<std::pair<Eigen::RowVector4f, float>> samples;
    const npft::RandomKey key{42, 0};
    for (std::uint64_t s = 0; s < 64; ++s) {
        Eigen::RowVector4f x;
        for (int j = 0; j < 4; ++j) x(j) = spread(j) * npft::gaussian(key, 4 * s + static_cast<std::uint64_t>(j));
        const float target = x.dot(model.w.row(0)) + 0.1f * npft::gaussian(npft::RandomKey{42, 1}, s);  // residual noise
        samples.emplace_back(x, target);
    }
    const auto fisher = npft::hessian::DiagonalFisher::compute(model, samples);
    const Matrix& f = fisher.at("w");
    const o::SelectionInputs in{view(model.w), view(f), {}};
    CHECK(o::TopFisher{0.25}.select(in).positions == std::vector<Idx>{0});
    CHECK(o::TopMagnitude{0.25}.select(in).positions == std::vector<Idx>{3});
    CHECK(f(0, 0) > 1000.0f * f(0, 3));
}

TEST_CASE("FisherTimesQuantError with the steps of a real quantizer prefers coarse groups", "[outliers]") {
    // Two groups of 4 per row under a 4-bit grid: the second group's range (and step) is 10x the first's.
    Matrix w(2, 8);
    w << 0.1f, -0.1f, 0.05f, 0.0f, 1.0f, -1.0f, 0.5f, 0.0f,  //
        0.1f, -0.1f, 0.05f, 0.0f, 1.0f, -1.0f, 0.5f, 0.0f;
    const Matrix steps = npft::quant::quantization_steps(npft::quant::UniformGrid(4, 4), view(w));
    CHECK(steps(0, 4) == Approx(10.0f * steps(0, 0)).epsilon(1e-2));
    Matrix fisher = Matrix::Ones(2, 8);
    fisher(1, 1) = 50.0f;  // 50x the Fisher in a fine group loses to 1x in a coarse one (100x the squared step)
    const o::OutlierMask m = o::FisherTimesQuantError{1.0 / 16.0}.select({view(w), view(fisher), view(steps)});
    CHECK(m.positions == std::vector<Idx>{4});
    CHECK(o::TopFisher{1.0 / 16.0}.select({view(w), view(fisher), view(steps)}).positions == std::vector<Idx>{9});
}
