#pragma once
// The study's arms: how each one quantizes a model, and how each fine-tuning arm fine-tunes it. Every fine-tuning arm
// shares the recipe (steps, batches, learning rate, LoRA rank and init, the seed), so that two arms differ only in the
// noise or in where it goes.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <npft/npft.hpp>
#include <npft/hessian/fisher.hpp>
#include <npft/outliers/top_fraction.hpp>
#include <npft/quant/dense_sparse.hpp>
#include <npft/quant/gptq.hpp>
#include <npft/quant/nonuniform.hpp>
#include <npft/train/presets.hpp>

#include "calibration.hpp"
#include "demo_setup.hpp"
#include "study/random_mask.hpp"
#include "study/sequential_gptq.hpp"
#include "tiny_llama/model.hpp"
#include "tiny_llama/quantized_model.hpp"

namespace npft_study {

using npft::Index;
using Fisher = std::map<std::string, npft::Matrix>;

// ---- arms -----------------------------------------------------------------------------------------------------------

/// Arms that quantize the model as it is (no fine-tuning). rtn depends on nothing but the model; gptq and dense-sparse
/// on the seed's calibration draw.
inline const std::vector<std::string> quantization_arms = {"rtn", "gptq", "dense-sparse"};
/// Arms that fine-tune first. lora is the noise-free control; npft-gptq quantizes npft-reference's fine-tuned model with
/// GPTQ (no fine-tuning of its own); npft-qstep fine-tunes once per bit width (its noise is that width's step).
inline const std::vector<std::string> finetuning_arms = {"lora",         "npft-reference", "npft-gptq",  "npft-qstep",
                                                         "npft-random",  "npft-f0.5pct",   "npft-f5pct",
                                                         "npft-random-f5pct"};
/// Ablations, quantized on the per-channel uniform grid only unless --ablations-on-every-grid: they ask whether the
/// noise kind, the outlier choice and the fraction matter, which one grid answers at a fraction of the cost.
inline bool is_ablation(const std::string& arm) {
    return arm == "npft-qstep" || arm == "npft-random" || arm == "npft-f0.5pct" || arm == "npft-f5pct" ||
           arm == "npft-random-f5pct";
}
/// The fine-tuning whose model an arm quantizes ("" for the quantization arms).
inline std::string finetuning_of(const std::string& arm) {
    if (arm == "npft-gptq") return "npft-reference";
    for (const auto& a : finetuning_arms)
        if (a == arm) return arm;
    return "";
}
/// Whether an arm quantizes with sequential GPTQ (else round to nearest).
inline bool uses_gptq(const std::string& arm) { return arm == "gptq" || arm == "npft-gptq"; }

// ---- grids ----------------------------------------------------------------------------------------------------------

inline const std::vector<std::string> all_grids = {"g0", "g128", "lut"};

/// Calls f(grid) with the grid named `name` at `bits`: "g0" uniform per output channel, "g128" uniform in groups of 128
/// inputs, "lut" SqueezeLLM's Fisher-weighted k-means table per row.
template <class F>
decltype(auto) with_grid(const std::string& name, int bits, F&& f) {
    if (name == "g0") return f(npft::quant::UniformGrid(bits, 0));
    if (name == "g128") return f(npft::quant::UniformGrid(bits, 128));
    npft::require(name == "lut", "unknown grid '", name, "' (expected g0, g128 or lut)");
    return f(npft::quant::NonUniformGrid(bits));
}

inline npft::MatrixView<const float> view(const npft::Matrix& m) { return npft::MatrixView<const float>(npft::as_matrix_view(m)); }

/// The linear weight named `name` ("layers.0.attn.q").
inline const npft::Matrix& linear_weight(const tiny_llama::Weights& w, const std::string& name) {
    for (std::size_t l = 0; l < w.layers.size(); ++l)
        for (const auto kind : tiny_llama::linear_kinds)
            if (tiny_llama::linear_name(static_cast<Index>(l), kind) == name) return w.layers[l].linear(kind);
    npft::fail("'", name, "' is not a linear weight of the model");
}

/// The packed model of `model` quantized by `arm`'s method on grid `grid` at `bits`. `fisher` is the model's own
/// diagonal Fisher (the LUT's importance, dense-and-sparse's sensitivity), `calibration` feeds GPTQ's Hessians.
inline tiny_llama::QuantizedModel quantize_model(const tiny_llama::Model& model, const std::string& arm, int bits,
                                                 const std::string& grid, const Fisher& fisher,
                                                 const std::vector<tiny_llama::Batch>& calibration) {
    tiny_llama::QuantizedModel q(model);
    const bool lut = grid == "lut";
    const auto importance = [&](const std::string& name) { return lut ? view(fisher.at(name)) : npft::MatrixView<const float>(); };
    with_grid(grid, bits, [&](const auto& g) {
        if (uses_gptq(arm)) {
            const npft::quant::Gptq gptq(g);
            for (auto& [name, packed] : study::sequential_gptq(model, calibration, [&](const std::string& n, const npft::Matrix& w,
                                                                                       const npft::quant::GptqHessian& h) {
                     return gptq.quantize(w, h, importance(n));
                 }))
                q.set_linear(name, tiny_llama::PackedLinear(std::move(packed)));
            return 0;
        }
        const npft::quant::Quantizer rtn(g);
        // SqueezeLLM's 0.45%: the 0.05% most sensitive weights (Fisher) and the 0.40% largest in magnitude.
        const demo::SparseSelector sparse{npft::outliers::TopFisher{0.0005}, npft::outliers::TopMagnitude{0.004}};
        for (Index l = 0; l < model.config().layers; ++l)
            for (const auto kind : tiny_llama::linear_kinds) {
                const std::string name = tiny_llama::linear_name(l, kind);
                const npft::Matrix& w = model.weights().layers[static_cast<std::size_t>(l)].linear(kind);
                if (arm == "dense-sparse") {
                    const auto mask = sparse.select({view(w), view(fisher.at(name)), {}});
                    q.set_linear(name, tiny_llama::PackedLinear(npft::quant::split_dense_sparse(view(w), mask, g, importance(name))));
                } else {
                    q.set_linear(name, tiny_llama::PackedLinear(rtn.quantize(view(w), importance(name))));
                }
            }
        return 0;
    });
    return q;
}

// ---- fine-tuning ----------------------------------------------------------------------------------------------------

/// The fine-tuning recipe of every arm: the pipeline's reference preset (3 stages, AdamW with linear decay, LoRA rank 16 /
/// alpha 32, the adapter continued across stages, selection refreshed at every stage, noise drawn once per stage)
/// with the steps, batch and learning rate scaled to this model and budget (README.md says why).
struct Recipe {
    demo::NpftRecipe npft{.stages = 3, .steps = 40, .batch = 8, .lr = 1e-3f, .outlier_fraction = npft::presets::reference_outlier_fraction};
    int threads = 2;

