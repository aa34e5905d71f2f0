// Non-uniform (LUT) grids: weighted k-means and NormalFloat.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <npft/npft.hpp>

#include "test_matrices.hpp"

namespace npft_test {
using npft::Index;  // hides ::index from <strings.h>
using namespace npft;
using namespace npft::quant;

namespace {

// Independent reference: the weighted k-means objective by brute-force nearest centroid.
double brute_force_objective(const std::vector<float>& x, const std::vector<float>& w, const std::vector<double>& centroids) {
    double total = 0.0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        double best = std::numeric_limits<double>::infinity();
        for (const double c : centroids) best = std::min(best, (x[i] - c) * (x[i] - c));
        total += (w.empty() ? 1.0 : w[i]) * best;
    }
    return total;
}

std::vector<float> levels_of(const LutParams& p) { return {p.levels.begin(), p.levels.begin() + p.size()}; }

}  // namespace

TEST_CASE("k-means recovers four well separated clusters exactly", "[quant][kmeans]") {
    const std::vector<float> row = {3.0f, -3.0f, 1.0f, -1.0f, -1.0f, 3.0f, 1.0f, -3.0f, 1.0f};
    const LutParams p = NonUniform<2>().fit(row);
    CHECK(levels_of(p) == std::vector<float>{-3.0f, -1.0f, 1.0f, 3.0f});

    Matrix w = Matrix::Map(row.data(), 1, 9);
    const QuantizedMatrix q = Quantizer<NonUniform<2>>().quantize(w);
    CHECK(q.format() == Format::lut);
    CHECK(q.group_size() == 9);
    CHECK(q.dequantize() == w);
    CHECK(q.codes().get(0, 0) == 3u);
    CHECK(q.codes().get(0, 1) == 0u);
    CHECK(q.codes().get(0, 2) == 2u);
    CHECK(q.codes().get(0, 3) == 1u);
}

TEST_CASE("weighted k-means: hand-computed weighted means", "[quant][kmeans]") {
    // k = 1: the weighted mean (0 + 1 + 8 * 2) / 10 = 1.7, objective 1.7^2 + 0.7^2 + 8 * 0.3^2 = 4.1.
    const std::vector<float> x = {0.0f, 1.0f, 2.0f};
    const std::vector<float> w = {1.0f, 1.0f, 8.0f};
    const KMeansResult one = weighted_kmeans_1d(x, w, 1);
    REQUIRE(one.centroids.size() == 1);
    CHECK(one.centroids[0] == Approx(1.7).epsilon(1e-12));
    CHECK(one.objective == Approx(4.1).epsilon(1e-9));

    // k = 2 on {0, 1, 10, 12} with weights {1, 3, 1, 1}: clusters {0, 1} -> 0.75 and {10, 12} -> 11.
    const std::vector<float> x2 = {10.0f, 0.0f, 12.0f, 1.0f};
    const std::vector<float> w2 = {1.0f, 1.0f, 1.0f, 3.0f};
    const KMeansResult two = weighted_kmeans_1d(x2, w2, 2);
    REQUIRE(two.centroids.size() == 2);
    CHECK(two.centroids[0] == Approx(0.75));
    CHECK(two.centroids[1] == Approx(11.0));
    CHECK(two.objective == Approx(0.75 * 0.75 + 3 * 0.25 * 0.25 + 1 + 1));
}

// The history cannot rise by construction (weighted_kmeans_1d stops before a worse step); the property itself is tested
// on the raw step below.
TEST_CASE("weighted k-means: every iterate's objective matches a brute-force reference", "[quant][kmeans]") {
    for (std::uint64_t seed = 1; seed <= 12; ++seed) {
        const Index n = 257;
        std::vector<float> x(static_cast<std::size_t>(n)), w;
        for (Index i = 0; i < n; ++i) {
            const float g = gaussian({seed, 2}, static_cast<std::uint64_t>(i));
            x[static_cast<std::size_t>(i)] = seed % 2 ? g : g * g * g;  // Gaussian and heavy-tailed rows
        }
        if (seed % 3 != 0) {
            w.resize(x.size());
            for (Index i = 0; i < n; ++i) w[static_cast<std::size_t>(i)] = uniform({seed, 3}, static_cast<std::uint64_t>(i), 0.0f, 5.0f);
        }
        const int k = 1 << (2 + static_cast<int>(seed % 3));
        const KMeansResult result = weighted_kmeans_1d(x, w, k, KMeans{100, 0.0}, true);
        REQUIRE(result.history.size() >= 2);
        CHECK(result.history.size() == static_cast<std::size_t>(result.iterations) + 1);
        double previous = std::numeric_limits<double>::infinity();
        for (const KMeansStep& step : result.history) {
            REQUIRE(step.centroids.size() == static_cast<std::size_t>(k));
            CHECK(std::is_sorted(step.centroids.begin(), step.centroids.end()));
            const double reference = brute_force_objective(x, w, step.centroids);
            CHECK(step.objective == Approx(reference).epsilon(1e-9));
            CHECK(reference <= previous * (1.0 + 1e-12));
            previous = reference;
        }
        CHECK(result.history.back().objective == result.objective);
        CHECK(result.history.back().centroids == result.centroids);
        // Lloyd lowers the objective from the quantile initialisation on these rows.
        CHECK(result.objective < result.history.front().objective);
    }
}

