// The pipeline's parts as a user composes them: policies that are not needed need not be named, the periodic trace on
// held-out batches of the caller's choice, paired before/after traces, the noise guard on a throwing model, safetensors
// checkpoints that refuse corruption, and the Fisher pass on 1 and 2 threads.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <npft/npft.hpp>

#include "train_test_models.hpp"

using npft::Matrix;
using npft_test::Batch;
using npft_test::TinyMlp;
namespace train = npft::train;
using Catch::Contains;

namespace {

using Selector = npft::outliers::TopFisher;
using RangeNoise = npft::noise::ReferenceSchedule;  // reads no quantization steps
using FixedProbes = npft::hessian::Hutchinson<>;
const npft::hessian::HutchinsonOptions eight_probes{.min_probes = 8, .max_probes = 8, .target_relative_standard_error = 0.0};

train::PipelineOptions small_options() {
    train::PipelineOptions o;
    o.stages = 2;
    o.steps_per_stage = 4;
    o.learning_rate = 1e-2f;
    o.seed = 23;
    o.adapted = train::NameFilter::all();
    o.peft = train::LoraOptions{.rank = 2, .alpha = 4.0f};
    return o;
}

// Throws from loss_and_gradient once armed and a weight differs from the clean copy (a noised call).
struct ThrowingMlp : TinyMlp {
    Matrix clean1, clean2;
    bool armed = false;
    explicit ThrowingMlp(const TinyMlp& m) : TinyMlp(m), clean1(m.w1), clean2(m.w2) {}
    double loss_and_gradient(const Batch& b) {
        if (armed && (!(w1 == clean1) || !(w2 == clean2))) throw std::runtime_error("model failure");
        return TinyMlp::loss_and_gradient(b);
    }
};

void flip_byte(const std::string& path, std::streamoff from_end) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    REQUIRE(f.good());
    f.seekg(-from_end, std::ios::end);
    char c = 0;
    f.get(c);
    f.seekp(-from_end, std::ios::end);
    f.put(static_cast<char>(c ^ 0x5A));
}

}  // namespace

TEST_CASE("a pipeline composes without a trace policy and without a quantizer when the noise needs no steps", "[train][pipeline]") {
    static_assert(std::same_as<npft::Pipeline<Selector, RangeNoise>::trace_type, train::NoTrace>);
    static_assert(!npft::Pipeline<Selector, RangeNoise>::has_quantizer);
    const auto batches = npft_test::teacher_batches(3, 0);
    TinyMlp bare_model = npft_test::small_mlp(3), full_model = npft_test::small_mlp(3);
    npft::Pipeline<Selector, RangeNoise> bare(small_options(), {.fraction = 0.1});
    npft::Pipeline<Selector, RangeNoise, FixedProbes, npft::quant::Uniform<3>> full(small_options(), {.fraction = 0.1});
    CHECK(bare.fit(bare_model, batches).finished);
    full.fit(full_model, batches);
    // The unused policies change nothing: same selection, same noise, same bits.
    CHECK(bare_model.w1 == full_model.w1);
    CHECK(bare_model.w2 == full_model.w2);
    CHECK_FALSE(bare_model.w1 == npft_test::small_mlp(3).w1);  // it did train

    auto traced = small_options();
    traced.trace_every = 2;
    CHECK_THROWS_WITH((npft::Pipeline<Selector, RangeNoise>(traced, {.fraction = 0.1})), Contains("NoTrace"));
}

TEST_CASE("the periodic trace runs on the caller's held-out batches, averaged over them", "[train][pipeline][trace]") {
    const auto batches = npft_test::teacher_batches(2, 0);
    const auto calibration = npft_test::teacher_batches(2, 40);
    const auto held_out = npft_test::teacher_batches(2, 80);
    auto options = small_options();
    options.learning_rate = 0.0f;  // the weights and the selection stay what they were: the last trace can be re-taken
    options.trace_every = 8;       // once, at the last step
    using Pipe = npft::Pipeline<Selector, RangeNoise, FixedProbes>;
    const auto last_trace = [&](auto&&... trace_batches) {
        TinyMlp model = npft_test::small_mlp(5);
        Pipe pipe(options, {.selector = {.fraction = 0.1}, .trace = FixedProbes(eight_probes)});
        double trace = std::nan("");
        pipe.fit(model, batches, calibration, trace_batches..., [&](const train::Report& r) {
            if (r.has_trace()) trace = r.trace;
        });
        return std::pair{trace, pipe};
    };
    auto [on_default, pipe] = last_trace();
    auto [on_first, unused1] = last_trace(std::vector<Batch>{held_out[0]});
    auto [on_both, unused2] = last_trace(held_out);
    TinyMlp model = npft_test::small_mlp(5);
    pipe.select(model, calibration);
    CHECK(on_default == pipe.outlier_trace(model, calibration[0]).value);  // default: the first calibration batch
    const auto first = pipe.outlier_trace(model, held_out[0]);
    const auto second = pipe.outlier_trace(model, held_out[1]);
    CHECK(on_first == first.value);
    CHECK(on_first != on_default);
    // Two batches: the Hessian of their mean loss, so with the same probes the mean of the two estimates.
    CHECK(on_both == Approx(0.5 * (first.value + second.value)).epsilon(1e-5));
    REQUIRE(first.samples.size() == 8);
}

