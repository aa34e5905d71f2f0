// The block-wise reconstruction study's grid and its reading (examples/common/study/ptq_grid.hpp), and the generated
// section of a hand-written page (generated_section.hpp), on hand-made cells. Intervals by hand, t_{0.975, 2} = 4.302653.
#include <catch2/catch.hpp>

#include <string>

#include "study/generated_section.hpp"
#include "study/ptq_grid.hpp"

using Catch::Matchers::Contains;
using Catch::Matchers::WithinAbs;

namespace {
study::CellKey key(const std::string& arm, int bits, const std::string& seed) {
    return {{{"model", "m1"}, {"arm", arm}, {"bits", std::to_string(bits)}, {"grid", "g0"}, {"seed", seed}}};
}

void add(study::Cells& cells, const std::string& arm, int bits, std::initializer_list<double> gaps) {
    int seed = 1;
    for (const double g : gaps) cells.push_back({key(arm, bits, std::to_string(seed++)), {{"gap", g}}});
}

/// 3 bits: scales+down1 beats scales+single and RTN, GPTQ is not resolved from it. 2 bits: rounding+multi2 has the
/// lowest mean but does not resolve from rounding+single, which GPTQ beats.
study::Cells hand_made() {
    study::Cells cells;
    add(cells, "scales+single", 3, {0.30, 0.32, 0.34});
    add(cells, "scales+down1", 3, {0.20, 0.23, 0.25});
    add(cells, "gptq", 3, {0.22, 0.21, 0.26});
    cells.push_back({key("rtn", 3, "any"), {{"gap", 0.50}}});
    add(cells, "lora+multi4", 3, {0.01});  // one seed only: no mean to rank
    add(cells, "rounding+single", 2, {0.60, 0.70, 0.80});
    add(cells, "rounding+multi2", 2, {0.55, 0.72, 0.74});
    add(cells, "gptq", 2, {0.50, 0.55, 0.65});
    cells.push_back({key("rtn", 2, "any"), {{"gap", 0.90}}});
    return study::expand_seedless(cells, "any");
}

std::vector<std::string> all_arms() {
    std::vector<std::string> out;
    for (const auto& p : study::ptq::policies)
        for (const auto& o : study::ptq::objectives) out.push_back(study::ptq::arm(p, o));
    return out;
}
}  // namespace

TEST_CASE("ptq grid: arm names parse back to their policy and objective, other arms do not", "[study][ptq]") {
    const auto p = study::ptq::parse_arm("rounding+multi4");
    REQUIRE(p.has_value());
    CHECK(p->policy == "rounding");
    CHECK(p->objective == "multi4");
    CHECK_FALSE(study::ptq::parse_arm("rtn"));
    CHECK_FALSE(study::ptq::parse_arm("npft+scales+down1"));
    CHECK_FALSE(study::ptq::parse_arm("scales+down3"));
    CHECK(all_arms().size() == 15);
    for (const auto& a : all_arms()) CHECK(study::ptq::parse_arm(a).has_value());
    CHECK_THROWS_WITH(study::ptq::window_and_depth("down3"), Contains("'down3'"));
}

TEST_CASE("ptq grid: block passes follow reconstruct's windows and its downstream fallback at the end", "[study][ptq]") {
    using study::ptq::block_passes;
    // 6 blocks. down1: blocks 0..4 also run the next block, block 5 has none (6 + 5); down2: blocks 0..3 run two more,
    // blocks 4 and 5 fall back to their own output (6 + 8). multi4: windows 0..3 and 4..5.
    CHECK(block_passes("single", 6) == 6);
    CHECK(block_passes("multi2", 6) == 6);
    CHECK(block_passes("multi4", 6) == 6);
    CHECK(block_passes("down1", 6) == 11);
    CHECK(block_passes("down2", 6) == 14);
    CHECK(block_passes("down2", 2) == 2);
    CHECK(block_passes("down1", 3) == 5);
    CHECK_THROWS_WITH(block_passes("single", 0), Contains("at least one block"));
}

TEST_CASE("ptq grid: each dearer objective is compared with its policy's single block", "[study][ptq]") {
    CHECK(study::ptq::cheaper_alternative("lora+down2") == "lora+single");
    CHECK(study::ptq::cheaper_alternative("scales+single").empty());
    CHECK(study::ptq::cheaper_alternative("gptq").empty());
    const auto c = study::ptq::comparisons();
    CHECK(c.size() == 3 * 4 + 3 + 2);
    for (const auto& [treatment, control] : c) {
        CHECK(treatment != control);
        if (control != "rtn" && treatment.find("single") == std::string::npos)
            CHECK(control == study::ptq::cheaper_alternative(treatment));
    }
}

