// The study's statements on hand-made cells: the paired differences, intervals and verdicts below are computed by hand
// (t_{0.975, 2} = 4.302653).
#include <catch2/catch.hpp>

#include <string>

#include "study/statements.hpp"

using Catch::Matchers::Contains;
using Catch::Matchers::WithinAbs;

namespace {
study::CellKey key(const std::string& arm, int bits, const std::string& seed) {
    return {{{"model", "m1"}, {"arm", arm}, {"bits", std::to_string(bits)}, {"grid", "g0"}, {"seed", seed}}};
}

study::Cells hand_made() {
    study::Cells cells;
    const double lora3[] = {0.10, 0.12, 0.14}, npft3[] = {0.08, 0.11, 0.15};
    const double lora4[] = {0.05, 0.06, 0.07}, npft4[] = {0.03, 0.04, 0.06};
    for (int s = 0; s < 3; ++s) {
        const std::string seed = std::to_string(s + 1);
        cells.push_back({key("lora", 3, seed), {{"gap", lora3[s]}}});
        cells.push_back({key("npft", 3, seed), {{"gap", npft3[s]}}});
        cells.push_back({key("lora", 4, seed), {{"gap", lora4[s]}}});
        cells.push_back({key("npft", 4, seed), {{"gap", npft4[s]}}});
    }
    cells.push_back({key("npft", 4, "4"), {{"gap", 0.0}}});  // a seed whose control has not run yet
    cells.push_back({key("rtn", 3, "any"), {{"gap", 0.20}}});
    return cells;
}

const study::Statement& find(const std::vector<study::Statement>& all, const std::string& control, const std::string& bits) {
    for (const auto& s : all)
        if (s.control == control && s.group.at("bits") == bits) return s;
    FAIL("no statement vs " << control << " at " << bits << " bits");
    throw 0;
}
}  // namespace

TEST_CASE("expand_seedless copies a once-per-model cell to every seed of that model", "[study]") {
    const study::Cells cells = study::expand_seedless(hand_made(), "any");
    int rtn = 0;
    for (const auto& [k, r] : cells) {
        CHECK(k.at("seed") != "any");
        if (k.at("arm") == "rtn") {
            ++rtn;
            CHECK(r.at("gap") == 0.20);
        }
    }
    CHECK(rtn == 4);  // seeds 1, 2, 3 and 4
    CHECK(cells.size() == hand_made().size() - 1 + 4);
}

TEST_CASE("statements: paired differences, intervals and mechanical verdicts", "[study]") {
    const auto all = study::statements(study::expand_seedless(hand_made(), "any"), {{"npft", "lora"}, {"npft", "rtn"}}, "gap");
    REQUIRE(all.size() == 3);  // vs lora at 3 and 4 bits; vs rtn at 3 bits (rtn has no 4-bit cells)

    // 3 bits: differences -0.02, -0.01, +0.01; mean -0.006667, se 0.0088192, CI -0.044612 to +0.031279.
    const auto& s3 = find(all, "lora", "3");
    CHECK(s3.difference.pairs == 3);
    CHECK_THAT(s3.difference.mean, WithinAbs(-0.0066667, 1e-6));
    CHECK_THAT(s3.difference.ci_low, WithinAbs(-0.044612, 1e-5));
    CHECK_THAT(s3.difference.ci_high, WithinAbs(0.031279, 1e-5));
    CHECK(s3.difference.wins == 2);
    CHECK(s3.verdict == "is not resolved from");
    CHECK(s3.unpaired == 0);
    CHECK_THAT(s3.text, Contains("includes 0") && Contains("2 wins of 3 pairs"));

    // 4 bits: differences -0.02, -0.02, -0.01; mean -0.016667, se 0.0033333, CI -0.031009 to -0.002324: beats. The
    // seed-4 cell has no control and is counted, not paired.
    const auto& s4 = find(all, "lora", "4");
    CHECK(s4.difference.pairs == 3);
    CHECK_THAT(s4.difference.mean, WithinAbs(-0.0166667, 1e-6));
    CHECK_THAT(s4.difference.ci_low, WithinAbs(-0.031009, 1e-5));
    CHECK_THAT(s4.difference.ci_high, WithinAbs(-0.002324, 1e-5));
    CHECK(s4.difference.wins == 3);
    CHECK(s4.verdict == "beats");
    CHECK(s4.unpaired == 1);
    CHECK_THAT(s4.text, Contains("excludes 0") && Contains("1 cells without their control left out"));
    CHECK_THAT(s4.control_mean, WithinAbs(0.06, 1e-12));

    // vs rtn (0.20 on every seed) at 3 bits: differences -0.12, -0.09, -0.05; 3 wins of 3, yet the interval
    // (-0.173907 to +0.000573) includes 0.
    const auto& r3 = find(all, "rtn", "3");
    CHECK(r3.difference.wins == 3);
    CHECK_THAT(r3.difference.ci_low, WithinAbs(-0.173907, 1e-5));
    CHECK_THAT(r3.difference.ci_high, WithinAbs(0.000573, 1e-5));
    CHECK(r3.verdict == "is not resolved from");
}

