#pragma once
// The King James Bible as a language-modelling corpus, split by book so that test text is never seen in training.
//
// Source: Debian's bible-kjv package; `bible -f "Gen1:1-Rev22:21"` prints the 31,102 verses (66 books) one per line as
// "Ge1:1 In the beginning God created the heaven and the earth." The reference prefix is dropped; each book becomes its
// verses joined by newlines, and each split is its books in canonical order, each book ending in a newline.
//
// The fixed split (5.6% test, 2.6% validation, by bytes):
//   test       = Job, Ecclesiastes, John, 1 John         (poetry, wisdom, gospel, epistle)
//   validation = Song of Solomon, Lamentations, Revelation, James
//   train      = the other 58 books
// The held-out books were chosen for having no near-verbatim parallels in the training books: 1.7% of the test bytes
// and 1.6% of the validation bytes lie in a 32-byte span that occurs verbatim in the training split (mostly stock
// phrases such as "and it came to pass"; corpus::verbatim_share in verbatim_overlap.hpp measures it, the demo prints it).
// The earlier split (Ruth, Ecclesiastes, Mark, 1 John) had 15.8%: Mark repeats Matthew and Luke. John goes with 1 John,
// its closest relative, so neither is a parallel of the other's training text; the synoptic gospels, Samuel / Kings /
// Chronicles, Ezra / Nehemiah and Jude / 2 Peter all train.
// Any other text file can stand in (split_text): the first 90% of its lines train, the next 5% validate, the last 5% test.
#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <npft/core/error.hpp>
#include <npft/io/atomic_file.hpp>

namespace kjv {

/// One book: its name as `bible` abbreviates it ("Ge", "1Sm", "Rev") and its verses, one per line.
struct Book {
    std::string name;
    std::string text;
    std::size_t verses = 0;
};

/// A train / validation / test split of a corpus.
struct Corpus {
    std::string name;
    std::string train, validation, test;
    std::vector<std::string> train_parts, validation_parts, test_parts;  // book names (or line ranges for a plain file)
};

inline constexpr std::array<std::string_view, 4> test_books = {"Job", "Eccl", "John", "1Jn"};
inline constexpr std::array<std::string_view, 4> validation_books = {"SSol", "Lam", "Rev", "Jas"};
inline constexpr const char* bible_command = "bible -f \"Gen1:1-Rev22:21\"";

/// Splits `bible` output into books in their order of appearance. Every non-empty line must start with a reference.
inline std::vector<Book> parse_books(std::string_view raw) {
    std::vector<Book> books;
    std::size_t line_number = 0;
    while (!raw.empty()) {
        const std::size_t end = raw.find('\n');
        std::string_view line = raw.substr(0, end);
        raw = end == std::string_view::npos ? std::string_view{} : raw.substr(end + 1);
        ++line_number;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) continue;
        // Reference: optional leading digit, letters (the book), chapter digits, ':', verse digits, one space.
        std::size_t i = 0;
        if (std::isdigit(static_cast<unsigned char>(line[i]))) ++i;
        const std::size_t letters = i;
        while (i < line.size() && std::isalpha(static_cast<unsigned char>(line[i]))) ++i;
        const std::size_t book_end = i;
        while (i < line.size() && std::isdigit(static_cast<unsigned char>(line[i]))) ++i;
        const bool has_chapter = i > book_end;
        const bool has_colon = i < line.size() && line[i] == ':';
        if (has_colon) ++i;
        const std::size_t verse_start = i;
        while (i < line.size() && std::isdigit(static_cast<unsigned char>(line[i]))) ++i;
        npft::require(book_end > letters && has_chapter && has_colon && i > verse_start && i < line.size() && line[i] == ' ',
                      "bible text line ", line_number, " does not start with a verse reference such as 'Ge1:1 ': '",
                      std::string(line.substr(0, 40)), "'");
        const std::string_view name = line.substr(0, book_end);
        if (books.empty() || books.back().name != name) books.push_back(Book{std::string(name), {}, 0});
        books.back().text.append(line.substr(i + 1));
        books.back().text.push_back('\n');
        ++books.back().verses;
    }
    npft::require(!books.empty(), "the bible text holds no verses");
    return books;
}