TEST_CASE("one raw Lloyd step never raises the objective, from any start", "[quant][kmeans]") {
    // The property itself, without weighted_kmeans_1d's early stop: arbitrary sorted starts, many of them with empty
    // clusters (centroids drawn from a range wider than the data, some duplicated), so the re-seeding runs too.
    int reseeding_starts = 0;
    for (std::uint64_t seed = 1; seed <= 40; ++seed) {
        const Index n = 97 + static_cast<Index>(seed);
        std::vector<float> x(static_cast<std::size_t>(n)), w(x.size());
        for (Index i = 0; i < n; ++i) {
            const float g = gaussian({seed, 5}, static_cast<std::uint64_t>(i));
            x[static_cast<std::size_t>(i)] = seed % 2 ? g : g * g * g;
            w[static_cast<std::size_t>(i)] = uniform({seed, 6}, static_cast<std::uint64_t>(i), 0.0f, 3.0f);
        }
        const std::vector<float> no_weights;
        const std::vector<float>& importance = seed % 4 == 0 ? no_weights : w;
        const quant::detail::SortedWeightedValues data(x, importance);
        const int k = 2 + static_cast<int>(seed % 7);
        std::vector<double> centroids(static_cast<std::size_t>(k));
        for (int i = 0; i < k; ++i)
            centroids[static_cast<std::size_t>(i)] = uniform({seed, 7}, static_cast<std::uint64_t>(i), -6.0f, 6.0f);
        if (seed % 5 == 0) centroids[1] = centroids[0];
        std::sort(centroids.begin(), centroids.end());
        for (int step = 0; step < 6; ++step) {
            if (quant::detail::has_weightless_cluster(data, quant::detail::assign_sorted(data, centroids)))
                ++reseeding_starts;
            const std::vector<double> next = quant::detail::lloyd_step(data, centroids);
            REQUIRE(next.size() == centroids.size());
            CHECK(std::is_sorted(next.begin(), next.end()));
            const double before = brute_force_objective(x, importance, centroids);
            const double after = brute_force_objective(x, importance, next);
            CHECK(after <= before * (1.0 + 1e-12));
            centroids = next;
        }
    }
    CHECK(reseeding_starts >= 10);  // the re-seeding branch was exercised
}

TEST_CASE("weighted k-means pulls a centroid onto heavily weighted points", "[quant][kmeans]") {
    const Index n = 512;
    std::vector<float> x(static_cast<std::size_t>(n));
    for (Index i = 0; i < n; ++i) x[static_cast<std::size_t>(i)] = gaussian({7, 4}, static_cast<std::uint64_t>(i));
    const std::size_t heavy = 17;
    const float target = x[heavy];
    std::vector<float> w(x.size(), 1.0f);
    w[heavy] = 1e6f;

    auto nearest_gap = [&](const LutParams& p) {
        float gap = std::numeric_limits<float>::infinity();
        for (const float l : levels_of(p)) gap = std::min(gap, std::abs(l - target));
        return gap;
    };
    const NonUniform<2> grid;
    const LutParams weighted = grid.fit(x, w);
    const LutParams plain = grid.fit(x);
    // The weighted fit puts a level on the heavy point (to fp16 precision); the plain fit does not.
    CHECK(nearest_gap(weighted) <= std::abs(target) * 1e-3f + 1e-4f);
    CHECK(nearest_gap(plain) > 10.0f * nearest_gap(weighted));
    CHECK(std::abs(weighted.decode(weighted.encode(target)) - target) < std::abs(plain.decode(plain.encode(target)) - target));
}

