// Incremental decoding with a key/value cache (examples/common/tiny_llama/decode.hpp): a prompt processed in one pass,
// then a chunk, then token by token, gives the full forward pass's logits at every position, for the fp32 model and
// the quantized one; the same bits on 1 and 2 threads; bad input is refused by name.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <npft/core/random.hpp>
#include <npft/quant/nonuniform.hpp>
#include <npft/quant/quantizer.hpp>
#include <npft/quant/uniform.hpp>

#include "tiny_llama/decode.hpp"

using npft::Index;
using npft::Matrix;
using tiny_llama::Config;
using tiny_llama::KvCache;
using tiny_llama::Model;
using tiny_llama::TokenRows;
namespace cpu = npft::kernels::cpu;

namespace {

// Grouped-query attention (4 query heads over 2 key/value heads); hidden 128 and vocab 72 span two feature tiles of
// 64; dim and hidden are multiples of 32, so the int8-activation kernels apply to per-channel weights.
Config decode_config() {
    Config c;
    c.vocab = 72;
    c.layers = 2;
    c.dim = 64;
    c.heads = 4;
    c.kv_heads = 2;
    c.hidden = 128;
    c.context = 40;
    return c;
}

TokenRows random_tokens(const Config& c, Index sequences, Index length, std::uint64_t draw) {
    TokenRows rows(static_cast<std::size_t>(sequences));
    const npft::RandomKey key{draw, 17};
    for (Index s = 0; s < sequences; ++s)
        for (Index t = 0; t < length; ++t)
            rows[static_cast<std::size_t>(s)].push_back(static_cast<tiny_llama::Token>(
                npft::uniform01(key, static_cast<std::uint64_t>(s * length + t)) * static_cast<float>(c.vocab)));
    return rows;
}

TokenRows slice(const TokenRows& rows, Index begin, Index end) {
    TokenRows out;
    for (const auto& r : rows) out.emplace_back(r.begin() + begin, r.begin() + end);
    return out;
}

/// The logits of every position, computed the way a generator would: a prompt of 7 tokens in one pass, a chunk of 3,
/// then one token at a time; rows laid out as the full forward lays them out (sequence by sequence).
template <class AnyModel>
Matrix incremental_logits(const AnyModel& model, const Config& c, const TokenRows& tokens) {
    const Index sequences = static_cast<Index>(tokens.size()), length = static_cast<Index>(tokens.front().size());
    KvCache cache(c, sequences);
    Matrix all(sequences * length, c.vocab);
    Index done = 0;
    const auto run = [&](Index count) {
        const Matrix logits = tiny_llama::extend(model, slice(tokens, done, done + count), cache);
        for (Index s = 0; s < sequences; ++s) all.middleRows(s * length + done, count) = logits.middleRows(s * count, count);
        done += count;
        CHECK(cache.length() == done);
    };
    run(7);
    run(3);
    while (done < length) run(1);
    return all;
}

/// Largest |a - b| of each row over max(1, max |b| of that row): the difference in units of the row's logit scale.
double scaled_difference(const Matrix& a, const Matrix& b) {
    REQUIRE(a.rows() == b.rows());
    REQUIRE(a.cols() == b.cols());
    double worst = 0.0;
    for (Index r = 0; r < a.rows(); ++r) {
        const double scale = std::max(1.0, static_cast<double>(b.row(r).cwiseAbs().maxCoeff()));
        worst = std::max(worst, static_cast<double>((a.row(r) - b.row(r)).cwiseAbs().maxCoeff()) / scale);
    }
    return worst;
}

bool same_bits(const Matrix& a, const Matrix& b) {
    return a.rows() == b.rows() && a.cols() == b.cols() &&
           std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(float)) == 0;
}

// The cached and the full pass compute the same sums in other orders (other product shapes, other softmax lengths).
// A float sum of n terms is within about n u of exact relative to the sum of |terms| (u = 2^-24); the longest sums
// here have n = hidden = 128 terms, and the logits' scale is of the order of those sums, so the two passes should agree
// within 2 hidden u = 1.5e-5 of the row's scale (observed: 2e-7). A wrong position or a stale key moves logits by a
// sizeable part of their scale.
constexpr double fp32_tolerance = 2.0 * 128.0 / 16777216.0;
// int8 activations round each activation to a step of max|x_block| / 127. The two passes feed the kernel inputs that
// differ in the last bits, which can move an activation that sits near a half step to the neighbouring step: one of
// the K >= 64 terms of a sum moves by at most one step, about 1/(127 K) of the sum's scale for activations of similar
// size. Allow 8 such flips, 9.8e-4 of the row's scale (observed: 2e-4; a key at the wrong position or rotated at the
// wrong position: 1e-2 and 2.4e-3).
constexpr double int8_tolerance = 8.0 / (127.0 * 64.0);

void quantize_all(tiny_llama::QuantizedModel& q, const Model& model, const npft::quant::Quantizer<npft::quant::UniformGrid>& rtn) {
    for (Index l = 0; l < model.config().layers; ++l)
        for (const auto kind : tiny_llama::linear_kinds)
            q.set_linear(tiny_llama::linear_name(l, kind),
                         tiny_llama::PackedLinear(rtn.quantize(model.weights().layers[static_cast<std::size_t>(l)].linear(kind))));
}

}  // namespace

