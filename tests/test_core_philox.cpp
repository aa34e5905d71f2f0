// Philox4x32-10 against the published Random123 known-answer vectors (kat_vectors, "philox4x32 10" lines).
#include <catch2/catch.hpp>

#include <npft/npft.hpp>

namespace npft_test {
using npft::Philox4x32;

TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors", "[core][philox]") {
    using C = Philox4x32::Counter;
    using K = Philox4x32::Key;
    CHECK(Philox4x32::generate(C{0u, 0u, 0u, 0u}, K{0u, 0u}) == C{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
    CHECK(Philox4x32::generate(C{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, K{0xffffffffu, 0xffffffffu}) ==
          C{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
    // Counter and key from the digits of pi.
    CHECK(Philox4x32::generate(C{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, K{0xa4093822u, 0x299f31d0u}) ==
          C{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEST_CASE("Philox4x32-10 runs at compile time", "[core][philox]") {
    constexpr auto words = Philox4x32::generate({0u, 0u, 0u, 0u}, {0u, 0u});
    static_assert(words[0] == 0x6627e8d5u && words[3] == 0x9b00dbd8u, "constexpr Philox must match the KAT");
    CHECK(words[1] == 0xe169c58du);
}

TEST_CASE("keyed draws feed (index, stream) as the counter and the seed as the key", "[core][philox]") {
    const npft::RandomKey key{0x0123456789abcdefull, 0xfedcba9876543210ull};
    const std::uint64_t index = 0x1122334455667788ull;
    const auto expected = Philox4x32::generate({0x55667788u, 0x11223344u, 0x76543210u, 0xfedcba98u}, {0x89abcdefu, 0x01234567u});
    CHECK(npft::random_words(key, index) == expected);
    // A one-bit change of counter or key changes about half of the 128 output bits.
    const auto flipped = Philox4x32::generate({0x55667789u, 0x11223344u, 0x76543210u, 0xfedcba98u}, {0x89abcdefu, 0x01234567u});
    int differing = 0;
    for (int w = 0; w < 4; ++w) differing += __builtin_popcount(expected[static_cast<std::size_t>(w)] ^ flipped[static_cast<std::size_t>(w)]);
    CHECK(differing > 40);
    CHECK(differing < 88);
}

}  // namespace npft_test
