// The tiny LLaMA example model: its hand-written backward pass against central finite differences of its forward pass,
// for every parameter kind, and its quantized forward against the fp32 forward on the dequantized weights.
#include <catch2/catch.hpp>

#include <cfloat>
#include <cmath>
#include <map>
#include <string>

#include <npft/core/random.hpp>
#include <npft/outliers/top_fraction.hpp>
#include <npft/quant/dense_sparse.hpp>
#include <npft/quant/nonuniform.hpp>
#include <npft/quant/quantizer.hpp>
#include <npft/quant/uniform.hpp>

#include "tiny_llama/model.hpp"
#include "tiny_llama/quantized_model.hpp"


using tiny_llama::Batch;
using tiny_llama::Config;
using tiny_llama::Model;

namespace {

Config tiny_config() {
    Config c;
    c.vocab = 16;
    c.layers = 2;
    c.dim = 8;
    c.heads = 2;
    c.hidden = 12;
    c.context = 6;
    return c;
}

Batch random_batch(const Config& c, npft::Index sequences, npft::Index length, std::uint64_t seed) {
    Batch b;
    const npft::RandomKey key{seed, 77};
    for (npft::Index s = 0; s < sequences; ++s) {
        std::vector<tiny_llama::Token> seq;
        for (npft::Index t = 0; t < length; ++t)
            seq.push_back(static_cast<tiny_llama::Token>(npft::uniform01(key, static_cast<std::uint64_t>(s * length + t)) *
                                                         static_cast<float>(c.vocab)));
        b.sequences.push_back(seq);
    }
    return b;
}

// Weights far from the initialisation (std 0.4, norm gains around 1) so that attention is not uniform and every term of
// the backward pass carries weight.
tiny_llama::Weights spread_weights(const Config& c, std::uint64_t seed) {
    tiny_llama::Weights w = tiny_llama::Weights::zeros(c);
    std::uint64_t tensor = 0;
    w.for_each([&](const std::string& name, npft::Matrix& m) {
        const npft::RandomKey key{seed, tensor++};
        const bool gain = name.ends_with("norm");
        for (npft::Index i = 0; i < m.size(); ++i)
            m.data()[i] = (gain ? 1.0f : 0.0f) + (gain ? 0.2f : 0.4f) * npft::gaussian(key, static_cast<std::uint64_t>(i));
    });
    return w;
}

// Five-point central difference of the loss along `direction` (same shape as the tensor): truncation error O(h^4),
// so h can be large enough that float rounding of the loss stays small.
double directional_fd(Model& model, npft::Matrix& tensor, const npft::Matrix& direction, const Batch& batch, double h) {
    const npft::Matrix saved = tensor;
    const auto at = [&](double t) {
        tensor = saved + static_cast<float>(t) * direction;
        return model.loss(batch);
    };
    const double d = (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h);
    tensor = saved;
    return d;
}

}  // namespace

TEST_CASE("tiny llama: every parameter's gradient matches finite differences", "[llama][gradients]") {
    // Seed 1 with one key/value head per query head, seed 2 with grouped-query attention (4 query heads share 2).
    for (const std::uint64_t seed : {1u, 2u}) {
        Config c = tiny_config();
        if (seed == 2) c.heads = 4, c.kv_heads = 2;
        Model model(c, spread_weights(c, seed));
        const Batch batch = random_batch(c, 3, c.context + 1, seed);
        const double loss = model.loss_and_gradient(batch);
        REQUIRE(loss == Approx(model.loss(batch)).epsilon(1e-6));

        // One loss evaluation (float activations, double sum) is off by about one ulp of the loss, and the stencil
        // divides that by about h: 8 ulps / h leaves a margin. Truncation, O(h^4), is far below it at h = 1e-3.
        const double h = 1e-3;
        const double rounding = 8.0 * FLT_EPSILON * loss / h;
        std::map<std::string, npft::Matrix> analytic;
        for (const auto& p : model.parameters()) analytic[p.name] = npft::to_eigen(npft::MatrixView<const float>(p.grad));

        std::uint64_t tensor = 0;
        model.weights().for_each([&](const std::string& name, npft::Matrix& w) {
            const npft::Matrix& g = analytic.at(name);
            INFO("seed " << seed << ", tensor " << name);
            REQUIRE(g.allFinite());
            // Along a random +-1 direction: checks every element at once.
            npft::Matrix direction(w.rows(), w.cols());
            const npft::RandomKey key{seed, 1000 + tensor++};
            for (npft::Index i = 0; i < direction.size(); ++i) direction.data()[i] = npft::rademacher(key, static_cast<std::uint64_t>(i));
            const double expected = static_cast<double>(g.cwiseProduct(direction).sum());
            const double fd = directional_fd(model, w, direction, batch, h);
            CHECK(std::abs(fd - expected) <= 1e-3 * std::abs(expected) + rounding);
            // The single element with the largest gradient: checks that it is not a cancellation.
            npft::Index at = 0;
            g.reshaped().cwiseAbs().maxCoeff(&at);
            npft::Matrix unit = npft::Matrix::Zero(w.rows(), w.cols());
            unit.data()[at] = 1.0f;
            const double fd_one = directional_fd(model, w, unit, batch, h);
            INFO("element " << at << " analytic " << g.data()[at] << " fd " << fd_one);
            CHECK(std::abs(fd_one - g.data()[at]) <= 1e-3 * std::abs(g.data()[at]) + rounding);
            // And the gradient is not trivially zero (every kind of tensor receives signal in this model).
            CHECK(g.cwiseAbs().maxCoeff() > 1e-4f);
        });
    }
}

