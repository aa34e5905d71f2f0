#pragma once
// The tensors a Pipeline manages and what it does to all of them at once: bind to a model's parameters, write the
// effective weights (clean + PEFT, then the noise under a guard), collect PEFT gradients, step the optimizer, merge,
// hand activation adapters to the model, and save or load their checkpoint entries. Per-tensor work is spread over
// PipelineOptions::threads threads of the worker pool, one tensor per task, so the bits do not depend on the count.
#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../core/tensor_view.hpp"
#include "../kernels/cpu/threading.hpp"
#include "checkpoint.hpp"
#include "differentiable_model.hpp"
#include "lora_activation.hpp"
#include "peft_lora.hpp"
#include "peft_masked.hpp"
#include "perturbation.hpp"
#include "pipeline_checkpoint.hpp"
#include "pipeline_options.hpp"

namespace npft::train {

/// One tensor the pipeline manages: its clean weights, its noise (when perturbed) and its PEFT state (when adapted).
template <class Opt>
struct ManagedTensor {
    std::string name;
    Index parameter = 0;  ///< position in model.parameters(); also the tensor's id in random streams
    bool perturbed = false;
    Matrix clean;         ///< W0: merged clean weights, never holds noise
    Perturbation perturbation;
    std::variant<std::monostate, LoraTensor<Opt>, MaskedTensor<Opt>> peft;
    bool adapted() const { return peft.index() != 0; }
    LoraTensor<Opt>* lora() { return std::get_if<LoraTensor<Opt>>(&peft); }
    const LoraTensor<Opt>* lora() const { return std::get_if<LoraTensor<Opt>>(&peft); }
    MaskedTensor<Opt>* masked() { return std::get_if<MaskedTensor<Opt>>(&peft); }

    /// Calls f(policy) with the PEFT policy (nothing when the tensor only gets noise).
    template <class F>
    void with_peft(F&& f) {
        if (auto* l = lora()) f(*l);
        else if (auto* m = masked()) f(*m);
    }
    template <class F>
    void with_peft(F&& f) const {
        if (const auto* l = lora()) f(*l);
        else if (const auto* m = std::get_if<MaskedTensor<Opt>>(&peft)) f(*m);
    }
};

template <class Opt>
class ManagedTensors {
public:
    using Tensor = ManagedTensor<Opt>;

