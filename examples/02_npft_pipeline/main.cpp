// 02: assemble an NPFT pipeline around your own model.
//
// The model below is "yours": a two-layer tanh network with a hand-written forward and backward. The only npft-facing
// code is parameters() (named views of its weights and gradients) and loss_and_gradient(batch), plus, optionally,
// set_lora_adapter for LoRA dropout. The pipeline (the quantization-step preset) selects the outliers by Fisher,
// fine-tunes LoRA adapters (with dropout) with quantization-step noise on them, reports progress, and quantizes to 3 bits. Copy this file and replace
// the model with yours.
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include <npft/npft.hpp>

// ---- your model -----------------------------------------------------------------------------------------------------
struct Batch {
    npft::Matrix x;  // inputs x samples
    npft::Matrix y;  // outputs x samples
};

template <class M>
auto view(M& m) {  // a view of an Eigen matrix's memory, for the LoRA adapter calls
    return npft::as_matrix_view(m);
}

class Regressor {
public:
    Regressor(npft::Index inputs, npft::Index hidden, npft::Index outputs)
        : up_(hidden, inputs), down_(outputs, hidden), up_grad_(hidden, inputs), down_grad_(outputs, hidden) {}

    npft::Matrix& up() { return up_; }
    npft::Matrix& down() { return down_; }

    /// The adapter npft needs, part 1: named views of the weights and of their gradients (no copies).
    std::vector<npft::train::Parameter> parameters() {
        return {{"block.up", npft::as_matrix_view(up_), npft::as_matrix_view(up_grad_)},
                {"block.down", npft::as_matrix_view(down_), npft::as_matrix_view(down_grad_)}};
    }

    /// Part 2: the mean loss on a batch; overwrites the gradients. The `if (lora)` lines are only needed for LoRA
    /// dropout (part 3); without them npft applies LoRA in weight space.
    double loss_and_gradient(const Batch& b) {
        const float inv_n = 1.0f / static_cast<float>(b.x.cols());
        npft::Matrix z = up_ * b.x;
        if (up_lora_) up_lora_->forward(view(b.x), view(z));
        const npft::Matrix a = z.array().tanh().matrix();
        npft::Matrix y = down_ * a;
        if (down_lora_) down_lora_->forward(view(a), view(y));
        const npft::Matrix dy = inv_n * (y - b.y);
        down_grad_.noalias() = dy * a.transpose();
        npft::Matrix da = down_.transpose() * dy;
        if (down_lora_) down_lora_->backward(view(a), view(dy), view(da));
        const npft::Matrix dz = (da.array() * (1.0f - a.array().square())).matrix();
        up_grad_.noalias() = dz * b.x.transpose();
        if (up_lora_) up_lora_->backward(view(b.x), view(dz));  // the input needs no gradient
        return 0.5 * static_cast<double>((y - b.y).squaredNorm()) * inv_n;
    }

    /// Part 3, optional: npft hands over the adapter of each adapted weight (nullptr to take it back), for LoRA with
    /// dropout on the activations (npft::train::LoraActivationModel).
    void set_lora_adapter(const std::string& name, npft::train::ActivationLora* adapter) {
        (name == "block.up" ? up_lora_ : down_lora_) = adapter;
    }

    /// Optional: a forward-only loss, which npft::train::evaluate_loss prefers when present (used outside fit, where
    /// LoRA is merged into the weights).
    double loss(const Batch& b) const {
        const npft::Matrix r = down_ * (up_ * b.x).array().tanh().matrix() - b.y;
        return 0.5 * static_cast<double>(r.squaredNorm()) / static_cast<double>(b.x.cols());
    }

private:
    npft::Matrix up_, down_, up_grad_, down_grad_;
    npft::train::ActivationLora* up_lora_ = nullptr;
    npft::train::ActivationLora* down_lora_ = nullptr;
};

// ---- data: a random teacher network, keyed draws -------------------------------------------------------------------
npft::Matrix keyed_gaussian(npft::Index rows, npft::Index cols, float scale, std::uint64_t stream) {
    npft::Matrix m(rows, cols);
    for (npft::Index i = 0; i < m.size(); ++i) m.data()[i] = scale * npft::gaussian({2024, stream}, static_cast<std::uint64_t>(i));
    return m;
}

std::vector<Batch> make_batches(Regressor& teacher, int count, npft::Index samples, std::uint64_t first_stream) {
    std::vector<Batch> out;
    for (int i = 0; i < count; ++i) {
        Batch b{keyed_gaussian(teacher.up().cols(), samples, 1.0f, first_stream + static_cast<std::uint64_t>(i)), {}};
        b.y = teacher.down() * (teacher.up() * b.x).array().tanh().matrix();
        out.push_back(std::move(b));
    }
    return out;
}

double mean_loss(Regressor& model, const std::vector<Batch>& data) {
    double sum = 0.0;
    for (const auto& b : data) sum += npft::train::evaluate_loss(model, b);
    return sum / static_cast<double>(data.size());
}

