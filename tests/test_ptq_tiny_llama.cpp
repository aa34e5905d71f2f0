// The demo model seen block by block (examples/common/tiny_llama/blockwise.hpp): chaining its blocks reproduces the
// model's forward pass, its block and pre-activation backward passes match central finite differences, and block-wise
// reconstruction lowers every window's error on it.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include <npft/core/random.hpp>
#include <npft/ptq/reconstruct.hpp>
#include <npft/ptq/trainable_lora.hpp>
#include <npft/ptq/trainable_rounding.hpp>
#include <npft/quant/quantizer.hpp>
#include <npft/quant/uniform.hpp>

#include "tiny_llama/blockwise.hpp"
#include "tiny_llama/quantized_model.hpp"
#include "test_matrices.hpp"

// POSIX declares a global ::index(); the tests live in their own namespace so that npft::index is unambiguous.
namespace ptq_tiny_llama_test {

using npft::Index;
using npft::Matrix;
using tiny_llama::Batch;
using tiny_llama::BlockwiseView;
using tiny_llama::Config;
using tiny_llama::Model;

Config tiny_config() {
    Config c;
    c.vocab = 16;
    c.layers = 3;
    c.dim = 8;
    c.heads = 2;
    c.hidden = 16;
    c.context = 8;
    return c;
}

/// Weights large enough that every block changes the residual stream visibly (the default init is near identity),
/// and norm gains away from 1 so a gain mix-up shows.
tiny_llama::Weights test_weights(const Config& c, std::uint64_t seed) {
    tiny_llama::Weights w = tiny_llama::initial_weights(c, seed);
    std::uint64_t tensor = 0;
    w.for_each([&](const std::string& name, Matrix& m) {
        const npft::RandomKey key{seed, npft::make_stream(0x7e57, tensor++)};
        for (Index i = 0; i < m.size(); ++i) {
            const float u = npft::uniform01(key, static_cast<std::uint64_t>(i));
            m.data()[i] = name.ends_with("norm") ? 0.5f + u : (name == "embedding" ? 1.0f : 0.4f) * npft::gaussian(key, static_cast<std::uint64_t>(i) + (1u << 20));
        }
    });
    return w;
}

Batch random_batch(const Config& c, Index sequences, Index tokens, std::uint64_t seed) {
    const npft::RandomKey key{seed, npft::make_stream(0xba7c)};
    Batch b;
    for (Index s = 0; s < sequences; ++s) {
        b.sequences.emplace_back();
        for (Index t = 0; t < tokens; ++t)
            b.sequences.back().push_back(static_cast<tiny_llama::Token>(
                std::min<Index>(c.vocab - 1, static_cast<Index>(npft::uniform01(key, static_cast<std::uint64_t>(s * tokens + t)) * static_cast<float>(c.vocab)))));
    }
    return b;
}

Matrix random_matrix(Index rows, Index cols, std::uint64_t seed, std::uint64_t stream) {
    return npft_test::gaussian_matrix(rows, cols, seed, npft::make_stream(0xd47a, stream));
}

double dot(const Matrix& a, const Matrix& b) {
    double s = 0.0;
    for (Index i = 0; i < a.size(); ++i) s += static_cast<double>(a.data()[i]) * static_cast<double>(b.data()[i]);
    return s;
}

/// Central finite differences of f (a scalar function of the tensor `t`, perturbed in place) against `analytic`.
template <class F>
void check_gradient(Matrix& t, const Matrix& analytic, F&& f, const std::string& what) {
    REQUIRE(analytic.rows() == t.rows());
    REQUIRE(analytic.cols() == t.cols());
    const double scale = std::max(1.0, static_cast<double>(analytic.cwiseAbs().maxCoeff()));
    double worst = 0.0;
    for (Index i = 0; i < t.size(); ++i) {
        const float original = t.data()[i];
        const float h = 1e-2f * std::max(1.0f, std::abs(original));
        t.data()[i] = original + h;
        const double up = f();
        const float up_at = t.data()[i];
        t.data()[i] = original - h;
        const double down = f();
        const float down_at = t.data()[i];
        t.data()[i] = original;
        const double numeric = (up - down) / static_cast<double>(up_at - down_at);
        worst = std::max(worst, std::abs(numeric - static_cast<double>(analytic.data()[i])) / scale);
    }
    INFO(what << ": worst error relative to the largest gradient " << worst);
    CHECK(worst < 2e-3);  // observed up to 4e-4 in float32; a wrong term gives O(1)
}

TEST_CASE("blocks chained through the view reproduce the model's forward pass", "[ptq][tiny_llama]") {
    const Config c = tiny_config();
    for (const std::uint64_t seed : {1u, 2u, 3u}) {
        Model model(c, test_weights(c, seed));
        BlockwiseView view(model, 7);
        const Batch batch = random_batch(c, 3, 8, seed);
        Matrix x = view.embed(batch);
        REQUIRE(x.rows() == 3 * 7);
        for (Index b = 0; b < view.num_blocks(); ++b) x = view.block_forward(b, x);

        tiny_llama::Activations cache;
        const double loss_sum = tiny_llama::forward_loss_sum(c, model.weights(), model.rope(),
                                                             tiny_llama::DenseLinears{&model.weights()}, batch, &cache);
        CHECK((x - cache.x_out).cwiseAbs().maxCoeff() <= 1e-5f * std::max(1.0f, cache.x_out.cwiseAbs().maxCoeff()));

        // The loss from the view's output through the final norm and the head, written here independently.
        double sum = 0.0;
        for (Index r = 0; r < x.rows(); ++r) {
            const float rms = std::sqrt(x.row(r).squaredNorm() / static_cast<float>(c.dim) + c.norm_eps);
            const Eigen::RowVectorXf h = x.row(r).cwiseProduct(model.weights().final_norm.row(0)) / rms;
            const Eigen::RowVectorXf logits = h * model.weights().head.transpose();
            const double top = logits.maxCoeff();
            double z = 0.0;
            for (Index v = 0; v < c.vocab; ++v) z += std::exp(static_cast<double>(logits(v)) - top);
            const auto target = batch.sequences[static_cast<std::size_t>(r / 7)][static_cast<std::size_t>(r % 7 + 1)];
            sum -= static_cast<double>(logits(target)) - top - std::log(z);
        }
        CHECK(sum / 21.0 == Approx(model.loss(batch)).epsilon(1e-5));
        CHECK(loss_sum / 21.0 == Approx(model.loss(batch)).epsilon(1e-12));
    }
}

TEST_CASE("block parameters are the model's linear weights, by name", "[ptq][tiny_llama]") {
    const Config c = tiny_config();
    Model model(c, test_weights(c, 4));
    BlockwiseView view(model, 4);
    auto model_params = model.parameters();
    for (Index b = 0; b < view.num_blocks(); ++b) {
        const auto params = view.block_parameters(b);
        REQUIRE(params.size() == 7);
        for (const auto& p : params) {
            const auto found = std::find_if(model_params.begin(), model_params.end(), [&](const auto& q) { return q.name == p.name; });
            REQUIRE(found != model_params.end());
            CHECK(p.value.data() == found->value.data());  // a view into the model, not a copy
            CHECK(p.grad.data() != found->grad.data());
        }
        CHECK(params[0].name == "layers." + std::to_string(b) + ".attn.q");
        CHECK(params[6].name == "layers." + std::to_string(b) + ".mlp.down");
    }
    CHECK_THROWS_AS(view.block_parameters(3), npft::Error);
    CHECK_THROWS_AS(view.block_forward(0, Matrix::Zero(6, c.dim)), npft::Error);  // 6 rows: not whole sequences of 4
    CHECK_THROWS_AS(view.block_forward(0, Matrix::Zero(8, c.dim + 1)), npft::Error);
    CHECK_THROWS_AS(view.embed(random_batch(c, 2, 6, 1)), npft::Error);  // sequences of 5 inputs, the view wants 4
    CHECK_THROWS_AS(BlockwiseView(model, c.context + 1), npft::Error);
}

TEST_CASE("block_backward matches central finite differences", "[ptq][tiny_llama]") {
    const Config c = tiny_config();
    for (const std::uint64_t seed : {5u, 6u}) {
        Model model(c, test_weights(c, seed));
        BlockwiseView view(model, 4);
        Matrix x = random_matrix(2 * 4, c.dim, seed, 0);
        for (const Index b : {Index{0}, Index{2}}) {
            const Matrix dy = random_matrix(2 * 4, c.dim, seed, 1 + static_cast<std::uint64_t>(b));
            const Matrix dx = view.block_backward(b, x, dy);
            const tiny_llama::LayerWeights grads = view.block_gradients(b);
            const auto objective = [&] { return dot(view.block_forward(b, x), dy); };
            check_gradient(x, dx, objective, "block input");
            tiny_llama::LayerWeights& w = model.weights().layers[static_cast<std::size_t>(b)];
            for (const auto kind : tiny_llama::linear_kinds)
                check_gradient(w.linear(kind), grads.linear(kind), objective, tiny_llama::linear_suffix(kind));
            check_gradient(w.attn_norm, grads.attn_norm, objective, "attn_norm");
            check_gradient(w.mlp_norm, grads.mlp_norm, objective, "mlp_norm");
            // The parameter views see the same gradients.
            for (const auto& p : view.block_parameters(b))
                for (const auto kind : tiny_llama::linear_kinds)
                    if (p.name == tiny_llama::linear_name(b, kind)) CHECK(npft::to_eigen(p.grad) == grads.linear(kind));
        }
    }
}

TEST_CASE("preactivation_backward matches central finite differences", "[ptq][tiny_llama]") {
    const Config c = tiny_config();
    Model model(c, test_weights(c, 7));
    BlockwiseView view(model, 4);
    Matrix x = random_matrix(3 * 4, c.dim, 7, 0);
    const Matrix dp = random_matrix(3 * 4, 3 * c.dim, 7, 1);
    const Matrix p = view.preactivation_forward(1, x);
    REQUIRE(p.rows() == x.rows());
    REQUIRE(p.cols() == 3 * c.dim);
    // The pre-activations are q, k, v of the normalized input, before rotation: compare with a hand-written norm.
    const auto& w = model.weights().layers[1];
    for (Index r = 0; r < x.rows(); ++r) {
        const float rms = std::sqrt(x.row(r).squaredNorm() / static_cast<float>(c.dim) + c.norm_eps);
        const Eigen::RowVectorXf h = x.row(r).cwiseProduct(w.attn_norm.row(0)) / rms;
        CHECK((p.row(r).head(c.dim) - h * w.q.transpose()).cwiseAbs().maxCoeff() < 1e-5f);
        CHECK((p.row(r).segment(c.dim, c.dim) - h * w.k.transpose()).cwiseAbs().maxCoeff() < 1e-5f);
        CHECK((p.row(r).tail(c.dim) - h * w.v.transpose()).cwiseAbs().maxCoeff() < 1e-5f);
    }
    const Matrix dx = view.preactivation_backward(1, x, dp);
    check_gradient(x, dx, [&] { return dot(view.preactivation_forward(1, x), dp); }, "pre-activation input");
    CHECK_THROWS_AS(view.preactivation_backward(1, x, Matrix::Zero(x.rows(), c.dim)), npft::Error);
}

TEST_CASE("reconstruction on the demo model lowers every window's error, and the packed weights decode to the model's",
          "[ptq][tiny_llama]") {
    const Config c = tiny_config();
    Model reference(c, test_weights(c, 9));
    const tiny_llama::Weights fp32 = reference.weights();
    std::vector<Batch> calibration;
    for (Index i = 0; i < 4; ++i) calibration.push_back(random_batch(c, 2, 9, 100 + static_cast<std::uint64_t>(i)));
    const Batch eval = random_batch(c, 4, 9, 200);

    const auto run = [&](const auto& objective, const auto& policy, float lr = 1e-2f, int threads = 1, Index steps = 40) {
        Model model(c, fp32);
        BlockwiseView view(model, 8);
        view.set_threads(threads);
        std::vector<Matrix> inputs;
        for (const Batch& b : calibration) inputs.push_back(view.embed(b));
        const npft::quant::Quantizer rtn(npft::quant::UniformGrid(3, 0));
        std::map<std::string, npft::quant::QuantizedMatrix> packed;
        for (const std::string& name : model.linear_names())
            for (const auto& p : model.parameters())
                if (p.name == name) packed.emplace(name, rtn.quantize(npft::MatrixView<const float>(p.value)));
        npft::ptq::ReconstructionOptions options;
        options.steps = steps;
        options.learning_rate = lr;
        // Rounding's penalty bites at the end of a window: a decayed learning rate could not follow it.
        options.cosine_decay = !std::is_same_v<std::decay_t<decltype(policy)>, npft::ptq::TrainRounding>;
        const auto report = npft::ptq::reconstruct(view, packed, inputs, objective, options, policy);
        const Index windows = (c.layers + objective.window_size() - 1) / objective.window_size();
        REQUIRE(static_cast<Index>(report.windows.size()) == windows);
        for (const auto& w : report.windows) {
            INFO(objective.name() << " blocks " << w.first_block << ".." << w.last_block << ": " << w.loss_before << " -> "
                                  << w.loss_trained << " (trained) -> " << w.loss_after);
            CHECK(w.loss_before > 0.0);
            CHECK(w.loss_after < w.loss_before);
        }
        // The model's weights are what the packed matrices decode to, so the packed model computes the same loss.
        tiny_llama::QuantizedModel quantized(model);
        quantized.set_multiply_options({.activations = npft::kernels::cpu::Activations::fp32});
        for (const auto& [name, q] : packed) quantized.set_linear(name, tiny_llama::PackedLinear(q));
        CHECK(quantized.loss(eval) == Approx(model.loss(eval)).epsilon(1e-4));
        return packed;
    };
    SECTION("single block") { run(npft::ptq::SingleBlock{}, npft::ptq::TrainScales{}); }
    SECTION("multi-block, 2 blocks per window") { run(npft::ptq::MultiBlock{2}, npft::ptq::TrainScales{}); }
    SECTION("downstream, depth 1") { run(npft::ptq::Downstream{1}, npft::ptq::TrainScales{}); }
    SECTION("downstream, depth 1, q/k/v readout") {
        run(npft::ptq::Downstream{.depth = 1, .measured_at = npft::ptq::Readout::preactivations}, npft::ptq::TrainScales{});
    }
    SECTION("learnable rounding") {
        // Rounding needs the steps to harden: the penalty starts after a fifth of them.
        run(npft::ptq::SingleBlock{}, npft::ptq::TrainRounding{}, 3e-2f, 1, 300);
    }
    SECTION("LoRA") { run(npft::ptq::Downstream{1}, npft::ptq::TrainLora{.shape = {.rank = 2, .seed = 5}}, 1e-3f); }
    SECTION("2 threads give the same bits as 1") {
        for (const int policy : {0, 1, 2}) {
            INFO("policy " << policy);
            const auto one = policy == 0   ? run(npft::ptq::Downstream{1}, npft::ptq::TrainScales{}, 1e-2f, 1)
                             : policy == 1 ? run(npft::ptq::Downstream{1}, npft::ptq::TrainRounding{}, 3e-2f, 1)
                                           : run(npft::ptq::Downstream{1}, npft::ptq::TrainLora{}, 1e-3f, 1);
            const auto two = policy == 0   ? run(npft::ptq::Downstream{1}, npft::ptq::TrainScales{}, 1e-2f, 2)
                             : policy == 1 ? run(npft::ptq::Downstream{1}, npft::ptq::TrainRounding{}, 3e-2f, 2)
                                           : run(npft::ptq::Downstream{1}, npft::ptq::TrainLora{}, 1e-3f, 2);
            for (const auto& [name, q] : one) {
                CHECK(q.codes().words() == two.at(name).codes().words());
                CHECK(q.scales() == two.at(name).scales());
                CHECK(q.zeros() == two.at(name).zeros());
            }
        }
    }
}

}  // namespace ptq_tiny_llama_test