TEST_CASE("k-means LUT: every weight decodes to its nearest level, levels strictly ascending", "[quant][kmeans]") {
    for (int bits = 2; bits <= 8; ++bits) {
        const Matrix w = gaussian_matrix(3, 300, static_cast<std::uint64_t>(bits));
        const QuantizedMatrix q = Quantizer<NonUniformGrid>(NonUniformGrid(bits)).quantize(w);
        const Matrix d = q.dequantize();
        for (Index r = 0; r < w.rows(); ++r) {
            const LutParams p = q.lut_params(r);
            for (Index i = 1; i < p.size(); ++i) CHECK(p.levels[static_cast<std::size_t>(i)] > p.levels[static_cast<std::size_t>(i - 1)]);
            for (Index c = 0; c < w.cols(); ++c) {
                float best = std::numeric_limits<float>::infinity();
                for (Index i = 0; i < p.size(); ++i) best = std::min(best, std::abs(w(r, c) - p.levels[static_cast<std::size_t>(i)]));
                CHECK(std::abs(w(r, c) - d(r, c)) == best);
            }
        }
        // More bits, less error.
        if (bits >= 3) {
            const Matrix d_fewer = Quantizer<NonUniformGrid>(NonUniformGrid(bits - 1)).quantize(w).dequantize();
            CHECK((d - w).norm() < (d_fewer - w).norm());
        }
    }
}

TEST_CASE("the quantizer's codes are exactly LutParams::encode of each weight, midpoints included", "[quant]") {
    for (int bits = 2; bits <= 8; ++bits) {
        for (const bool nf : {false, true}) {
            const NonUniformGrid grid = nf ? NonUniformGrid(bits, NormalFloat{}) : NonUniformGrid(bits);
            Matrix w = gaussian_matrix(3, 96, static_cast<std::uint64_t>(bits) + 50);
            // Move some weights onto midpoints between levels, and beyond both ends (still inside the absmax for NF).
            const std::vector<float> row(w.row(2).data(), w.row(2).data() + 96);
            const LutParams p = grid.fit(row);
            for (Index j = 0; j + 1 < p.size() && j < 40; ++j)
                w(2, 2 * j + 1) = 0.5f * (p.levels[static_cast<std::size_t>(j)] + p.levels[static_cast<std::size_t>(j + 1)]);
            const QuantizedMatrix q = Quantizer<NonUniformGrid>(grid).quantize(w);
            bool same = true;
            for (Index r = 0; r < w.rows(); ++r) {
                const LutParams fitted = q.lut_params(r);
                for (Index c = 0; c < w.cols(); ++c) same &= q.codes().get(r, c) == fitted.encode(w(r, c));
            }
            CHECK(same);
        }
    }
}

TEST_CASE("k-means LUT handles degenerate rows", "[quant][kmeans]") {
    SECTION("all equal") {
        Matrix w = Matrix::Constant(2, 40, 0.375f);
        w.row(1).setZero();
        const QuantizedMatrix q = Quantizer<NonUniform<4>>().quantize(w);
        CHECK(q.dequantize() == w);
        for (Index r = 0; r < 2; ++r) {
            const LutParams p = q.lut_params(r);
            for (Index i = 1; i < p.size(); ++i) CHECK(p.levels[static_cast<std::size_t>(i)] > p.levels[static_cast<std::size_t>(i - 1)]);
        }
    }
    SECTION("fewer distinct values than levels are reproduced exactly") {
        Matrix w(1, 50);
        for (Index c = 0; c < 50; ++c) w(0, c) = static_cast<float>(c % 5) * 0.25f - 0.5f;
        CHECK(Quantizer<NonUniform<3>>().quantize(w).dequantize() == w);
    }
    SECTION("fewer values than levels") {
        Matrix w(2, 3);
        w << 1.0f, -2.0f, 0.5f, 4.0f, 4.0f, -4.0f;
        CHECK(Quantizer<NonUniform<4>>().quantize(w).dequantize() == w);
    }
    SECTION("all-zero importance falls back to equal weights") {
        const Matrix w = gaussian_matrix(2, 64, 11);
        const Matrix zero = Matrix::Zero(2, 64);
        const Quantizer<NonUniform<3>> q;
        CHECK(q.quantize(MatrixView<const float>(as_matrix_view(w)), as_matrix_view(zero)).dequantize() ==
              q.quantize(w).dequantize());
    }
}

TEST_CASE("NormalFloat codebook", "[quant][nf]") {
    // QLoRA's NF4 table (bitsandbytes), which the general construction must reproduce at 4 bits.
    const std::vector<double> nf4 = {-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                                     -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                                     0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                                     0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0};
    const std::vector<double> code4 = normal_float_codebook(4);
    REQUIRE(code4.size() == nf4.size());
    for (std::size_t i = 0; i < nf4.size(); ++i) CHECK(code4[i] == Approx(nf4[i]).margin(1e-7));

    for (int bits = 2; bits <= 8; ++bits) {
        const std::vector<double> code = normal_float_codebook(bits);
        REQUIRE(code.size() == (std::size_t{1} << bits));
        CHECK(code.front() == -1.0);
        CHECK(code.back() == 1.0);
        for (std::size_t i = 1; i < code.size(); ++i) CHECK(code[i] > code[i - 1]);
        const auto zero = std::find(code.begin(), code.end(), 0.0);
        REQUIRE(zero != code.end());
        // One more positive level than negative ones.
        CHECK(code.end() - zero - 1 == (1 << (bits - 1)));
    }
    CHECK_THROWS_WITH(normal_float_codebook(1), Catch::Contains("bits must be between 2 and 8, got 1"));
}

