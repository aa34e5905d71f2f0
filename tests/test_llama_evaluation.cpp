// Whole-text evaluation of the tiny LLaMA: every token but the first predicted exactly once, and the per-token and
// per-byte figures computed from the same totals.
#include <catch2/catch.hpp>

#include <cmath>
#include <numeric>
#include <vector>

#include "tiny_llama/data.hpp"
#include "tiny_llama/model.hpp"
#include "tiny_llama/tokenizer.hpp"

using tiny_llama::Batch;
using tiny_llama::Token;

namespace {

std::vector<Token> counting_tokens(npft::Index n) {
    std::vector<Token> t(static_cast<std::size_t>(n));
    std::iota(t.begin(), t.end(), 0);
    return t;
}

// Every prediction costs ln 256 nats: the loss of a model that knows nothing about bytes.
struct UniformBytes {
    double loss(const Batch&) const { return std::log(256.0); }
};

// Two bytes per token, as a subword vocabulary would have on average.
struct TwoByteTokens final : tiny_llama::Tokenizer {
    std::vector<Token> encode(std::string_view) const override { return {}; }
    npft::Index vocab_size() const override { return 256; }
    npft::Index bytes_of(Token) const override { return 2; }
    std::string describe() const override { return "two"; }
};

}  // namespace

TEST_CASE("whole_text_batches predicts every token but the first exactly once", "[llama][evaluation]") {
    // 11 tokens, windows of 4 with stride 3: [0,4) [3,7) [6,10) [9,11); the short last window in a batch of its own.
    const auto batches = tiny_llama::whole_text_batches(counting_tokens(11), 4, 2);
    REQUIRE(batches.size() == 3);
    CHECK(batches[0].sequences == std::vector<std::vector<Token>>{{0, 1, 2, 3}, {3, 4, 5, 6}});
    CHECK(batches[1].sequences == std::vector<std::vector<Token>>{{6, 7, 8, 9}});
    CHECK(batches[2].sequences == std::vector<std::vector<Token>>{{9, 10}});
    for (const npft::Index n : {2, 5, 7, 100, 129, 130, 1000}) {
        for (const npft::Index length : {2, 5, 129}) {
            INFO("n " << n << " length " << length);
            std::vector<int> predicted(static_cast<std::size_t>(n), 0);
            for (const Batch& b : tiny_llama::whole_text_batches(counting_tokens(n), length, 16)) {
                for (const auto& s : b.sequences) {
                    CHECK(static_cast<npft::Index>(s.size()) == b.positions() + 1);  // one length per batch
                    for (std::size_t t = 1; t < s.size(); ++t) ++predicted[static_cast<std::size_t>(s[t])];
                }
            }
            CHECK(predicted[0] == 0);
            for (npft::Index t = 1; t < n; ++t) CHECK(predicted[static_cast<std::size_t>(t)] == 1);
        }
    }
    CHECK_THROWS_AS(tiny_llama::whole_text_batches(counting_tokens(1), 4, 2), npft::Error);
    CHECK_THROWS_AS(tiny_llama::whole_text_batches(counting_tokens(10), 1, 2), npft::Error);
}

TEST_CASE("evaluate: perplexity per token and bits per byte from the same totals", "[llama][evaluation]") {
    const auto batches = tiny_llama::whole_text_batches(counting_tokens(200), 16, 4);
    const auto bytes = tiny_llama::evaluate(UniformBytes{}, batches, tiny_llama::ByteTokenizer{});
    CHECK(bytes.predictions == 199);
    CHECK(bytes.bytes == 199);
    CHECK(bytes.perplexity() == Approx(256.0));
    CHECK(bytes.bits_per_byte() == Approx(8.0));  // ln 256 nats per byte = 8 bits
    const auto pairs = tiny_llama::evaluate(UniformBytes{}, batches, TwoByteTokens{});
    CHECK(pairs.bytes == 398);
    CHECK(pairs.perplexity() == Approx(256.0));
    CHECK(pairs.bits_per_byte() == Approx(4.0));  // the same nats spread over twice the bytes
}

TEST_CASE("evaluate agrees with the mean loss of a real model", "[llama][evaluation]") {
    tiny_llama::Config c;
    c.layers = 1;
    c.dim = 16;
    c.heads = 2;
    c.hidden = 24;
    c.context = 8;
    const tiny_llama::Model model(c, 3);
    const tiny_llama::ByteTokenizer bytes;
    const auto tokens = bytes.encode("In the beginning God created the heaven and the earth.\n");
    const auto batches = tiny_llama::whole_text_batches(tokens, c.context + 1, 3);
    const auto e = tiny_llama::evaluate(model, batches, bytes);
    double nats = 0.0;
    for (const Batch& b : batches)
        for (const auto& s : b.sequences) nats += model.loss(Batch{{s}}) * static_cast<double>(s.size() - 1);
    CHECK(e.predictions == static_cast<npft::Index>(tokens.size()) - 1);
    CHECK(e.nats == Approx(nats).epsilon(1e-9));
    CHECK(e.perplexity() == Approx(tiny_llama::perplexity(model, batches)).epsilon(1e-12));
}
