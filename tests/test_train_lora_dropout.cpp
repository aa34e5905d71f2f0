// LoRA dropout in activation space: adapter gradients against finite differences, equivalence with weight-space LoRA at
// p = 0, mask statistics, keyed determinism, and the pipeline driving a model that applies its adapters itself.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <limits>

#include <npft/npft.hpp>

#include "train_test_models.hpp"

using Index = npft::Index;
using npft::Matrix;
using npft_test::Batch;
using npft_test::TinyMlp;
namespace train = npft::train;

namespace {

using MatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

npft::MatrixView<const float> cview(const Matrix& m) { return npft::as_matrix_view(m); }
npft::MatrixView<float> mview(Matrix& m) { return npft::as_matrix_view(m); }

train::LoraAdapter random_adapter(Index rows, Index cols, train::LoraOptions options, std::uint64_t seed) {
    train::LoraAdapter lora(rows, cols, options);
    lora.initialize(npft::RandomKey{seed, 1});
    npft_test::fill_gaussian(lora.b(), 0.5f, seed, 2);  // B = 0 would hide every A-dependence
    return lora;
}

Matrix gaussian(Index rows, Index cols, std::uint64_t seed, std::uint64_t stream) {
    Matrix m(rows, cols);
    npft_test::fill_gaussian(m, 1.0f, seed, stream);
    return m;
}

// sum(R . adapter(x)) in double, the loss whose gradients the finite differences check.
double linear_loss(const train::ActivationLora& adapter, const Matrix& x, const Matrix& r) {
    Matrix y = Matrix::Zero(r.rows(), r.cols());
    adapter.forward(cview(x), mview(y));
    return (r.cast<double>().array() * y.cast<double>().array()).sum();
}

// y = W2 tanh(W1 x) as TinyMlp, but applying its LoRA adapters itself (npft::train::LoraActivationModel).
struct AdaptedMlp : TinyMlp {
    train::ActivationLora* up_adapter = nullptr;
    train::ActivationLora* down_adapter = nullptr;
    int handed_over = 0;            // set_lora_adapter calls with an adapter
    bool skip_adapters = false;     // misbehave: take the adapters but never call them
    double max_drift_outside = 0.0; // largest |value - original| at a non-outlier position seen in a call
    Matrix original1, original2;
    const npft::outliers::OutlierMask* mask1 = nullptr;

    explicit AdaptedMlp(const TinyMlp& m) : TinyMlp(m), original1(m.w1), original2(m.w2) {}

    void set_lora_adapter(const std::string& name, train::ActivationLora* adapter) {
        handed_over += adapter != nullptr;
        (name == "mlp.up" ? up_adapter : down_adapter) = adapter;
    }

    double loss_and_gradient(const Batch& b) {
        ++calls;
        if (mask1) {
            const auto indicator = mask1->indicator();
            for (Index i = 0; i < w1.size(); ++i)
                if (indicator[static_cast<std::size_t>(i)] == 0.0f)
                    max_drift_outside = std::max(max_drift_outside, static_cast<double>(std::abs(w1.data()[i] - original1.data()[i])));
        }
        const bool use = !skip_adapters;
        const float inv_n = 1.0f / static_cast<float>(b.x.cols());
        Matrix z = w1 * b.x;
        if (use && up_adapter) up_adapter->forward(cview(b.x), mview(z));
        const Matrix a = z.array().tanh().matrix();
        Matrix y = w2 * a;
        if (use && down_adapter) down_adapter->forward(cview(a), mview(y));
        const Matrix r = y - b.y;
        const Matrix dy = inv_n * r;
        g2.noalias() = dy * a.transpose();
        Matrix da = w2.transpose() * dy;
        if (use && down_adapter) down_adapter->backward(cview(a), cview(dy), mview(da));
        const Matrix dz = (da.array() * (1.0f - a.array().square())).matrix();
        g1.noalias() = dz * b.x.transpose();
        if (use && up_adapter) up_adapter->backward(cview(b.x), cview(dz));
        return 0.5 * static_cast<double>(r.squaredNorm()) * inv_n;
    }
};
static_assert(train::LoraActivationModel<AdaptedMlp>);
static_assert(!train::LoraActivationModel<TinyMlp>);


using StepNoise = npft::noise::Schedule<npft::noise::QuantStepUniform>;
using Pipe = npft::Pipeline<npft::outliers::TopFisher, StepNoise, npft::hessian::Hutchinson<>, npft::quant::Uniform<3>>;

train::PipelineOptions dropout_options(float dropout) {
    train::PipelineOptions o;
    o.stages = 2;
    o.steps_per_stage = 5;
    o.learning_rate = 1e-2f;
    o.seed = 23;
    o.adapted = train::NameFilter::all();
    o.peft = train::LoraOptions{.rank = 2, .alpha = 4.0f, .dropout = dropout};
    return o;
}

Pipe make_pipe(train::PipelineOptions o) { return Pipe(std::move(o), npft::outliers::TopFisher{.fraction = 0.05}); }

}  // namespace

