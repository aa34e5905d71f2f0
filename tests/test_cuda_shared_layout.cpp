// The tiled GPU layout (kernels/cuda/tiled_layout.cuh, tiled_conversion.cuh) and the shared dequantizer
// (kernels/cuda/dequant.cuh), tested on the CPU: the conversion is a bijection on the words and decodes bit for bit
// to QuantizedMatrix::dequantize_at.
#include <catch2/catch.hpp>

#include <cstring>
#include <npft/kernels/cuda/dequant.cuh>
#include <npft/kernels/cuda/tiled_conversion.cuh>
#include <npft/kernels/cuda/tiled_layout.cuh>
#include <npft/npft.hpp>

#include "cuda/random_quantized.hpp"

using Index = npft::Index;
using npft::quant::Format;

namespace {

struct Case {
    Format format;
    int bits;
    Index rows, cols, group;
};

const Case cases[] = {
    {Format::uniform_symmetric, 2, 100, 96, 32},   {Format::uniform_asymmetric, 3, 130, 264, 264},
    {Format::uniform_asymmetric, 4, 64, 256, 128}, {Format::uniform_symmetric, 4, 1, 40, 40},
    {Format::uniform_symmetric, 3, 129, 64, 64},   {Format::lut, 3, 77, 72, 72},
    {Format::lut, 4, 128, 160, 160},               {Format::uniform_asymmetric, 8, 5, 64, 32},
};

std::uint32_t bits_of(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

}  // namespace

TEST_CASE("tiled word and metadata indices follow the documented formula", "[cuda][layout]") {
    npft::cuda::TiledShape s;
    s.rows = 100;
    s.cols = 264;
    s.padded_rows = 128;
    s.blocks = 9;
    s.group_size = 264;
    s.groups = 1;
    s.bits = 3;
    CHECK(npft::cuda::tiled_word_index(s, 0, 0, 0) == 0);
    CHECK(npft::cuda::tiled_word_index(s, 1, 2, 5) == (1 * 3 + 2) * 128 + 5);
    CHECK(npft::cuda::tiled_word_index(s, 8, 2, 99) == 26 * 128 + 99);
    // One group per row: the padding codes of the last block (cols 264..287) stay in group 0.
    CHECK(npft::cuda::group_of_block(s, 8) == 0);
    s.group_size = 64;
    s.cols = 256;
    s.groups = 4;
    CHECK(npft::cuda::group_of_block(s, 1) == 0);
    CHECK(npft::cuda::group_of_block(s, 2) == 1);
    CHECK(npft::cuda::group_of_block(s, 7) == 3);
    CHECK(npft::cuda::tiled_metadata_index(s, 3, 7) == 3 * 128 + 7);
    CHECK(npft::cuda::symmetric_zero(4) == 8.0f);
}

TEST_CASE("the tiled conversion is a bijection on the words and round-trips exactly", "[cuda][layout]") {
    std::uint64_t seed = 11;
    for (const Case& c : cases) {
        CAPTURE(npft::quant::format_name(c.format), c.bits, c.rows, c.cols, c.group);
        const auto q = npft::test::random_quantized(c.format, c.bits, c.rows, c.cols, c.group, seed++);
        const npft::cuda::TiledWeights t = npft::cuda::to_tiled(q);
        const auto& s = t.shape;
        CHECK(s.padded_rows % npft::cuda::row_alignment == 0);
        CHECK(s.padded_rows >= c.rows);
        REQUIRE(t.codes.size() == static_cast<std::size_t>(s.blocks * s.bits * s.padded_rows));

        // Every canonical word lands on its own tiled slot; the slots nobody maps to are the zero padding rows.
        std::vector<int> hits(t.codes.size(), 0);
        for (Index r = 0; r < c.rows; ++r)
            for (Index word = 0; word < q.codes().words_per_row(); ++word) {
                const Index at = npft::cuda::tiled_word_index(s, word / c.bits, static_cast<int>(word % c.bits), r);
                REQUIRE(at >= 0);
                REQUIRE(at < static_cast<Index>(t.codes.size()));
                ++hits[static_cast<std::size_t>(at)];
                CHECK(t.codes[static_cast<std::size_t>(at)] == q.codes().row_words(r)[word]);
            }
        Index mapped = 0;
        for (std::size_t i = 0; i < hits.size(); ++i) {
            CHECK(hits[i] <= 1);
            if (hits[i] == 1) ++mapped;
            else CHECK(t.codes[i] == 0u);
        }
        CHECK(mapped == c.rows * q.codes().words_per_row());

        const auto back = npft::cuda::from_tiled(t);
        CHECK(back.format() == q.format());
        CHECK(back.group_size() == q.group_size());
        CHECK(back.codes().words() == q.codes().words());
        CHECK(back.scales() == q.scales());
        CHECK(back.zeros() == q.zeros());
        CHECK(back.lut() == q.lut());
        const auto again = npft::cuda::to_tiled(back);
        CHECK(again.codes == t.codes);
        CHECK(again.scales == t.scales);
        CHECK(again.zeros == t.zeros);
        CHECK(again.lut == t.lut);
    }
}

TEST_CASE("the shared dequantizer decodes the tiled layout bit for bit like dequantize_at", "[cuda][dequant]") {
    std::uint64_t seed = 101;
    for (const Case& c : cases) {
        CAPTURE(npft::quant::format_name(c.format), c.bits, c.rows, c.cols, c.group);
        const auto q = npft::test::random_quantized(c.format, c.bits, c.rows, c.cols, c.group, seed++);
        const auto t = npft::cuda::to_tiled(q);
        const npft::cuda::TiledView v = npft::cuda::view_of(t);
        Index mismatches = 0;
        for (Index r = 0; r < c.rows; ++r)
            for (Index j = 0; j < c.cols; ++j)
                if (bits_of(npft::cuda::dequantize_tiled_at(v, r, j)) != bits_of(q.dequantize_at(r, j))) ++mismatches;
        CHECK(mismatches == 0);
        // Padding rows have zero metadata: they decode to exactly 0 whatever their (zero) codes mean.
        for (Index r = c.rows; r < t.shape.padded_rows; r += 7) CHECK(npft::cuda::dequantize_tiled_at(v, r, 0) == 0.0f);
    }
}

TEST_CASE("load_block_words with compile-time bits gives the canonical codes of a block", "[cuda][dequant]") {
    const auto q = npft::test::random_quantized(Format::uniform_asymmetric, 3, 33, 96, 32, 7);
    const auto t = npft::cuda::to_tiled(q);
    const auto v = npft::cuda::view_of(t);
    for (Index r = 0; r < 33; ++r)
        for (Index kb = 0; kb < 3; ++kb) {
            std::uint32_t words[3];
            npft::cuda::load_block_words<3>(v, kb, r, words);
            for (Index j = 0; j < 32; ++j) CHECK(npft::quant::unpack_code(words, j, 3) == q.codes().get(r, kb * 32 + j));
            const auto p = npft::cuda::affine_params(v, kb, r);
            CHECK(p.scale == q.uniform_params(r, kb).scale);
            CHECK(p.zero == q.uniform_params(r, kb).zero);
        }
}

TEST_CASE("symmetric metadata uses the implicit zero point 2^(bits-1)", "[cuda][dequant]") {
    npft::quant::QuantizedMatrix q(Format::uniform_symmetric, 4, 1, 32, 32);
    npft::quant::UniformParams p;
    p.bits = 4;
    p.scale = 0.5f;
    p.zero = 8.0f;
    q.set_group(0, 0, p);
    q.codes().set(0, 3, 11);  // 0.5 * (11 - 8) = 1.5, computed by hand
    q.codes().set(0, 4, 0);   // 0.5 * (0 - 8) = -4
    const auto t = npft::cuda::to_tiled(q);
    CHECK(t.zeros.empty());
    const auto v = npft::cuda::view_of(t);
    CHECK(npft::cuda::dequantize_tiled_at(v, 0, 3) == 1.5f);
    CHECK(npft::cuda::dequantize_tiled_at(v, 0, 4) == -4.0f);
}

TEST_CASE("group sizes that split a packing block are rejected with a clear message", "[cuda][layout]") {
    const npft::quant::QuantizedMatrix q(Format::uniform_asymmetric, 4, 4, 96, 48);
    CHECK_THROWS_WITH(npft::cuda::to_tiled(q), Catch::Contains("group size 48 must be a multiple of 32"));
}