int main() {
    Regressor teacher(32, 16, 8);
    teacher.up() = keyed_gaussian(16, 32, 0.4f, 1);
    teacher.down() = keyed_gaussian(8, 16, 0.4f, 2);
    Regressor model(32, 64, 8);  // wider than the teacher: many equally good solutions, some flatter than others
    model.up() = keyed_gaussian(64, 32, 0.2f, 3);
    model.down() = keyed_gaussian(8, 64, 0.2f, 4);
    const auto train = make_batches(teacher, 16, 64, 100);
    const auto held_out = make_batches(teacher, 4, 256, 200);

    // Pretrain normally (plain AdamW on all weights), standing in for the model you already have.
    const npft::train::AdamW adam{.weight_decay = 0.0f};
    auto up_state = adam.make_state(model.up().size()), down_state = adam.make_state(model.down().size());
    for (int step = 0; step < 1500; ++step) {
        model.loss_and_gradient(train[static_cast<std::size_t>(step) % train.size()]);
        auto params = model.parameters();
        adam.step(up_state, {params[0].value.data(), static_cast<std::size_t>(params[0].value.size())},
                  {params[0].grad.data(), static_cast<std::size_t>(params[0].grad.size())}, 3e-3f);
        adam.step(down_state, {params[1].value.data(), static_cast<std::size_t>(params[1].value.size())},
                  {params[1].grad.data(), static_cast<std::size_t>(params[1].grad.size())}, 3e-3f);
    }

    // ---- the pipeline: start from a preset, change what this model needs ----------------------------------------------
    // presets::quantization_step(): method.md's recipe (Fisher outliers, LoRA on the projections, the same adapter
    // across stages, AdamW with linear decay) with noise of one quantization step on each outlier, redrawn every step.
    // presets::reference() is the same with the reference code's noise (per-row range, one draw per stage).
    using Trace = npft::hessian::Hutchinson<npft::hessian::Rademacher>;
    using Grid = npft::quant::Uniform<3>;  // 3-bit, asymmetric, one scale per output channel
    auto options = npft::presets::reference_options();
    options.steps_per_stage = 100;     // a small model: more steps and a higher rate than an LLM's recipe
    options.learning_rate = 1e-2f;
    options.seed = 7;
    options.peft = npft::train::LoraOptions{.rank = 8, .alpha = 16.0f, .dropout = 0.05f};
    options.trace_every = 100;         // each estimate costs 2 model calls per probe (16 to 64 probes here)
    auto pipe = npft::presets::quantization_step<Grid>(
        options, /*outlier_fraction=*/0.02, Trace({.min_probes = 16, .max_probes = 64, .target_relative_standard_error = 0.05}));

    // Baseline figures before fine-tuning: fp32 and 3-bit RTN held-out loss, the outliers' Hessian trace.
    const double fp32_before = mean_loss(model, held_out);
    Regressor rtn_before = model;
    for (const auto& [name, q] : pipe.quantize(rtn_before)) (name == "block.up" ? rtn_before.up() : rtn_before.down()) = q.dequantize();
    // The trace is taken on a held-out batch, before and after on the same outliers, so the two estimates use the same
    // probes and their difference is paired probe by probe.
    pipe.select(model, train);
    const auto first_outliers = pipe.selections();
    const auto trace_before = pipe.outlier_trace(model, held_out[0]);

    // Calibration on the training batches; the periodic trace on the held-out batch; a bar on a terminal, lines in a log.
    pipe.fit(model, train, train, std::span(held_out.data(), 1), npft::train::progress::automatic(50));

    const auto trace_after = pipe.outlier_trace(model, held_out[0], first_outliers);
    const auto trace_change = npft::train::paired_difference(trace_before, trace_after);
    const auto packed = pipe.quantize(model);  // one QuantizedMatrix per perturbed tensor
    Regressor rtn_after = model;
    rtn_after.up() = packed.at("block.up").dequantize();
    rtn_after.down() = packed.at("block.down").dequantize();

    npft::io::SafetensorsWriter file;
    for (const auto& [name, q] : packed) npft::io::save_quantized(file, name, q);
    file.save("npft_pipeline_q3.safetensors");

    std::printf("\n%-36s %14s %14s\n", "", "before NPFT", "after NPFT");
    std::printf("%-36s %14.5f %14.5f\n", "held-out loss, fp32", fp32_before, mean_loss(model, held_out));
    std::printf("%-36s %14.5f %14.5f\n", "held-out loss, 3-bit RTN", mean_loss(rtn_before, held_out),
                mean_loss(rtn_after, held_out));
    std::printf("%-36s %8.4g+-%-5.2g %8.4g+-%-5.2g\n", "outliers' Hessian trace (held-out[0])", trace_before.value,
                trace_before.standard_error, trace_after.value, trace_after.standard_error);
    std::printf("paired change of the trace: %.3g +- %.2g over %td probes (the first stage's outliers)\n", trace_change.mean,
                trace_change.standard_error, trace_change.pairs);
    std::printf("outliers: %td of %td weights; packed weights written to npft_pipeline_q3.safetensors\n",
                pipe.selection("block.up").count() + pipe.selection("block.down").count(),
                model.up().size() + model.down().size());
    return 0;
}