TEST_CASE("activation LoRA: forward matches a hand-written reference and gradients match finite differences",
          "[train][lora][dropout]") {
    const Index rows = 5, cols = 4, tokens = 7;
    const float p = 0.4f;
    train::LoraAdapter lora = random_adapter(rows, cols, {.rank = 3, .alpha = 6.0f, .dropout = p}, 3);
    train::ActivationLora adapter(lora, p);
    adapter.set_mask_key(3, 11, 1);
    const Matrix x = gaussian(cols, tokens, 3, 4), r = gaussian(rows, tokens, 3, 5);

    // Reference forward in double, from the mask bits: s B A u, u = x / (1 - p) where kept, 0 elsewhere.
    MatrixD u(cols, tokens);
    int dropped = 0;
    for (Index t = 0; t < tokens; ++t)
        for (Index f = 0; f < cols; ++f) {
            const bool keep = adapter.keeps(t, f);
            dropped += !keep;
            u(f, t) = keep ? static_cast<double>(x(f, t)) / (1.0 - static_cast<double>(p)) : 0.0;
        }
    CHECK(dropped > 0);
    CHECK(dropped < cols * tokens);
    const MatrixD y_ref = static_cast<double>(lora.scaling()) * lora.b().cast<double>() * lora.a().cast<double>() * u;
    Matrix y = Matrix::Constant(rows, tokens, 1.0f);  // forward adds to y
    adapter.forward(cview(x), mview(y));
    for (Index i = 0; i < y.size(); ++i) CHECK(static_cast<double>(y.data()[i]) - 1.0 == Approx(y_ref.data()[i]).margin(1e-5));

    // Gradients of sum(R . adapter(x)): dy = R. The loss is linear in each of A, B, x, so central differences are
    // exact up to float rounding.
    adapter.zero_gradients();
    Matrix dx = Matrix::Constant(cols, tokens, 0.5f);  // backward adds to dx
    adapter.backward(cview(x), cview(r), mview(dx));
    const float h = 1e-2f;
    auto central = [&](float& v, auto&& loss) {
        const float saved = v;
        v = saved + h;
        const double plus = loss();
        v = saved - h;
        const double minus = loss();
        v = saved;
        return (plus - minus) / (2.0 * static_cast<double>(h));
    };
    auto loss = [&] { return linear_loss(adapter, x, r); };
    for (Index i = 0; i < lora.a().size(); ++i)
        CHECK(adapter.grad_a().data()[i] == Approx(central(lora.a().data()[i], loss)).margin(2e-3).epsilon(1e-3));
    for (Index i = 0; i < lora.b().size(); ++i)
        CHECK(adapter.grad_b().data()[i] == Approx(central(lora.b().data()[i], loss)).margin(2e-3).epsilon(1e-3));
    Matrix xv = x;
    auto loss_x = [&] { return linear_loss(adapter, xv, r); };
    for (Index i = 0; i < xv.size(); ++i) {
        const double expected = central(xv.data()[i], loss_x);
        CHECK(dx.data()[i] - 0.5f == Approx(expected).margin(2e-3).epsilon(1e-3));
        const Index f = i / tokens, t = i % tokens;
        if (!adapter.keeps(t, f)) CHECK(dx.data()[i] == 0.5f);  // a dropped input gets no gradient through the adapter
    }
    // backward accumulates: a second call doubles the gradients.
    const Matrix once = adapter.grad_a();
    adapter.backward(cview(x), cview(r));
    CHECK(adapter.grad_a().isApprox(2.0f * once));
    CHECK(adapter.forward_calls() == 2 * (lora.a().size() + lora.b().size() + x.size()));
    CHECK(adapter.backward_calls() == 2);
}

