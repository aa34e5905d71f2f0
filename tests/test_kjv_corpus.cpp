// The KJV corpus of the examples: parsing of `bible` output, and a split that is disjoint and covers the text.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <set>
#include <string>

#include "kjv_corpus.hpp"

namespace {

// Three books in `bible`'s format, with a digit-led name and a two-digit chapter.
const char* const sample =
    "Ruth1:1 Now it came to pass.\n"
    "Ruth1:2 And the name of the man.\n"
    "1Sm12:3 Behold, here I am.\n"
    "Mark16:20 And they went forth.\n";

std::size_t count_lines(const std::string& s) { return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n')); }

}  // namespace

TEST_CASE("kjv: parse_books groups verses by book and drops the references", "[kjv]") {
    const auto books = kjv::parse_books(sample);
    REQUIRE(books.size() == 3);
    CHECK(books[0].name == "Ruth");
    CHECK(books[0].verses == 2);
    CHECK(books[0].text == "Now it came to pass.\nAnd the name of the man.\n");
    CHECK(books[1].name == "1Sm");
    CHECK(books[1].text == "Behold, here I am.\n");
    CHECK(books[2].name == "Mark");
    CHECK(books[2].text == "And they went forth.\n");
}

TEST_CASE("kjv: a line without a verse reference is a clear error", "[kjv]") {
    CHECK_THROWS_WITH(kjv::parse_books("Ge1:1 ok\nnot a verse\n"), Catch::Contains("line 2") && Catch::Contains("verse reference"));
    CHECK_THROWS_WITH(kjv::parse_books("\n\n"), Catch::Contains("no verses"));
    CHECK_THROWS_WITH(kjv::split_by_book(kjv::parse_books(sample)), Catch::Contains("held-out books"));
}

TEST_CASE("kjv: the split of the whole bible is by book, disjoint, and covers every verse", "[kjv]") {
    const std::string raw = kjv::run_bible();
    const auto books = kjv::parse_books(raw);
    REQUIRE(books.size() == 66);
    std::size_t verses = 0, bytes = 0;
    for (const auto& b : books) {
        verses += b.verses;
        bytes += b.text.size();
    }
    CHECK(verses == 31102);
    CHECK(count_lines(raw) == 31102);

    const kjv::Corpus c = kjv::split_by_book(books);
    // Disjoint and covering: every book lands in exactly one split, and the bytes add up.
    std::multiset<std::string> seen;
    for (const auto* parts : {&c.train_parts, &c.validation_parts, &c.test_parts})
        for (const auto& name : *parts) seen.insert(name);
    CHECK(seen.size() == 66);
    for (const auto& b : books) CHECK(seen.count(b.name) == 1);
    CHECK(c.train.size() + c.validation.size() + c.test.size() == bytes);
    CHECK(count_lines(c.train) + count_lines(c.validation) + count_lines(c.test) == 31102);
    CHECK(c.test_parts == std::vector<std::string>{"Job", "Eccl", "John", "1Jn"});
    CHECK(c.validation_parts == std::vector<std::string>{"SSol", "Lam", "Jas", "Rev"});  // canonical order
    // Test text is never seen in training: a distinctive held-out verse is absent from train.
    CHECK(c.test.find("Where wast thou when I laid the foundations of the earth?") != std::string::npos);
    CHECK(c.train.find("Where wast thou when I laid the foundations of the earth?") == std::string::npos);
    // Test 5-10% of the corpus, as the split's comment says.
    const double test_share = static_cast<double>(c.test.size()) / static_cast<double>(bytes);
    CHECK(test_share > 0.05);
    CHECK(test_share < 0.10);
    CHECK(c.train.size() > 3700000);
}

TEST_CASE("kjv: load_kjv writes a cache and reads it back identically", "[kjv]") {
    const auto dir = std::filesystem::temp_directory_path() / "npft_test_kjv_cache";
    std::filesystem::create_directories(dir);
    const auto cache = dir / "kjv.txt";
    std::filesystem::remove(cache);
    const kjv::Corpus first = kjv::load_kjv(cache);
    REQUIRE(std::filesystem::exists(cache));
    const kjv::Corpus second = kjv::load_kjv(cache);
    CHECK(first.train == second.train);
    CHECK(first.test == second.test);
    std::filesystem::remove_all(dir);
}

TEST_CASE("kjv: split_text divides any text 90/5/5 at line boundaries", "[kjv]") {
    std::string text;
    for (int i = 0; i < 100; ++i) text += "line " + std::to_string(i) + "\n";
    const kjv::Corpus c = kjv::split_text(text, "numbers");
    CHECK(c.train + c.validation + c.test == text);
    CHECK(count_lines(c.train) == 90);
    CHECK(count_lines(c.validation) == 5);
    CHECK(count_lines(c.test) == 5);
    CHECK(c.test.rfind("line 95\n", 0) == 0);
    CHECK_THROWS_WITH(kjv::split_text("a\nb\n", "short"), Catch::Contains("at least 20 lines"));
}

TEST_CASE("kjv: an unreadable text file is a clear error", "[kjv]") {
    CHECK_THROWS_WITH(kjv::read_text_file("/nonexistent/npft/corpus.txt"), Catch::Contains("cannot read text file"));
}
