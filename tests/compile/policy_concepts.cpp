// Compile-only: the shipped policies satisfy their concepts, a user's own structs do, and structs missing a member do not.
#include <npft/npft.hpp>

#include <span>
#include <vector>

namespace o = npft::outliers;
namespace n = npft::noise;
namespace h = npft::hessian;

// Test types live in a namespace of their own so that other compile-only suites may reuse their names (not an anonymous
// one: clang 14 reports the unused flag constants of internal-linkage types).
namespace npft_policy_concepts_test {

// ---- OutlierSelector --------------------------------------------------------------------------------------------
static_assert(o::OutlierSelector<o::TopFisher>);
static_assert(o::OutlierSelector<o::TopMagnitude>);
static_assert(o::OutlierSelector<o::FisherTimesQuantError>);
static_assert(o::OutlierSelector<o::InterquartileMagnitude>);
static_assert(o::OutlierSelector<o::PerChannelTopK<o::FisherScore>>);
static_assert(o::OutlierSelector<o::Union<o::TopFisher, o::InterquartileMagnitude>>);
static_assert(o::check_outlier_selector<o::Union<o::TopFisher, o::PerChannelTopK<o::MagnitudeScore>>>());
static_assert(o::TopFisher::needs_fisher && !o::TopFisher::needs_quant_steps);
static_assert(!o::TopMagnitude::needs_fisher && !o::InterquartileMagnitude::needs_fisher);
static_assert(o::FisherTimesQuantError::needs_fisher && o::FisherTimesQuantError::needs_quant_steps);
static_assert(o::Union<o::TopMagnitude, o::FisherTimesQuantError>::needs_quant_steps);
static_assert(!o::Union<o::TopMagnitude, o::InterquartileMagnitude>::needs_fisher);

// A user's selector: every weight of the first column.
struct FirstColumn {
    static constexpr bool needs_fisher = false;
    static constexpr bool needs_quant_steps = false;
    o::OutlierMask select(const o::SelectionInputs& in) const {
        std::vector<npft::Index> p;
        for (npft::Index r = 0; r < in.weights.rows(); ++r) p.push_back(r * in.weights.cols());
        return o::OutlierMask(in.weights.rows(), in.weights.cols(), std::move(p));
    }
};
static_assert(o::OutlierSelector<FirstColumn>);
static_assert(o::OutlierSelector<o::Union<FirstColumn, o::TopFisher>>);

// A user's score plugs into the ranking selectors.
struct SquaredWeight {
    static constexpr bool needs_fisher = false;
    static constexpr bool needs_quant_steps = false;
    float operator()(const o::SelectionInputs& in, npft::Index r, npft::Index c) const { return in.weights(r, c) * in.weights(r, c); }
};
static_assert(o::SelectionScore<SquaredWeight>);
static_assert(o::OutlierSelector<o::TopFraction<SquaredWeight>>);
static_assert(o::OutlierSelector<o::PerChannelTopK<SquaredWeight>>);

struct SelectorWithoutFlags {  // no needs_fisher / needs_quant_steps
    o::OutlierMask select(const o::SelectionInputs&) const { return {}; }
};
struct SelectorReturningPositions {  // select() must return an OutlierMask
    static constexpr bool needs_fisher = false;
    static constexpr bool needs_quant_steps = false;
    std::vector<npft::Index> select(const o::SelectionInputs&) const { return {}; }
};
struct SelectorWithRuntimeFlag {  // the flags must be compile-time constants
    static inline bool needs_fisher = false;
    static constexpr bool needs_quant_steps = false;
    o::OutlierMask select(const o::SelectionInputs&) const { return {}; }
};
struct SelectorMutating {  // select() must be const
    static constexpr bool needs_fisher = false;
    static constexpr bool needs_quant_steps = false;
    o::OutlierMask select(const o::SelectionInputs&) { return {}; }
};
static_assert(!o::OutlierSelector<SelectorWithoutFlags>);
static_assert(!o::OutlierSelector<SelectorReturningPositions>);
static_assert(!o::OutlierSelector<SelectorWithRuntimeFlag>);
static_assert(!o::OutlierSelector<SelectorMutating>);
static_assert(!o::OutlierSelector<int>);
struct ScoreWithoutFlags {
    float operator()(const o::SelectionInputs&, npft::Index, npft::Index) const { return 0.0f; }
};
static_assert(!o::SelectionScore<ScoreWithoutFlags>);

// ---- NoiseSchedule ----------------------------------------------------------------------------------------------
static_assert(n::NoiseDistribution<n::RowRangeUniform>);
static_assert(n::NoiseDistribution<n::QuantStepUniform>);
static_assert(n::NoiseDistribution<n::GaussianMatched>);
static_assert(n::ScaleSchedule<n::Constant> && n::ScaleSchedule<n::LinearDecay> && n::ScaleSchedule<n::CosineDecay>);
static_assert(n::RedrawRule<n::EveryStep> && n::RedrawRule<n::OncePerEpoch> && n::RedrawRule<n::EveryKSteps>);
static_assert(n::NoiseSchedule<n::Schedule<n::QuantStepUniform, n::LinearDecay, n::EveryStep>>);
static_assert(n::NoiseSchedule<n::Schedule<n::GaussianMatched, n::CosineDecay, n::EveryKSteps>>);
static_assert(n::NoiseSchedule<n::ReferenceSchedule>);
static_assert(n::check_noise_schedule<n::Schedule<n::RowRangeUniform>>());
static_assert(n::Schedule<n::QuantStepUniform>::needs_quant_steps && !n::ReferenceSchedule::needs_quant_steps);

// A user's schedule written from scratch: Gaussian noise of fixed sigma, redrawn every other step, scale halving per 100 steps.
struct FixedSigmaGaussian {
    static constexpr bool needs_quant_steps = false;
    float sigma = 1e-3f;
    float scale(npft::Index step, npft::Index) const { return 1.0f / static_cast<float>(1 << (step / 100)); }
    bool redraw_at(npft::Index step, npft::Index) const { return step % 2 == 0; }
    void draw(const n::NoiseRequest& r, std::span<float> out) const {
        for (std::size_t i = 0; i < out.size(); ++i)
            out[i] = r.scale * sigma * npft::gaussian(r.key, static_cast<std::uint64_t>(r.mask->positions[i]));
    }
};
static_assert(n::NoiseSchedule<FixedSigmaGaussian>);
// A user's distribution composes with the shipped scale and redraw policies.
struct Zero {
    static constexpr bool needs_quant_steps = false;
    void draw(const n::NoiseRequest&, std::span<float> out) const {
        for (float& x : out) x = 0.0f;
    }
};
static_assert(n::NoiseSchedule<n::Schedule<Zero, n::CosineDecay, n::OncePerEpoch>>);

struct ScheduleWithoutRedraw {
    static constexpr bool needs_quant_steps = false;
    float scale(npft::Index, npft::Index) const { return 1.0f; }
    void draw(const n::NoiseRequest&, std::span<float>) const {}
};
struct ScheduleWithoutDraw {
    static constexpr bool needs_quant_steps = false;
    float scale(npft::Index, npft::Index) const { return 1.0f; }
    bool redraw_at(npft::Index, npft::Index) const { return true; }
};
struct ScheduleWithoutFlag {
    float scale(npft::Index, npft::Index) const { return 1.0f; }
    bool redraw_at(npft::Index, npft::Index) const { return true; }
    void draw(const n::NoiseRequest&, std::span<float>) const {}
};
struct ScheduleWithStringScale {
    static constexpr bool needs_quant_steps = false;
    const char* scale(npft::Index, npft::Index) const { return "1"; }
    bool redraw_at(npft::Index, npft::Index) const { return true; }
    void draw(const n::NoiseRequest&, std::span<float>) const {}
};
static_assert(!n::NoiseSchedule<ScheduleWithoutRedraw>);
static_assert(!n::NoiseSchedule<ScheduleWithoutDraw>);
static_assert(!n::NoiseSchedule<ScheduleWithoutFlag>);
static_assert(!n::NoiseSchedule<ScheduleWithStringScale>);
static_assert(!n::NoiseDistribution<ScheduleWithoutFlag>);  // a distribution needs the flag too
static_assert(!n::ScaleSchedule<n::EveryStep> && !n::RedrawRule<n::Constant>);

// ---- Hessian-vector products and trace estimation ---------------------------------------------------------------
struct QuadraticModel {  // L = 0.5 |w|^2: the smallest DifferentiableModel with an exact HVP
    npft::Matrix w = npft::Matrix::Zero(2, 2), g = npft::Matrix::Zero(2, 2);
    std::vector<npft::train::Parameter> parameters() { return {{"w", npft::as_matrix_view(w), npft::as_matrix_view(g)}}; }
    double loss_and_gradient(const int&) {
        g = w;
        return 0.5 * w.squaredNorm();
    }
    void hessian_vector_product(const int&, std::span<const float> v, std::span<float> out) {
        for (std::size_t i = 0; i < v.size(); ++i) out[i] = v[i];
    }
};
static_assert(h::HessianVectorProduct<h::ExplicitHvp>);
static_assert(h::HessianVectorProduct<h::FiniteDifferenceHvp<QuadraticModel, int>>);
static_assert(h::ModelWithHessianVectorProduct<QuadraticModel, int>);
static_assert(h::HessianVectorProduct<h::ModelHvp<QuadraticModel, int>>);
static_assert(h::TraceProbe<h::Rademacher> && h::TraceProbe<h::Gaussian>);
static_assert(h::TraceEstimator<h::Hutchinson<h::Rademacher>, h::ExplicitHvp>);
static_assert(h::TraceEstimator<h::Hutchinson<h::Gaussian>, h::FiniteDifferenceHvp<QuadraticModel, int>>);

struct UserHvp {  // a user's operator: H = 2 I on 3 dimensions
    npft::Index dimension() const { return 3; }
    void apply(std::span<const float> v, std::span<float> out) const {
        for (std::size_t i = 0; i < v.size(); ++i) out[i] = 2.0f * v[i];
    }
};
static_assert(h::HessianVectorProduct<UserHvp>);
static_assert(h::TraceEstimator<h::Hutchinson<>, UserHvp>);
struct HvpWithoutDimension {
    void apply(std::span<const float>, std::span<float>) const {}
};
struct HvpWithoutApply {
    npft::Index dimension() const { return 3; }
};
static_assert(!h::HessianVectorProduct<HvpWithoutDimension>);
static_assert(!h::HessianVectorProduct<HvpWithoutApply>);
struct NotAProbe {
    float sample() const { return 1.0f; }
};
static_assert(!h::TraceProbe<NotAProbe>);

}  // namespace npft_policy_concepts_test
