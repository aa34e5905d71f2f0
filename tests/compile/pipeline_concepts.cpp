// Compile-only: which policies compose into a Pipeline and which do not. Building this file is the test.
#include <npft/npft.hpp>

namespace {

namespace train = npft::train;
using Selector = npft::outliers::TopFisher;
using Noise = npft::noise::Schedule<npft::noise::QuantStepUniform, npft::noise::LinearDecay>;
using Trace = npft::hessian::Hutchinson<npft::hessian::Rademacher>;
using Grid = npft::quant::Uniform<4, 128>;

// ---- valid compositions ---------------------------------------------------------------------------------------------
static_assert(train::PipelinePolicies<Selector, Noise, Trace, Grid, train::AdamW, train::Perturbed>);
static_assert(train::PipelinePolicies<npft::outliers::Union<Selector, npft::outliers::InterquartileMagnitude>,
                                      npft::noise::ReferenceSchedule, npft::hessian::Hutchinson<npft::hessian::Gaussian>,
                                      npft::quant::Quantizer<Grid>, train::SgdMomentum, train::Balanced>);
static_assert(std::same_as<npft::Pipeline<Selector, Noise, Trace, Grid>::quantizer_type, npft::quant::Quantizer<Grid>>);
static_assert(std::same_as<npft::Pipeline<Selector, Noise, Trace, npft::quant::Quantizer<Grid>>::quantizer_type,
                           npft::quant::Quantizer<Grid>>);
static_assert(std::same_as<npft::Pipeline<Selector, Noise, Trace, Grid>::optimizer_type, train::AdamW>);
static_assert(std::same_as<npft::Pipeline<Selector, Noise, Trace, Grid>::loss_type, train::Perturbed>);

// Unused policies need not be named: no trace estimator, and no grid for a noise and a selector that read no steps.
static_assert(train::PipelinePolicies<Selector, npft::noise::ReferenceSchedule, train::NoTrace, train::NoQuantizer,
                                      train::AdamW, train::Perturbed>);
static_assert(std::same_as<npft::Pipeline<Selector, npft::noise::ReferenceSchedule>::trace_type, train::NoTrace>);
static_assert(std::same_as<npft::Pipeline<Selector, npft::noise::ReferenceSchedule>::quantizer_type, train::NoQuantizer>);
static_assert(std::same_as<npft::Pipeline<Selector, Noise, train::NoTrace, Grid>::schedule_type, train::LinearWarmupDecay>);
[[maybe_unused]] void instantiate_without_trace_and_quantizer() {
    npft::Pipeline<Selector, npft::noise::ReferenceSchedule> pipe(npft::PipelineOptions{});
    (void)pipe.total_steps();
}

// A user's own policies: plain structs with the documented members.
struct MyOptimizer {
    struct State {
        std::vector<float> unused;
        std::int64_t steps = 0;
        std::vector<std::span<float>> buffers() { return {}; }
    };
    State make_state(npft::Index) const { return {}; }
    void step(State& s, std::span<float> p, std::span<const float> g, float lr) const {
        ++s.steps;
        for (std::size_t i = 0; i < p.size(); ++i) p[i] -= lr * g[i];
    }
};
struct MyLoss {
    float perturbed_weight() const { return 0.75f; }
};
static_assert(train::Optimizer<MyOptimizer>);
static_assert(train::LossPolicy<MyLoss>);
static_assert(train::PipelinePolicies<Selector, Noise, Trace, Grid, MyOptimizer, MyLoss>);

// The two examples of docs/pipeline.md ("Writing your own policy").
struct LargestPerRow {
    static constexpr bool needs_fisher = false;
    static constexpr bool needs_quant_steps = false;
    npft::outliers::OutlierMask select(const npft::outliers::SelectionInputs& in) const {
        std::vector<npft::Index> positions;
        for (npft::Index r = 0; r < in.weights.rows(); ++r) {
            npft::Index best = 0;
            for (npft::Index c = 1; c < in.weights.cols(); ++c)
                if (std::abs(in.weights(r, c)) > std::abs(in.weights(r, best))) best = c;
            positions.push_back(r * in.weights.cols() + best);
        }
        return {in.weights.rows(), in.weights.cols(), std::move(positions)};
    }
};
struct HalfStepEveryTenSteps {
    static constexpr bool needs_quant_steps = true;
    float scale(npft::Index, npft::Index) const { return 0.5f; }
    bool redraw_at(npft::Index step, npft::Index) const { return step % 10 == 0; }
    void draw(const npft::noise::NoiseRequest& r, std::span<float> out) const {
        for (std::size_t i = 0; i < out.size(); ++i) {
            const npft::Index p = r.mask->positions[i];
            const float delta = r.quant_steps(r.mask->row_of(p), r.mask->col_of(p));
            out[i] = r.scale * delta * (npft::uniform01(r.key, static_cast<std::uint64_t>(p)) - 0.5f);
        }
    }
};
static_assert(train::PipelinePolicies<LargestPerRow, HalfStepEveryTenSteps, Trace, Grid, train::AdamW, train::Perturbed>);
[[maybe_unused]] void instantiate_with_user_policies() {
    npft::Pipeline<LargestPerRow, HalfStepEveryTenSteps, Trace, Grid> pipe(npft::PipelineOptions{});
    (void)pipe.total_steps();
}

// ---- invalid ones: each misses one member ---------------------------------------------------------------------------
struct OptimizerWithoutStep {
    struct State {
        std::int64_t steps = 0;
        std::vector<std::span<float>> buffers() { return {}; }
    };
    State make_state(npft::Index) const { return {}; }
};
struct OptimizerWithoutBuffers {
    struct State {
        std::int64_t steps = 0;
    };
    State make_state(npft::Index) const { return {}; }
    void step(State&, std::span<float>, std::span<const float>, float) const {}
};
struct LossWithoutWeight {
    float b = 0.5f;
};
struct NotAGrid {
    int bits() const { return 4; }
};
struct TraceWithoutEstimate {
    int probes = 10;
};
struct SelectorWithoutFlags {
    npft::outliers::OutlierMask select(const npft::outliers::SelectionInputs&) const { return {}; }
};

static_assert(!train::Optimizer<OptimizerWithoutStep>);
static_assert(!train::Optimizer<OptimizerWithoutBuffers>);
static_assert(!train::LossPolicy<LossWithoutWeight>);
static_assert(!train::detail::QuantizerOrGrid<NotAGrid>);
static_assert(!train::detail::TracePolicy<TraceWithoutEstimate>);
static_assert(!train::PipelinePolicies<SelectorWithoutFlags, Noise, Trace, Grid, train::AdamW, train::Perturbed>);
static_assert(!train::PipelinePolicies<Selector, Noise, TraceWithoutEstimate, Grid, train::AdamW, train::Perturbed>);
static_assert(!train::PipelinePolicies<Selector, Noise, Trace, NotAGrid, train::AdamW, train::Perturbed>);
static_assert(!train::PipelinePolicies<Selector, Noise, Trace, Grid, OptimizerWithoutBuffers, train::Perturbed>);
static_assert(!train::PipelinePolicies<Selector, Noise, Trace, Grid, train::AdamW, LossWithoutWeight>);
static_assert(!train::PipelinePolicies<Selector, Selector, Trace, Grid, train::AdamW, train::Perturbed>);

// ---- the model concept ----------------------------------------------------------------------------------------------
struct Batch {};
struct Model {
    std::vector<train::Parameter> parameters() { return {}; }
    double loss_and_gradient(const Batch&) { return 0.0; }
};
struct ModelWithoutGradient {
    std::vector<train::Parameter> parameters() { return {}; }
};
static_assert(train::DifferentiableModel<Model, Batch>);
static_assert(!train::DifferentiableModel<ModelWithoutGradient, Batch>);

}  // namespace
