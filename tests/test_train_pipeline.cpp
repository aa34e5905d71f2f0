// The pipeline's mechanics on a tiny MLP: exact restore, determinism, checkpoint/resume, schedules, progress, errors.
#include <catch2/catch.hpp>

#include <cstdio>
#include <limits>

#include <npft/npft.hpp>

#include "train_test_models.hpp"

using npft::Matrix;
using npft_test::Batch;
using npft_test::TinyMlp;
namespace train = npft::train;

namespace {

using StepNoise = npft::noise::Schedule<npft::noise::QuantStepUniform>;
using Pipe = npft::Pipeline<npft::outliers::TopFisher, StepNoise, npft::hessian::Hutchinson<>, npft::quant::Uniform<3>>;


train::PipelineOptions small_options() {
    train::PipelineOptions o;
    o.stages = 2;
    o.steps_per_stage = 5;
    o.learning_rate = 1e-2f;
    o.seed = 17;
    o.adapted = train::NameFilter::all();
    o.peft = train::LoraOptions{.rank = 2, .alpha = 4.0f};
    return o;
}

Pipe make_pipe(train::PipelineOptions o) { return Pipe(std::move(o), npft::outliers::TopFisher{.fraction = 0.05}); }

// Records whether the weights it was called with ever differed from a reference copy.
struct WatchingMlp : TinyMlp {
    Matrix original1, original2;
    bool saw_change = false;
    explicit WatchingMlp(const TinyMlp& m) : TinyMlp(m), original1(m.w1), original2(m.w2) {}
    double loss_and_gradient(const Batch& b) {
        saw_change |= !(w1 == original1) || !(w2 == original2);
        return TinyMlp::loss_and_gradient(b);
    }
};

}  // namespace

TEST_CASE("with a zero learning rate, noisy training gives back the clean weights bit for bit", "[train][pipeline]") {
    const auto batches = npft_test::teacher_batches(3, 0);
    for (const bool lora : {true, false}) {
        auto options = small_options();
        options.learning_rate = 0.0f;
        if (!lora) options.peft = train::MaskedWeights{};
        WatchingMlp model(npft_test::small_mlp(1));
        auto pipe = make_pipe(options);
        const auto summary = pipe.fit(model, batches);
        CHECK(summary.finished);
        CHECK(model.saw_change);  // the noise was really on the weights during training
        CHECK(model.w1 == model.original1);
        CHECK(model.w2 == model.original2);
        CHECK(pipe.clean_weights("mlp.up") == model.original1);
    }
}

TEST_CASE("the same seed gives the same bits, another seed other bits", "[train][pipeline]") {
    const auto batches = npft_test::teacher_batches(3, 0);
    TinyMlp a = npft_test::small_mlp(1), b = npft_test::small_mlp(1), c = npft_test::small_mlp(1);
    make_pipe(small_options()).fit(a, batches);
    make_pipe(small_options()).fit(b, batches);
    auto other = small_options();
    other.seed = 18;
    make_pipe(other).fit(c, batches);
    CHECK(a.w1 == b.w1);
    CHECK(a.w2 == b.w2);
    CHECK(!(a.w1 == c.w1));
    const TinyMlp start = npft_test::small_mlp(1);
    CHECK(!(a.w1 == start.w1));  // training moved the weights
}

TEST_CASE("fit trains: the loss falls and the outliers are the requested share", "[train][pipeline]") {
    const auto batches = npft_test::teacher_batches(4, 0);
    TinyMlp model = npft_test::small_mlp(2);
    double before = 0.0;
    for (const auto& b : batches) before += model.loss(b);
    auto options = small_options();
    options.stages = 3;
    options.steps_per_stage = 20;
    options.learning_rate = 3e-2f;
    auto pipe = make_pipe(options);
    std::vector<train::Report> reports;
    pipe.fit(model, batches, [&](const train::Report& r) { reports.push_back(r); });
    double after = 0.0;
    for (const auto& b : batches) after += model.loss(b);
    CHECK(after < 0.8 * before);
    REQUIRE(reports.size() == 60);
    CHECK(reports.back().step == 60);
    CHECK(reports.back().stage == 2);
    CHECK(pipe.selection("mlp.up").count() == 6);   // round(0.05 * 128)
    CHECK(pipe.selection("mlp.down").count() == 3);  // round(0.05 * 64)
    CHECK(pipe.draws() == 60);                       // EveryStep
}