TEST_CASE("ptq grid: paired_at pairs only the (model, seed) cells both arms have", "[study][ptq]") {
    study::Cells cells = hand_made();
    cells.push_back({key("scales+down1", 3, "4"), {{"gap", -5.0}}});  // no control for seed 4: must not count
    const auto d = study::ptq::paired_at(cells, "scales+down1", "scales+single", "3", "gap");
    REQUIRE(d.has_value());
    // differences -0.10, -0.09, -0.09: mean -0.093333, sd 0.0057735, se 0.0033333, half-width 0.014342
    CHECK(d->pairs == 3);
    CHECK_THAT(d->mean, WithinAbs(-0.0933333, 1e-6));
    CHECK_THAT(d->ci_low, WithinAbs(-0.1076755, 1e-6));
    CHECK_THAT(d->ci_high, WithinAbs(-0.0789912, 1e-6));
    CHECK(d->wins == 3);
    CHECK_FALSE(study::ptq::paired_at(cells, "lora+multi4", "lora+single", "3", "gap"));
}

TEST_CASE("ptq grid: the pick follows its three rules on hand-made numbers", "[study][ptq]") {
    const auto picks = study::ptq::picks(hand_made(), all_arms(), {"rtn", "gptq"}, "gap", 6);
    REQUIRE(picks.size() == 2);
    const auto& two = picks[0];
    const auto& three = picks[1];
    REQUIRE(two.bits == "2");
    REQUIRE(three.bits == "3");

    // 3 bits: the lowest mean is scales+down1 (0.226667, not lora+multi4's single 0.01); it beats scales+single (above),
    // beats rtn (differences -0.30, -0.27, -0.25) and is not resolved from gptq (-0.02, +0.02, -0.01): it stays.
    CHECK(three.best == "scales+down1");
    CHECK_THAT(three.best_mean, WithinAbs(0.2266667, 1e-6));
    CHECK(three.recommended == "scales+down1");
    CHECK_THAT(three.text, Contains("It beats scales+single by -0.0933 (95% CI -0.1077 to -0.0790, 3 wins of 3) at 1.8x its compute"));
    CHECK_THAT(three.text, Contains("scales+down1 beats rtn"));
    CHECK_THAT(three.text, Contains("scales+down1 is not resolved from gptq"));
    CHECK_THAT(three.text, Contains("Pick: scales+down1."));

    // 2 bits: rounding+multi2 (mean 0.67) vs rounding+single: -0.05, +0.02, -0.06, not resolved -> rounding+single (1x
    // the compute: multi2 runs as many block passes). rounding+single - rtn: -0.3, -0.2, -0.1, CI -0.448 to +0.048, not
    // resolved; - gptq: +0.10, +0.15, +0.15, mean 0.133333, CI +0.0616 to +0.2050: gptq is the pick.
    CHECK(two.best == "rounding+multi2");
    CHECK_THAT(two.text, Contains("not resolved below 0, at 1x the compute: rounding+single is the pick"));
    CHECK_THAT(two.text, Contains("rounding+single is not resolved from rtn: -0.2000 (95% CI -0.4484 to +0.0484"));
    CHECK_THAT(two.text, Contains("rounding+single is worse than gptq by +0.1333 (95% CI +0.0616 to +0.2050, 0 wins of 3)"));
    CHECK(two.recommended == "gptq");

    CHECK(study::ptq::pick_summary(picks) == "What a user should pick: gptq at 2 bits, scales+down1 at 3 bits.");
    CHECK_THAT(study::ptq::pick_summary({}), Contains("nothing to pick"));
}

TEST_CASE("ptq grid: one pick for every width reads as one sentence", "[study][ptq]") {
    study::Cells cells;
    add(cells, "lora+single", 3, {0.3, 0.2, 0.1});
    add(cells, "lora+single", 4, {0.03, 0.02, 0.01});
    const auto picks = study::ptq::picks(cells, all_arms(), {"gptq"}, "gap", 6);  // no gptq cells: nothing replaces
    REQUIRE(picks.size() == 2);
    CHECK(study::ptq::pick_summary(picks) == "What a user should pick: lora+single at every width measured (3, 4 bits).");
}

TEST_CASE("generated section: replaced between its markers, appended when absent, refused when damaged", "[study]") {
    const std::string b = "<!-- begin -->", e = "<!-- end -->";
    CHECK(study::replace_generated_section("# Page\nhand text\n", b, e, "numbers") ==
          "# Page\nhand text\n\n<!-- begin -->\nnumbers\n<!-- end -->\n");
    const std::string page = "# Page\nbefore\n<!-- begin -->\nold\nlines\n<!-- end -->\nafter\n";
    CHECK(study::replace_generated_section(page, b, e, "new\n") == "# Page\nbefore\n<!-- begin -->\nnew\n<!-- end -->\nafter\n");
    CHECK_THROWS_WITH(study::replace_generated_section("x\n<!-- begin -->\n", b, e, "n"), Contains("without its partner"));
    CHECK_THROWS_WITH(study::replace_generated_section("<!-- end -->\n<!-- begin -->\n", b, e, "n"), Contains("wrong order"));
    CHECK_THROWS_WITH(study::replace_generated_section("<!-- begin -->\n<!-- begin -->\n<!-- end -->\n", b, e, "n"),
                      Contains("twice"));
}
