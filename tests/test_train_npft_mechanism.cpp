// The paper's mechanism in miniature, on a two-layer tanh MLP whose Hessian diagonal is known in closed form: fine-tuning
// with noise on the Fisher-selected outliers lowers their Hessian trace compared with the same fine-tuning (same data,
// steps, seeds, adapters) without noise, over many seeds, judged against the spread of the paired differences.
// NPFT_PRINT_FIGURES=1 prints the per-seed figures (docs/pipeline.md reports the summary).
#include <catch2/catch.hpp>

#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <vector>

#include <npft/npft.hpp>

#include "train_test_models.hpp"

using npft::Matrix;
using npft_test::Batch;
using npft_test::TinyMlp;
namespace train = npft::train;

namespace {

constexpr npft::Index inputs = 8, hidden = 24, outputs = 4;


struct Outcome {
    double trace = 0.0;     // exact sum of H_ii over the outliers selected before fine-tuning
    double clean_loss = 0;  // held-out loss of the fine-tuned fp32 model
    double rtn_loss = 0;    // held-out loss after 3-bit per-channel RTN of both layers
};

using Grid = npft::quant::Uniform<3>;
// The first two inputs are this many times larger than the rest: the weights reading them carry most of the
// curvature (H_ii grows with x_j^2), as the few sensitive weights of an LLM do.
inline float heavy() { return 3.0f; }

double mean_loss(const TinyMlp& m, const std::vector<Batch>& data) {
    double sum = 0.0;
    for (const auto& b : data) sum += m.loss(b);
    return sum / static_cast<double>(data.size());
}

TinyMlp quantized(const TinyMlp& m) {
    const npft::quant::Quantizer<Grid> q;
    TinyMlp out = m;
    out.w1 = q.quantize(npft::MatrixView<const float>(npft::as_matrix_view(m.w1))).dequantize();
    out.w2 = q.quantize(npft::MatrixView<const float>(npft::as_matrix_view(m.w2))).dequantize();
    return out;
}

// Teacher data, first two inputs scaled by `heavy`.
Batch make_batch(const TinyMlp& teacher, npft::Index n, std::uint64_t seed, std::uint64_t stream, float heavy) {
    Batch b = npft_test::teacher_batch(teacher, n, seed, stream, 0.0f);
    b.x.topRows(2) *= heavy;
    const Batch noisy = npft_test::teacher_batch(teacher, n, seed, stream, 0.05f);
    b.y = teacher.w2 * (teacher.w1 * b.x).array().tanh().matrix() + (noisy.y - b.y);
    return b;
}

struct Problem {
    TinyMlp model{inputs, hidden, outputs};  // pretrained, over-parameterized student
    std::vector<Batch> train_batches, held_out;
};

// A small teacher (6 hidden units) and a wider student (24) pretrained on its data with plain AdamW: the student's
// minima form a family of equally good solutions of different sharpness, as a pretrained LLM's do.
Problem make_problem(std::uint64_t seed) {
    TinyMlp teacher(inputs, 6, outputs);
    npft_test::fill_gaussian(teacher.w1, 0.8f, seed, 1);
    npft_test::fill_gaussian(teacher.w2, 0.8f, seed, 2);
    Problem p;
    for (std::uint64_t i = 0; i < 8; ++i) p.train_batches.push_back(make_batch(teacher, 32, seed, 10 + i, heavy()));
    for (std::uint64_t i = 0; i < 4; ++i) p.held_out.push_back(make_batch(teacher, 64, seed, 100 + i, heavy()));
    npft_test::fill_gaussian(p.model.w1, 0.4f, seed, 3);
    npft_test::fill_gaussian(p.model.w2, 0.4f, seed, 4);
    const train::AdamW adam{.weight_decay = 0.0f};
    auto s1 = adam.make_state(p.model.w1.size()), s2 = adam.make_state(p.model.w2.size());
    const int steps = 600;
    for (int step = 0; step < steps; ++step) {
        p.model.loss_and_gradient(p.train_batches[static_cast<std::size_t>(step) % p.train_batches.size()]);
        adam.step(s1, std::span<float>(p.model.w1.data(), static_cast<std::size_t>(p.model.w1.size())),
                  std::span<const float>(p.model.g1.data(), static_cast<std::size_t>(p.model.g1.size())), 1e-2f);
        adam.step(s2, std::span<float>(p.model.w2.data(), static_cast<std::size_t>(p.model.w2.size())),
                  std::span<const float>(p.model.g2.data(), static_cast<std::size_t>(p.model.g2.size())), 1e-2f);
    }
    return p;
}

template <class Noise>
Outcome fine_tune(const Problem& problem, std::uint64_t seed, Noise noise) {
    TinyMlp model = problem.model;
    const auto& train_batches = problem.train_batches;
    const auto& held_out = problem.held_out;

    train::PipelineOptions options;
    options.stages = 3;
    options.steps_per_stage = 100;
    options.learning_rate = 1e-2f;
    options.seed = seed;
    options.adapted = train::NameFilter::all();
    options.peft = train::LoraOptions{.rank = 4, .alpha = 8.0f};
    options.refresh_selection = false;
    npft::Pipeline<npft::outliers::TopFisher, Noise, npft::hessian::Hutchinson<>, Grid> pipe(options, {.fraction = 0.1}, noise);
    pipe.select(model, train_batches);
    const auto mask1 = pipe.selection("mlp.up");
    const auto mask2 = pipe.selection("mlp.down");
    pipe.fit(model, train_batches);

    Outcome out;
    for (const auto& b : held_out) {
        const auto [h1, h2] = model.hessian_diagonal(b);
        for (const npft::Index p : mask1.positions) out.trace += h1(p / inputs, p % inputs);
        for (const npft::Index p : mask2.positions) out.trace += h2(p / hidden, p % hidden);
    }
    out.trace /= static_cast<double>(held_out.size());
    out.clean_loss = mean_loss(model, held_out);
    out.rtn_loss = mean_loss(quantized(model), held_out);
    return out;
}

using WithNoise = npft::noise::Schedule<npft::noise::QuantStepUniform, npft::noise::Constant>;

}  // namespace

