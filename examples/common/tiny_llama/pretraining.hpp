#pragma once
// Pre-training the tiny LLaMA from scratch, one step at a time, with a training state that can be saved and resumed
// bit-identically: the weights, AdamW's moments, the step, and the random key of the batches.
//
// The recipe: AdamW (beta 0.9 / 0.95, weight decay 0.01), linear warmup over the first 5% of the steps then cosine decay
// to 10% of `lr`, the global gradient norm clipped to 1, `batch` windows of context + 1 tokens per step at offsets drawn
// from (seed, "rain", step). The batch of step s depends only on (seed, s), so a resumed run sees the batches a
// straight run would, and the model's passes give the same bits on any thread count: resuming on another thread
// count changes nothing either.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include <npft/core/error.hpp>
#include <npft/core/random.hpp>
#include <npft/io/safetensors.hpp>
#include <npft/train/optimizer.hpp>

#include "data.hpp"
#include "model.hpp"

namespace tiny_llama {

/// How many steps of how many windows, and the peak learning rate.
struct Pretraining {
    Index steps = 600;
    Index batch = 16;
    float lr = 2e-3f;

    std::string describe() const {
        return "steps=" + std::to_string(steps) + " batch=" + std::to_string(batch) + " lr=" + std::to_string(lr);
    }
};

/// Linear warmup over the first 5% of the steps, then cosine decay to 10% of the peak.
inline float learning_rate(const Pretraining& recipe, Index step) {
    const Index warmup = std::max<Index>(1, recipe.steps / 20);
    if (step < warmup) return recipe.lr * static_cast<float>(step + 1) / static_cast<float>(warmup);
    const double progress =
        static_cast<double>(step - warmup) / static_cast<double>(std::max<Index>(1, recipe.steps - warmup));
    return recipe.lr * static_cast<float>(0.1 + 0.45 * (1.0 + std::cos(3.141592653589793 * progress)));
}

/// The random stream of pre-training batches.
inline npft::RandomKey pretraining_key(std::uint64_t seed) { return {seed, npft::make_stream(0x7261696e)}; }  // "rain"

/// Runs the recipe on a model, step by step; save() and resume() carry the whole state across processes.
class Pretrainer {
public:
    Pretrainer(Model& model, const Pretraining& recipe, std::uint64_t seed)
        : model_(&model), recipe_(recipe), seed_(seed), params_(model.parameters()) {
        npft::require(recipe.steps >= 1 && recipe.batch >= 1 && recipe.lr > 0.0f,
                      "pre-training needs at least one step of at least one window and a positive learning rate, got ",
                      recipe.describe());
        for (const auto& p : params_) states_.push_back(adamw_.make_state(p.value.size()));
    }

    Index step() const { return step_; }
    bool done() const { return step_ >= recipe_.steps; }
    const Pretraining& recipe() const { return recipe_; }
    /// The learning rate of the last step taken.
    float last_learning_rate() const { return learning_rate(recipe_, std::max<Index>(0, step_ - 1)); }

    /// One AdamW step on the batch of this step; returns the batch's mean loss.
    double train_step(const std::vector<Token>& tokens) {
        npft::require(!done(), "pre-training already took its ", recipe_.steps, " steps");
        const Batch batch = random_windows(tokens, recipe_.batch, model_->config().context + 1, pretraining_key(seed_),
                                           static_cast<std::uint64_t>(step_));
        const double loss = model_->loss_and_gradient(batch);
        npft::require(std::isfinite(loss), "pre-training diverged at step ", step_, " (loss ", loss, ")");
        // Clip the global gradient norm to 1: early steps of a byte-level model can spike. Summed in parameter order.
        double norm2 = 0.0;
        for (const auto& p : params_) norm2 += static_cast<double>(npft::to_eigen(p.grad).squaredNorm());
        const float clip = static_cast<float>(std::min(1.0, 1.0 / std::sqrt(norm2 + 1e-30)));
        const float lr = learning_rate(recipe_, step_);
        for (std::size_t i = 0; i < params_.size(); ++i) {
            auto g = npft::to_eigen(params_[i].grad);
            if (clip < 1.0f) g *= clip;
            const auto n = static_cast<std::size_t>(params_[i].value.size());
            adamw_.step(states_[i], std::span<float>(params_[i].value.data(), n),
                        std::span<const float>(params_[i].grad.data(), n), lr);
        }
        ++step_;
        return loss;
    }

    /// Writes the training state to `path` (atomically: an interrupted save leaves the previous file). `run` names
    /// what else the run depends on (the training text, the vocabulary) so that resume() refuses another run's state.
    void save(const std::filesystem::path& path, const std::string& run) const {
        npft::io::SafetensorsWriter writer;
        writer.add_metadata("format", "tiny_llama_training_state");
        writer.add_metadata("config", model_->config().describe());
        writer.add_metadata("recipe", recipe_.describe());
        writer.add_metadata("run", run);
        writer.add_metadata("seed", std::to_string(seed_));
        writer.add_metadata("step", std::to_string(step_));
        for (std::size_t i = 0; i < params_.size(); ++i) {
            const auto& p = params_[i];
            const std::vector<Index> shape{p.value.rows(), p.value.cols()};
            writer.add(p.name, p.value);
            writer.add("adamw.first." + p.name, states_[i].first_moment, shape);
            writer.add("adamw.second." + p.name, states_[i].second_moment, shape);
        }
        writer.save(path);
    }

    /// Restores weights, moments and step from a state that save() wrote for the same config, recipe, seed and run.
    void resume(const std::filesystem::path& path, const std::string& run) {
        const auto file = npft::io::SafetensorsFile::load(path);
        const auto expect = [&](const char* key, const std::string& value) {
            npft::require(file.metadata().contains(key), "training state '", path.string(), "' has no '", key, "' entry");
            npft::require(file.metadata(key) == value, "training state '", path.string(), "' is for ", key, " '",
                          file.metadata(key), "', this run has '", value, "'");
        };
        expect("format", "tiny_llama_training_state");
        expect("config", model_->config().describe());
        expect("recipe", recipe_.describe());
        expect("run", run);
        expect("seed", std::to_string(seed_));
        const std::string& step_text = file.metadata("step");
        char* end = nullptr;
        const long long step = std::strtoll(step_text.c_str(), &end, 10);
        npft::require(end != step_text.c_str() && *end == '\0' && step >= 0 && step <= recipe_.steps, "training state '",
                      path.string(), "' has step '", step_text, "', expected 0 to ", recipe_.steps);
        for (std::size_t i = 0; i < params_.size(); ++i) {
            const auto& p = params_[i];
            const std::vector<Index> shape{p.value.rows(), p.value.cols()};
            file.read_into(p.name, p.value);
            states_[i].first_moment = file.read<float>("adamw.first." + p.name, shape);
            states_[i].second_moment = file.read<float>("adamw.second." + p.name, shape);
            states_[i].steps = step;
        }
        step_ = static_cast<Index>(step);
    }

private:
    static constexpr npft::train::AdamW adamw_{.beta1 = 0.9f, .beta2 = 0.95f, .epsilon = 1e-8f, .weight_decay = 0.01f};
    Model* model_;
    Pretraining recipe_;
    std::uint64_t seed_;
    std::vector<npft::train::Parameter> params_;
    std::vector<npft::train::AdamW::State> states_;
    Index step_ = 0;
};

}  // namespace tiny_llama