TEST_CASE("NormalFloat grid scales the codebook by the row's absmax", "[quant][nf]") {
    Matrix w = gaussian_matrix(4, 64, 5);
    w(1, 3) = -6.0f;  // a negative absmax
    const QuantizedMatrix q = Quantizer<NonUniform<4, NormalFloat>>().quantize(w);
    const std::vector<double> code = normal_float_codebook(4);
    for (Index r = 0; r < w.rows(); ++r) {
        const float absmax = w.row(r).cwiseAbs().maxCoeff();
        const LutParams p = q.lut_params(r);
        for (Index i = 0; i < p.size(); ++i)
            CHECK(p.levels[static_cast<std::size_t>(i)] == round_to_half(static_cast<float>(code[static_cast<std::size_t>(i)] * absmax)));
    }
    // Zero is a level, so exact zeros survive.
    w(2, 0) = 0.0f;
    CHECK(Quantizer<NonUniform<4, NormalFloat>>().quantize(w).dequantize()(2, 0) == 0.0f);
    // Importance is ignored by NormalFloat.
    const Matrix importance = Matrix::Constant(4, 64, 3.0f);
    const Quantizer<NonUniform<4, NormalFloat>> nf;
    CHECK(nf.quantize(MatrixView<const float>(as_matrix_view(w)), as_matrix_view(importance)).dequantize() ==
          nf.quantize(w).dequantize());
}

TEST_CASE("LUT bits per weight counts codes, padding and tables exactly", "[quant]") {
    const Matrix w = gaussian_matrix(8, 4096, 3);
    // 4 bits per code + 16 fp16 entries per row of 4096: 4 + 256 / 4096 = 4.0625.
    CHECK(Quantizer<NonUniform<4>>().quantize(w).bits_per_weight() == 4.0625);
    CHECK(Quantizer<NonUniform<4, NormalFloat>>().quantize(w).bits_per_weight() == 4.0625);
    // 3 bits, 100 columns: 4 blocks of 32 codes = 12 words = 384 bits, plus 8 * 16 = 128 table bits, per 100 weights.
    const Matrix narrow = gaussian_matrix(2, 100, 4);
    const QuantizedMatrix q = Quantizer<NonUniform<3>>().quantize(narrow);
    CHECK(q.bytes() == 2 * (12 * 4 + 8 * 2));
    CHECK(q.bits_per_weight() == 5.12);
}

TEST_CASE("non-uniform grids reject bad input", "[quant]") {
    CHECK_THROWS_WITH(NonUniformGrid(1), Catch::Contains("bits must be between 2 and 8, got 1"));
    CHECK_THROWS_WITH(NonUniformGrid(9, NormalFloat{}), Catch::Contains("bits must be between 2 and 8, got 9"));
    CHECK_THROWS_WITH(NonUniformGrid(4, KMeans{-1, 0.0}), Catch::Contains("max_iterations must be non-negative, got -1"));
    const NonUniform<3> grid;
    CHECK_THROWS_WITH(grid.fit(std::vector<float>{}), Catch::Contains("empty"));
    const std::vector<float> x = {1.0f, std::nanf(""), 2.0f};
    CHECK_THROWS_WITH(grid.fit(x), Catch::Contains("non-finite"));
    const std::vector<float> y = {1.0f, 2.0f, 3.0f};
    const std::vector<float> negative = {1.0f, -1.0f, 1.0f};
    const std::vector<float> too_short = {1.0f};
    CHECK_THROWS_WITH(grid.fit(y, negative), Catch::Contains("importance must be finite and non-negative, got -1"));
    CHECK_THROWS_WITH(grid.fit(y, too_short), Catch::Contains("importance must hold 3 values"));
    const Matrix w = gaussian_matrix(2, 8, 1);
    const Matrix bad_shape = Matrix::Ones(2, 4);
    CHECK_THROWS_WITH(Quantizer<NonUniform<3>>().quantize(MatrixView<const float>(as_matrix_view(w)), as_matrix_view(bad_shape)),
                      Catch::Contains("importance must be 2 x 8, got 2 x 4"));
    const NonUniform<4, NormalFloat> nf;
    const std::vector<float> huge = {1e6f};
    CHECK_THROWS_WITH(nf.fit(huge), Catch::Contains("overflows fp16"));
}

}  // namespace npft_test