TEST_CASE("at p = 0 activation LoRA equals weight-space LoRA on a linear model", "[train][lora][dropout]") {
    const Index rows = 6, cols = 5, tokens = 9;
    train::LoraAdapter lora = random_adapter(rows, cols, {.rank = 2, .alpha = 5.0f}, 8);
    const Matrix w = gaussian(rows, cols, 8, 3), x = gaussian(cols, tokens, 8, 4), target = gaussian(rows, tokens, 8, 5);
    const float inv_n = 1.0f / static_cast<float>(tokens);

    // Weight space: W_eff = W + s B A; L = 0.5/n ||W_eff x - T||^2; G = (1/n) R x^T; dx = W_eff^T R / n.
    Matrix w_eff(rows, cols);
    lora.write_effective(w, mview(w_eff));
    const Matrix y_weight = w_eff * x;
    const Matrix dy_weight = inv_n * (y_weight - target);
    const Matrix g = dy_weight * x.transpose();
    Matrix ga, gb;
    lora.gradients(cview(g), ga, gb);
    const Matrix dx_weight = w_eff.transpose() * dy_weight;

    for (const bool training : {true, false}) {
        // Activation space: y = W x + adapter(x), with dropout 0 (training) or an adapter with p > 0 in evaluation.
        train::ActivationLora adapter(lora, training ? 0.0f : 0.3f);
        adapter.set_training(training);
        adapter.set_mask_key(8, 0, 0);
        Matrix y = w * x;
        adapter.forward(cview(x), mview(y));
        const Matrix dy = inv_n * (y - target);
        Matrix dx = w.transpose() * dy;
        adapter.zero_gradients();
        adapter.backward(cview(x), cview(dy), mview(dx));
        CHECK(y.isApprox(y_weight, 1e-5f));
        CHECK(adapter.grad_a().isApprox(ga, 1e-5f));
        CHECK(adapter.grad_b().isApprox(gb, 1e-5f));
        CHECK(dx.isApprox(dx_weight, 1e-5f));
    }
}

TEST_CASE("the dropout mask keeps 1 - p of the entries and inverted scaling keeps the mean", "[train][lora][dropout]") {
    train::LoraAdapter lora = random_adapter(3, 64, {.rank = 2, .alpha = 4.0f}, 5);
    for (const float p : {0.05f, 0.3f, 0.5f}) {
        INFO("p = " << p);
        train::ActivationLora adapter(lora, p);
        adapter.set_mask_key(5, 1, 2);
        const Index tokens = 1000;
        double kept = 0.0, both = 0.0;
        for (Index t = 0; t < tokens; ++t)
            for (Index f = 0; f < 64; ++f) {
                const bool k = adapter.keeps(t, f);
                kept += k;
                if (f % 2 == 0) both += k && adapter.keeps(t, f + 1);  // neighbours share a Philox call: independent?
            }
        const double n = static_cast<double>(tokens * 64), q = 1.0 - static_cast<double>(p);
        CHECK(std::abs(kept / n - q) < 4.0 * std::sqrt(q * (1.0 - q) / n));
        const double pairs = n / 2.0, qq = q * q;
        CHECK(std::abs(both / pairs - qq) < 4.0 * std::sqrt(qq * (1.0 - qq) / pairs));
    }

    // E[adapter(x)] over masks = the adapter without dropout: one input column repeated over many tokens.
    train::LoraAdapter small = random_adapter(3, 6, {.rank = 2, .alpha = 4.0f}, 6);
    const float p = 0.3f;
    train::ActivationLora adapter(small, p);
    adapter.set_mask_key(6, 0, 0);
    const Matrix column = gaussian(6, 1, 6, 3);
    const Index tokens = 20000;
    const Matrix x = column.replicate(1, tokens);
    Matrix y = Matrix::Zero(3, tokens);
    adapter.forward(cview(x), mview(y));
    adapter.set_training(false);
    Matrix clean = Matrix::Zero(3, 1);
    adapter.forward(cview(column), mview(clean));
    const Eigen::MatrixXd yd = y.cast<double>();
    for (Index i = 0; i < 3; ++i) {
        const double mean = yd.row(i).mean();
        const double sd = std::sqrt((yd.row(i).array() - mean).square().sum() / static_cast<double>(tokens - 1));
        INFO("output " << i << ": mean " << mean << ", no dropout " << clean(i, 0) << ", sd " << sd);
        CHECK(sd > 0.0);
        CHECK(std::abs(mean - static_cast<double>(clean(i, 0))) < 4.0 * sd / std::sqrt(static_cast<double>(tokens)));
    }
}