    /// Takes the model's parameters; the tensors `perturbed(p)` or PipelineOptions::adapted picks become managed.
    /// Fails naming the model's parameters when none is perturbed or none adapted.
    template <class IsPerturbed>
    void bind(std::vector<Parameter> parameters, const void* model, const PipelineOptions& options, IsPerturbed&& perturbed) {
        parameters_ = std::move(parameters);
        model_ = model;
        threads_ = options.threads;
        require(!parameters_.empty(), "the model has no parameters: model.parameters() returned an empty list");
        std::string all_names;
        for (std::size_t i = 0; i < parameters_.size(); ++i) {
            const Parameter& p = parameters_[i];
            all_names += (i ? ", " : "") + p.name;
            require_non_empty(MatrixView<const float>(p.value), ("value of parameter '" + p.name + "'").c_str());
            require_shape(p.grad, p.value.rows(), p.value.cols(), ("grad of parameter '" + p.name + "'").c_str());
            for (std::size_t j = 0; j < i; ++j) require(parameters_[j].name != p.name, "two parameters share the name '", p.name, "'");
        }
        tensors_.clear();
        bool any_perturbed = false, any_adapted = false;
        for (std::size_t i = 0; i < parameters_.size(); ++i) {
            const Parameter& p = parameters_[i];
            const bool is_perturbed = perturbed(p);
            const bool adapted = options.adapted.matches(p.name);
            if (!is_perturbed && !adapted) continue;
            Tensor t;
            t.name = p.name;
            t.parameter = static_cast<Index>(i);
            t.perturbed = is_perturbed;
            t.clean = to_eigen(MatrixView<const float>(p.value));
            t.perturbation.selection = outliers::OutlierMask(p.value.rows(), p.value.cols(), {});
            if (adapted && uses_lora(options)) {
                t.peft.template emplace<LoraTensor<Opt>>(p.value.rows(), p.value.cols(), std::get<LoraOptions>(options.peft));
            } else if (adapted) {
                t.peft.template emplace<MaskedTensor<Opt>>();
            }
            tensors_.push_back(std::move(t));
            any_perturbed |= is_perturbed;
            any_adapted |= adapted;
        }
        require(any_perturbed, "no parameter matches the perturbed patterns ", options.perturbed.describe(),
                options.perturb_vectors ? "" : " among the weight matrices (parameters with one row or column are left out "
                                               "unless PipelineOptions::perturb_vectors is set)",
                "; the model's parameters are: ", all_names);
        require(any_adapted, "no parameter matches the adapted patterns ", options.adapted.describe(),
                " (nothing would train); the model's parameters are: ", all_names);
        if (!uses_lora(options)) {
            for (const auto& entry : std::get<MaskedWeights>(options.peft).masks) {
                // Not a structured binding: clang before 16 cannot capture one in the lambda below.
                const auto& name = entry.first;
                const auto& mask = entry.second;
                const auto it = std::find_if(tensors_.begin(), tensors_.end(), [&](const Tensor& t) { return t.name == name && t.adapted(); });
                require(it != tensors_.end(), "MaskedWeights has a mask for '", name, "', which is not an adapted parameter of the model");
                require(mask.rows == it->clean.rows() && mask.cols == it->clean.cols(), "MaskedWeights mask for '", name,
                        "' is ", mask.rows, " x ", mask.cols, ", but the tensor is ", it->clean.rows(), " x ", it->clean.cols());
            }
        }
    }

    bool bound_to(const void* model) const { return !tensors_.empty() && model_ == model; }
    bool empty() const { return tensors_.empty(); }
    std::vector<Tensor>& all() { return tensors_; }
    const std::vector<Tensor>& all() const { return tensors_; }

    const Tensor& find(const std::string& name) const {
        for (const auto& t : tensors_)
            if (t.name == name) return t;
        fail("the pipeline manages no tensor named '", name, "'");
    }
    std::vector<std::string> names() const {
        std::vector<std::string> out;
        for (const auto& t : tensors_) out.push_back(t.name);
        return out;
    }
    std::map<std::string, outliers::OutlierMask> selections() const {
        std::map<std::string, outliers::OutlierMask> out;
        for (const auto& t : tensors_)
            if (t.perturbed) out.emplace(t.name, t.perturbation.selection);
        return out;
    }

    MatrixView<float> value_of(const Tensor& t) const { return parameters_[static_cast<std::size_t>(t.parameter)].value; }
    MatrixView<const float> grad_of(const Tensor& t) const { return parameters_[static_cast<std::size_t>(t.parameter)].grad; }

    /// Runs f(t) for every managed tensor, spread over the worker pool (one tensor per task).
    template <class F>
    void each(F&& f) {
        kernels::cpu::parallel_rows(static_cast<Index>(tensors_.size()), threads_, 1, [&](Index begin, Index end) {
            for (Index i = begin; i < end; ++i) f(tensors_[static_cast<std::size_t>(i)]);
        });
    }

    // ---- the model's values -------------------------------------------------------------------------------------------
    void copy_clean_into_model() const {
        for (const auto& t : tensors_) to_eigen(value_of(t)) = t.clean;
    }
    /// The model's values := clean + the PEFT policies' contribution, no noise. Only what a PEFT policy changed is
    /// written: noise never stays in the values (the guard restores them), and outside the trainable positions and
    /// weight-space adapters the values equal `clean` since the stage start.
    void write_peft() {
        each([&](Tensor& t) { t.with_peft([&](const auto& peft) { peft.write_effective(t.clean, value_of(t)); }); });
    }
    /// The current draw in the model's values until the returned guard ends, then the exact values from before.
    auto noise_guard() {
        return PerturbationGuard([this](auto&& f) {
            each([&](Tensor& t) {
                if (t.perturbed) f(t.perturbation, value_of(t));
            });
        });
    }

