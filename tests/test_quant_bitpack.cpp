// Bit-packed code storage: exact layout and round trips for every width.
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include <npft/npft.hpp>

namespace npft_test {
using npft::Index;  // hides ::index from <strings.h>
using namespace npft;
using namespace npft::quant;

namespace {
std::uint32_t random_code(std::uint64_t seed, std::uint64_t i, int bits) {
    return random_words({seed, 9}, i)[0] & ((1u << bits) - 1u);
}
}  // namespace

TEST_CASE("3-bit layout, hand-built: codes 0..7 repeated, rows padded to 32 codes", "[bitpack]") {
    // Row of 11 codes: 0 1 2 3 4 5 6 7 0 1 2 -> stream bits 3j..3j+2 hold code j, little endian.
    PackedCodes codes(1, 11, 3);
    for (Index j = 0; j < 11; ++j) codes.set(0, j, static_cast<std::uint32_t>(j % 8));
    REQUIRE(codes.words_per_row() == 3);  // one block of 32 codes = 3 words
    // Word 0 holds codes 0..9 (30 bits) and the low 2 bits of code 10 (= 2 = 0b010 -> low bits 0b10):
    //   code j at bits 3j: 0 | 1<<3 | 2<<6 | 3<<9 | 4<<12 | 5<<15 | 6<<18 | 7<<21 | 0<<24 | 1<<27 | (2 & 3)<<30
    const std::uint32_t word0 = (1u << 3) | (2u << 6) | (3u << 9) | (4u << 12) | (5u << 15) | (6u << 18) | (7u << 21) |
                                (0u << 24) | (1u << 27) | (2u << 30);
    CHECK(codes.words()[0] == word0);
    CHECK(codes.words()[0] == 0x88FAC688u);
    // Code 10's high bit (2 >> 2 = 0) spills into word 1; padding codes are zero.
    CHECK(codes.words()[1] == 0u);
    CHECK(codes.words()[2] == 0u);
    // A code straddling words 0 and 1: code 10 = 7 sets bits 30, 31 of word 0 and bit 0 of word 1.
    codes.set(0, 10, 7u);
    CHECK(codes.words()[0] == (word0 | 0xC0000000u));
    CHECK(codes.words()[1] == 1u);
    CHECK(codes.get(0, 10) == 7u);
    CHECK(codes.bytes() == 12u);
}

TEST_CASE("packed words per row: bits * ceil(cols / 32)", "[bitpack]") {
    CHECK(packed_words_per_row(1, 2) == 2);
    CHECK(packed_words_per_row(32, 3) == 3);
    CHECK(packed_words_per_row(33, 3) == 6);
    CHECK(packed_words_per_row(4096, 4) == 512);
    CHECK(packed_words_per_row(4096, 3) == 384);
    CHECK(packed_words_per_row(100, 8) == 32);
}

TEST_CASE("pack/unpack round trip for every width and odd shapes", "[bitpack]") {
    const std::vector<std::pair<Index, Index>> shapes = {{1, 1}, {3, 31}, {2, 32}, {5, 33}, {7, 97}, {4, 130}};
    for (int bits = 2; bits <= 8; ++bits) {
        for (const auto& [rows, cols] : shapes) {
            PackedCodes codes(rows, cols, bits);
            REQUIRE(codes.words().size() == static_cast<std::size_t>(rows * bits * ((cols + 31) / 32)));
            std::uint64_t i = 0;
            for (Index r = 0; r < rows; ++r)
                for (Index c = 0; c < cols; ++c) codes.set(r, c, random_code(static_cast<std::uint64_t>(bits), i++, bits));
            i = 0;
            bool all_equal = true;
            for (Index r = 0; r < rows; ++r)
                for (Index c = 0; c < cols; ++c) all_equal &= codes.get(r, c) == random_code(static_cast<std::uint64_t>(bits), i++, bits);
            CHECK(all_equal);

            // The bulk row packer writes exactly the same words, padding included.
            PackedCodes bulk(rows, cols, bits);
            i = 0;
            for (Index r = 0; r < rows; ++r) {
                std::vector<std::uint8_t> row(static_cast<std::size_t>(cols));
                for (auto& code : row) code = static_cast<std::uint8_t>(random_code(static_cast<std::uint64_t>(bits), i++, bits));
                pack_row(row.data(), cols, bits, bulk.row_words(r));
            }
            CHECK(bulk.words() == codes.words());
        }
    }
}

TEST_CASE("rewriting a code clears its old bits and leaves neighbours alone", "[bitpack]") {
    for (int bits = 2; bits <= 8; ++bits) {
        const std::uint32_t max = (1u << bits) - 1u;
        PackedCodes codes(1, 64, bits);
        for (Index j = 0; j < 64; ++j) codes.set(0, j, max);
        for (Index j = 0; j < 64; j += 3) codes.set(0, j, 0u);
        for (Index j = 0; j < 64; ++j) CHECK(codes.get(0, j) == (j % 3 == 0 ? 0u : max));
    }
}

TEST_CASE("bad codes and widths are rejected", "[bitpack]") {
    CHECK_THROWS_WITH(PackedCodes(2, 2, 1), Catch::Contains("bits must be between 2 and 8, got 1"));
    CHECK_THROWS_WITH(PackedCodes(2, 2, 9), Catch::Contains("bits must be between 2 and 8, got 9"));
    CHECK_THROWS_WITH(PackedCodes(-1, 2, 4), Catch::Contains("non-negative"));
    PackedCodes codes(1, 4, 3);
    CHECK_THROWS_WITH(codes.set(0, 0, 8u), Catch::Contains("code 8 does not fit in 3 bits"));
}

}  // namespace npft_test