/// The fixed split by book (see the top of this file). Throws if a held-out book is missing from `books`.
inline Corpus split_by_book(const std::vector<Book>& books) {
    Corpus c;
    c.name = "kjv";
    const auto contains = [](const auto& list, const std::string& name) {
        return std::find(list.begin(), list.end(), name) != list.end();
    };
    for (const Book& b : books) {
        if (contains(test_books, b.name)) {
            c.test += b.text;
            c.test_parts.push_back(b.name);
        } else if (contains(validation_books, b.name)) {
            c.validation += b.text;
            c.validation_parts.push_back(b.name);
        } else {
            c.train += b.text;
            c.train_parts.push_back(b.name);
        }
    }
    npft::require(c.test_parts.size() == test_books.size() && c.validation_parts.size() == validation_books.size(),
                  "the bible text lacks some held-out books (need ", test_books.size(), " test and ", validation_books.size(),
                  " validation books, found ", c.test_parts.size(), " and ", c.validation_parts.size(), ")");
    return c;
}

/// Any text: the first 90% of its lines train, the next 5% validate, the last 5% test (lines keep their newlines).
inline Corpus split_text(const std::string& text, std::string name) {
    std::vector<std::size_t> starts;  // byte offset of each line
    for (std::size_t at = 0; at < text.size();) {
        starts.push_back(at);
        const std::size_t end = text.find('\n', at);
        at = end == std::string::npos ? text.size() : end + 1;
    }
    npft::require(starts.size() >= 20, "text '", name, "' must have at least 20 lines to split into train/validation/test, got ",
                  starts.size());
    const std::size_t lines = starts.size();
    const std::size_t train_end = lines * 90 / 100, validation_end = lines * 95 / 100;
    const auto offset = [&](std::size_t line) { return line < lines ? starts[line] : text.size(); };
    Corpus c;
    c.name = std::move(name);
    c.train = text.substr(0, offset(train_end));
    c.validation = text.substr(offset(train_end), offset(validation_end) - offset(train_end));
    c.test = text.substr(offset(validation_end));
    c.train_parts = {"lines 1-" + std::to_string(train_end)};
    c.validation_parts = {"lines " + std::to_string(train_end + 1) + "-" + std::to_string(validation_end)};
    c.test_parts = {"lines " + std::to_string(validation_end + 1) + "-" + std::to_string(lines)};
    return c;
}

inline std::string read_text_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    npft::require(in.good(), "cannot read text file '", path.string(), "': it does not exist or is not readable");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    npft::require(!in.bad(), "error while reading text file '", path.string(), "'");
    npft::require(!text.empty(), "text file '", path.string(), "' is empty");
    return text;
}

/// The output of `bible -f "Gen1:1-Rev22:21"`, with a clear error when the program is missing or fails.
inline std::string run_bible() {
    const std::string command = std::string("command -v bible >/dev/null 2>&1 && ") + bible_command + " 2>/dev/null";
    FILE* pipe = ::popen(command.c_str(), "r");
    npft::require(pipe != nullptr, "cannot start the 'bible' program");
    std::string out;
    std::array<char, 1 << 16> buffer;
    std::size_t n = 0;
    while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) out.append(buffer.data(), n);
    const int status = ::pclose(pipe);
    npft::require(status == 0 && !out.empty(),
                  "the King James Bible comes from the 'bible' program of Debian's bible-kjv package, which is missing or "
                  "failed: install it (apt-get install bible-kjv) or pass your own text file with --text FILE");
    return out;
}

/// The KJV split. Reads `cache` when it exists (a saved copy of the `bible` output), else runs `bible` and writes the
/// cache (when a path is given) so later runs need neither the program nor its start-up time.
inline Corpus load_kjv(const std::filesystem::path& cache = {}) {
    std::string raw;
    if (!cache.empty() && std::filesystem::exists(cache)) {
        raw = read_text_file(cache);
    } else {
        raw = run_bible();
        if (!cache.empty()) {
            // Durable and atomic (io/atomic_file.hpp): an interrupted run or a full disk never leaves a truncated cache.
            npft::io::write_file_atomically(cache, std::as_bytes(std::span(raw)));
        }
    }
    return split_by_book(parse_books(raw));
}

}  // namespace kjv