TEST_CASE("the dropout mask is a pure function of (seed, step, tensor, token, feature)", "[train][lora][dropout]") {
    train::LoraAdapter lora = random_adapter(4, 16, {.rank = 2, .alpha = 4.0f}, 9);
    const Matrix x = gaussian(16, 12, 9, 3);
    auto output = [&](std::uint64_t seed, std::uint64_t step, std::uint64_t tensor) {
        train::ActivationLora adapter(lora, 0.25f);
        adapter.set_mask_key(seed, step, tensor);
        Matrix y = Matrix::Zero(4, 12);
        adapter.forward(cview(x), mview(y));
        return y;
    };
    CHECK(output(1, 2, 3) == output(1, 2, 3));  // bit for bit
    CHECK_FALSE(output(1, 2, 3) == output(1, 3, 3));
    CHECK_FALSE(output(1, 2, 3) == output(1, 2, 4));
    CHECK_FALSE(output(1, 2, 3) == output(2, 2, 3));

    // Token numbering: a call on the last 5 tokens with first_token = 7 uses the same mask as the whole call.
    train::ActivationLora adapter(lora, 0.25f);
    adapter.set_mask_key(1, 2, 3);
    const Matrix whole = output(1, 2, 3);
    const Matrix tail_x = x.rightCols(5);
    Matrix tail = Matrix::Zero(4, 5);
    adapter.forward(cview(tail_x), mview(tail), 7);
    CHECK(tail.isApprox(whole.rightCols(5), 1e-6f));
    Matrix unshifted = Matrix::Zero(4, 5);
    adapter.forward(cview(tail_x), mview(unshifted), 0);
    CHECK_FALSE(unshifted.isApprox(whole.rightCols(5), 1e-3f));
}

