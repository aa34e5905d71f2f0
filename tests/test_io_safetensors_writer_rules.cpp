// The safetensors writer applies the reader's rules before writing: what it accepts, the reader reads back bit for
// bit; what the reader would refuse, the writer refuses with an npft::Error naming the tensor or key.
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "npft/core/random.hpp"
#include "npft/io/safetensors.hpp"

using Catch::Matchers::Contains;
namespace io = npft::io;

namespace {

// An independent UTF-8 check (RFC 3629): decode each sequence to its code point and refuse overlong forms, surrogates
// and code points above U+10FFFF.
bool valid_utf8(const std::string& s) {
    std::size_t i = 0;
    while (i < s.size()) {
        const auto b = static_cast<unsigned char>(s[i]);
        if (b < 0x80) {
            ++i;
            continue;
        }
        std::size_t length = 0;
        std::uint32_t cp = 0;
        if ((b & 0xE0u) == 0xC0u) length = 2, cp = b & 0x1Fu;
        else if ((b & 0xF0u) == 0xE0u) length = 3, cp = b & 0x0Fu;
        else if ((b & 0xF8u) == 0xF0u) length = 4, cp = b & 0x07u;
        else return false;
        if (i + length > s.size()) return false;
        for (std::size_t k = 1; k < length; ++k) {
            const auto c = static_cast<unsigned char>(s[i + k]);
            if ((c & 0xC0u) != 0x80u) return false;
            cp = (cp << 6) | (c & 0x3Fu);
        }
        const std::uint32_t smallest[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < smallest[length] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += length;
    }
    return true;
}

struct Draws {
    npft::RandomKey key;
    std::uint64_t i = 0;
    std::uint32_t next(std::uint32_t bound) { return npft::random_words(key, i++)[0] % bound; }
};

// Names and strings built from pieces that include every kind of invalid UTF-8 the reader refuses.
std::string random_text(Draws& d, std::uint32_t max_pieces) {
    static const std::vector<std::string> pieces = {
        "a", "layer", ".", "_", "0", "\xC3\xA9" /* é */, "\xE2\x82\xAC" /* € */, "\xF0\x9F\x98\x80" /* emoji */,
        "\"", "\\", "\x01", "\t", " ",
        "\xFF", "\x80", "\xC0\xAF" /* overlong '/' */, "\xED\xA0\x80" /* surrogate */, "\xF4\x90\x80\x80" /* > U+10FFFF */,
        "\xE2\x82" /* truncated */};
    std::string out;
    const std::uint32_t n = d.next(max_pieces + 1);
    for (std::uint32_t k = 0; k < n; ++k) out += pieces[d.next(static_cast<std::uint32_t>(pieces.size()))];
    return out;
}

}  // namespace

TEST_CASE("the writer refuses names and metadata that are not valid UTF-8, naming them", "[io][safetensors][writer]") {
    io::SafetensorsWriter w;
    const std::vector<float> one{1.0f};
    CHECK_THROWS_WITH(w.add("bad\xFF", one, {1}), Contains("tensor name 'bad\\xff' is not valid UTF-8"));
    CHECK_THROWS_WITH(w.add("slash\xC0\xAF", one, {1}), Contains("tensor name 'slash\\xc0\\xaf' is not valid UTF-8"));
    CHECK_THROWS_WITH(w.add("half\xED\xA0\x80", one, {1}), Contains("is not valid UTF-8"));
    CHECK_THROWS_WITH(w.add_raw("cut\xE2\x82", io::Dtype::u8, {1}, std::as_bytes(std::span("x", 1))), Contains("is not valid UTF-8"));
    CHECK_THROWS_WITH(w.add_metadata("key\xFE", "v"), Contains("metadata key 'key\\xfe' is not valid UTF-8"));
    CHECK_THROWS_WITH(w.add_metadata("author", "caf\xE9"), Contains("metadata value of 'author' is not valid UTF-8: 'caf\\xe9'"));
    CHECK(w.size() == 0);
    CHECK(w.metadata().empty());
    // Valid multi-byte names and values are fine.
    w.add("caf\xC3\xA9.\xF0\x9F\x98\x80", one, {1});
    w.add_metadata("\xE2\x82\xAC", "\xC3\xA9t\xC3\xA9");
    const io::SafetensorsFile f = io::SafetensorsFile::from_bytes(w.to_bytes());
    CHECK(f.read<float>("caf\xC3\xA9.\xF0\x9F\x98\x80") == one);
    CHECK(f.metadata("\xE2\x82\xAC") == "\xC3\xA9t\xC3\xA9");
}

TEST_CASE("the writer refuses shapes whose byte size overflows, even when it wraps to 0", "[io][safetensors][writer]") {
    io::SafetensorsWriter w;
    const std::span<const std::byte> nothing;
    // 2^62 F32 elements are 2^64 bytes: unchecked, that wraps to 0 and matches an empty buffer.
    CHECK_THROWS_WITH(w.add_raw("big", io::Dtype::f32, {npft::Index{1} << 62}, nothing),
                      Contains("tensor 'big': shape [4611686018427387904] of F32 has a byte size that overflows 64 bits"));
    CHECK_THROWS_WITH(w.add_raw("square", io::Dtype::u8, {npft::Index{1} << 32, npft::Index{1} << 32}, nothing),
                      Contains("tensor 'square'") && Contains("overflows"));
    CHECK_THROWS_WITH(w.add_raw("cube", io::Dtype::i8, {npft::Index{1} << 31, npft::Index{1} << 31, 4}, nothing),
                      Contains("tensor 'cube'") && Contains("overflows"));
    CHECK_THROWS_WITH(w.add("typed", std::vector<double>{}, {npft::Index{1} << 61}), Contains("tensor 'typed'") && Contains("overflows"));
    CHECK_THROWS_WITH(w.add("neg", std::vector<float>{}, {2, -1}), Contains("tensor 'neg': shape [2, -1] has a negative dimension"));
    // The reader counts elements dimension by dimension: [2^62, 2^62, 0] overflows before the 0 (refused by both),
    // [2^62, 0, 2^62] does not (an empty tensor, valid for both).
    CHECK_THROWS_WITH(w.add_raw("late_zero", io::Dtype::u8, {npft::Index{1} << 62, npft::Index{1} << 62, 0}, nothing),
                      Contains("tensor 'late_zero'") && Contains("overflows"));
    const std::string header = R"({"t":{"dtype":"U8","shape":[4611686018427387904,4611686018427387904,0],"data_offsets":[0,0]}})";
    std::vector<std::byte> by_hand(8 + header.size());
    by_hand[0] = static_cast<std::byte>(header.size());
    std::memcpy(by_hand.data() + 8, header.data(), header.size());
    CHECK_THROWS_WITH(io::SafetensorsFile::from_bytes(by_hand), Contains("overflows"));
    w.add_raw("empty", io::Dtype::f64, {npft::Index{1} << 62, 0, npft::Index{1} << 62}, nothing);
    const io::SafetensorsFile f = io::SafetensorsFile::from_bytes(w.to_bytes());
    CHECK(f.info("empty").shape == std::vector<npft::Index>{npft::Index{1} << 62, 0, npft::Index{1} << 62});
    CHECK(f.raw("empty").empty());
}

TEST_CASE("the writer refuses a header over the readers' limit, and accepts one exactly at it", "[io][safetensors][writer]") {
    // {"__metadata__":{"k":"<value>"}} is 25 bytes plus the value: a 99'999'975-byte value makes a 10^8-byte header,
    // already a multiple of 8 (no padding).
    io::SafetensorsWriter at_limit;
    at_limit.add_metadata("k", std::string(99'999'975, 'v'));
    const std::vector<std::byte> bytes = at_limit.to_bytes();
    CHECK(bytes.size() == 8 + 100'000'000);
    CHECK(io::SafetensorsFile::from_bytes(bytes).metadata("k").size() == 99'999'975);

    io::SafetensorsWriter over;
    over.add_metadata("k", std::string(99'999'976, 'v'));
    CHECK_THROWS_WITH(over.to_bytes(), Contains("safetensors header of 100000008 bytes (0 tensors, 1 metadata keys) exceeds "
                                                "the readers' limit of 100000000 bytes"));
}

TEST_CASE("anything the writer accepts, the reader reads back bit for bit (random inputs)", "[io][safetensors][writer]") {
    constexpr int cases = 400;
    int accepted_tensors = 0, refused_tensors = 0, accepted_keys = 0, refused_keys = 0;
    for (int c = 0; c < cases; ++c) {
        Draws d{npft::RandomKey{2026, static_cast<std::uint64_t>(c)}};
        io::SafetensorsWriter w;
        struct Expected {
            io::Dtype dtype;
            std::vector<npft::Index> shape;
            std::vector<std::byte> bytes;
        };
        std::map<std::string, Expected> tensors;
        std::map<std::string, std::string> metadata;

        const std::uint32_t tensor_count = d.next(6);
        for (std::uint32_t t = 0; t < tensor_count; ++t) {
            const std::string name = random_text(d, 4);
            const io::Dtype dtype = io::all_dtypes[d.next(static_cast<std::uint32_t>(io::all_dtypes.size()))];
            std::vector<npft::Index> shape(d.next(4));
            std::size_t numel = 1;
            for (npft::Index& dim : shape) numel *= static_cast<std::size_t>(dim = d.next(5));
            std::vector<std::byte> bytes(numel * io::dtype_size(dtype));
            for (std::byte& b : bytes) b = static_cast<std::byte>(d.next(256));
            const bool should_accept = !name.empty() && valid_utf8(name) && name != "__metadata__" && !tensors.contains(name);
            try {
                w.add_raw(name, dtype, shape, bytes);
                CHECK(should_accept);
                tensors.emplace(name, Expected{dtype, shape, bytes});
                ++accepted_tensors;
            } catch (const npft::Error&) {
                CHECK_FALSE(should_accept);
                ++refused_tensors;
            }
        }
        const std::uint32_t key_count = d.next(4);
        for (std::uint32_t k = 0; k < key_count; ++k) {
            const std::string key = random_text(d, 3), value = random_text(d, 6);
            const bool should_accept = valid_utf8(key) && valid_utf8(value) && !metadata.contains(key);
            try {
                w.add_metadata(key, value);
                CHECK(should_accept);
                metadata.emplace(key, value);
                ++accepted_keys;
            } catch (const npft::Error&) {
                CHECK_FALSE(should_accept);
                ++refused_keys;
            }
        }

        const io::SafetensorsFile f = io::SafetensorsFile::from_bytes(w.to_bytes(), "case " + std::to_string(c));
        REQUIRE(f.size() == tensors.size());
        for (const auto& [name, expected] : tensors) {
            REQUIRE(f.contains(name));
            CHECK(f.info(name).dtype == expected.dtype);
            CHECK(f.info(name).shape == expected.shape);
            const std::span<const std::byte> raw = f.raw(name);
            CHECK(std::vector<std::byte>(raw.begin(), raw.end()) == expected.bytes);
        }
        CHECK(std::map<std::string, std::string>(f.metadata().begin(), f.metadata().end()) == metadata);
    }
    // The generator exercises both sides of every rule.
    CHECK(accepted_tensors > 300);
    CHECK(refused_tensors > 100);
    CHECK(accepted_keys > 100);
    CHECK(refused_keys > 50);
}
