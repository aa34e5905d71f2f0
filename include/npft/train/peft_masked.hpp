#pragma once
// The masked-weights PEFT policy of one adapted tensor: a sorted list of flat positions of the clean weights that
// train, their optimizer state and gradients, and its checkpoint tensors. Per step it touches only those positions
// (gather the gradient, step, write the new values into the model), so its cost is O(trainable weights).
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../core/tensor_view.hpp"
#include "../outliers/selector.hpp"
#include "checkpoint.hpp"

namespace npft::train {

template <class Opt>
class MaskedTensor {
public:
    const std::vector<Index>& trainable() const { return trainable_; }

    /// Trains `positions` (sorted flat positions) from a fresh optimizer state.
    void start(std::vector<Index> positions, const Opt& optimizer) {
        trainable_ = std::move(positions);
        state_ = optimizer.make_state(static_cast<Index>(trainable_.size()));
    }

    /// Every position of a `size`-element tensor that is not an outlier (MaskedWeights without an explicit mask).
    static std::vector<Index> complement(const outliers::OutlierMask& selection, Index size) {
        std::vector<Index> out;
        out.reserve(static_cast<std::size_t>(size - selection.count()));
        auto next = selection.positions.begin();
        for (Index p = 0; p < size; ++p) {
            if (next != selection.positions.end() && *next == p) {
                ++next;
                continue;
            }
            out.push_back(p);
        }
        return out;
    }

    /// The model's weight at the trainable positions := their clean values (the optimizer changed them); the other
    /// positions already hold clean values.
    void write_effective(const Matrix& clean, MatrixView<float> value) const {
        const Index cols = clean.cols();
        for (const Index q : trainable_) value(q / cols, q % cols) = clean.data()[q];
    }

    void collect_gradients(MatrixView<const float> grad, float weight, bool accumulate, const std::string& /*name*/) {
        const Index cols = grad.cols();
        grad_.resize(trainable_.size());
        for (std::size_t j = 0; j < trainable_.size(); ++j) {
            const Index q = trainable_[j];
            const float v = weight * grad(q / cols, q % cols);
            grad_[j] = accumulate ? grad_[j] + v : v;
        }
    }
    bool gradients_finite() const {
        for (const float g : grad_)
            if (!(g - g == 0.0f)) return false;
        return true;
    }

    /// One optimizer step on the trainable clean weights (gathered, stepped, scattered back).
    void step(const Opt& optimizer, float lr, Matrix& clean) {
        gathered_.resize(trainable_.size());
        for (std::size_t j = 0; j < trainable_.size(); ++j) gathered_[j] = clean.data()[trainable_[j]];
        optimizer.step(state_, std::span<float>(gathered_), std::span<const float>(grad_), lr);
        for (std::size_t j = 0; j < trainable_.size(); ++j) clean.data()[trainable_[j]] = gathered_[j];
    }

    void save(CheckpointWriter& w, const std::string& prefix) const {
        w.indices(prefix + ".trainable", trainable_);
        save_optimizer_state(w, prefix + ".trainable.optimizer", state_);
    }
    void load(const CheckpointReader& r, const std::string& prefix, const Opt& optimizer, Index size) {
        trainable_ = r.indices(prefix + ".trainable");
        for (std::size_t j = 0; j < trainable_.size(); ++j)
            require(trainable_[j] >= 0 && trainable_[j] < size && (j == 0 || trainable_[j - 1] < trainable_[j]),
                    "checkpoint '", r.path(), "': trainable positions of '", prefix,
                    "' must be sorted, distinct and inside the tensor of ", size, " weights");
        state_ = load_optimizer_state(r, prefix + ".trainable.optimizer", optimizer, static_cast<Index>(trainable_.size()));
    }

private:
    std::vector<Index> trainable_;
    typename Opt::State state_{};
    std::vector<float> grad_, gathered_;
};

}  // namespace npft::train