    npft::PipelineOptions options(std::uint64_t seed) const {
        npft::PipelineOptions o = npft::presets::reference_options();
        o.stages = npft.stages;
        o.steps_per_stage = npft.steps;
        o.learning_rate = npft.lr;
        o.seed = seed;
        o.threads = threads;
        o.perturbed = npft::train::NameFilter{"layers.*.attn.*", "layers.*.mlp.*"};
        // tiny_llama applies no adapter dropout (it has no LoraActivationModel hooks), so dropout is 0 for every arm.
        o.peft = npft::train::LoraOptions{.rank = 16, .alpha = 32.0f, .dropout = 0.0f};
        return o;
    }
    std::string describe() const {
        return "stages=" + std::to_string(npft.stages) + " steps=" + std::to_string(npft.steps) + " batch=" +
               std::to_string(npft.batch) + " lr=" + std::to_string(npft.lr) + " lora=16/32 reference-preset";
    }
};

template <class Selector, class Noise>
using StudyPipeline = npft::Pipeline<Selector, Noise, npft::train::NoTrace, npft::quant::UniformGrid>;

template <class Selector, class Noise>
void fit(StudyPipeline<Selector, Noise> pipeline, tiny_llama::Model& model, const std::vector<tiny_llama::Batch>& batches,
         const std::vector<tiny_llama::Batch>& calibration) {
    const auto summary = pipeline.fit(model, batches, calibration);
    for (const auto& warning : summary.warnings) std::fprintf(stderr, "  warning: %s\n", warning.c_str());
}

/// Fine-tunes `model` in place as `arm` does (bits: the grid width of npft-qstep's noise; ignored by the others).
inline void finetune(const std::string& arm, int bits, tiny_llama::Model& model, const Recipe& recipe, std::uint64_t seed,
                     const std::vector<tiny_llama::Batch>& batches, const std::vector<tiny_llama::Batch>& calibration) {
    using npft::outliers::TopFisher;
    using npft::presets::QuantizationStepNoise;
    using npft::presets::ReferenceNoise;
    const auto options = recipe.options(seed);
    const npft::quant::Quantizer per_channel_4(npft::quant::UniformGrid(4, 0));  // the pipeline's own grid: unused here
    const double reference = npft::presets::reference_outlier_fraction;
    if (arm == "lora" || arm == "npft-reference" || arm == "npft-f0.5pct" || arm == "npft-f5pct") {
        ReferenceNoise noise;
        if (arm == "lora") noise.scaling = npft::noise::Constant{0.0f};  // the control: same everything, no noise
        const double fraction = arm == "npft-f0.5pct" ? 0.005 : arm == "npft-f5pct" ? 0.05 : reference;
        fit(StudyPipeline<TopFisher, ReferenceNoise>(options, TopFisher{fraction}, noise, {}, per_channel_4), model, batches,
            calibration);
    } else if (arm == "npft-random" || arm == "npft-random-f5pct") {
        // The random mask's control at each fraction: does the outlier choice matter, or any noise on that many weights?
        const double fraction = arm == "npft-random-f5pct" ? 0.05 : reference;
        fit(StudyPipeline<study::RandomFraction, ReferenceNoise>(options, study::RandomFraction{fraction, seed}, {}, {},
                                                                 per_channel_4),
            model, batches, calibration);
    } else {
        npft::require(arm == "npft-qstep", "arm '", arm, "' does not fine-tune");
        // The noise of one quantization step of the per-channel grid at this width, redrawn every step.
        fit(StudyPipeline<TopFisher, QuantizationStepNoise>(options, TopFisher{reference}, {}, {},
                                                            npft::quant::Quantizer(npft::quant::UniformGrid(bits, 0))),
            model, batches, calibration);
    }
}

}  // namespace npft_study
