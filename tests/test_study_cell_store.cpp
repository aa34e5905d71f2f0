// The study's resumable cell store: exact round trips, each cell computed once, no reuse across fingerprints, and
// clear errors for corrupt, truncated or mislabelled cell files.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

#include <unistd.h>

#include "study/cell_store.hpp"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

struct TempDir {
    fs::path path;
    TempDir() : path(fs::temp_directory_path() / ("npft_cells_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++))) {
        fs::remove_all(path);
    }
    ~TempDir() { fs::remove_all(path); }
    static int& counter() {
        static int n = 0;
        return n;
    }
};

study::CellKey key(const std::string& arm, int seed) {
    return {{{"model", "m0"}, {"arm", arm}, {"bits", "3"}, {"seed", std::to_string(seed)}}};
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

}  // namespace

TEST_CASE("a cell round-trips every double exactly, NaN as NaN", "[study]") {
    TempDir dir;
    study::CellStore store(dir.path, "fp1");
    const study::CellResult result = {{"gap", 0.1},
                                      {"tiny", 1e-300},
                                      {"negative_zero", -0.0},
                                      {"third", 1.0 / 3.0},
                                      {"missing", std::numeric_limits<double>::quiet_NaN()}};
    store.save(key("rtn", 1), result);
    const auto back = store.find(key("rtn", 1));
    REQUIRE(back.has_value());
    REQUIRE(back->size() == result.size());
    for (const auto& [name, value] : result) {
        CAPTURE(name);
        if (std::isnan(value)) CHECK(std::isnan(back->at(name)));
        else CHECK(same_bits(back->at(name), value));
    }
    CHECK_FALSE(store.find(key("rtn", 2)).has_value());
}

TEST_CASE("get_or_run computes a cell once and resumes from the stored one", "[study]") {
    TempDir dir;
    int runs = 0;
    const auto run = [&] {
        ++runs;
        return study::CellResult{{"gap", 0.25 * runs}};
    };
    {
        study::CellStore store(dir.path, "fp1");
        CHECK(store.get_or_run(key("npft", 1), run).at("gap") == 0.25);
        CHECK(store.get_or_run(key("npft", 1), run).at("gap") == 0.25);
        CHECK(store.computed() == 1);
        CHECK(store.reused() == 1);
    }
    study::CellStore resumed(dir.path, "fp1");  // a later sitting
    CHECK(resumed.get_or_run(key("npft", 1), run).at("gap") == 0.25);
    CHECK(runs == 1);
    CHECK(resumed.all().size() == 1);

    // Another fingerprint (a changed recipe) never reuses the old number.
    study::CellStore changed(dir.path, "fp2");
    CHECK_FALSE(changed.find(key("npft", 1)).has_value());
    CHECK(changed.get_or_run(key("npft", 1), run).at("gap") == 0.5);
    CHECK(runs == 2);
    CHECK(changed.all().size() == 1);
    CHECK(resumed.all().empty());  // the file now belongs to fp2
}

TEST_CASE("distinct keys map to distinct files; bad tokens are refused", "[study]") {
    CHECK(key("rtn", 1).file_name() == "model-m0_arm-rtn_bits-3_seed-1.json");
    CHECK(key("rtn", 1).file_name() != key("rtn", 11).file_name());
    CHECK(key("npft+gptq", 1).at("arm") == "npft+gptq");
    CHECK_THROWS_WITH(key("a_b", 1).file_name(), Contains("'a_b' may hold only letters"));
    CHECK_THROWS_WITH(key("a b", 1).file_name(), Contains("may hold only"));
    CHECK_THROWS_WITH(key("", 1).file_name(), Contains("must not be empty"));
    CHECK_THROWS_WITH(key("rtn", 1).at("grid"), Contains("has no field 'grid'"));
}

TEST_CASE("corrupt, truncated and mislabelled cell files are errors that name the file", "[study]") {
    TempDir dir;
    study::CellStore store(dir.path, "fp1");
    store.save(key("rtn", 1), {{"gap", 1.5}});
    const fs::path file = dir.path / key("rtn", 1).file_name();
    std::string text;
    {
        std::ifstream in(file);
        text.assign(std::istreambuf_iterator<char>(in), {});
    }
    std::ofstream(file, std::ios::trunc) << text.substr(0, text.size() / 2);
    CHECK_THROWS_WITH(store.find(key("rtn", 1)), Contains(file.string()) && Contains("not valid JSON"));

    std::ofstream(file, std::ios::trunc) << R"({"fingerprint": "fp1", "key": {"model": "m0"}, "result": {}})";
    CHECK_THROWS_WITH(store.find(key("rtn", 1)), Contains("holds the key 'model=m0'"));

    std::ofstream(file, std::ios::trunc) << R"({"fingerprint": "fp1", "key": {}, "result": {"gap": "1.5"}})";
    CHECK_THROWS_WITH(store.all(), Contains("'gap' must be a number or null"));

    std::ofstream(file, std::ios::trunc) << R"({"fingerprint": "fp1", "result": {}})";
    CHECK_THROWS_WITH(store.all(), Contains("has no 'key'"));
}
