// The adapter-across-stages policies, the named presets, the warning when an adapter learns to cancel a fixed draw, and
// the options around them: the callback overload, perturbed weight matrices and the grid check, per-sequence Fisher,
// threads.
#include <catch2/catch.hpp>

#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <npft/npft.hpp>

#include "train_test_models.hpp"

using npft::Matrix;
using npft_test::Batch;
using npft_test::TinyMlp;
namespace train = npft::train;

namespace {

using Grid = npft::quant::Uniform<3>;
using StepNoise = npft::noise::Schedule<npft::noise::QuantStepUniform>;
using Pipe = npft::Pipeline<npft::outliers::TopFisher, StepNoise, npft::hessian::Hutchinson<>, Grid>;

train::PipelineOptions small_options(train::AdapterAcrossStages policy) {
    train::PipelineOptions o;
    o.stages = 3;
    o.steps_per_stage = 4;
    o.learning_rate = 2e-2f;
    o.seed = 5;
    o.adapted = train::NameFilter::all();
    o.peft = train::LoraOptions{.rank = 2, .alpha = 4.0f};
    o.adapter_across_stages = policy;
    return o;
}

/// Records the adapter of "mlp.up" after every step and the clean weights the pipeline holds then.
struct Recorder {
    const Pipe* pipe = nullptr;
    std::vector<Matrix> a, b, clean;
    void operator()(const train::Report&) {
        a.push_back(pipe->adapter("mlp.up").a());
        b.push_back(pipe->adapter("mlp.up").b());
        clean.push_back(pipe->clean_weights("mlp.up"));
    }
};

/// A TinyMlp that records the adapter of "mlp.up" at its first call of every stage's training (calls on batches[0]).
struct StageStartSpy : TinyMlp {
    const Pipe* pipe = nullptr;
    const Batch* first = nullptr;
    std::vector<Matrix> a_seen, b_seen;
    explicit StageStartSpy(const TinyMlp& m) : TinyMlp(m) {}
    double loss_and_gradient(const Batch& batch) {
        if (&batch == first && pipe->steps_done() % pipe->options().steps_per_stage == 0) {
            a_seen.push_back(pipe->adapter("mlp.up").a());
            b_seen.push_back(pipe->adapter("mlp.up").b());
        }
        return TinyMlp::loss_and_gradient(batch);
    }
};

}  // namespace

TEST_CASE("continue_training keeps W0 and the adapter across stages and merges once at the end", "[train][pipeline][presets]") {
    const auto batches = npft_test::teacher_batches(4, 0);  // step k of a stage uses batches[k]: stage starts see [0]
    const auto calibration = npft_test::teacher_batches(2, 40);
    const TinyMlp start = npft_test::small_mlp(2);
    for (const auto policy : {train::AdapterAcrossStages::continue_training, train::AdapterAcrossStages::restart}) {
        const bool continuing = policy == train::AdapterAcrossStages::continue_training;
        INFO("continue_training: " << continuing);
        Pipe pipe(small_options(policy), {.fraction = 0.1});
        StageStartSpy model(start);
        model.pipe = &pipe;
        model.first = &batches[0];
        Recorder record{&pipe, {}, {}, {}};
        const auto summary = pipe.fit(model, batches, calibration, record);
        REQUIRE(summary.finished);
        REQUIRE(model.a_seen.size() == 3);
        for (std::size_t stage = 1; stage < 3; ++stage) {
            const std::size_t last_step = 4 * stage - 1;  // the Report after the previous stage's last step
            if (continuing) {
                // The first step of a stage trains the adapter the previous stage ended with, on W0.
                CHECK(model.a_seen[stage] == record.a[last_step]);
                CHECK(model.b_seen[stage] == record.b[last_step]);
                CHECK(record.clean[last_step] == start.w1);
            } else {
                // A new adapter (B = 0, A keyed by the stage) on the merged weights.
                CHECK(model.b_seen[stage] == Matrix::Zero(model.b_seen[stage].rows(), model.b_seen[stage].cols()));
                CHECK(!(model.a_seen[stage] == record.a[last_step]));
                CHECK(!(record.clean[last_step] == start.w1));
            }
        }
        // After the run: the model holds the merged clean weights, and training moved them.
        CHECK(model.w1 == pipe.clean_weights("mlp.up"));
        CHECK(!(model.w1 == start.w1));
    }
}