TEST_CASE("verdict: worse when the whole interval lies above 0", "[study]") {
    npft::stats::PairedDifference d;
    d.ci_low = 0.001;
    d.ci_high = 0.002;
    CHECK(study::verdict(d) == "is worse than");
    d.ci_low = -0.002;
    d.ci_high = -0.001;
    CHECK(study::verdict(d) == "beats");
    d.ci_high = 0.0;
    CHECK(study::verdict(d) == "is not resolved from");
}

TEST_CASE("statements: pairing by seed alone keeps the models apart", "[study]") {
    // Two models that disagree: NPFT helps on m1 (differences -0.02, -0.03, -0.02) and hurts on m2 (+0.03, +0.02,
    // +0.03). Pooled (t_{0.975, 5} = 2.570582): mean +0.001667, CI -0.027580 to +0.030913, unresolved. Per model
    // (t_{0.975, 2}): m1 -0.023333 [-0.037676, -0.008991] beats; m2 +0.026667 [+0.012324, +0.041009] is worse.
    study::Cells cells;
    const double lora[] = {0.10, 0.12, 0.14}, npft_m1[] = {0.08, 0.09, 0.12}, npft_m2[] = {0.13, 0.14, 0.17};
    for (const std::string model : {"m1", "m2"})
        for (int s = 0; s < 3; ++s) {
            const std::string seed = std::to_string(s + 1);
            const auto at = [&](const std::string& arm) {
                return study::CellKey{{{"model", model}, {"arm", arm}, {"bits", "3"}, {"grid", "g0"}, {"seed", seed}}};
            };
            cells.push_back({at("lora"), {{"gap", lora[s]}}});
            cells.push_back({at("npft"), {{"gap", model == "m1" ? npft_m1[s] : npft_m2[s]}}});
        }
    cells.push_back({study::CellKey{{{"model", "m2"}, {"arm", "npft"}, {"bits", "3"}, {"grid", "g0"}, {"seed", "9"}}},
                     {{"gap", 0.5}}});  // no control: counted against m2 only

    const auto pooled = study::statements(cells, {{"npft", "lora"}}, "gap");
    REQUIRE(pooled.size() == 1);
    CHECK(pooled[0].difference.pairs == 6);
    CHECK_THAT(pooled[0].difference.mean, WithinAbs(0.0016667, 1e-6));
    CHECK_THAT(pooled[0].difference.ci_low, WithinAbs(-0.027580, 1e-5));
    CHECK_THAT(pooled[0].difference.ci_high, WithinAbs(0.030913, 1e-5));
    CHECK(pooled[0].verdict == "is not resolved from");
    CHECK(pooled[0].unpaired == 1);

    const auto per_model = study::statements(cells, {{"npft", "lora"}}, "gap", {"seed"});
    REQUIRE(per_model.size() == 2);
    const auto& m1 = per_model[0].group.at("model") == "m1" ? per_model[0] : per_model[1];
    const auto& m2 = per_model[0].group.at("model") == "m1" ? per_model[1] : per_model[0];
    CHECK(m1.difference.pairs == 3);
    CHECK_THAT(m1.difference.ci_low, WithinAbs(-0.037676, 1e-5));
    CHECK_THAT(m1.difference.ci_high, WithinAbs(-0.008991, 1e-5));
    CHECK(m1.verdict == "beats");
    CHECK(m1.unpaired == 0);
    CHECK_THAT(m2.difference.mean, WithinAbs(0.0266667, 1e-6));
    CHECK(m2.verdict == "is worse than");
    CHECK(m2.unpaired == 1);
    CHECK_THAT(m2.text, Contains("model=m2"));
}