TEST_CASE("the learning rate warms up and decays linearly within each stage", "[train][pipeline]") {
    const auto batches = npft_test::teacher_batches(2, 0);
    TinyMlp model = npft_test::small_mlp(3);
    auto options = small_options();
    options.steps_per_stage = 4;
    options.warmup_fraction = 0.25f;
    options.stage_learning_rates = {1.0f, 0.5f};
    std::vector<float> lrs;
    make_pipe(options).fit(model, batches, [&](const train::Report& r) { lrs.push_back(r.learning_rate); });
    // warmup 1 step: 0, then (4 - k) / 3 of the stage's peak
    const std::vector<float> expected{0.0f, 1.0f, 2.0f / 3.0f, 1.0f / 3.0f, 0.0f, 0.5f, 1.0f / 3.0f, 0.5f / 3.0f};
    REQUIRE(lrs.size() == expected.size());
    for (std::size_t i = 0; i < lrs.size(); ++i) CHECK(lrs[i] == Approx(expected[i]));
}

TEST_CASE("once-per-epoch noise draws once per stage and keeps the draw", "[train][pipeline]") {
    using EpochNoise = npft::noise::Schedule<npft::noise::RowRangeUniform, npft::noise::Constant, npft::noise::OncePerEpoch>;
    npft::Pipeline<npft::outliers::TopFisher, EpochNoise, npft::hessian::Hutchinson<>, npft::quant::Uniform<4>> pipe(
        small_options(), {.fraction = 0.1});
    TinyMlp model = npft_test::small_mlp(4);
    pipe.fit(model, npft_test::teacher_batches(2, 0));
    CHECK(pipe.draws() == 2);
}

TEST_CASE("a run interrupted and resumed from its checkpoint ends bit-identical", "[train][pipeline][checkpoint]") {
    const auto batches = npft_test::teacher_batches(3, 0);
    const auto calibration = npft_test::teacher_batches(2, 50);
    const std::string path = "test_train_pipeline_resume.ckpt";
    for (const bool lora : {true, false}) {
        for (const npft::Index stop_at : {3, 5, 7}) {  // mid-stage, at the stage boundary, in the second stage
            INFO("lora " << lora << ", stop at " << stop_at);
            auto options = small_options();
            if (!lora) options.peft = train::MaskedWeights{};
            TinyMlp reference = npft_test::small_mlp(6);
            make_pipe(options).fit(reference, batches, calibration);

            auto interrupted_options = options;
            interrupted_options.checkpoint_path = path;
            interrupted_options.checkpoint_every = stop_at;
            TinyMlp first = npft_test::small_mlp(6);
            auto stopper = [&](const train::Report& r) { return r.step == stop_at ? train::Control::stop : train::Control::proceed; };
            const auto partial = make_pipe(interrupted_options).fit(first, batches, calibration, stopper);
            CHECK_FALSE(partial.finished);
            CHECK(partial.steps_done == stop_at);

            TinyMlp resumed = npft_test::small_mlp(42);  // other values: everything must come from the checkpoint
            auto pipe = make_pipe(options);
            const auto rest = pipe.resume(path, resumed, batches, calibration);
            CHECK(rest.finished);
            CHECK(resumed.w1 == reference.w1);
            CHECK(resumed.w2 == reference.w2);
            const auto q_ref = make_pipe(options).quantize(reference);
            const auto q_res = pipe.quantize(resumed);
            CHECK(q_ref.at("mlp.up").codes().words() == q_res.at("mlp.up").codes().words());
        }
    }
    std::remove(path.c_str());
}

TEST_CASE("a checkpoint from other options or a corrupt file is refused", "[train][pipeline][checkpoint]") {
    const auto batches = npft_test::teacher_batches(2, 0);
    const std::string path = "test_train_pipeline_refuse.ckpt";
    auto options = small_options();
    options.checkpoint_path = path;
    options.checkpoint_every = 2;
    TinyMlp model = npft_test::small_mlp(7);
    make_pipe(options).fit(model, batches);

    auto other = small_options();
    other.seed = 99;
    TinyMlp again = npft_test::small_mlp(7);
    REQUIRE_THROWS_WITH(make_pipe(other).resume(path, again, batches, batches), Catch::Contains("other options"));

    {  // flip one payload byte
        std::FILE* f = std::fopen(path.c_str(), "r+b");
        REQUIRE(f != nullptr);
        std::fseek(f, 40, SEEK_SET);
        const int c = std::fgetc(f);
        std::fseek(f, 40, SEEK_SET);
        std::fputc(c ^ 0x5A, f);
        std::fclose(f);
    }
    REQUIRE_THROWS_WITH(make_pipe(small_options()).resume(path, again, batches, batches), Catch::Contains("checksum"));
    REQUIRE_THROWS_WITH(make_pipe(small_options()).resume("no-such-file.ckpt", again, batches, batches),
                        Catch::Contains("cannot open"));
    std::remove(path.c_str());
}