TEST_CASE("continue_training needs LoRA", "[train][pipeline][presets]") {
    auto options = small_options(train::AdapterAcrossStages::continue_training);
    options.peft = train::MaskedWeights{};
    CHECK_THROWS_WITH(Pipe(options), Catch::Contains("continue_training needs LoRA"));
}

TEST_CASE("the presets carry the reference recipe and differ only in the noise", "[train][pipeline][presets]") {
    const train::PipelineOptions o = npft::presets::reference_options();
    CHECK(o.stages == 3);
    CHECK(o.steps_per_stage == 64);
    CHECK(o.learning_rate == 5e-5f);
    CHECK(o.warmup_fraction == 0.0f);
    CHECK(o.refresh_selection);
    CHECK(o.adapter_across_stages == train::AdapterAcrossStages::continue_training);
    const auto lora = std::get<train::LoraOptions>(o.peft);
    CHECK(lora.rank == 16);
    CHECK(lora.alpha == 32.0f);
    CHECK(lora.dropout == 0.05f);
    for (const char* name : {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                             "model.layers.0.self_attn.v_proj.weight", "model.layers.0.self_attn.o_proj.weight",
                             "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight"})
        CHECK(o.adapted.matches(name));
    CHECK(!o.adapted.matches("model.layers.0.mlp.gate_proj.weight"));
    CHECK(o.perturbed.matches("model.layers.0.mlp.gate_proj.weight"));
    CHECK(npft::presets::reference_outlier_fraction == 0.0005);
    CHECK(train::AdamW{}.weight_decay == 0.01f);

    // Run both on the tiny MLP (no dropout capability: dropout 0), with a few steps: the reference draws once per stage,
    // the quantization-step preset every step.
    const auto batches = npft_test::teacher_batches(3, 0);
    auto options = npft::presets::reference_options();
    {
        TinyMlp model = npft_test::small_mlp(1);
        auto recipe = npft::presets::reference<Grid>(options);
        CHECK_THROWS_WITH(recipe.fit(model, batches), Catch::Contains("LoraOptions::dropout is 0.05"));
    }
    options.peft = train::LoraOptions{.rank = 2, .alpha = 4.0f, .dropout = 0.0f};
    options.steps_per_stage = 5;
    options.learning_rate = 1e-2f;
    TinyMlp a = npft_test::small_mlp(1), b = npft_test::small_mlp(1);
    auto reference = npft::presets::reference<Grid>(options, 0.05);
    auto quantization_step = npft::presets::quantization_step<Grid>(options, 0.05);
    CHECK(reference.fit(a, batches).finished);
    CHECK(quantization_step.fit(b, batches).finished);
    CHECK(reference.draws() == 3);
    CHECK(quantization_step.draws() == 15);
    CHECK(reference.selection("mlp.up").count() == 6);  // round(0.05 * 128)
}

TEST_CASE("fit accepts a non-const calibration vector (the progress overload is constrained)", "[train][pipeline]") {
    const auto batches = npft_test::teacher_batches(3, 0);
    std::vector<Batch> calibration = npft_test::teacher_batches(2, 40);  // non-const on purpose
    TinyMlp model = npft_test::small_mlp(1);
    Pipe pipe(small_options(train::AdapterAcrossStages::restart), {.fraction = 0.1});
    CHECK(pipe.fit(model, batches, calibration).finished);
    int reports = 0;
    TinyMlp other = npft_test::small_mlp(1);
    CHECK(pipe.fit(other, batches, calibration, [&](const train::Report&) { ++reports; }).finished);
    CHECK(reports == 12);
    CHECK(model.w1 == other.w1);
}

