// The npft_random arm's selector: the same number of weights as TopFisher at the same fraction, drawn at random,
// reproducible by seed, independent between matrices and seeds.
#include <catch2/catch.hpp>

#include <cmath>
#include <set>

#include <npft/core/eigen.hpp>
#include <npft/outliers/top_fraction.hpp>

#include "study/random_mask.hpp"

namespace {
npft::Matrix weights(npft::Index rows, npft::Index cols, float offset) {
    npft::Matrix w(rows, cols);
    for (npft::Index r = 0; r < rows; ++r)
        for (npft::Index c = 0; c < cols; ++c) w(r, c) = std::sin(0.37f * static_cast<float>(r * cols + c)) + offset;
    return w;
}
npft::outliers::SelectionInputs inputs(const npft::Matrix& w, const npft::Matrix& fisher) {
    return {npft::MatrixView<const float>(npft::as_matrix_view(w)), npft::MatrixView<const float>(npft::as_matrix_view(fisher)), {}};
}
}  // namespace

TEST_CASE("RandomFraction selects as many weights as TopFisher, reproducibly by seed", "[study][outliers]") {
    const npft::Matrix w = weights(64, 96, 0.0f);
    const npft::Matrix fisher = w.cwiseAbs2();
    for (const double fraction : {0.0005, 0.005, 0.05}) {
        CAPTURE(fraction);
        const auto top = npft::outliers::TopFisher{fraction}.select(inputs(w, fisher));
        const auto a = study::RandomFraction{fraction, 7}.select(inputs(w, fisher));
        const auto b = study::RandomFraction{fraction, 7}.select(inputs(w, fisher));
        CHECK(a.count() == top.count());
        CHECK(a.count() == static_cast<npft::Index>(std::max(1.0, std::round(fraction * 64 * 96))));
        CHECK(a == b);
        CHECK_NOTHROW(a.validate());
    }
    const auto s7 = study::RandomFraction{0.05, 7}.select(inputs(w, fisher));
    const auto s8 = study::RandomFraction{0.05, 8}.select(inputs(w, fisher));
    CHECK(s7 != s8);
    // Another matrix of the same shape gets its own draw under the same seed.
    const npft::Matrix other = weights(64, 96, 0.5f);
    CHECK(study::RandomFraction{0.05, 7}.select(inputs(other, other.cwiseAbs2())) != s7);
}

TEST_CASE("RandomFraction spreads its picks over the matrix", "[study][outliers]") {
    // 10% of 100 x 100: each row's count is Binomial-like around 10; over 100 rows the picks must reach most rows and
    // both halves of the matrix roughly equally (a draw stuck at the first positions would fail both).
    const npft::Matrix w = weights(100, 100, 0.0f);
    const auto mask = study::RandomFraction{0.1, 3}.select(inputs(w, w));
    REQUIRE(mask.count() == 1000);
    std::set<npft::Index> rows;
    npft::Index first_half = 0;
    for (const npft::Index p : mask.positions) {
        rows.insert(p / 100);
        if (p < 5000) ++first_half;
    }
    CHECK(rows.size() >= 95);
    CHECK(first_half > 400);
    CHECK(first_half < 600);
}

TEST_CASE("RandomFraction rejects a fraction outside (0, 1]", "[study][outliers]") {
    const npft::Matrix w = weights(4, 4, 0.0f);
    CHECK_THROWS_WITH((study::RandomFraction{0.0, 1}.select(inputs(w, w))), Catch::Matchers::Contains("fraction"));
    CHECK_THROWS_WITH((study::RandomFraction{1.5, 1}.select(inputs(w, w))), Catch::Matchers::Contains("fraction"));
}
