// The study's aggregation: treatment cells paired with their matched control cells, grouped by everything but the arm
// and the pairing fields; checked on synthetic cells whose differences are known by construction.
#include <catch2/catch.hpp>

#include <string>

#include "study/compare.hpp"

using Catch::Matchers::Contains;
using npft::stats::Better;

namespace {

study::CellKey key(const std::string& model, const std::string& arm, int bits, int seed) {
    return {{{"model", model}, {"arm", arm}, {"bits", std::to_string(bits)}, {"seed", std::to_string(seed)}}};
}

/// Control gap 0.1 * bits + 0.01 * seed (+0.5 on m2); the treatment is lower by 0.002 * seed (+0.001 on m2).
study::Cells synthetic() {
    study::Cells cells;
    for (const std::string model : {"m1", "m2"}) {
        for (const int bits : {3, 4}) {
            for (int seed = 1; seed <= 3; ++seed) {
                const double control = 0.1 * bits + 0.01 * seed + (model == "m2" ? 0.5 : 0.0);
                const double treatment = control - 0.002 * seed - (model == "m2" ? 0.001 : 0.0);
                cells.push_back({key(model, "lora", bits, seed), {{"gap", control}}});
                cells.push_back({key(model, "npft", bits, seed), {{"gap", treatment}}});
            }
        }
    }
    return cells;
}

}  // namespace

TEST_CASE("compare pairs by model and seed and groups by the rest", "[study]") {
    const auto rows = study::compare(synthetic(), {"npft", "lora", "gap", Better::lower}, {"model", "seed"});
    REQUIRE(rows.size() == 2);  // bits 3 and bits 4
    for (const auto& row : rows) {
        CAPTURE(row.group.describe());
        CHECK(row.group.fields.size() == 1);
        CHECK(row.group.fields[0].first == "bits");
        REQUIRE(row.difference.pairs == 6);
        // Differences: -0.002, -0.004, -0.006 on m1 and -0.003, -0.005, -0.007 on m2: mean -0.0045.
        CHECK(row.difference.mean == Approx(-0.0045).margin(1e-12));
        CHECK(row.difference.wins == 6);
        CHECK(row.difference.ci_high < 0.0);
        CHECK(row.pairs.size() == 6);
        CHECK(row.pairs[0].fields.size() == 2);
    }
    CHECK(rows[0].control_mean.mean == Approx(0.3 + 0.02 + 0.25).margin(1e-12));  // bits 3: 0.3 + mean seed 0.02 + m2 half
}

TEST_CASE("compare per model keeps the model in the group", "[study]") {
    const auto rows = study::compare(synthetic(), {"npft", "lora", "gap", Better::lower}, {"seed"});
    REQUIRE(rows.size() == 4);
    for (const auto& row : rows) {
        const bool m2 = row.group.at("model") == "m2";
        CHECK(row.difference.pairs == 3);
        CHECK(row.difference.mean == Approx(m2 ? -0.005 : -0.004).margin(1e-12));
        CHECK(row.difference.standard_error == Approx(0.002 / std::sqrt(3.0)).epsilon(1e-9));  // sd of 2,4,6 (x1e-3) is 2
    }
}

TEST_CASE("a treatment cell without its control is an error; single pairs have no row", "[study]") {
    study::Cells cells = synthetic();
    cells.push_back({key("m3", "npft", 3, 1), {{"gap", 0.1}}});
    CHECK_THROWS_WITH(study::compare(cells, {"npft", "lora", "gap", Better::lower}, {"seed"}),
                      Contains("has no control cell model=m3 arm=lora bits=3 seed=1"));
    cells.push_back({key("m3", "lora", 3, 1), {{"gap", 0.2}}});
    const auto rows = study::compare(cells, {"npft", "lora", "gap", Better::lower}, {"seed"});
    CHECK(rows.size() == 4);  // m3 has one pair: no interval, no row
    CHECK_THROWS_WITH(study::compare(cells, {"npft", "lora", "ppl", Better::lower}, {"seed"}), Contains("has no 'ppl'"));
}

TEST_CASE("summarize averages a metric over the pairing fields", "[study]") {
    const auto rows = study::summarize(synthetic(), "gap", {"model", "seed"});
    REQUIRE(rows.size() == 4);  // (arm, bits)
    for (const auto& row : rows) {
        CHECK(row.mean.count == 6);
        CHECK(row.values.size() == 6);
    }
    const auto one = study::summarize({{key("m1", "rtn", 3, 1), {{"gap", 0.7}}}}, "gap", {"seed"});
    REQUIRE(one.size() == 1);
    CHECK(one[0].mean.count == 1);
    CHECK(one[0].mean.ci_low == 0.7);
}