TEST_CASE("Balanced{1} is the perturbed loss; Balanced{b < 1} adds a clean pass", "[train][pipeline]") {
    const auto batches = npft_test::teacher_batches(2, 0);
    using BalancedPipe = npft::Pipeline<npft::outliers::TopFisher, StepNoise, npft::hessian::Hutchinson<>, npft::quant::Uniform<3>,
                                        train::AdamW, train::Balanced>;
    TinyMlp a = npft_test::small_mlp(8), b = npft_test::small_mlp(8), c = npft_test::small_mlp(8);
    make_pipe(small_options()).fit(a, batches);
    BalancedPipe(small_options(), {.fraction = 0.05}, {}, {}, {}, {}, train::Balanced{1.0f}).fit(b, batches);
    CHECK(a.w1 == b.w1);
    CHECK(a.w2 == b.w2);
    const int calls_before = c.calls;
    BalancedPipe(small_options(), {.fraction = 0.05}, {}, {}, {}, {}, train::Balanced{0.5f}).fit(c, batches);
    CHECK(c.calls - calls_before == 2 * 10 + 2 * 2);  // two calls per step, plus the Fisher pass (2 batches) per stage
    CHECK(!(c.w1 == a.w1));
}

TEST_CASE("progress reports the trace every N steps and can stop the run", "[train][pipeline]") {
    const auto batches = npft_test::teacher_batches(2, 0);
    auto options = small_options();
    options.trace_every = 2;
    npft::Pipeline<npft::outliers::TopFisher, StepNoise, npft::hessian::Hutchinson<>, npft::quant::Uniform<3>> pipe(
        options, {.fraction = 0.05}, {}, npft::hessian::Hutchinson<>({.min_probes = 4, .max_probes = 8}));
    TinyMlp model = npft_test::small_mlp(9);
    std::vector<train::Report> reports;
    const auto summary = pipe.fit(model, batches, [&](const train::Report& r) {
        reports.push_back(r);
        return r.step == 6 ? train::Control::stop : train::Control::proceed;
    });
    CHECK(summary.steps_done == 6);
    REQUIRE(reports.size() == 6);
    for (const auto& r : reports) {
        CHECK(r.has_trace() == (r.step % 2 == 0));
        if (r.has_trace()) {
            CHECK(r.trace > 0.0);
            CHECK(r.trace_standard_error >= 0.0);
        }
        CHECK(r.noise_scale == 1.0f);
    }
    CHECK(train::progress::detail::format_line(reports[1]).find("Tr(H_outliers)") != std::string::npos);
}

TEST_CASE("the outlier trace before training matches the exact Hessian diagonal", "[train][pipeline]") {
    const auto batches = npft_test::teacher_batches(2, 0);
    TinyMlp model = npft_test::small_mlp(10);
    Pipe pipe(small_options(), {.fraction = 0.05}, {}, npft::hessian::Hutchinson<>({.min_probes = 64, .max_probes = 64}));
    pipe.select(model, batches);
    const auto estimate = pipe.outlier_trace(model, batches[0]);
    const auto [h1, h2] = model.hessian_diagonal(batches[0]);
    double exact = 0.0;
    for (const npft::Index p : pipe.selection("mlp.up").positions) exact += h1(p / 8, p % 8);
    for (const npft::Index p : pipe.selection("mlp.down").positions) exact += h2(p / 16, p % 16);
    CHECK(std::abs(estimate.value - exact) <= 4.0 * estimate.standard_error + 1e-3 * std::abs(exact));
    CHECK(model.w1 == npft_test::small_mlp(10).w1);  // the estimate leaves the weights as they were
}

TEST_CASE("quantize gives one matrix per perturbed tensor", "[train][pipeline]") {
    TinyMlp model = npft_test::small_mlp(11);
    auto options = small_options();
    options.perturbed = train::NameFilter{"*.up"};
    const auto q = make_pipe(options).quantize(model);
    REQUIRE(q.size() == 1);
    const Matrix back = q.at("mlp.up").dequantize();
    CHECK((back - model.w1).cwiseAbs().maxCoeff() < 0.5f * model.w1.cwiseAbs().maxCoeff());
    CHECK(q.at("mlp.up").bits() == 3);
}