TEST_CASE("tiny llama: loss_and_gradient overwrites gradients rather than accumulating", "[llama][gradients]") {
    const Config c = tiny_config();
    Model model(c, spread_weights(c, 3));
    const Batch batch = random_batch(c, 2, 5, 3);
    model.loss_and_gradient(batch);
    const npft::Matrix first = model.gradients().layers[0].q;
    model.loss_and_gradient(batch);
    CHECK(model.gradients().layers[0].q == first);
}

TEST_CASE("tiny llama: an untrained model predicts bytes near uniformly", "[llama]") {
    // The initial loss of a well-initialised model is close to log(vocab): a hand-computable anchor for the forward pass.
    Config c = tiny_config();
    c.vocab = 256;
    const Model model(c, 0);
    CHECK(model.loss(random_batch(c, 2, 7, 5)) == Approx(std::log(256.0)).epsilon(0.01));
}

TEST_CASE("tiny llama: bad batches are rejected with a clear error", "[llama]") {
    const Config c = tiny_config();
    const Model model(c, 0);
    Batch too_long = random_batch(c, 1, c.context + 2, 1);
    CHECK_THROWS_WITH(model.loss(too_long), Catch::Contains("tokens"));
    Batch bad_token = random_batch(c, 1, 4, 1);
    bad_token.sequences[0][2] = 99;
    CHECK_THROWS_WITH(model.loss(bad_token), Catch::Contains("vocabulary"));
    Batch ragged = random_batch(c, 2, 4, 1);
    ragged.sequences[1].push_back(1);
    CHECK_THROWS_WITH(model.loss(ragged), Catch::Contains("same length"));
}

TEST_CASE("tiny llama: the packed forward equals the fp32 forward on the dequantized weights", "[llama][quantized]") {
    Config c;
    c.vocab = 32;
    c.layers = 2;
    c.dim = 128;
    c.heads = 4;
    c.hidden = 128;
    c.context = 8;
    Model model(c, 4);
    const Batch batch = random_batch(c, 2, c.context + 1, 4);

    const auto check = [&](const auto& grid, const char* what, bool dense_sparse) {
        INFO(what);
        const npft::quant::Quantizer quantizer(grid);
        tiny_llama::QuantizedModel packed(model);
        // fp32 activations: the packed model must compute what the dequantized one does (int8 would add its own error).
        packed.set_multiply_options({.activations = npft::kernels::cpu::Activations::fp32});
        tiny_llama::Weights dequantized = model.weights();
        for (npft::Index l = 0; l < c.layers; ++l) {
            for (const auto kind : tiny_llama::linear_kinds) {
                npft::Matrix& w = dequantized.layers[static_cast<std::size_t>(l)].linear(kind);
                const npft::MatrixView<const float> view(npft::as_matrix_view(w));
                const std::string name = tiny_llama::linear_name(l, kind);
                if (dense_sparse) {
                    // The 1% largest weights in fp16, the rest on the grid.
                    auto q = npft::quant::split_dense_sparse(view, npft::outliers::TopMagnitude{0.01}, grid);
                    REQUIRE(q.sparse.nnz() > 0);
                    w = q.dequantize();
                    packed.set_linear(name, tiny_llama::PackedLinear(std::move(q)));
                } else {
                    auto q = quantizer.quantize(view);
                    w = q.dequantize();
                    packed.set_linear(name, tiny_llama::PackedLinear(std::move(q)));
                }
            }
        }
        const Model reference(c, std::move(dequantized));
        const double expected = reference.loss(batch);
        CHECK(packed.loss(batch) == Approx(expected).epsilon(1e-5));
        // Quantization changed something: the comparison is not between two copies of the fp32 model.
        CHECK(std::abs(expected - model.loss(batch)) > 1e-7);
    };
    check(npft::quant::UniformGrid(4, 0), "rtn 4-bit per channel", false);
    check(npft::quant::UniformGrid(3, 128), "rtn 3-bit group 128", false);
    check(npft::quant::NonUniformGrid(3), "k-means 3-bit lut", false);
    check(npft::quant::NonUniformGrid(3), "k-means 3-bit lut with dense-and-sparse outliers", true);
    check(npft::quant::UniformGrid(2, 0), "rtn 2-bit with dense-and-sparse outliers", true);
}

TEST_CASE("tiny llama: the quantized model rejects a missing or misshapen linear", "[llama][quantized]") {
    const Config c = tiny_config();
    const Model model(c, 0);
    tiny_llama::QuantizedModel packed(model);
    CHECK_THROWS_WITH(packed.loss(random_batch(c, 1, 4, 1)), Catch::Contains("linear layers installed"));
    const npft::quant::Quantizer quantizer(npft::quant::UniformGrid(4, 0));
    const npft::Matrix wrong = npft::Matrix::Zero(4, 8);
    CHECK_THROWS_WITH(packed.set_linear("layers.0.attn.q", tiny_llama::PackedLinear(quantizer.quantize(wrong))),
                      Catch::Contains("must be 8 x 8"));
    CHECK_THROWS_WITH(packed.set_linear("layers.9.attn.q", tiny_llama::PackedLinear(quantizer.quantize(wrong))),
                      Catch::Contains("not a linear layer"));
}