    // ---- PEFT ---------------------------------------------------------------------------------------------------------
    /// PEFT gradients from the model's current grads, times `weight`; added to the previous call's when `accumulate`.
    void collect_gradients(float weight, bool accumulate) {
        each([&](Tensor& t) { t.with_peft([&](auto& peft) { peft.collect_gradients(grad_of(t), weight, accumulate, t.name); }); });
    }
    /// The first tensor (model order) with a non-finite PEFT gradient; empty when all are finite.
    std::string first_non_finite_gradient() const {
        for (const auto& t : tensors_) {
            bool finite = true;
            t.with_peft([&](const auto& peft) { finite = peft.gradients_finite(); });
            if (!finite) return t.name;
        }
        return {};
    }
    void optimizer_step(const Opt& optimizer, float lr) {
        each([&](Tensor& t) { t.with_peft([&](auto& peft) { peft.step(optimizer, lr, t.clean); }); });
    }
    /// Folds every LoRA adapter into its clean weights (B := 0 after).
    void merge_adapters() {
        each([&](Tensor& t) {
            if (auto* lora = t.lora()) lora->merge_into(t.clean);
        });
    }

    // ---- activation-space LoRA (LoraActivationModel, dropout > 0) ------------------------------------------------------
    template <class Model>
    void attach_adapters(Model& model, float dropout) {
        if constexpr (LoraActivationModel<Model>) {
            for (auto& t : tensors_)
                if (auto* lora = t.lora()) model.set_lora_adapter(t.name, lora->attach());
        } else {
            fail("LoraOptions::dropout is ", dropout,
                 ", but LoRA dropout acts per token on activations and this model does not apply adapters itself: give it "
                 "`set_lora_adapter(const std::string& name, npft::train::ActivationLora* adapter)` and call "
                 "adapter->forward/backward in its forward/backward (npft::train::LoraActivationModel, docs/pipeline.md), "
                 "or set dropout = 0 for LoRA in weight space");
        }
    }
    template <class Model>
    void detach_adapters(Model& model) {
        if constexpr (LoraActivationModel<Model>) {
            for (auto& t : tensors_) {
                auto* lora = t.lora();
                if (!lora || !lora->in_activations()) continue;
                model.set_lora_adapter(t.name, nullptr);
                lora->detach();
            }
        } else {
            (void)model;
        }
    }
    /// Before a model call: activation adapters in training mode (dropout keyed by seed, step and tensor) or evaluation.
    void prepare_adapters(bool training, std::uint64_t seed, std::uint64_t step) {
        for (auto& t : tensors_)
            if (auto* lora = t.lora()) lora->prepare(training, seed, step, static_cast<std::uint64_t>(t.parameter));
    }

    // ---- checkpoint ---------------------------------------------------------------------------------------------------
    void save(CheckpointWriter& w) const {
        for (const auto& t : tensors_) {
            write_tensor_state(w, t.name, t.clean, t.perturbation);
            t.with_peft([&](const auto& peft) { peft.save(w, t.name); });
        }
    }
    void load(const CheckpointReader& r, const Opt& optimizer) {
        for (auto& t : tensors_) {
            read_tensor_state(r, t.name, t.clean, t.perturbation);
            if (auto* lora = t.lora()) lora->load(r, t.name, optimizer);
            if (auto* masked = t.masked()) masked->load(r, t.name, optimizer, t.clean.size());
        }
    }

private:
    std::vector<Parameter> parameters_;
    const void* model_ = nullptr;
    std::vector<Tensor> tensors_;
    int threads_ = 1;
};

}  // namespace npft::train