TEST_CASE("an adapter that learns to cancel a fixed draw is reported", "[train][pipeline][presets]") {
    // One large draw on one weight of a linear-in-the-output model, kept for a long stage at a high learning rate: the
    // rank-1 adapter can represent -noise exactly, so it learns it, and removing the draw then raises the loss.
    const auto batches = npft_test::teacher_batches(4, 0);
    using Fixed = npft::noise::Schedule<npft::noise::QuantStepUniform, npft::noise::Constant, npft::noise::OncePerEpoch>;
    using FixedPipe = npft::Pipeline<npft::outliers::TopFisher, Fixed, npft::hessian::Hutchinson<>, Grid>;
    train::PipelineOptions o;
    o.stages = 1;
    o.steps_per_stage = 300;
    o.learning_rate = 2e-2f;
    o.seed = 3;
    o.adapted = train::NameFilter::all();
    o.peft = train::LoraOptions{.rank = 1, .alpha = 1.0f};
    int warned = 0, quiet = 0;
    for (const float scale : {40.0f, 0.0f}) {
        TinyMlp model = npft_test::small_mlp(99);  // the teacher itself: W0 is (near) optimal, any offset costs
        FixedPipe pipe(o, {.fraction = 0.01}, Fixed{.scaling = {.value = scale}});
        std::string seen;
        const auto summary = pipe.fit(model, batches, [&](const train::Report& r) { seen += r.warning; });
        (summary.warnings.empty() ? quiet : warned) += 1;
        if (scale > 0.0f) {
            REQUIRE(summary.warnings.size() == 1);
            CHECK_THAT(summary.warnings[0], Catch::Contains("learned to cancel the one fixed draw"));
            CHECK(seen == summary.warnings[0]);
        } else {
            CHECK(summary.warnings.empty());  // no noise: nothing to cancel, no extra calls
        }
    }
    CHECK(warned == 1);
    CHECK(quiet == 1);
}

namespace {
/// The tiny MLP with an unused bias vector [1, 4] (an Eigen row vector is a 1 x n matrix view).
struct MlpWithBias : TinyMlp {
    Matrix bias = Matrix::Zero(1, 4), bias_grad = Matrix::Zero(1, 4);
    explicit MlpWithBias(const TinyMlp& m) : TinyMlp(m) {}
    std::vector<train::Parameter> parameters() {
        auto p = TinyMlp::parameters();
        p.push_back({"mlp.bias", npft::as_matrix_view(bias), npft::as_matrix_view(bias_grad)});
        return p;
    }
};
}  // namespace

TEST_CASE("perturbed means weight matrices by default, and every one is checked against the grid at fit start",
          "[train][pipeline]") {
    const auto batches = npft_test::teacher_batches(2, 0);
    auto options = small_options(train::AdapterAcrossStages::restart);
    options.adapted = train::NameFilter{"mlp.up", "mlp.down"};
    for (const bool vectors : {false, true}) {
        options.perturb_vectors = vectors;
        MlpWithBias model(npft_test::small_mlp(1));
        Pipe pipe(options, {.fraction = 0.1});
        pipe.fit(model, batches);
        const auto selections = pipe.selections();
        CHECK(selections.count("mlp.up") == 1);
        CHECK(selections.count("mlp.down") == 1);
        CHECK(selections.count("mlp.bias") == (vectors ? 1u : 0u));
        CHECK(pipe.quantize(model).count("mlp.bias") == (vectors ? 1u : 0u));
    }
    // A group of 16 does not divide mlp.up's 8 columns: refused before the first model call, naming the tensor.
    options.perturb_vectors = false;
    MlpWithBias model(npft_test::small_mlp(1));
    npft::Pipeline<npft::outliers::TopFisher, StepNoise, npft::hessian::Hutchinson<>, npft::quant::Uniform<3, 16>> grouped(
        options, {.fraction = 0.1});
    CHECK_THROWS_WITH(grouped.fit(model, batches),
                      Catch::Contains("perturbed tensor 'mlp.up' (16 x 8) does not fit the quantizer") &&
                          Catch::Contains("does not divide the input dimension 8"));
    CHECK(model.calls == 0);
}

namespace {
/// The tiny MLP with the optional capability of splitting a batch into its samples (one sequence each).
struct SplittingMlp : TinyMlp {
    explicit SplittingMlp(const TinyMlp& m) : TinyMlp(m) {}
    std::vector<Batch> split_sequences(const Batch& b) const {
        std::vector<Batch> out;
        for (npft::Index c = 0; c < b.x.cols(); ++c) out.push_back({b.x.col(c), b.y.col(c)});
        return out;
    }
};
std::vector<npft::Index> positions(const Pipe& pipe) {
    std::vector<npft::Index> out;
    for (const auto& [name, mask] : pipe.selections()) out.insert(out.end(), mask.positions.begin(), mask.positions.end());
    return out;
}
}  // namespace

