// Where the perturbation lands, pinned bit for bit: a spy model records the weights it is called with, and at every
// call they must equal what the method prescribes. Training calls see clean + adapter + the drawn noise at exactly the
// outlier positions, and clean + adapter everywhere else; Fisher (calibration) calls see clean + adapter, no noise.
// The noise schedule is the test's own and logs every value it hands out, so the expected weights do not depend on
// how the pipeline keys or stores its draws.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <npft/npft.hpp>

#include "train_test_models.hpp"

using npft::Matrix;
using npft_test::Batch;
using npft_test::TinyMlp;
namespace train = npft::train;

namespace {

/// The latest draw of each tensor, keyed by the address of the mask the pipeline passed in (its selection).
using NoiseLog = std::map<const npft::outliers::OutlierMask*, std::vector<float>>;

/// Non-zero noise in [0.05, 0.15) with a random sign, redrawn every step or once per stage; records what it draws.
struct LoggingNoise {
    static constexpr bool needs_quant_steps = false;
    std::shared_ptr<NoiseLog> log = std::make_shared<NoiseLog>();
    std::shared_ptr<int> draws = std::make_shared<int>(0);
    bool every_step = true;

    float scale(npft::Index, npft::Index) const { return 1.0f; }
    bool redraw_at(npft::Index step, npft::Index per_stage) const { return every_step || step % per_stage == 0; }
    void draw(const npft::noise::NoiseRequest& r, std::span<float> out) const {
        for (std::size_t i = 0; i < out.size(); ++i) {
            const auto p = static_cast<std::uint64_t>(r.mask->positions[i]);
            const float magnitude = npft::uniform(r.key, 2 * p, 0.05f, 0.15f);
            out[i] = npft::uniform01(r.key, 2 * p + 1) < 0.5f ? -magnitude : magnitude;
        }
        (*log)[r.mask].assign(out.begin(), out.end());
        ++*draws;
    }
};

using Pipe = npft::Pipeline<npft::outliers::TopFisher, LoggingNoise, npft::hessian::Hutchinson<>, npft::quant::Uniform<3>>;

/// A TinyMlp that hands every call to `on_call` before computing its loss.
struct SpyMlp : TinyMlp {
    std::function<void(const Batch&, const SpyMlp&)> on_call;
    explicit SpyMlp(const TinyMlp& m) : TinyMlp(m) {}
    double loss_and_gradient(const Batch& b) {
        if (on_call) on_call(b, *this);
        return TinyMlp::loss_and_gradient(b);
    }
};

struct Tally {
    int training_calls = 0, calibration_calls = 0;
    long long noised_positions = 0;  // outlier positions checked on training calls
    long long mismatches = 0;        // positions where the weights seen differ from the prescribed ones
    std::string first_mismatch;
};

/// The weights the method prescribes for tensor `name` at this call.
Matrix prescribed(const Pipe& pipe, const std::string& name, bool adapted, const NoiseLog& log, bool training,
                  long long& noised) {
    const Matrix& clean = pipe.clean_weights(name);
    Matrix expected = clean;
    if (adapted) pipe.adapter(name).write_effective(clean, npft::as_matrix_view(expected));
    if (!training) return expected;
    const auto& mask = pipe.selection(name);
    const std::vector<float>& noise = log.at(&mask);
    REQUIRE(noise.size() == mask.positions.size());
    for (std::size_t i = 0; i < noise.size(); ++i) {
        const npft::Index p = mask.positions[i];
        expected(mask.row_of(p), mask.col_of(p)) += noise[i];
    }
    noised += static_cast<long long>(noise.size());
    return expected;
}

void compare(const Matrix& seen, const Matrix& expected, const std::string& name, Tally& tally) {
    for (npft::Index r = 0; r < seen.rows(); ++r)
        for (npft::Index c = 0; c < seen.cols(); ++c) {
            if (seen(r, c) == expected(r, c)) continue;
            if (tally.mismatches++ == 0)
                tally.first_mismatch = name + "(" + std::to_string(r) + ", " + std::to_string(c) + "): seen " +
                                       std::to_string(seen(r, c)) + ", prescribed " + std::to_string(expected(r, c));
        }
}

Tally run_spy(train::PipelineOptions options, bool every_step, bool up_only_adapted) {
    options.check_draw_cancellation = false;  // its two extra calls are checked in test_train_presets.cpp
    const auto batches = npft_test::teacher_batches(3, 0);
    const auto calibration = npft_test::teacher_batches(2, 50);
    LoggingNoise noise;
    noise.every_step = every_step;
    if (up_only_adapted) options.adapted = train::NameFilter({"mlp.up"});
    Pipe pipe(options, {.fraction = 0.1}, noise);
    SpyMlp model(npft_test::small_mlp(3));
    Tally tally;
    model.on_call = [&](const Batch& b, const SpyMlp& m) {
        const bool training = &b >= batches.data() && &b < batches.data() + batches.size();
        const bool fisher = &b >= calibration.data() && &b < calibration.data() + calibration.size();
        REQUIRE((training || fisher));
        (training ? tally.training_calls : tally.calibration_calls)++;
        compare(m.w1, prescribed(pipe, "mlp.up", true, *noise.log, training, tally.noised_positions), "mlp.up", tally);
        compare(m.w2, prescribed(pipe, "mlp.down", !up_only_adapted, *noise.log, training, tally.noised_positions),
                "mlp.down", tally);
    };
    const auto summary = pipe.fit(model, batches, calibration);
    REQUIRE(summary.finished);
    CHECK(*noise.draws > 0);
    return tally;
}

train::PipelineOptions spy_options() {
    train::PipelineOptions o;
    o.stages = 3;
    o.steps_per_stage = 4;
    o.learning_rate = 5e-2f;  // large enough that the adapters' contribution is far from zero after a step
    o.seed = 23;
    o.adapted = train::NameFilter::all();
    o.peft = train::LoraOptions{.rank = 2, .alpha = 4.0f};
    return o;
}

}  // namespace