TEST_CASE("decode: prompt, chunk and single tokens give the full forward's logits (fp32)", "[llama][decode]") {
    const Config c = decode_config();
    const Model model(c, 3);
    for (const Index sequences : {Index{1}, Index{2}}) {
        CAPTURE(sequences);
        const TokenRows tokens = random_tokens(c, sequences, 30, 5);
        const Matrix full = tiny_llama::forward_logits(c, model.weights(), model.rope(),
                                                       tiny_llama::DenseLinears{&model.weights(), 1}, tokens);
        const Matrix incremental = incremental_logits(model, c, tokens);
        CHECK(scaled_difference(incremental, full) <= fp32_tolerance);
        // The logits are not all alike: a mix-up of positions would show.
        CHECK((full.row(0) - full.row(1)).cwiseAbs().maxCoeff() > 0.05f);
    }
}

TEST_CASE("decode: the last-row logits are the last rows of all of them", "[llama][decode]") {
    const Config c = decode_config();
    const Model model(c, 3);
    const TokenRows tokens = random_tokens(c, 2, 12, 6);
    KvCache all_rows(c, 2), last_rows(c, 2);
    const Matrix all = tiny_llama::extend(model, tokens, all_rows);
    const Matrix last = tiny_llama::extend(model, tokens, last_rows, tiny_llama::LogitRows::last);
    REQUIRE(last.rows() == 2);
    CHECK(scaled_difference(last.row(0), all.row(11)) <= fp32_tolerance);
    CHECK(scaled_difference(last.row(1), all.row(23)) <= fp32_tolerance);
    CHECK(same_bits(last_rows.keys(1), all_rows.keys(1)));
}

TEST_CASE("decode: the same bits on 1 and 2 threads", "[llama][decode][threads]") {
    const Config c = decode_config();
    Model model(c, 4);
    const TokenRows tokens = random_tokens(c, 2, 25, 7);
    model.set_threads(1);
    const Matrix one = incremental_logits(model, c, tokens);
    model.set_threads(2);
    const Matrix two = incremental_logits(model, c, tokens);
    CHECK(same_bits(one, two));

    tiny_llama::QuantizedModel q(model);
    quantize_all(q, model, npft::quant::Quantizer(npft::quant::UniformGrid(4, 32)));
    for (const auto activations : {cpu::Activations::int8, cpu::Activations::fp32}) {
        q.set_multiply_options({.threads = 1, .activations = activations});
        const Matrix q_one = incremental_logits(q, c, tokens);
        q.set_multiply_options({.threads = 2, .activations = activations});
        CHECK(same_bits(q_one, incremental_logits(q, c, tokens)));
    }
}

TEST_CASE("decode: the quantized model's incremental logits equal its full forward's", "[llama][decode][quantized]") {
    const Config c = decode_config();
    const Model model(c, 8);
    tiny_llama::QuantizedModel q(model);
    quantize_all(q, model, npft::quant::Quantizer(npft::quant::UniformGrid(4)));  // per channel
    const TokenRows tokens = random_tokens(c, 2, 30, 9);
    for (const auto activations : {cpu::Activations::fp32, cpu::Activations::int8}) {
        CAPTURE(activations == cpu::Activations::int8);
        q.set_multiply_options({.threads = 1, .activations = activations});
        const Matrix full = tiny_llama::forward_logits(c, model.weights(), model.rope(), q.linears(), tokens);
        const Matrix incremental = incremental_logits(q, c, tokens);
        CHECK(scaled_difference(incremental, full) <= (activations == cpu::Activations::int8 ? int8_tolerance : fp32_tolerance));
    }
}

TEST_CASE("decode: bad input is refused by name", "[llama][decode][errors]") {
    const Config c = decode_config();
    const Model model(c, 3);
    KvCache cache(c);
    const auto message_of = [&](const TokenRows& tokens) {
        try {
            tiny_llama::extend(model, tokens, cache);
        } catch (const npft::Error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    CHECK_THAT(message_of({{}}), Catch::Contains("prompt is empty"));
    CHECK_THAT(message_of({{1}, {2}}), Catch::Contains("got 2 sequences"));
    CHECK_THAT(message_of({{1, 72}}), Catch::Contains("token 72 is outside the vocabulary"));
    CHECK_THAT(message_of({{1, -1}}), Catch::Contains("token -1 is outside the vocabulary"));
    CHECK(cache.length() == 0);  // refused calls cache nothing

    tiny_llama::extend(model, random_tokens(c, 1, 38, 1), cache);
    CHECK_THAT(message_of(random_tokens(c, 1, 3, 2)), Catch::Contains("positions 38 to 40 are past the context of 40"));
    CHECK(cache.length() == 38);
    tiny_llama::extend(model, random_tokens(c, 1, 2, 2), cache);  // exactly fills the context
    CHECK_THAT(message_of({{1}}), Catch::Contains("positions 40 to 40 are past the context of 40"));

    Config other = c;
    other.layers = 3;
    KvCache wrong(other);
    CHECK_THROWS_WITH(tiny_llama::extend(model, {{1}}, wrong), Catch::Contains("does not fit the model"));
    CHECK_THROWS_WITH(KvCache(c, 0), Catch::Contains("at least one sequence"));
    tiny_llama::QuantizedModel incomplete(model);
    KvCache fresh(c);
    CHECK_THROWS_WITH(tiny_llama::extend(incomplete, {{1}}, fresh), Catch::Contains("0 of 14 linear layers installed"));
}
