#pragma once
// What npft needs from a user's model: its named weight tensors as views, and a callable that computes the loss on a
// batch and writes the gradient of every tensor into that tensor's gradient view. No base class, no framework.
#include <concepts>
#include <string>
#include <vector>

#include "../core/tensor_view.hpp"

namespace npft::train {

/// One trainable or perturbable weight tensor of the user's model. `value` and `grad` view the model's own memory
/// and have the same shape. npft writes into `value` (noise, merged adapters) and reads `grad` after each call.
struct Parameter {
    std::string name;
    MatrixView<float> value;
    MatrixView<float> grad;
};

/// A model npft can fine-tune on batches of type Batch.
///   model.parameters()             -> the named tensors (stable order and addresses between calls)
///   model.loss_and_gradient(batch) -> the mean loss on the batch; overwrites (does not accumulate) every grad view
template <class M, class Batch>
concept DifferentiableModel = requires(M& model, const Batch& batch) {
    { model.parameters() } -> std::convertible_to<std::vector<Parameter>>;
    { model.loss_and_gradient(batch) } -> std::convertible_to<double>;
};

/// Optional: a forward-only loss (cheaper than loss_and_gradient), used for evaluation when present.
template <class M, class Batch>
concept ModelWithLoss = DifferentiableModel<M, Batch> && requires(M& model, const Batch& batch) {
    { model.loss(batch) } -> std::convertible_to<double>;
};

/// Optional: split a batch into one batch per sequence (sample). The diagonal Fisher is the mean of squared
/// *per-sequence* gradients; loss_and_gradient on a batch of several sequences gives the gradient of their mean, whose
/// square is something else. With this member the pipeline's Fisher pass splits every calibration batch, so its meaning
/// does not depend on how the data is batched. Without it, each calibration batch must hold one sequence.
template <class M, class Batch>
concept SequenceSplittingModel = requires(M& model, const Batch& batch) {
    { model.split_sequences(batch) } -> std::convertible_to<std::vector<Batch>>;
};

/// The loss on a batch: forward-only when the model offers it, otherwise through loss_and_gradient.
template <class M, class Batch>
    requires DifferentiableModel<M, Batch>
double evaluate_loss(M& model, const Batch& batch) {
    if constexpr (ModelWithLoss<M, Batch>) {
        return static_cast<double>(model.loss(batch));
    } else {
        return static_cast<double>(model.loss_and_gradient(batch));
    }
}

}  // namespace npft::train
