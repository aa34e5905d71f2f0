#pragma once
// The LoRA PEFT policy of one adapted tensor: the adapter pair, its optimizer states and gradients, and its checkpoint
// tensors. Two ways to reach the model:
//   weight space      (dropout 0): the model's weight memory holds clean + (alpha/r) B A before each call
//                                  (lora.hpp); the adapter gradients follow from the weight's gradient.
//   activation space  (dropout > 0): the model applies the adapter to its activations through the ActivationLora it
//                                  was handed (lora_activation.hpp); its weight memory holds the clean weights only.
// Per step, weight space costs two rank-r products of the tensor's size (the effective weight, the gradients);
// activation space costs nothing here beyond the optimizer (the model pays for the adapter in its own forward).
#include <cstdint>
#include <span>
#include <string>

#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../core/random.hpp"
#include "../core/tensor_view.hpp"
#include "checkpoint.hpp"
#include "lora.hpp"
#include "lora_activation.hpp"

namespace npft::train {

template <class Opt>
class LoraTensor {
public:
    LoraTensor() = default;
    /// A zero adapter of the tensor's shape (the Fisher pass may run through an attached adapter before a stage starts).
    LoraTensor(Index rows, Index cols, LoraOptions options) : options_(options), adapter_(rows, cols, options) {}

    const LoraAdapter& adapter() const { return adapter_; }
    bool in_activations() const { return in_activations_; }

    /// A new adapter (A from `key`, B = 0) and fresh optimizer states.
    void start(RandomKey key, const Opt& optimizer) {
        adapter_ = LoraAdapter(adapter_.rows(), adapter_.cols(), options_);
        adapter_.initialize(key);
        restart_optimizer(optimizer);
    }
    /// Keeps the adapter, resets the optimizer (the reference trains each stage with a new trainer).
    void restart_optimizer(const Opt& optimizer) {
        state_a_ = optimizer.make_state(adapter_.a().size());
        state_b_ = optimizer.make_state(adapter_.b().size());
    }

    // ---- activation space ---------------------------------------------------------------------------------------------
    /// The ActivationLora to hand to the model; from now on the model's weights hold the clean weights only.
    ActivationLora* attach() {
        activation_ = ActivationLora(adapter_, options_.dropout);
        in_activations_ = true;
        return &activation_;
    }
    void detach() { in_activations_ = false; }
    /// Before a model call: training (dropout keyed by seed, step and tensor; gradients cleared) or evaluation.
    void prepare(bool training, std::uint64_t seed, std::uint64_t step, std::uint64_t tensor) {
        if (!in_activations_) return;
        activation_.set_training(training);
        activation_.set_mask_key(seed, step, tensor);
        activation_.zero_gradients();
    }

    // ---- one step -----------------------------------------------------------------------------------------------------
    /// The model's weight := clean + (alpha/r) B A in weight space; in activation space the model's weight already
    /// holds `clean` (written at the stage start, restored after every noised call), so nothing is written.
    void write_effective(const Matrix& clean, MatrixView<float> value) const {
        if (!in_activations_) adapter_.write_effective(clean, value);
    }
    /// `merged` := clean + (alpha/r) B A, whichever space the adapter acts in (the basis of selection and noise ranges).
    void merged(const Matrix& clean, Matrix& merged) const {
        merged.resize(clean.rows(), clean.cols());
        adapter_.write_effective(clean, as_matrix_view(merged));
    }

    /// Adapter gradients of the last model call, times `weight`; added to the previous call's when `accumulate`.
    void collect_gradients(MatrixView<const float> grad, float weight, bool accumulate, const std::string& name) {
        if (in_activations_) {
            const ActivationLora& a = activation_;
            require(a.forward_calls() > 0 && a.backward_calls() > 0, "the model took the activation LoRA adapter of '", name,
                    "' but its loss_and_gradient called forward ", a.forward_calls(), " and backward ", a.backward_calls(),
                    " times on it (each must be called at least once per call)");
            if (accumulate) {
                grad_a_ += weight * a.grad_a();
                grad_b_ += weight * a.grad_b();
            } else {
                grad_a_ = weight * a.grad_a();
                grad_b_ = weight * a.grad_b();
            }
        } else if (accumulate) {
            adapter_.gradients(grad, scratch_a_, scratch_b_);
            grad_a_ += weight * scratch_a_;
            grad_b_ += weight * scratch_b_;
        } else {
            adapter_.gradients(grad, grad_a_, grad_b_);
            if (weight != 1.0f) {
                grad_a_ *= weight;
                grad_b_ *= weight;
            }
        }
    }
    bool gradients_finite() const { return grad_a_.allFinite() && grad_b_.allFinite(); }

    void step(const Opt& optimizer, float lr, Matrix& /*clean: LoRA leaves it alone*/) {
        optimizer.step(state_a_, span_of(adapter_.a()), std::span<const float>(grad_a_.data(), size_of(grad_a_)), lr);
        optimizer.step(state_b_, span_of(adapter_.b()), std::span<const float>(grad_b_.data(), size_of(grad_b_)), lr);
    }

    /// clean += (alpha/r) B A, and B := 0 so that the effective weight stays clean until the next start().
    void merge_into(Matrix& clean) {
        adapter_.merge_into(clean);
        adapter_.b().setZero();
    }

    // ---- checkpoint ---------------------------------------------------------------------------------------------------
    void save(CheckpointWriter& w, const std::string& prefix) const {
        w.matrix(prefix + ".lora_a", adapter_.a());
        w.matrix(prefix + ".lora_b", adapter_.b());
        save_optimizer_state(w, prefix + ".lora_a.optimizer", state_a_);
        save_optimizer_state(w, prefix + ".lora_b.optimizer", state_b_);
    }
    void load(const CheckpointReader& r, const std::string& prefix, const Opt& optimizer) {
        adapter_ = LoraAdapter(adapter_.rows(), adapter_.cols(), options_);
        r.matrix_into(prefix + ".lora_a", adapter_.a().rows(), adapter_.a().cols(), adapter_.a());
        r.matrix_into(prefix + ".lora_b", adapter_.b().rows(), adapter_.b().cols(), adapter_.b());
        state_a_ = load_optimizer_state(r, prefix + ".lora_a.optimizer", optimizer, adapter_.a().size());
        state_b_ = load_optimizer_state(r, prefix + ".lora_b.optimizer", optimizer, adapter_.b().size());
    }

private:
    LoraOptions options_{};
    LoraAdapter adapter_;
    ActivationLora activation_;  // what the model calls in activation space; reads adapter_
    bool in_activations_ = false;
    typename Opt::State state_a_{}, state_b_{};
    Matrix grad_a_, grad_b_, scratch_a_, scratch_b_;

    static std::size_t size_of(const Matrix& m) { return static_cast<std::size_t>(m.size()); }
    static std::span<float> span_of(Matrix& m) { return {m.data(), size_of(m)}; }
};

}  // namespace npft::train