TEST_CASE("spy model: noise lands exactly on the outliers, on top of clean + adapter, bit for bit", "[train][pipeline][spy]") {
    for (const auto policy : {train::AdapterAcrossStages::restart, train::AdapterAcrossStages::continue_training})
    for (const bool every_step : {true, false}) {
        for (const bool up_only : {false, true}) {
            INFO("noise redrawn every step: " << every_step << ", only mlp.up adapted: " << up_only
                 << ", adapter continued across stages: " << (policy == train::AdapterAcrossStages::continue_training));
            auto options = spy_options();
            options.adapter_across_stages = policy;
            const Tally t = run_spy(options, every_step, up_only);
            INFO("first mismatch: " << t.first_mismatch);
            CHECK(t.mismatches == 0);
            CHECK(t.training_calls == options.stages * options.steps_per_stage);
            CHECK(t.calibration_calls == options.stages * 2);  // a Fisher pass over 2 batches at every stage start
            // 10% of 16x8 and 4x16 weights, on both tensors, at every training call.
            CHECK(t.noised_positions == static_cast<long long>(t.training_calls) * (13 + 6));
        }
    }
}

TEST_CASE("spy model: the adapters really contribute, so the check above covers clean + adapter", "[train][pipeline][spy]") {
    // Guards the spy test against passing vacuously: after the first step of a stage the effective weights differ from
    // the clean ones, and the noise differs from zero at every outlier.
    const auto batches = npft_test::teacher_batches(3, 0);
    LoggingNoise noise;
    Pipe pipe(spy_options(), {.fraction = 0.1}, noise);
    SpyMlp model(npft_test::small_mlp(3));
    int differing_calls = 0;
    model.on_call = [&](const Batch&, const SpyMlp& m) {
        if (pipe.steps_done() == 0) return;
        Matrix effective = pipe.clean_weights("mlp.up");
        pipe.adapter("mlp.up").write_effective(pipe.clean_weights("mlp.up"), npft::as_matrix_view(effective));
        differing_calls += !(effective == pipe.clean_weights("mlp.up")) && !(m.w1 == effective);
    };
    pipe.fit(model, batches);
    CHECK(differing_calls > 0);
    for (const auto& [mask, values] : *noise.log)
        for (const float v : values) CHECK(std::abs(v) >= 0.05f);
}