TEST_CASE("with split_sequences the Fisher pass is per sequence however the calibration data is batched",
          "[train][pipeline]") {
    const auto batched = npft_test::teacher_batches(2, 0);  // 2 batches of 16 samples
    std::vector<Batch> single;
    for (const auto& b : batched)
        for (npft::Index c = 0; c < b.x.cols(); ++c) single.push_back({b.x.col(c), b.y.col(c)});
    const auto options = small_options(train::AdapterAcrossStages::restart);

    SplittingMlp splitting(npft_test::small_mlp(6));
    Pipe split_pipe(options, {.fraction = 0.1});
    split_pipe.select(splitting, batched);
    CHECK(splitting.calls == 32);  // one gradient per sample

    TinyMlp plain(npft_test::small_mlp(6));
    Pipe single_pipe(options, {.fraction = 0.1});
    single_pipe.select(plain, single);
    CHECK(positions(split_pipe) == positions(single_pipe));  // the same Fisher, so the same outliers

    TinyMlp batch_mean(npft_test::small_mlp(6));  // no capability: squared batch-mean gradients, another selection
    Pipe batch_pipe(options, {.fraction = 0.1});
    batch_pipe.select(batch_mean, batched);
    CHECK(batch_mean.calls == 2);
    CHECK(positions(batch_pipe) != positions(split_pipe));
}

namespace {
/// QuantStepUniform that also records which threads drew (to show that threads = 2 really used two).
struct ThreadRecordingNoise : npft::noise::Schedule<npft::noise::QuantStepUniform> {
    std::shared_ptr<std::mutex> lock = std::make_shared<std::mutex>();
    std::shared_ptr<std::set<std::thread::id>> ids = std::make_shared<std::set<std::thread::id>>();
    void draw(const npft::noise::NoiseRequest& r, std::span<float> out) const {
        npft::noise::Schedule<npft::noise::QuantStepUniform>::draw(r, out);
        const std::lock_guard<std::mutex> guard(*lock);
        ids->insert(std::this_thread::get_id());
    }
};
}  // namespace

TEST_CASE("a full fit gives the same bits on 1 and 2 threads", "[train][pipeline][threads]") {
    using ThreadPipe = npft::Pipeline<npft::outliers::TopFisher, ThreadRecordingNoise, npft::hessian::Hutchinson<>, Grid>;
    const auto batches = npft_test::teacher_batches(3, 0);
    for (const int mode : {0, 1, 2}) {  // LoRA restarted, LoRA continued, masked weights
        INFO("mode " << mode);
        auto options = small_options(mode == 1 ? train::AdapterAcrossStages::continue_training : train::AdapterAcrossStages::restart);
        if (mode == 2) options.peft = train::MaskedWeights{};
        TinyMlp one = npft_test::small_mlp(8), two = npft_test::small_mlp(8);
        options.threads = 1;
        ThreadRecordingNoise noise_one;
        ThreadPipe(options, {.fraction = 0.1}, noise_one).fit(one, batches);
        options.threads = 2;
        ThreadRecordingNoise noise_two;
        ThreadPipe(options, {.fraction = 0.1}, noise_two).fit(two, batches);
        CHECK(one.w1 == two.w1);
        CHECK(one.w2 == two.w2);
        CHECK(!(one.w1 == npft_test::small_mlp(8).w1));  // training moved the weights
        CHECK(noise_one.ids->size() == 1);
        CHECK(noise_two.ids->size() == 2);  // the two tensors' draws ran on two threads
    }
    auto options = small_options(train::AdapterAcrossStages::restart);
    options.threads = 0;
    CHECK_THROWS_WITH(Pipe(options), Catch::Contains("threads must be at least 1, got 0"));
}

TEST_CASE("policies can be given by name, without placeholders for the others", "[train][pipeline]") {
    using BalancedPipe = npft::Pipeline<npft::outliers::TopFisher, StepNoise, npft::hessian::Hutchinson<>, Grid,
                                        train::AdamW, train::Balanced>;
    const auto batches = npft_test::teacher_batches(3, 0);
    const auto options = small_options(train::AdapterAcrossStages::restart);
    BalancedPipe named(options, {.selector = {.fraction = 0.1}, .loss = train::Balanced{0.5f}});
    BalancedPipe positional(options, {.fraction = 0.1}, {}, {}, {}, {}, train::Balanced{0.5f});
    TinyMlp a = npft_test::small_mlp(1), b = npft_test::small_mlp(1), c = npft_test::small_mlp(1);
    named.fit(a, batches);
    positional.fit(b, batches);
    CHECK(a.w1 == b.w1);
    CHECK(a.calls == 2 * 12 + 3 * 3);  // two calls per step with b < 1, plus the Fisher pass at each stage start
    BalancedPipe perturbed_only(options, {.selector = {.fraction = 0.1}, .loss = train::Balanced{1.0f}});
    perturbed_only.fit(c, batches);
    CHECK(!(c.w1 == a.w1));
}