TEST_CASE("NPFT lowers the outliers' Hessian trace against a matched noise-free control, over 32 seeds", "[train][npft]") {
    // Paired design: per seed, one pretrained model, fine-tuned twice with everything equal except the noise scale.
    // The claim tested is the robust one (second-order argument: training under noise on the outliers lowers their
    // Hessian trace), on every seed 1..32 taken in order, with a threshold from the spread of the paired differences:
    // the one-sided 95% lower confidence bound of the mean relative reduction must be above zero (Student t, 31 degrees
    // of freedom), and the sign test must reject "no effect" (at least 22 of 32 lower: P = 0.025 under a fair coin).
    // The loss after RTN is printed, not asserted: it does not improve robustly in this miniature (docs/pipeline.md).
    const bool print = std::getenv("NPFT_PRINT_FIGURES") != nullptr;
    constexpr int seeds = 32;
    constexpr double t95_one_sided_31 = 1.696;
    std::vector<double> reduction;  // (plain - npft) / plain per seed
    int trace_wins = 0, rtn_wins = 0;
    for (int s = 1; s <= seeds; ++s) {
        const auto seed = static_cast<std::uint64_t>(s);
        const Problem problem = make_problem(seed);
        const Outcome plain = fine_tune(problem, seed, WithNoise{.scaling = {.value = 0.0f}});
        const Outcome npft = fine_tune(problem, seed, WithNoise{.scaling = {.value = 2.0f}});
        reduction.push_back((plain.trace - npft.trace) / plain.trace);
        trace_wins += npft.trace < plain.trace;
        rtn_wins += npft.rtn_loss < plain.rtn_loss;
        if (print) {
            std::printf("seed %2d  Tr(H_outliers) %.5g -> %.5g  clean loss %.5g -> %.5g  3-bit RTN loss %.5g -> %.5g\n", s,
                        plain.trace, npft.trace, plain.clean_loss, npft.clean_loss, plain.rtn_loss, npft.rtn_loss);
        }
    }
    double mean = 0.0, var = 0.0;
    for (const double r : reduction) mean += r / seeds;
    for (const double r : reduction) var += (r - mean) * (r - mean) / (seeds - 1);
    const double standard_error = std::sqrt(var / seeds);
    const double lower = mean - t95_one_sided_31 * standard_error;
    std::printf("NPFT vs noise-free control over %d seeds: trace lower on %d; relative reduction mean %.3f, sd %.3f, "
                "se %.3f, one-sided 95%% lower bound %.3f; 3-bit RTN loss lower on %d (not asserted)\n",
                seeds, trace_wins, mean, std::sqrt(var), standard_error, lower, rtn_wins);
    CHECK(lower > 0.0);
    CHECK(trace_wins >= 22);
}