TEST_CASE("paired_difference: the mean and standard error of per-probe differences", "[train][trace]") {
    npft::hessian::TraceEstimate before, after;
    before.samples = {1.0, 2.0, 3.0};
    after.samples = {2.0, 4.0, 3.0, 9.0};  // the fourth probe has no partner and is left out
    const auto d = train::paired_difference(before, after);
    CHECK(d.pairs == 3);
    CHECK(d.mean == Approx(1.0));                      // differences 1, 2, 0
    CHECK(d.standard_error == Approx(1.0 / std::sqrt(3.0)));  // sample sd 1 over sqrt(3)
    before.samples = {1.0};
    CHECK_THROWS_WITH(train::paired_difference(before, after), Contains("at least 2 probes"));
}

TEST_CASE("a paired trace before and after training uses the same outliers and probes", "[train][trace]") {
    const auto batches = npft_test::teacher_batches(2, 0);
    const auto held_out = npft_test::teacher_batches(1, 80);
    using Pipe = npft::Pipeline<Selector, RangeNoise, FixedProbes>;
    auto options = small_options();
    Pipe pipe(options, {.selector = {.fraction = 0.1}, .trace = FixedProbes(eight_probes)});
    TinyMlp model = npft_test::small_mlp(6);
    pipe.select(model, batches);
    const auto outliers = pipe.selections();
    const auto before = pipe.outlier_trace(model, held_out[0]);
    CHECK(pipe.outlier_trace(model, held_out[0], outliers).samples == before.samples);
    pipe.fit(model, batches);
    const auto after = pipe.outlier_trace(model, held_out[0], outliers);
    const auto d = train::paired_difference(before, after);
    CHECK(d.mean == Approx(after.value - before.value).margin(1e-9));
    CHECK(d.pairs == 8);
    auto wrong = outliers;
    wrong.erase("mlp.up");
    CHECK_THROWS_WITH(pipe.outlier_trace(model, held_out[0], wrong), Contains("no outlier mask for the perturbed tensor 'mlp.up'"));
}

TEST_CASE("a model that throws on a noised call is left with the clean weights", "[train][pipeline]") {
    const auto batches = npft_test::teacher_batches(2, 0);
    for (const bool lora : {true, false}) {
        INFO("lora " << lora);
        auto options = small_options();
        options.learning_rate = 0.0f;
        if (!lora) options.peft = train::MaskedWeights{};
        ThrowingMlp model(npft_test::small_mlp(8));
        model.armed = true;
        npft::Pipeline<Selector, RangeNoise> pipe(options, {.fraction = 0.1});
        CHECK_THROWS_WITH(pipe.fit(model, batches), Contains("model failure"));
        CHECK(model.w1 == model.clean1);  // B = 0 and lr = 0: clean + adapter is the clean weight, and no noise is left
        CHECK(model.w2 == model.clean2);
    }
}