TEST_CASE("bad dropout values and shapes are refused", "[train][lora][dropout]") {
    for (const float p : {-0.1f, 1.0f, 1.5f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        INFO("p = " << p);
        CHECK_THROWS_WITH(train::LoraAdapter(3, 3, {.rank = 1, .alpha = 1.0f, .dropout = p}),
                          Catch::Contains("LoRA dropout must be finite and in [0, 1)"));
        CHECK_THROWS_WITH(make_pipe(dropout_options(p)), Catch::Contains("LoRA dropout"));
        train::LoraAdapter lora(3, 3, {.rank = 1, .alpha = 1.0f});
        CHECK_THROWS_AS(train::ActivationLora(lora, p), npft::Error);
    }
    train::LoraAdapter lora(3, 4, {.rank = 1, .alpha = 1.0f});
    train::ActivationLora adapter(lora, 0.1f);
    Matrix x(5, 2), y(3, 2), wrong_y(3, 3);
    CHECK_THROWS_WITH(adapter.forward(cview(x), mview(y)), Catch::Contains("must have 4 rows"));
    Matrix good_x = Matrix::Zero(4, 2);
    CHECK_THROWS_WITH(adapter.forward(cview(good_x), mview(wrong_y)), Catch::Contains("LoRA output y"));
    CHECK_THROWS_WITH(train::ActivationLora().forward(cview(good_x), mview(y)), Catch::Contains("not bound"));
}

TEST_CASE("the pipeline trains a model that applies its own adapters with dropout", "[train][pipeline][dropout]") {
    const auto batches = npft_test::teacher_batches(4, 0);
    auto options = dropout_options(0.1f);
    options.stages = 1;
    options.steps_per_stage = 40;
    options.learning_rate = 3e-2f;
    AdaptedMlp model(npft_test::small_mlp(2));
    double before = 0.0;
    for (const auto& b : batches) before += model.loss(b);
    auto pipe = make_pipe(options);
    pipe.select(model, batches);  // the selection is the same as fit's first (same weights, same batches)
    const npft::outliers::OutlierMask mask = pipe.selection("mlp.up");
    model.mask1 = &mask;
    std::vector<double> losses;
    const auto summary = pipe.fit(model, batches, [&](const train::Report& r) { losses.push_back(r.loss); });
    REQUIRE(summary.finished);
    CHECK(model.handed_over == 2);                             // both tensors, once
    CHECK(model.up_adapter == nullptr);                        // taken back at the end
    CHECK(model.down_adapter == nullptr);
    CHECK(model.max_drift_outside == 0.0);                     // B A never went into the weights during training
    CHECK_FALSE(model.w1 == model.original1);                  // ... but is merged at the end
    double after = 0.0;
    for (const auto& b : batches) after += model.loss(b);
    CHECK(after < 0.8 * before);
    REQUIRE(losses.size() == 40);
    CHECK((losses[36] + losses[37] + losses[38] + losses[39]) < 0.8 * (losses[0] + losses[1] + losses[2] + losses[3]));

    // The same run with dropout 0 keeps LoRA in weight space: the model is never handed an adapter, and the weights
    // it sees do move outside the outliers (so the drift check above can fail).
    AdaptedMlp weight_space(npft_test::small_mlp(2));
    weight_space.mask1 = &mask;
    auto plain = options;
    plain.peft = train::LoraOptions{.rank = 2, .alpha = 4.0f};
    make_pipe(plain).fit(weight_space, batches);
    CHECK(weight_space.handed_over == 0);
    CHECK(weight_space.max_drift_outside > 0.0);
}

TEST_CASE("dropout runs are reproducible and resume bit-identical from a checkpoint", "[train][pipeline][dropout][checkpoint]") {
    const auto batches = npft_test::teacher_batches(3, 0);
    const auto calibration = npft_test::teacher_batches(2, 50);
    const auto options = dropout_options(0.2f);
    AdaptedMlp reference(npft_test::small_mlp(6)), again(npft_test::small_mlp(6));
    make_pipe(options).fit(reference, batches, calibration);
    make_pipe(options).fit(again, batches, calibration);
    CHECK(reference.w1 == again.w1);
    CHECK(reference.w2 == again.w2);
    AdaptedMlp other_seed(npft_test::small_mlp(6));
    auto reseeded = options;
    reseeded.seed = 24;
    make_pipe(reseeded).fit(other_seed, batches, calibration);
    CHECK_FALSE(other_seed.w1 == reference.w1);

    const std::string path = "test_train_lora_dropout_resume.ckpt";
    for (const Index stop_at : {3, 7}) {  // mid first stage, mid second stage
        INFO("stop at " << stop_at);
        auto interrupted = options;
        interrupted.checkpoint_path = path;
        interrupted.checkpoint_every = stop_at;
        AdaptedMlp first(npft_test::small_mlp(6));
        auto stopper = [&](const train::Report& r) { return r.step == stop_at ? train::Control::stop : train::Control::proceed; };
        const auto partial = make_pipe(interrupted).fit(first, batches, calibration, stopper);
        CHECK(partial.steps_done == stop_at);
        CHECK(first.up_adapter == nullptr);  // a stopped run takes its adapters back too

        AdaptedMlp resumed(npft_test::small_mlp(42));
        const auto rest = make_pipe(options).resume(path, resumed, batches, calibration);
        CHECK(rest.finished);
        CHECK(resumed.w1 == reference.w1);
        CHECK(resumed.w2 == reference.w2);
    }
    std::remove(path.c_str());

    // Balanced loss: two passes per step with the same mask; trains and stays finite.
    npft::Pipeline<npft::outliers::TopFisher, StepNoise, npft::hessian::Hutchinson<>, npft::quant::Uniform<3>, train::AdamW,
                   train::Balanced>
        balanced(options, {.fraction = 0.05}, {}, {}, {}, {}, train::Balanced{0.5f});
    AdaptedMlp two_pass(npft_test::small_mlp(6));
    const auto summary = balanced.fit(two_pass, batches, calibration);
    CHECK(summary.finished);
    CHECK(std::isfinite(summary.last_loss));
}

TEST_CASE("dropout needs the capability, and a model that takes adapters must use them", "[train][pipeline][dropout]") {
    const auto batches = npft_test::teacher_batches(2, 0);
    TinyMlp plain = npft_test::small_mlp(3);
    REQUIRE_THROWS_WITH(make_pipe(dropout_options(0.05f)).fit(plain, batches),
                        Catch::Contains("LoraOptions::dropout is 0.05") && Catch::Contains("set_lora_adapter"));
    TinyMlp unchanged = npft_test::small_mlp(3);
    CHECK(plain.w1 == unchanged.w1);  // refused before touching the model

    AdaptedMlp lazy(npft_test::small_mlp(3));
    lazy.skip_adapters = true;
    REQUIRE_THROWS_WITH(make_pipe(dropout_options(0.05f)).fit(lazy, batches),
                        Catch::Contains("activation LoRA adapter of 'mlp.up'") && Catch::Contains("forward 0"));
    CHECK(lazy.up_adapter == nullptr);  // taken back on the error path as well
}
