// The tiny LLaMA on several threads: training steps give the same bits on 1, 2 and 3 threads (loss, every weight,
// every gradient), and the threaded gradients match finite differences on shapes that span several tiles.
#include <catch2/catch.hpp>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include <npft/core/random.hpp>
#include <npft/train/optimizer.hpp>

#include "tiny_llama/model.hpp"
#include "tiny_llama/parallel.hpp"

using tiny_llama::Batch;
using tiny_llama::Config;
using tiny_llama::Model;

namespace {

// Shapes chosen to cross tile boundaries with a ragged last tile: 3 x 100 = 300 tokens (tiles of 128, 128, 44),
// dim 96 (feature tiles 64 + 32), hidden 160 (64, 64, 32), vocab 72 (64 + 8).
Config multi_tile_config(bool grouped) {
    Config c;
    c.vocab = 72;
    c.layers = 2;
    c.dim = 96;
    c.heads = grouped ? 4 : 3;
    c.kv_heads = grouped ? 2 : 0;
    c.hidden = 160;
    c.context = 100;
    return c;
}

Batch random_batch(const Config& c, npft::Index sequences, npft::Index length, std::uint64_t draw) {
    Batch b;
    const npft::RandomKey key{draw, 91};
    for (npft::Index s = 0; s < sequences; ++s) {
        std::vector<tiny_llama::Token> seq;
        for (npft::Index t = 0; t < length; ++t)
            seq.push_back(static_cast<tiny_llama::Token>(
                npft::uniform01(key, static_cast<std::uint64_t>(s * length + t)) * static_cast<float>(c.vocab)));
        b.sequences.push_back(seq);
    }
    return b;
}

bool same_bits(const npft::Matrix& a, const npft::Matrix& b) {
    return a.rows() == b.rows() && a.cols() == b.cols() &&
           std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(float)) == 0;
}

/// What a few AdamW steps leave: the loss of each step, then every weight and every gradient.
struct Trace {
    std::vector<double> losses;
    std::vector<npft::Matrix> weights, grads;
};

Trace train(const Config& c, int threads, int steps) {
    Model model(c, 7);
    model.set_threads(threads);
    const npft::train::AdamW adamw{.beta1 = 0.9f, .beta2 = 0.95f, .epsilon = 1e-8f, .weight_decay = 0.01f};
    auto params = model.parameters();
    std::vector<npft::train::AdamW::State> states;
    for (const auto& p : params) states.push_back(adamw.make_state(p.value.size()));
    Trace trace;
    // One batch, seen every step, so that the loss must fall (random tokens leave nothing else to learn).
    const Batch batch = random_batch(c, 3, c.context + 1, 0);
    for (int step = 0; step < steps; ++step) {
        trace.losses.push_back(model.loss_and_gradient(batch));
        for (std::size_t i = 0; i < params.size(); ++i) {
            const auto n = static_cast<std::size_t>(params[i].value.size());
            adamw.step(states[i], std::span<float>(params[i].value.data(), n),
                       std::span<const float>(params[i].grad.data(), n), 3e-3f);
        }
    }
    model.weights().for_each([&](const std::string&, const npft::Matrix& m) { trace.weights.push_back(m); });
    for (const auto& p : params) trace.grads.push_back(npft::to_eigen(npft::MatrixView<const float>(p.grad)));
    trace.losses.push_back(model.loss(random_batch(c, 3, c.context + 1, 99)));  // the forward-only path too
    return trace;
}

}  // namespace

TEST_CASE("tiny llama: training steps are bit-identical on 1, 2 and 3 threads", "[llama][threads]") {
    for (const bool grouped : {false, true}) {
        INFO("grouped-query attention: " << grouped);
        const Config c = multi_tile_config(grouped);
        const Trace one = train(c, 1, 3);
        for (const int threads : {2, 3}) {
            INFO(threads << " threads");
            const Trace many = train(c, threads, 3);
            REQUIRE(one.losses.size() == many.losses.size());
            for (std::size_t i = 0; i < one.losses.size(); ++i)
                CHECK(std::memcmp(&one.losses[i], &many.losses[i], sizeof(double)) == 0);
            REQUIRE(one.weights.size() == many.weights.size());
            for (std::size_t i = 0; i < one.weights.size(); ++i) {
                INFO("tensor " << i);
                CHECK(same_bits(one.weights[i], many.weights[i]));
                CHECK(same_bits(one.grads[i], many.grads[i]));
            }
        }
        // The steps did train: the loss moved away from the untrained one (a trace of zeros would also be identical).
        CHECK(one.losses[2] < one.losses[0]);
    }
}

TEST_CASE("tiny llama: 2-thread gradients over several tiles match finite differences", "[llama][threads]") {
    Config c = multi_tile_config(true);
    Model model(c, 11);
    model.set_threads(2);
    // Spread the weights so that attention is not uniform and every term carries weight.
    std::uint64_t tensor = 0;
    model.weights().for_each([&](const std::string& name, npft::Matrix& m) {
        const npft::RandomKey key{5, tensor++};
        const bool gain = name.ends_with("norm");
        for (npft::Index i = 0; i < m.size(); ++i)
            m.data()[i] = (gain ? 1.0f : 0.0f) + (gain ? 0.2f : 0.15f) * npft::gaussian(key, static_cast<std::uint64_t>(i));
    });
    const Batch batch = random_batch(c, 3, c.context + 1, 4);
    const double loss = model.loss_and_gradient(batch);
    std::vector<npft::Matrix> analytic;
    for (const auto& p : model.parameters()) analytic.push_back(npft::to_eigen(npft::MatrixView<const float>(p.grad)));

    const double h = 1e-3;
    const double rounding = 8.0 * FLT_EPSILON * loss / h;
    std::size_t i = 0;
    model.weights().for_each([&](const std::string& name, npft::Matrix& w) {
        const npft::Matrix& g = analytic[i];
        INFO("tensor " << name);
        npft::Matrix direction(w.rows(), w.cols());
        const npft::RandomKey key{17, i++};
        for (npft::Index e = 0; e < direction.size(); ++e) direction.data()[e] = npft::rademacher(key, static_cast<std::uint64_t>(e));
        const npft::Matrix saved = w;
        const auto at = [&](double t) {
            w = saved + static_cast<float>(t) * direction;
            return model.loss(batch);
        };
        const double fd = (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h);
        w = saved;
        const double expected = static_cast<double>(g.cwiseProduct(direction).sum());
        CHECK(std::abs(fd - expected) <= 2e-3 * std::abs(expected) + rounding);
        CHECK(g.cwiseAbs().maxCoeff() > 1e-5f);
    });
}

TEST_CASE("tiny llama: a thread count below 1 is refused", "[llama][threads]") {
    Model model(multi_tile_config(false), 1);
    CHECK_THROWS_AS(model.set_threads(0), npft::Error);
    npft::Matrix y;
    CHECK_THROWS_AS(tiny_llama::parallel::x_wt(npft::Matrix::Zero(4, 3), npft::Matrix::Zero(2, 5), y, 1), npft::Error);
}