namespace {
struct EmptyModel {
    std::vector<train::Parameter> parameters() { return {}; }
    double loss_and_gradient(const Batch&) { return 0.0; }
};
struct NanAfter : TinyMlp {
    int good_calls;
    NanAfter(const TinyMlp& m, int good) : TinyMlp(m), good_calls(good) {}
    double loss_and_gradient(const Batch& b) {
        const double loss = TinyMlp::loss_and_gradient(b);
        if (calls > good_calls) g1(0, 0) = std::numeric_limits<float>::quiet_NaN();
        return calls > good_calls ? std::numeric_limits<double>::quiet_NaN() : loss;
    }
};
struct WrongShapeSelector {
    static constexpr bool needs_fisher = false;
    static constexpr bool needs_quant_steps = false;
    npft::outliers::OutlierMask select(const npft::outliers::SelectionInputs&) const { return npft::outliers::OutlierMask(2, 2, {0}); }
};
}  // namespace

TEST_CASE("misuse stops with a message that names the step and the tensor", "[train][pipeline]") {
    const auto batches = npft_test::teacher_batches(2, 0);
    EmptyModel empty;
    REQUIRE_THROWS_WITH(make_pipe(small_options()).fit(empty, batches), Catch::Contains("no parameters"));

    NanAfter nan_model(npft_test::small_mlp(12), 2 + 3);  // the Fisher pass takes 2 calls, then 3 good steps
    REQUIRE_THROWS_WITH(make_pipe(small_options()).fit(nan_model, batches),
                        Catch::Contains("step 4 of 10") && Catch::Contains("nan") && Catch::Contains("'mlp.up'"));

    TinyMlp model = npft_test::small_mlp(12);
    npft::Pipeline<WrongShapeSelector, StepNoise, npft::hessian::Hutchinson<>, npft::quant::Uniform<3>> wrong(small_options());
    REQUIRE_THROWS_WITH(wrong.fit(model, batches), Catch::Contains("2 x 2 mask for tensor 'mlp.up'"));

    auto options = small_options();
    options.adapted = train::NameFilter{"*attention*"};
    REQUIRE_THROWS_WITH(make_pipe(options).fit(model, batches),
                        Catch::Contains("no parameter matches the adapted patterns") && Catch::Contains("mlp.down"));

    options = small_options();
    options.peft = train::MaskedWeights{{{"mlp.up", npft::outliers::OutlierMask(3, 3, {1})}}};
    REQUIRE_THROWS_WITH(make_pipe(options).fit(model, batches), Catch::Contains("is 3 x 3, but the tensor is 16 x 8"));

    options = small_options();
    options.stages = 0;
    REQUIRE_THROWS_WITH(make_pipe(options), Catch::Contains("stages must be at least 1"));
    const std::vector<Batch> none;
    REQUIRE_THROWS_AS(make_pipe(small_options()).fit(model, none, batches), npft::Error);
}

TEST_CASE("masked-weight PEFT trains only its mask", "[train][pipeline]") {
    const auto batches = npft_test::teacher_batches(2, 0);
    TinyMlp model = npft_test::small_mlp(13);
    const TinyMlp start = model;
    auto options = small_options();
    options.adapted = train::NameFilter{"mlp.up"};
    options.peft = train::MaskedWeights{{{"mlp.up", npft::outliers::OutlierMask(16, 8, {0, 9, 127})}}};
    make_pipe(options).fit(model, batches);
    CHECK(model.w2 == start.w2);  // perturbed, not adapted: back to its clean bits
    int changed = 0;
    for (npft::Index p = 0; p < model.w1.size(); ++p) changed += model.w1.data()[p] != start.w1.data()[p];
    CHECK(changed == 3);
    CHECK(model.w1.data()[9] != start.w1.data()[9]);
}

TEST_CASE("name filters match globs in full", "[train][pipeline]") {
    using train::glob_match;
    CHECK(glob_match("*q_proj*", "model.layers.0.self_attn.q_proj.weight"));
    CHECK(glob_match("*.q", "layers.3.attn.q"));
    CHECK_FALSE(glob_match("*.q", "layers.3.attn.qk"));
    CHECK(glob_match("a*b*c", "abc"));
    CHECK(glob_match("a*b*c", "a-b-b-c"));
    CHECK_FALSE(glob_match("a*b*c", "a-b-b-d"));
    CHECK(glob_match("*", ""));
    CHECK_FALSE(train::default_adapted_tensors().matches("model.layers.0.mlp.gate_proj.weight"));
    CHECK(train::default_adapted_tensors().matches("model.layers.0.mlp.down_proj.weight"));
}