TEST_CASE("checkpoints are safetensors files; corrupt, truncated or foreign ones are refused by name", "[train][pipeline][checkpoint]") {
    namespace fs = std::filesystem;
    const auto batches = npft_test::teacher_batches(2, 0);
    const std::string path = "test_train_composition.ckpt";
    using Pipe = npft::Pipeline<Selector, RangeNoise>;
    auto options = small_options();
    options.checkpoint_path = path;
    options.checkpoint_every = 3;
    TinyMlp model = npft_test::small_mlp(7);
    Pipe(options, {.fraction = 0.1}).fit(model, batches);

    // An ordinary safetensors file: the library's reader sees the state by name.
    const auto file = npft::io::SafetensorsFile::load(path);
    CHECK(file.metadata("npft.format") == "npft.pipeline/2");
    CHECK(file.metadata("npft.step") == "6");
    CHECK(file.info("mlp.up.clean").shape == std::vector<npft::Index>{16, 8});
    CHECK(file.contains("mlp.up.lora_a.optimizer.1"));  // AdamW's second moment
    CHECK(file.metadata().contains("mlp.down.lora_b.optimizer.steps"));

    TinyMlp again = npft_test::small_mlp(7);
    auto other = small_options();
    other.seed = 99;
    CHECK_THROWS_WITH(Pipe(other, {.fraction = 0.1}).resume(path, again, batches, batches),
                      Contains("other options") && Contains("checkpoint 'seed=23', this run 'seed=99'"));

    const std::string copy = "test_train_composition_copy.ckpt";
    fs::copy_file(path, copy, fs::copy_options::overwrite_existing);
    flip_byte(copy, 5);  // inside the last tensor's data
    CHECK_THROWS_WITH(Pipe(small_options(), {.fraction = 0.1}).resume(copy, again, batches, batches), Contains("checksum mismatch"));

    fs::copy_file(path, copy, fs::copy_options::overwrite_existing);
    fs::resize_file(copy, fs::file_size(copy) - 3);
    CHECK_THROWS_WITH(Pipe(small_options(), {.fraction = 0.1}).resume(copy, again, batches, batches), Contains("truncated or corrupt"));

    npft::io::SafetensorsWriter foreign;
    foreign.add("mlp.up.clean", model.w1);
    foreign.save(copy);
    CHECK_THROWS_WITH(Pipe(small_options(), {.fraction = 0.1}).resume(copy, again, batches, batches),
                      Contains("was not written by npft::train::CheckpointWriter"));
    std::remove(copy.c_str());
    std::remove(path.c_str());
}

TEST_CASE("the Fisher pass gives the same bits on 1 and 2 threads", "[train][hessian][threads]") {
    TinyMlp wide(8, 64, 4);  // 64 rows: the 2-thread split really splits
    npft_test::fill_gaussian(wide.w1, 0.5f, 3, 1);
    npft_test::fill_gaussian(wide.w2, 0.5f, 3, 2);
    const auto batches = npft_test::teacher_batches(3, 0);
    npft::hessian::DiagonalFisher one({}, 1), two({}, 2);
    for (const auto& b : batches) {
        one.accumulate(wide, b);
        two.accumulate(wide, b);
    }
    const auto a = one.result(), b = two.result();
    CHECK(a.at("mlp.up") == b.at("mlp.up"));
    CHECK(a.at("mlp.down") == b.at("mlp.down"));
    CHECK(a.at("mlp.up").maxCoeff() > 0.0f);
    CHECK_THROWS_WITH(npft::hessian::DiagonalFisher({}, 0), Contains("threads must be at least 1"));
}

TEST_CASE("resume is bit-identical with a continuing adapter, the balanced loss and quantization-step noise", "[train][pipeline][checkpoint]") {
    using StepNoise = npft::noise::Schedule<npft::noise::QuantStepUniform>;  // checkpoints carry the quantization steps
    using Pipe = npft::Pipeline<Selector, StepNoise, train::NoTrace, npft::quant::Uniform<3>, train::AdamW, train::Balanced>;
    const auto batches = npft_test::teacher_batches(3, 0);
    const auto calibration = npft_test::teacher_batches(2, 50);
    const std::string path = "test_train_composition_resume.ckpt";
    auto options = small_options();
    options.adapter_across_stages = train::AdapterAcrossStages::continue_training;
    const auto make = [](train::PipelineOptions o) { return Pipe(std::move(o), {.selector = {.fraction = 0.1}, .loss = {0.25f}}); };
    TinyMlp reference = npft_test::small_mlp(9);
    auto reference_pipe = make(options);
    reference_pipe.fit(reference, batches, calibration);
    for (const npft::Index stop_at : {2, 4, 6}) {
        INFO("stop at " << stop_at);
        auto interrupted = options;
        interrupted.checkpoint_path = path;
        interrupted.checkpoint_every = stop_at;
        TinyMlp first = npft_test::small_mlp(9);
        make(interrupted).fit(first, batches, calibration,
                              [&](const train::Report& r) { return r.step == stop_at ? train::Control::stop : train::Control::proceed; });
        TinyMlp resumed = npft_test::small_mlp(1);  // other values: everything must come from the checkpoint
        auto pipe = make(options);
        CHECK(pipe.resume(path, resumed, batches, calibration).finished);
        CHECK(resumed.w1 == reference.w1);
        CHECK(resumed.w2 == reference.w2);
        CHECK(pipe.draws() == reference_pipe.draws());
        CHECK(pipe.selection("mlp.up").positions == reference_pipe.selection("mlp.up").positions);
    }
    std::remove(path.c_str());
}
